//! Which task workspaces a runner may remove after a crash. A workspace is
//! named after its task and the first characters of the lease it ran
//! under; runners of one host may share the data directory, so the answer
//! comes from the task's record, never from the workspace's age.

use diesel::prelude::*;
use domain::state::TaskStatus;

use crate::Result;
use crate::schema::tasks;

/// A workspace found on disk: its task and the start of its lease token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub task_id: i64,
    pub lease_prefix: String,
}

/// The workspaces of `found` whose task no longer runs under their lease:
/// the task is gone, finished, or holds another lease (it was re-queued,
/// or another runner took it).
pub fn stale(conn: &mut PgConnection, found: &[Workspace]) -> Result<Vec<Workspace>> {
    let ids: Vec<i64> = found.iter().map(|w| w.task_id).collect();
    let rows: Vec<(i64, String, Option<String>)> = tasks::table
        .filter(tasks::id.eq_any(&ids))
        .select((tasks::id, tasks::status, tasks::lease_token))
        .load(conn)?;
    Ok(found
        .iter()
        .filter(|w| {
            let Some((_, status, token)) = rows.iter().find(|(id, _, _)| *id == w.task_id) else {
                return true;
            };
            let running = status.parse::<TaskStatus>().ok() == Some(TaskStatus::Running);
            // An empty prefix never names a lease.
            let same_lease = !w.lease_prefix.is_empty()
                && token
                    .as_deref()
                    .is_some_and(|t| t.starts_with(&w.lease_prefix));
            !(running && same_lease)
        })
        .cloned()
        .collect())
}
