//! Suites of trivial tasks (steps that run `true` on the runner's host),
//! which time Slipway itself rather than the work:
//!
//! - `dispatch`: a push to its task started, its clone done and its first
//!   step started, one push at a time;
//! - `steps`: the time per step in a task of 20, against `sh -c true` run
//!   20 times by one process;
//! - `throughput`: 200 pushes to 200 finished tasks with one runner at
//!   concurrency 4, against the same 200 scripts run by a pool of 4.
//!
//! Times come from the database (microseconds) and the bench's wall clock
//! on the same machine.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::pushes::{self, Answer, OneByOne, Push, Sender};
use super::{Figure, Report, Stack, Suite, Target, percentile};
use crate::git::LocalRepo;

pub struct Dispatch;
pub struct Steps;
pub struct Throughput;

/// Pushes timed one at a time by `dispatch`.
const DISPATCHES: usize = 30;
/// Steps of the `steps` task, and how many of its tasks run.
const STEPS: usize = 20;
const STEP_TASKS: usize = 10;
/// Tasks of `throughput`, and the slots of the pool its floor runs them in
/// (the runner's `SLIPWAY_RUNNER_CONCURRENCY` in the bench stack).
const TASKS: usize = 200;
const POOL: usize = 4;

impl Suite for Dispatch {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn about(&self) -> &'static str {
        "a push to its task started, its clone done and its first step started, against forking sh -c true"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let trivial = Trivial::new(stack, "dispatch", 1, DISPATCHES)?;
        let addr: SocketAddr = stack.gateway.parse().context("the gateway's address")?;
        let mut answered = Vec::new();
        let mut started = Vec::new();
        let mut cloned = Vec::new();
        let mut first_step = Vec::new();
        let sender = OneByOne::new(addr)?;
        for push in trivial.pushes(stack)? {
            let (at, took, answer) = sender.send(&push);
            answered.push(took.as_secs_f64() * 1000.0);
            let pushed = micros(at);
            let id = created(Some(&answer))?;
            let task = finished(stack, &[id])?.pop().context("no task")?;
            task.succeeded()?;
            let clone = task.step("clone")?;
            let first = task.steps.get(1).context("no first step")?;
            started.push(ms(task.started - pushed));
            cloned.push(ms(clone.finished - pushed));
            first_step.push(ms(first.started - pushed));
        }
        let fork = spawn_times(200);
        let floor = "fork and wait for sh -c true";
        let mut figures = Vec::new();
        for (name, values) in [
            ("push answered (stored)", &answered),
            ("push to task started", &started),
            ("push to clone done", &cloned),
            ("push to first step started", &first_step),
        ] {
            for (q, label) in [(0.5, "p50"), (0.9, "p90")] {
                let mut f = Figure::new(format!("{name}, {label}"), "ms", percentile(values, q))
                    .floor(format!("{floor}, {label}"), percentile(&fork, q));
                if name == "push to first step started" && label == "p50" {
                    f = f.target(Target::AtMost(15.0));
                }
                figures.push(f);
            }
        }
        Ok(Report {
            figures,
            details: json!({
                "pushes": DISPATCHES,
                "started_ms": started,
                "cloned_ms": cloned,
                "first_step_ms": first_step,
                "fork_ms": pushes::histogram(&fork),
            }),
        })
    }
}

impl Suite for Steps {
    fn name(&self) -> &'static str {
        "steps"
    }

    fn about(&self) -> &'static str {
        "the time per trivial step in a task of 20, against sh -c true run 20 times by one process"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let trivial = Trivial::new(stack, "steps", STEPS, 0)?;
        let mut per_step = Vec::new();
        let mut floor = Vec::new();
        let mut disorder = 0usize;
        for _ in 0..STEP_TASKS {
            let id = stack.api.run(trivial.id, None)?;
            let task = finished(stack, &[id])?.pop().context("no task")?;
            task.succeeded()?;
            let user = &task.steps[1..];
            if user.len() != STEPS {
                bail!(
                    "task {id} has {} steps after its clone, not {STEPS}",
                    user.len()
                );
            }
            disorder += user
                .windows(2)
                .filter(|w| w[1].started < w[0].finished)
                .count();
            let span = user[STEPS - 1].finished - user[0].started;
            per_step.push(ms(span) / STEPS as f64);
            let began = Instant::now();
            for _ in 0..STEPS {
                sh_true()?;
            }
            floor.push(began.elapsed().as_secs_f64() * 1000.0 / STEPS as f64);
        }
        let (step, bare) = (percentile(&per_step, 0.5), percentile(&floor, 0.5));
        let figures = vec![
            Figure::new("time per step, p50", "ms", step).floor("sh -c true, one process", bare),
            Figure::new("overhead per step, p50", "ms", step - bare).target(Target::AtMost(2.0)),
            Figure::new("time per step, p90", "ms", percentile(&per_step, 0.9))
                .floor("sh -c true, one process", percentile(&floor, 0.9)),
            Figure::new(
                "steps started before the last one finished",
                "steps",
                disorder as f64,
            )
            .at_most(0.0),
        ];
        Ok(Report {
            figures,
            details: json!({
                "steps": STEPS,
                "tasks": STEP_TASKS,
                "per_step_ms": per_step,
                "floor_per_step_ms": floor,
            }),
        })
    }
}

