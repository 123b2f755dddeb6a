//! Workflow caches and repository mirrors end to end, on the real stack:
//! a cache saved after a success and restored by key, by the task's branch
//! or by the default branch; a key that follows `go.sum`; pull requests
//! that restore but never save; a corrupt archive discarded; a runner
//! killed while it saves, leaving no half cache; the size bound evicting
//! the least recently used; two tasks of one repository waiting for one
//! fetch; a cache used by a container step.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::hooks::{PullRequest, github_pull_request};
use test_support::images::{self, BUSYBOX};
use test_support::scrape::scrape_until;
use test_support::{DEADLINE, GitRepo, Options, Stack, step};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");

/// A workflow of `repo` with `cache` and `steps` (YAML, indented).
fn workflow(name: &str, repo: &GitRepo, cache: &str, steps: &str) -> String {
    format!(
        "name: {name}\nrepo: {}\non:\n  push:\n    branches: [main]\n  pull_request:\n    branches: [main]\ncache:\n{cache}steps:\n{steps}",
        repo.url
    )
}

/// Prints what the cache held (`cold` when nothing), then leaves `value`
/// in it.
fn remember(dir: &str, value: &str) -> String {
    format!(
        "  - name: build\n    run: |\n      cat {dir}/value 2>/dev/null || echo cold\n      mkdir -p {dir} && echo \"{value}\" > {dir}/value\n"
    )
}

/// Runs the workflow on `branch`; returns the finished task and its log.
async fn run(stack: &Stack, workflow_id: i64, branch: &str) -> (Value, String) {
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{workflow_id}/run"),
            json!({ "branch": branch }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_i64().expect("a task");
    finished(stack, task_id).await
}

async fn finished(stack: &Stack, task_id: i64) -> (Value, String) {
    let task = stack.wait_finished(task_id).await;
    let log = stack.logs(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}\n{log}");
    (task, log)
}

/// The 16 characters of the key a log line names after `after`.
fn key_after<'a>(log: &'a str, after: &str) -> &'a str {
    let at = log
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} not in {log}"));
    let rest = &log[at + after.len()..];
    &rest[..16]
}

