//! A task's end as a runner reports it, with the step changes it had not
//! reported yet: they are stored first, in order and with the times they
//! happened, in the end's transaction; an end that is refused stores none
//! of them.

use test_support::{Options, Stack, claim, step, step_time};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_step_changes_are_stored_with_the_end_or_not_at_all() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let mut runner = stack.runner_api();
    let id = stack
        .create_workflow(
            "name: w\nrepo: file:///srv/git/w.git\nsteps:\n  - name: s\n    run: \"true\"\n",
        )
        .await;
    let task_id = stack.run_workflow(id).await;
    let lease = claim(&mut runner, task_id, &[]).await;

    // The clone and the step, each started and ended a few milliseconds
    // apart, a second ago.
    let base =
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() - 1000)
            .expect("a time");
    let at = |ms: i64| Some(proto::timestamp(base + chrono::Duration::milliseconds(ms)));
    let change = |position: i32, status: &str, ms: i64| proto::UpdateStepRequest {
        lease: None,
        position,
        status: status.to_owned(),
        exit_code: (status == "success").then_some(0),
        error: None,
        at: at(ms),
    };
    let steps = vec![
        change(0, "running", 0),
        change(0, "success", 5),
        change(1, "running", 6),
        change(1, "success", 9),
    ];
    let end = |lease: proto::LeaseRef| proto::FinishTaskRequest {
        lease: Some(lease),
        status: "success".to_owned(),
        error: None,
        steps: steps.clone(),
    };

    let wrong = proto::LeaseRef {
        task_id,
        lease_token: "not-the-lease".to_owned(),
    };
    let refused = runner.finish_task(end(wrong)).await.expect_err("refused");
    assert_ne!(refused.code(), Code::Ok);
    let task = stack.task(task_id).await;
    assert_eq!(task["status"], "running", "{task:#}");
    for name in ["clone", "s"] {
        assert_eq!(step(&task, name)["status"], "pending", "{task:#}");
    }

    runner.finish_task(end(lease)).await.expect("finish");
    let task = stack.task(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let time = |name: &str, field: &str| step_time(&task, name, field);
    for name in ["clone", "s"] {
        assert_eq!(step(&task, name)["status"], "success", "{task:#}");
    }
    assert_eq!(time("clone", "started_at"), base);
    assert_eq!(
        time("clone", "finished_at"),
        base + chrono::Duration::milliseconds(5)
    );
    assert_eq!(
        time("s", "started_at"),
        base + chrono::Duration::milliseconds(6)
    );
    assert_eq!(
        time("s", "finished_at"),
        base + chrono::Duration::milliseconds(9)
    );
}
