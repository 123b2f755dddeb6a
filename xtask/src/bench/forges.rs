//! The `forges` suite: how many GitHub webhooks the gateway accepts a
//! second (push and `pull_request` deliveries, each recorded and its task
//! created before the answer), and how soon after a task ends its commit
//! status reaches GitHub (the stack's fake, [`Stack::forge`]), with none
//! lost or out of order.
//!
//! The payloads are shaped as GitHub sends them (the fields Slipway reads,
//! and the usual neighbours) and signed with the stack's secret.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::load::quantile;
use super::stack::Received;
use super::{Figure, Report, Stack, Suite};
use crate::git::LocalRepo;
use crate::{http, sys};

pub struct Forges;

/// Clients sending webhooks at once, each waiting for its answer before
/// sending the next.
const CLIENTS: usize = 8;
/// How long each kind of webhook is sent.
const WINDOW: Duration = Duration::from_secs(10);
/// How long the `queued` statuses of a window's tasks may take to arrive
/// before the next window starts anyway.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Tasks whose commit statuses are timed.
const TASKS: usize = 200;
/// Of those, how many run at once: the runner's slots on this machine.
const IN_FLIGHT: usize = 2;
/// The longest a timed task may go without its final status.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The workflow the timed tasks run, and its repository on GitHub.
const STATUSES_WORKFLOW: &str = "bench-statuses";
const STATUSES_REPO: &str = "bench/statuses";
/// The workflow the webhooks trigger, and its repository.
const WEBHOOKS_WORKFLOW: &str = "bench-webhooks";
const WEBHOOKS_REPO: &str = "bench/webhooks";
const WEBHOOKS_URL: &str = "https://github.com/bench/webhooks.git";
/// A runner label no runner of the stack has: the webhooks' tasks stay
/// pending instead of loading the machine.
const NO_RUNNER: &str = "bench-no-runner";
/// The notify webhook of the timed tasks, on the fake.
const ALERT_HOOK: &str = "/hooks/bench-statuses";

impl Suite for Forges {
    fn name(&self) -> &'static str {
        "forges"
    }

    fn about(&self) -> &'static str {
        "GitHub push and pull_request webhooks accepted per second; task end to commit status, p50 and p99"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        // The timed tasks run first, on a stack without the thousands of
        // pending tasks the webhooks leave behind.
        let timed = time_statuses(stack)?;
        let rates = webhook_rates(stack)?;
        figures(&timed, &rates)
    }
}

/// A repository as a payload names it.
pub(super) struct Repo<'a> {
    /// `owner/name`: where the statuses of its tasks go.
    pub(super) full_name: &'a str,
    /// What a workflow's `repo` matches.
    pub(super) clone_url: &'a str,
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A GitHub `push` payload of one commit.
pub(super) fn push_payload(repo: &Repo<'_>, git_ref: &str, after: &str, message: &str) -> Value {
    let (owner, name) = repo
        .full_name
        .split_once('/')
        .unwrap_or(("", repo.full_name));
    let commit = json!({
        "id": after,
        "message": message,
        "author": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
        "added": ["README.md"],
        "removed": [],
        "modified": [],
    });
    json!({
        "ref": git_ref,
        "before": ZERO_SHA,
        "after": after,
        "created": false,
        "deleted": false,
        "repository": {
            "id": 1,
            "name": name,
            "full_name": repo.full_name,
            "owner": {"login": owner},
            "clone_url": repo.clone_url,
            "html_url": format!("https://github.com/{}", repo.full_name),
            "ssh_url": format!("git@github.com:{}.git", repo.full_name),
        },
        "pusher": {"name": "octocat", "email": "octo@example.com"},
        "sender": {"login": "octocat"},
        "head_commit": commit.clone(),
        "commits": [commit],
    })
}

