//! Tasks and their steps: creation (with the outbox entry), the runner's
//! lease (claim, heartbeat, expiry), step updates, cancel and retry. Every
//! status change goes through `domain::state`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::labels::Labels;
use domain::plan::{StepKind, Trigger};
use domain::push::GitRef;
use domain::state::{StepEvent, StepStatus, TaskEvent, TaskStatus};

use crate::events::{self, Event};
use crate::schema::{steps, task_commits, tasks, workflows};
use crate::{Error, Result, logs, outbox};

mod cancel;
mod create;
mod watch;

pub use cancel::{Cancelled, cancel, supersede_older};
pub use create::{create, create_many, create_within};
pub use watch::{
    busy_runners, count_unfinished, extend_running_leases, flag_stuck, pending_label_sets,
    republish_stale,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: i64,
    pub workflow_id: i64,
    pub workflow_version: i32,
    pub status: String,
    pub trigger: String,
    pub attempt: i32,
    pub retry_of: Option<i64>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit_sha: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub delivery_id: Option<String>,
    pub error: Option<String>,
    pub requeues: i32,
    pub runner_id: Option<String>,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub queued_at: DateTime<Utc>,
    pub image_reference: Option<String>,
    pub image_digest: Option<String>,
    /// Set on a deploy-only task: the deployment it carries out.
    pub deployment_id: Option<i64>,
    /// The W3C `traceparent` of the call that created the task.
    pub trace_context: Option<String>,
    /// The runner labels the task needs, in their canonical form
    /// ([`domain::labels::Labels::key`]).
    pub runs_on: String,
    /// A pull request task's pull request ([`PullRequestInfo`] as JSON).
    pub pull_request: Option<serde_json::Value>,
    /// Where the task's commit statuses go ([`ForgeTarget`] as JSON).
    pub forge: Option<serde_json::Value>,
}

impl TaskRow {
    /// The pull request the task runs for, if any.
    pub fn pull_request(&self) -> Result<Option<PullRequestInfo>> {
        self.pull_request
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Corrupt(format!("task {} pull_request: {e}", self.id)))
    }

    /// Where the task's commit statuses go, if anywhere.
    pub fn forge(&self) -> Result<Option<ForgeTarget>> {
        self.forge
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Corrupt(format!("task {} forge: {e}", self.id)))
    }

    pub fn status(&self) -> Result<TaskStatus> {
        self.status
            .parse()
            .map_err(|e: domain::state::UnknownStatus| Error::Corrupt(e.to_string()))
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = steps)]
pub struct StepRow {
    pub task_id: i64,
    pub position: i32,
    pub name: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl StepRow {
    pub fn status(&self) -> Result<StepStatus> {
        self.status
            .parse()
            .map_err(|e: domain::state::UnknownStatus| Error::Corrupt(e.to_string()))
    }
}

/// A task with the name of its workflow and its steps in order.
#[derive(Debug, Clone)]
pub struct TaskDetail {
    pub task: TaskRow,
    pub workflow: String,
    pub steps: Vec<StepRow>,
}

/// What a new task is made of; built by [`NewTask::new`].
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tasks)]
pub struct NewTask {
    workflow_id: i64,
    workflow_version: i32,
    status: String,
    trigger: String,
    attempt: i32,
    retry_of: Option<i64>,
    branch: Option<String>,
    tag: Option<String>,
    commit_sha: Option<String>,
    message: Option<String>,
    author: Option<String>,
    delivery_id: Option<String>,
    deployment_id: Option<i64>,
    trace_context: Option<String>,
    runs_on: String,
    pull_request: Option<serde_json::Value>,
    forge: Option<serde_json::Value>,
    /// Kept in `task_commits`, once the task has its id.
    #[diesel(skip_insertion)]
    committed_at: Option<DateTime<Utc>>,
}

pub use crate::forges::{ForgeTarget, PullRequestInfo};

