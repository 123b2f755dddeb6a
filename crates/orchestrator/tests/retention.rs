//! Retention: the pruner deletes a workflow's finished tasks past both of
//! its limits (older than `days`, outside the newest `keep_last`) with
//! their steps, logs, events, alerts, deliveries and commit statuses; it
//! keeps unfinished tasks and those whose deliveries are still in flight;
//! `GET /api/workflows/{id}` shows the retention in force and the last
//! pruning; and webhooks arriving while it prunes thousands of rows are
//! all recorded. Old rows are seeded by moving their times back in SQL.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use test_support::hooks::github_push;
use test_support::scrape::scrape_until;
use test_support::{DEADLINE, GitRepo, Options, Stack};

/// Restarts the stack's orchestrator pruning every second, with `change`.
async fn pruning_every_second(stack: &mut Stack, change: impl FnOnce(&mut orchestrator::Settings)) {
    stack.stop_orchestrator().await;
    stack
        .start_orchestrator_with(|s| {
            s.prune_interval = "1s".to_owned();
            change(s);
        })
        .await;
}

/// Waits until `sql` (a `count(*) AS n`) is `want`.
async fn wait_count(stack: &Stack, sql: &str, want: i64) {
    let until = Instant::now() + DEADLINE;
    loop {
        let n = stack.db.count(sql);
        if n == want {
            return;
        }
        assert!(Instant::now() < until, "{sql}: {n}, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows that hang off task `id`, by table.
fn rows_of(stack: &Stack, id: i64) -> [(&'static str, i64); 6] {
    let events = format!("SELECT id FROM events WHERE task_id = {id}");
    let alerts = format!("SELECT id FROM alerts WHERE event_id IN ({events})");
    [
        (
            "steps",
            format!("SELECT count(*) AS n FROM steps WHERE task_id = {id}"),
        ),
        (
            "log_chunks",
            format!("SELECT count(*) AS n FROM log_chunks WHERE task_id = {id}"),
        ),
        ("events", format!("SELECT count(*) AS n FROM ({events}) e")),
        ("alerts", format!("SELECT count(*) AS n FROM ({alerts}) a")),
        (
            "deliveries",
            format!("SELECT count(*) AS n FROM deliveries WHERE alert_id IN ({alerts})"),
        ),
        (
            "commit_statuses",
            format!("SELECT count(*) AS n FROM commit_statuses WHERE task_id = {id}"),
        ),
    ]
    .map(|(table, sql)| (table, stack.db.count(&sql)))
}

/// Gives one event of task `id` an alert with a delivery in `status`, and
/// (for a delivered one) a delivered commit status, as a notifier would
/// have recorded them.
fn alert_of(stack: &Stack, id: i64, status: &str) {
    let event = format!("(SELECT id FROM events WHERE task_id = {id} ORDER BY seq LIMIT 1)");
    stack.db.execute(&format!(
        "WITH a AS (INSERT INTO alerts (event_id, throttle_key, throttled)
                    VALUES ({event}, 'k{id}', false) RETURNING id)
         INSERT INTO deliveries (alert_id, rule, channel, target, status)
         SELECT id, 0, 'webhook', 'http://hooks.test', '{status}' FROM a"
    ));
    if status == "delivered" {
        stack.db.execute(&format!(
            "INSERT INTO commit_statuses (event_id, task_id, seq, context, state, description, status)
             SELECT id, {id}, seq, 'slipway/kept', 'success', 'done', 'delivered' FROM events
             WHERE id = {event}"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_past_both_limits_go_with_everything_hanging_off_them() {
    let mut stack = Stack::with(Options {
        runner_concurrency: 1,
        ..Options::default()
    })
    .await;
    pruning_every_second(&mut stack, |s| s.retention_days = 5).await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    let kept = stack
        .create_workflow(&format!(
            "name: kept\nrepo: {}\nsteps:\n  - name: talk\n    run: echo hello from the step\nretention:\n  days: 7\n  keep_last: 2\n",
            repo.url
        ))
        .await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let id = stack.run_workflow(kept).await;
        assert_eq!(stack.wait_finished(id).await["status"], "success");
        tasks.push(id);
    }
    let [t1, t2, t3, t4, t5, t6] = tasks[..] else {
        unreachable!("six tasks")
    };
    // A task no runner takes: it stays pending, however old.
    let waiting = stack
        .create_workflow(&format!(
            "name: waiting\nrepo: {}\nruns_on: [nobody]\nsteps:\n  - name: s\n    run: 'true'\nretention:\n  keep_last: 0\n",
            repo.url
        ))
        .await;
    let pending = stack.run_workflow(waiting).await;
    wait_count(
        &stack,
        "SELECT count(*) AS n FROM events WHERE published_at IS NULL",
        0,
    )
    .await;

    alert_of(&stack, t1, "delivered");
    // A delivery still being tried keeps its task until it is done.
    alert_of(&stack, t3, "pending");
    let bytes = stack.db.count(&format!(
        "SELECT COALESCE(sum(octet_length(data)), 0)::bigint AS n FROM log_chunks WHERE task_id IN ({t1}, {t2})"
    ));
    assert!(bytes > 0);
    let pruned_before = rows_of(&stack, t1);
    assert!(
        pruned_before.iter().all(|(_, n)| *n > 0),
        "{pruned_before:?}"
    );

    // t4 and t6 are young; t5 is old but among the newest two.
    stack.db.age_tasks(&[t1, t2, t3, t5, pending], 10);
    let gone = format!("SELECT count(*) AS n FROM tasks WHERE id IN ({t1}, {t2})");
    wait_count(&stack, &gone, 0).await;
    for id in [t1, t2] {
        let (status, _) = stack.get(&format!("/api/tasks/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(rows_of(&stack, id).map(|(_, n)| n), [0; 6], "task {id}");
    }
    for id in [t3, t4, t5, t6] {
        let task = stack.task(id).await;
        assert_eq!(task["status"], "success");
        assert!(
            stack.logs(id).await.contains("hello from the step"),
            "task {id}"
        );
    }
    assert_eq!(stack.task(pending).await["status"], "pending");

    let (status, w) = stack.get(&format!("/api/workflows/{kept}")).await;
    assert_eq!(status, StatusCode::OK);
    let r = &w["retention"];
    assert_eq!(
        (r["days"].as_u64(), r["keep_last"].as_u64()),
        (Some(7), Some(2)),
        "{w:#}"
    );
    assert_eq!(
        r["last_pruned"],
        serde_json::json!({"tasks": 2, "log_bytes": bytes, "images": 0}),
        "{w:#}"
    );
    assert!(r["last_pruned_at"].is_string(), "{w:#}");
    // The server's default days where the workflow sets none; no pruning yet.
    let (_, w) = stack.get(&format!("/api/workflows/{waiting}")).await;
    assert_eq!(
        w["retention"],
        serde_json::json!({"days": 5, "keep_last": 0, "last_pruned_at": null,
                           "last_pruned": {"tasks": 0, "log_bytes": 0, "images": 0}})
    );
    // The list stays as it was.
    let (_, list) = stack.get("/api/workflows").await;
    assert!(list[0].get("retention").is_none(), "{list:#}");

    let client = reqwest::Client::new();
    let metrics = scrape_until(&client, &stack.orchestrator_metrics(), |m| {
        m.get("slipway_data_bytes", &[("kind", "logs")])
            .is_some_and(|b| b > 0.0)
    })
    .await;
    assert_eq!(
        metrics.value("slipway_pruned_total", &[("kind", "tasks")]),
        2.0
    );
    assert_eq!(
        metrics.value("slipway_pruned_total", &[("kind", "alerts")]),
        1.0
    );
    assert_eq!(
        metrics.value("slipway_pruned_total", &[("kind", "commit_statuses")]),
        1.0
    );

    // Its delivery done, t3 goes too: the last pruning is that one alone.
    stack
        .db
        .execute("UPDATE deliveries SET status = 'delivered', delivered_at = now()");
    wait_count(
        &stack,
        &format!("SELECT count(*) AS n FROM tasks WHERE id = {t3}"),
        0,
    )
    .await;
    let (_, w) = stack.get(&format!("/api/workflows/{kept}")).await;
    assert_eq!(w["retention"]["last_pruned"]["tasks"], 1, "{w:#}");
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(*) AS n FROM tasks WHERE workflow_id = {kept}"
        )),
        3
    );
}

/// Seeds `n` finished tasks of `workflow_id` (version 1), each with two
/// steps, two log chunks and three published events, all `days` old.
fn seed_old_tasks(stack: &Stack, workflow_id: i64, n: u32, days: u32) {
    stack.db.execute(&format!(
        "WITH t AS (
             INSERT INTO tasks (workflow_id, workflow_version, status, trigger, created_at,
                                started_at, finished_at, queued_at)
             SELECT {workflow_id}, 1, 'success', 'push', now() - interval '{days} days',
                    now() - interval '{days} days', now() - interval '{days} days',
                    now() - interval '{days} days'
             FROM generate_series(1, {n}) RETURNING id),
         s AS (
             INSERT INTO steps (task_id, position, name, status, exit_code)
             SELECT id, p, CASE p WHEN 0 THEN 'clone' ELSE 'build' END, 'success', 0
             FROM t, generate_series(0, 1) p RETURNING 1),
         l AS (
             INSERT INTO log_chunks (task_id, position, data)
             SELECT id, p, convert_to(repeat('log line of an old build ', 20), 'UTF8')
             FROM t, generate_series(0, 1) p RETURNING 1)
         INSERT INTO events (id, type, workflow_id, task_id, summary, created_at, published_at)
         SELECT gen_random_uuid()::text, k, {workflow_id}, id, 'seeded',
                now() - interval '{days} days', now() - interval '{days} days'
         FROM t, unnest(ARRAY['task_created', 'task_started', 'task_succeeded']) k"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arriving_while_thousands_of_rows_are_pruned_are_all_recorded() {
    let mut stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let sha = repo.commit("main", &[("a.txt", "a")], "first");
    let id = stack
        .create_workflow(&format!(
            "name: busy\nrepo: {}\nsteps:\n  - name: s\n    run: 'true'\nretention:\n  days: 1\n  keep_last: 0\n",
            repo.url
        ))
        .await;
    const OLD: u32 = 3000;
    seed_old_tasks(&stack, id, OLD, 30);
    // Small batches, so pruning takes many transactions while pushes come.
    pruning_every_second(&mut stack, |s| s.prune_batch = 20).await;

    // Pushes arrive from the pruner's first batch to its last.
    let left =
        format!("SELECT count(*) AS n FROM tasks WHERE workflow_id = {id} AND status = 'success'");
    let started = Instant::now() + DEADLINE;
    while stack.db.count(&left) == i64::from(OLD) {
        assert!(Instant::now() < started, "the pruner never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut created = Vec::new();
    let mut while_pruning = 0;
    let until = Instant::now() + DEADLINE;
    loop {
        let pruning = stack.db.count(&left) > 0;
        if !pruning && created.len() >= 20 {
            break;
        }
        assert!(Instant::now() < until, "the pruner did not finish");
        while_pruning += usize::from(pruning);
        let delivery = format!("push-{}", created.len());
        let payload = github_push(&repo.url, "refs/heads/main", &sha, "m", &["a.txt"]);
        let (status, body) = stack.github("push", &delivery, &payload).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        created.push(body["task_ids"][0].as_i64().expect("a task"));
    }
    assert!(while_pruning > 0, "no push came while the pruner worked");
    let pushes = i64::try_from(created.len()).unwrap_or(i64::MAX);
    // Every push's task is there, with its steps; nothing else is left.
    let ids = created
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(*) AS n FROM tasks WHERE id IN ({ids}) AND status = 'pending'"
        )),
        pushes
    );
    assert_eq!(
        stack.db.count(&format!(
            "SELECT count(DISTINCT task_id) AS n FROM steps WHERE task_id IN ({ids})"
        )),
        pushes
    );
    for table in ["steps", "log_chunks", "events"] {
        assert_eq!(
            stack.db.count(&format!(
                "SELECT count(*) AS n FROM {table} WHERE task_id NOT IN ({ids})"
            )),
            0,
            "{table}"
        );
    }
    let (_, w) = stack.get(&format!("/api/workflows/{id}")).await;
    assert_eq!(w["retention"]["last_pruned"]["tasks"], OLD, "{w:#}");
}
