//! The `slipway` binary against a real stack (orchestrator, gateway, runner
//! on real Postgres and RabbitMQ): what it prints, the JSON it gives (the
//! REST API's own), and the exit codes scripts rely on.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;
use test_support::images::{self, Cleanup, app, free_port};
use test_support::{DEADLINE, GitRepo, Stack};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// What a run of `slipway` left behind.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not json ({e}): {self:#?}"))
    }
}

/// `slipway` with this stack's address and token, and `env` on top.
fn command(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(args)
        .env("SLIPWAY_ORCHESTRATOR_URL", &stack.grpc_url)
        .env("SLIPWAY_API_TOKEN", &stack.token)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn slipway_env(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let out = tokio::time::timeout(DEADLINE, command(stack, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("slipway {args:?} did not end in {DEADLINE:?}"))
        .expect("slipway runs");
    Ran::from(out)
}

async fn slipway(stack: &Stack, args: &[&str]) -> Ran {
    slipway_env(stack, args, &[]).await
}

/// Runs `slipway` and checks it succeeded.
async fn ok(stack: &Stack, args: &[&str]) -> Ran {
    let ran = slipway(stack, args).await;
    assert_eq!(ran.code, 0, "slipway {args:?}: {ran:#?}");
    ran
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

fn workflow(name: &str, repo: &GitRepo, steps: &str) -> String {
    format!("name: {name}\nrepo: {}\nsteps:\n{steps}", repo.url)
}

/// The id in a `task 17` line.
fn task_id(line: &str) -> i64 {
    line.trim()
        .strip_prefix("task ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a task line: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_run_wait_and_read_tasks_back() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let sha = repo.commit(
        "main",
        &[("greeting.txt", "hello from the repo\n")],
        "first",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "ok.yml",
        &workflow(
            "cli-ok",
            &repo,
            "  - name: greet\n    run: cat greeting.txt\n",
        ),
    );

    let ran = ok(&stack, &["workflow", "apply", &file]).await;
    assert!(
        ran.stdout.starts_with("created workflow cli-ok (id "),
        "{ran:#?}"
    );
    let ran = ok(&stack, &["workflow", "apply", &file]).await;
    assert!(
        ran.stdout.starts_with("unchanged workflow cli-ok"),
        "{ran:#?}"
    );
    // A changed file is a new version of the same workflow.
    let file = write(
        dir.path(),
        "ok.yml",
        &workflow(
            "cli-ok",
            &repo,
            "  - name: greet\n    run: cat greeting.txt\n  - name: check\n    run: test -f greeting.txt\n",
        ),
    );
    let applied = ok(&stack, &["workflow", "apply", &file, "--output", "json"])
        .await
        .json();
    assert_eq!(applied["name"], "cli-ok");
    assert_eq!(applied["version"], 2, "{applied}");
    let workflow_id = applied["id"].as_i64().expect("id");

    // run --wait: the task id, then its log; 0 for a success.
    let ran = ok(&stack, &["run", "cli-ok", "--wait"]).await;
    let first = ran.stdout.lines().next().unwrap_or_default();
    let good = task_id(first);
    assert!(
        ran.stdout.contains("hello from the repo\n"),
        "the log follows the id: {ran:#?}"
    );
    assert_eq!(ran.stderr, format!("task {good} success\n"));

    // A failing task: non-zero, and why on stderr.
    let fail = write(
        dir.path(),
        "fail.yml",
        &workflow(
            "cli-fail",
            &repo,
            "  - name: boom\n    run: echo about to fail; exit 4\n",
        ),
    );
    ok(&stack, &["workflow", "apply", &fail]).await;
    let ran = slipway(&stack, &["run", "cli-fail", "--branch", "main", "--wait"]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    let bad = task_id(ran.stdout.lines().next().unwrap_or_default());
    assert!(ran.stdout.contains("about to fail"), "{ran:#?}");
    assert_eq!(
        ran.stderr,
        format!("task {bad} failed: step boom exited with status 4\n")
    );
    // With --output json, the finished task itself.
    let ran = slipway(
        &stack,
        &["run", &workflow_id.to_string(), "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(ran.code, 0, "{ran:#?}");
    let task = ran.json();
    assert_eq!(task["status"], "success");
    assert_eq!(task["workflow"], "cli-ok");

    // tasks --output json: exactly the REST API's answer.
    let tasks = ok(
        &stack,
        &["tasks", "--workflow", "cli-ok", "--output", "json"],
    )
    .await
    .json();
    let (status, rest) = stack
        .get(&format!("/api/tasks?workflow_id={workflow_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(tasks, rest);
    let tasks = tasks.as_array().expect("a list");
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    let oldest = &tasks[1];
    assert_eq!(oldest["id"], good);
    assert_eq!(oldest["status"], "success");
    assert_eq!(oldest["workflow_version"], 2);
    assert_eq!(oldest["commit"], sha.as_str());
    assert_eq!(oldest["branch"], "main");
    assert_eq!(oldest["trigger"], "manual");
    let steps: Vec<&str> = oldest["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps, ["clone", "greet", "check"]);
    let limited = ok(&stack, &["tasks", "--limit", "1", "-o", "json"])
        .await
        .json();
    assert_eq!(limited.as_array().map(Vec::len), Some(1));

    // The table: failed tasks only.
    let ran = ok(&stack, &["tasks", "--status", "failed"]).await;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{ran:#?}");
    assert_eq!(lines.len(), 2, "{ran:#?}");
    assert!(lines[1].starts_with(&format!("{bad} ")), "{ran:#?}");
    assert!(lines[1].contains("cli-fail") && lines[1].contains("failed"));

    let ran = ok(&stack, &["task", &good.to_string()]).await;
    assert!(ran.stdout.contains("status    success"), "{ran:#?}");
    assert!(ran.stdout.contains("\ngreet "), "{ran:#?}");
    let one = ok(&stack, &["task", &good.to_string(), "-o", "json"])
        .await
        .json();
    assert_eq!(one, stack.task(good).await);

    // Logs, whole and followed (of a finished task: its end at once).
    let ran = ok(&stack, &["logs", &good.to_string()]).await;
    assert_eq!(ran.stdout, stack.logs(good).await);
    assert!(ran.stdout.contains("hello from the repo"), "{ran:#?}");
    let ran = slipway(&stack, &["logs", "-f", &bad.to_string()]).await;
    assert_eq!(ran.code, 1, "the followed task failed: {ran:#?}");
    assert!(ran.stdout.contains("about to fail"), "{ran:#?}");

    // Other reads answer as the REST API does.
    let list = ok(&stack, &["workflows", "-o", "json"]).await.json();
    assert_eq!(list, stack.get("/api/workflows").await.1);
    let ran = ok(&stack, &["workflows"]).await;
    assert!(ran.stdout.contains("cli-fail"), "{ran:#?}");
    let ran = ok(&stack, &["workflow", "show", "cli-ok"]).await;
    assert!(ran.stdout.starts_with("name: cli-ok\n"), "{ran:#?}");

    let ran = slipway(&stack, &["task", "999999"]).await;
    assert_eq!(ran.code, 4, "{ran:#?}");
    assert_eq!(ran.stderr, "error: task 999999 not found\n");
    let ran = slipway(&stack, &["run", "no-such-workflow"]).await;
    assert_eq!(ran.code, 4, "{ran:#?}");
    assert_eq!(ran.stderr, "error: workflow no-such-workflow not found\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_live_and_tasks_are_cancelled_and_retried() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    let dir = tempfile::tempdir().expect("tempdir");
    let release = dir.path().join("release");
    let file = write(
        dir.path(),
        "wait.yml",
        &workflow(
            "cli-wait",
            &repo,
            &format!(
                "  - name: hold\n    run: |\n      echo waiting\n      while [ ! -f {} ]; do sleep 0.1; done\n      echo released\n",
                release.display()
            ),
        ),
    );
    ok(&stack, &["workflow", "apply", &file]).await;

    // logs -f of a running task: the log as it comes, until the task ends.
    let id = task_id(&ok(&stack, &["run", "cli-wait"]).await.stdout);
    stack
        .wait_task(id, DEADLINE, |t| t["status"] == "running")
        .await;
    let follower = command(&stack, &["logs", "-f", &id.to_string()], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("slipway logs -f starts");
    let until = std::time::Instant::now() + DEADLINE;
    while !stack.logs(id).await.contains("waiting") {
        assert!(std::time::Instant::now() < until, "no log from task {id}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    std::fs::write(&release, "").expect("release the step");
    let ran = Ran::from(
        tokio::time::timeout(DEADLINE, follower.wait_with_output())
            .await
            .expect("logs -f ends with its task")
            .expect("slipway runs"),
    );
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert!(
        ran.stdout.contains("waiting\n") && ran.stdout.contains("released\n"),
        "{ran:#?}"
    );
    assert_eq!(ran.stderr, format!("task {id} success\n"));

    // Cancel: the task ends cancelled, and a follower says so.
    std::fs::remove_file(&release).expect("hold the step again");
    let id = ok(&stack, &["run", "cli-wait", "-o", "json"]).await.json()["task_id"]
        .as_i64()
        .expect("task id");
    stack
        .wait_task(id, DEADLINE, |t| t["status"] == "running")
        .await;
    let ran = ok(&stack, &["cancel", &id.to_string()]).await;
    assert_eq!(ran.stdout, format!("cancelling task {id}\n"));
    let ran = slipway(&stack, &["logs", "--follow", &id.to_string()]).await;
    assert_eq!(ran.code, 1, "{ran:#?}");
    assert!(
        ran.stderr.starts_with(&format!("task {id} cancelled")),
        "{ran:#?}"
    );
    let ran = slipway(&stack, &["cancel", &id.to_string()]).await;
    assert_eq!(ran.code, 5, "a finished task cannot be cancelled: {ran:#?}");
    assert!(ran.stderr.starts_with("error: "), "{ran:#?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");

    // Retry: a new task, one attempt later; released, it succeeds.
    std::fs::write(&release, "").expect("release the step");
    let ran = ok(&stack, &["retry", &id.to_string(), "--wait"]).await;
    let retry = task_id(ran.stdout.lines().next().unwrap_or_default());
    assert_ne!(retry, id);
    assert!(ran.stdout.contains("released"), "{ran:#?}");
    let task = stack.task(retry).await;
    assert_eq!(task["retry_of"], id);
    assert_eq!(task["attempt"], 2);
    assert_eq!(task["status"], "success");
    let ran = slipway(&stack, &["retry", &retry.to_string()]).await;
    assert_eq!(ran.code, 5, "a successful task is not retried: {ran:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_is_offline_and_says_what_the_server_says() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = [("SLIPWAY_ORCHESTRATOR_URL", "http://127.0.0.1:1")];
    let good = write(
        dir.path(),
        "good.yml",
        "name: fine\nrepo: https://example.com/a/b.git\nsteps:\n  - name: test\n    run: make test\n",
    );
    let ran = slipway_env(&stack, &["validate", &good], &nowhere).await;
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert_eq!(
        ran.stdout,
        format!("{good}: valid workflow fine (1 steps)\n")
    );

    let bad_yaml = "name: broken\nrepo: https://example.com/a/b.git\nsteps:\n  - name: test\n    run: make test\n    timeout: 5 minutes\n";
    let bad = write(dir.path(), "bad.yml", bad_yaml);
    let offline = slipway_env(&stack, &["validate", &bad], &nowhere).await;
    assert_eq!(offline.code, 3, "{offline:#?}");
    assert_eq!(
        offline.stderr,
        "error: steps[0].timeout: invalid duration \"5 minutes\" at line 6, column 14\n"
    );
    // The server's 422 for the same file: same message, path, line, column.
    let resp = stack
        .client
        .post(format!("{}/api/workflows", stack.http))
        .bearer_auth(&stack.token)
        .header("Content-Type", "application/yaml")
        .body(bad_yaml)
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 422);
    let rest: Value = resp.json().await.expect("json");
    let offline_json = slipway_env(&stack, &["validate", &bad, "-o", "json"], &nowhere).await;
    assert_eq!(offline_json.code, 3);
    let offline_json: Value = serde_json::from_str(&offline_json.stderr).expect("json on stderr");
    assert_eq!(offline_json, rest);
    assert_eq!(rest["path"], "steps[0].timeout");
    assert_eq!(rest["line"], 6);
    // And `workflow apply` of it, answered by the server, says the same.
    let applied = slipway(&stack, &["workflow", "apply", &bad]).await;
    assert_eq!(applied.code, 3, "{applied:#?}");
    assert_eq!(applied.stderr, offline.stderr);

    // Exit codes of the other failures.
    let ran = slipway_env(&stack, &["tasks"], &[("SLIPWAY_API_TOKEN", "wrong")]).await;
    assert_eq!(ran.code, 6, "{ran:#?}");
    assert_eq!(ran.stderr, "error: missing or wrong bearer token\n");
    let mut no_token = command(&stack, &["workflows"], &[]);
    no_token.env_remove("SLIPWAY_API_TOKEN");
    let ran = Ran::from(no_token.output().await.expect("slipway runs"));
    assert_eq!(ran.code, 6, "{ran:#?}");
    let ran = slipway_env(&stack, &["tasks"], &nowhere).await;
    assert_eq!(ran.code, 7, "{ran:#?}");
    assert!(
        ran.stderr.starts_with("error: orchestrator unavailable"),
        "{ran:#?}"
    );
    let ran = slipway(&stack, &["run"]).await;
    assert_eq!(ran.code, 2, "a usage error: {ran:#?}");
    let ran = slipway(&stack, &["logs", "x"]).await;
    assert_eq!(ran.code, 2, "{ran:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_its_services_through_reflection() {
    let stack = Stack::start().await;
    let channel = tonic::transport::Endpoint::from_shared(stack.grpc_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers without a token")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("an answer")
        .and_then(|a| a.message_response);
    let Some(MessageResponse::ListServicesResponse(list)) = answer else {
        panic!("not a service list: {answer:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.reflection.v1.ServerReflection",
            "slipway.v1.NotifierApi",
            "slipway.v1.RunnerApi",
            "slipway.v1.Slipway",
        ]
    );
    // Messages of the files slipway.proto imports are described too.
    for symbol in ["slipway.v1.Overview", "slipway.v1.IngestWebhookRequest"] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.to_owned())),
        };
        let answer = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection answers")
            .into_inner()
            .message()
            .await
            .expect("an answer")
            .and_then(|a| a.message_response);
        let Some(MessageResponse::FileDescriptorResponse(files)) = answer else {
            panic!("{symbol} is not described: {answer:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty(), "{symbol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_from_the_command_line() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let port = free_port();
    let name = format!("slipway-e2e-cli-{port}");
    let _cleanup = Cleanup(vec![name.clone(), format!("{name}.previous")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "deployed.yml",
        &format!(
            "name: cli-deployed\nrepo: {repo}\nimage:\n  name: slipway-e2e/cli-{port}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {name}, ports: [\"127.0.0.1:{port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{port}/health\", interval: 200ms, timeout: 5s }}\n",
            repo = repo.url
        ),
    );
    ok(&stack, &["workflow", "apply", &file]).await;
    let mut tasks = Vec::new();
    for version in ["v1\n", "v2\n"] {
        let files = app(Some(version), None);
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        repo.commit("main", &files, version.trim());
        let task = ok(&stack, &["run", "cli-deployed", "--wait", "-o", "json"])
            .await
            .json();
        assert_eq!(task["deployments"][0]["status"], "succeeded", "{task:#}");
        tasks.push(task);
    }
    let (v1, v2) = (&tasks[0]["deployments"][0], &tasks[1]["deployments"][0]);

    let envs = ok(&stack, &["environments", "cli-deployed", "-o", "json"])
        .await
        .json();
    assert_eq!(envs[0]["name"], "dev");
    assert_eq!(envs[0]["current"]["id"], v2["id"]);
    assert_eq!(envs[0]["previous"]["id"], v1["id"]);

    // Back to v1 and waited for: the environment runs v1's image again.
    let ran = ok(&stack, &["rollback", "cli-deployed", "dev", "--wait"]).await;
    assert!(ran.stdout.starts_with("rollback "), "{ran:#?}");
    let envs = ok(&stack, &["environments", "cli-deployed", "-o", "json"])
        .await
        .json();
    assert_eq!(envs[0]["current"]["image"], v1["image"], "{envs:#}");
    assert_eq!(envs[0]["current"]["trigger"], "rollback");
    let rollbacks = ok(
        &stack,
        &["rollbacks", "--workflow", "cli-deployed", "-o", "json"],
    )
    .await
    .json();
    assert_eq!(rollbacks[0]["reason"], "manual");
    assert_eq!(rollbacks[0]["status"], "succeeded", "{rollbacks:#}");

    // And v2 deployed again from its task.
    let v2_task = tasks[1]["id"].as_i64().expect("id").to_string();
    let answer = ok(&stack, &["deploy", &v2_task, "dev", "-o", "json"])
        .await
        .json();
    let carrier = answer["task_id"].as_i64().expect("task");
    let ran = ok(&stack, &["logs", "-f", &carrier.to_string()]).await;
    assert_eq!(ran.stderr, format!("task {carrier} success\n"));
    let envs = ok(&stack, &["environments", "cli-deployed", "-o", "json"])
        .await
        .json();
    assert_eq!(envs[0]["current"]["id"], answer["deployment_id"]);
    assert_eq!(envs[0]["current"]["image"], v2["image"]);
    let deployments = ok(
        &stack,
        &[
            "deployments",
            "--workflow",
            "cli-deployed",
            "--environment",
            "dev",
            "-o",
            "json",
        ],
    )
    .await
    .json();
    let (_, rest) = stack
        .get(&format!(
            "/api/deployments?workflow_id={}&environment=dev",
            tasks[0]["workflow_id"]
        ))
        .await;
    assert_eq!(deployments, rest);
    assert_eq!(deployments.as_array().map(Vec::len), Some(4));
    let ran = slipway(&stack, &["deploy", &v2_task, "staging"]).await;
    assert_eq!(ran.code, 5, "no such environment: {ran:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_orchestrator_is_reached_with_its_ca() {
    let ca = std::sync::Arc::new(test_support::tls::TestCa::new());
    let stack = Stack::with(test_support::Options {
        runners: 0,
        grpc_tls: Some(ca.clone()),
        ..test_support::Options::default()
    })
    .await;
    let ca_path = ca.ca.display().to_string();
    let ran = ok(&stack, &["workflows", "--ca", &ca_path]).await;
    assert!(ran.stderr.is_empty(), "{ran:#?}");
    let ran = slipway_env(
        &stack,
        &["workflows"],
        &[("SLIPWAY_ORCHESTRATOR_CA", &ca_path)],
    )
    .await;
    assert_eq!(ran.code, 0, "{ran:#?}");

    // The system roots do not know the test CA.
    let ran = slipway(&stack, &["workflows"]).await;
    assert_ne!(ran.code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("TLS failed"), "{ran:#?}");
}
