//! The outbox: task ids waiting to be published to the task queue. A row is
//! written in the same transaction as the task (or its re-queue) and deleted
//! once the broker confirmed the message, so a task is never lost between the
//! database and the queue, only possibly published twice (claims are
//! idempotent).

use diesel::prelude::*;

use crate::Result;
use crate::schema::{outbox, tasks};

/// Queues `task_id` for publishing.
pub fn push(conn: &mut PgConnection, task_id: i64) -> Result<()> {
    diesel::insert_into(outbox::table)
        .values(outbox::task_id.eq(task_id))
        .execute(conn)?;
    Ok(())
}

/// Queues the tasks `ids` for publishing, in one statement.
pub fn push_many(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    let rows: Vec<_> = ids.iter().map(|id| outbox::task_id.eq(*id)).collect();
    if !rows.is_empty() {
        diesel::insert_into(outbox::table)
            .values(rows)
            .execute(conn)?;
    }
    Ok(())
}

/// An entry waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Entry {
    pub id: i64,
    pub task_id: i64,
    /// The task's W3C `traceparent`, for the message's headers.
    pub trace_context: Option<String>,
    /// The labels the task needs: which task queue it goes to.
    pub runs_on: String,
}

/// The oldest waiting entries.
pub fn oldest(conn: &mut PgConnection, limit: i64) -> Result<Vec<Entry>> {
    Ok(outbox::table
        .inner_join(tasks::table)
        .order(outbox::id.asc())
        .limit(limit)
        .select((
            outbox::id,
            outbox::task_id,
            tasks::trace_context,
            tasks::runs_on,
        ))
        .load(conn)?)
}

/// Removes entries the broker confirmed.
pub fn remove(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    diesel::delete(outbox::table.filter(outbox::id.eq_any(ids))).execute(conn)?;
    Ok(())
}
