//! The runner's bounds on what a repository brings: paths it names are
//! resolved inside its workspace (workflow.md, Rules), so an
//! `image.context`, an `image.dockerfile` or a compose target's `file` that
//! is a symlink out of the checkout fails its step with an error naming
//! the path; a log line past `SLIPWAY_LOG_LINE_MAX_BYTES` is cut with a
//! marker; and an orchestrator that takes only 64 KiB log chunks still
//! gets the whole log.

use test_support::hooks::github_push;
use test_support::images::{self, app, free_port};
use test_support::{GitRepo, Options, Stack, step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_past_its_limit_is_cut_with_a_marker() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    stack
        .spawn_runner_with(runner::Settings {
            log_line_max_bytes: "1KiB".to_owned(),
            ..stack.runner_settings()
        })
        .await;
    let repo = GitRepo::new();
    repo.commit("main", &[("README", "x\n")], "first");
    let id = stack
        .create_workflow(&format!(
            "name: chatty\nrepo: {}\nsteps:\n  - name: long\n    run: |\n      head -c 300000 /dev/zero | tr '\\0' x\n      echo\n      echo after\n",
            repo.url
        ))
        .await;
    let task_id = stack.run_workflow(id).await;
    let task = stack.wait_finished(task_id).await;
    let log = stack.logs(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}\n{log}");
    let cut = format!(
        "{} [line cut: longer than 1024 bytes]\nafter\n",
        "x".repeat(1024)
    );
    assert!(log.contains(&cut), "{log}");
    assert!(
        log.len() < 4096,
        "only the cut line is stored: {} bytes",
        log.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reaches_an_orchestrator_that_takes_small_chunks_whole() {
    let stack = Stack::with(Options {
        orchestrator_settings: |s| s.log_chunk_max_bytes = 64 * 1024,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    repo.commit("main", &[("README", "x\n")], "first");
    // 3 MB of 100-byte lines, far more than one chunk.
    let id = stack
        .create_workflow(&format!(
            "name: verbose\nrepo: {}\nsteps:\n  - name: print\n    run: yes {} | head -c 3000000\n",
            repo.url,
            "y".repeat(99)
        ))
        .await;
    let task_id = stack.run_workflow(id).await;
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    let line = "y".repeat(99);
    assert_eq!(log.lines().filter(|l| *l == line).count(), 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_linked_out_of_the_workspace_fail_their_step() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let port = free_port();
    let image = |name: &str| format!("image:\n  name: slipway-e2e/confine-{name}-{port}\n");
    let workflows = [
        ("context", format!("{}  context: root\n", image("context"))),
        (
            "dockerfile",
            format!("{}  dockerfile: Evil\n", image("dockerfile")),
        ),
        (
            "compose",
            format!(
                "{}deploy:\n  - environment: test\n    target:\n      compose: {{file: deploy/docker-compose.yml, project: confine-{port}, service: app}}\n",
                image("compose")
            ),
        ),
    ];
    for (name, rest) in &workflows {
        stack
            .create_workflow(&format!("name: {name}\nrepo: {}\n{rest}", repo.url))
            .await;
    }
    let files = app(Some("ok\n"), None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    repo.link("root", "/");
    repo.link("Evil", "/etc/passwd");
    repo.link("deploy/docker-compose.yml", "/etc/passwd");
    let sha = repo.commit("main", &files, "links");
    let (_, body) = stack
        .github(
            "push",
            "links",
            &github_push(&repo.url, "refs/heads/main", &sha, "links", &["root"]),
        )
        .await;
    let tasks = body["task_ids"].as_array().expect("tasks").clone();
    assert_eq!(tasks.len(), 3, "{body}");

    let mut errors = Vec::new();
    for id in tasks {
        let id = id.as_i64().expect("task id");
        let task = stack.wait_finished(id).await;
        assert_eq!(
            task["status"],
            "failed",
            "{task:#}\n{}",
            stack.logs(id).await
        );
        errors.push(task["error"].as_str().unwrap_or("").to_owned());
        if task["error"]
            .as_str()
            .is_some_and(|e| e.contains("compose"))
        {
            assert_eq!(step(&task, "image")["status"], "success", "{task:#}");
            assert_eq!(step(&task, "deploy:test")["status"], "failed", "{task:#}");
        }
    }
    errors.sort();
    assert_eq!(
        errors,
        [
            "deploy to test failed: target.compose.file \"deploy/docker-compose.yml\" resolves outside the workspace",
            "image build failed: image.context \"root\" resolves outside the workspace",
            "image build failed: image.dockerfile \"./Evil\" resolves outside the workspace",
        ],
    );
}
