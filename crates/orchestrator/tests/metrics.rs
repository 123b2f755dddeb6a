//! `GET /metrics` of the gateway, the orchestrator and the notifier, scraped
//! as Prometheus does, before and after real tasks ran: webhooks by outcome,
//! finished tasks, step and task durations, queue waits, queue consumers
//! and notification deliveries move by what happened, once each.

use reqwest::StatusCode;
use test_support::hooks::github_push;
use test_support::receivers::HttpReceiver;
use test_support::scrape::{Metrics, scrape, scrape_until};
use test_support::{GitRepo, Stack};

const WEBHOOKS: &str = "slipway_webhooks_received_total";

fn grew(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_webhooks_tasks_and_notifications() {
    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("metered", None);
    stack
        .create_workflow(&format!(
            "name: metered\nrepo: {repo}\nsteps:\n  - name: verdict\n    run: grep -q pass verdict.txt\nnotify:\n  - on: [build_failed]\n    webhook: {{ url: \"{hook}\" }}\n",
            repo = repo.url
        ))
        .await;
    // The first attempt fails, so the delivery is retried once.
    http.fail_next("/hooks/metered", 1);
    stack.start_notifier(stack.notifier_settings()).await;
    let client = reqwest::Client::new();

    // No token needed, and the text format each time.
    let gateway_before = scrape(&client, &stack.gateway_metrics()).await;
    let orchestrator_before = scrape_until(&client, &stack.orchestrator_metrics(), |m| {
        // The runner and the notifier consume once they are up.
        m.value("slipway_queue_consumers", &[("queue", "tasks")]) >= 1.0
            && m.value("slipway_queue_consumers", &[("queue", "notify")]) >= 1.0
            && m.value("slipway_runners_online", &[]) >= 1.0
    })
    .await;
    // The stack's one runner, idle, with its two slots.
    assert_samples(
        &orchestrator_before,
        &[
            ("slipway_runners_online", &[], 1.0),
            ("slipway_online_runner_slots", &[("state", "total")], 2.0),
            ("slipway_online_runner_slots", &[("state", "busy")], 0.0),
        ],
    );
    let notifier_before = scrape(&client, &stack.notifier_metrics()).await;
    assert_eq!(gateway_before.type_of(WEBHOOKS), Some("counter"));
    assert_eq!(
        orchestrator_before.type_of("slipway_task_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(orchestrator_before.type_of("slipway_tasks"), Some("gauge"));
    assert_eq!(
        notifier_before.type_of("slipway_notification_deliveries_total"),
        Some("counter")
    );

    // One task that passes, one that fails (and notifies).
    let mut task_ids = Vec::new();
    for (n, verdict) in ["pass", "fail"].into_iter().enumerate() {
        let sha = repo.commit("main", &[("verdict.txt", verdict)], verdict);
        let payload = github_push(
            &repo.url,
            "refs/heads/main",
            &sha,
            verdict,
            &["verdict.txt"],
        );
        let (status, body) = stack.github("push", &format!("d-{n}"), &payload).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        task_ids.push(body["task_ids"][0].as_i64().expect("a task"));
        let task = stack.wait_finished(task_ids[n]).await;
        let expected = if verdict == "pass" {
            "success"
        } else {
            "failed"
        };
        assert_eq!(task["status"], expected, "{task:#}");
    }
    // A delivery seen before, a ping, a bad signature.
    let sha = repo.commit("main", &[("verdict.txt", "fail")], "again");
    let payload = github_push(
        &repo.url,
        "refs/heads/main",
        &sha,
        "again",
        &["verdict.txt"],
    );
    let (status, _) = stack.github("push", "d-0", &payload).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack
        .github("ping", "d-ping", &serde_json::json!({"zen": "hi"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let raw = serde_json::to_vec(&payload).expect("json");
    let (status, _) = stack
        .github_raw("push", "d-forged", raw, Some("sha256=00"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let gateway = scrape(&client, &stack.gateway_metrics()).await;
    let github = |outcome: &'static str| [("provider", "github"), ("outcome", outcome)];
    for (outcome, n) in [
        ("accepted", 2.0),
        ("duplicate", 1.0),
        ("ignored", 1.0),
        ("unauthorized", 1.0),
        ("invalid", 0.0),
    ] {
        assert_eq!(
            grew(&gateway_before, &gateway, WEBHOOKS, &github(outcome)),
            n,
            "{outcome}"
        );
    }

    let orchestrator = scrape_until(&client, &stack.orchestrator_metrics(), |m| {
        m.value("slipway_tasks_finished_total", &[]) >= 2.0
    })
    .await;
    let o = |name: &str, labels: &[(&str, &str)]| {
        grew(&orchestrator_before, &orchestrator, name, labels)
    };
    assert_eq!(
        o("slipway_tasks_finished_total", &[("status", "success")]),
        1.0
    );
    assert_eq!(
        o("slipway_tasks_finished_total", &[("status", "failed")]),
        1.0
    );
    assert_eq!(
        o("slipway_tasks_finished_total", &[("status", "cancelled")]),
        0.0
    );
    assert_eq!(
        o(
            "slipway_task_duration_seconds_count",
            &[("status", "success")]
        ),
        1.0
    );
    assert_eq!(
        o(
            "slipway_task_duration_seconds_count",
            &[("status", "failed")]
        ),
        1.0
    );
    assert_eq!(
        o(
            "slipway_task_duration_seconds_bucket",
            &[("status", "success"), ("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(o("slipway_queue_wait_seconds_count", &[]), 2.0);
    let step = |kind, status| [("kind", kind), ("status", status)];
    assert_eq!(
        o(
            "slipway_step_duration_seconds_count",
            &step("clone", "success")
        ),
        2.0
    );
    assert_eq!(
        o(
            "slipway_step_duration_seconds_count",
            &step("run", "success")
        ),
        1.0
    );
    assert_eq!(
        o(
            "slipway_step_duration_seconds_count",
            &step("run", "failed")
        ),
        1.0
    );
    assert!(o("slipway_step_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(o("slipway_deploys_total", &[]), 0.0);
    // Nothing waits or runs any more.
    assert_samples(
        &orchestrator,
        &[
            ("slipway_tasks", &[("status", "pending")], 0.0),
            ("slipway_tasks", &[("status", "running")], 0.0),
            ("slipway_runners_busy", &[], 0.0),
        ],
    );
    assert!(
        orchestrator
            .get("slipway_queue_messages_ready", &[("queue", "tasks")])
            .is_some()
    );
    // Labels are low-cardinality: none names a task, a commit or a delivery.
    let bounded = [
        "status", "kind", "outcome", "reason", "queue", "provider", "le", "state",
    ];
    for sample in orchestrator.samples.iter().chain(&gateway.samples) {
        for (key, value) in &sample.labels {
            assert!(
                bounded.contains(&key.as_str()) && !value.contains(&sha[..7]),
                "{} has a high-cardinality label {key}={value}",
                sample.name
            );
        }
    }

    // The failed task's alert: one refused attempt, then delivered.
    http.wait_accepted("/hooks/metered", 1, test_support::DEADLINE)
        .await;
    let notifier = scrape_until(&client, &stack.notifier_metrics(), |m| {
        m.value(
            "slipway_notification_deliveries_total",
            &[("outcome", "delivered")],
        ) >= 1.0
    })
    .await;
    let delivered = |outcome| [("channel", "webhook"), ("outcome", outcome)];
    let d = |labels: &[(&str, &str)]| {
        grew(
            &notifier_before,
            &notifier,
            "slipway_notification_deliveries_total",
            labels,
        )
    };
    assert_eq!(d(&delivered("retry")), 1.0);
    assert_eq!(d(&delivered("delivered")), 1.0);
    assert_eq!(d(&delivered("failed")), 0.0);
    assert_eq!(d(&[("channel", "slack")]), 0.0);
    stack.stop_notifier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listeners_answer_only_metrics() {
    let stack = Stack::start().await;
    let client = reqwest::Client::new();
    let url = stack.orchestrator_metrics();
    let base = url.trim_end_matches("/metrics");
    let resp = client
        .get(format!("{base}/other"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = client.post(&url).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The gateway's needs no token either, unlike /api.
    let resp = client
        .get(stack.gateway_metrics())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A sample with its labels, and the value it must have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Asserts each sample is there with its value.
fn assert_samples(metrics: &Metrics, expected: &[Expected<'_>]) {
    for (name, labels, want) in expected {
        assert_eq!(metrics.get(name, labels), Some(*want), "{name} {labels:?}");
    }
}
