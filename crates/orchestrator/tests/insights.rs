//! Insights (api.md): `GET /api/workflows/{id}/stats` and `GET
//! /api/overview` over the seeded history of `test_support::history`,
//! whose figures are worked out by hand below, and the commit time a push
//! records for lead time.

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::hooks::github_push;
use test_support::{Stack, history};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_and_overview_of_a_seeded_history() {
    let stack = Stack::start().await;
    let history = history::seed(&stack).await;
    let shop = history.workflow_id;
    let day = |n: i64| history.day(n);

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
