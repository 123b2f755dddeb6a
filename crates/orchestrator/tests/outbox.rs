//! Nothing accepted is lost: a task created while the broker is unreachable
//! waits in the outbox, and is published once a (restarted) orchestrator
//! reaches the broker again.

use serde_json::json;
use test_support::hooks::github_push;
use test_support::{GitRepo, Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_while_the_broker_is_down_runs_once_it_is_back() {
    let mut stack = Stack::with(Options {
        orchestrator_amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: outbox\nrepo: {}\nsteps:\n  - name: hi\n    run: echo delivered\n",
            repo.url
        ))
        .await;
    let sha = repo.commit("main", &[("a.txt", "a")], "m");
    let (status, body) = stack
        .github(
            "push",
            "while-down",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["a.txt"]),
        )
        .await;
    assert_eq!(
        status, 202,
        "the webhook is accepted while the broker is down: {body}"
    );
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    assert_eq!(stack.task(task_id).await["status"], "pending");

    let resp = stack
        .client
        .get(format!("{}/readyz", stack.http))
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), 503);
    let ready: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(ready["broker"], false, "{ready}");

    let (status, body) = stack
        .post(&format!("/api/tasks/{task_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "a pending task cannot be retried: {body}");

    stack
        .restart_orchestrator(Some(stack.amqp_url.clone()))
        .await;
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert!(stack.logs(task_id).await.contains("delivered"));
}
