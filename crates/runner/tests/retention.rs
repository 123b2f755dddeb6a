//! Retention on the real engine and registry: pruning keeps the tasks and
//! deployments of an environment's current and previous versions, so a
//! rollback still works after it, and with `SLIPWAY_REGISTRY_DELETE` a
//! runner deletes the registry manifests of pruned tasks' images that
//! nothing retained uses. A runner killed mid-task leaves its workspace; a
//! runner sharing the data directory removes it once the task no longer
//! runs under that lease, and leaves the workspaces of running tasks alone.
//! Deleting a manifest logs in as the registry asks and says why a registry
//! refused.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runner::registry::{Deleted, Error};
use test_support::auth_registry::AuthRegistry;
use test_support::images::{self, Cleanup, free_port};
use test_support::{DEADLINE, GitRepo, Options, Stack, step};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < until, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The registry's answer for the manifest `digest` of `name`.
async fn manifest_status(name: &str, digest: &str) -> u16 {
    images::registry_manifest(&test_support::registry(), name, digest)
        .await
        .map(|(status, _)| status)
        .expect("the registry answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_what_a_rollback_needs_and_deletes_only_pruned_images() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| {
            s.prune_interval = "1s".to_owned();
            s.registry_delete = true;
        })
        .await;
    stack
        .spawn_runner_with(runner::Settings {
            sweep_interval: "1s".to_owned(),
            ..stack.runner_settings()
        })
        .await;
    let repo = GitRepo::new();
    let port = free_port();
    let name = format!("slipway-e2e-pruned-{port}");
    let _cleanup = Cleanup(vec![name.clone(), format!("{name}.previous")]);
    let image = format!("slipway-e2e/pruned-{port}");
    let workflow_id = stack
        .create_workflow(&format!(
            "name: pruned\nrepo: {repo}\nsteps:\n  - name: check\n    run: test ! -f broken\nimage:\n  name: {image}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {name}, ports: [\"127.0.0.1:{port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{port}/health\", interval: 200ms, timeout: 5s }}\nretention:\n  days: 1\n  keep_last: 0\n",
            repo = repo.url
        ))
        .await;
    let health = format!("http://127.0.0.1:{port}/health");
    let mut built = Vec::new();
    for v in 1..=4 {
        let id = stack
            .push_app(&repo, &format!("v{v}\n"), &format!("v{v}"))
            .await;
        let task = stack.wait_finished(id).await;
        assert_eq!(task["status"], "success", "{task:#}");
        assert_eq!(task["deployments"][0]["status"], "succeeded", "{task:#}");
        built.push(task);
    }
    assert_eq!(get(&health).await, Some((200, "v4\n".to_owned())));
    let id = |t: &serde_json::Value| t["id"].as_i64().expect("id");
    let digest = |t: &serde_json::Value| t["image"]["digest"].as_str().expect("digest").to_owned();
    let deployment =
        |t: &serde_json::Value| t["deployments"][0]["id"].as_i64().expect("deployment");
    let [v1, v2, v3, v4] = &built[..] else {
        unreachable!("four tasks")
    };
    let digests: Vec<String> = built.iter().map(digest).collect();
    for d in &digests {
        assert_eq!(manifest_status(&image, d).await, 200);
    }

    // A young task that failed before building, yet names v2's image: the
    // same digest can serve several tasks (a workflow_run task deploying
    // what was pushed for its commit), and one retained keeps it.
    repo.commit("main", &[("broken", "yes")], "broken");
    let broken = stack.run_workflow(workflow_id).await;
    let task = stack.wait_finished(broken).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    stack.db.execute(&format!(
        "UPDATE tasks SET image_reference = '{}', image_digest = '{}' WHERE id = {broken}",
        v2["image"]["reference"].as_str().expect("reference"),
        digests[1]
    ));
    let unpublished = "SELECT count(*) AS n FROM events WHERE published_at IS NULL";
    eventually("events published", async || {
        stack.db.count(unpublished) == 0
    })
    .await;

    stack.db.age_tasks(&[id(v1), id(v2), id(v3), id(v4)], 3);
    let pruned = format!(
        "SELECT count(*) AS n FROM tasks WHERE id IN ({}, {})",
        id(v1),
        id(v2)
    );
    eventually("v1 and v2 pruned", async || stack.db.count(&pruned) == 0).await;
    eventually("the manifest deletions done", async || {
        stack.db.count("SELECT count(*) AS n FROM image_deletions") == 0
    })
    .await;
    assert_eq!(
        manifest_status(&image, &digests[0]).await,
        404,
        "v1's image"
    );
    for (v, d) in digests.iter().enumerate().skip(1) {
        assert_eq!(manifest_status(&image, d).await, 200, "v{}'s image", v + 1);
    }
    for t in [v1, v2] {
        let (status, _) = stack
            .get(&format!("/api/deployments/{}", deployment(t)))
            .await;
        assert_eq!(status, 404);
    }
    // The environment's current and previous versions and their tasks stay.
    let (_, envs) = stack
        .get(&format!("/api/workflows/{workflow_id}/environments"))
        .await;
    assert_eq!(envs[0]["current"]["id"], deployment(v4), "{envs:#}");
    assert_eq!(envs[0]["previous"]["id"], deployment(v3), "{envs:#}");
    for t in [v3, v4] {
        let kept = stack.task(id(t)).await;
        assert_eq!(kept["deployments"][0]["status"], "succeeded", "{kept:#}");
    }
    assert_eq!(stack.task(broken).await["status"], "failed");
    let (_, w) = stack.get(&format!("/api/workflows/{workflow_id}")).await;
    assert_eq!(w["retention"]["last_pruned"]["tasks"], 2, "{w:#}");
    assert_eq!(w["retention"]["last_pruned"]["images"], 1, "{w:#}");

    // Back to the previous version, pruned around it.
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{workflow_id}/environments/dev/rollback"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let carrier = stack
        .wait_finished(body["task_id"].as_i64().expect("task"))
        .await;
    assert_eq!(carrier["status"], "success", "{carrier:#}");
    assert_eq!(step(&carrier, "deploy:dev")["status"], "success");
    assert_eq!(get(&health).await, Some((200, "v3\n".to_owned())));
}

