//! The `prune` suite: how fast the pruner deletes a large history, and what
//! that costs the webhooks arriving meanwhile. A workflow gets 100,000
//! finished tasks seeded by SQL (each with three steps, two log chunks of
//! 512 bytes and three published events), first young; push webhooks at a
//! steady rate measure the floor; then one statement moves the seeded rows
//! 30 days back and the same load runs until the pruner (every second on the
//! bench stack) has deleted them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::forges::{Delivery, Repo, created_task, push_payload};
use super::load::quantile;
use super::{Figure, Report, Stack, Suite};
use crate::{http, sys};

pub struct Prune;

/// Finished tasks seeded.
const TASKS: u32 = 100_000;
/// What each has: steps, log chunks (of [`CHUNK`] bytes) and events.
const STEPS: u32 = 3;
const CHUNKS: u32 = 2;
const CHUNK: u32 = 512;
const EVENTS: u32 = 3;
/// Push webhooks per second, in both windows.
const RATE: u32 = 25;
/// The window without pruning.
const FLOOR_WINDOW: Duration = Duration::from_secs(20);
/// How often the suite looks whether the pruner is done.
const POLL: Duration = Duration::from_secs(1);
/// The longest the pruning may take before the suite fails.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(900);

const WORKFLOW: &str = "bench-prune";
const REPO_URL: &str = "https://github.com/bench/prune.git";
/// A label no runner has: the webhooks' tasks stay pending (and are never
/// pruned), so that nothing but the webhooks and the pruner loads the
/// machine.
const NO_RUNNER: &str = "bench-no-runner";

impl Suite for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn about(&self) -> &'static str {
        "the pruner's rate over 100,000 old tasks, and push webhooks' p50 and p99 meanwhile against the same load with nothing to prune"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let workflow = stack.api.register(
            WORKFLOW,
            &format!(
                "name: {WORKFLOW}\nrepo: {REPO_URL}\nruns_on: [{NO_RUNNER}]\n\
                 steps:\n  - name: noop\n    run: \"true\"\n\
                 retention:\n  days: 1\n  keep_last: 0\n"
            ),
        )?;
        eprintln!("xtask: bench prune: seeding {TASKS} finished tasks");
        let seeding = Instant::now();
        seed(stack, workflow)?;
        let seeded = rows(stack, workflow)?;
        eprintln!(
            "xtask: bench prune: {seeded} rows seeded in {:.1}s",
            seeding.elapsed().as_secs_f64()
        );

        eprintln!(
            "xtask: bench prune: {}s of push webhooks, nothing to prune",
            FLOOR_WINDOW.as_secs()
        );
        let floor = Webhooks::start(stack, "floor")?;
        std::thread::sleep(FLOOR_WINDOW);
        stack.check()?;
        let floor = floor.stop()?;
        if finished(stack, workflow)? != u64::from(TASKS) {
            bail!("the pruner removed young tasks");
        }

        eprintln!("xtask: bench prune: the seeded tasks made 30 days old; pruning");
        let during = Webhooks::start(stack, "pruning")?;
        let aged = Instant::now();
        age(stack, workflow)?;
        let aged_in = aged.elapsed();
        // Polled once a second: counting the tasks left is load the floor
        // window does not have.
        let pruned_in = loop {
            std::thread::sleep(POLL);
            stack.check()?;
            if finished(stack, workflow)? == 0 {
                break aged.elapsed();
            }
            if aged.elapsed() > PRUNE_TIMEOUT {
                bail!("the pruner: not done after {}s", PRUNE_TIMEOUT.as_secs());
            }
        };
        let during = during.stop()?;
        let left = rows(stack, workflow)?;
        if left != 0 {
            bail!("{left} rows of the pruned tasks are left");
        }
        let last = stack.api.get(&format!("/api/workflows/{workflow}"))?["retention"].clone();
        if last["last_pruned"]["tasks"] != u64::from(TASKS) {
            bail!("the workflow's last pruning says {last}");
        }

        let seconds = pruned_in.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let (rows_per_s, tasks_per_s) = (seeded as f64 / seconds, f64::from(TASKS) / seconds);
        let mut floor_ms = floor.latencies();
        let mut during_ms = during.latencies();
        let q = |values: &mut Vec<Duration>, q: f64| -> f64 {
            quantile(values, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let figures = vec![
            Figure::new(
                format!("rows pruned per second ({TASKS} tasks, {seeded} rows)"),
                "rows/s",
                rows_per_s,
            ),
            Figure::new("tasks pruned per second", "tasks/s", tasks_per_s),
            Figure::new("time to prune them all", "s", seconds),
            Figure::new(
                format!("push webhook p50 while pruning ({RATE}/s)"),
                "ms",
                q(&mut during_ms, 0.5),
            )
            .floor("same load, nothing to prune", q(&mut floor_ms, 0.5)),
            Figure::new(
                format!("push webhook p99 while pruning ({RATE}/s)"),
                "ms",
                q(&mut during_ms, 0.99),
            )
            .floor("same load, nothing to prune", q(&mut floor_ms, 0.99)),
            #[allow(clippy::cast_precision_loss)]
            Figure::new(
                "push webhooks failed while pruning",
                "requests",
                during.failed as f64,
            )
            .at_most(0.0),
        ];
        Ok(Report {
            figures,
            details: json!({
                "tasks": TASKS,
                "rows": seeded,
                "aging_s": aged_in.as_secs_f64(),
                "pruned_s": seconds,
                "webhooks": {"floor": floor.summary(), "pruning": during.summary()},
                "retention": last,
            }),
        })
    }
}

