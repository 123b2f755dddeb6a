//! The transactions that change a task and its deployments together: a
//! task's end fails the deploys it still had under way, a deploy or a
//! rollback asked for by a person queues the deploy-only task that carries
//! it out, and a traffic report is checked against the lease of the task
//! deploying. Each runs in one transaction; the one-table work stays in
//! `tasks` and `deployments`, which do not know each other.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::plan::{Plan, Trigger};
use domain::state::{DeploymentEvent, DeploymentStatus, TaskEvent, TaskStatus};

use crate::deployments::{
    self, DeploymentRow, EnvironmentRow, NewDeployment, RollbackRow, Traffic,
};
use crate::schema::{deployments as deployment_rows, rollbacks, tasks as task_rows};
use crate::tasks::{self, NewTask, RUNNER_LOST, Source, StepChange, StepRow, TaskRow};
use crate::{Error, Result};

/// A task's end as committed: what metrics and callers look at.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The task after its end (status, start and finish times).
    pub task: TaskRow,
    /// The deployments it still had under way, failed by its end.
    pub deploys_failed: Vec<DeploymentRow>,
    /// The steps the end's own step changes changed.
    pub steps: Vec<StepRow>,
}

/// A runner's final word on a task it holds, after the step changes it had
/// not reported yet.
pub fn finish(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    steps: &[StepChange],
    event: TaskEvent,
    error: Option<&str>,
) -> Result<Ended> {
    conn.transaction(|conn| {
        let task = tasks::lock_leased(conn, id, token)?;
        let mut changed = Vec::with_capacity(steps.len());
        for change in steps {
            changed.extend(tasks::apply_step_change(conn, id, change)?);
        }
        let deploys_failed = deployments::fail_in_flight(
            conn,
            task.id,
            task.deployment_id,
            "the task ended during the deploy",
        )?;
        deployments::skip_waiting(conn, task.id, task.deployment_id)?;
        let task = tasks::end(conn, &task, event, error)?;
        Ok(Ended {
            task,
            deploys_failed,
            steps: changed,
        })
    })
}

/// What happened to a task whose runner stopped heartbeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Back in the queue, to run again from the start.
    Requeued,
    /// Failed with "runner lost": it had been re-queued before.
    Failed,
    /// A cancel had been requested: the task is cancelled.
    Cancelled,
}

/// Deals with every running task whose lease ran out before `now`: re-queued
/// while it has re-queues left, failed with "runner lost" after that.
/// Returns each with what happened to it, as committed.
pub fn expire_leases(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    max_requeues: i32,
) -> Result<Vec<(Ended, Expired)>> {
    conn.transaction(|conn| {
        let expired: Vec<TaskRow> = task_rows::table
            .filter(task_rows::status.eq(TaskStatus::Running.as_str()))
            .filter(task_rows::lease_expires_at.lt(now))
            .for_update()
            .skip_locked()
            .select(TaskRow::as_select())
            .load(conn)?;
        let mut outcomes = Vec::with_capacity(expired.len());
        for task in expired {
            let deploys_failed =
                deployments::fail_in_flight(conn, task.id, task.deployment_id, RUNNER_LOST)?;
            let ends = task.cancel_requested || task.requeues >= max_requeues;
            if ends {
                deployments::skip_waiting(conn, task.id, task.deployment_id)?;
            }
            let (task, outcome) = if task.cancel_requested {
                let task = tasks::end(conn, &task, TaskEvent::Cancelled, None)?;
                (task, Expired::Cancelled)
            } else if task.requeues < max_requeues {
                (tasks::requeue(conn, &task)?, Expired::Requeued)
            } else {
                let task = tasks::end(conn, &task, TaskEvent::Failed, Some(RUNNER_LOST))?;
                (task, Expired::Failed)
            };
            outcomes.push((
                Ended {
                    task,
                    deploys_failed,
                    steps: Vec::new(),
                },
                outcome,
            ));
        }
        Ok(outcomes)
    })
}

/// A runner's report, under the lease of the task doing a deploy, that a
/// routed environment's traffic moved or an old version of it stopped.
/// `deployment_id` must be one that task deploys (its own, or the one a
/// deploy-only task carries out); the others named, deployments of the same
/// environment. Returns the environment as it is now.
pub fn record_traffic(
    conn: &mut PgConnection,
    task_id: i64,
    token: &str,
    deployment_id: i64,
    traffic: &Traffic,
) -> Result<EnvironmentRow> {
    conn.transaction(|conn| {
        let task = tasks::lock_leased(conn, task_id, token)?;
        let deployment = deployments::get_row(conn, deployment_id)?;
        if deployment.task_id != Some(task.id) && task.deployment_id != Some(deployment.id) {
            return Err(Error::Invalid(format!(
                "deployment {deployment_id} is not deployed by task {task_id}"
            )));
        }
        deployments::switch_traffic(conn, &deployment, traffic)
    })
}

