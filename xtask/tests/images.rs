//! The `slipway/slipway` image end to end: `cargo xtask images --debug`
//! builds it (a no-op when the test run has built the binaries and the image
//! is current), then the four services run from it as containers on the
//! host network against the shared Postgres and RabbitMQ, a runner
//! container clones a local bare repository and runs a host step, and the
//! result is read through the gateway's REST API. Each service's
//! `healthcheck` answers inside its container.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::images::{Cleanup, free_port};
use test_support::{GitRepo, TestDb};

/// The test image: debug binaries, tagged apart from releases.
const IMAGE: &str = concat!("slipway/slipway:", env!("CARGO_PKG_VERSION"), "-debug");
/// The image's non-root user.
const UID: u32 = 10001;
const DEADLINE: Duration = Duration::from_secs(120);

fn amqp_url() -> String {
    std::env::var("SLIPWAY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:55673/%2f".to_owned())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?} runs: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The containers' logs, for failure messages.
fn logs(names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            let out = docker(&["logs", "--tail", "40", n]);
            format!("--- {n}\n{}{}", text(&out.stdout), text(&out.stderr))
        })
        .collect()
}

/// Starts a service container on the host network; its name is returned.
fn start(
    prefix: &str,
    service: &str,
    env: &[(&str, String)],
    extra: &[String],
    command: &[&str],
) -> String {
    let name = format!("{prefix}-{service}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--init".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
    ];
    for (key, value) in env {
        args.push("-e".into());
        args.push(format!("{key}={value}"));
    }
    args.extend(extra.iter().cloned());
    args.push(IMAGE.into());
    args.extend(command.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&args);
    assert!(
        out.status.success(),
        "docker run {name}: {}",
        text(&out.stderr)
    );
    name
}

/// Runs `command` inside the container; its exit code and stderr.
fn exec(name: &str, command: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["exec", name];
    args.extend_from_slice(command);
    let out = docker(&args);
    (out.status.code(), text(&out.stderr))
}

