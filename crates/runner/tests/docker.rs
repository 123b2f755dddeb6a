//! The Docker side of a task, against the real engine and registry:
//! container steps, and the image built and pushed with its digest, from a
//! context without what its `.dockerignore` leaves out, reusing the layers
//! of the workflow's previous image.

use std::process::Command;
use std::time::Duration;

use diesel::{Connection as _, PgConnection};
use domain::labels::Labels;
use domain::plan::Trigger;
use serde_json::json;
use store::tasks::{NewTask, Source};
use test_support::db::TestDb;
use test_support::hooks::{PullRequest, github_pull_request, github_push};
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

/// The docker CLI's output, or what it said when it failed.
fn docker_cli(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The paths in `image`'s filesystem, as `docker export` of a container
/// made from it lists them (images `FROM scratch` have nothing to run).
fn files_of(image: &str) -> Vec<String> {
    let container = docker_cli(&["create", image, "/none"]).expect("a container of the image");
    let export = Command::new("docker")
        .args(["export", &container])
        .output()
        .expect("docker export");
    let _ = docker_cli(&["rm", &container]);
    let mut archive = tar::Archive::new(export.stdout.as_slice());
    archive
        .entries()
        .expect("the exported tar")
        .map(|e| {
            let e = e.expect("an entry");
            let path = e.path().expect("a path").display().to_string();
            path.trim_end_matches('/').to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_context_leaves_out_what_dockerignore_says() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let name = format!("slipway-e2e/ignored-{}", uuid_suffix());
    stack
        .create_workflow(&format!(
            "name: ignored\nrepo: {}\nimage:\n  name: {name}\n",
            repo.url
        ))
        .await;
    let files = [
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        (
            ".dockerignore",
            "# what the image must not get\n*.secret\ndocs\n!docs/keep.md\nDockerfile\n.dockerignore\n",
        ),
        ("app.txt", "app\n"),
        ("token.secret", "s3cr3t\n"),
        ("sub/nested.secret", "anchored at the root: sent\n"),
        ("docs/drop.md", "left out\n"),
        ("docs/keep.md", "excepted\n"),
    ];
    let sha = repo.commit("main", &files, "m");
    let (_, body) = stack
        .github(
            "push",
            "ignored-1",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["app.txt"]),
        )
        .await;
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let digest = task["image"]["digest"].as_str().expect("digest");
    let files = files_of(&format!("{}/{name}@{digest}", registry()));
    for sent in ["ctx/app.txt", "ctx/sub/nested.secret", "ctx/docs/keep.md"] {
        assert!(
            files.iter().any(|f| f == sent),
            "{sent} is in the image: {files:?}"
        );
    }
    // The Dockerfile and the .dockerignore were sent (the build read them)
    // but, listed, are not copied: as with Docker's own CLI.
    for left_out in [
        "ctx/token.secret",
        "ctx/docs/drop.md",
        "ctx/Dockerfile",
        "ctx/.dockerignore",
    ] {
        assert!(
            !files.iter().any(|f| f == left_out),
            "{left_out} is not: {files:?}"
        );
    }

    // A pattern Docker would refuse fails the image step, naming its line.
    let sha = repo.commit("main", &[(".dockerignore", "*.secret\n[z-a]\n")], "bad");
    let (_, body) = stack
        .github(
            "push",
            "ignored-2",
            &github_push(
                &repo.url,
                "refs/heads/main",
                &sha,
                "bad",
                &[".dockerignore"],
            ),
        )
        .await;
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(step(&task, "image")["status"], "failed");
    assert_eq!(
        task["error"],
        "image build failed: .dockerignore line 2: the range z-a of a class runs backwards: \"[z-a]\"",
        "{task:#}"
    );
}

/// The build's steps in a task's log (`Step 2/5 : COPY ...`), each with
/// whether the engine reused a cached layer for it.
fn steps_cached(log: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let (_, step) = line.split_once("Step ")?;
            let (_, instruction) = step.split_once(" : ")?;
            let cached = lines.get(i + 1).is_some_and(|l| l.contains("Using cache"));
            Some((instruction.to_owned(), cached))
        })
        .collect()
}

