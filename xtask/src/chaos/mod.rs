//! `cargo xtask chaos [--pushes N] [--seconds S] [--debug]`: signed push
//! webhooks at a steady pace while every part of the system is killed with
//! SIGKILL and started again (the orchestrator, the gateway, a runner, the
//! notifier by the supervisor; RabbitMQ and Postgres on their own data),
//! then a wait for the drain and a report of what became of each push, task
//! and alert, with the requirements that fail the command (docs/chaos.md).
//!
//! It runs on a stack of its own (the bench's [`Stack`], supervised, with
//! two runners), so it runs beside `up` and `test`.

mod report;

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::pushes::{self, Sender, Sent};
use crate::bench::{Cancel, Stack};
use crate::git::LocalRepo;
use crate::services::{self, Options};
use crate::{infra, sys};

use report::{Alert, Outcome, Task};

/// The workflow the pushes trigger, and where its alerts go on the stack's
/// local server.
const WORKFLOW: &str = "chaos";
const ALERT_HOOK: &str = "/hooks/chaos";
/// Events sent to the webhook: each task has both (the stack throttles
/// no repeat).
const EVENTS: &str = "[task_started, task_succeeded]";

/// How many pushes, over how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub pushes: usize,
    pub over: Duration,
}

impl Size {
    /// `cargo xtask chaos` without options.
    pub const FULL: Self = Self {
        pushes: 1000,
        over: Duration::from_secs(30),
    };
    /// The run inside `cargo xtask test`.
    pub const SHORT: Self = Self {
        pushes: 200,
        over: Duration::from_secs(10),
    };
}

/// How long the drain may go without progress (no task finished, no alert
/// arrived) before the run gives up: a killed notifier's claimed deliveries
/// come back after a minute, a killed runner's tasks when their lease ends.
pub const STALL: Duration = Duration::from_secs(90);
/// The longest a drain may take in all.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The command line: `--pushes N --seconds S --debug`.
fn parse(args: &[String]) -> Result<(Size, bool)> {
    let mut size = Size::FULL;
    let mut debug = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .with_context(|| format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--pushes" => size.pushes = usize::try_from(value("--pushes")?)?,
            "--seconds" => size.over = Duration::from_secs(value("--seconds")?),
            "--debug" => debug = true,
            other => bail!(
                "unknown option {other:?}; usage: cargo xtask chaos [--pushes N] [--seconds S] [--debug]"
            ),
        }
    }
    Ok((size, debug))
}

pub fn run(args: &[String]) -> Result<()> {
    let (size, debug) = parse(args)?;
    let mut needs = infra::build_needs();
    needs.extend(infra::infra_needs(false));
    sys::ensure(&needs)?;
    let cancel = Cancel::install()?;
    if !debug {
        eprintln!("xtask: building the services (release)");
    }
    let bin = services::build(!debug)?;
    run_on(&bin, cancel, size)
}

/// The short run of `cargo xtask test`, on the debug binaries (which the
/// tests have just built).
pub fn short(cancel: Cancel) -> Result<()> {
    sys::ensure(&infra::infra_needs(false))?;
    eprintln!("xtask: chaos: the services' debug binaries, as the tests built them");
    let bin = services::build_as_tests()?;
    run_on(&bin, cancel, Size::SHORT)
}

fn run_on(bin: &std::path::Path, cancel: Cancel, size: Size) -> Result<()> {
    let began = Instant::now();
    let options = Options {
        runners: 2,
        supervise: true,
    };
    // Every push is to one branch: no alert may be throttled as a repeat.
    let mut stack = Stack::start(bin, cancel, options, &[("SLIPWAY_NOTIFY_THROTTLE", "0s")])?;
    let result = chaos(&mut stack, size);
    match &result {
        Ok(outcome) => {
            print!("{}", outcome.render());
            let failed = outcome.failures();
            if !failed.is_empty() {
                stack.keep();
                eprintln!(
                    "xtask: the services' logs are in {}",
                    stack.logs().display()
                );
            }
            eprintln!(
                "xtask: chaos took {:.1}s in all",
                began.elapsed().as_secs_f64()
            );
            if !failed.is_empty() {
                bail!("chaos requirements failed:\n  {}", failed.join("\n  "));
            }
        }
        Err(_) => stack.keep(),
    }
    result.map(|_| ())
}