/// A GitHub `pull_request` payload: `opened`, from a branch of the same
/// repository to `main`.
fn pull_request_payload(repo: &Repo<'_>, number: usize, head_sha: &str) -> Value {
    let (owner, name) = repo
        .full_name
        .split_once('/')
        .unwrap_or(("", repo.full_name));
    let base_repo = json!({
        "id": 1,
        "name": name,
        "full_name": repo.full_name,
        "owner": {"login": owner, "type": "Organization"},
        "private": false,
        "html_url": format!("https://github.com/{}", repo.full_name),
        "clone_url": repo.clone_url,
        "ssh_url": format!("git@github.com:{}.git", repo.full_name),
    });
    json!({
        "action": "opened",
        "number": number,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{}/pulls/{number}", repo.full_name),
            "id": 1000 + number,
            "html_url": format!("https://github.com/{}/pull/{number}", repo.full_name),
            "number": number,
            "state": "open",
            "locked": false,
            "title": "Add a feature",
            "user": {"login": owner},
            "body": null,
            "draft": false,
            "merged": false,
            "head": {
                "label": format!("{owner}:feature-{number}"),
                "ref": format!("feature-{number}"),
                "sha": head_sha,
                "user": {"login": owner},
                "repo": base_repo.clone(),
            },
            "base": {
                "label": format!("{owner}:main"),
                "ref": "main",
                "sha": ZERO_SHA.replace('0', "1"),
                "user": {"login": owner},
                "repo": base_repo.clone(),
            },
        },
        "repository": base_repo,
        "installation": {"id": 4242},
        "sender": {"login": owner},
    })
}

/// `sha256=<hex HMAC-SHA256>` of `body`, as GitHub signs a delivery.
fn signature(secret: &[u8], body: &[u8]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| anyhow::anyhow!("cannot key the webhook signature: {e}"))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// A signed delivery, ready to send.
pub(super) struct Delivery {
    /// `X-GitHub-Event`.
    event: &'static str,
    /// `X-GitHub-Delivery`, distinct for each.
    id: String,
    signature: String,
    pub(super) body: Bytes,
}

impl Delivery {
    pub(super) fn new(
        secret: &[u8],
        event: &'static str,
        id: String,
        payload: &Value,
    ) -> Result<Self> {
        let body = serde_json::to_vec(payload)?;
        Ok(Self {
            event,
            id,
            signature: signature(secret, &body)?,
            body: Bytes::from(body),
        })
    }

    pub(super) fn headers(&self) -> [(&'static str, &str); 4] {
        [
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", self.event),
            ("X-GitHub-Delivery", self.id.as_str()),
            ("X-Hub-Signature-256", self.signature.as_str()),
        ]
    }
}

/// The one task a delivery's answer says it created.
pub(super) fn created_task(status: u16, answer: &Value) -> Result<u64> {
    let ids = answer["task_ids"].as_array();
    match (status, ids.map(Vec::as_slice)) {
        (202, Some([id])) => id
            .as_u64()
            .with_context(|| format!("not a task id: {answer}")),
        _ => bail!("expected 202 with one task: {status} {answer}"),
    }
}

// ---------------------------------------------------------------------
// Commit status latency

/// What the commit statuses of the timed tasks came to.
struct Timed {
    /// Per task: its id, and from its `finished_at` to the arrival of its
    /// `success` status and of its `task_succeeded` alert.
    tasks: Vec<(u64, Duration, Duration)>,
    /// Statuses that arrived after a later state of the same commit and
    /// context.
    out_of_order: usize,
    /// States of a task (`queued`, `running`, `success`) that never
    /// arrived and that the orchestrator did not supersede.
    lost: usize,
    /// States that never arrived because a later one went first (forges.md:
    /// a delayed `pending` is dropped once a later state was sent), as
    /// `GET /api/tasks/{id}` records them: by design, not lost.
    superseded: usize,
    /// The same state of the same commit and context received again (at
    /// least once delivery: allowed, counted).
    repeated: usize,
    /// Statuses refused for a wrong token.
    unauthorized: usize,
    /// The tasks with a status out of order, lost or repeated: what
    /// arrived, and what `GET /api/tasks/{id}` recorded.
    anomalies: Vec<Value>,
}

/// The states a task's status goes through, in order.
const STATES: [(&str, &str); 3] = [
    ("pending", "queued"),
    ("pending", "running"),
    ("success", "succeeded"),
];

/// What the fake has received so far for the timed tasks.
#[derive(Default)]
struct Arrivals {
    /// Per commit: the index in [`STATES`] of each status of the
    /// workflow's context (`None` for another state), with when it came.
    statuses: HashMap<String, Vec<(Option<usize>, SystemTime)>>,
    /// Per commit: `state/description` of each of those, in the same
    /// order, for the report of an anomaly.
    described: HashMap<String, Vec<String>>,
    /// The first `task_succeeded` alert of each task.
    alerts: HashMap<u64, SystemTime>,
    unauthorized: usize,
    /// How many of the fake's requests have been read.
    seen: usize,
}

impl Arrivals {
    /// Reads what arrived since the last call.
    fn update(&mut self, stack: &Stack) {
        let new = stack.forge.received(self.seen);
        self.seen += new.len();
        for r in &new {
            self.add(r);
        }
    }