fn deploy_task(
    conn: &mut PgConnection,
    task: &TaskRow,
    deployment: &DeploymentRow,
    trigger: Trigger,
    trace_context: Option<&str>,
) -> Result<i64> {
    let source = Source {
        deployment_id: Some(deployment.id),
        ..Source::after(task, trigger)
    };
    let new = NewTask::following(task, source, trace_context);
    let plan = Plan::deploy_only([deployment.environment.as_str()]);
    tasks::create(conn, &new, &plan.names())
}

/// Deploys a task's image to `environment`: approves the deployment that
/// waits there for this task, or makes a new one (a re-deploy), and queues
/// the deploy-only task that carries it out, in the trace of
/// `trace_context`. Returns the deployment and the task's id.
pub fn request_deploy(
    conn: &mut PgConnection,
    task_id: i64,
    environment: &str,
    trace_context: Option<&str>,
) -> Result<(DeploymentRow, i64)> {
    conn.transaction(|conn| {
        let task = tasks::row(conn, task_id)?;
        let (Some(reference), Some(digest)) = (&task.image_reference, &task.image_digest) else {
            return Err(Error::Conflict(format!(
                "task {task_id} has no image to deploy"
            )));
        };
        deployments::lock_environment(conn, task.workflow_id, environment)?;
        let waiting: Option<DeploymentRow> = deployment_rows::table
            .filter(deployment_rows::task_id.eq(task_id))
            .filter(deployment_rows::environment.eq(environment))
            .filter(deployment_rows::status.eq(DeploymentStatus::AwaitingApproval.as_str()))
            .order(deployment_rows::id.desc())
            .for_update()
            .select(DeploymentRow::as_select())
            .first(conn)
            .optional()?;
        let deployment = match waiting {
            Some(d) => {
                let next = d.status()?.apply(DeploymentEvent::Approve)?;
                diesel::update(deployment_rows::table.find(d.id))
                    .set((
                        deployment_rows::status.eq(next.as_str()),
                        deployment_rows::trigger.eq("approval"),
                    ))
                    .returning(DeploymentRow::as_returning())
                    .get_result(conn)?
            }
            None => deployments::create(
                conn,
                &NewDeployment {
                    workflow_id: task.workflow_id,
                    task_id: Some(task_id),
                    environment: environment.to_owned(),
                    image: deployments::by_digest(reference, digest)?,
                    trigger: "manual".to_owned(),
                    auto: true,
                },
            )?,
        };
        let carrier = deploy_task(conn, &task, &deployment, Trigger::Deploy, trace_context)?;
        Ok((deployment, carrier))
    })
}

/// Rolls an environment back to `to`, or to its previous healthy
/// deployment: a new deployment of that version, carried out by a
/// deploy-only task (in the trace of `trace_context`), with a manual
/// rollback record. Returns the rollback, the deployment and the task's id.
pub fn request_rollback(
    conn: &mut PgConnection,
    workflow_id: i64,
    environment: &str,
    to: Option<i64>,
    trace_context: Option<&str>,
) -> Result<(RollbackRow, DeploymentRow, i64)> {
    conn.transaction(|conn| {
        let env = deployments::lock_environment(conn, workflow_id, environment)?;
        let Some(target_id) = to.or(env.previous_deployment_id) else {
            return Err(Error::Conflict(format!(
                "{environment} has no previous deployment to roll back to"
            )));
        };
        let target = deployments::get_row(conn, target_id)?;
        if target.workflow_id != workflow_id || target.environment != environment {
            return Err(Error::Conflict(format!(
                "deployment {target_id} is not a deployment of {environment}"
            )));
        }
        let healthy_once = matches!(target.status()?, DeploymentStatus::Succeeded);
        if !healthy_once {
            return Err(Error::Conflict(format!(
                "deployment {target_id} was never healthy"
            )));
        }
        let Some(target_task) = target.task_id else {
            return Err(Error::Conflict(format!(
                "deployment {target_id} has no task"
            )));
        };
        let task = tasks::row(conn, target_task)?;
        let deployment = deployments::create(
            conn,
            &NewDeployment {
                workflow_id,
                task_id: Some(target_task),
                environment: environment.to_owned(),
                image: target.image.clone(),
                trigger: "rollback".to_owned(),
                auto: true,
            },
        )?;
        let rollback: RollbackRow = diesel::insert_into(rollbacks::table)
            .values((
                rollbacks::workflow_id.eq(workflow_id),
                rollbacks::environment.eq(environment),
                rollbacks::from_deployment_id.eq(env.current_deployment_id),
                rollbacks::to_deployment_id.eq(target_id),
                rollbacks::reason.eq("manual"),
                rollbacks::status.eq("running"),
                rollbacks::via_deployment_id.eq(deployment.id),
            ))
            .returning(RollbackRow::as_returning())
            .get_result(conn)?;
        let carrier = deploy_task(conn, &task, &deployment, Trigger::Rollback, trace_context)?;
        Ok((rollback, deployment, carrier))
    })
}