impl Suite for Throughput {
    fn name(&self) -> &'static str {
        "throughput"
    }

    fn about(&self) -> &'static str {
        "200 pushes to 200 finished trivial tasks with one runner at concurrency 4, against a pool of 4 running their scripts"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let trivial = Trivial::new(stack, "throughput", 1, TASKS)?;
        let addr: SocketAddr = stack.gateway.parse().context("the gateway's address")?;
        let list = trivial.pushes(stack)?;
        let pushed = micros(SystemTime::now());
        let sender = Sender::start(addr, list, Duration::from_secs(1))?;
        stack.wait("the pushes' answers", Duration::from_secs(60), || {
            Ok(sender.finished().then_some(()))
        })?;
        let ids = sender
            .join()?
            .iter()
            .map(|s| created(Some(&s.answer)))
            .collect::<Result<Vec<u64>>>()?;
        let tasks = finished(stack, &ids)?;
        let failed = tasks.iter().filter(|t| t.status != "success").count();
        let last = tasks.iter().map(|t| t.finished).fold(pushed, f64::max);
        let elapsed_s = (last - pushed) / 1e6;
        let rate = TASKS as f64 / elapsed_s.max(1e-9);
        let pool_rate = pool(TASKS, POOL)?;
        let mut figures = vec![
            Figure::new("tasks finished per second", "/s", rate)
                .floor("pool of 4 running their scripts", pool_rate)
                .target(Target::AtLeast(60.0)),
            Figure::new("tasks not succeeded", "tasks", failed as f64).at_most(0.0),
        ];
        // Where a task's time in its slot goes, from its claim to its end.
        let part = |f: &dyn Fn(&TaskTimes) -> Option<f64>| -> Vec<f64> {
            tasks.iter().filter_map(|t| f(t).map(ms)).collect()
        };
        for (name, values) in [
            (
                "claimed to task finished",
                part(&|t| Some(t.finished - t.started)),
            ),
            (
                "claimed to clone started",
                part(&|t| t.steps.first().map(|c| c.started - t.started)),
            ),
            (
                "clone",
                part(&|t| t.steps.first().map(|c| c.finished - c.started)),
            ),
            (
                "last step finished to task finished",
                part(&|t| t.steps.last().map(|l| t.finished - l.finished)),
            ),
        ] {
            figures.push(Figure::new(
                format!("{name}, p50"),
                "ms",
                percentile(&values, 0.5),
            ));
        }
        // Once every slot is busy, each claim follows an end that freed a
        // slot: the time from the last end before it.
        let mut ends: Vec<f64> = tasks.iter().map(|t| t.finished).collect();
        ends.sort_by(f64::total_cmp);
        let handoffs: Vec<f64> = tasks
            .iter()
            .filter_map(|t| {
                let before = ends.partition_point(|e| *e <= t.started);
                before.checked_sub(1).map(|i| ms(t.started - ends[i]))
            })
            .collect();
        figures.push(Figure::new(
            "task finished to the next claimed, p50",
            "ms",
            percentile(&handoffs, 0.5),
        ));
        Ok(Report {
            figures,
            details: json!({
                "tasks": TASKS,
                "concurrency": POOL,
                "first_push_to_last_finished_s": elapsed_s,
                "pool_per_second": pool_rate,
            }),
        })
    }
}

/// A local repository and a workflow of trivial steps that runs on
/// pushes to its branch, with commits to push.
struct Trivial {
    id: u64,
    name: &'static str,
    url: String,
    commits: Vec<String>,
}

impl Trivial {
    /// `steps` steps running `true`; `commits` commits on the branch
    /// `name`, one per push to come.
    fn new(stack: &Stack, name: &'static str, steps: usize, commits: usize) -> Result<Self> {
        let repo = LocalRepo::open(&stack.dir.join("repos"), name)?;
        repo.write("README.md", name.as_bytes())?;
        let base = repo.commit("base")?;
        let commits = if commits == 0 {
            Vec::new()
        } else {
            pushes::commits(&repo.bare, &base, name, commits)?
        };
        let url = repo.url();
        let steps: String = (1..=steps)
            .map(|i| format!("  - name: step-{i}\n    run: \"true\"\n"))
            .collect();
        let id = stack.api.register(
            name,
            &format!(
                "name: {name}\nrepo: {url}\n\
                 on:\n  push: {{ branches: [{name}] }}\n\
                 steps:\n{steps}"
            ),
        )?;
        Ok(Self {
            id,
            name,
            url,
            commits,
        })
    }