    fn add(&mut self, r: &Received) {
        if r.path == ALERT_HOOK {
            if r.body["type"] == "task_succeeded"
                && let Some(task) = r.body["task_id"].as_u64()
            {
                self.alerts.entry(task).or_insert(r.at);
            }
            return;
        }
        let Some(target) = r.status.as_ref().filter(|t| t.repo == STATUSES_REPO) else {
            return;
        };
        if !r.authorized {
            self.unauthorized += 1;
            return;
        }
        if r.body["context"] != format!("slipway/{STATUSES_WORKFLOW}") {
            return;
        }
        let state = STATES.iter().position(|(state, description)| {
            r.body["state"] == *state && r.body["description"] == *description
        });
        self.statuses
            .entry(target.sha.clone())
            .or_default()
            .push((state, r.at));
        self.described
            .entry(target.sha.clone())
            .or_default()
            .push(format!(
                "{}/{}",
                r.body["state"].as_str().unwrap_or("?"),
                r.body["description"].as_str().unwrap_or("?")
            ));
    }

    /// When the final `success` of `sha` first arrived.
    fn succeeded(&self, sha: &str) -> Option<SystemTime> {
        let last = STATES.len() - 1;
        self.statuses
            .get(sha)?
            .iter()
            .find(|(state, _)| *state == Some(last))
            .map(|(_, at)| *at)
    }
}

/// How one commit's statuses arrived.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    /// Statuses that came after a later state.
    out_of_order: usize,
    /// The indices in [`STATES`] of the states that never came.
    missing: Vec<usize>,
    /// Statuses that came again.
    repeated: usize,
}

/// Counts out of order, missing and repeated states of one commit's
/// statuses.
fn order(arrived: &[(Option<usize>, SystemTime)]) -> Tally {
    let mut highest: Option<usize> = None;
    let mut out_of_order = 0;
    let mut got = [0usize; STATES.len()];
    for (state, _) in arrived {
        // Another state (`failure`, `error`) ranks as final.
        let rank = state.unwrap_or(STATES.len() - 1);
        if highest.is_some_and(|h| rank < h) {
            out_of_order += 1;
        }
        highest = highest.max(Some(rank));
        if let Some(i) = state {
            got[*i] += 1;
        }
    }
    Tally {
        out_of_order,
        missing: (0..STATES.len()).filter(|i| got[*i] == 0).collect(),
        repeated: got.iter().map(|n| n.saturating_sub(1)).sum(),
    }
}

/// Whether the task `t` (as the API shows it) records state `i` of
/// [`STATES`] as superseded.
fn superseded(t: &Value, i: usize) -> bool {
    let (state, description) = STATES[i];
    let context = format!("slipway/{STATUSES_WORKFLOW}");
    t["commit_statuses"].as_array().is_some_and(|all| {
        all.iter().any(|s| {
            s["context"] == context.as_str()
                && s["state"] == state
                && s["description"] == description
                && s["status"] == "superseded"
        })
    })
}

