//! The `insights` suite: how fast `GET /api/overview` and `GET
//! /api/workflows/{id}/stats` answer over a large history. One workflow
//! gets 100,000 finished tasks and 10,000 deployments (with rollbacks and
//! commit times) spread over the last 364 days, seeded by SQL; nine more get a
//! hundred tasks each, so the overview has workflows to lay out. The floor
//! is `GET /api/workflows/{id}` in the same run: the same way through the
//! gateway, gRPC and the database, for one row.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::load::quantile;
use super::{Figure, Report, Stack, Suite};

pub struct Insights;

/// What the large workflow holds.
const TASKS: u32 = 100_000;
const DEPLOYMENTS: u32 = 10_000;
/// Smaller workflows beside it, and their tasks.
const OTHERS: u32 = 9;
const OTHER_TASKS: u32 = 100;
/// Requests timed per route, after a few to warm up.
const SAMPLES: usize = 60;
const WARM_UP: usize = 5;
/// What the overview and the default period's figures must stay under.
const TARGET_MS: f64 = 100.0;

const WORKFLOW: &str = "bench-insights";
/// A label no runner has: nothing runs.
const NO_RUNNER: &str = "bench-no-runner";

fn definition(name: &str) -> String {
    format!(
        "name: {name}\nrepo: https://github.com/bench/{name}.git\nruns_on: [{NO_RUNNER}]\n\
         steps:\n  - name: noop\n    run: \"true\"\nimage:\n  name: {name}\n\
         deploy:\n  - environment: dev\n    target: {{container: {{name: {name}-dev}}}}\n\
         \x20 - environment: test\n    target: {{container: {{name: {name}-test}}}}\n\
         \x20 - environment: prod\n    auto: false\n    target: {{container: {{name: {name}-prod}}}}\n\
         retention:\n  days: 400\n"
    )
}

impl Suite for Insights {
    fn name(&self) -> &'static str {
        "insights"
    }

    fn about(&self) -> &'static str {
        "GET /api/overview and /api/workflows/{id}/stats over 100,000 tasks and 10,000 deployments, against GET /api/workflows/{id}"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let big = stack.api.register(WORKFLOW, &definition(WORKFLOW))?;
        let mut ids = vec![big];
        for n in 1..=OTHERS {
            let name = format!("{WORKFLOW}-{n}");
            ids.push(stack.api.register(&name, &definition(&name))?);
        }
        eprintln!("xtask: bench insights: seeding {TASKS} tasks and {DEPLOYMENTS} deployments");
        let seeding = Instant::now();
        seed(stack, big, TASKS, DEPLOYMENTS)?;
        for id in &ids[1..] {
            seed(stack, *id, OTHER_TASKS, OTHER_TASKS / 10)?;
        }
        stack.sql("ANALYZE")?;
        eprintln!(
            "xtask: bench insights: seeded in {:.1}s",
            seeding.elapsed().as_secs_f64()
        );

        let floor = time(stack, &format!("/api/workflows/{big}"))?;
        let overview = time(stack, "/api/overview")?;
        let stats_30 = time(stack, &format!("/api/workflows/{big}/stats?days=30"))?;
        let stats_365 = time(stack, &format!("/api/workflows/{big}/stats?days=365"))?;

        // The answers are whole: every workflow, every environment (beside
        // the workflows of the suites that ran before).
        let answer = stack.api.get("/api/overview")?;
        let listed = answer.as_array().map_or(0, |all| {
            all.iter()
                .filter(|w| {
                    w["workflow_id"]
                        .as_u64()
                        .is_some_and(|id| ids.contains(&id))
                })
                .count()
        });
        if listed != ids.len() {
            bail!("the overview lists {listed} of its {} workflows", ids.len());
        }
        let stats = stack
            .api
            .get(&format!("/api/workflows/{big}/stats?days=365"))?;
        let total = stats["tasks"]["total"].as_u64().unwrap_or(0);
        if total != u64::from(TASKS) {
            bail!("the year's stats count {total} tasks, not {TASKS}");
        }

        // The overview and the default period are held to the target; the
        // year, which reads every one of the 100,000 tasks, is shown.
        let mut figures = Vec::new();
        for (name, t, bound) in [
            ("overview", &overview, true),
            ("stats, 30 days", &stats_30, true),
            ("stats, 365 days (every task)", &stats_365, false),
        ] {
            for (q, value, floor) in [("p50", t.p50, floor.p50), ("p99", t.p99, floor.p99)] {
                let figure =
                    Figure::new(format!("{name} {q}"), "ms", value).floor("one workflow", floor);
                figures.push(if bound {
                    figure.at_most(TARGET_MS)
                } else {
                    figure
                });
            }
        }
        Ok(Report {
            figures,
            details: json!({
                "tasks": TASKS,
                "deployments": DEPLOYMENTS,
                "workflows": ids.len(),
                "samples": SAMPLES,
                "floor_ms": {"p50": floor.p50, "p99": floor.p99},
                "overview_ms": {"p50": overview.p50, "p99": overview.p99},
                "stats_30_ms": {"p50": stats_30.p50, "p99": stats_30.p99},
                "stats_365_ms": {"p50": stats_365.p50, "p99": stats_365.p99},
            }),
        })
    }
}

