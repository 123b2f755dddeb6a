//! Webhooks are never refused while the orchestrator is away: a verified
//! delivery it cannot take goes to the gateway's durable spool (`202` with
//! `"queued": true`), and is handed over, in order and once, when it is
//! back, even after the gateway was killed meanwhile. Only a full spool
//! answers `503`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::hooks::github_push;
use test_support::images::free_port;
use test_support::{GitRepo, Options, Stack};

/// A gateway in a process of its own, which a test can kill.
struct Gateway {
    child: Child,
    http: String,
}

impl Gateway {
    async fn start(stack: &Stack, data_dir: &Path, spool_bytes: &str) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_slipway-gateway"))
            .env("SLIPWAY_HTTP_ADDR", &addr)
            .env("SLIPWAY_ORCHESTRATOR_URL", &stack.grpc_url)
            .env("SLIPWAY_API_TOKEN", &stack.token)
            .env("SLIPWAY_GITHUB_SECRET", &stack.github_secret)
            .env("SLIPWAY_DATA_DIR", data_dir)
            .env("SLIPWAY_WEBHOOK_SPOOL_BYTES", spool_bytes)
            .env("SLIPWAY_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("the gateway starts");
        // Killed and reaped when dropped, also when it never comes up.
        let gateway = Self {
            child,
            http: format!("http://{addr}"),
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let up = stack
                .client
                .get(format!("{}/healthz", gateway.http))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return gateway;
            }
            assert!(Instant::now() < until, "the gateway did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn workflow(stack: &Stack, repo: &GitRepo) -> i64 {
    stack
        .create_workflow(&format!(
            "name: spooled\nrepo: {}\nsteps:\n  - name: hi\n    run: echo hi\n",
            repo.url
        ))
        .await
}

/// Sends push `n` (delivery `push-<n>`) to a commit of its own.
async fn push(stack: &Stack, repo: &GitRepo, n: usize) -> (u16, Value) {
    let sha = repo.commit("main", &[("n.txt", &n.to_string())], &format!("push {n}"));
    let (status, body) = stack
        .github(
            "push",
            &format!("push-{n}"),
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["n.txt"]),
        )
        .await;
    (status.as_u16(), body)
}

/// The delivery ids of the workflow's tasks, oldest task first, once there
/// are `want` of them.
async fn deliveries_of_tasks(stack: &Stack, workflow_id: i64, want: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, tasks) = stack
            .get(&format!("/api/tasks?workflow_id={workflow_id}&limit=200"))
            .await;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        if tasks.len() >= want {
            let mut rows: Vec<(i64, String)> = tasks
                .iter()
                .map(|t| {
                    (
                        t["id"].as_i64().expect("id"),
                        t["delivery_id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            rows.sort();
            return rows.into_iter().map(|(_, d)| d).collect();
        }
        assert!(
            Instant::now() < until,
            "{} of {want} tasks after 60 s",
            tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("push-{n}")).collect()
}

async fn spool_depth(stack: &Stack) -> u64 {
    let (_, ready) = stack.get("/readyz").await;
    ready["webhook_spool"]["deliveries"]
        .as_u64()
        .unwrap_or_else(|| panic!("readyz shows the spool: {ready}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_while_the_orchestrator_is_down_are_queued_then_run_in_order() {
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let workflow_id = workflow(&stack, &repo).await;
    let (status, body) = push(&stack, &repo, 0).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.get("queued").is_none(), "taken at once: {body}");

    stack.stop_orchestrator().await;
    for n in 1..4 {
        let (status, body) = push(&stack, &repo, n).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["queued"], true, "{body}");
        assert_eq!(body["delivery_id"], format!("push-{n}"), "{body}");
        assert_eq!(body["task_ids"], serde_json::json!([]), "{body}");
    }
    let (status, ready) = stack.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["webhook_spool"]["deliveries"], 3, "{ready}");
    let (status, body) = stack.get("/api/tasks").await;
    assert_eq!(status, 503, "API calls are an outage, not an error: {body}");

    stack.start_orchestrator(None).await;
    // A push that comes while the spool still holds some queues behind them.
    let (status, _) = push(&stack, &repo, 4).await;
    assert_eq!(status, 202);
    assert_eq!(
        deliveries_of_tasks(&stack, workflow_id, 5).await,
        expected(0..5),
        "each push once, in the order they came"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while spool_depth(&stack).await > 0 {
        assert!(Instant::now() < until, "the spool empties");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Redelivered by hand: the first answer, nothing new.
    let sha = repo.commit("main", &[("x.txt", "x")], "again");
    let (status, body) = stack
        .github(
            "push",
            "push-2",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["x.txt"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true, "{body}");
    let metrics = stack
        .client
        .get(stack.gateway_metrics())
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let metrics = test_support::scrape::parse(&metrics).expect("metrics parse");
    let queued = metrics.value(
        "slipway_webhooks_received_total",
        &[("provider", "github"), ("outcome", "queued")],
    );
    let handed_over = metrics.value("slipway_webhook_spool_handed_over_total", &[]);
    assert!((3.0..=4.0).contains(&queued), "{queued}");
    assert!(
        (handed_over - queued).abs() < f64::EPSILON,
        "{handed_over} of {queued}"
    );
    assert!(
        metrics.value("slipway_webhook_spool_deliveries", &[]) < 1.0,
        "empty again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_survives_a_gateway_kill_and_an_orchestrator_restart_mid_replay() {
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let workflow_id = workflow(&stack, &repo).await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::start(&stack, spool_dir.path(), "256MiB").await;
    let in_process = std::mem::replace(&mut stack.http, gateway.http.clone());

    stack.stop_orchestrator().await;
    for n in 0..30 {
        let (status, body) = push(&stack, &repo, n).await;
        assert_eq!(
            (status, &body["queued"]),
            (202, &Value::Bool(true)),
            "{body}"
        );
    }
    gateway.kill();

    let gateway = Gateway::start(&stack, spool_dir.path(), "256MiB").await;
    stack.http = gateway.http.clone();
    assert_eq!(
        spool_depth(&stack).await,
        30,
        "nothing lost with the gateway"
    );
    stack.start_orchestrator(None).await;
    // Restarted while the spool is being handed over.
    let until = Instant::now() + Duration::from_secs(30);
    while spool_depth(&stack).await == 30 {
        assert!(Instant::now() < until, "the hand-over starts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.restart_orchestrator(None).await;

    stack.http = in_process;
    assert_eq!(
        deliveries_of_tasks(&stack, workflow_id, 30).await,
        expected(0..30),
        "every push has one task, in order"
    );
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_and_loses_nothing_it_took() {
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let workflow_id = workflow(&stack, &repo).await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    // Room for a few pushes.
    let gateway = Gateway::start(&stack, spool_dir.path(), "6KiB").await;
    let in_process = std::mem::replace(&mut stack.http, gateway.http.clone());

    stack.stop_orchestrator().await;
    let mut queued = 0;
    let full = loop {
        let (status, body) = push(&stack, &repo, queued).await;
        if status == 503 {
            break body;
        }
        assert_eq!(
            (status, &body["queued"]),
            (202, &Value::Bool(true)),
            "{body}"
        );
        queued += 1;
        assert!(queued < 100, "the spool fills up");
    };
    assert!(
        full["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("webhook spool full")),
        "{full}"
    );
    assert!(queued >= 2, "a few fit: {queued}");

    stack.start_orchestrator(None).await;
    stack.http = in_process;
    assert_eq!(
        deliveries_of_tasks(&stack, workflow_id, queued).await,
        expected(0..queued)
    );
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_waited_over_an_hour_raises_webhook_delayed() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let workflow_id = workflow(&stack, &repo).await;
    let sha = repo.commit("main", &[("late.txt", "late")], "late push");
    // What a gateway kept two hours ago, when the orchestrator was away.
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = gateway::spool::Spool::open(spool_dir.path(), 1 << 20).expect("spool");
    let request = proto::IngestWebhookRequest {
        provider: "github".to_owned(),
        delivery_id: "late-1".to_owned(),
        event: "push".to_owned(),
        body_sha256: "00".repeat(32),
        push: Some(proto::PushEvent {
            repo_urls: vec![repo.url.clone()],
            git_ref: "refs/heads/main".to_owned(),
            after: sha,
            changed_paths: vec!["late.txt".to_owned()],
            paths_known: true,
            message: Some("late push".to_owned()),
            author: None,
            committed_at: None,
        }),
        received_at: Some(proto::timestamp(
            chrono::Utc::now() - chrono::TimeDelta::hours(2),
        )),
        ..proto::IngestWebhookRequest::default()
    };
    spool.keep(request).await.expect("kept");
    drop(spool);

    let gateway = Gateway::start(&stack, spool_dir.path(), "256MiB").await;
    assert_eq!(
        deliveries_of_tasks(&stack, workflow_id, 1).await,
        ["late-1"]
    );
    let (_, tasks) = stack
        .get(&format!("/api/tasks?workflow_id={workflow_id}"))
        .await;
    let task_id = tasks[0]["id"].as_i64().expect("id");
    let delayed = stack.db.count(&format!(
        "SELECT count(*) AS n FROM events WHERE task_id = {task_id} \
         AND type = 'webhook_delayed' AND summary LIKE '%12_ minutes late%'"
    ));
    assert_eq!(delayed, 1, "one webhook_delayed event, about 2 hours late");
    drop(gateway);
}