/// Seeds the finished tasks of `workflow`, young, in one statement.
fn seed(stack: &Stack, workflow: u64) -> Result<()> {
    stack.sql(&format!(
        "WITH t AS (
             INSERT INTO tasks (workflow_id, workflow_version, status, trigger, branch,
                                commit_sha, message, author, created_at, started_at,
                                finished_at, queued_at, runs_on)
             SELECT {workflow}, (SELECT version FROM workflows WHERE id = {workflow}),
                    'success', 'push', 'main', md5(g::text) || substr(md5(g::text), 1, 8),
                    'change ' || g, 'octocat', now(), now(), now(), now(), '{NO_RUNNER}'
             FROM generate_series(1, {TASKS}) g RETURNING id),
         s AS (
             INSERT INTO steps (task_id, position, name, status, exit_code, started_at, finished_at)
             SELECT id, p, 'step ' || p, 'success', 0, now(), now()
             FROM t, generate_series(0, {STEPS} - 1) p RETURNING 1),
         l AS (
             INSERT INTO log_chunks (task_id, position, data)
             SELECT id, p, convert_to(repeat(md5(id::text || '.' || p), {CHUNK} / 32), 'UTF8')
             FROM t, generate_series(0, {CHUNKS} - 1) p RETURNING 1)
         INSERT INTO events (id, type, workflow_id, task_id, branch, summary, created_at, published_at)
         SELECT gen_random_uuid()::text, (ARRAY['task_created', 'task_started', 'task_succeeded'])[k],
                {workflow}, id, 'main', 'seeded', now(), now()
         FROM t, generate_series(1, {EVENTS}) k"
    ))?;
    stack.sql("ANALYZE")?;
    Ok(())
}

/// Moves the seeded tasks and their events 30 days back, in one statement.
fn age(stack: &Stack, workflow: u64) -> Result<()> {
    let back = "interval '30 days'";
    stack.sql(&format!(
        "WITH t AS (
             UPDATE tasks SET created_at = created_at - {back}, started_at = started_at - {back},
                 finished_at = finished_at - {back}, queued_at = queued_at - {back}
             WHERE workflow_id = {workflow} AND status = 'success' RETURNING id)
         UPDATE events SET created_at = created_at - {back}, published_at = published_at - {back}
         WHERE task_id IN (SELECT id FROM t)"
    ))?;
    Ok(())
}

