//! After its deploy, an environment's current version is probed every
//! `SLIPWAY_HEALTH_INTERVAL` by a runner of its host: the overview shows
//! its health, and an app that stops answering raises one `health_down`
//! (after 3 failed probes, not one per probe) and one `health_recovered`
//! when it answers again; nothing is rolled back.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::images::{self, Cleanup, free_port};
use test_support::{DEADLINE, GitRepo, Options, Stack};

/// The overview's entry of environment `env` of workflow `id`.
async fn overview_env(stack: &Stack, id: i64, env: &str) -> Value {
    let (status, list) = stack.get("/api/overview").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .and_then(|l| l.iter().find(|w| w["workflow_id"] == id))
        .and_then(|w| w["environments"].as_array())
        .and_then(|e| e.iter().find(|e| e["environment"] == env))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the environment's health is `want`.
async fn wait_health(stack: &Stack, id: i64, env: &str, want: &str) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let e = overview_env(stack, id, env).await;
        if e["health"] == want {
            return e;
        }
        assert!(Instant::now() < until, "{env} never became {want}: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(stack: &Stack, kind: &str) -> i64 {
    stack.db.count(&format!(
        "SELECT count(*) AS n FROM events WHERE type = '{kind}'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_stops_answering_raises_one_alert_and_one_recovery() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    settings.health_interval = "1s".to_owned();
    stack.spawn_runner_with(settings).await;
    let repo = GitRepo::new();
    let port = free_port();
    let name = format!("slipway-e2e-mon-{port}");
    let _cleanup = Cleanup(vec![name.clone(), format!("{name}.previous")]);
    let workflow_id = stack
        .create_workflow(&format!(
            "name: watched\nrepo: {repo}\nimage:\n  name: slipway-e2e/watched-{port}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {name}, ports: [\"127.0.0.1:{port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{port}/health\", interval: 200ms, timeout: 5s }}\n",
            repo = repo.url
        ))
        .await;
    let task_id = stack.push_app(&repo, "ok\n", "m1").await;
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");

    let up = wait_health(&stack, workflow_id, "dev", "up").await;
    assert_eq!(up["deployment_id"], task["deployments"][0]["id"], "{up}");
    assert!(up["health_checked_at"].is_string(), "{up}");
    assert_eq!(
        (
            count(&stack, "health_down"),
            count(&stack, "health_recovered")
        ),
        (0, 0)
    );

    // The app stops: down after 3 failed probes, with one alert however
    // many probes fail after.
    docker
        .stop_container(&name, Duration::from_secs(1))
        .await
        .expect("stopped");
    wait_health(&stack, workflow_id, "dev", "down").await;
    let failures_seen = |stack: &Stack| {
        stack.db.count(&format!(
            "SELECT health_failures::bigint AS n FROM environments WHERE workflow_id = {workflow_id}"
        ))
    };
    let until = Instant::now() + DEADLINE;
    while failures_seen(&stack) < 5 {
        assert!(Instant::now() < until, "probes stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&stack, "health_down"), 1);
    assert_eq!(count(&stack, "health_recovered"), 0);
    let (_, d) = stack
        .get(&format!("/api/deployments/{}", up["deployment_id"]))
        .await;
    assert_eq!(d["status"], "succeeded", "no rollback: {d}");

    // Back: one recovery.
    docker.start_container(&name).await.expect("started");
    wait_health(&stack, workflow_id, "dev", "up").await;
    assert_eq!(count(&stack, "health_down"), 1);
    assert_eq!(count(&stack, "health_recovered"), 1);
    let (_, envs) = stack
        .get(&format!("/api/workflows/{workflow_id}/environments"))
        .await;
    assert_eq!(envs[0]["current"]["id"], up["deployment_id"], "{envs}");
}
