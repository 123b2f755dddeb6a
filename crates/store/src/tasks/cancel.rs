//! Cancelling tasks: a user's cancel, and the older tasks a newer one
//! supersedes under `concurrency.cancel_in_progress`.

use super::*;

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The task had not started: it is cancelled now.
    Now,
    /// The task is running: its runner is told at its next heartbeat.
    Requested,
}

/// Cancels a pending task, or asks the runner of a running one to stop.
pub fn cancel(conn: &mut PgConnection, id: i64) -> Result<Cancelled> {
    conn.transaction(|conn| {
        let task = lock(conn, id)?;
        match task.status()? {
            TaskStatus::Pending => {
                end(conn, &task, TaskEvent::Cancelled, None)?;
                Ok(Cancelled::Now)
            }
            TaskStatus::Running => {
                diesel::update(tasks::table.find(id))
                    .set(tasks::cancel_requested.eq(true))
                    .execute(conn)?;
                Ok(Cancelled::Requested)
            }
            finished => Err(Error::Conflict(format!("task {id} is already {finished}"))),
        }
    })
}

/// With `concurrency.cancel_in_progress`: cancels the older pending and
/// running tasks of `task`'s workflow for the same pull request (a pull
/// request task) or the same branch (any other build), saying which task
/// superseded them. Deploy-only tasks are left alone, and a running task is
/// asked to stop as by a cancel (its runner finishes a deploy it started).
/// Returns the ids of the tasks cancelled or asked to stop.
pub fn supersede_older(conn: &mut PgConnection, task_id: i64) -> Result<Vec<i64>> {
    conn.transaction(|conn| {
        let task = row(conn, task_id)?;
        let mut query = tasks::table
            .filter(tasks::workflow_id.eq(task.workflow_id))
            .filter(tasks::id.lt(task.id))
            .filter(
                tasks::status.eq_any([TaskStatus::Pending.as_str(), TaskStatus::Running.as_str()]),
            )
            .filter(tasks::deployment_id.is_null())
            .filter(tasks::cancel_requested.eq(false))
            .into_boxed();
        match (task.pull_request()?, &task.branch) {
            (Some(pr), _) => {
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "(pull_request->>'number')::bigint = ",
                    )
                    .bind::<diesel::sql_types::BigInt, _>(pr.number),
                );
            }
            (None, Some(branch)) => {
                query = query
                    .filter(tasks::branch.eq(branch))
                    .filter(tasks::pull_request.is_null());
            }
            (None, None) => return Ok(Vec::new()),
        }
        let older: Vec<i64> = query.select(tasks::id).order(tasks::id.asc()).load(conn)?;
        let why = format!("superseded by task {}", task.id);
        let mut done = Vec::with_capacity(older.len());
        for id in older {
            let old = lock(conn, id)?;
            match old.status()? {
                TaskStatus::Pending => {
                    end(conn, &old, TaskEvent::Cancelled, Some(&why))?;
                }
                TaskStatus::Running => {
                    diesel::update(tasks::table.find(id))
                        .set((tasks::cancel_requested.eq(true), tasks::error.eq(&why)))
                        .execute(conn)?;
                }
                _ => continue,
            }
            done.push(id);
        }
        Ok(done)
    })
}
