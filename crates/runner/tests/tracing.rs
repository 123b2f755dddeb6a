//! Distributed tracing end to end: a signed push runs a real task and
//! alerts a webhook, and the spans of the gateway, the orchestrator, the
//! runner and the notifier, exported over OTLP to a receiver on loopback,
//! form one trace.
//!
//! The gateway, the orchestrator and the notifier of the stack run in this
//! process and export through the one subscriber this test installs, so
//! they are told apart by `code.module.name`, the module each span was
//! opened in. The runner is the real binary in a process of its own, with
//! the exporter its `main` sets up from `OTEL_EXPORTER_OTLP_ENDPOINT`: its
//! spans carry `service.name = slipway-runner`, and reach the trace only
//! through the `traceparent` of the task message.

use std::process::Stdio;
use std::time::{Duration, Instant};

use test_support::hooks::github_push;
use test_support::otlp::{Collector, ReceivedSpan};
use test_support::receivers::HttpReceiver;
use test_support::{DEADLINE, GitRepo, Options, Stack};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");

/// The span of `trace_id` named `name`, opened in a module under `module`,
/// with these `attributes`.
fn find<'a>(
    spans: &'a [ReceivedSpan],
    trace_id: &str,
    name: &str,
    module: &str,
    attributes: &[(&str, &str)],
) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.trace_id == trace_id
            && s.name == name
            && s.attribute("code.module.name")
                .is_some_and(|m| m.starts_with(module))
            && attributes.iter().all(|(k, v)| s.attribute(k) == Some(*v))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_one_trace_from_the_webhook_to_the_notifier() {
    let collector = Collector::start().await;
    let tracing = telemetry::trace::init(
        "warn",
        false,
        Some(telemetry::trace::Export {
            endpoint: collector.endpoint.clone(),
            service_name: "slipway-test-stack".to_owned(),
        }),
    );
    assert!(tracing.exporting());

    let http = HttpReceiver::start().await;
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("traced", None);
    stack
        .create_workflow(&format!(
            "name: traced\nrepo: {}\nsteps:\n  - name: build\n    run: echo built\nnotify:\n  - on: [task_succeeded]\n    webhook: {{ url: \"{hook}\" }}\n",
            repo.url
        ))
        .await;
    stack.start_notifier(stack.notifier_settings()).await;
    let log_path = stack.data_dir.path().join("runner.log");
    let log_file = std::fs::File::create(&log_path).expect("runner log file");
    stack.spawn_runner_process_with(
        RUNNER.as_ref(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("SLIPWAY_LOG", "info"),
        ],
        Stdio::from(log_file),
    );

    let sha = repo.commit("main", &[("a.txt", "a")], "traced change");
    let (status, body) = stack
        .github(
            "push",
            "delivery-traced",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["a.txt"]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    http.wait_accepted("/hooks/traced", 1, DEADLINE).await;

    // The root: the gateway's handling of the webhook, naming its task.
    let task_ids = format!("[{task_id}]");
    let spans = collector
        .wait_for(DEADLINE, "webhook span", |spans| {
            spans
                .iter()
                .any(|s| s.name == "webhook" && s.attribute("task_ids") == Some(task_ids.as_str()))
        })
        .await;
    let root = spans
        .iter()
        .find(|s| s.name == "webhook" && s.attribute("task_ids") == Some(task_ids.as_str()))
        .expect("the webhook span");
    let trace = root.trace_id.clone();
    assert!(root.parent_span_id.is_empty(), "{root:#?}");
    assert_eq!(root.attribute("provider"), Some("github"));
    assert!(
        root.attribute("code.module.name")
            .is_some_and(|m| m.starts_with("gateway::")),
        "{root:#?}"
    );

    let task_attr = task_id.to_string();
    let task = &[("task_id", task_attr.as_str())][..];
    let succeeded = &[("task_id", task_attr.as_str()), ("kind", "task_succeeded")][..];
    let spans = collector
        .wait_for(
            DEADLINE,
            "every service's spans in the task's trace",
            |spans| {
                find(
                    spans,
                    &trace,
                    "slipway.v1.Slipway/IngestWebhook",
                    "orchestrator::",
                    &[],
                )
                .is_some()
                    && find(spans, &trace, "publish task", "orchestrator::relay", task).is_some()
                    && spans.iter().any(|s| {
                        s.trace_id == trace && s.service == "slipway-runner" && s.name == "run task"
                    })
                    && find(
                        spans,
                        &trace,
                        "slipway.v1.RunnerApi/FinishTask",
                        "orchestrator::",
                        &[],
                    )
                    .is_some()
                    && find(
                        spans,
                        &trace,
                        "publish event",
                        "orchestrator::relay",
                        succeeded,
                    )
                    .is_some()
                    && find(spans, &trace, "handle event", "notifier::", succeeded).is_some()
                    && find(spans, &trace, "deliver", "notifier::", &[]).is_some()
            },
        )
        .await;

    // Each hop is the child of the one before.
    let ingest = find(
        &spans,
        &trace,
        "slipway.v1.Slipway/IngestWebhook",
        "orchestrator::",
        &[],
    )
    .expect("ingest span");
    assert_eq!(ingest.parent_span_id, root.span_id, "{ingest:#?}");
    let publish =
        find(&spans, &trace, "publish task", "orchestrator::relay", task).expect("publish span");
    assert_eq!(publish.parent_span_id, ingest.span_id, "{publish:#?}");
    let run = spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == "slipway-runner" && s.name == "run task")
        .expect("run span");
    assert_eq!(run.parent_span_id, publish.span_id, "{run:#?}");
    assert_eq!(run.attribute("task_id"), Some(task_attr.as_str()));
    assert_eq!(
        run.attribute("code.module.name"),
        Some("runner"),
        "{run:#?}"
    );
    for method in ["ClaimTask", "FinishTask"] {
        let call = find(
            &spans,
            &trace,
            &format!("slipway.v1.RunnerApi/{method}"),
            "orchestrator::",
            &[],
        )
        .unwrap_or_else(|| panic!("{method} span"));
        assert_eq!(call.parent_span_id, run.span_id, "{call:#?}");
    }
    let handle =
        find(&spans, &trace, "handle event", "notifier::", succeeded).expect("handle span");
    let event = find(
        &spans,
        &trace,
        "publish event",
        "orchestrator::relay",
        succeeded,
    )
    .expect("publish event span");
    assert_eq!(handle.parent_span_id, event.span_id, "{handle:#?}");
    let deliver = spans
        .iter()
        .find(|s| s.name == "deliver" && s.parent_span_id == handle.span_id)
        .expect("a delivery span under the event's");
    assert_eq!(deliver.trace_id, trace);
    assert_eq!(deliver.attribute("channel"), Some("webhook"));

    // Span names stay few: ids are attributes, never part of a name.
    let fixed = [
        "webhook",
        "publish task",
        "run task",
        "publish event",
        "handle event",
        "deliver",
    ];
    let odd: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| s.name.as_str())
        .filter(|n| !fixed.contains(n) && !n.starts_with("slipway.v1."))
        .collect();
    assert!(odd.is_empty(), "unexpected span names: {odd:?}");

    // The runner's log line for the task carries the trace id.
    let until = Instant::now() + DEADLINE;
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log
            .lines()
            .any(|l| l.contains("running task") && l.ends_with(&format!("trace_id={trace}")))
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "no runner log line with trace_id={trace}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing.shutdown();
}