/// `n` commits, each on a branch of its own (`<prefix>-000`, ...), on top of
/// `base` in the bare repository `bare`: every task its own commit (a
/// status never waits for another task's on the same commit) and its own
/// branch (its `task_succeeded` alert is never throttled as a repeat).
fn branches(bare: &Path, base: &str, prefix: &str, n: usize) -> Result<Vec<(String, String)>> {
    let git = |args: &[&str]| -> Result<String> {
        sys::output(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=Slipway",
                    "-c",
                    "user.email=slipway@localhost",
                ])
                .args(args)
                .current_dir(bare),
        )
        .map(|out| out.trim().to_owned())
    };
    let tree = git(&["rev-parse", &format!("{base}^{{tree}}")])?;
    let mut made = Vec::with_capacity(n);
    let mut updates = String::new();
    for i in 0..n {
        let branch = format!("{prefix}-{i:03}");
        let sha = git(&["commit-tree", &tree, "-p", base, "-m", &branch])?;
        updates.push_str(&format!("create refs/heads/{branch} {sha}\n"));
        made.push((branch, sha));
    }
    let mut update = Command::new("git")
        .args(["update-ref", "--stdin"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run git update-ref")?;
    std::io::Write::write_all(
        &mut update.stdin.take().context("no stdin for git update-ref")?,
        updates.as_bytes(),
    )?;
    if !update.wait()?.success() {
        bail!("git update-ref failed in {}", bare.display());
    }
    Ok(made)
}

/// Pushes `TASKS` commits, `IN_FLIGHT` at a time (the next when one's
/// final status arrives), and times each task's statuses and alert.
fn time_statuses(stack: &Stack) -> Result<Timed> {
    eprintln!("xtask: bench forges: {TASKS} tasks reporting commit statuses");
    let repo = LocalRepo::open(&stack.dir.join("repos"), STATUSES_WORKFLOW)?;
    repo.write("README.md", b"statuses\n")?;
    let base = repo.commit("base")?;
    let commits = branches(&repo.bare, &base, "bench", TASKS)?;
    let url = repo.url();
    stack.api.register(
        STATUSES_WORKFLOW,
        &format!(
            "name: {STATUSES_WORKFLOW}\nrepo: {url}\n\
             on:\n  push: {{ branches: [\"bench-*\"] }}\n\
             steps:\n  - name: noop\n    run: \"true\"\n\
             notify:\n  - on: [task_succeeded]\n    webhook: {{ url: \"{}{ALERT_HOOK}\" }}\n",
            stack.forge.url
        ),
    )?;
    let secret = stack.github_secret.as_bytes();
    let github = Repo {
        full_name: STATUSES_REPO,
        clone_url: &url,
    };

    let mut arrivals = Arrivals {
        seen: stack.forge.count(),
        ..Arrivals::default()
    };
    let mut tasks: Vec<u64> = Vec::with_capacity(TASKS);
    let mut running: Vec<usize> = Vec::new();
    let mut progress = Instant::now();
    while tasks.len() < TASKS || !running.is_empty() {
        while running.len() < IN_FLIGHT && tasks.len() < TASKS {
            let i = tasks.len();
            let (branch, sha) = &commits[i];
            let payload = push_payload(&github, &format!("refs/heads/{branch}"), sha, branch);
            let delivery = Delivery::new(secret, "push", format!("statuses-{i}"), &payload)?;
            let answer = http::request(
                &stack.gateway,
                "POST",
                "/api/webhooks/github",
                &delivery.headers(),
                &delivery.body,
            )?;
            let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            tasks.push(created_task(answer.status, &body).context("push webhook")?);
            running.push(i);
        }
        stack.check()?;
        stack
            .forge
            .wait_past(arrivals.seen, Duration::from_millis(100));
        arrivals.update(stack);
        let before = running.len();
        running.retain(|i| arrivals.succeeded(&commits[*i].1).is_none());
        if running.len() < before {
            progress = Instant::now();
        } else if progress.elapsed() > TASK_TIMEOUT {
            let stuck: Vec<String> = running
                .iter()
                .map(|i| {
                    let t = stack.api.get(&format!("/api/tasks/{}", tasks[*i]));
                    t.map_or_else(
                        |e| format!("task {}: {e}", tasks[*i]),
                        |t| {
                            format!(
                                "task {} {}: {} statuses {}",
                                tasks[*i], t["status"], t["error"], t["commit_statuses"]
                            )
                        },
                    )
                })
                .collect();
            bail!(
                "no final commit status in {}s: {}",
                TASK_TIMEOUT.as_secs(),
                stuck.join("; ")
            );
        }
    }
    // The alert of the last tasks may come after their status.
    stack.wait("the task_succeeded alerts", TASK_TIMEOUT, || {
        arrivals.update(stack);
        Ok((arrivals.alerts.len() >= TASKS).then_some(()))
    })?;

    let mut timed = Timed {
        tasks: Vec::with_capacity(TASKS),
        out_of_order: 0,
        lost: 0,
        superseded: 0,
        repeated: 0,
        unauthorized: arrivals.unauthorized,
        anomalies: Vec::new(),
    };
    for (task, (_, sha)) in tasks.iter().zip(&commits) {
        let t = stack.api.get(&format!("/api/tasks/{task}"))?;
        if t["status"] != "success" {
            bail!("task {task} ended {}: {}", t["status"], t["error"]);
        }
        let finished = wall(&t["finished_at"]).with_context(|| format!("task {task}: {t}"))?;
        let status = arrivals.succeeded(sha).context("no success status")?;
        let alert = *arrivals
            .alerts
            .get(task)
            .with_context(|| format!("task {task}: no task_succeeded alert"))?;
        timed.tasks.push((
            *task,
            status.duration_since(finished).unwrap_or_default(),
            alert.duration_since(finished).unwrap_or_default(),
        ));
        let arrived = arrivals.statuses.get(sha).map_or(&[][..], Vec::as_slice);
        let tally = order(arrived);
        let (superseded, lost): (Vec<usize>, Vec<usize>) =
            tally.missing.iter().partition(|i| superseded(&t, **i));
        if tally.out_of_order + tally.repeated + tally.missing.len() > 0 {
            // Negative before the task's end.
            let ms_after = |at: &SystemTime| match at.duration_since(finished) {
                Ok(after) => ms(after),
                Err(before) => -ms(before.duration()),
            };
            timed.anomalies.push(json!({
                "task_id": task,
                "sha": sha,
                "arrived": arrivals.described.get(sha),
                "arrived_ms_after_end": arrived.iter().map(|(_, at)| ms_after(at)).collect::<Vec<_>>(),
                "recorded": t["commit_statuses"],
            }));
        }
        timed.out_of_order += tally.out_of_order;
        timed.lost += lost.len();
        timed.superseded += superseded.len();
        timed.repeated += tally.repeated;
    }
    Ok(timed)
}

/// An RFC 3339 time of the API as a wall-clock time.
fn wall(value: &Value) -> Result<SystemTime> {
    let text = value.as_str().context("no time")?;
    let at = chrono::DateTime::parse_from_rfc3339(text).with_context(|| format!("{text:?}"))?;
    Ok(at.into())
}

// ---------------------------------------------------------------------
// Webhooks accepted per second

/// The kinds of delivery sent, the floor first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A `ping` with a push's body: authenticated, read and recorded like
    /// a push, and nothing to run.
    Ping,
    /// A push whose payload has no `repository.full_name`: its task sets
    /// no commit status, which tells the statuses' share of a push.
    PushWithoutStatuses,
    Push,
    PullRequest,
}

