//! Integration-test support: a real Slipway stack (orchestrator, gateway,
//! runners) on port 0, against the Postgres and RabbitMQ that `cargo xtask
//! test` starts (`SLIPWAY_TEST_DATABASE_URL`, `SLIPWAY_TEST_AMQP_URL`). Each
//! stack gets its own database, cloned from a migrated template, and its own
//! queue prefix, so tests run in parallel without seeing each other.

pub mod auth_registry;
pub mod browser;
pub mod db;
pub mod forge;
pub mod git;
pub mod history;
pub mod hooks;
pub mod images;
pub mod netns;
pub mod otlp;
pub mod proxy;
pub mod receivers;
pub mod scrape;
pub mod tls;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

pub use db::TestDb;
pub use git::GitRepo;

/// The token of the test stacks' notifier API.
const NOTIFIER_TOKEN: &str = "test-notifier-token";

/// A test's queue goes away ten minutes after its last consumer.
const QUEUE_EXPIRES_MS: u32 = 600_000;

/// How long a test waits for something that should happen.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The registry test images are pushed to.
pub fn registry() -> String {
    std::env::var("SLIPWAY_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5001".to_owned())
}

fn amqp_url() -> String {
    std::env::var("SLIPWAY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:55673/%2f".to_owned())
}

/// Knobs of a test stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runners started in this process.
    pub runners: usize,
    /// Tasks each runner runs at once.
    pub runner_concurrency: usize,
    /// How long a claim holds without a heartbeat: short for tests of a lost runner.
    pub lease_seconds: u64,
    /// How often the runners renew their lease.
    pub heartbeat_ms: u64,
    /// The runners' time between SIGTERM and SIGKILL for a stopped step.
    pub kill_grace_ms: u64,
    /// The gateway's limit on a webhook body: small for tests of the 413.
    pub webhook_max_bytes: usize,
    /// The broker the orchestrator publishes to, when not the test broker
    /// (a dead address plays a broker that is down).
    pub orchestrator_amqp_url: Option<String>,
    /// `SLIPWAY_PENDING_ALERT` of the orchestrator.
    pub pending_alert: String,
    /// `SLIPWAY_RUNNER_TOKEN` of the orchestrator and the runners; empty:
    /// they use the API token.
    pub runner_token: String,
    /// TLS on the orchestrator's gRPC listener, with this CA's server
    /// certificate; the stack's services reach it over `https://` trusting
    /// the CA.
    pub grpc_tls: Option<std::sync::Arc<tls::TestCa>>,
    /// The orchestrator's forge credentials and API bases
    /// (`SLIPWAY_GITHUB_*`, `SLIPWAY_GITLAB_*`), for commit statuses.
    pub forges: ForgeCredentials,
    /// Changes to the orchestrator's settings before it starts (its limits,
    /// say).
    pub orchestrator_settings: fn(&mut orchestrator::Settings),
}

/// Forge settings of the orchestrator; empty: none.
#[derive(Debug, Clone, Default)]
pub struct ForgeCredentials {
    pub github_token: String,
    pub github_app_id: String,
    pub github_app_key_file: String,
    /// Empty: GitHub's.
    pub github_api_url: String,
    pub gitlab_api_token: String,
    pub gitlab_url: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runners: 1,
            runner_concurrency: 2,
            lease_seconds: 20,
            heartbeat_ms: 300,
            kill_grace_ms: 1000,
            webhook_max_bytes: 25 * 1024 * 1024,
            orchestrator_amqp_url: None,
            pending_alert: "10m".to_owned(),
            runner_token: String::new(),
            grpc_tls: None,
            forges: ForgeCredentials::default(),
            orchestrator_settings: |_| {},
        }
    }
}

/// A running stack. Dropping it stops the services.
pub struct Stack {
    /// The gateway's base URL (`http://127.0.0.1:PORT`), for the REST API and webhooks.
    pub http: String,
    /// The orchestrator's gRPC URL, for runners and the notifier.
    pub grpc_url: String,
    /// The API token of the gateway and the orchestrator.
    pub token: String,
    /// The secret GitHub webhooks are signed with.
    pub github_secret: String,
    /// The token GitLab webhooks carry.
    pub gitlab_token: String,
    /// The broker the runners consume from.
    pub amqp_url: String,
    /// Keeps this stack's queues apart from other tests'.
    pub queue_prefix: String,
    /// The data directory of the runners (workspaces, logs) and of the
    /// gateway (its webhook spool), removed with the stack.
    pub data_dir: tempfile::TempDir,
    /// One HTTP client for the stack's calls, so connections are reused.
    pub client: reqwest::Client,
    options: Options,
    shutdown: watch::Sender<bool>,
    orchestrator: Running,
    notifier: Option<RunningNotifier>,
    processes: Vec<Child>,
    /// The stack's own database, cloned from the migrated template.
    // Last: the database is dropped after the services stopped using it.
    pub db: TestDb,
}