/// What starts a new task and for which commit: all that differs between
/// a push, a manual run, a `workflow_run`, a deploy, a rollback and a retry.
#[derive(Debug, Clone)]
pub struct Source {
    /// What started it; it decides the task's plan.
    pub trigger: Trigger,
    /// The branch the commit was pushed to, or run by hand.
    pub branch: Option<String>,
    /// The tag pushed, for a task of a tag (then `branch` is `None`).
    pub tag: Option<String>,
    /// `None` for a manual run of a branch: the runner resolves its head.
    pub commit_sha: Option<String>,
    /// The commit's message, shown with the task.
    pub message: Option<String>,
    /// The commit's author, shown with the task.
    pub author: Option<String>,
    /// When the commit was made, when the event said.
    pub committed_at: Option<DateTime<Utc>>,
    /// The webhook delivery that created it, for a push or `workflow_run`.
    pub delivery_id: Option<String>,
    /// The deployment a deploy or rollback task carries out.
    pub deployment_id: Option<i64>,
    /// 1, or one more than the task it retries.
    pub attempt: i32,
    /// The task it retries.
    pub retry_of: Option<i64>,
    /// The pull request it runs for (trigger `pull_request`).
    pub pull_request: Option<PullRequestInfo>,
    /// Where its commit statuses go; `None`: nowhere.
    pub forge: Option<ForgeTarget>,
}

impl Source {
    /// A first attempt at `git_ref` (none for a task without a ref).
    pub fn new(trigger: Trigger, git_ref: Option<GitRef>) -> Source {
        let (branch, tag) = match git_ref {
            Some(GitRef::Branch(b)) => (Some(b), None),
            Some(GitRef::Tag(t)) => (None, Some(t)),
            None => (None, None),
        };
        Source {
            trigger,
            branch,
            tag,
            commit_sha: None,
            message: None,
            author: None,
            committed_at: None,
            delivery_id: None,
            deployment_id: None,
            attempt: 1,
            retry_of: None,
            pull_request: None,
            forge: None,
        }
    }

    /// A task for the same commit as `task` (a deploy of its image, a
    /// retry); its statuses go where the task's went.
    pub fn after(task: &TaskRow, trigger: Trigger) -> Source {
        Source {
            pull_request: task.pull_request().ok().flatten(),
            forge: task.forge().ok().flatten(),
            trigger,
            branch: task.branch.clone(),
            tag: task.tag.clone(),
            commit_sha: task.commit_sha.clone(),
            message: task.message.clone(),
            author: task.author.clone(),
            committed_at: None,
            delivery_id: None,
            deployment_id: None,
            attempt: 1,
            retry_of: None,
        }
    }
}

impl NewTask {
    /// A task of the same workflow version as `task`, needing the same
    /// runner labels (a retry, a deploy of its image).
    pub fn following(task: &TaskRow, source: Source, trace_context: Option<&str>) -> NewTask {
        NewTask::new(
            task.workflow_id,
            task.workflow_version,
            task.runs_on.clone(),
            source,
            trace_context.map(str::to_owned),
        )
    }

    /// A pending task of a workflow version that needs the runner labels
    /// `runs_on` ([`Labels::key`]), joining the trace of `trace_context`
    /// (the W3C `traceparent` of the call creating it).
    pub fn new(
        workflow_id: i64,
        workflow_version: i32,
        runs_on: String,
        source: Source,
        trace_context: Option<String>,
    ) -> NewTask {
        NewTask {
            workflow_id,
            workflow_version,
            status: TaskStatus::Pending.as_str().to_owned(),
            trigger: source.trigger.as_str().to_owned(),
            attempt: source.attempt,
            retry_of: source.retry_of,
            branch: source.branch,
            tag: source.tag,
            commit_sha: source.commit_sha,
            message: source.message,
            author: source.author,
            delivery_id: source.delivery_id,
            deployment_id: source.deployment_id,
            trace_context,
            runs_on,
            pull_request: source
                .pull_request
                .and_then(|p| serde_json::to_value(p).ok()),
            forge: source.forge.and_then(|f| serde_json::to_value(f).ok()),
            committed_at: source.committed_at,
        }
    }
}

fn step_rows(conn: &mut PgConnection, task_id: i64) -> Result<Vec<StepRow>> {
    Ok(steps::table
        .filter(steps::task_id.eq(task_id))
        .order(steps::position.asc())
        .select(StepRow::as_select())
        .load(conn)?)
}

