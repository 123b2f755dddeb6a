//! The `ingest` suite: signed pushes accepted per second, and their answer
//! times, from 8 and then 32 concurrent senders (closed loop: each sends
//! its next push when the last is answered), every accepted push counted
//! among the stored tasks. Beside each window, in the same run:
//!
//! - the gateway alone: the same pushes, signed with a wrong key, refused
//!   at the signature (`401`) before anything reaches the orchestrator;
//! - Postgres alone: `pgbench` committing one 1 KiB `INSERT` per
//!   transaction from as many clients, on the same durable cluster.
//!
//! Then each service's resident memory after the load, beside its own
//! before it. The workflow asks for a runner label no runner has, so its
//! tasks stay queued and nothing runs them.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::pushes::{self, Answer, Push, Sent};
use super::spool::spool_depth;
use super::{Figure, Report, Stack, Suite, Target, percentile};
use crate::{infra, sys};

pub struct Ingest;

/// The senders of each window.
const SENDERS: [usize; 2] = [8, 32];
/// How long pushes are sent in each window.
const WINDOW: Duration = Duration::from_secs(10);
/// How long the floors are measured.
const FLOOR_WINDOW: Duration = Duration::from_secs(5);
/// Pushes made for a window, before it: more than its 10 s take at the
/// target rate (the window ends early should they run out).
const PUSHES: usize = 40_000;
/// Wrongly signed pushes made for a floor window, sent over and over.
const FLOOR_PUSHES: usize = 1_000;
const WORKFLOW: &str = "ingest";
const REPO: &str = "https://github.com/bench/ingest.git";
/// The services whose memory is reported.
pub const SERVICES: [&str; 4] = ["orchestrator", "gateway", "runner", "notifier"];

