//! A runner killed with SIGKILL mid-step: its lease runs out, the task goes
//! back to the queue once and another runner finishes it; lost a second
//! time, it fails with "runner lost". Nothing stays `running`. An
//! orchestrator away for a moment loses no task, and the steps go on
//! meanwhile, their changes stored once it is back, with the times they
//! happened.

use std::time::Duration;

use test_support::{GitRepo, Options, Stack, step, step_time};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");
const WITHIN: Duration = Duration::from_secs(90);

fn options() -> Options {
    Options {
        runners: 0,
        lease_seconds: 3,
        heartbeat_ms: 300,
        ..Options::default()
    }
}

async fn start_task(stack: &Stack, repo: &GitRepo) -> i64 {
    let id = stack
        .create_workflow(&format!(
            "name: crashy\nrepo: {}\nsteps:\n  - name: work\n    run: |\n      echo started\n      sleep 4\n      echo finished\n",
            repo.url
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    stack.run_workflow(id).await
}

async fn wait_running(stack: &Stack, task_id: i64, after_requeue: bool) {
    stack
        .wait_task(task_id, WITHIN, |t| {
            step(t, "work")["status"] == "running" && t["status"] == "running"
        })
        .await;
    if after_requeue {
        let log = stack.logs(task_id).await;
        assert!(log.contains("runner lost"), "{log}");
    }
}

async fn nothing_running(stack: &Stack) {
    let (status, running) = stack.get("/api/tasks?status=running").await;
    assert_eq!(status, 200);
    assert_eq!(running, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_runner_finishes_the_task_of_a_killed_one() {
    let mut stack = Stack::with(options()).await;
    let repo = GitRepo::new();
    let first = stack.spawn_runner_process(RUNNER.as_ref());
    let task_id = start_task(&stack, &repo).await;
    wait_running(&stack, task_id, false).await;
    stack.kill_runner_process(first);

    stack.spawn_runner_process(RUNNER.as_ref());
    let task = stack
        .wait_task(task_id, WITHIN, |t| t["status"] == "success")
        .await;
    assert_eq!(step(&task, "work")["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    assert!(log.contains("runner lost: the task was re-queued"), "{log}");
    assert!(log.contains("finished"), "{log}");
    nothing_running(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_lost_twice_fails_with_runner_lost() {
    let mut stack = Stack::with(options()).await;
    let repo = GitRepo::new();
    let first = stack.spawn_runner_process(RUNNER.as_ref());
    let task_id = start_task(&stack, &repo).await;
    wait_running(&stack, task_id, false).await;
    stack.kill_runner_process(first);
    // The lease runs out and the task is back in the queue, its steps reset.
    stack
        .wait_task(task_id, WITHIN, |t| {
            t["status"] == "pending" && step(t, "work")["status"] == "pending"
        })
        .await;

    let second = stack.spawn_runner_process(RUNNER.as_ref());
    wait_running(&stack, task_id, true).await;
    stack.kill_runner_process(second);

    let task = stack
        .wait_task(task_id, WITHIN, |t| t["status"] == "failed")
        .await;
    assert_eq!(task["error"], "runner lost", "{task:#}");
    assert_eq!(step(&task, "work")["status"], "cancelled", "{task:#}");
    nothing_running(&stack).await;
    // Each loss is a runner_lost event; the failure is not a build_failed.
    use diesel::Connection as _;
    let mut conn = diesel::PgConnection::establish(&stack.db.url).expect("database");
    let kinds = store::events::kinds_for_task(&mut conn, task_id).expect("events");
    assert_eq!(
        kinds,
        [
            "task_created",
            "task_started",
            "runner_lost",
            "task_started",
            "runner_lost"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_orchestrator_loses_no_running_task() {
    let mut stack = Stack::with(Options {
        runners: 1,
        ..options()
    })
    .await;
    let repo = GitRepo::new();
    let task_id = start_task(&stack, &repo).await;
    wait_running(&stack, task_id, false).await;

    stack.stop_orchestrator().await;
    // Away for a while (a restart): heartbeats fail meanwhile, but for less
    // than the part of the lease after which a runner gives its task up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_orchestrator(None).await;

    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    assert!(!log.contains("runner lost"), "{log}");
    assert!(log.contains("finished"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_go_on_while_the_orchestrator_is_away_and_keep_their_times() {
    let mut stack = Stack::with(Options {
        runners: 1,
        ..options()
    })
    .await;
    let repo = GitRepo::new();
    let dir = tempfile::tempdir().unwrap();
    let (gate, marker) = (dir.path().join("gate"), dir.path().join("second"));
    let id = stack
        .create_workflow(&format!(
            "name: onward\nrepo: {}\nsteps:\n  - name: first\n    run: |\n      while [ ! -e {} ]; do sleep 0.05; done\n  - name: second\n    run: touch {}\n",
            repo.url,
            gate.display(),
            marker.display()
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    let task_id = stack.run_workflow(id).await;
    stack
        .wait_task(task_id, WITHIN, |t| step(t, "first")["status"] == "running")
        .await;

    stack.stop_orchestrator().await;
    std::fs::write(&gate, "").unwrap();
    // The second step starts without a word from the orchestrator.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the second step waited for the orchestrator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = chrono::Utc::now();
    stack.start_orchestrator(None).await;

    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let at = |name: &str, field: &str| step_time(&task, name, field);
    // Stamped when they happened on the runner, in order, while the
    // orchestrator was away, not when it heard of them.
    assert!(
        at("second", "started_at") >= at("first", "finished_at"),
        "{task:#}"
    );
    assert!(at("second", "started_at") <= back, "{task:#}");
    assert!(at("second", "finished_at") <= back, "{task:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_leaves_the_next_task_to_a_free_one() {
    let mut stack = Stack::with(Options {
        runners: 0,
        runner_concurrency: 1,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let slow = stack
        .create_workflow(&format!(
            "name: slow\nrepo: {}\nsteps:\n  - name: wait\n    run: sleep 30\n",
            repo.url
        ))
        .await;
    let quick = stack
        .create_workflow(&format!(
            "name: quick\nrepo: {}\nsteps:\n  - name: hi\n    run: echo quick\n",
            repo.url
        ))
        .await;
    repo.commit("main", &[("a.txt", "a")], "m");
    stack.spawn_runner().await;
    let slow_task = stack.run_workflow(slow).await;
    stack
        .wait_task(slow_task, WITHIN, |t| {
            step(t, "wait")["status"] == "running"
        })
        .await;
    // The only runner is full; the next task must not wait in its hands.
    let quick_task = stack.run_workflow(quick).await;
    let pid = stack.spawn_runner_process(RUNNER.as_ref());
    let task = stack
        .wait_task(quick_task, Duration::from_secs(20), |t| {
            t["status"] == "success"
        })
        .await;
    assert_eq!(step(&task, "hi")["status"], "success");
    assert_eq!(stack.task(slow_task).await["status"], "running");
    stack.kill_runner_process(pid);
    let (status, _) = stack
        .post(
            &format!("/api/tasks/{slow_task}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 202);
}
