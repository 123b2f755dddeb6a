//! Pull and merge requests end to end (forges.md, Triggers): a signed
//! webhook, the tasks it creates (or why not), the head fetched from the
//! forge's pull request ref, and what a pull request task may not do.

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::hooks::{PullRequest, github_pull_request, github_push, gitlab_merge_request};
use test_support::images;
use test_support::{DEADLINE, GitRepo, Stack, step};

/// A workflow of `repo` that runs for pull requests to main.
fn workflow(name: &str, repo: &GitRepo, extra: &str, steps: &str) -> String {
    format!(
        "name: {name}\nrepo: {}\non:\n  push:\n    branches: [main]\n  pull_request:\n    branches: [main]\n{extra}steps:\n{steps}",
        repo.url
    )
}

const ECHO_STEP: &str = "  - name: show\n    run: echo \"event=$SLIPWAY_EVENT pr=$SLIPWAY_PR_NUMBER target=$SLIPWAY_PR_TARGET_BRANCH token=${TOKEN:-none}\"\n";

async fn task_count(stack: &Stack) -> usize {
    let (status, body) = stack.get("/api/tasks?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().map_or(0, Vec::len)
}

fn ignored(body: &Value) -> &str {
    body["ignored"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_pull_request_runs_its_head_and_the_rest_is_ignored() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let workflow_id = stack
        .create_workflow(&workflow("prs", &repo, "secrets: [TOKEN]\n", ECHO_STEP))
        .await;
    stack.set_secret(workflow_id, "TOKEN", "s3cr3t-value").await;
    repo.commit("main", &[("a.txt", "a")], "base");
    let head = repo.commit_to_ref("main", "refs/pull/7/head", &[("b.txt", "b")], "feature");

    let opened = PullRequest::new(&repo.url, "opened", 7, &head);
    let (status, body) = stack
        .github("pull_request", "pr-opened", &github_pull_request(&opened))
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(task["trigger"], "pull_request");
    assert_eq!(task["commit"], head.as_str());
    assert_eq!(task["branch"], "feature");
    assert_eq!(
        task["pull_request"],
        json!({
            "number": 7,
            "title": "Add a feature",
            "url": "https://github.example/acme/repo/pull/7",
            "source_branch": "feature",
            "target_branch": "main",
            "fork": false,
        })
    );
    let log = stack.logs(task_id).await;
    assert!(
        log.contains("event=pull_request pr=7 target=main token=***"),
        "a pull request from the repository itself gets its secrets: {log}"
    );

    // The same delivery again is a duplicate.
    let (status, again) = stack
        .github("pull_request", "pr-opened", &github_pull_request(&opened))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task_ids"], body["task_ids"]);

    let before = task_count(&stack).await;
    let cases = [
        (
            PullRequest {
                draft: true,
                ..PullRequest::new(&repo.url, "opened", 8, &head)
            },
            "prs: draft pull requests do not run",
        ),
        (
            PullRequest::new(&repo.url, "closed", 7, &head),
            "prs: pull request action closed does not match on.pull_request.types",
        ),
        (
            PullRequest::new(&repo.url, "assigned", 7, &head),
            "prs: pull request action assigned does not match on.pull_request.types",
        ),
        (
            PullRequest {
                target_branch: "dev",
                ..PullRequest::new(&repo.url, "opened", 9, &head)
            },
            "prs: target branch dev does not match on.pull_request.branches",
        ),
        (
            PullRequest {
                fork: true,
                ..PullRequest::new(&repo.url, "opened", 10, &head)
            },
            "pull request from a fork",
        ),
    ];
    for (i, (pr, why)) in cases.iter().enumerate() {
        let (status, body) = stack
            .github(
                "pull_request",
                &format!("ignored-{i}"),
                &github_pull_request(pr),
            )
            .await;
        assert_eq!(status, 202, "{pr:?}: {body}");
        assert_eq!(ignored(&body), *why, "{pr:?}: {body}");
        assert_eq!(body["task_ids"], json!([]));
    }

    // Bad input: a clear 400, nothing recorded.
    let mut no_sha = github_pull_request(&opened);
    no_sha["pull_request"]["head"]
        .as_object_mut()
        .expect("head")
        .remove("sha");
    let mut bad_sha = github_pull_request(&opened);
    bad_sha["pull_request"]["head"]["sha"] = json!("not-a-sha");
    let mut no_number = github_pull_request(&opened);
    no_number["pull_request"]
        .as_object_mut()
        .expect("pull_request")
        .remove("number");
    no_number.as_object_mut().expect("payload").remove("number");
    for (i, bad) in [no_sha, bad_sha, no_number, json!({"action": "opened"})]
        .iter()
        .enumerate()
    {
        let (status, body) = stack.github("pull_request", &format!("bad-{i}"), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = stack
        .github_raw("pull_request", "bad-json", b"{\"action\":".to_vec(), None)
        .await;
    assert!(status == 400 || status == 401, "{body}");
    assert_eq!(task_count(&stack).await, before, "nothing half-written");

    // A push whose head commit says [skip ci] triggers nothing.
    let skipped = repo.commit("main", &[("c.txt", "c")], "docs only [skip ci]");
    let (status, body) = stack
        .github(
            "push",
            "skip",
            &github_push(
                &repo.url,
                "refs/heads/main",
                &skipped,
                "docs only [skip ci]",
                &["c.txt"],
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(ignored(&body), "skip ci", "{body}");
    assert_eq!(task_count(&stack).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_head_cancels_the_older_task_of_its_pull_request() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let steps =
        "  - name: wait\n    run: |\n      if [ -f slow ]; then sleep 60; fi\n      echo done\n";
    stack
        .create_workflow(&workflow(
            "supersede",
            &repo,
            "concurrency:\n  cancel_in_progress: true\n",
            steps,
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "base");
    let first = repo.commit_to_ref("main", "refs/pull/3/head", &[("slow", "1")], "slow");
    let (status, body) = stack
        .github(
            "pull_request",
            "first-head",
            &github_pull_request(&PullRequest::new(&repo.url, "opened", 3, &first)),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let first_task = body["task_ids"][0].as_i64().expect("a task");
    stack
        .wait_task(first_task, DEADLINE, |t| {
            step(t, "wait")["status"] == "running"
        })
        .await;

    // Another pull request's task is not touched.
    let other = repo.commit_to_ref("main", "refs/pull/4/head", &[("b.txt", "b")], "other");
    let (_, body) = stack
        .github(
            "pull_request",
            "other-pr",
            &github_pull_request(&PullRequest::new(&repo.url, "opened", 4, &other)),
        )
        .await;
    let other_task = body["task_ids"][0].as_i64().expect("a task");

    // The new head is based on main, without `slow`.
    let second = repo.commit_to_ref("main", "refs/pull/3/head", &[("fast.txt", "1")], "fast");
    let (status, body) = stack
        .github(
            "pull_request",
            "second-head",
            &github_pull_request(&PullRequest::new(&repo.url, "synchronize", 3, &second)),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let second_task = body["task_ids"][0].as_i64().expect("a task");

    let cancelled = stack.wait_finished(first_task).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert_eq!(
        cancelled["error"],
        format!("superseded by task {second_task}"),
        "{cancelled:#}"
    );
    let task = stack.wait_finished(second_task).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let task = stack.wait_finished(other_task).await;
    assert_eq!(
        task["status"], "success",
        "another pull request runs on: {task:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_requests_run_when_opened_and_updated() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow("mrs", &repo, "", ECHO_STEP))
        .await;
    repo.commit("main", &[("a.txt", "a")], "base");
    let head = repo.commit_to_ref(
        "main",
        "refs/merge-requests/5/head",
        &[("b.txt", "b")],
        "mr",
    );
    let opened = PullRequest::new(&repo.url, "open", 5, &head);
    let (status, body) = stack
        .gitlab(
            "Merge Request Hook",
            "mr-open",
            &gitlab_merge_request(&opened, None),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(task["trigger"], "pull_request");
    assert_eq!(task["pull_request"]["number"], 5);
    assert_eq!(
        task["pull_request"]["url"],
        "https://gitlab.example/acme/repo/-/merge_requests/5"
    );
    assert!(
        stack
            .logs(task_id)
            .await
            .contains("event=pull_request pr=5 target=main")
    );

    let newer = repo.commit_to_ref(
        "main",
        "refs/merge-requests/5/head",
        &[("c.txt", "c")],
        "more",
    );
    let updated = PullRequest::new(&repo.url, "update", 5, &newer);
    let (status, body) = stack
        .gitlab(
            "Merge Request Hook",
            "mr-update",
            &gitlab_merge_request(&updated, Some(&head)),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(task["commit"], newer.as_str());

    // An update that changed only the description has no oldrev.
    let (status, body) = stack
        .gitlab(
            "Merge Request Hook",
            "mr-edit",
            &gitlab_merge_request(&updated, None),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["task_ids"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_runs_in_containers_without_secrets_and_never_pushes_or_deploys() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let port = images::free_port();
    let container = format!("slipway-e2e-pr-{port}");
    let _cleanup = images::Cleanup(vec![container.clone()]);
    let name = format!("slipway-e2e/pr-{port}");
    let workflow_id = stack
        .create_workflow(&format!(
            "name: forked\nrepo: {repo}\non:\n  pull_request:\n    forks: run\nsecrets: [TOKEN]\nsteps:\n  - name: inside\n    image: {busybox}\n    run: echo \"token=${{TOKEN:-none}} event=$SLIPWAY_EVENT\"\nimage:\n  name: {name}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {container}, ports: [\"127.0.0.1:{port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{port}/health\", interval: 200ms, timeout: 5s }}\n",
            repo = repo.url,
            busybox = images::BUSYBOX,
        ))
        .await;
    stack
        .set_secret(workflow_id, "TOKEN", "fork-must-not-see")
        .await;
    let files = images::app(Some("ok\n"), None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    repo.commit("main", &files, "app");
    let head = repo.commit_to_ref(
        "main",
        "refs/pull/11/head",
        &[("README", "fork\n")],
        "from a fork",
    );

    let pr = PullRequest {
        fork: true,
        source_branch: "patch-1",
        ..PullRequest::new(&repo.url, "opened", 11, &head)
    };
    let (status, body) = stack
        .github("pull_request", "fork-opened", &github_pull_request(&pr))
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    let log = stack.logs(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}\n{log}");
    assert_eq!(task["branch"], "forker:patch-1");
    assert_eq!(task["pull_request"]["fork"], true);
    assert!(
        log.contains("secrets are not available to pull requests from forks: TOKEN"),
        "{log}"
    );
    assert!(log.contains("token=none event=pull_request"), "{log}");
    assert!(!log.contains("fork-must-not-see"), "{log}");
    assert_eq!(step(&task, "image")["status"], "success", "{task:#}");
    assert_eq!(step(&task, "deploy:dev")["status"], "skipped", "{task:#}");
    assert!(task["image"].is_null(), "no image is recorded: {task:#}");
    assert_eq!(task["deployments"], json!([]), "{task:#}");
    let short = &head[..12];
    assert_eq!(
        images::registry_digest(&test_support::registry(), &name, short).await,
        None,
        "nothing was pushed"
    );
}
