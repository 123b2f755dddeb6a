//! The orchestrator's bounds on what clients and runners send, through the
//! REST API and the runner API: workflow definitions past their size,
//! depth or counts are `422` with the place, secrets past their number are
//! `422` and past their size `413`, and a log chunk past its size is
//! refused with `RESOURCE_EXHAUSTED` while smaller ones are stored.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::{Options, Stack, claim};
use tonic::Code;

const HEAD: &str = "name: w\nrepo: file:///srv/git/w.git\n";

/// A stack with no runner, small workflow and secret limits.
async fn stack() -> Stack {
    Stack::with(Options {
        runners: 0,
        orchestrator_settings: |s| {
            s.workflow_max_bytes = 8 * 1024;
            s.workflow_max_depth = 8;
            s.workflow_max_steps = 3;
            s.workflow_max_environments = 1;
            s.workflow_max_notify_rules = 1;
            s.secrets_max = 2;
            s.secret_max_bytes = 16;
            s.log_chunk_max_bytes = 64 * 1024;
        },
        ..Options::default()
    })
    .await
}

async fn create(stack: &Stack, yaml: &str) -> (StatusCode, Value) {
    let resp = stack
        .client
        .post(format!("{}/api/workflows", stack.http))
        .bearer_auth(&stack.token)
        .header("content-type", "application/yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn steps(n: usize) -> String {
    let mut yaml = format!("{HEAD}steps:\n");
    for i in 0..n {
        yaml += &format!("  - {{name: s{i}, run: make}}\n");
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_past_the_limits_are_refused_with_their_place() {
    let stack = stack().await;

    let (status, body) = create(&stack, &steps(4)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body,
        json!({"error": "steps: 4 steps, more than the limit of 3 at line 4, column 3",
               "path": "steps", "line": 4, "column": 3})
    );

    let deploys = format!(
        "{HEAD}image: {{name: w}}\ndeploy:\n  - {{environment: a, target: {{container: {{name: a}}}}}}\n  - {{environment: b, target: {{container: {{name: b}}}}}}\n"
    );
    let (status, body) = create(&stack, &deploys).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["path"], "deploy", "{body}");

    let notify = format!(
        "{}notify:\n  - {{on: [build_failed], webhook: {{url: \"https://x\"}}}}\n  - {{on: [deploy_failed], webhook: {{url: \"https://x\"}}}}\n",
        steps(1)
    );
    let (status, body) = create(&stack, &notify).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["path"], "notify", "{body}");

    let deep = format!("{}x: {}{}\n", steps(1), "[".repeat(9), "]".repeat(9));
    let (status, body) = create(&stack, &deep).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"],
        "nesting too deep (more than 8 levels) at line 5, column 11"
    );

    // Aliases of one long value: little YAML, much text once expanded.
    let laughs = format!(
        "{}env:\n  A: &a \"{}\"\n  B: [{}]\n",
        steps(1),
        "x".repeat(4000),
        vec!["*a"; 20].join(", ")
    );
    assert!(laughs.len() < 8 * 1024);
    let (status, body) = create(&stack, &laughs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("document too large (more than 32768 bytes of text")),
        "{body}"
    );

    let long = format!("{}# {}\n", steps(1), "x".repeat(8 * 1024));
    let (status, body) = create(&stack, &long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body,
        json!({"error": format!("the definition is {} bytes, more than the limit of 8192 bytes at line 1, column 1", long.len()),
               "path": "", "line": 1, "column": 1})
    );

    // Within every limit: stored.
    let (status, body) = create(&stack, &steps(3)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_past_their_number_or_size_are_refused() {
    let stack = stack().await;
    let id = stack.create_workflow(&steps(1)).await;
    let put = |name: &str, value: &str| {
        let path = format!("/api/workflows/{id}/secrets/{name}");
        let body = json!({ "value": value });
        let stack = &stack;
        async move { stack.api(Method::PUT, &path, Some(body)).await }
    };
    let (status, body) = put("BIG", &"x".repeat(17)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(
        body["error"],
        "the value of secret BIG is 17 bytes, more than the limit of 16 bytes"
    );

    stack.set_secret(id, "ONE", "1").await;
    stack.set_secret(id, "TWO", "2").await;
    let (status, body) = put("THREE", "3").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"],
        "a workflow may have at most 2 secrets: THREE would be one more"
    );
    // Replacing one is not one more.
    stack.set_secret(id, "TWO", "2b").await;
    let (status, names) = stack.get(&format!("/api/workflows/{id}/secrets")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names, json!(["ONE", "TWO"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_chunk_past_its_size_is_refused() {
    let stack = stack().await;
    let id = stack.create_workflow(&steps(1)).await;
    let task_id = stack.run_workflow(id).await;
    let mut runner = stack.runner_api();
    let lease = claim(&mut runner, task_id, &[]).await;
    let append = |data: Vec<u8>| proto::AppendLogRequest {
        lease: Some(lease.clone()),
        position: 0,
        data,
    };
    let refused = runner
        .append_log(append(vec![b'x'; 64 * 1024 + 1]))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "log chunk of 65537 bytes is larger than the limit of 65536 bytes"
    );
    runner
        .append_log(append(b"fits\n".to_vec()))
        .await
        .expect("stored");
    let log = stack.logs(task_id).await;
    assert!(log.contains("fits\n") && !log.contains("xxx"), "{log}");
}
