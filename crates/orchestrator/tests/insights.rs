//! Insights (api.md): `GET /api/workflows/{id}/stats` and `GET
//! /api/overview` over a seeded history whose figures are worked out by
//! hand below, and the commit time a push records for lead time.
//!
//! The history is laid out around an anchor, yesterday at noon UTC, so
//! every seeded time falls on a known UTC day.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::Stack;
use test_support::hooks::github_push;

const SHOP: &str = "name: shop
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
fn ts(at: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", at.to_rfc3339())
}

/// Inserts a task: `(id, status, trigger, created, queued-to-start seconds,
/// start-to-end seconds)`.
fn task(
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
fn deployment(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_and_overview_of_a_seeded_history() {
    let stack = Stack::start().await;
    let shop = stack.create_workflow(SHOP).await;
    // An anchor whose day is known: yesterday at noon, UTC.
    let today = Utc::now().date_naive();
    let anchor = (today - Duration::days(1))
        .and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"))
        .and_utc();
    let day = |n: i64| (anchor - Duration::days(n)).format("%Y-%m-%d").to_string();
    let at = |days: i64, secs: i64| anchor - Duration::days(days) + Duration::seconds(secs);

    // Builds in the last 7 days: runs of 60 s, 120 s and 30 s (queued 10,
    // 20 and 5 s), a cancelled one that never started, a running one
    // (queued 2 s). Outside them: an old build and a deploy-only task.
    task(
        &stack,
        shop,
        (1001, "success", "push"),
        at(3, 0),
        Some(10),
        Some(60),
    );
    task(
        &stack,
        shop,
        (1002, "success", "push"),
        at(2, 0),
        Some(20),
        Some(120),
    );
    task(
        &stack,
        shop,
        (1003, "failed", "push"),
        at(2, 3600),
        Some(5),
        Some(30),
    );
    task(
        &stack,
        shop,
        (1004, "cancelled", "manual"),
        at(1, 0),
        None,
        Some(1),
    );
    task(
        &stack,
        shop,
        (1000, "success", "push"),
        at(10, 0),
        Some(1),
        Some(500),
    );
    task(
        &stack,
        shop,
        (1006, "success", "deploy"),
        at(1, 60),
        Some(1),
        Some(5),
    );
    task(
        &stack,
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
        &stack,
        shop,
        (2000, "dev", 1000, "succeeded", "auto"),
        at(10, 600),
        Some(60),
    );
    deployment(
        &stack,
        shop,
        (2001, "dev", 1001, "succeeded", "auto"),
        at(3, 120),
        Some(180),
    );
    deployment(
        &stack,
        shop,
        (2002, "dev", 1002, "failed", "auto"),
        at(2, 180),
        Some(60),
    );
    deployment(
        &stack,
        shop,
        (2003, "dev", 1001, "succeeded", "rollback"),
        at(2, 250),
        Some(30),
    );
    deployment(
        &stack,
        shop,
        (2004, "dev", 1002, "succeeded", "manual"),
        at(2, 600),
        Some(240),
    );
    deployment(
        &stack,
        shop,
        (2005, "dev", 1003, "skipped", "auto"),
        at(2, 3700),
        Some(0),
    );
    deployment(
        &stack,
        shop,
        (2006, "test", 1001, "timed_out", "auto"),
        at(3, 600),
        Some(1800),
    );
    deployment(
        &stack,
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

    let (status, stats) = stack
        .get(&format!("/api/workflows/{shop}/stats?days=7"))
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(
        stats,
        json!({
            "workflow_id": shop, "days": 7,
            "tasks": {"total": 5, "succeeded": 2, "failed": 1, "cancelled": 1,
                      // 2 of the 4 finished; runs [30, 60, 120]; queued [2, 5, 10, 20].
                      "success_rate": 0.5, "duration_p50_s": 60.0, "duration_p90_s": 108.0,
                      "queued_p50_s": 7.5},
            "environments": [
                {"environment": "dev", "deploys": 3, "deploys_per_day": 3.0 / 7.0,
                 "change_failure_rate": 1.0 / 3.0, "lead_time_p50_s": 2370.0,
                 "mttr_s": 600.0, "rollbacks": 1},
                {"environment": "test", "deploys": 1, "deploys_per_day": 1.0 / 7.0,
                 "change_failure_rate": 1.0, "lead_time_p50_s": null, "mttr_s": null,
                 "rollbacks": 0},
                {"environment": "prod", "deploys": 0, "deploys_per_day": 0.0,
                 "change_failure_rate": null, "lead_time_p50_s": null, "mttr_s": null,
                 "rollbacks": 0},
            ],
            "daily": [
                {"date": day(3), "tasks": 1, "succeeded": 1, "failed": 0,
                 "duration_p50_s": 60.0, "duration_p90_s": 60.0, "deploys": 2,
                 "environments": [{"environment": "dev", "deploys": 1, "failed": 0},
                                  {"environment": "test", "deploys": 1, "failed": 1}]},
                {"date": day(2), "tasks": 2, "succeeded": 1, "failed": 1,
                 "duration_p50_s": 75.0, "duration_p90_s": 111.0, "deploys": 2,
                 "environments": [{"environment": "dev", "deploys": 2, "failed": 1}]},
                {"date": day(1), "tasks": 1, "succeeded": 0, "failed": 0,
                 "duration_p50_s": null, "duration_p90_s": null, "deploys": 0,
                 "environments": []},
                {"date": day(0), "tasks": 1, "succeeded": 0, "failed": 0,
                 "duration_p50_s": null, "duration_p90_s": null, "deploys": 0,
                 "environments": []},
            ],
        })
    );
    // The default period is 30 days: the old build and deploy join in.
    let (_, month) = stack.get(&format!("/api/workflows/{shop}/stats")).await;
    assert_eq!(
        (month["days"].clone(), month["tasks"]["total"].clone()),
        (json!(30), json!(6))
    );
    assert_eq!(month["environments"][0]["deploys"], 4, "{month}");

    for bad in ["days=0", "days=366", "days=-1", "days=many", "since=3"] {
        let (status, body) = stack
            .get(&format!("/api/workflows/{shop}/stats?{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = stack.get("/api/workflows/999999/stats").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, overview) = stack.get("/api/overview").await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    let entry = overview
        .as_array()
        .and_then(|l| l.iter().find(|w| w["workflow_id"] == shop))
        .cloned()
        .expect("shop in the overview");
    assert_eq!(entry["workflow"], "shop");
    assert_eq!(entry["last_task"]["id"], 1007);
    assert_eq!(entry["last_task"]["status"], "running");
    assert_eq!(entry["last_task"]["message"], "change 1007");
    let envs: Vec<&Value> = entry["environments"]
        .as_array()
        .expect("list")
        .iter()
        .collect();
    let names: Vec<&str> = envs
        .iter()
        .filter_map(|e| e["environment"].as_str())
        .collect();
    assert_eq!(names, ["dev", "test", "prod"]);
    let dev = envs[0];
    assert_eq!(dev["deployment_id"], 2004);
    assert_eq!(dev["commit"], "2".repeat(40));
    assert_eq!(dev["message"], "change 1002");
    assert_eq!(dev["status"], "succeeded");
    assert_eq!(dev["health"], "up");
    assert_eq!(dev["url"], "http://127.0.0.1:18081/health");
    assert!(dev["deployed_at"].is_string(), "{dev}");
    let test = envs[1];
    assert_eq!(
        (
            test["deployment_id"].clone(),
            test["status"].clone(),
            test["health"].clone()
        ),
        (Value::Null, json!("timed_out"), json!("unknown"))
    );
    let prod = envs[2];
    assert_eq!(prod["status"], "awaiting_approval");
    assert_eq!(prod["awaiting_approval"]["deployment_id"], 2007);
    assert_eq!(prod["awaiting_approval"]["task_id"], 1002);
    assert_eq!(prod["health"], "unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_records_its_commit_time() {
    let stack = Stack::start().await;
    stack
        .create_workflow(
            "name: timed\nrepo: file:///timed.git\nsteps:\n  - name: a\n    run: \"true\"\n",
        )
        .await;
    let sha = "ab".repeat(20);
    let mut body = github_push(
        "file:///timed.git",
        "refs/heads/main",
        &sha,
        "timed",
        &["a"],
    );
    body["commits"][0]["timestamp"] = json!("2026-11-30T10:00:00+02:00");
    body["head_commit"]["timestamp"] = json!("2026-11-30T10:00:00+02:00");
    let (status, answer) = stack.github("push", "timed-1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let task = answer["task_ids"][0].as_i64().expect("a task");
    let at = stack.db.count(&format!(
        "SELECT extract(epoch FROM committed_at)::bigint AS n FROM task_commits WHERE task_id = {task}"
    ));
    assert_eq!(at, 1_796_025_600, "2026-11-30T08:00:00Z");
}