impl Suite for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn about(&self) -> &'static str {
        "signed pushes stored per second at 8 and 32 senders, beside the gateway alone and an INSERT-COMMIT loop on the same Postgres"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let workflow_id = stack.api.register(
            WORKFLOW,
            &format!(
                "name: {WORKFLOW}\nrepo: {REPO}\nruns_on: [ingest-bench]\n\
                 on:\n  push: {{ branches: [main] }}\n\
                 steps:\n  - name: noop\n    run: \"true\"\n"
            ),
        )?;
        let addr: SocketAddr = stack.gateway.parse().context("the gateway's address")?;
        let before = memory(stack)?;
        let mut figures = Vec::new();
        let mut details = Vec::new();
        let mut accepted_total = 0usize;
        for senders in SENDERS {
            stack.check()?;
            let run = sys::random_hex(4);
            eprintln!(
                "xtask: ingest: {senders} senders, the gateway alone for {}s",
                FLOOR_WINDOW.as_secs()
            );
            // Refused at the signature whatever they are: a few, over and over.
            let wrong = made(FLOOR_PUSHES, b"not the secret", &run, senders, "floor")?;
            let refused = pushes::closed_loop(addr, senders, FLOOR_WINDOW, wrong, true)?;
            let gateway = Window::of(&refused, |a| matches!(a, Answer::Status { code: 401, .. }));
            if gateway.other > 0 {
                bail!(
                    "{} of {} wrongly signed pushes were not refused with 401",
                    gateway.other,
                    refused.len()
                );
            }
            eprintln!(
                "xtask: ingest: {senders} senders, signed pushes for {}s (made first)",
                WINDOW.as_secs()
            );
            let signed = made(
                PUSHES,
                stack.github_secret.as_bytes(),
                &run,
                senders,
                "push",
            )?;
            eprintln!("xtask: ingest: {senders} senders, sending");
            let sent = pushes::closed_loop(addr, senders, WINDOW, signed, false)?;
            let stored = Window::of(&sent, stored_at_once);
            let spooled = sent
                .iter()
                .filter(|s| s.accepted() && !stored_at_once(&s.answer))
                .count();
            accepted_total += stored.count + spooled;
            eprintln!("xtask: ingest: pgbench, {senders} clients");
            let postgres = pgbench(stack, senders, FLOOR_WINDOW)?;

            let alone = "gateway alone: refused at the signature";
            let pg = "Postgres alone: INSERT + COMMIT";
            let rate = format!("pushes stored per second, {senders} senders");
            let mut rate_alone =
                Figure::new(&rate, "/s", stored.per_second).floor(alone, gateway.per_second);
            let mut p99 = Figure::new(
                format!("push answer p99, {senders} senders"),
                "ms",
                stored.p(0.99),
            )
            .floor(format!("{pg}, p99"), postgres.p(0.99));
            if senders == 32 {
                rate_alone = rate_alone.target(Target::AtLeast(3000.0));
                p99 = p99.target(Target::AtMost(25.0));
            }
            figures.extend([
                rate_alone,
                Figure::new(&rate, "/s", stored.per_second).floor(pg, postgres.per_second),
                Figure::new(
                    format!("push answer p50, {senders} senders"),
                    "ms",
                    stored.p(0.5),
                )
                .floor(format!("{alone}, p50"), gateway.p(0.5)),
                p99,
                Figure::new(
                    format!("pushes answered from the spool, {senders} senders"),
                    "requests",
                    spooled as f64,
                ),
                Figure::new(
                    format!("pushes not accepted, {senders} senders"),
                    "requests",
                    stored.other.saturating_sub(spooled) as f64,
                )
                .at_most(0.0),
            ]);
            details.push(json!({
                "senders": senders,
                "pushes": sent.len(),
                "ran_out_of_pushes": sent.len() >= PUSHES,
                "stored_at_once": stored.count,
                "spooled": spooled,
                "pushes_per_second": stored.per_second,
                "answer_ms": pushes::histogram(&stored.ms),
                "gateway_alone": { "answers": refused.len(), "per_second": gateway.per_second,
                                   "answer_ms": pushes::histogram(&gateway.ms) },
                "postgres_alone": { "transactions": postgres.count, "per_second": postgres.per_second,
                                    "commit_ms": pushes::histogram(&postgres.ms) },
                "failures": failures(&sent),
            }));
        }

        // Spooled pushes are handed over within seconds; then every
        // accepted push must be a task.
        let tasks = stack.wait(
            "every accepted push stored",
            Duration::from_secs(120),
            || {
                let n: usize = stack
                .sql(&format!(
                    "SELECT count(DISTINCT commit_sha) FROM tasks WHERE workflow_id = {workflow_id}"
                ))?
                .parse()?;
                Ok((n >= accepted_total || spool_depth(stack)? == 0).then_some(n))
            },
        )?;
        figures.push(
            Figure::new(
                "accepted pushes without their task",
                "requests",
                accepted_total.saturating_sub(tasks) as f64,
            )
            .at_most(0.0),
        );
        let after = memory(stack)?;
        for ((name, was), (_, now)) in before.iter().zip(&after) {
            figures.push(
                Figure::new(format!("{name} resident after the load"), "MB", *now)
                    .floor("before it", *was),
            );
        }
        Ok(Report {
            figures,
            details: json!({
                "window_s": WINDOW.as_secs(),
                "floor_window_s": FLOOR_WINDOW.as_secs(),
                "windows": details,
                "accepted": accepted_total,
                "tasks": tasks,
                "resident_mb_before": before.iter().map(|(n, v)| json!({"service": n, "mb": v})).collect::<Vec<_>>(),
                "resident_mb_after": after.iter().map(|(n, v)| json!({"service": n, "mb": v})).collect::<Vec<_>>(),
            }),
        })
    }
}

/// A push answered `202` with its task, rather than kept in the spool.
fn stored_at_once(answer: &Answer) -> bool {
    matches!(answer, Answer::Status { code: 202, queued: false, task_ids } if !task_ids.is_empty())
}

/// `n` pushes of made-up commits (nothing runs them), signed with
/// `secret`, each its own delivery.
fn made(n: usize, secret: &[u8], run: &str, senders: usize, kind: &str) -> Result<Vec<Push>> {
    // 40 hex digits: the run's 8, the senders' 4, the push's 28.
    let commit = format!("{run}{senders:04x}");
    (0..n)
        .map(|i| {
            Push::new(
                secret,
                REPO,
                format!("ingest-{kind}-{run}-{senders}-{i}"),
                "main",
                &format!("{commit}{i:028x}"),
            )
        })
        .collect()
}

