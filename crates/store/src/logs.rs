//! Task logs, stored as the chunks runners sent (already masked), in order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::Result;
use crate::schema::log_chunks;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = log_chunks)]
pub struct LogChunk {
    pub id: i64,
    pub position: i32,
    pub data: Vec<u8>,
    /// When the orchestrator stored it: the time its lines are shown with.
    pub created_at: DateTime<Utc>,
}

/// Appends a chunk to a step's log.
pub fn append(conn: &mut PgConnection, task_id: i64, position: i32, data: &[u8]) -> Result<()> {
    diesel::insert_into(log_chunks::table)
        .values((
            log_chunks::task_id.eq(task_id),
            log_chunks::position.eq(position),
            log_chunks::data.eq(data),
        ))
        .execute(conn)?;
    Ok(())
}

/// The chunks after `after_id` (0: from the start), oldest first.
pub fn after(
    conn: &mut PgConnection,
    task_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<LogChunk>> {
    Ok(log_chunks::table
        .filter(log_chunks::task_id.eq(task_id))
        .filter(log_chunks::id.gt(after_id))
        .order(log_chunks::id.asc())
        .limit(limit)
        .select(LogChunk::as_select())
        .load(conn)?)
}

/// Drops a task's log, when the task is re-queued and runs again.
pub fn clear(conn: &mut PgConnection, task_id: i64) -> Result<()> {
    diesel::delete(log_chunks::table.filter(log_chunks::task_id.eq(task_id))).execute(conn)?;
    Ok(())
}