impl Kind {
    fn event(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Push | Self::PushWithoutStatuses => "push",
            Self::PullRequest => "pull_request",
        }
    }

    /// What the report calls it.
    fn label(self) -> &'static str {
        match self {
            Self::PushWithoutStatuses => "push-without-statuses",
            other => other.event(),
        }
    }

    /// The `n`-th delivery of this kind, of a commit of its own.
    fn delivery(self, secret: &[u8], run: &str, n: usize) -> Result<(Delivery, String)> {
        let repo = Repo {
            full_name: WEBHOOKS_REPO,
            clone_url: WEBHOOKS_URL,
        };
        let sha = sys::random_hex(20);
        let mut payload = match self {
            Self::Ping | Self::Push | Self::PushWithoutStatuses => {
                push_payload(&repo, "refs/heads/main", &sha, &format!("change {n}"))
            }
            Self::PullRequest => pull_request_payload(&repo, n + 1, &sha),
        };
        if self == Self::PushWithoutStatuses
            && let Some(repository) = payload["repository"].as_object_mut()
        {
            repository.remove("full_name");
        }
        let id = format!("{run}-{}-{n}", self.label());
        Ok((Delivery::new(secret, self.event(), id, &payload)?, sha))
    }

    /// Whether the gateway's answer is the one this kind should get.
    fn check(self, status: StatusCode, answer: &Value) -> Result<()> {
        match self {
            Self::Ping if status == StatusCode::OK && answer["pong"] == true => Ok(()),
            Self::Ping => bail!("ping: expected 200 with pong: {status} {answer}"),
            Self::Push | Self::PushWithoutStatuses | Self::PullRequest => {
                created_task(status.as_u16(), answer).map(|_| ())
            }
        }
    }
}