/// One task with its workflow's name and its steps.
pub fn get(conn: &mut PgConnection, id: i64) -> Result<TaskDetail> {
    let (task, workflow) = tasks::table
        .inner_join(workflows::table)
        .filter(tasks::id.eq(id))
        .select((TaskRow::as_select(), workflows::name))
        .first::<(TaskRow, String)>(conn)
        .optional()?
        .ok_or(Error::NotFound)?;
    let steps = step_rows(conn, id)?;
    Ok(TaskDetail {
        task,
        workflow,
        steps,
    })
}

/// Filters of the task list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub workflow_id: Option<i64>,
    pub status: Option<TaskStatus>,
    /// Only tasks with a smaller id (the previous page's last id).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Tasks, newest first, with their steps.
pub fn list(conn: &mut PgConnection, filter: &TaskFilter) -> Result<Vec<TaskDetail>> {
    let mut query = tasks::table
        .inner_join(workflows::table)
        .select((TaskRow::as_select(), workflows::name))
        .order(tasks::id.desc())
        .limit(filter.limit)
        .into_boxed();
    if let Some(workflow_id) = filter.workflow_id {
        query = query.filter(tasks::workflow_id.eq(workflow_id));
    }
    if let Some(status) = filter.status {
        query = query.filter(tasks::status.eq(status.as_str()));
    }
    if let Some(before) = filter.before {
        query = query.filter(tasks::id.lt(before));
    }
    let rows: Vec<(TaskRow, String)> = query.load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|(t, _)| t.id).collect();
    let mut all_steps: Vec<StepRow> = steps::table
        .filter(steps::task_id.eq_any(&ids))
        .order((steps::task_id.asc(), steps::position.asc()))
        .select(StepRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(task, workflow)| {
            let (mine, rest): (Vec<StepRow>, Vec<StepRow>) = std::mem::take(&mut all_steps)
                .into_iter()
                .partition(|s| s.task_id == task.id);
            all_steps = rest;
            TaskDetail {
                task,
                workflow,
                steps: mine,
            }
        })
        .collect())
}