/// The caches of the stack's host, least recently used first.
fn cache_entries(stack: &Stack) -> Vec<runner::cache::store::Entry> {
    runner::cache::Store::open(stack.data_dir.path().join("caches"), u64::MAX)
        .expect("the caches open")
        .entries()
        .expect("the index reads")
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_is_restored_by_key_then_by_branch_when_go_sum_changes() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    settings.metrics_addr = "127.0.0.1:0".to_owned();
    let runner = runner::Runner::build(settings)
        .await
        .expect("runner starts");
    let metrics = format!("http://{}/metrics", runner.metrics_addr().expect("metrics"));
    tokio::spawn(runner.run(std::future::pending()));

    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "gocache",
            &repo,
            "  - paths: [.cache/go]\n    key_files: [go.sum]\n",
            &remember(".cache/go", "$SLIPWAY_COMMIT"),
        ))
        .await;
    let first = repo.commit("main", &[("go.sum", "a v1\n")], "first");
    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("cache .cache/go: no cache for key"), "{log}");
    assert!(log.contains("==> build\ncold\n"), "{log}");
    let k1 = key_after(&log, "cache .cache/go: saved key ");

    // Same go.sum: the key is found as it is, and nothing is saved.
    repo.commit("main", &[("main.go", "package main\n")], "second");
    let (_, log) = run(&stack, id, "main").await;
    assert!(
        log.contains(&format!("cache .cache/go: restored key {k1}, ")),
        "{log}"
    );
    assert!(log.contains(&format!("==> build\n{first}\n")), "{log}");
    assert!(!log.contains("saved key"), "{log}");

    // go.sum changed: a new key, not found; the branch's newest is
    // restored, and the new key saved.
    repo.commit("main", &[("go.sum", "a v2\n")], "third");
    let (_, log) = run(&stack, id, "main").await;
    let k3 = key_after(&log, "; key ");
    assert_ne!(k1, k3);
    assert!(
        log.contains(&format!(
            "cache .cache/go: restored the newest of branch main (key {k1}; key {k3} not found)"
        )),
        "{log}"
    );
    // What the first task saved: the second found its key and saved nothing.
    assert!(log.contains(&format!("==> build\n{first}\n")), "{log}");
    assert_eq!(key_after(&log, "saved key "), k3, "{log}");
    let restore_line = log
        .lines()
        .find(|l| l.contains("restored the newest"))
        .unwrap_or_default();
    assert!(
        restore_line.contains("B in ") && restore_line.ends_with('s'),
        "{restore_line}"
    );

    let scraped = scrape_until(&reqwest::Client::new(), &metrics, |m| {
        m.value("slipway_runner_data_bytes", &[("kind", "caches")]) > 0.0
            && m.value("slipway_runner_data_bytes", &[("kind", "mirrors")]) > 0.0
            && m.value("slipway_runner_cache_saves_total", &[]) == 2.0
    })
    .await;
    assert_eq!(
        scraped.value("slipway_runner_cache_hits_total", &[("match", "exact")]),
        1.0
    );
    assert_eq!(
        scraped.value("slipway_runner_cache_hits_total", &[("match", "branch")]),
        1.0
    );
    assert_eq!(scraped.value("slipway_runner_cache_misses_total", &[]), 1.0);
    assert!(
        scraped
            .get("slipway_runner_data_bytes", &[("kind", "workspaces")])
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_falls_back_to_the_default_branch_and_pull_requests_never_save() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "deps",
            &repo,
            "  - paths: [deps]\n",
            &remember("deps", "$SLIPWAY_BRANCH"),
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "base");
    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("==> build\ncold\n"), "{log}");

    // Without key_files, one cache per branch: a new branch starts from
    // the default branch's.
    repo.commit("feature", &[("b.txt", "b")], "feature");
    let (_, log) = run(&stack, id, "feature").await;
    assert!(
        log.contains("cache deps: restored the newest of the default branch main"),
        "{log}"
    );
    assert!(log.contains("==> build\nmain\n"), "{log}");
    assert!(log.contains("cache deps: saved key"), "{log}");
    let (_, log) = run(&stack, id, "feature").await;
    assert!(log.contains("==> build\nfeature\n"), "{log}");
    let saved = cache_entries(&stack);
    assert_eq!(saved.len(), 2, "{saved:?}");

    // A pull request from a branch without a cache restores the default
    // branch's, and saves nothing.
    let head = repo.commit_to_ref("main", "refs/pull/7/head", &[("c.txt", "c")], "fix");
    let pr = PullRequest {
        source_branch: "fix",
        ..PullRequest::new(&repo.url, "opened", 7, &head)
    };
    let (status, body) = stack
        .github("pull_request", "cache-pr", &github_pull_request(&pr))
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let (task, log) = finished(&stack, task_id).await;
    assert_eq!(task["trigger"], "pull_request");
    assert!(
        log.contains("cache deps: restored the newest of the default branch main"),
        "{log}"
    );
    assert!(
        log.contains("caches are not saved for pull requests"),
        "{log}"
    );
    assert!(!log.contains("saved key"), "{log}");
    let after: Vec<_> = cache_entries(&stack).into_iter().map(|e| e.key).collect();
    let before: Vec<_> = saved.into_iter().map(|e| e.key).collect();
    assert_eq!(
        after.iter().collect::<std::collections::BTreeSet<_>>(),
        before.iter().collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_is_discarded_and_the_task_goes_on() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "corrupt",
            &repo,
            "  - paths: [out]\n",
            "  - name: build\n    run: |\n      cat out/value 2>/dev/null || echo cold\n      mkdir -p out && seq 1 20000 > out/numbers && echo warm > out/value\n",
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    run(&stack, id, "main").await;
    let caches = stack.data_dir.path().join("caches");
    let archives = files_in(&caches, ".tar.gz");
    assert_eq!(archives.len(), 1, "{archives:?}");
    let bytes = std::fs::read(&archives[0]).expect("the archive");
    std::fs::write(&archives[0], &bytes[..bytes.len() / 2]).expect("truncated");

    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("is corrupt and was discarded"), "{log}");
    assert!(log.contains("==> build\ncold\n"), "{log}");
    // Not found as it was, so saved again, whole.
    assert!(log.contains("cache out: saved key"), "{log}");
    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("==> build\nwarm\n"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_while_it_saves_leaves_no_half_cache() {
    let mut stack = Stack::with(Options {
        runners: 0,
        lease_seconds: 3,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    // Incompressible, and big enough that its save takes a while.
    let id = stack
        .create_workflow(&workflow(
            "killed",
            &repo,
            "  - paths: [.cache/big]\n",
            "  - name: build\n    run: mkdir -p .cache/big && head -c 24000000 /dev/urandom > .cache/big/blob\n",
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let pid = stack.spawn_runner_process(RUNNER.as_ref());
    let (status, body) = stack
        .post(
            &format!("/api/workflows/{id}/run"),
            json!({"branch": "main"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_id"].as_i64().expect("a task");

    let caches = stack.data_dir.path().join("caches");
    let until = Instant::now() + DEADLINE;
    let partial = loop {
        if let Some(p) = files_in(&caches.join("tmp"), ".part").pop() {
            break p;
        }
        assert!(Instant::now() < until, "the save never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stack.kill_runner_process(pid);
    assert!(
        files_in(&caches, ".tar.gz").is_empty(),
        "the save finished before the kill"
    );
    assert!(partial.exists());

    // The next runner sweeps what the dead one left, then runs the task
    // again (its lease ran out): no cache to restore, a whole one saved.
    stack.spawn_runner().await;
    assert!(!partial.exists(), "the half archive is gone");
    let (_, log) = finished(&stack, task_id).await;
    assert!(log.contains("cache .cache/big: no cache for key"), "{log}");
    assert!(log.contains("cache .cache/big: saved key"), "{log}");
    assert!(files_in(&caches.join("tmp"), "").is_empty());
    let archives = files_in(&caches, ".tar.gz");
    assert_eq!(archives.len(), 1, "{archives:?}");
    let into = tempfile::tempdir().expect("tempdir");
    let archive = std::fs::File::open(&archives[0]).expect("the archive");
    let restored = runner::cache::archive::unpack(
        archive,
        into.path(),
        &[".cache/big".to_owned()],
        &std::sync::atomic::AtomicBool::new(false),
    )
    .expect("a whole archive");
    assert_eq!(restored.paths, [".cache/big"]);
    let blob = std::fs::metadata(into.path().join(".cache/big/blob")).expect("the blob");
    assert_eq!(blob.len(), 24_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_size_bound_the_least_recently_used_cache_goes() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    settings.cache_max_bytes = "120KiB".to_owned();
    stack.spawn_runner_with(settings).await;
    let repo = GitRepo::new();
    // About 50 KiB each, incompressible.
    let id = stack
        .create_workflow(&workflow(
            "bounded",
            &repo,
            "  - paths: [.c]\n",
            "  - name: build\n    run: |\n      test -d .c && echo warm || echo cold\n      mkdir -p .c && head -c 51200 /dev/urandom > .c/data\n",
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    for branch in ["a", "b"] {
        repo.commit(branch, &[("x.txt", branch)], branch);
        let (_, log) = run(&stack, id, branch).await;
        assert!(log.contains("cache .c: saved key"), "{log}");
    }
    // `a` used again: `b` is now the least recently used.
    let (_, log) = run(&stack, id, "a").await;
    assert!(log.contains("==> build\nwarm\n"), "{log}");
    repo.commit("c", &[("x.txt", "c")], "c");
    let (_, log) = run(&stack, id, "c").await;
    assert!(
        log.contains("; 1 least recently used caches evicted to stay within 120.0 KiB"),
        "{log}"
    );
    let mut left: Vec<_> = cache_entries(&stack)
        .into_iter()
        .filter_map(|e| e.branch)
        .collect();
    left.sort();
    assert_eq!(left, ["a", "c"]);
    assert_eq!(
        files_in(&stack.data_dir.path().join("caches"), ".tar.gz").len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_of_one_repository_wait_for_one_fetch() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&format!(
            "name: twice\nrepo: {}\nsteps:\n  - name: build\n    run: test ! -e marker && touch marker && cat a.txt\n",
            repo.url
        ))
        .await;
    repo.commit("main", &[("a.txt", "hello\n")], "m");
    // This test holds the mirror's lock, as another runner process sharing
    // the data directory would while it fetches.
    let mirrors = runner::git::Mirrors::new(stack.data_dir.path().join("mirrors"));
    let held = runner::lock::FileLock::exclusive(&mirrors.lock_path(&repo.url)).expect("lock");
    let tasks = [stack.run_workflow(id).await, stack.run_workflow(id).await];
    let waiting = "waiting for another task's fetch of this repository";
    for task_id in tasks {
        let until = Instant::now() + DEADLINE;
        while !stack.logs(task_id).await.contains(waiting) {
            assert!(Instant::now() < until, "task {task_id} never waited");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            step(&stack.task(task_id).await, "clone")["status"],
            "running"
        );
    }
    drop(held);
    let mut fetched = 0;
    for task_id in tasks {
        let (_, log) = finished(&stack, task_id).await;
        assert!(log.contains("==> build\nhello\n"), "{log}");
        if log.contains("new objects into the mirror") {
            fetched += 1;
        } else {
            assert!(log.contains("the mirror has every object already"), "{log}");
        }
    }
    assert_eq!(fetched, 1, "one of them cloned the mirror");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_step_finds_the_cache_at_the_same_relative_path() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let id = stack
        .create_workflow(&workflow(
            "boxed",
            &repo,
            "  - paths: [.cache/c]\n    key_files: [deps.txt]\n",
            &format!(
                "  - name: build\n    image: {BUSYBOX}\n    run: |\n      cat .cache/c/value 2>/dev/null || echo cold\n      mkdir -p .cache/c && echo made-in-a-container > .cache/c/value\n  - name: host\n    run: cat .cache/c/value\n"
            ),
        ))
        .await;
    repo.commit("main", &[("deps.txt", "one\n")], "m");
    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("==> build\ncold\n"), "{log}");
    assert!(log.contains("==> host\nmade-in-a-container\n"), "{log}");
    assert!(log.contains("cache .cache/c: saved key"), "{log}");
    repo.commit("main", &[("b.txt", "b")], "m2");
    let (_, log) = run(&stack, id, "main").await;
    assert!(log.contains("cache .cache/c: restored key"), "{log}");
    assert!(log.contains("==> build\nmade-in-a-container\n"), "{log}");
}
