//! A seeded history for the insights (api.md): a workflow `shop` with dev,
//! test and prod, and a week of builds, deploys, a failure, a rollback, a
//! recovery, a timed-out deploy and an approval waiting, laid out around an
//! anchor (yesterday at noon, UTC) so every time falls on a known UTC day.
//! Its figures are worked out by hand in `orchestrator/tests/insights.rs`.

use chrono::{DateTime, Duration, NaiveTime, Utc};

use crate::Stack;

pub const SHOP: &str = "name: shop
repo: file:///shop.git
steps:
  - name: build
    run: \"true\"
image:
  name: shop
deploy:
  - environment: dev
    target: {container: {name: shop-dev}}
    health: {url: \"http://127.0.0.1:18081/health\"}
  - environment: test
    target: {container: {name: shop-test}}
  - environment: prod
    auto: false
    target: {container: {name: shop-prod}}
";

/// `at` as a SQL timestamp literal.
pub fn ts(at: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", at.to_rfc3339())
}

/// Inserts a task: `(id, status, trigger, created, queued-to-start seconds,
/// start-to-end seconds)`.
pub fn task(
    stack: &Stack,
    workflow: i64,
    (id, status, trigger): (i64, &str, &str),
    created: DateTime<Utc>,
    queued_s: Option<i64>,
    run_s: Option<i64>,
) {
    let started = queued_s.map(|q| created + Duration::seconds(q));
    let finished = match (started, run_s) {
        (Some(s), Some(r)) => Some(s + Duration::seconds(r)),
        (None, Some(r)) => Some(created + Duration::seconds(r)),
        _ => None,
    };
    let opt = |t: Option<DateTime<Utc>>| t.map_or_else(|| "NULL".to_owned(), ts);
    stack.db.execute(&format!(
        "INSERT INTO tasks (id, workflow_id, workflow_version, status, trigger, branch, commit_sha,
                            message, author, created_at, queued_at, started_at, finished_at)
         VALUES ({id}, {workflow}, 1, '{status}', '{trigger}', 'main', repeat('{d}', 40),
                 'change {id}', 'dev{id}', {c}, {c}, {s}, {f})",
        d = id % 10,
        c = ts(created),
        s = opt(started),
        f = opt(finished),
    ));
}

/// Inserts a deployment: `(id, environment, task, status, trigger)`,
/// created at `created` and finished `finished_s` seconds later.
pub fn deployment(
    stack: &Stack,
    workflow: i64,
    (id, env, task, status, trigger): (i64, &str, i64, &str, &str),
    created: DateTime<Utc>,
    finished_s: Option<i64>,
) {
    let finished =
        finished_s.map_or_else(|| "NULL".to_owned(), |s| ts(created + Duration::seconds(s)));
    stack.db.execute(&format!(
        "INSERT INTO deployments (id, workflow_id, task_id, environment, image, status, trigger,
                                  created_at, started_at, finished_at)
         VALUES ({id}, {workflow}, {task}, '{env}', 'registry.test/shop@sha256:{id:0>64}',
                 '{status}', '{trigger}', {c}, {c}, {finished})",
        c = ts(created),
    ));
}

/// The seeded workflow and its anchor.
pub struct History {
    pub workflow_id: i64,
    pub anchor: DateTime<Utc>,
}