/// The workspace directories under the stack's data dir.
fn workspaces(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("workspaces"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The workspace of task `id`, once there is exactly one.
async fn workspace_of(stack: &Stack, id: i64, except: Option<&str>) -> String {
    let prefix = format!("task-{id}-");
    let mut found = None;
    eventually(&format!("a workspace of task {id}"), async || {
        found = workspaces(stack.data_dir.path())
            .into_iter()
            .find(|n| n.starts_with(&prefix) && Some(n.as_str()) != except);
        found.is_some()
    })
    .await;
    found.expect("found")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runners_workspace_goes_once_its_task_runs_elsewhere() {
    let mut stack = Stack::with(Options {
        runners: 0,
        lease_seconds: 3,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "m");
    let id = stack
        .create_workflow(&format!(
            "name: crashy\nrepo: {}\nsteps:\n  - name: work\n    run: sleep 30\n",
            repo.url
        ))
        .await;
    let env = [
        ("SLIPWAY_RUNNER_CONCURRENCY", "1"),
        ("SLIPWAY_SWEEP_INTERVAL", "1s"),
    ];
    let first = stack.spawn_runner_process_with(RUNNER.as_ref(), &env, Stdio::inherit());
    let lost = stack.run_workflow(id).await;
    stack
        .wait_task(lost, DEADLINE, |t| step(t, "work")["status"] == "running")
        .await;
    let left = workspace_of(&stack, lost, None).await;

    // Another runner of this host takes the next task; its workspace is in
    // the same data directory.
    stack.spawn_runner_process_with(RUNNER.as_ref(), &env, Stdio::inherit());
    let busy = stack.run_workflow(id).await;
    stack
        .wait_task(busy, DEADLINE, |t| step(t, "work")["status"] == "running")
        .await;
    let running = workspace_of(&stack, busy, None).await;

    stack.kill_runner_process(first);
    // A third runner starts; the lost task comes back to it once its lease
    // has run out, under a new lease and in a new workspace.
    stack.spawn_runner_process_with(RUNNER.as_ref(), &env, Stdio::inherit());
    // A workspace whose task is gone (pruned, say) goes as well.
    let gone = stack
        .data_dir
        .path()
        .join("workspaces/task-999999-0badf00d");
    std::fs::create_dir_all(gone.join("src")).expect("mkdir");
    let again = workspace_of(&stack, lost, Some(&left)).await;
    eventually("the killed runner's workspace removed", async || {
        let names = workspaces(stack.data_dir.path());
        !names.contains(&left) && !gone.exists()
    })
    .await;
    // What runs now is left alone, through several sweeps.
    let sweeps = Instant::now() + Duration::from_secs(3);
    while Instant::now() < sweeps {
        let names = workspaces(stack.data_dir.path());
        assert!(names.contains(&running), "{names:?}");
        assert!(names.contains(&again), "{names:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for task in [lost, busy] {
        assert_eq!(stack.task(task).await["status"], "running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_is_deleted_with_the_registrys_login_and_refusals_say_why() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let deleting = AuthRegistry::start_deleting("ci", "s3cret").await;
    let keeping = AuthRegistry::start("ci", "s3cret").await;
    let client = runner::registry::Registry::new().expect("a client");
    let login = Some(("ci", "s3cret"));
    let mut pushed = Vec::new();
    for registry in [&deleting.addr, &keeping.addr] {
        let repository = format!("{registry}/slipway-test-prune");
        let reference = format!("{repository}:{}", images::unique_name("t"));
        let context = images::busybox_context(&format!(
            "LABEL slipway-test={}\n",
            images::unique_name("x")
        ));
        docker
            .build(
                images::plain_build(context.path(), std::slice::from_ref(&reference)),
                |_| {},
            )
            .await
            .expect("builds");
        let digest = docker
            .push(&reference, login, |_| {})
            .await
            .expect("pushes");
        let _ = docker.remove_image(&reference).await;
        pushed.push((repository, digest));
    }
    let (repository, digest) = &pushed[0];

    let refused = client
        .delete_manifest(repository, digest, None)
        .await
        .expect_err("no login");
    assert!(matches!(refused, Error::LoginNeeded(_)), "{refused}");
    assert!(
        refused.to_string().contains("REGISTRY_USERNAME"),
        "{refused}"
    );
    let refused = client
        .delete_manifest(repository, digest, Some(("ci", "wrong")))
        .await
        .expect_err("a wrong password");
    assert!(matches!(refused, Error::LoginRefused { .. }), "{refused}");
    assert!(!refused.to_string().contains("wrong"), "{refused}");

    assert_eq!(
        client
            .delete_manifest(repository, digest, login)
            .await
            .expect("deleted"),
        Deleted::Now
    );
    assert_eq!(
        client
            .delete_manifest(repository, digest, login)
            .await
            .expect("done"),
        Deleted::AlreadyGone,
        "a second delete finds nothing, which is done too"
    );

    let (repository, digest) = &pushed[1];
    let refused = client
        .delete_manifest(repository, digest, login)
        .await
        .expect_err("deletes are off");
    assert!(matches!(refused, Error::DeleteDisabled(_)), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("REGISTRY_STORAGE_DELETE_ENABLED"),
        "{refused}"
    );
}

/// The registry's answer for a manifest, logged in.
async fn manifest_with_login(registry: &str, name: &str, digest: &str) -> u16 {
    reqwest::Client::new()
        .head(format!("http://{registry}/v2/{name}/manifests/{digest}"))
        .basic_auth("ci", Some("s3cret"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .expect("the registry answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_images_are_deleted_with_the_workflows_registry_login() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let registry = AuthRegistry::start_deleting("ci", "s3cret").await;
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| {
            s.prune_interval = "1s".to_owned();
            s.registry_delete = true;
        })
        .await;
    stack
        .spawn_runner_with(runner::Settings {
            sweep_interval: "1s".to_owned(),
            registry: registry.addr.clone(),
            ..stack.runner_settings()
        })
        .await;
    let repo = GitRepo::new();
    let name = images::unique_name("slipway-e2e/login");
    let workflow_id = stack
        .create_workflow(&format!(
            "name: login\nrepo: {}\nimage:\n  name: {name}\nretention:\n  days: 1\n  keep_last: 0\n",
            repo.url
        ))
        .await;
    stack
        .set_secret(workflow_id, "REGISTRY_USERNAME", "ci")
        .await;
    stack
        .set_secret(workflow_id, "REGISTRY_PASSWORD", "s3cret")
        .await;
    let mut tasks = Vec::new();
    for v in 1..=2 {
        let id = stack
            .push_app(&repo, &format!("v{v}\n"), &format!("login-{v}"))
            .await;
        let task = stack.wait_finished(id).await;
        assert_eq!(task["status"], "success", "{task:#}");
        let digest = task["image"]["digest"].as_str().expect("digest").to_owned();
        assert_eq!(
            manifest_with_login(&registry.addr, &name, &digest).await,
            200
        );
        tasks.push((id, digest));
    }
    let unpublished = "SELECT count(*) AS n FROM events WHERE published_at IS NULL";
    eventually("events published", async || {
        stack.db.count(unpublished) == 0
    })
    .await;
    let ids: Vec<i64> = tasks.iter().map(|(id, _)| *id).collect();
    stack.db.age_tasks(&ids, 3);
    eventually("both manifests deleted", async || {
        let mut gone = true;
        for (_, digest) in &tasks {
            gone &= manifest_with_login(&registry.addr, &name, digest).await == 404;
        }
        gone
    })
    .await;
    assert_eq!(
        stack.db.count("SELECT count(*) AS n FROM image_deletions"),
        0
    );
    let (_, w) = stack.get(&format!("/api/workflows/{workflow_id}")).await;
    let last = &w["retention"]["last_pruned"];
    assert_eq!(
        (&last["tasks"], &last["images"]),
        (&2.into(), &2.into()),
        "{w:#}"
    );
    assert!(last["log_bytes"].as_i64() > Some(0), "{w:#}");
}