/// What a window of answers or transactions measured.
struct Window {
    /// How many went as wanted.
    count: usize,
    /// How many did not.
    other: usize,
    /// Those wanted over the time from the first sent to the last answered.
    per_second: f64,
    /// The time of each wanted one, ms.
    ms: Vec<f64>,
}

impl Window {
    fn of(sent: &[Sent], wanted: impl Fn(&Answer) -> bool) -> Self {
        let good: Vec<&Sent> = sent.iter().filter(|s| wanted(&s.answer)).collect();
        let first = sent.iter().map(|s| s.sent).min().unwrap_or_default();
        let last = sent.iter().map(|s| s.done).max().unwrap_or_default();
        Self {
            count: good.len(),
            other: sent.len() - good.len(),
            per_second: good.len() as f64 / last.saturating_sub(first).as_secs_f64().max(1e-9),
            ms: good
                .iter()
                .map(|s| s.done.saturating_sub(s.sent).as_secs_f64() * 1000.0)
                .collect(),
        }
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.ms, q)
    }
}

/// Why pushes were not accepted, by kind, with an example each.
fn failures(sent: &[Sent]) -> Value {
    let mut kinds: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    for s in sent.iter().filter(|s| !s.accepted()) {
        let (kind, example) = match &s.answer {
            Answer::Status { code, .. } => (format!("status {code}"), String::new()),
            Answer::None { kind, why } => (format!("{kind:?}"), why.clone()),
        };
        kinds.entry(kind).or_insert((0, example)).0 += 1;
    }
    json!(
        kinds
            .into_iter()
            .map(|(k, (n, e))| json!({"kind": k, "count": n, "example": e}))
            .collect::<Vec<_>>()
    )
}

/// Each service's resident memory, MB.
pub fn memory(stack: &Stack) -> Result<Vec<(&'static str, f64)>> {
    SERVICES
        .iter()
        .map(|name| Ok((*name, stack.rss(name)?)))
        .collect()
}

/// `pgbench` on the stack's Postgres for `over`: `clients` connections,
/// each committing one `INSERT` of a 1 KiB row per transaction (autocommit);
/// every transaction's time from its per-transaction log.
fn pgbench(stack: &Stack, clients: usize, over: Duration) -> Result<Window> {
    let bin = infra::pg_bin().context("no Postgres programs in /usr/lib/postgresql")?;
    stack.sql(
        "CREATE TABLE IF NOT EXISTS bench_floor \
         (id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let dir = stack.dir.join(format!("pgbench-{clients}"));
    fs::create_dir_all(&dir)?;
    let script = dir.join("insert.sql");
    fs::write(
        &script,
        "INSERT INTO bench_floor (body) VALUES (repeat('x', 1024));\n",
    )?;
    let threads = clients.min(2).to_string();
    let began = Instant::now();
    let out = sys::output(
        Command::new(bin.join("pgbench"))
            .args(["-n", "-M", "prepared", "-l", "--log-prefix"])
            .arg(dir.join("tx"))
            .arg("-f")
            .arg(&script)
            .args(["-c", &clients.to_string(), "-j", &threads])
            .args(["-T", &over.as_secs().max(1).to_string()])
            .arg(stack.database_url())
            .current_dir(&dir),
    )?;
    let took = began.elapsed();
    let ms = transaction_times(&dir)?;
    stack.sql("DROP TABLE bench_floor")?;
    let per_second = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(ms.len() as f64 / took.as_secs_f64());
    Ok(Window {
        count: ms.len(),
        other: 0,
        per_second,
        ms,
    })
}

/// The times (ms) in pgbench's per-transaction logs in `dir`: the third
/// field of each line, in microseconds.
fn transaction_times(dir: &Path) -> Result<Vec<f64>> {
    let mut ms = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tx."));
        if !is_log {
            continue;
        }
        for line in fs::read_to_string(&path)?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
            {
                ms.push(us / 1000.0);
            }
        }
    }
    if ms.is_empty() {
        bail!("pgbench logged no transaction in {}", dir.display());
    }
    Ok(ms)
}
