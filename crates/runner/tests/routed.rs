//! Routed environments behind a real edge proxy (Caddy) on the real engine:
//! while a client sends steady requests to the route (its plain `listen`
//! port and a `tls: internal` domain checked with the proxy's root
//! certificate), good deploys, a candidate that never gets healthy, one whose
//! health fails during the watch, one whose container dies during it, a
//! manual rollback and two deploys queued back to back: not one request
//! fails, and the versions answering change once per switch, in order.
//! Then the faults: the proxy killed and started empty, a runner killed in
//! the middle of a deploy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::hooks::github_push;
use test_support::images::{self, free_port};
use test_support::proxy::Proxy;
use test_support::{GitRepo, Options, Stack};

/// A version of the app: `/` answers its name, `/health` is there or not.
fn app(version: &str, healthy: bool) -> Vec<(&'static str, String)> {
    let remove = if healthy { "" } else { "RUN rm /www/health\n" };
    vec![
        (
            "Dockerfile",
            format!(
                "FROM {}\nCOPY www /www\n{remove}CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n",
                images::BUSYBOX
            ),
        ),
        ("www/index.html", format!("{version}\n")),
        ("www/health", "ok\n".to_owned()),
    ]
}

/// Pushes `version` to main; returns its task.
async fn push(stack: &Stack, repo: &GitRepo, version: &str, healthy: bool) -> i64 {
    let files = app(version, healthy);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let sha = repo.commit("main", &files, version);
    let payload = github_push(
        &repo.url,
        "refs/heads/main",
        &sha,
        version,
        &["www/index.html"],
    );
    let (status, body) = stack.github("push", version, &payload).await;
    assert_eq!(status, 202, "{body}");
    body["task_ids"][0].as_i64().expect("task")
}

/// One request of the steady client: when it was sent, and the version
/// that answered or why none did.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    outcome: Result<String, String>,
}

/// A client sending one request after another to `url` until stopped.
struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Steady {
    fn start(client: reqwest::Client, url: String) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                // A request on a kept-alive connection the proxy closed at
                // a config change is retried once, as HTTP clients do.
                let mut outcome = get(&client, &url).await;
                if outcome.is_err() {
                    outcome = get(&client, &url).await;
                }
                samples.push(Sample { sent, outcome });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        });
        Steady { stop, task }
    }

    /// Stops the client; returns every request's sample, in send order.
    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = self.task.await.expect("steady client");
        samples.sort_by_key(|s| s.sent);
        samples
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("cut: {e}"))?;
    if status.is_success() {
        Ok(body.trim().to_owned())
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}

