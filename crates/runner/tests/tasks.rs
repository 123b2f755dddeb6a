//! End to end, on real Postgres and RabbitMQ: a push to a local bare
//! repository, a signed webhook, and a runner that takes the task, clones the
//! commit and runs the steps.

use std::time::Duration;

use serde_json::json;
use test_support::hooks::{github_push, gitlab_push};
use test_support::{DEADLINE, GitRepo, Options, Stack, step};

fn workflow(name: &str, repo: &GitRepo, steps: &str) -> String {
    format!("name: {name}\nrepo: {}\nsteps:\n{steps}", repo.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_runs_the_steps_to_success() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow(
            "hello",
            &repo,
            "  - name: build\n    run: |\n      cat greeting.txt\n      echo \"commit=$SLIPWAY_COMMIT branch=$SLIPWAY_BRANCH ci=$CI\"\n  - name: test\n    run: test -f greeting.txt && echo tests passed\n",
        ))
        .await;
    let sha = repo.commit(
        "main",
        &[("greeting.txt", "hello from the repo\n")],
        "first",
    );

    let payload = github_push(
        &repo.url,
        "refs/heads/main",
        &sha,
        "first",
        &["greeting.txt"],
    );
    let (status, body) = stack.github("push", "delivery-1", &payload).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivery_id"], "delivery-1");
    let task_id = body["task_ids"][0].as_i64().expect("a task");

    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(task["commit"], sha.as_str());
    assert_eq!(task["branch"], "main");
    assert_eq!(task["trigger"], "push");
    assert_eq!(task["message"], "first");
    for name in ["clone", "build", "test"] {
        let s = step(&task, name);
        assert_eq!(s["status"], "success", "{name}: {task:#}");
        assert_eq!(s["exit_code"], 0);
        assert!(s["started_at"].is_string() && s["finished_at"].is_string());
    }
    let log = stack.logs(task_id).await;
    assert!(log.contains("==> build\nhello from the repo\n"), "{log}");
    assert!(
        log.contains(&format!("commit={sha} branch=main ci=true")),
        "{log}"
    );
    assert!(log.contains("==> test\ntests passed\n"), "{log}");
}

