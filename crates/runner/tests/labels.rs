//! Runner labels, end to end on real Postgres and RabbitMQ: a workflow's
//! `runs_on` sends its tasks only to runners that have every label, a task
//! no runner can take waits until one comes, and a claim from a runner
//! without the labels is refused without losing the task.

use std::path::Path;

use domain::labels::Labels;
use proto::ErrorCode;
use runner::client::RunnerClient;
use test_support::scrape::scrape_until;
use test_support::{DEADLINE, GitRepo, Options, Stack};

/// Starts a runner with `labels` whose workspaces live under `dir`, so a
/// step's `pwd` tells which runner ran it.
async fn runner(stack: &Stack, labels: &str, dir: &Path) {
    let mut settings = stack.runner_settings();
    settings.runner_labels = labels.to_owned();
    settings.data_dir = dir.to_path_buf();
    settings.runner_concurrency = 1;
    stack.spawn_runner_with(settings).await;
}

async fn workflow(stack: &Stack, repo: &GitRepo, name: &str, runs_on: Option<&str>) -> i64 {
    let runs_on = runs_on
        .map(|r| format!("runs_on: {r}\n"))
        .unwrap_or_default();
    stack
        .create_workflow(&format!(
            "name: {name}\nrepo: {}\n{runs_on}steps:\n  - name: where\n    run: pwd\n",
            repo.url
        ))
        .await
}

/// Runs the task to success and says under which runner directory it ran.
async fn ran_under(stack: &Stack, task_id: i64, dirs: &[&Path]) -> usize {
    let task = stack.wait_finished(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let log = stack.logs(task_id).await;
    dirs.iter()
        .position(|d| log.contains(&*d.to_string_lossy()))
        .unwrap_or_else(|| panic!("task {task_id} ran under none of {dirs:?}: {log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_tasks_go_only_to_runners_with_the_labels() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    let (plain_dir, gpu_dir, arm_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    runner(&stack, "", plain_dir.path()).await;
    runner(&stack, "linux, gpu", gpu_dir.path()).await;
    let dirs = [plain_dir.path(), gpu_dir.path(), arm_dir.path()];

    let gpu = workflow(&stack, &repo, "on-gpu", Some("gpu")).await;
    let both = workflow(&stack, &repo, "on-gpu-arm", Some("[gpu, arm]")).await;
    let any = workflow(&stack, &repo, "anywhere", None).await;

    // No runner has gpu and arm: that task waits, while the others run.
    let waiting = stack.run_workflow(both).await;
    for _ in 0..4 {
        let task = stack.run_workflow(gpu).await;
        assert_eq!(ran_under(&stack, task, &dirs).await, 1, "gpu task");
    }
    let task = stack.run_workflow(any).await;
    assert_ne!(ran_under(&stack, task, &dirs).await, 2, "unlabelled task");

    // The waiting task shows in its label set's queue.
    scrape_until(&stack.client, &stack.orchestrator_metrics(), |m| {
        m.get(
            "slipway_queue_messages_ready",
            &[("queue", "tasks.arm+gpu")],
        ) == Some(1.0)
    })
    .await;

    // A runner without the labels that claims the waiting task anyway (its
    // message id seen some other way) is refused, and the task still waits.
    let mut intruder = RunnerClient::new(&stack.grpc_url, None, &stack.token).expect("client");
    let refused = intruder
        .claim(
            waiting,
            "intruder",
            &Labels::parse_list("gpu").expect("labels"),
        )
        .await
        .expect_err("claim refused");
    assert_eq!(refused.0.code, ErrorCode::Conflict, "{refused}");
    assert!(refused.to_string().contains("lacks arm"), "{refused}");
    assert_eq!(stack.task(waiting).await["status"], "pending");

    // The runner that has both takes it.
    runner(&stack, "arm,gpu", arm_dir.path()).await;
    let task = stack
        .wait_task(waiting, DEADLINE, |t| t["status"] == "success")
        .await;
    assert_eq!(task["status"], "success", "{task:#}");
    assert_eq!(ran_under(&stack, waiting, &dirs).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_bad_labels_does_not_start() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut settings = stack.runner_settings();
    settings.runner_labels = "linux,GPU".to_owned();
    let err = runner::Runner::build(settings)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "SLIPWAY_RUNNER_LABELS: invalid label \"GPU\": use 1 to 32 characters a-z, 0-9, ., _ and -"
    );
}