/// A route's answer times, in milliseconds.
struct Timed {
    p50: f64,
    p99: f64,
}

/// Times `SAMPLES` GETs of `path`, one after the other.
fn time(stack: &Stack, path: &str) -> Result<Timed> {
    let mut took = Vec::with_capacity(SAMPLES);
    for i in 0..WARM_UP + SAMPLES {
        let started = Instant::now();
        stack.api.get(path).with_context(|| format!("GET {path}"))?;
        if i >= WARM_UP {
            took.push(started.elapsed());
        }
    }
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(Timed {
        p50: ms(quantile(&mut took, 0.5)),
        p99: ms(quantile(&mut took, 0.99)),
    })
}

/// `tasks` finished tasks of `workflow` over the last 364 days (a tenth failed,
/// a fiftieth cancelled, each with its commit time), and `deployments`
/// deployments of them over dev, test and prod (a tenth failed, a
/// twentieth rolled back with their rollback), newest current.
fn seed(stack: &Stack, workflow: u64, tasks: u32, deployments: u32) -> Result<()> {
    stack.sql(&format!(
        "WITH t AS (
             INSERT INTO tasks (workflow_id, workflow_version, status, trigger, branch,
                                commit_sha, message, author, created_at, queued_at,
                                started_at, finished_at, runs_on)
             SELECT {workflow}, (SELECT version FROM workflows WHERE id = {workflow}),
                    CASE WHEN g % 50 = 0 THEN 'cancelled' WHEN g % 10 = 0 THEN 'failed'
                         ELSE 'success' END,
                    'push', 'main', md5(g::text) || substr(md5(g::text), 1, 8),
                    'change ' || g, 'octocat', at, at, at + interval '2 seconds',
                    at + make_interval(secs => 30 + g % 90), '{NO_RUNNER}'
             FROM generate_series(1, {tasks}) g,
                  LATERAL (SELECT now() - make_interval(secs => (g::float8 / {tasks}) * 364 * 86400) AS at) a
             RETURNING id, created_at)
         INSERT INTO task_commits (task_id, committed_at)
         SELECT id, created_at - interval '1 hour' FROM t"
    ))?;
    stack.sql(&format!(
        "WITH picked AS (
             SELECT id, created_at, row_number() OVER (ORDER BY id) AS n
             FROM tasks WHERE workflow_id = {workflow} AND status = 'success'
             ORDER BY id DESC LIMIT {deployments}),
         d AS (
             INSERT INTO deployments (workflow_id, task_id, environment, image, status, trigger,
                                      created_at, started_at, finished_at, host)
             SELECT {workflow}, id, (ARRAY['dev', 'test', 'prod'])[1 + n % 3],
                    'registry.bench/app@sha256:' || md5(id::text) || md5(id::text),
                    CASE WHEN n % 20 = 0 THEN 'rolled_back' WHEN n % 10 = 0 THEN 'failed'
                         ELSE 'succeeded' END,
                    'auto', created_at + interval '2 minutes', created_at + interval '2 minutes',
                    created_at + interval '4 minutes', 'bench'
             FROM picked RETURNING id, environment, status, created_at)
         INSERT INTO rollbacks (workflow_id, environment, deployment_id, reason, status,
                                created_at, finished_at)
         SELECT {workflow}, environment, id, 'health_check_failed', 'succeeded',
                created_at + interval '4 minutes', created_at + interval '5 minutes'
         FROM d WHERE status = 'rolled_back'"
    ))?;
    stack.sql(&format!(
        "INSERT INTO environments (workflow_id, name, current_deployment_id, health,
                                   health_deployment_id, health_checked_at)
         SELECT {workflow}, environment, id, 'up', id, now() FROM (
             SELECT DISTINCT ON (environment) environment, id FROM deployments
             WHERE workflow_id = {workflow} AND status = 'succeeded'
             ORDER BY environment, id DESC) c"
    ))?;
    Ok(())
}