/// A kill (and, for the infrastructure, a start) at a point of the pushes'
/// window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// SIGKILL to a service; the supervisor starts it again.
    Kill(&'static str),
    KillPostgres,
    StartPostgres,
    KillRabbit,
    StartRabbit,
}

/// How long Postgres and RabbitMQ stay down once killed.
const DOWN: Duration = Duration::from_secs(1);

/// When each part dies, as fractions of the window: one at a time, each
/// back before the next goes, Postgres and RabbitMQ down for a second
/// (RabbitMQ last: it takes seconds to start, and nothing is killed while
/// it does).
fn schedule(over: Duration) -> Vec<(Duration, Action)> {
    let at = |f: f64| over.mul_f64(f);
    let down = DOWN;
    vec![
        (at(0.08), Action::Kill("orchestrator")),
        (at(0.20), Action::Kill("gateway")),
        (at(0.32), Action::Kill("runner-1")),
        (at(0.44), Action::Kill("notifier")),
        (at(0.56), Action::KillPostgres),
        (at(0.56) + down, Action::StartPostgres),
        (at(0.72), Action::KillRabbit),
        (at(0.72) + down, Action::StartRabbit),
    ]
}

fn chaos(stack: &mut Stack, size: Size) -> Result<Outcome> {
    eprintln!(
        "xtask: chaos: {} pushes over {}s",
        size.pushes,
        size.over.as_secs()
    );
    let repo = LocalRepo::open(&stack.dir.join("repos"), WORKFLOW)?;
    repo.write("README.md", b"chaos\n")?;
    let base = repo.commit("base")?;
    let commits = pushes::commits(&repo.bare, &base, WORKFLOW, size.pushes)?;
    let url = repo.url();
    let workflow_id = stack.api.register(
        WORKFLOW,
        &format!(
            "name: {WORKFLOW}\nrepo: {url}\n\
             on:\n  push: {{ branches: [{WORKFLOW}] }}\n\
             steps:\n  - name: noop\n    run: \"true\"\n\
             notify:\n  - on: {EVENTS}\n    webhook: {{ url: \"{}{ALERT_HOOK}\" }}\n",
            stack.forge.url
        ),
    )?;
    let list = pushes::signed(
        stack.github_secret.as_bytes(),
        &url,
        "chaos",
        WORKFLOW,
        &commits,
    )?;
    let shas: Vec<String> = list.iter().map(|p| p.sha.clone()).collect();
    let gateway: SocketAddr = stack
        .gateway
        .parse()
        .context("the gateway's address is not host:port")?;
    let received_from = stack.forge.count();

    let sender = Sender::start(gateway, list, size.over)?;
    let (kills, gateway_down) = inflict(stack, &sender, size.over, gateway)?;
    let sent = sender.join()?;
    let pushed = Instant::now();
    eprintln!("xtask: chaos: every push answered or failed; waiting for the drain");

    let drain = drain(stack, workflow_id, &shas, &sent, received_from)?;
    let alerts = alerts(stack, &drain.tasks)?;
    let receipts: Vec<(String, Value)> = stack
        .forge
        .received(received_from)
        .into_iter()
        .filter(|r| r.path == ALERT_HOOK)
        .map(|r| (r.event_id.unwrap_or_default(), r.body))
        .collect();
    Ok(Outcome {
        size,
        shas,
        sent,
        gateway_down,
        kills,
        tasks: drain.tasks,
        drained_after: drain.done.map(|at| at.saturating_duration_since(pushed)),
        alerts,
        receipts,
        restarts: stack.restarts(),
    })
}

