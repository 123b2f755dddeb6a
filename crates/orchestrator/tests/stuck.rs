//! A task that no runner takes: the watchdog publishes it again after a
//! while (in case its message was lost), and that does not start a new
//! wait, so `task_stuck` is still raised once it has waited longer than
//! `SLIPWAY_PENDING_ALERT`, and only once.

use std::time::{Duration, Instant};

use test_support::{DEADLINE, GitRepo, Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_longer_than_the_alert_is_stuck_once_even_when_published_again() {
    let stack = Stack::with(Options {
        runners: 0,
        // The watchdog passes every quarter lease (SLIPWAY_PENDING_ALERT
        // stays 10m).
        lease_seconds: 2,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    let id = stack
        .create_workflow(&format!(
            "name: nobody-home\nrepo: {}\nsteps:\n  - name: s\n    run: 'true'\n",
            repo.url
        ))
        .await;
    let task_id = stack.run_workflow(id).await;

    // Once published, the task has waited 20 minutes, as far as the
    // database knows: past the 5 minutes after which the watchdog publishes
    // it again and the 10 after which it is stuck.
    let until = Instant::now() + DEADLINE;
    while stack.db.count(&format!(
        "SELECT count(*) AS n FROM outbox WHERE task_id = {task_id}"
    )) > 0
    {
        assert!(Instant::now() < until, "task {task_id} never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.db.execute(&format!(
        "UPDATE tasks SET queued_at = now() - interval '20 minutes' WHERE id = {task_id}"
    ));

    let stuck = format!(
        "SELECT count(*) AS n FROM events WHERE task_id = {task_id} AND type = 'task_stuck'"
    );
    let republished = format!(
        "SELECT count(*) AS n FROM tasks WHERE id = {task_id} AND republished_at IS NOT NULL"
    );
    let until = Instant::now() + DEADLINE;
    while stack.db.count(&stuck) == 0 || stack.db.count(&republished) == 0 {
        assert!(
            Instant::now() < until,
            "task {task_id}: {} task_stuck events, {} republished",
            stack.db.count(&stuck),
            stack.db.count(&republished)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The wait still counts from when the task was queued.
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(*) AS n FROM tasks WHERE id = {task_id} AND queued_at < now() - interval '15 minutes'"
        )),
        1
    );
    assert_eq!(stack.task(task_id).await["status"], "pending");

    // Several watchdog passes later (one each 500 ms), still one alert.
    let events = "SELECT count(*) AS n FROM events WHERE type = 'task_stuck'";
    let passes = Instant::now() + Duration::from_secs(3);
    while Instant::now() < passes {
        assert_eq!(stack.db.count(events), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Not published again either: the last time was before this window.
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(*) AS n FROM tasks WHERE id = {task_id} AND republished_at < now() - interval '2 seconds'"
        )),
        1
    );
}