/// One task's row.
pub(crate) fn row(conn: &mut PgConnection, id: i64) -> Result<TaskRow> {
    tasks::table
        .find(id)
        .select(TaskRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

fn lock(conn: &mut PgConnection, id: i64) -> Result<TaskRow> {
    tasks::table
        .find(id)
        .for_update()
        .select(TaskRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

/// Locks a task whose lease `token` is still held (status running).
pub(crate) fn lock_leased(conn: &mut PgConnection, id: i64, token: &str) -> Result<TaskRow> {
    let task = lock(conn, id).map_err(|e| match e {
        Error::NotFound => Error::LeaseLost,
        other => other,
    })?;
    if task.lease_token.as_deref() != Some(token) || task.status()? != TaskStatus::Running {
        return Err(Error::LeaseLost);
    }
    Ok(task)
}

/// Checks that `task_id` is held with `token`, for deploy reports made
/// under a task's lease.
pub fn check_lease(conn: &mut PgConnection, task_id: i64, token: &str) -> Result<()> {
    conn.transaction(|conn| lock_leased(conn, task_id, token).map(|_| ()))
}

/// The workflow of a task, for deployments created under its lease.
pub fn workflow_of(conn: &mut PgConnection, task_id: i64) -> Result<i64> {
    tasks::table
        .find(task_id)
        .select(tasks::workflow_id)
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

/// Gives the lease on a pending task to a runner with `labels`. A runner
/// lacking one of the task's labels got the message by mistake (queues are
/// per label set): it is refused with `Conflict`, and the task is queued
/// again for its own queue.
pub fn claim(
    conn: &mut PgConnection,
    id: i64,
    runner_id: &str,
    labels: &Labels,
    token: &str,
    lease_until: DateTime<Utc>,
) -> Result<TaskRow> {
    conn.transaction(|conn| -> Result<Result<TaskRow>> {
        let task = lock(conn, id)?;
        let status = task.status()?;
        let needed = Labels::from_key(&task.runs_on).map_err(|e| Error::Corrupt(e.to_string()))?;
        let missing = needed.missing_from(labels);
        if status == TaskStatus::Pending && !missing.is_empty() {
            outbox::push(conn, id)?;
            return Ok(Err(Error::Conflict(format!(
                "task {id} needs runner labels {needed}; runner {runner_id} lacks {}",
                missing.join(", ")
            ))));
        }
        let next = status.apply(TaskEvent::Claimed)?;
        let now = Utc::now();
        let row = diesel::update(tasks::table.find(id))
            .set((
                tasks::status.eq(next.as_str()),
                tasks::runner_id.eq(runner_id),
                tasks::lease_token.eq(token),
                tasks::lease_expires_at.eq(lease_until),
                tasks::started_at.eq(now),
            ))
            .returning(TaskRow::as_returning())
            .get_result(conn)?;
        let summary = format!("task {id} started on runner {runner_id}");
        task_event(conn, &row, "task_started", summary, None, false)?;
        Ok(Ok(row))
    })?
}

/// Extends a held lease; returns whether a cancel was requested.
pub fn heartbeat(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    lease_until: DateTime<Utc>,
) -> Result<bool> {
    let cancel: Option<bool> = diesel::update(
        tasks::table
            .find(id)
            .filter(tasks::lease_token.eq(token))
            .filter(tasks::status.eq(TaskStatus::Running.as_str())),
    )
    .set(tasks::lease_expires_at.eq(lease_until))
    .returning(tasks::cancel_requested)
    .get_result(conn)
    .optional()?;
    cancel.ok_or(Error::LeaseLost)
}

/// Records the commit a runner resolved (manual runs name only a branch).
pub fn set_commit(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    commit: &ClonedCommit,
) -> Result<()> {
    conn.transaction(|conn| {
        let task = lock_leased(conn, id, token)?;
        // What the event said stays: the clone only fills what it left out.
        diesel::update(tasks::table.find(id))
            .set((
                tasks::commit_sha.eq(&commit.sha),
                tasks::message.eq(task.message.or_else(|| commit.message.clone())),
                tasks::author.eq(task.author.or_else(|| commit.author.clone())),
            ))
            .execute(conn)?;
        if let Some(at) = commit.committed_at {
            record_commit_time(conn, id, at)?;
        }
        Ok(())
    })
}

/// Records when the task's commit was made, unless it is known already.
fn record_commit_time(conn: &mut PgConnection, task_id: i64, at: DateTime<Utc>) -> Result<()> {
    diesel::insert_into(task_commits::table)
        .values((
            task_commits::task_id.eq(task_id),
            task_commits::committed_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// What a runner read from the commit it checked out.
#[derive(Debug, Clone, Default)]
pub struct ClonedCommit {
    pub sha: String,
    pub message: Option<String>,
    pub author: Option<String>,
    pub committed_at: Option<DateTime<Utc>>,
}

/// Records the image a runner built and pushed for the task it holds.
pub fn set_image(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    reference: &str,
    digest: &str,
) -> Result<()> {
    conn.transaction(|conn| {
        lock_leased(conn, id, token)?;
        diesel::update(tasks::table.find(id))
            .set((
                tasks::image_reference.eq(reference),
                tasks::image_digest.eq(digest),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// The image (`repository@digest`) of the workflow's newest task that
/// reported one: what its next build can reuse the layers of. Tasks that
/// pushed nothing (pull requests, failed builds, deploys) do not count.
pub fn latest_image(conn: &mut PgConnection, workflow_id: i64) -> Result<Option<String>> {
    let newest: Option<(Option<String>, Option<String>)> = tasks::table
        .filter(tasks::workflow_id.eq(workflow_id))
        .filter(tasks::image_reference.is_not_null())
        .filter(tasks::image_digest.is_not_null())
        .order(tasks::id.desc())
        .select((tasks::image_reference, tasks::image_digest))
        .first(conn)
        .optional()?;
    match newest {
        Some((Some(reference), Some(digest))) => {
            crate::deployments::by_digest(&reference, &digest).map(Some)
        }
        _ => Ok(None),
    }
}

/// How a step changed, as a runner reports it.
#[derive(Debug, Clone)]
pub struct StepChange {
    pub position: i32,
    pub event: StepEvent,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// When the runner saw it; the orchestrator's time of the report
    /// without it.
    pub at: Option<DateTime<Utc>>,
}

/// Where a step event leads.
fn target(event: StepEvent) -> StepStatus {
    match event {
        StepEvent::Started => StepStatus::Running,
        StepEvent::Succeeded => StepStatus::Success,
        StepEvent::Failed => StepStatus::Failed,
        StepEvent::Skipped => StepStatus::Skipped,
        StepEvent::Cancelled => StepStatus::Cancelled,
        StepEvent::Reset => StepStatus::Pending,
    }
}

/// Applies a runner's step changes, in order, under its lease and in one
/// transaction; returns each step changed, as it is now.
pub fn update_steps(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    changes: &[StepChange],
) -> Result<Vec<StepRow>> {
    conn.transaction(|conn| {
        lock_leased(conn, id, token)?;
        let mut changed = Vec::with_capacity(changes.len());
        for change in changes {
            changed.extend(apply_step_change(conn, id, change)?);
        }
        Ok(changed)
    })
}

/// One step change, under a lease already locked.
pub(crate) fn apply_step_change(
    conn: &mut PgConnection,
    id: i64,
    change: &StepChange,
) -> Result<Option<StepRow>> {
    let step: StepRow = steps::table
        .find((id, change.position))
        .select(StepRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)?;
    let current = step.status()?;
    // A report repeated after a lost answer changes nothing.
    if current == target(change.event) && current != StepStatus::Pending {
        return Ok(None);
    }
    let next = current.apply(change.event)?;
    // The runner's clock when it saw the change, never past ours, and a
    // step never ends before it started.
    let now = Utc::now();
    let at = change.at.map_or(now, |at| at.min(now));
    let started_at = match change.event {
        StepEvent::Started => Some(at),
        _ => step.started_at,
    };
    let finished_at = next
        .is_finished()
        .then(|| started_at.map_or(at, |started| at.max(started)));
    let row = diesel::update(steps::table.find((id, change.position)))
        .set((
            steps::status.eq(next.as_str()),
            steps::exit_code.eq(change.exit_code),
            steps::error.eq(&change.error),
            steps::started_at.eq(started_at),
            steps::finished_at.eq(finished_at),
        ))
        .returning(StepRow::as_returning())
        .get_result(conn)?;
    Ok(Some(row))
}

/// Appends to a step's log under the task's lease.
pub fn append_log(
    conn: &mut PgConnection,
    id: i64,
    token: &str,
    position: i32,
    data: &[u8],
) -> Result<()> {
    // One transaction with the row shared-locked, so a re-queue (which
    // clears the log) cannot fall between the lease check and the insert.
    conn.transaction(|conn| {
        let held: Option<i64> = tasks::table
            .find(id)
            .filter(tasks::lease_token.eq(token))
            .filter(tasks::status.eq(TaskStatus::Running.as_str()))
            .select(tasks::id)
            .for_share()
            .first(conn)
            .optional()?;
        if held.is_none() {
            return Err(Error::LeaseLost);
        }
        logs::append(conn, id, position, data)
    })
}

fn task_event(
    conn: &mut PgConnection,
    task: &TaskRow,
    kind: &str,
    summary: String,
    error: Option<&str>,
    recovery: bool,
) -> Result<()> {
    events::emit(
        conn,
        &Event {
            kind,
            workflow_id: task.workflow_id,
            task_id: Some(task.id),
            summary,
            error,
            recovery,
            ..Event::default()
        },
    )?;
    Ok(())
}

/// Whether the task ending in success follows a failure: the last task of
/// the same workflow and branch (or tag) that finished before it failed.
fn recovers(conn: &mut PgConnection, task: &TaskRow) -> Result<bool> {
    let mut query = tasks::table
        .filter(tasks::workflow_id.eq(task.workflow_id))
        .filter(tasks::id.ne(task.id))
        .filter(tasks::deployment_id.is_null())
        .filter(tasks::status.eq_any([TaskStatus::Success.as_str(), TaskStatus::Failed.as_str()]))
        .into_boxed();
    query = match (&task.branch, &task.tag) {
        (Some(b), _) => query.filter(tasks::branch.eq(b)),
        (None, Some(t)) => query.filter(tasks::tag.eq(t)),
        (None, None) => return Ok(false),
    };
    let last: Option<String> = query
        .order(tasks::finished_at.desc().nulls_last())
        .select(tasks::status)
        .first(conn)
        .optional()?;
    Ok(last.as_deref() == Some(TaskStatus::Failed.as_str()))
}

/// The event of a task's end (alerts.md). A failure of a deploy step has
/// its own deploy events, and a lost runner its `runner_lost`, so neither
/// is a `build_failed`.
fn end_event(
    conn: &mut PgConnection,
    task: &TaskRow,
    status: TaskStatus,
    error: Option<&str>,
) -> Result<()> {
    let id = task.id;
    match status {
        TaskStatus::Success => {
            let recovery = recovers(conn, task)?;
            let summary = format!("task {id} succeeded");
            task_event(conn, task, "task_succeeded", summary, None, recovery)
        }
        TaskStatus::Cancelled => {
            let summary = format!("task {id} was cancelled");
            task_event(conn, task, "task_cancelled", summary, None, false)
        }
        TaskStatus::Failed if error == Some(RUNNER_LOST) => {
            let runner = task.runner_id.as_deref().unwrap_or("?");
            let summary = format!("runner {runner} stopped heartbeating; task {id} failed");
            task_event(conn, task, "runner_lost", summary, error, false)
        }
        TaskStatus::Failed => {
            let failed: Option<String> = steps::table
                .filter(steps::task_id.eq(id))
                .filter(steps::status.eq(StepStatus::Failed.as_str()))
                .order(steps::position.asc())
                .select(steps::name)
                .first(conn)
                .optional()?;
            let summary = match failed.as_deref().map(|name| (StepKind::of(name), name)) {
                Some((StepKind::Deploy, _)) => return Ok(()),
                Some((StepKind::Clone, _)) => format!("task {id}: the clone failed"),
                Some((StepKind::Image, _)) => format!("task {id}: the image build or push failed"),
                Some((StepKind::Run, step)) => format!("task {id}: step {step} failed"),
                None => format!("task {id} failed before it ran"),
            };
            // The failed step travels as the event's reason: the commit
            // status names it.
            events::emit(
                conn,
                &Event {
                    kind: "build_failed",
                    workflow_id: task.workflow_id,
                    task_id: Some(task.id),
                    summary,
                    error,
                    reason: failed.as_deref(),
                    ..Event::default()
                },
            )?;
            Ok(())
        }
        TaskStatus::Pending | TaskStatus::Running => Ok(()),
    }
}

/// Ends a task: its status, its error, and every step that never ran marked
/// skipped (a running one cancelled), so nothing stays pending or running.
/// Returns the task as it is now.
pub(crate) fn end(
    conn: &mut PgConnection,
    task: &TaskRow,
    event: TaskEvent,
    error: Option<&str>,
) -> Result<TaskRow> {
    let next = task.status()?.apply(event)?;
    // A task superseded while it ran keeps saying so.
    let error = match (next, task.error.as_deref()) {
        (TaskStatus::Cancelled, Some(why)) if task.cancel_requested => Some(why),
        _ => error,
    };
    let now = Utc::now();
    let ended = diesel::update(tasks::table.find(task.id))
        .set((
            tasks::status.eq(next.as_str()),
            tasks::error.eq(error),
            tasks::finished_at.eq(now),
            tasks::lease_token.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .returning(TaskRow::as_returning())
        .get_result(conn)?;
    for step in step_rows(conn, task.id)? {
        let event = match step.status()? {
            StepStatus::Pending => StepEvent::Skipped,
            StepStatus::Running => StepEvent::Cancelled,
            _ => continue,
        };
        let status = step.status()?.apply(event)?;
        diesel::update(steps::table.find((task.id, step.position)))
            .set((
                steps::status.eq(status.as_str()),
                steps::finished_at.eq(now),
            ))
            .execute(conn)?;
    }
    end_event(conn, task, next, error)?;
    Ok(ended)
}

/// A new task for the same commit and workflow version, one attempt later,
/// in the trace of `trace_context` (the retry call's, not the first task's).
pub fn retry(conn: &mut PgConnection, id: i64, trace_context: Option<&str>) -> Result<i64> {
    conn.transaction(|conn| {
        let task = lock(conn, id)?;
        let status = task.status()?;
        if !matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return Err(Error::Conflict(format!(
                "only a failed or cancelled task can be retried; task {id} is {status}"
            )));
        }
        // The same steps as before, whatever the workflow's plan is now.
        let names: Vec<String> = step_rows(conn, id)?.into_iter().map(|s| s.name).collect();
        let trigger = Trigger::parse(&task.trigger)
            .ok_or_else(|| Error::Corrupt(format!("unknown trigger {:?}", task.trigger)))?;
        let source = Source {
            delivery_id: task.delivery_id.clone(),
            attempt: task.attempt + 1,
            retry_of: Some(id),
            ..Source::after(&task, trigger)
        };
        let new = NewTask::following(&task, source, trace_context);
        create(conn, &new, &names)
    })
}

pub(crate) fn requeue(conn: &mut PgConnection, task: &TaskRow) -> Result<TaskRow> {
    let next = task.status()?.apply(TaskEvent::Requeued)?;
    let requeued = diesel::update(tasks::table.find(task.id))
        .set((
            tasks::status.eq(next.as_str()),
            tasks::requeues.eq(task.requeues + 1),
            tasks::queued_at.eq(Utc::now()),
            tasks::runner_id.eq(None::<String>),
            tasks::lease_token.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .returning(TaskRow::as_returning())
        .get_result(conn)?;
    let runner = task.runner_id.as_deref().unwrap_or("?");
    let summary = format!(
        "runner {runner} stopped heartbeating; task {} runs again from the start",
        task.id
    );
    events::emit(
        conn,
        &Event {
            kind: "runner_lost",
            workflow_id: task.workflow_id,
            task_id: Some(task.id),
            summary,
            error: Some(RUNNER_LOST),
            outcome: Some("requeued"),
            ..Event::default()
        },
    )?;
    for step in step_rows(conn, task.id)? {
        let status = step.status()?.apply(StepEvent::Reset)?;
        diesel::update(steps::table.find((task.id, step.position)))
            .set((
                steps::status.eq(status.as_str()),
                steps::exit_code.eq(None::<i32>),
                steps::error.eq(None::<String>),
                steps::started_at.eq(None::<DateTime<Utc>>),
                steps::finished_at.eq(None::<DateTime<Utc>>),
            ))
            .execute(conn)?;
    }
    logs::clear(conn, task.id)?;
    logs::append(
        conn,
        task.id,
        0,
        b"runner lost: the task was re-queued and runs again from the start\n",
    )?;
    outbox::push(conn, task.id)?;
    Ok(requeued)
}

/// The error of a task whose runner was lost for good.
pub const RUNNER_LOST: &str = "runner lost";

/// Marks a pending task failed before it ran (its definition or secrets
/// could not be loaded).
pub fn fail_pending(conn: &mut PgConnection, id: i64, error: &str) -> Result<()> {
    conn.transaction(|conn| {
        let task = lock(conn, id)?;
        let status = task.status()?;
        if status != TaskStatus::Pending {
            return Err(Error::Conflict(format!(
                "task {id} is {status}, not pending"
            )));
        }
        end(conn, &task, TaskEvent::Failed, Some(error))?;
        Ok(())
    })
}

/// Whether a task has finished, and how.
pub fn status(conn: &mut PgConnection, id: i64) -> Result<TaskStatus> {
    let status: String = tasks::table
        .find(id)
        .select(tasks::status)
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)?;
    status
        .parse()
        .map_err(|e: domain::state::UnknownStatus| Error::Corrupt(e.to_string()))
}