impl History {
    /// The UTC day `n` days before the anchor's, as `YYYY-MM-DD`.
    pub fn day(&self, n: i64) -> String {
        (self.anchor - Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    }
}

/// Creates `shop` and its history.
pub async fn seed(stack: &Stack) -> History {
    let shop = stack.create_workflow(SHOP).await;
    // An anchor whose day is known: yesterday at noon, UTC.
    let today = Utc::now().date_naive();
    let anchor = (today - Duration::days(1))
        .and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"))
        .and_utc();
    let at = |days: i64, secs: i64| anchor - Duration::days(days) + Duration::seconds(secs);

    // Builds in the last 7 days: runs of 60 s, 120 s and 30 s (queued 10,
    // 20 and 5 s), a cancelled one that never started, a running one
    // (queued 2 s). Outside them: an old build and a deploy-only task.
    task(
        stack,
        shop,
        (1001, "success", "push"),
        at(3, 0),
        Some(10),
        Some(60),
    );
    task(
        stack,
        shop,
        (1002, "success", "push"),
        at(2, 0),
        Some(20),
        Some(120),
    );
    task(
        stack,
        shop,
        (1003, "failed", "push"),
        at(2, 3600),
        Some(5),
        Some(30),
    );
    task(
        stack,
        shop,
        (1004, "cancelled", "manual"),
        at(1, 0),
        None,
        Some(1),
    );
    task(
        stack,
        shop,
        (1000, "success", "push"),
        at(10, 0),
        Some(1),
        Some(500),
    );
    task(
        stack,
        shop,
        (1006, "success", "deploy"),
        at(1, 60),
        Some(1),
        Some(5),
    );
    task(
        stack,
        shop,
        (1007, "running", "push"),
        at(0, 3600),
        Some(2),
        None,
    );
    // Task 1001's commit was made an hour before its task; 1002's time is
    // unknown (lead time counts from the task).
    stack.db.execute(&format!(
        "INSERT INTO task_commits (task_id, committed_at) VALUES (1001, {})",
        ts(at(3, -3600))
    ));

    // dev: 1001 deployed (lead 300 + 3600 s); 1002 failed and was rolled
    // back, then 1002 deployed again 10 minutes after the failure (lead
    // 840 s, recovery 600 s); a skipped deploy and an old one that do not
    // count. test: a timed-out deploy, never recovered. prod: 1002 waits
    // for approval.
    deployment(
        stack,
        shop,
        (2000, "dev", 1000, "succeeded", "auto"),
        at(10, 600),
        Some(60),
    );
    deployment(
        stack,
        shop,
        (2001, "dev", 1001, "succeeded", "auto"),
        at(3, 120),
        Some(180),
    );
    deployment(
        stack,
        shop,
        (2002, "dev", 1002, "failed", "auto"),
        at(2, 180),
        Some(60),
    );
    deployment(
        stack,
        shop,
        (2003, "dev", 1001, "succeeded", "rollback"),
        at(2, 250),
        Some(30),
    );
    deployment(
        stack,
        shop,
        (2004, "dev", 1002, "succeeded", "manual"),
        at(2, 600),
        Some(240),
    );
    deployment(
        stack,
        shop,
        (2005, "dev", 1003, "skipped", "auto"),
        at(2, 3700),
        Some(0),
    );
    deployment(
        stack,
        shop,
        (2006, "test", 1001, "timed_out", "auto"),
        at(3, 600),
        Some(1800),
    );
    deployment(
        stack,
        shop,
        (2007, "prod", 1002, "awaiting_approval", "auto"),
        at(2, 900),
        None,
    );
    stack.db.execute(&format!(
        "INSERT INTO rollbacks (workflow_id, environment, deployment_id, from_deployment_id,
                                to_deployment_id, reason, status, created_at, finished_at,
                                via_deployment_id)
         VALUES ({shop}, 'dev', 2002, 2002, 2001, 'deploy_failed', 'succeeded', {c}, {c}, 2003)",
        c = ts(at(2, 250)),
    ));
    stack.db.execute(&format!(
        "INSERT INTO environments (workflow_id, name, current_deployment_id, previous_deployment_id,
                                   health, health_deployment_id, health_checked_at)
         VALUES ({shop}, 'dev', 2004, 2001, 'up', 2004, now()),
                ({shop}, 'test', NULL, NULL, 'unknown', NULL, NULL),
                ({shop}, 'prod', NULL, NULL, 'unknown', NULL, NULL)"
    ));

    History {
        workflow_id: shop,
        anchor,
    }
}