/// The finished (seeded) tasks of `workflow` left.
fn finished(stack: &Stack, workflow: u64) -> Result<u64> {
    number(&stack.sql(&format!(
        "SELECT count(*) FROM tasks WHERE workflow_id = {workflow} AND status = 'success'"
    ))?)
}

/// The seeded tasks' rows: the tasks and their steps, log chunks and events.
fn rows(stack: &Stack, workflow: u64) -> Result<u64> {
    let seeded =
        format!("SELECT id FROM tasks WHERE workflow_id = {workflow} AND status = 'success'");
    number(&stack.sql(&format!(
        "SELECT (SELECT count(*) FROM ({seeded}) t)
              + (SELECT count(*) FROM steps WHERE task_id IN ({seeded}))
              + (SELECT count(*) FROM log_chunks WHERE task_id IN ({seeded}))
              + (SELECT count(*) FROM events WHERE task_id IN ({seeded}))"
    ))?)
}

fn number(text: &str) -> Result<u64> {
    text.trim()
        .parse()
        .with_context(|| format!("not a count: {text:?}"))
}

/// Push webhooks sent at [`RATE`] a second, each on a thread of its own so
/// that a slow answer delays no later request.
struct Webhooks {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<Result<Vec<JoinHandle<Sample>>>>>,
}

/// One delivery: how long its answer took, and whether it was accepted.
struct Sample {
    took: Duration,
    accepted: bool,
}

/// What a window of webhooks came to.
struct Answered {
    samples: Vec<Sample>,
    failed: usize,
}

impl Webhooks {
    fn start(stack: &Stack, window: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (gateway, secret) = (stack.gateway.clone(), stack.github_secret.clone());
        let (stopped, run) = (stop.clone(), format!("{window}-{}", sys::random_hex(4)));
        let sender = std::thread::spawn(move || {
            let repo = Repo {
                full_name: "bench/prune",
                clone_url: REPO_URL,
            };
            let start = Instant::now();
            let mut sent = Vec::new();
            for n in 0u32.. {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let at = start + Duration::from_secs(1) * n / RATE;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let sha = sys::random_hex(20);
                let mut payload = push_payload(&repo, "refs/heads/main", &sha, "change");
                // No commit statuses: the notifier stays out of it.
                if let Some(repository) = payload["repository"].as_object_mut() {
                    repository.remove("full_name");
                }
                let delivery =
                    Delivery::new(secret.as_bytes(), "push", format!("{run}-{n}"), &payload)?;
                let gateway = gateway.clone();
                sent.push(std::thread::spawn(move || {
                    let began = Instant::now();
                    let answer = http::request(
                        &gateway,
                        "POST",
                        "/api/webhooks/github",
                        &delivery.headers(),
                        &delivery.body,
                    );
                    let accepted = answer.is_ok_and(|a| {
                        let body: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
                        created_task(a.status, &body).is_ok()
                    });
                    Sample {
                        took: began.elapsed(),
                        accepted,
                    }
                }));
            }
            Ok(sent)
        });
        Ok(Self {
            stop,
            sender: Some(sender),
        })
    }

    fn stop(mut self) -> Result<Answered> {
        self.stop.store(true, Ordering::SeqCst);
        let sender = self.sender.take().context("stopped twice")?;
        let sent = sender
            .join()
            .map_err(|_| anyhow::anyhow!("the webhook sender panicked"))??;
        let samples: Vec<Sample> = sent
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a webhook request panicked"))
            })
            .collect::<Result<_>>()?;
        let failed = samples.iter().filter(|s| !s.accepted).count();
        Ok(Answered { samples, failed })
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Answered {
    fn latencies(&self) -> Vec<Duration> {
        self.samples.iter().map(|s| s.took).collect()
    }

    fn summary(&self) -> Value {
        let mut all = self.latencies();
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        json!({
            "sent": self.samples.len(),
            "failed": self.failed,
            "p50_ms": ms(quantile(&mut all, 0.5)),
            "p99_ms": ms(quantile(&mut all, 0.99)),
            "max_ms": ms(all.last().copied()),
        })
    }
}