/// Runs the [`schedule`] while the pushes go, supervising the services;
/// returns what was done when (since the first push) and the windows in
/// which the gateway did not accept connections.
#[allow(clippy::type_complexity)]
fn inflict(
    stack: &mut Stack,
    sender: &Sender,
    over: Duration,
    gateway: SocketAddr,
) -> Result<(Vec<(Duration, String)>, Vec<(Duration, Duration)>)> {
    let mut plan = schedule(over).into_iter().peekable();
    let mut kills = Vec::new();
    let mut windows = Vec::new();
    let mut gateway_down_since: Option<Duration> = None;
    // An instance killed stays down for a second at least, however late
    // its kill came.
    let mut down_until = Duration::ZERO;
    while !sender.finished() || plan.peek().is_some() || gateway_down_since.is_some() {
        stack.check()?;
        let now = sender.start.elapsed();
        if let Some(since) = gateway_down_since
            && TcpStream::connect_timeout(&gateway, Duration::from_millis(200)).is_ok()
        {
            windows.push((since, sender.start.elapsed()));
            gateway_down_since = None;
        }
        while let Some((_, action)) = plan.next_if(|(at, _)| *at <= now && down_until <= now) {
            let at = sender.start.elapsed();
            match action {
                Action::Kill(name) => {
                    stack.kill(name)?;
                    if name == "gateway" {
                        gateway_down_since = Some(at);
                    }
                }
                Action::KillPostgres => stack.infra().kill_postgres()?,
                Action::StartPostgres => stack.infra().start_postgres_again()?,
                Action::KillRabbit => stack.infra().kill_rabbit()?,
                Action::StartRabbit => stack.infra().start_rabbit_again()?,
            }
            let end = sender.start.elapsed();
            if matches!(action, Action::KillPostgres | Action::KillRabbit) {
                down_until = end + DOWN;
            }
            let took = end.saturating_sub(at);
            let what = if took > Duration::from_millis(500) {
                format!("{} (took {:.1}s)", describe(action), took.as_secs_f64())
            } else {
                describe(action)
            };
            eprintln!("xtask: chaos: {:6.2}s {what}", at.as_secs_f64());
            kills.push((at, what));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((kills, windows))
}

fn describe(action: Action) -> String {
    match action {
        Action::Kill(name) => format!("kill -9 {name}"),
        Action::KillPostgres => "kill -9 Postgres".to_owned(),
        Action::StartPostgres => "Postgres started again".to_owned(),
        Action::KillRabbit => "kill -9 RabbitMQ".to_owned(),
        Action::StartRabbit => "RabbitMQ started again".to_owned(),
    }
}

/// The workflow's tasks when the drain ended, and when it did (`None`:
/// not by the deadline).
struct Drain {
    tasks: Vec<Task>,
    done: Option<Instant>,
}

/// Waits until every accepted push has its task, no task is pending or
/// running, and the webhook has every alert fired for them (the
/// `task_succeeded` of each task that succeeded first), as long as that
/// makes progress ([`STALL`], [`DRAIN_LIMIT`]).
fn drain(
    stack: &Stack,
    workflow_id: u64,
    shas: &[String],
    sent: &[Sent],
    received_from: usize,
) -> Result<Drain> {
    let limit = Instant::now() + DRAIN_LIMIT;
    let mut progress = Instant::now();
    let accepted: HashSet<&str> = sent
        .iter()
        .filter(|s| s.accepted())
        .filter_map(|s| shas.get(s.index).map(String::as_str))
        .collect();
    let mut last = String::new();
    loop {
        stack.check()?;
        let tasks = list_tasks(stack, workflow_id)?;
        let commits: HashSet<&str> = tasks.iter().map(|t| t.commit.as_str()).collect();
        let missing = accepted.iter().filter(|s| !commits.contains(*s)).count();
        let unfinished = tasks
            .iter()
            .filter(|t| t.status == "pending" || t.status == "running")
            .count();
        let alerted: HashSet<u64> = stack
            .forge
            .received(received_from)
            .iter()
            .filter(|r| r.path == ALERT_HOOK && r.body["type"] == "task_succeeded")
            .filter_map(|r| r.body["task_id"].as_u64())
            .collect();
        let unalerted = tasks
            .iter()
            .filter(|t| t.status == "success" && !alerted.contains(&t.id))
            .count();
        let mut now = format!(
            "{missing} accepted pushes without a task, {unfinished} tasks pending or running, {unalerted} succeeded without their alert"
        );
        if missing == 0 && unfinished == 0 && unalerted == 0 {
            // Every other alert too: one a killed notifier had claimed
            // comes back when its claim ends.
            let undelivered = undelivered(stack, &tasks, received_from)?;
            if undelivered == 0 {
                return Ok(Drain {
                    tasks,
                    done: Some(Instant::now()),
                });
            }
            now.push_str(&format!(", {undelivered} other alerts not received yet"));
        }
        if now != last {
            eprintln!("xtask: chaos: {now}");
            last = now;
            progress = Instant::now();
        }
        if progress.elapsed() > STALL || Instant::now() > limit {
            eprintln!("xtask: chaos: not drained ({last})");
            return Ok(Drain { tasks, done: None });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// How many of the alerts fired for the tasks (throttled ones aside) the
/// webhook has not received.
fn undelivered(stack: &Stack, tasks: &[Task], received_from: usize) -> Result<usize> {
    let received: HashSet<String> = stack
        .forge
        .received(received_from)
        .into_iter()
        .filter(|r| r.path == ALERT_HOOK)
        .filter_map(|r| r.event_id)
        .collect();
    Ok(alerts(stack, tasks)?
        .iter()
        .filter(|a| a.status != "throttled" && !received.contains(&a.event_id))
        .count())
}

/// Every task of the workflow, newest first.
fn list_tasks(stack: &Stack, workflow_id: u64) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut path = format!("/api/tasks?workflow_id={workflow_id}&limit=500");
        if let Some(id) = before {
            path.push_str(&format!("&before={id}"));
        }
        let page = stack.api.get(&path)?;
        let page = page.as_array().context("the task list is not an array")?;
        for t in page {
            tasks.push(Task {
                id: t["id"].as_u64().context("a task without an id")?,
                commit: t["commit"].as_str().unwrap_or_default().to_owned(),
                status: t["status"].as_str().unwrap_or_default().to_owned(),
                error: t["error"].as_str().map(str::to_owned),
            });
        }
        match page.last().and_then(|t| t["id"].as_u64()) {
            Some(id) if page.len() == 500 => before = Some(id),
            _ => return Ok(tasks),
        }
    }
}

/// The alerts fired for the tasks (`GET /api/alerts?task_id=`), by id.
fn alerts(stack: &Stack, tasks: &[Task]) -> Result<Vec<Alert>> {
    let mut by_id: BTreeMap<i64, Alert> = BTreeMap::new();
    for t in tasks {
        let list = stack
            .api
            .get(&format!("/api/alerts?task_id={}&limit=500", t.id))?;
        for a in list.as_array().context("the alert list is not an array")? {
            let id = a["id"].as_i64().context("an alert without an id")?;
            by_id.insert(
                id,
                Alert {
                    event_id: a["event_id"].as_str().unwrap_or_default().to_owned(),
                    kind: a["type"].as_str().unwrap_or_default().to_owned(),
                    task_id: t.id,
                    status: a["status"].as_str().unwrap_or_default().to_owned(),
                },
            );
        }
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Action, Size, parse, schedule};

    #[test]
    fn the_size_comes_from_the_command_line() {
        assert_eq!(parse(&[]).ok(), Some((Size::FULL, false)));
        let args: Vec<String> = ["--pushes", "50", "--seconds", "5", "--debug"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            parse(&args).ok(),
            Some((
                Size {
                    pushes: 50,
                    over: Duration::from_secs(5)
                },
                true
            ))
        );
        assert!(parse(&["--pushes".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--fast".to_owned()]).is_err());
    }

    #[test]
    fn every_part_dies_once_within_the_window_in_order() {
        let over = Duration::from_secs(30);
        let plan = schedule(over);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(plan.iter().all(|(at, _)| *at < over));
        for name in ["orchestrator", "gateway", "runner-1", "notifier"] {
            assert_eq!(
                plan.iter()
                    .filter(|(_, a)| *a == Action::Kill(name))
                    .count(),
                1
            );
        }
        assert!(plan.iter().any(|(_, a)| *a == Action::StartPostgres));
        assert!(plan.iter().any(|(_, a)| *a == Action::StartRabbit));
    }
}