/// Whether the step `instruction` of the build in `log` used the cache.
fn cached(log: &str, instruction: &str) -> bool {
    let steps = steps_cached(log);
    steps
        .iter()
        .find(|(i, _)| i == instruction)
        .map(|(_, cached)| *cached)
        .unwrap_or_else(|| panic!("no step {instruction:?} in {steps:?}:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_change_rebuilds_only_the_layers_after_it_from_the_previous_image() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let name = format!("slipway-e2e/layers-{}", uuid_suffix());
    stack
        .create_workflow(&format!(
            "name: layers\nrepo: {}\non:\n  push:\n    branches: [main]\n  pull_request:\n    branches: [main]\nimage:\n  name: {name}\n",
            repo.url
        ))
        .await;
    // A first layer no other image has: its cache can only come from this
    // workflow's image.
    let base = format!("base {}\n", uuid::Uuid::new_v4());
    let dockerfile =
        "FROM scratch\nCOPY base.txt /base.txt\nCOPY deps.txt /deps.txt\nCOPY src.txt /src.txt\n";
    let sha = repo.commit(
        "main",
        &[
            ("Dockerfile", dockerfile),
            ("base.txt", &base),
            ("deps.txt", "deps\n"),
            ("src.txt", "v1\n"),
        ],
        "v1",
    );
    let (_, body) = stack
        .github(
            "push",
            "layers-1",
            &github_push(&repo.url, "refs/heads/main", &sha, "v1", &["src.txt"]),
        )
        .await;
    let first = stack
        .wait_finished(body["task_ids"][0].as_i64().expect("a task"))
        .await;
    assert_eq!(first["status"], "success", "{first:#}");
    let digest = first["image"]["digest"].as_str().expect("digest");
    let previous = format!("{}/{name}@{digest}", registry());

    // As on a new runner host: the image and every layer of its build gone
    // from the engine, so that only the registry has them.
    let id =
        docker_cli(&["image", "inspect", "--format", "{{.Id}}", &previous]).expect("the image");
    let history = docker_cli(&["history", "-q", &id]).expect("its history");
    docker_cli(&["rmi", "-f", &id]).expect("the image removed");
    for layer in history.lines().filter(|l| *l != "<missing>") {
        assert!(
            docker_cli(&["image", "inspect", layer]).is_err(),
            "the build's image {layer} is gone"
        );
    }

    // A pull request changing the source: built from the pulled layers of
    // the previous image, and never pushed.
    let head = repo.commit_to_ref("main", "refs/pull/5/head", &[("src.txt", "pr\n")], "pr");
    let (_, body) = stack
        .github(
            "pull_request",
            "layers-pr",
            &github_pull_request(&PullRequest::new(&repo.url, "opened", 5, &head)),
        )
        .await;
    let pr_task = body["task_ids"][0].as_i64().expect("a task");
    let pr = stack.wait_finished(pr_task).await;
    assert_eq!(pr["status"], "success", "{pr:#}");
    assert!(pr["image"].is_null(), "{pr:#}");
    let log = stack.logs(pr_task).await;
    assert!(
        log.contains(&format!("layer cache: reusing the layers of {previous}")),
        "{log}"
    );
    assert!(cached(&log, "COPY base.txt /base.txt"), "{log}");
    assert!(cached(&log, "COPY deps.txt /deps.txt"), "{log}");
    assert!(!cached(&log, "COPY src.txt /src.txt"), "{log}");

    // The next push still reuses the last pushed image, not the pull
    // request's.
    let sha = repo.commit("main", &[("src.txt", "v2\n")], "v2");
    let (_, body) = stack
        .github(
            "push",
            "layers-2",
            &github_push(&repo.url, "refs/heads/main", &sha, "v2", &["src.txt"]),
        )
        .await;
    let second_id = body["task_ids"][0].as_i64().expect("a task");
    let second = stack.wait_finished(second_id).await;
    assert_eq!(second["status"], "success", "{second:#}");
    let log = stack.logs(second_id).await;
    assert!(
        log.contains(&format!("layer cache: reusing the layers of {previous}")),
        "{log}"
    );
    assert!(cached(&log, "COPY deps.txt /deps.txt"), "{log}");
    assert!(!cached(&log, "COPY src.txt /src.txt"), "{log}");
    assert_ne!(second["image"]["digest"], first["image"]["digest"]);
}

#[test]
fn the_previous_image_is_the_newest_one_the_workflow_pushed() {
    let db = TestDb::create();
    let mut conn = PgConnection::establish(&db.url).expect("database");
    let workflow = |conn: &mut PgConnection, name: &str| {
        let repo = "file:///nowhere";
        let yaml = format!("name: {name}\nrepo: {repo}\nimage:\n  name: app\n");
        store::workflows::create(conn, name, repo, &yaml, None)
            .expect("workflow")
            .id
    };
    let (app, other) = (workflow(&mut conn, "app"), workflow(&mut conn, "other"));
    let digest = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    // A task of `workflow` that reported `image`, or none (a pull request's,
    // a failed build's).
    let task = |conn: &mut PgConnection, workflow: i64, image: Option<(&str, &str)>| {
        let new = NewTask::new(
            workflow,
            1,
            Labels::none().key(),
            Source::new(Trigger::Push, None),
            None,
        );
        let id = store::tasks::create(conn, &new, &["image".to_owned()]).expect("task");
        let until = chrono::Utc::now() + chrono::Duration::minutes(1);
        store::tasks::claim(conn, id, "runner", &Labels::none(), "lease", until).expect("claim");
        if let Some((reference, digest)) = image {
            store::tasks::set_image(conn, id, "lease", reference, digest).expect("image");
        }
    };
    let latest = |conn: &mut PgConnection, workflow: i64| {
        store::tasks::latest_image(conn, workflow).expect("latest image")
    };
    assert_eq!(latest(&mut conn, app), None);
    task(&mut conn, app, Some(("127.0.0.1:5000/app:one", &digest(1))));
    task(
        &mut conn,
        other,
        Some(("127.0.0.1:5000/other:x", &digest(2))),
    );
    task(&mut conn, app, None);
    assert_eq!(
        latest(&mut conn, app).as_deref(),
        Some(format!("127.0.0.1:5000/app@{}", digest(1)).as_str())
    );
    task(&mut conn, app, Some(("127.0.0.1:5000/app:two", &digest(3))));
    assert_eq!(
        latest(&mut conn, app).as_deref(),
        Some(format!("127.0.0.1:5000/app@{}", digest(3)).as_str())
    );
    assert_eq!(
        latest(&mut conn, other).as_deref(),
        Some(format!("127.0.0.1:5000/other@{}", digest(2)).as_str())
    );
}
