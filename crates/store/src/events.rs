//! alerts.md events, written in the transaction of the change they report.
//! The orchestrator's event relay publishes them to the broker and marks
//! them published once confirmed; an event id is unique, so delivery can be
//! at least once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::Result;
use crate::schema::{events, tasks, workflows};

/// An event to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub workflow_id: i64,
    pub task_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub environment: Option<&'a str>,
    pub summary: String,
    pub error: Option<&'a str>,
    /// `rolled_back`: why it ran.
    pub reason: Option<&'a str>,
    /// `rolled_back`: `succeeded` or `failed`.
    pub outcome: Option<&'a str>,
    /// A success after a failure (alerts.md: recoveries are always sent).
    pub recovery: bool,
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
    pub id: String,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub workflow_id: i64,
    pub workflow: String,
    pub workflow_version: i32,
    pub task_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub environment: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit: Option<String>,
    pub message: Option<String>,
    pub summary: String,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub outcome: Option<String>,
    pub recovery: bool,
    /// The W3C `traceparent` of the event's task, for the message's headers.
    pub trace_context: Option<String>,
}

type RecordTuple = (
    (
        String,
        String,
        DateTime<Utc>,
        i64,
        String,
        Option<i32>,
        i32,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    ),
    (
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
    ),
);

fn record(t: RecordTuple) -> EventRecord {
    let (
        (
            id,
            kind,
            at,
            workflow_id,
            workflow,
            task_version,
            live_version,
            task_id,
            deployment_id,
            environment,
            branch,
        ),
        (tag, commit, message, summary, error, reason, outcome, recovery, trace_context),
    ) = t;
    EventRecord {
        id,
        kind,
        at,
        workflow_id,
        workflow,
        workflow_version: task_version.unwrap_or(live_version),
        task_id,
        deployment_id,
        environment,
        branch,
        tag,
        commit,
        message,
        summary,
        error,
        reason,
        outcome,
        recovery,
        trace_context,
    }
}

/// Loads events joined with their workflow and task; the tokens after the
/// connection continue the query (filters, order, limit).
macro_rules! records {
    ($conn:expr, $($chain:tt)*) => {{
        let rows: Vec<RecordTuple> = events::table
            .inner_join(workflows::table.on(workflows::id.eq(events::workflow_id)))
            .left_join(tasks::table.on(tasks::id.nullable().eq(events::task_id)))
            $($chain)*
            .select((
                (
                    events::id,
                    events::kind,
                    events::created_at,
                    events::workflow_id,
                    workflows::name,
                    tasks::workflow_version.nullable(),
                    workflows::version,
                    events::task_id,
                    events::deployment_id,
                    events::environment,
                    events::branch,
                ),
                (
                    tasks::tag.nullable(),
                    tasks::commit_sha.nullable(),
                    tasks::message.nullable(),
                    events::summary,
                    events::error,
                    events::reason,
                    events::outcome,
                    events::recovery,
                    tasks::trace_context.nullable(),
                ),
            ))
            .load($conn)?;
        rows.into_iter().map(record).collect::<Vec<EventRecord>>()
    }};
}

/// The oldest events not yet confirmed by the broker, in the order written.
pub fn unpublished(conn: &mut PgConnection, limit: i64) -> Result<Vec<EventRecord>> {
    Ok(records!(
        conn,
        .filter(events::published_at.is_null())
        .order(events::seq.asc())
        .limit(limit)
    ))
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
    Ok(records!(conn, .filter(events::id.eq_any(ids))))
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