    /// A signed push of each commit, in order.
    fn pushes(&self, stack: &Stack) -> Result<Vec<Push>> {
        pushes::signed(
            stack.github_secret.as_bytes(),
            &self.url,
            self.name,
            self.name,
            &self.commits,
        )
    }
}

/// The one task a push's answer created.
fn created(answer: Option<&Answer>) -> Result<u64> {
    match answer {
        Some(Answer::Status {
            code: 202,
            task_ids,
            queued: false,
        }) if task_ids.len() == 1 => Ok(task_ids[0]),
        other => bail!("a push was not answered with its task: {other:?}"),
    }
}

/// A task's times, in microseconds since the epoch.
struct TaskTimes {
    id: u64,
    status: String,
    started: f64,
    finished: f64,
    /// In order, the clone first.
    steps: Vec<StepTimes>,
}

struct StepTimes {
    name: String,
    started: f64,
    finished: f64,
}

impl TaskTimes {
    fn succeeded(&self) -> Result<()> {
        if self.status != "success" {
            bail!("task {} ended {}", self.id, self.status);
        }
        Ok(())
    }

    fn step(&self, name: &str) -> Result<&StepTimes> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("task {} has no step {name}", self.id))
    }
}

/// Waits until the tasks `ids` have finished; their times, in the order
/// of `ids`.
fn finished(stack: &Stack, ids: &[u64]) -> Result<Vec<TaskTimes>> {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    // Looked at twice a second: each look starts psql, whose time the
    // machine would take from the tasks.
    let mut polls = 0usize;
    stack.wait("the tasks to finish", Duration::from_secs(600), || {
        polls += 1;
        if ids.len() > 1 && !polls.is_multiple_of(5) {
            return Ok(None);
        }
        let left: usize = stack
            .sql(&format!(
                "SELECT count(*) FROM tasks WHERE id IN ({list}) AND finished_at IS NULL"
            ))?
            .parse()?;
        Ok((left == 0).then_some(()))
    })?;
    let us = |column: &str| format!("coalesce((extract(epoch FROM {column}) * 1e6)::bigint, 0)");
    let rows = stack.sql(&format!(
        "SELECT t.id, t.status, {}, {}, \
         (SELECT string_agg(s.name || ' ' || {} || ' ' || {}, ',' ORDER BY s.position) \
          FROM steps s WHERE s.task_id = t.id) \
         FROM tasks t WHERE t.id IN ({list})",
        us("t.started_at"),
        us("t.finished_at"),
        us("s.started_at"),
        us("s.finished_at"),
    ))?;
    let mut tasks = rows.lines().map(parse_task).collect::<Result<Vec<_>>>()?;
    tasks.sort_by_key(|t| ids.iter().position(|i| *i == t.id));
    Ok(tasks)
}

/// `id|status|started|finished|name started finished,...`.
fn parse_task(line: &str) -> Result<TaskTimes> {
    let fields: Vec<&str> = line.split('|').collect();
    let [id, status, started, finished, steps] = fields[..] else {
        bail!("unexpected row {line:?}");
    };
    let steps = steps
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let parts: Vec<&str> = s.split(' ').collect();
            let [name, started, finished] = parts[..] else {
                bail!("unexpected step {s:?}");
            };
            Ok(StepTimes {
                name: name.to_owned(),
                started: started.parse()?,
                finished: finished.parse()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskTimes {
        id: id.parse()?,
        status: status.to_owned(),
        started: started.parse()?,
        finished: finished.parse()?,
        steps,
    })
}

fn micros(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn sh_true() -> Result<()> {
    let status = Command::new("sh").args(["-c", "true"]).status()?;
    if !status.success() {
        bail!("sh -c true failed: {status}");
    }
    Ok(())
}

/// Each of `n` runs of `sh -c true`, forked and waited for, in ms.
fn spawn_times(n: usize) -> Vec<f64> {
    (0..n)
        .filter_map(|_| {
            let began = Instant::now();
            sh_true()
                .ok()
                .map(|()| began.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}

/// `n` runs of `sh -c true` by a pool of `slots` threads; runs per second.
fn pool(n: usize, slots: usize) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let workers: Vec<_> = (0..slots)
        .map(|_| {
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    sh_true()?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a pool thread panicked"))??;
    }
    Ok(n as f64 / began.elapsed().as_secs_f64())
}
