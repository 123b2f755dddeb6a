//! TLS on the runner's connections, on real services: the orchestrator
//! serving gRPC over TLS with a throwaway CA, and the broker behind a
//! TLS-terminating proxy (`amqps://`). Each runs one task end to end; a
//! runner that does not trust the certificate fails at start and says so.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use test_support::tls::{TestCa, tls_proxy};
use test_support::{GitRepo, Options, Stack};

/// Creates a workflow with one step and runs it by hand; returns the task.
async fn run_one_task(stack: &Stack, name: &str) -> serde_json::Value {
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&format!(
            "name: {name}\nrepo: {}\nsteps:\n  - name: hello\n    run: echo hello over tls\n",
            repo.url
        ))
        .await;
    let sha = repo.commit("main", &[("README", "tls\n")], "first");
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{id}/run"),
            json!({"branch": "main", "commit": sha}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    let log = stack.logs(task_id).await;
    assert!(log.contains("hello over tls"), "{log}");
    task
}

/// Why a runner with these settings does not start.
async fn start_error(settings: runner::Settings) -> String {
    match runner::Runner::build(settings).await {
        Ok(_) => panic!("the runner started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_reaches_a_tls_orchestrator_through_its_ca() {
    let ca = Arc::new(TestCa::new());
    // The stack's runner and gateway use https:// and trust the CA.
    let stack = Stack::with(Options {
        grpc_tls: Some(ca.clone()),
        ..Options::default()
    })
    .await;
    assert!(stack.grpc_url.starts_with("https://"), "{}", stack.grpc_url);
    let task = run_one_task(&stack, "grpc-tls").await;
    assert_eq!(task["status"], "success", "{task:#}");

    let mut settings = stack.runner_settings();
    settings.orchestrator_ca = String::new();
    let err = start_error(settings.clone()).await;
    assert!(
        err.contains("TLS with the orchestrator") && err.contains("SLIPWAY_ORCHESTRATOR_CA"),
        "{err}"
    );

    let other = TestCa::new();
    settings.orchestrator_ca = TestCa::setting(&other.ca);
    let err = start_error(settings.clone()).await;
    assert!(
        err.contains("TLS with the orchestrator") && err.contains("invalid peer certificate"),
        "{err}"
    );

    settings.orchestrator_ca = "/nonexistent/ca.pem".to_owned();
    let err = start_error(settings).await;
    assert!(
        err.contains("SLIPWAY_ORCHESTRATOR_CA: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

/// `amqp://user:pass@host:port/vhost` split into the user part, the
/// address and the vhost.
async fn broker_parts(url: &str) -> (String, SocketAddr, String) {
    let rest = url.strip_prefix("amqp://").expect("an amqp:// test broker");
    let (user, rest) = rest.split_once('@').expect("credentials");
    let (host_port, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = tokio::net::lookup_host(host_port)
        .await
        .expect("broker address")
        .next()
        .expect("an address");
    (user.to_owned(), addr, vhost.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_takes_tasks_over_amqps() {
    let ca = TestCa::new();
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let (user, broker, vhost) = broker_parts(&stack.amqp_url).await;
    let proxy = tls_proxy(&ca, broker).await;
    let mut settings = stack.runner_settings();
    settings.amqp_url = format!("amqps://{user}@127.0.0.1:{}/{vhost}", proxy.port());

    // The system roots do not know the test CA.
    let err = start_error(settings.clone()).await;
    assert!(
        err.contains("cannot reach the broker") && err.contains("invalid peer certificate"),
        "{err}"
    );
    settings.amqp_ca = "/nonexistent/ca.pem".to_owned();
    let err = start_error(settings.clone()).await;
    assert!(
        err.contains("SLIPWAY_AMQP_CA: cannot read /nonexistent/ca.pem"),
        "{err}"
    );

    settings.amqp_ca = TestCa::setting(&ca.ca);
    stack.spawn_runner_with(settings).await;
    let task = run_one_task(&stack, "amqps").await;
    assert_eq!(task["status"], "success", "{task:#}");
}
