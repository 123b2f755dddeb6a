//! alerts.md events, written in the transaction of the change they report.
//! The orchestrator's event relay publishes them to the broker and marks
//! them published once confirmed; an event id is unique, so delivery can be
//! at least once.

use chrono::{DateTime, Utc};
use diesel::dsl;
use diesel::prelude::*;

use crate::Result;
use crate::schema::{events, tasks, workflows};

/// An event to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// The alerts.md event type, e.g. `task.failed`.
    pub kind: &'a str,
    /// The workflow whose notify rules decide where the event goes.
    pub workflow_id: i64,
    /// The task it reports on, if any; the event takes the task's branch.
    pub task_id: Option<i64>,
    /// The deployment it reports on, if any.
    pub deployment_id: Option<i64>,
    /// The deployment's environment, for deploy events.
    pub environment: Option<&'a str>,
    /// One line saying what happened.
    pub summary: String,
    /// Why it failed, for failures.
    pub error: Option<&'a str>,
    /// `rolled_back`: why it ran.
    pub reason: Option<&'a str>,
    /// `rolled_back`: `succeeded` or `failed`.
    pub outcome: Option<&'a str>,
    /// A success after a failure (alerts.md: recoveries are always sent).
    pub recovery: bool,
}

/// Records the `task_created` events of new tasks (id, workflow, branch)
/// in one statement.
pub fn tasks_created(conn: &mut PgConnection, created: &[(i64, i64, Option<&str>)]) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = created
        .iter()
        .map(|(task_id, workflow_id, branch)| {
            (
                events::id.eq(uuid::Uuid::new_v4().to_string()),
                events::kind.eq("task_created"),
                events::workflow_id.eq(*workflow_id),
                events::task_id.eq(Some(*task_id)),
                events::summary.eq(format!("task {task_id} queued")),
                events::branch.eq(*branch),
            )
        })
        .collect();
    diesel::insert_into(events::table)
        .values(rows)
        .execute(conn)?;
    Ok(())
}

/// Records an event; its branch is the task's, fixed now, since repeats
/// are counted per branch.
pub fn emit(conn: &mut PgConnection, event: &Event<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let branch: Option<String> = match event.task_id {
        Some(task_id) => tasks::table
            .find(task_id)
            .select(tasks::branch.nullable())
            .first::<Option<String>>(conn)
            .optional()?
            .flatten(),
        None => None,
    };
    diesel::insert_into(events::table)
        .values((
            events::id.eq(&id),
            events::kind.eq(event.kind),
            events::workflow_id.eq(event.workflow_id),
            events::task_id.eq(event.task_id),
            events::deployment_id.eq(event.deployment_id),
            events::environment.eq(event.environment),
            events::summary.eq(&event.summary),
            events::error.eq(event.error),
            events::branch.eq(branch),
            events::reason.eq(event.reason),
            events::outcome.eq(event.outcome),
            events::recovery.eq(event.recovery),
        ))
        .execute(conn)?;
    Ok(id)
}

/// An event with what it refers to, as the notifier needs it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Unique per event, so a consumer recognises a redelivered one.
    pub id: String,
    /// The alerts.md event type, e.g. `task.failed`.
    pub kind: String,
    /// When the event was written, shown in the message.
    pub at: DateTime<Utc>,
    /// The workflow whose notify rules decide where the event goes.
    pub workflow_id: i64,
    /// The workflow's name, for the message.
    pub workflow: String,
    /// The version whose notify rules apply: the task's when the event has
    /// a task, else the workflow's live version.
    pub workflow_version: i32,
    /// The task the event reports on, if any.
    pub task_id: Option<i64>,
    /// The deployment the event reports on, if any.
    pub deployment_id: Option<i64>,
    /// The deployment's environment, for deploy events.
    pub environment: Option<String>,
    /// The task's branch as it was when the event was written; repeats are
    /// counted per branch.
    pub branch: Option<String>,
    /// The task's tag, for tasks started by a tag push.
    pub tag: Option<String>,
    /// The task's commit SHA, for the message.
    pub commit: Option<String>,
    /// The task's commit message, for the message.
    pub message: Option<String>,
    /// One line saying what happened.
    pub summary: String,
    /// Why it failed, for failures.
    pub error: Option<String>,
    /// `rolled_back`: why it ran.
    pub reason: Option<String>,
    /// `rolled_back`: `succeeded` or `failed`.
    pub outcome: Option<String>,
    /// A success after a failure (alerts.md: recoveries are always sent).
    pub recovery: bool,
    /// The W3C `traceparent` of the event's task, for the message's headers.
    pub trace_context: Option<String>,
    /// The order events were written in.
    pub seq: i64,
    /// The trigger of the event's task.
    pub trigger: Option<String>,
    /// The event's task reports commit statuses to a forge.
    pub forge_statuses: bool,
}