/// Polls the health check until it passes, failing after the deadline.
fn wait_healthy(name: &str, command: &[&str], all: &[String]) {
    let until = Instant::now() + DEADLINE;
    loop {
        let (code, stderr) = exec(name, command);
        if code == Some(0) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{command:?} in {name} still failing ({code:?}: {stderr})\n{}",
            logs(all)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Makes the repository readable by the image's user, as an operator would
/// for the directory a runner mounts: it belongs to that user from now on.
fn hand_over(dir: &Path, uid: u32) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(dir)
        .output()
        .expect("chown runs");
    assert!(out.status.success(), "chown: {}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_every_service_and_a_task_end_to_end() {
    // Where the time went, shown when the test fails.
    let started = Instant::now();
    let progress = |what: &str| eprintln!("images test: {what} after {:?}", started.elapsed());
    // Builds the binaries (a no-op after the test build) and the image
    // (a no-op when its context did not change).
    let built = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["images", "--debug"])
        .output()
        .expect("xtask runs");
    assert!(
        built.status.success(),
        "cargo xtask images --debug: {}{}",
        text(&built.stdout),
        text(&built.stderr)
    );
    progress("image built");
    let root_user = nix::unistd::geteuid().is_root();

    let db = TestDb::create();
    let unique = format!("{:08x}", rand::random::<u32>());
    let prefix = format!("slipway-image-test-{unique}");
    let token = format!("token-{unique}");
    let http = free_port();
    let grpc = free_port();
    let notifier = free_port();
    let metrics = free_port();
    let common: Vec<(&str, String)> = vec![
        ("SLIPWAY_API_TOKEN", token.clone()),
        ("SLIPWAY_AMQP_URL", amqp_url()),
        ("SLIPWAY_QUEUE_PREFIX", format!("img-{unique}.")),
        ("SLIPWAY_QUEUE_EXPIRES_MS", "600000".to_owned()),
        (
            "SLIPWAY_ORCHESTRATOR_URL",
            format!("http://127.0.0.1:{grpc}"),
        ),
        ("SLIPWAY_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
        ("SLIPWAY_HTTP_ADDR", format!("127.0.0.1:{http}")),
        ("SLIPWAY_NOTIFIER_ADDR", format!("127.0.0.1:{notifier}")),
        ("SLIPWAY_LOG", "warn".to_owned()),
    ];
    // Removes the containers when dropped, whatever the test did.
    let mut cleanup = Cleanup(Vec::new());

    // The database is migrated already (a template clone): `migrate` has
    // nothing to apply, but it runs from the image.
    let mut orchestrator_env = common.clone();
    orchestrator_env.push(("SLIPWAY_DATABASE_URL", db.url.clone()));
    orchestrator_env.push(("SLIPWAY_SECRET_KEY", format!("key-{unique}")));
    let mut migrate: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network".into(),
        "host".into(),
    ];
    for (key, value) in &orchestrator_env {
        migrate.push("-e".into());
        migrate.push(format!("{key}={value}"));
    }
    migrate.extend([
        IMAGE.to_owned(),
        "slipway-orchestrator".into(),
        "migrate".into(),
    ]);
    let out = docker(&migrate.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "migrate: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("migration(s)"),
        "{}",
        text(&out.stdout)
    );

    cleanup.0.push(start(
        &prefix,
        "orchestrator",
        &orchestrator_env,
        &[],
        &["slipway-orchestrator", "serve"],
    ));
    cleanup.0.push(start(
        &prefix,
        "gateway",
        &common,
        &[],
        &["slipway-gateway"],
    ));
    cleanup.0.push(start(
        &prefix,
        "notifier",
        &common,
        &[],
        &["slipway-notifier"],
    ));

    // The repository lives under a directory the runner sees at the same
    // path, so its `file://` URL means the same inside and out.
    let repo = GitRepo::new();
    repo.commit("main", &[("README", "built from the image\n")], "first");
    let repo_dir = repo
        .bare
        .parent()
        .expect("the repository's directory")
        .to_path_buf();
    hand_over(&repo_dir, UID);
    let mount = format!("{0}:{0}:ro", repo_dir.display());
    let mut runner_env = common.clone();
    runner_env.push(("SLIPWAY_METRICS_ADDR", format!("127.0.0.1:{metrics}")));
    let mut runner_extra = vec!["-v".to_owned(), mount];
    if !root_user {
        // The repository is the test user's: run as that user, with a data
        // directory it can write.
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        runner_extra.extend(["--user".to_owned(), format!("{uid}:{gid}")]);
        runner_env.push(("SLIPWAY_DATA_DIR", "/tmp/slipway-data".to_owned()));
    }
    cleanup.0.push(start(
        &prefix,
        "runner",
        &runner_env,
        &runner_extra,
        &["slipway-runner"],
    ));

    progress("containers started");
    let names = &cleanup.0;
    // The health checks, from inside each container.
    wait_healthy(&names[0], &["slipway-orchestrator", "healthcheck"], names);
    wait_healthy(&names[1], &["slipway-gateway", "healthcheck"], names);
    wait_healthy(&names[2], &["slipway-notifier", "healthcheck"], names);
    wait_healthy(&names[3], &["slipway-runner", "healthcheck"], names);

    progress("all healthy");
    // Services run as the image's user, not root.
    let (code, _) = exec(&names[1], &["sh", "-c", "test \"$(id -u)\" = 10001"]);
    assert_eq!(code, Some(0), "the gateway runs as uid {UID}");

    // An unhealthy answer: nothing listens on this port.
    let closed = free_port();
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        &format!("SLIPWAY_HTTP_ADDR=127.0.0.1:{closed}"),
        "-e",
        &format!("SLIPWAY_API_TOKEN={token}"),
        IMAGE,
        "slipway-gateway",
        "healthcheck",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(&closed.to_string()), "{stderr}");

    // A task, end to end through the gateway's REST API.
    let api = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let yaml = format!(
        "name: image-{unique}\nrepo: {}\nsteps:\n  - name: hello\n    run: echo hello && test -f README\n",
        repo.url
    );
    let resp = client
        .post(format!("{api}/api/workflows"))
        .bearer_auth(&token)
        .header("Content-Type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("create the workflow");
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let workflow: Value = resp.json().await.expect("workflow json");
    let id = workflow["id"].as_i64().expect("workflow id");
    let resp = client
        .post(format!("{api}/api/workflows/{id}/run"))
        .bearer_auth(&token)
        .json(&json!({"branch": "main"}))
        .send()
        .await
        .expect("run the workflow");
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let run: Value = resp.json().await.expect("run json");
    let task_id = run["task_id"].as_i64().expect("task id");

    let until = Instant::now() + DEADLINE;
    let task = loop {
        let task: Value = client
            .get(format!("{api}/api/tasks/{task_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get the task")
            .json()
            .await
            .expect("task json");
        if matches!(
            task["status"].as_str(),
            Some("success" | "failed" | "cancelled")
        ) {
            break task;
        }
        assert!(
            Instant::now() < until,
            "task {task_id} unfinished: {task:#}\n{}",
            logs(names)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress("task finished");
    let log = client
        .get(format!("{api}/api/tasks/{task_id}/logs"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get the logs")
        .text()
        .await
        .expect("logs");
    assert_eq!(
        task["status"],
        "success",
        "{task:#}\n{log}\n{}",
        logs(names)
    );
    assert!(log.contains("hello"), "{log}");
}