/// What one window of one kind measured.
struct Rate {
    kind: Kind,
    /// Deliveries answered as expected.
    accepted: usize,
    /// From the first request to the last answer.
    elapsed: Duration,
    /// Each delivery's time to its answer.
    latencies: Vec<Duration>,
    /// For kinds that create tasks: how long after the window's end the
    /// fake had a `queued` status of every task, or how many it had when
    /// [`CATCH_UP`] ran out.
    catch_up: Option<CatchUp>,
}

struct CatchUp {
    expected: usize,
    received: usize,
    /// From the window's last answer to the last of those statuses.
    after: Duration,
}

impl Rate {
    #[allow(clippy::cast_precision_loss)]
    fn per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `WINDOW` of pings, then of pushes, then of pull requests, each from
/// `CLIENTS` clients, waiting after each for the statuses its tasks set
/// off.
fn webhook_rates(stack: &Stack) -> Result<Vec<Rate>> {
    stack.api.register(
        WEBHOOKS_WORKFLOW,
        &format!(
            "name: {WEBHOOKS_WORKFLOW}\nrepo: {WEBHOOKS_URL}\n\
             on:\n  push: {{ branches: [main] }}\n  pull_request: {{}}\n\
             runs_on: {NO_RUNNER}\n\
             steps:\n  - name: noop\n    run: \"true\"\n"
        ),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the webhook clients' runtime")?;
    let run = sys::random_hex(4);
    let mut rates = Vec::new();
    // The window without statuses comes last: the events it leaves the
    // notifier would hold up the statuses of a window after it.
    for kind in [
        Kind::Ping,
        Kind::Push,
        Kind::PullRequest,
        Kind::PushWithoutStatuses,
    ] {
        stack.check()?;
        eprintln!(
            "xtask: bench forges: {} webhooks for {}s from {CLIENTS} clients",
            kind.label(),
            WINDOW.as_secs()
        );
        let seen = stack.forge.count();
        let (mut rate, shas) = runtime.block_on(window(
            Arc::from(stack.gateway.as_str()),
            Arc::from(stack.github_secret.as_bytes()),
            Arc::from(run.as_str()),
            kind,
        ))?;
        let ended = SystemTime::now();
        if matches!(kind, Kind::Push | Kind::PullRequest) {
            rate.catch_up = Some(catch_up(stack, seen, &shas, ended)?);
        }
        rates.push(rate);
    }
    Ok(rates)
}

/// Waits until the fake has a `queued` status of each of `shas`, for at
/// most [`CATCH_UP`].
fn catch_up(
    stack: &Stack,
    from: usize,
    shas: &HashSet<String>,
    ended: SystemTime,
) -> Result<CatchUp> {
    let context = format!("slipway/{WEBHOOKS_WORKFLOW}");
    let mut seen = from;
    let mut queued: HashSet<String> = HashSet::new();
    let mut last = ended;
    let deadline = Instant::now() + CATCH_UP;
    while queued.len() < shas.len() && Instant::now() < deadline {
        stack.check()?;
        stack.forge.wait_past(seen, Duration::from_millis(100));
        let new = stack.forge.received(seen);
        seen += new.len();
        for r in new {
            let Some(target) = r.status.filter(|t| t.repo == WEBHOOKS_REPO) else {
                continue;
            };
            if r.body["context"] == context.as_str()
                && r.body["description"] == "queued"
                && shas.contains(&target.sha)
                && queued.insert(target.sha)
            {
                last = last.max(r.at);
            }
        }
    }
    Ok(CatchUp {
        expected: shas.len(),
        received: queued.len(),
        after: last.duration_since(ended).unwrap_or_default(),
    })
}

type Connection = SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Connection> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the gateway at {addr}"))?;
    stream.set_nodelay(true)?;
    let (conn, driver) = handshake(TokioIo::new(stream)).await?;
    tokio::spawn(driver);
    Ok(conn)
}

/// `CLIENTS` clients sending deliveries of `kind` for `WINDOW`; returns
/// the rate and the commits of the tasks they created.
async fn window(
    gateway: Arc<str>,
    secret: Arc<[u8]>,
    run: Arc<str>,
    kind: Kind,
) -> Result<(Rate, HashSet<String>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + WINDOW;
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let (gateway, secret, run, next) = (
            Arc::clone(&gateway),
            Arc::clone(&secret),
            Arc::clone(&run),
            Arc::clone(&next),
        );
        clients.spawn(async move {
            let mut conn = connect(&gateway).await?;
            let mut sent = Vec::new();
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (delivery, sha) = kind.delivery(&secret, &run, n)?;
                if conn.is_closed() {
                    conn = connect(&gateway).await?;
                }
                let began = Instant::now();
                let (status, answer) = send(&mut conn, &gateway, &delivery)
                    .await
                    .with_context(|| format!("{} delivery {}", kind.event(), delivery.id))?;
                let done = Instant::now();
                kind.check(status, &answer)?;
                sent.push((done.duration_since(began), done, sha));
            }
            Ok::<_, anyhow::Error>(sent)
        });
    }
    let mut latencies = Vec::new();
    let mut shas = HashSet::new();
    let mut last = start;
    while let Some(joined) = clients.join_next().await {
        for (latency, done, sha) in joined.context("a webhook client panicked")?? {
            latencies.push(latency);
            last = last.max(done);
            shas.insert(sha);
        }
    }
    if !matches!(kind, Kind::Push | Kind::PullRequest) {
        shas.clear();
    }
    Ok((
        Rate {
            kind,
            accepted: latencies.len(),
            elapsed: last.duration_since(start),
            latencies,
            catch_up: None,
        },
        shas,
    ))
}