/// An event row with the columns of its workflow and task that an
/// [`EventRecord`] carries.
#[derive(Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
struct EventRow {
    id: String,
    seq: i64,
    kind: String,
    created_at: DateTime<Utc>,
    workflow_id: i64,
    task_id: Option<i64>,
    deployment_id: Option<i64>,
    environment: Option<String>,
    branch: Option<String>,
    summary: String,
    error: Option<String>,
    reason: Option<String>,
    outcome: Option<String>,
    recovery: bool,
    #[diesel(embed)]
    workflow: EventWorkflow,
    /// `None` when the event has no task; the live version then applies.
    #[diesel(embed)]
    task: Option<EventTask>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = workflows, check_for_backend(diesel::pg::Pg))]
struct EventWorkflow {
    name: String,
    /// The live version, for events without a task.
    version: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
struct EventTask {
    /// The version the task ran, which may be older than the live one.
    workflow_version: i32,
    tag: Option<String>,
    commit_sha: Option<String>,
    message: Option<String>,
    trace_context: Option<String>,
    trigger: String,
    forge: Option<serde_json::Value>,
}

impl From<EventRow> for EventRecord {
    fn from(row: EventRow) -> Self {
        let task = row.task;
        EventRecord {
            id: row.id,
            kind: row.kind,
            at: row.created_at,
            workflow_id: row.workflow_id,
            workflow: row.workflow.name,
            workflow_version: task
                .as_ref()
                .map_or(row.workflow.version, |t| t.workflow_version),
            task_id: row.task_id,
            deployment_id: row.deployment_id,
            environment: row.environment,
            branch: row.branch,
            tag: task.as_ref().and_then(|t| t.tag.clone()),
            commit: task.as_ref().and_then(|t| t.commit_sha.clone()),
            message: task.as_ref().and_then(|t| t.message.clone()),
            summary: row.summary,
            error: row.error,
            reason: row.reason,
            outcome: row.outcome,
            recovery: row.recovery,
            seq: row.seq,
            trigger: task.as_ref().map(|t| t.trigger.clone()),
            forge_statuses: task.as_ref().is_some_and(|t| t.forge.is_some()),
            trace_context: task.and_then(|t| t.trace_context),
        }
    }
}

/// Events joined with their workflow and, when they have one, their task:
/// the rows an [`EventRow`] is selected from.
#[dsl::auto_type(no_type_alias)]
fn with_workflow_and_task() -> _ {
    events::table
        .inner_join(workflows::table.on(workflows::id.eq(events::workflow_id)))
        .left_join(tasks::table.on(tasks::id.nullable().eq(events::task_id)))
}

/// The oldest events not yet confirmed by the broker, in the order written.
pub fn unpublished(conn: &mut PgConnection, limit: i64) -> Result<Vec<EventRecord>> {
    let rows: Vec<EventRow> = with_workflow_and_task()
        .filter(events::published_at.is_null())
        .order(events::seq.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(EventRecord::from).collect())
}

/// Marks events the broker confirmed.
pub fn mark_published(conn: &mut PgConnection, ids: &[String]) -> Result<()> {
    diesel::update(events::table.filter(events::id.eq_any(ids)))
        .set(events::published_at.eq(Utc::now()))
        .execute(conn)?;
    Ok(())
}

/// The events with these ids, in no particular order.
pub fn by_ids(conn: &mut PgConnection, ids: &[String]) -> Result<Vec<EventRecord>> {
    let rows: Vec<EventRow> = with_workflow_and_task()
        .filter(events::id.eq_any(ids))
        .select(EventRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(EventRecord::from).collect())
}

/// The types of a task's events, oldest first (for tests).
pub fn kinds_for_task(conn: &mut PgConnection, task_id: i64) -> Result<Vec<String>> {
    Ok(events::table
        .filter(events::task_id.eq(task_id))
        .filter(events::deployment_id.is_null())
        .order(events::seq.asc())
        .select(events::kind)
        .load(conn)?)
}

/// The types of a deployment's events, oldest first (for tests and the API).
pub fn kinds_for_deployment(conn: &mut PgConnection, deployment_id: i64) -> Result<Vec<String>> {
    Ok(events::table
        .filter(events::deployment_id.eq(deployment_id))
        .order(events::seq.asc())
        .select(events::kind)
        .load(conn)?)
}