/// With `SLIPWAY_RUNNER_TOKEN` set on both sides, the runner presents it
/// rather than the API token it also has, and the orchestrator takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_its_own_token_runs_tasks() {
    let stack = Stack::with(Options {
        runner_token: format!("runner-{}", uuid::Uuid::new_v4().simple()),
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow(
            "own-token",
            &repo,
            "  - name: build\n    run: echo built\n",
        ))
        .await;
    let sha = repo.commit("main", &[("a.txt", "a\n")], "first");
    let payload = github_push(&repo.url, "refs/heads/main", &sha, "first", &["a.txt"]);
    let (status, body) = stack.github("push", "delivery-own-token", &payload).await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_task_and_skips_the_rest() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow(
            "failing",
            &repo,
            "  - name: lint\n    run: echo lint failed; exit 3\n    continue_on_error: true\n  - name: test\n    run: echo running tests; exit 7\n  - name: after\n    run: echo never\n",
        ))
        .await;
    let sha = repo.commit("main", &[("a.txt", "a")], "break it");
    let (status, body) = stack
        .github(
            "push",
            "d-fail",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["a.txt"]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(task["error"], "step test exited with status 7");
    assert_eq!(step(&task, "lint")["status"], "failed");
    assert_eq!(step(&task, "lint")["exit_code"], 3);
    assert_eq!(step(&task, "test")["status"], "failed");
    assert_eq!(step(&task, "test")["exit_code"], 7);
    assert_eq!(step(&task, "after")["status"], "skipped");
    let log = stack.logs(task_id).await;
    assert!(log.contains("running tests"), "{log}");
    assert!(!log.contains("never"), "{log}");

    // Retry: a new task for the same commit, one attempt later.
    let (status, body) = stack
        .post(&format!("/api/tasks/{task_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let retry_id = body["task_id"].as_i64().expect("retry id");
    assert_ne!(retry_id, task_id);
    let retried = stack.wait_finished(retry_id).await;
    assert_eq!(retried["attempt"], 2);
    assert_eq!(retried["retry_of"], task_id);
    assert_eq!(retried["commit"], sha.as_str());
    assert_eq!(retried["status"], "failed");
    // A finished-successfully or running task cannot be retried; a failed one can again.
    let (status, _) = stack.post("/api/tasks/999999/retry", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_step_within_two_seconds() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "sleepy",
            &repo,
            "  - name: wait\n    run: echo sleeping; sleep 300\n  - name: after\n    run: echo never\n",
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let task_id = stack.run_workflow(id).await;
    stack
        .wait_task(task_id, DEADLINE, |t| {
            step(t, "wait")["status"] == "running"
        })
        .await;

    let asked = std::time::Instant::now();
    let (status, body) = stack
        .post(&format!("/api/tasks/{task_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let task = stack
        .wait_task(task_id, Duration::from_secs(10), |t| {
            step(t, "wait")["status"] != "running"
        })
        .await;
    let stopped_after = asked.elapsed();
    assert!(
        stopped_after < Duration::from_secs(2) + Duration::from_millis(1500),
        "took {stopped_after:?}"
    );
    assert_eq!(step(&task, "wait")["status"], "cancelled", "{task:#}");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(step(&task, "after")["status"], "skipped");
    // The manual run resolved the branch head, and the clone told its
    // message, author and time.
    assert_eq!(task["commit"].as_str().map(str::len), Some(40));
    assert_eq!(
        (task["message"].as_str(), task["author"].as_str()),
        (Some("m"), Some("Test"))
    );
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(*) AS n FROM task_commits WHERE task_id = {task_id}"
        )),
        1
    );

    let (status, _) = stack
        .post(&format!("/api/tasks/{task_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
    // A cancelled task can be retried.
    let (status, _) = stack
        .post(&format!("/api/tasks/{task_id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_the_log() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&format!(
            "name: secretive\nrepo: {}\nsecrets: [API_KEY]\nsteps:\n  - name: leak\n    run: |\n      echo \"plain: $API_KEY\"\n      printf 'b64: '; printf '%s' \"$API_KEY\" | base64\n      printf 'split: %s' \"$(echo \"$API_KEY\" | cut -c1-6)\"; sleep 0.3; printf '%s\\n' \"$(echo \"$API_KEY\" | cut -c7-)\"\n      test \"$API_KEY\" = 's3cr3t-value-42' && echo value-ok\n",
            repo.url
        ))
        .await;
    stack.set_secret(id, "API_KEY", "s3cr3t-value-42").await;
    let (status, names) = stack.get(&format!("/api/workflows/{id}/secrets")).await;
    assert_eq!(status, 200);
    assert_eq!(names, json!(["API_KEY"]));

    let sha = repo.commit("main", &[("a.txt", "a")], "m");
    let (_, body) = stack
        .github(
            "push",
            "d-secret",
            &github_push(&repo.url, "refs/heads/main", &sha, "m", &["a.txt"]),
        )
        .await;
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    assert!(log.contains("value-ok"), "{log}");
    assert!(log.contains("plain: ***"), "{log}");
    assert!(log.contains("b64: ***"), "{log}");
    assert!(log.contains("split: ***"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
    assert!(!log.contains("czNjcjN0LXZhbHVlLTQy"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_push_runs_too() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&workflow(
            "gl",
            &repo,
            "  - name: hi\n    run: echo from gitlab\n",
        ))
        .await;
    let sha = repo.commit("main", &[("a.txt", "a")], "gitlab commit");
    let (status, body) = stack
        .gitlab(
            "Push Hook",
            "uuid-1",
            &gitlab_push(&repo.url, "refs/heads/main", &sha, "gitlab commit"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(task["author"], "jdoe");
    assert!(stack.logs(task_id).await.contains("from gitlab"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_log_streams_until_the_task_ends() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "streamed",
            &repo,
            "  - name: talk\n    run: |\n      echo first line\n      sleep 1\n      echo second line\n",
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let task_id = stack.run_workflow(id).await;
    let mut resp = stack
        .client
        .get(format!("{}/api/tasks/{task_id}/logs/stream", stack.http))
        .bearer_auth(&stack.token)
        .send()
        .await
        .expect("stream opens");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    let read = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end: {text}");
    assert!(text.contains("data: first line"), "{text}");
    assert!(text.contains("data: second line"), "{text}");
    assert!(
        text.contains("event: end\ndata: {\"status\":\"success\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_share_the_queue_and_each_task_runs_once() {
    let stack = Stack::with(test_support::Options {
        runners: 2,
        ..test_support::Options::default()
    })
    .await;
    let marks = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&format!(
            "name: shared\nrepo: {}\nenv:\n  MARKS: {}\nsteps:\n  - name: mark\n    run: |\n      echo \"$SLIPWAY_TASK_ID\" >> \"$MARKS/ran\"\n      sleep 0.3\n",
            repo.url,
            marks.path().display()
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(stack.run_workflow(id).await);
    }
    for task_id in &ids {
        assert_eq!(stack.wait_finished(*task_id).await["status"], "success");
    }
    let ran = std::fs::read_to_string(marks.path().join("ran")).expect("marks");
    let mut seen: Vec<i64> = ran.lines().filter_map(|l| l.parse().ok()).collect();
    seen.sort_unstable();
    assert_eq!(seen, ids, "each task ran exactly once");
}
