//! Rotating `SLIPWAY_SECRET_KEY`: with the old key in
//! `SLIPWAY_SECRET_KEY_PREVIOUS` the orchestrator seals the stored secrets
//! again with the new key at start, and afterwards the new key alone opens
//! them; without the old key they cannot be opened and the task says which
//! secret and which setting.

use serde_json::Value;
use test_support::{GitRepo, Stack};

async fn run_to_end(stack: &Stack, workflow_id: i64) -> Value {
    let task_id = stack.run_workflow(workflow_id).await;
    stack.wait_finished(task_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_key_rotates_without_setting_secrets_again() {
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    let id = stack
        .create_workflow(&format!(
            "name: rotate\nrepo: {}\nsecrets: [API_KEY]\nsteps:\n  - name: check\n    run: test \"$API_KEY\" = s3cr3t\n",
            repo.url
        ))
        .await;
    stack.set_secret(id, "API_KEY", "s3cr3t").await;
    let task = run_to_end(&stack, id).await;
    assert_eq!(task["status"], "success", "{task:#}");

    // The new key, with the old one as previous: resealed at start.
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| {
            s.secret_key_previous = s.secret_key.clone();
            s.secret_key = "the-new-key".to_owned();
        })
        .await;
    let task = run_to_end(&stack, id).await;
    assert_eq!(task["status"], "success", "{task:#}");

    // The new key alone opens them now.
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| s.secret_key_previous = String::new())
        .await;
    let task = run_to_end(&stack, id).await;
    assert_eq!(task["status"], "success", "{task:#}");

    // A key that never sealed them: the task fails before it starts and
    // says which secret and which setting.
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| s.secret_key = "a-lost-key".to_owned())
        .await;
    let task = run_to_end(&stack, id).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(
        task["error"],
        "secret API_KEY cannot be decrypted with the current SLIPWAY_SECRET_KEY"
    );
}