/// One delivery on `conn`; its answer's status and JSON body.
async fn send(conn: &mut Connection, host: &str, d: &Delivery) -> Result<(StatusCode, Value)> {
    conn.ready().await?;
    let mut request = Request::post("/api/webhooks/github").header(HOST, host);
    for (name, value) in d.headers() {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(d.body.clone()))?;
    let answer = conn.send_request(request).await?;
    let status = answer.status();
    let body = answer.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}

// ---------------------------------------------------------------------
// Figures

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn figures(timed: &Timed, rates: &[Rate]) -> Result<Report> {
    let rate = |kind: Kind| {
        rates
            .iter()
            .find(|r| r.kind == kind)
            .with_context(|| format!("no {} window", kind.label()))
    };
    let ping = rate(Kind::Ping)?;
    let floor = "ping with a push's body: recorded, no task";
    let mut figures = Vec::new();
    for (kind, name) in [
        (Kind::Push, "push webhooks accepted"),
        (Kind::PullRequest, "pull_request webhooks accepted"),
        (
            Kind::PushWithoutStatuses,
            "push webhooks accepted, no commit statuses",
        ),
    ] {
        let r = rate(kind)?;
        figures.push(
            Figure::new(
                format!("{name} ({CLIENTS} clients)"),
                "deliveries/s",
                r.per_second(),
            )
            .floor(floor, ping.per_second()),
        );
    }
    let mut status: Vec<Duration> = timed.tasks.iter().map(|t| t.1).collect();
    let mut alert: Vec<Duration> = timed.tasks.iter().map(|t| t.2).collect();
    for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
        figures.push(
            Figure::new(
                format!("task end to its commit status at GitHub, {label}"),
                "ms",
                ms(quantile(&mut status, q).context("no timed task")?),
            )
            .floor(
                format!("its task_succeeded alert at a webhook, {label}"),
                ms(quantile(&mut alert, q).context("no timed task")?),
            ),
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let count = |n: usize| n as f64;
    figures.push(
        Figure::new(
            format!("commit statuses out of order ({TASKS} tasks)"),
            "statuses",
            count(timed.out_of_order),
        )
        .at_most(0.0),
    );
    figures.push(
        Figure::new(
            format!("commit statuses lost ({TASKS} tasks)"),
            "statuses",
            count(timed.lost),
        )
        .at_most(0.0),
    );
    // By design (a later state went first), shown for what it says about
    // the order the events are handled in.
    figures.push(Figure::new(
        format!("commit statuses superseded, never sent ({TASKS} tasks)"),
        "statuses",
        count(timed.superseded),
    ));
    for kind in [Kind::Push, Kind::PullRequest] {
        let r = rate(kind)?;
        let c = r.catch_up.as_ref().context("no catch-up measured")?;
        let name = if c.received < c.expected {
            format!(
                "{} window: its tasks' queued statuses at GitHub after it ({} of {} in {}s)",
                kind.label(),
                c.received,
                c.expected,
                CATCH_UP.as_secs()
            )
        } else {
            format!(
                "{} window: its tasks' queued statuses all at GitHub after it",
                kind.label()
            )
        };
        figures.push(Figure::new(name, "s", c.after.as_secs_f64()));
    }

    let details = json!({
        "webhooks": rates.iter().map(|r| {
            let mut latencies = r.latencies.clone();
            json!({
                "kind": r.kind.label(),
                "accepted": r.accepted,
                "seconds": r.elapsed.as_secs_f64(),
                "per_second": r.per_second(),
                "p50_ms": quantile(&mut latencies, 0.5).map(ms),
                "p99_ms": quantile(&mut latencies, 0.99).map(ms),
                "queued_statuses": r.catch_up.as_ref().map(|c| json!({
                    "expected": c.expected,
                    "received": c.received,
                    "last_after_window_s": c.after.as_secs_f64(),
                })),
            })
        }).collect::<Vec<_>>(),
        "statuses": {
            "tasks": timed.tasks.iter().map(|(task, status, alert)| json!({
                "task_id": task,
                "status_ms": ms(*status),
                "alert_ms": ms(*alert),
            })).collect::<Vec<_>>(),
            "out_of_order": timed.out_of_order,
            "lost": timed.lost,
            "superseded": timed.superseded,
            "repeated": timed.repeated,
            "unauthorized": timed.unauthorized,
            "anomalies": timed.anomalies,
        },
    });
    Ok(Report { figures, details })
}

#[cfg(test)]
mod tests;
