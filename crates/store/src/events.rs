//! alerts.md events, written in the transaction of the change they report.
//! The notifier takes them from here; an event id is unique, so delivery can
//! be at least once.

use diesel::prelude::*;

use crate::Result;
use crate::schema::events;

/// An event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub workflow_id: i64,
    pub task_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub environment: Option<&'a str>,
    pub summary: String,
    pub error: Option<&'a str>,
}

pub fn emit(conn: &mut PgConnection, event: &Event<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
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
        ))
        .execute(conn)?;
    Ok(id)
}

/// The types of a deployment's events, oldest first (for tests and the API).
pub fn kinds_for_deployment(conn: &mut PgConnection, deployment_id: i64) -> Result<Vec<String>> {
    Ok(events::table
        .filter(events::deployment_id.eq(deployment_id))
        .order(events::created_at.asc())
        .select(events::kind)
        .load(conn)?)
}