/// The versions that answered, each run of equal answers once, after
/// asserting that no request failed.
fn switches(what: &str, samples: &[Sample]) -> Vec<String> {
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed, first: {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
    let mut runs: Vec<String> = Vec::new();
    for s in samples {
        let version = s.outcome.clone().unwrap_or_default();
        if runs.last() != Some(&version) {
            runs.push(version);
        }
    }
    runs
}

/// Polls `url` until `version` answers there.
async fn wait_for_version(client: &reqwest::Client, url: &str, version: &str) {
    let until = Instant::now() + test_support::DEADLINE;
    loop {
        if get(client, url).await.as_deref() == Ok(version) {
            return;
        }
        assert!(Instant::now() < until, "{version} never answered at {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The running containers of the workflow's deployment `id`.
fn container_of(workflow: &str, id: i64) -> String {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=slipway.workflow={workflow}"))
        .arg("--filter")
        .arg(format!("label=slipway.deployment={id}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    assert!(out.status.success(), "docker {args:?}: {out:?}");
}

/// Removes a compose project's containers, then its network, when dropped.
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let project = self.0.trim_end_matches("_default");
        let label = format!("label=com.docker.compose.project={project}");
        if let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// Removes every container of a workflow when dropped.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=slipway.workflow={}", self.0))
            .output();
        if let Ok(out) = out {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

/// The newest deployment of task `task`.
fn deployment(task: &Value) -> &Value {
    &task["deployments"][0]
}

/// A stack whose runner drives `proxy`.
async fn routed_stack(proxy: &Proxy) -> Stack {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    settings.proxy_admin = proxy.admin();
    settings.proxy_http_port = proxy.http_port;
    settings.proxy_https_port = proxy.https_port;
    stack.spawn_runner_with(settings).await;
    stack
}

/// What a routed test starts with: a stack whose runner drives a private
/// proxy, a repository, a free `listen` port and a workflow name (whose
/// containers are removed at the end).
struct Routed {
    stack: Stack,
    proxy: Proxy,
    repo: GitRepo,
    listen: u16,
    name: String,
    containers: Containers,
}

async fn routed(prefix: &str) -> Routed {
    let engine = images::docker();
    images::busybox(&engine).await;
    let proxy = Proxy::start().await;
    let stack = routed_stack(&proxy).await;
    let listen = free_port();
    let name = format!("{prefix}-{listen}");
    Routed {
        stack,
        proxy,
        repo: GitRepo::new(),
        listen,
        containers: Containers(name.clone()),
        name,
    }
}

/// Creates the routed workflow of [`workflow`]; returns its id, its
/// domain and the URL of its `listen` port.
async fn create(stack: &Stack, repo: &GitRepo, name: &str, listen: u16) -> (i64, String, String) {
    let domain = format!("{name}.slipway.test");
    let id = stack
        .create_workflow(&workflow(name, repo, &domain, listen))
        .await;
    (id, domain, format!("http://127.0.0.1:{listen}/"))
}

fn workflow(name: &str, repo: &GitRepo, domain: &str, listen: u16) -> String {
    workflow_watching(name, repo, domain, listen, "2500ms")
}

fn workflow_watching(name: &str, repo: &GitRepo, domain: &str, listen: u16, watch: &str) -> String {
    format!(
        "name: {name}\nrepo: {repo}\nimage:\n  name: slipway-e2e/{name}\ndeploy:\n  - environment: dev\n    route:\n      domains: [{domain}]\n      tls: internal\n      listen: {listen}\n      port: 8080\n      drain: 300ms\n    target:\n      container: {{ name: {name}-dev }}\n    health:\n      path: /health\n      interval: 100ms\n      timeout: 3s\n      watch: {watch}\n",
        repo = repo.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_deploys_and_rollbacks_lose_no_request() {
    let Routed {
        stack,
        proxy,
        repo,
        listen,
        name,
        containers: _containers,
    } = routed("routed").await;
    let (workflow_id, domain, plain) = create(&stack, &repo, &name, listen).await;
    let client = reqwest::Client::new();

    // v1: the first version, on a route that did not exist.
    let v1 = stack
        .wait_finished(push(&stack, &repo, "v1", true).await)
        .await;
    assert_eq!(
        v1["status"],
        "success",
        "{v1:#}\n{}",
        stack.logs(v1["id"].as_i64().unwrap()).await
    );
    let v1_id = deployment(&v1)["id"].as_i64().unwrap();
    wait_for_version(&client, &plain, "v1").await;

    let root = std::fs::read(proxy.root_cert()).expect("the proxy's root certificate");
    let secure = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).expect("root"))
        .resolve(&domain, ([127, 0, 0, 1], proxy.https_port).into())
        .build()
        .expect("client");
    let tls_url = format!("https://{domain}:{}/", proxy.https_port);
    wait_for_version(&secure, &tls_url, "v1").await;
    // A host no route serves is not found on the proxy's HTTP port, rather
    // than an empty 200; a routed domain is redirected to HTTPS there.
    let plain_port = format!("http://127.0.0.1:{}/", proxy.http_port);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (host, status) in [("nobody.slipway.test", 404), (domain.as_str(), 308)] {
        let answer = no_redirects
            .get(&plain_port)
            .header(reqwest::header::HOST, host)
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), status, "{host}");
    }
    let steady_plain = Steady::start(client.clone(), plain.clone());
    let steady_tls = Steady::start(secure.clone(), tls_url.clone());

    // v2: a good deploy, one switch.
    let v2 = stack
        .wait_finished(push(&stack, &repo, "v2", true).await)
        .await;
    assert_eq!(v2["status"], "success", "{v2:#}");
    let v2_id = deployment(&v2)["id"].as_i64().unwrap();
    assert!(deployment(&v2)["switched_at"].is_string(), "{v2:#}");

    // v3: never healthy: no switch, failed, v2 still serves.
    let v3 = stack
        .wait_finished(push(&stack, &repo, "v3", false).await)
        .await;
    assert_eq!(v3["status"], "failed", "{v3:#}");
    assert_eq!(deployment(&v3)["status"], "failed", "{v3:#}");
    assert!(deployment(&v3)["switched_at"].is_null(), "{v3:#}");
    assert!(
        deployment(&v3)["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("health check failed: 404"),
        "{v3:#}"
    );
    assert_eq!(get(&client, &plain).await.as_deref(), Ok("v2"));

    // v4: healthy, then its health fails during the watch: switched back.
    let v4_task = push(&stack, &repo, "v4", true).await;
    wait_for_version(&client, &plain, "v4").await;
    let v4_id = stack.task(v4_task).await["deployments"][0]["id"]
        .as_i64()
        .unwrap();
    docker(&["exec", &container_of(&name, v4_id), "rm", "/www/health"]);
    let v4 = stack.wait_finished(v4_task).await;
    let d4 = deployment(&v4);
    assert_eq!(
        d4["status"],
        "rolled_back",
        "{v4:#}\n{}",
        stack.logs(v4_task).await
    );
    assert_eq!(d4["rollback"]["reason"], "health_check_failed");
    assert_eq!(d4["rollback"]["to_deployment_id"], v2_id);
    assert_eq!(get(&client, &plain).await.as_deref(), Ok("v2"));

    // v5: healthy, then its container dies during the watch: switched back.
    let v5_task = push(&stack, &repo, "v5", true).await;
    wait_for_version(&client, &plain, "v5").await;
    let v5_id = stack.task(v5_task).await["deployments"][0]["id"]
        .as_i64()
        .unwrap();
    docker(&["kill", &container_of(&name, v5_id)]);
    let v5 = stack.wait_finished(v5_task).await;
    let d5 = deployment(&v5);
    assert_eq!(
        d5["status"],
        "rolled_back",
        "{v5:#}\n{}",
        stack.logs(v5_task).await
    );
    assert_eq!(d5["rollback"]["to_deployment_id"], v2_id);
    assert_eq!(get(&client, &plain).await.as_deref(), Ok("v2"));

    // A manual rollback: back to v1 through the same steps.
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{workflow_id}/environments/dev/rollback"),
            serde_json::json!({"deployment_id": v1_id}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let rollback_task = body["task_id"].as_i64().expect("task");
    let done = stack.wait_finished(rollback_task).await;
    assert_eq!(
        done["status"],
        "success",
        "{done:#}\n{}",
        stack.logs(rollback_task).await
    );
    assert_eq!(get(&client, &plain).await.as_deref(), Ok("v1"));

    // Two deploys queued back to back: each switches in turn, unless v7's
    // image was ready first, which makes v6 outdated (recorded skipped,
    // never served).
    let v6 = push(&stack, &repo, "v6", true).await;
    let v7 = push(&stack, &repo, "v7", true).await;
    let mut v6_skipped = false;
    for task in [v6, v7] {
        let t = stack.wait_finished(task).await;
        assert_eq!(t["status"], "success", "{t:#}");
        v6_skipped |= task == v6 && deployment(&t)["status"] == "skipped";
    }
    wait_for_version(&client, &plain, "v7").await;

    let mut expected = vec!["v1", "v2", "v4", "v2", "v5", "v2", "v1", "v6", "v7"];
    if v6_skipped {
        expected.retain(|v| *v != "v6");
    }
    for (what, steady) in [("listen port", steady_plain), ("tls domain", steady_tls)] {
        let samples = steady.finish().await;
        eprintln!("{what}: {} requests, none failed", samples.len());
        assert_eq!(switches(what, &samples), expected, "{what}");
    }

    // The records: who serves, who was retired.
    let (_, envs) = stack
        .get(&format!("/api/workflows/{workflow_id}/environments"))
        .await;
    let dev = &envs[0];
    let v7_id = stack.task(v7).await["deployments"][0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(dev["serving_deployment_id"], v7_id, "{envs:#}");
    let (_, old) = stack.get(&format!("/api/deployments/{v2_id}")).await;
    assert!(old["retired_at"].is_string(), "{old:#}");
    // Only the serving version runs.
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=slipway.workflow={name}"))
        .output()
        .expect("docker ps");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_empty_gets_its_routes_back_from_the_runner() {
    let Routed {
        stack,
        mut proxy,
        repo,
        listen,
        name,
        containers: _containers,
    } = routed("restored").await;
    let (_, domain, plain) = create(&stack, &repo, &name, listen).await;
    let client = reqwest::Client::new();
    let v1 = stack
        .wait_finished(push(&stack, &repo, "v1", true).await)
        .await;
    assert_eq!(v1["status"], "success", "{v1:#}");
    wait_for_version(&client, &plain, "v1").await;

    // Killed, and started again with nothing but its admin API.
    proxy.kill();
    proxy.start_empty().await;
    let restarted = Instant::now();
    let root = std::fs::read(proxy.root_cert()).expect("the proxy's root certificate");
    let secure = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).expect("root"))
        .resolve(&domain, ([127, 0, 0, 1], proxy.https_port).into())
        .build()
        .expect("client");
    let tls_url = format!("https://{domain}:{}/", proxy.https_port);
    for (client, url) in [(&client, &plain), (&secure, &tls_url)] {
        wait_for_version(client, url, "v1").await;
    }
    let took = restarted.elapsed();
    eprintln!(
        "every route answered again {} ms after the proxy restarted empty",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(5),
        "routes restored after {took:?}"
    );

    // Killed again and resumed: its own saved config serves at once.
    proxy.kill();
    proxy.resume().await;
    wait_for_version(&client, &plain, "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_deploy_leaves_no_route_to_a_removed_container() {
    const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");
    let engine = images::docker();
    images::busybox(&engine).await;
    let proxy = Proxy::start().await;
    let mut stack = Stack::with(Options {
        runners: 0,
        lease_seconds: 3,
        ..Options::default()
    })
    .await;
    let http_port = proxy.http_port.to_string();
    let https_port = proxy.https_port.to_string();
    let admin = proxy.admin();
    let env = [
        ("SLIPWAY_PROXY_ADMIN", admin.as_str()),
        ("SLIPWAY_PROXY_HTTP_PORT", http_port.as_str()),
        ("SLIPWAY_PROXY_HTTPS_PORT", https_port.as_str()),
        ("SLIPWAY_PROXY_CHECK_MS", "200"),
    ];
    let first =
        stack.spawn_runner_process_with(RUNNER.as_ref(), &env, std::process::Stdio::inherit());
    let repo = GitRepo::new();
    let listen = free_port();
    let name = format!("killed-{listen}");
    let _containers = Containers(name.clone());
    let domain = format!("{name}.slipway.test");
    stack
        .create_workflow(&workflow_watching(&name, &repo, &domain, listen, "5s"))
        .await;
    let plain = format!("http://127.0.0.1:{listen}/");
    let client = reqwest::Client::new();
    let v1_task = push(&stack, &repo, "v1", true).await;
    wait_for_version(&client, &plain, "v1").await;
    let v1 = stack.wait_finished(v1_task).await;
    assert_eq!(v1["status"], "success", "{v1:#}");
    let steady = Steady::start(client.clone(), plain.clone());

    // v2 is switched to and watched when its runner dies.
    let v2_task = push(&stack, &repo, "v2", true).await;
    wait_for_version(&client, &plain, "v2").await;
    stack.kill_runner_process(first);
    stack.spawn_runner_process_with(RUNNER.as_ref(), &env, std::process::Stdio::inherit());
    let v2 = stack
        .wait_task(v2_task, Duration::from_secs(120), |t| {
            matches!(
                t["status"].as_str(),
                Some("success" | "failed" | "cancelled")
            )
        })
        .await;
    eprintln!("the task of the killed deploy ended {}", v2["status"]);

    // Every upstream the proxy has for the environment is a running
    // container, and the route answers.
    let until = Instant::now() + test_support::DEADLINE;
    loop {
        let config = proxy.config().await;
        let upstreams = routed_upstreams(&config, &format!("{name}/dev"));
        let running = published_ports(&name);
        let dangling: Vec<&String> = upstreams.iter().filter(|u| !running.contains(u)).collect();
        if !upstreams.is_empty() && dangling.is_empty() && get(&client, &plain).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < until,
            "upstreams {upstreams:?}, running {running:?}, config {config:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let samples = steady.finish().await;
    let runs = switches("listen port", &samples);
    eprintln!(
        "versions answering: {runs:?} over {} requests",
        samples.len()
    );
}

/// The dial addresses of the `listen` route of `key` in the proxy's config.
fn routed_upstreams(config: &Value, key: &str) -> Vec<String> {
    let id = format!("slipway-{key}@listen");
    let mut found = Vec::new();
    for server in config
        .pointer("/apps/http/servers")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|s| s.values())
    {
        for route in server["routes"].as_array().into_iter().flatten() {
            if route["@id"] == id.as_str() {
                for u in route["handle"][0]["upstreams"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    found.extend(u["dial"].as_str().map(str::to_owned));
                }
            }
        }
    }
    found
}

/// `127.0.0.1:<port>` of every running container of the workflow.
fn published_ports(workflow: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "--format", "{{.Ports}}", "--filter"])
        .arg(format!("label=slipway.workflow={workflow}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let port = l.split("->").next()?.rsplit(':').next()?;
            Some(format!("127.0.0.1:{port}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_compose_service_gets_a_second_replica_and_loses_no_request() {
    let Routed {
        stack,
        proxy: _proxy,
        repo,
        listen,
        name,
        containers: _containers,
    } = routed("composed").await;
    let project = format!("slipway-e2e-r{listen}");
    let _network = Network(format!("{project}_default"));
    stack
        .create_workflow(&format!(
            "name: {name}\nrepo: {repo}\nimage:\n  name: slipway-e2e/{name}\ndeploy:\n  - environment: test\n    route: {{ listen: {listen}, port: 8080, drain: 300ms }}\n    target:\n      compose: {{ file: deploy/docker-compose.yml, project: {project}, service: app }}\n    health: {{ path: /health, interval: 100ms, timeout: 5s, watch: 500ms }}\n",
            repo = repo.url
        ))
        .await;
    let push_compose = |version: &'static str, compose: &'static str| {
        let mut files = app(version, true);
        files.push(("deploy/docker-compose.yml", compose.to_owned()));
        let files: Vec<(&str, String)> = files;
        let sha = repo.commit(
            "main",
            &files
                .iter()
                .map(|(p, c)| (*p, c.as_str()))
                .collect::<Vec<_>>(),
            version,
        );
        let payload = github_push(
            &repo.url,
            "refs/heads/main",
            &sha,
            version,
            &["www/index.html"],
        );
        let stack = &stack;
        async move {
            let (status, body) = stack.github("push", version, &payload).await;
            assert_eq!(status, 202, "{body}");
            stack
                .wait_finished(body["task_ids"][0].as_i64().expect("task"))
                .await
        }
    };
    const COMPOSE: &str = "version: \"3\"\nservices:\n  app:\n    image: ${SLIPWAY_IMAGE:-none}\n";
    let c1 = push_compose("c1", COMPOSE).await;
    assert_eq!(c1["status"], "success", "{c1:#}");
    let plain = format!("http://127.0.0.1:{listen}/");
    let client = reqwest::Client::new();
    wait_for_version(&client, &plain, "c1").await;
    let steady = Steady::start(client.clone(), plain.clone());
    let c2 = push_compose("c2", COMPOSE).await;
    assert_eq!(c2["status"], "success", "{c2:#}");
    wait_for_version(&client, &plain, "c2").await;
    let samples = steady.finish().await;
    assert_eq!(switches("compose route", &samples), ["c1", "c2"]);
    // The old replica was removed: the service is back to one.
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .expect("docker ps");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .count(),
        1
    );

    // A fixed container name cannot run twice: refused, naming the key;
    // c2 keeps serving.
    let c3 = push_compose(
        "c3",
        "version: \"3\"\nservices:\n  app:\n    image: ${SLIPWAY_IMAGE:-none}\n    container_name: fixed\n",
    )
    .await;
    assert_eq!(c3["status"], "failed", "{c3:#}");
    let error = c3["deployments"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("deploy/docker-compose.yml: services.app.container_name:"),
        "{c3:#}"
    );
    assert_eq!(get(&client, &plain).await.as_deref(), Ok("c2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_deploy_without_a_proxy_fails_before_starting_anything() {
    let engine = images::docker();
    images::busybox(&engine).await;
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    let missing = stack.data_dir.path().join("no-proxy/admin.sock");
    settings.proxy_admin = format!("unix/{}", missing.display());
    stack.spawn_runner_with(settings).await;
    let repo = GitRepo::new();
    let listen = free_port();
    let name = format!("proxyless-{listen}");
    let _containers = Containers(name.clone());
    stack
        .create_workflow(&workflow(
            &name,
            &repo,
            &format!("{name}.slipway.test"),
            listen,
        ))
        .await;
    let task = stack
        .wait_finished(push(&stack, &repo, "v1", true).await)
        .await;
    assert_eq!(task["status"], "failed", "{task:#}");
    let error = deployment(&task)["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with(&format!(
            "no edge proxy answers at SLIPWAY_PROXY_ADMIN=unix/{}",
            missing.display()
        )),
        "{task:#}"
    );
    assert_eq!(deployment(&task)["status"], "failed");
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=slipway.workflow={name}"))
        .output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "nothing was started"
    );
}