async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Stack {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let db = TestDb::create();
        let token = format!("token-{}", uuid::Uuid::new_v4().simple());
        let queue_prefix = format!("test-{}.", uuid::Uuid::new_v4().simple());
        let (shutdown, rx) = watch::channel(false);

        let mut orchestrator_settings = orchestrator::Settings {
            grpc_addr: "127.0.0.1:0".parse().expect("address"),
            database_url: db.url.clone(),
            amqp_url: options
                .orchestrator_amqp_url
                .clone()
                .unwrap_or_else(amqp_url),
            api_token: token.clone(),
            runner_token: options.runner_token.clone(),
            // Its own, so the tests prove notifiers need nothing else.
            notifier_token: NOTIFIER_TOKEN.to_owned(),
            secret_key: "test-secret-key".to_owned(),
            secret_key_previous: String::new(),
            queue_prefix: queue_prefix.clone(),
            queue_expires_ms: QUEUE_EXPIRES_MS,
            lease_seconds: options.lease_seconds,
            max_requeues: 1,
            database_pool_size: 4,
            pending_alert: options.pending_alert.clone(),
            metrics_addr: "127.0.0.1:0".to_owned(),
            log: "warn".to_owned(),
            log_json: false,
            amqp_ca: String::new(),
            grpc_tls_cert: options
                .grpc_tls
                .as_ref()
                .map(|ca| tls::TestCa::setting(&ca.cert))
                .unwrap_or_default(),
            grpc_tls_key: options
                .grpc_tls
                .as_ref()
                .map(|ca| tls::TestCa::setting(&ca.key))
                .unwrap_or_default(),
            github_token: options.forges.github_token.clone(),
            github_app_id: options.forges.github_app_id.clone(),
            github_app_key_file: options.forges.github_app_key_file.clone(),
            github_api_url: if options.forges.github_api_url.is_empty() {
                orchestrator::Settings::default().github_api_url
            } else {
                options.forges.github_api_url.clone()
            },
            gitlab_api_token: options.forges.gitlab_api_token.clone(),
            gitlab_url: options.forges.gitlab_url.clone(),
            ..orchestrator::Settings::default()
        };
        (options.orchestrator_settings)(&mut orchestrator_settings);
        let orchestrator = Running::orchestrator(orchestrator_settings).await;
        let scheme = if options.grpc_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let grpc_url = format!("{scheme}://{}", orchestrator.settings.grpc_addr);
        let orchestrator_ca = options
            .grpc_tls
            .as_ref()
            .map(|ca| tls::TestCa::setting(&ca.ca))
            .unwrap_or_default();

        let github_secret = "github-secret".to_owned();
        let gitlab_token = "gitlab-token".to_owned();
        let data_dir = tempfile::tempdir().expect("tempdir");
        let gateway = gateway::Gateway::build(gateway::Settings {
            http_addr: "127.0.0.1:0".parse().expect("address"),
            orchestrator_url: grpc_url.clone(),
            orchestrator_ca,
            api_token: token.clone(),
            github_secret: github_secret.clone(),
            gitlab_token: gitlab_token.clone(),
            webhook_max_bytes: options.webhook_max_bytes,
            data_dir: data_dir.path().to_owned(),
            ..gateway::Settings::default()
        })
        .expect("gateway starts");
        let http = format!("http://{}", gateway.local_addr().expect("bound"));
        tokio::spawn(gateway.run(shutdown_signal(rx.clone())));

        let stack = Self {
            http,
            grpc_url,
            token,
            github_secret,
            gitlab_token,
            amqp_url: amqp_url(),
            queue_prefix,
            data_dir,
            client: reqwest::Client::new(),
            options,
            shutdown,
            orchestrator,
            notifier: None,
            processes: Vec::new(),
            db,
        };
        for _ in 0..stack.options.runners {
            stack.spawn_runner().await;
        }
        stack
    }

    /// Stops the orchestrator and starts a new one on the same address and
    /// database, optionally with another broker URL.
    pub async fn restart_orchestrator(&mut self, amqp_url: Option<String>) {
        self.stop_orchestrator().await;
        self.start_orchestrator(amqp_url).await;
    }

    /// Stops the orchestrator (until [`Stack::start_orchestrator`]).
    pub async fn stop_orchestrator(&mut self) {
        self.orchestrator.stop().await;
    }

    /// Starts the orchestrator again on its address and database.
    pub async fn start_orchestrator(&mut self, amqp_url: Option<String>) {
        self.start_orchestrator_with(|settings| {
            if let Some(url) = amqp_url {
                settings.amqp_url = url;
            }
        })
        .await;
    }

    /// Starts the orchestrator again on its address and database, with its
    /// settings changed by `change`.
    pub async fn start_orchestrator_with(
        &mut self,
        change: impl FnOnce(&mut orchestrator::Settings),
    ) {
        let mut settings = self.orchestrator.settings.clone();
        change(&mut settings);
        self.orchestrator = Running::orchestrator(settings).await;
    }

    /// The orchestrator's `/metrics` URL (it moves when it restarts).
    pub fn orchestrator_metrics(&self) -> String {
        let addr = self
            .orchestrator
            .metrics
            .expect("orchestrator metrics are on");
        format!("http://{addr}/metrics")
    }

    /// The gateway's `/metrics` URL.
    pub fn gateway_metrics(&self) -> String {
        format!("{}/metrics", self.http)
    }

    /// The running notifier's `/metrics` URL.
    pub fn notifier_metrics(&self) -> String {
        let addr = self
            .notifier
            .as_ref()
            .and_then(|n| n.metrics)
            .expect("a notifier with metrics on");
        format!("http://{addr}/metrics")
    }

    /// Settings for one more runner of this stack.
    pub fn runner_settings(&self) -> runner::Settings {
        runner::Settings {
            orchestrator_url: self.grpc_url.clone(),
            orchestrator_ca: self.orchestrator_ca(),
            amqp_url: self.amqp_url.clone(),
            amqp_ca: String::new(),
            api_token: self.token.clone(),
            queue_prefix: self.queue_prefix.clone(),
            queue_expires_ms: QUEUE_EXPIRES_MS,
            registry: registry(),
            docker_host: String::new(),
            keep_images: 2,
            keep_containers: 1,
            data_dir: self.data_dir.path().to_path_buf(),
            cache_max_bytes: "1GiB".to_owned(),
            runner_concurrency: self.options.runner_concurrency,
            runner_token: self.options.runner_token.clone(),
            runner_id: String::new(),
            runner_labels: String::new(),
            kill_grace_ms: self.options.kill_grace_ms,
            heartbeat_ms: self.options.heartbeat_ms,
            metrics_addr: String::new(),
            proxy_admin: String::new(),
            proxy_http_port: 80,
            proxy_https_port: 443,
            proxy_check_ms: 200,
            runner_host: String::new(),
            log: "warn".to_owned(),
            log_json: false,
            ..runner::Settings::default()
        }
    }

    /// `SLIPWAY_ORCHESTRATOR_CA` of the stack's services: the CA of
    /// [`Options::grpc_tls`], or empty.
    pub fn orchestrator_ca(&self) -> String {
        self.options
            .grpc_tls
            .as_ref()
            .map(|ca| tls::TestCa::setting(&ca.ca))
            .unwrap_or_default()
    }

    /// Starts a runner in this process.
    pub async fn spawn_runner(&self) {
        self.spawn_runner_with(self.runner_settings()).await;
    }

    /// Starts a runner in this process with `settings` (from
    /// [`Stack::runner_settings`], changed).
    pub async fn spawn_runner_with(&self, settings: runner::Settings) {
        let runner = runner::Runner::build(settings)
            .await
            .expect("runner starts");
        tokio::spawn(runner.run(shutdown_signal(self.shutdown.subscribe())));
    }

    /// Settings for a notifier of this stack: retries after 200 ms, links
    /// to `http://slipway.test`; channels are the test's to set.
    pub fn notifier_settings(&self) -> notifier::Settings {
        notifier::Settings {
            notifier_addr: "127.0.0.1:0".parse().expect("address"),
            orchestrator_url: self.grpc_url.clone(),
            orchestrator_ca: self.orchestrator_ca(),
            amqp_url: self.amqp_url.clone(),
            api_token: self.token.clone(),
            notifier_token: NOTIFIER_TOKEN.to_owned(),
            queue_prefix: self.queue_prefix.clone(),
            queue_expires_ms: QUEUE_EXPIRES_MS,
            public_url: "http://slipway.test".to_owned(),
            notify_retry_base: "200ms".to_owned(),
            metrics_addr: "127.0.0.1:0".to_owned(),
            log: "warn".to_owned(),
            ..notifier::Settings::default()
        }
    }

    /// Starts a notifier in this process (one at a time); returns the
    /// address of its gRPC service.
    pub async fn start_notifier(&mut self, settings: notifier::Settings) -> String {
        self.stop_notifier().await;
        let built = notifier::Notifier::build(settings)
            .await
            .expect("notifier starts");
        let addr = format!("http://{}", built.local_addr().expect("bound"));
        let metrics = built.metrics_addr();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(built.run(shutdown_signal(rx)));
        self.notifier = Some(RunningNotifier {
            stop,
            task,
            metrics,
        });
        addr
    }

    /// Stops the notifier and waits until it has let go of its events.
    pub async fn stop_notifier(&mut self) {
        if let Some(n) = self.notifier.take() {
            let _ = n.stop.send(true);
            let mut task = n.task;
            if tokio::time::timeout(DEADLINE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    /// Starts a runner as a separate process (so a test can kill it).
    pub fn spawn_runner_process(&mut self, binary: &Path) -> u32 {
        self.spawn_runner_process_with(binary, &[], Stdio::inherit())
    }

    /// Starts a runner process with more environment variables (`SLIPWAY_*`
    /// ones override the stack's) and its stderr, where it logs, sent to
    /// `stderr`.
    pub fn spawn_runner_process_with(
        &mut self,
        binary: &Path,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> u32 {
        let s = self.runner_settings();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned()),
            )
            .env("SLIPWAY_ORCHESTRATOR_URL", &s.orchestrator_url)
            .env("SLIPWAY_AMQP_URL", &s.amqp_url)
            .env("SLIPWAY_ORCHESTRATOR_CA", &s.orchestrator_ca)
            .env("SLIPWAY_API_TOKEN", &s.api_token)
            .env("SLIPWAY_RUNNER_TOKEN", &s.runner_token)
            .env("SLIPWAY_QUEUE_PREFIX", &s.queue_prefix)
            .env("SLIPWAY_REGISTRY", &s.registry)
            .env("SLIPWAY_QUEUE_EXPIRES_MS", s.queue_expires_ms.to_string())
            .env("SLIPWAY_DATA_DIR", &s.data_dir)
            .env("SLIPWAY_HEARTBEAT_MS", s.heartbeat_ms.to_string())
            .env("SLIPWAY_KILL_GRACE_MS", s.kill_grace_ms.to_string())
            .env("SLIPWAY_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("runner process starts");
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// Kills a runner process with SIGKILL, as a crash would.
    pub fn kill_runner_process(&mut self, pid: u32) {
        if let Some(child) = self.processes.iter_mut().find(|c| c.id() == pid) {
            child.kill().expect("kill -9");
            child.wait().expect("reaped");
        }
    }

    /// An API call with the bearer token; returns the status and the JSON
    /// body (`Value::Null` when the body is not JSON).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.api(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(Method::POST, path, Some(body)).await
    }

    /// Creates a workflow from YAML; returns its id.
    pub async fn create_workflow(&self, yaml: &str) -> i64 {
        let resp = self
            .client
            .post(format!("{}/api/workflows", self.http))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/yaml")
            .body(yaml.to_owned())
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::CREATED, "create workflow: {body}");
        body["id"].as_i64().expect("workflow id")
    }

    /// Runs the workflow by hand on `main`'s head; returns the task id.
    pub async fn run_workflow(&self, workflow_id: i64) -> i64 {
        let (status, body) = self
            .post(
                &format!("/api/workflows/{workflow_id}/run"),
                serde_json::json!({"branch": "main"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "run workflow {workflow_id}: {body}"
        );
        body["task_id"].as_i64().expect("task id")
    }

    pub async fn set_secret(&self, workflow_id: i64, name: &str, value: &str) {
        let (status, body) = self
            .api(
                Method::PUT,
                &format!("/api/workflows/{workflow_id}/secrets/{name}"),
                Some(serde_json::json!({ "value": value })),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "set secret: {body}");
    }

    /// Delivers a GitHub webhook, signed with this stack's secret.
    pub async fn github(&self, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
        let raw = serde_json::to_vec(body).expect("json");
        let signature = hooks::github_signature(self.github_secret.as_bytes(), &raw);
        self.github_raw(event, delivery, raw, Some(&signature))
            .await
    }

    pub async fn github_raw(
        &self,
        event: &str,
        delivery: &str,
        raw: Vec<u8>,
        signature: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/webhooks/github", self.http))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(raw);
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Delivers a GitLab webhook with this stack's token.
    pub async fn gitlab(&self, event: &str, uuid: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(format!("{}/api/webhooks/gitlab", self.http))
            .header("X-Gitlab-Event", event)
            .header("X-Gitlab-Event-UUID", uuid)
            .header("X-Gitlab-Token", &self.gitlab_token)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Commits the test app (`images::app`) with this `/health` body to
    /// `main` and delivers its push; returns the task id.
    pub async fn push_app(&self, repo: &GitRepo, health: &str, delivery: &str) -> i64 {
        let files = images::app(Some(health), None);
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let sha = repo.commit("main", &files, delivery);
        let payload = hooks::github_push(
            &repo.url,
            "refs/heads/main",
            &sha,
            delivery,
            &["www/health"],
        );
        let (status, body) = self.github("push", delivery, &payload).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["task_ids"][0].as_i64().expect("task")
    }

    /// A client of the orchestrator's runner API, for a test that plays
    /// the runner.
    pub fn runner_api(&self) -> RunnerApi {
        let channel = proto::orchestrator_channel(&self.grpc_url, None, Duration::from_secs(10))
            .expect("channel");
        let bearer = proto::auth::Bearer::new(&self.token).expect("token");
        proto::runner_api_client::RunnerApiClient::with_interceptor(channel, bearer)
    }

    pub async fn task(&self, id: i64) -> Value {
        let (status, body) = self.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get task {id}: {body}");
        body
    }

    /// Polls the task until `done` holds, failing the test after `deadline`.
    pub async fn wait_task(
        &self,
        id: i64,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let task = self.task(id).await;
            if done(&task) {
                return task;
            }
            assert!(
                Instant::now() < until,
                "task {id} did not get there in {deadline:?}: {task:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the task has finished; returns it.
    pub async fn wait_finished(&self, id: i64) -> Value {
        self.wait_task(id, DEADLINE, |t| {
            matches!(
                t["status"].as_str(),
                Some("success" | "failed" | "cancelled")
            )
        })
        .await
    }

    pub async fn logs(&self, id: i64) -> String {
        self.client
            .get(format!("{}/api/tasks/{id}/logs", self.http))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("body read")
    }
}

/// The stack's notifier, which tests may stop and start.
struct RunningNotifier {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), notifier::Error>>,
    metrics: Option<std::net::SocketAddr>,
}

/// The stack's orchestrator, which tests may restart.
struct Running {
    settings: orchestrator::Settings,
    metrics: Option<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), orchestrator::Error>>,
}

impl Running {
    async fn orchestrator(mut settings: orchestrator::Settings) -> Self {
        let built = orchestrator::Orchestrator::build(settings.clone())
            .await
            .expect("orchestrator starts");
        settings.grpc_addr = built.local_addr().expect("bound");
        let metrics = built.metrics_addr();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(built.run(shutdown_signal(rx)));
        Self {
            settings,
            metrics,
            stop,
            task,
        }
    }

    /// Stops the orchestrator; returns its settings with the bound address.
    async fn stop(&mut self) -> orchestrator::Settings {
        let _ = self.stop.send(true);
        let task = &mut self.task;
        if tokio::time::timeout(DEADLINE, &mut *task).await.is_err() {
            task.abort();
        }
        self.settings.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(n) = &self.notifier {
            let _ = n.stop.send(true);
        }
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The named step of a task JSON.
pub fn step<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

/// A time of the named step of a task JSON (`started_at`, `finished_at`).
pub fn step_time(task: &Value, name: &str, field: &str) -> chrono::DateTime<chrono::Utc> {
    let text = step(task, name)[field].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{name}.{field} {text:?}: {e}\n{task:#}"))
        .with_timezone(&chrono::Utc)
}

/// The orchestrator's runner API, with the stack's token.
pub type RunnerApi = proto::runner_api_client::RunnerApiClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, proto::auth::Bearer>,
>;

/// Claims task `task_id` over `runner` as the runner `test-runner` with
/// `labels`; its lease, or the refusal.
pub async fn try_claim(
    runner: &mut RunnerApi,
    task_id: i64,
    labels: &[&str],
) -> Result<proto::LeaseRef, tonic::Status> {
    let claimed = runner
        .claim_task(proto::ClaimTaskRequest {
            task_id,
            runner_id: "test-runner".to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        })
        .await?;
    Ok(claimed.into_inner().lease.expect("a lease"))
}

/// [`try_claim`], which must succeed.
pub async fn claim(runner: &mut RunnerApi, task_id: i64, labels: &[&str]) -> proto::LeaseRef {
    try_claim(runner, task_id, labels).await.expect("claim")
}
