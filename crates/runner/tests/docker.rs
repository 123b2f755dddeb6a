//! The Docker side of a task, against the real engine and registry:
//! container steps, and the image built and pushed with its digest.

use std::time::Duration;

use serde_json::json;
use test_support::hooks::github_push;
use test_support::images::{self, BUSYBOX};
use test_support::{DEADLINE, GitRepo, Stack, registry, step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_step_runs_in_its_image_with_the_workspace() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: boxed\nrepo: {}\nenv:\n  GREETING: hi\nsteps:\n  - name: inside\n    image: {BUSYBOX}\n    run: |\n      cat greeting.txt\n      echo \"pwd=$(pwd) ws=$SLIPWAY_WORKSPACE greeting=$GREETING\"\n      test ! -e /usr/bin/cargo && echo isolated\n      echo made > made.txt\n  - name: after\n    run: cat made.txt\n",
            repo.url
        ))
        .await;
    let sha = repo.commit("main", &[("greeting.txt", "hello from the repo\n")], "m");
    let (status, body) = stack
        .github(
            "push",
            "boxed-1",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["greeting.txt"]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    assert!(log.contains("hello from the repo"), "{log}");
    assert!(
        log.contains("pwd=/workspace ws=/workspace greeting=hi"),
        "{log}"
    );
    assert!(log.contains("isolated"), "{log}");
    assert!(log.contains("==> after\nmade"), "{log}");
    let left = docker
        .list_containers(&[
            ("slipway.task", &task_id.to_string()),
            ("slipway.workflow", "boxed"),
        ])
        .await
        .expect("list");
    assert!(left.is_empty(), "step containers are removed: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_container_step_leaves_no_container() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&format!(
            "name: boxsleep\nrepo: {}\nsteps:\n  - name: wait\n    image: {BUSYBOX}\n    run: echo waiting; sleep 300\n",
            repo.url
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let task_id = stack.run_workflow(id).await;
    stack
        .wait_task(task_id, DEADLINE, |t| {
            step(t, "wait")["status"] == "running"
        })
        .await;
    let label = task_id.to_string();
    let deadline = std::time::Instant::now() + DEADLINE;
    while docker
        .list_containers(&[("slipway.task", &label), ("slipway.workflow", "boxsleep")])
        .await
        .expect("list")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the step container never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = stack
        .post(&format!("/api/tasks/{task_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "cancelled", "{task:#}");
    assert_eq!(step(&task, "wait")["status"], "cancelled");
    let left = docker
        .list_containers(&[("slipway.task", &label), ("slipway.workflow", "boxsleep")])
        .await
        .expect("list");
    assert!(left.is_empty(), "no container is left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_is_built_pushed_and_its_digest_recorded() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let name = format!("slipway-e2e/app-{}", &uuid_suffix());
    stack
        .create_workflow(&format!(
            "name: imaged\nrepo: {}\nsteps:\n  - name: test\n    run: test -f app.txt\nimage:\n  name: {name}\n  tags: [\"{{{{sha_short}}}}\", \"{{{{branch}}}}\"]\n  build_args: {{ VERSION: \"{{{{sha_short}}}}\" }}\n",
            repo.url
        ))
        .await;
    let dockerfile = format!(
        "FROM {BUSYBOX}\nARG VERSION\nCOPY app.txt /app.txt\nRUN echo \"version $VERSION\" > /version && cat /version\n"
    );
    let sha = repo.commit(
        "main",
        &[("Dockerfile", &dockerfile), ("app.txt", "app\n")],
        "m",
    );
    let (_, body) = stack
        .github(
            "push",
            "img-1",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["Dockerfile"]),
        )
        .await;
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(step(&task, "image")["status"], "success");
    let short = &sha[..12];
    let registry = registry();
    assert_eq!(
        task["image"]["reference"],
        format!("{registry}/{name}:{short}")
    );
    let digest = task["image"]["digest"].as_str().expect("digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        images::registry_digest(&registry, &name, short)
            .await
            .as_deref(),
        Some(digest)
    );
    assert_eq!(
        images::registry_digest(&registry, &name, "main")
            .await
            .as_deref(),
        Some(digest)
    );
    let log = stack.logs(task_id).await;
    assert!(
        log.contains(&format!("version {short}")),
        "the build argument reached the build: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_image_build_fails_the_task() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: badimage\nrepo: {}\nsteps:\n  - name: test\n    run: \"true\"\nimage:\n  name: slipway-e2e/bad\n",
            repo.url
        ))
        .await;
    let dockerfile = format!("FROM {BUSYBOX}\nRUN echo broken build; exit 7\n");
    let sha = repo.commit("main", &[("Dockerfile", &dockerfile)], "m");
    let (_, body) = stack
        .github(
            "push",
            "img-bad",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["Dockerfile"]),
        )
        .await;
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(step(&task, "image")["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("image build failed"),
        "{task:#}"
    );
    assert!(stack.logs(task_id).await.contains("broken build"));
    assert!(task["image"].is_null());
}

fn uuid_suffix() -> String {
    format!(
        "{:08x}",
        std::process::id()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0))
    )
}
