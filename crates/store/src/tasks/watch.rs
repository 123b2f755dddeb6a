//! What the watchdog and the metrics ask of unfinished tasks: leases
//! renewed after an outage, the queues worth looking at, tasks re-queued or
//! flagged stuck, counts.

use super::*;

/// Gives every running task a full lease again: after the orchestrator was
/// away (restarted, or cut off from the database) longer than a lease,
/// runners could not heartbeat, and their tasks must not count as lost.
pub fn extend_running_leases(conn: &mut PgConnection, lease_until: DateTime<Utc>) -> Result<usize> {
    Ok(
        diesel::update(tasks::table.filter(tasks::status.eq(TaskStatus::Running.as_str())))
            .set(tasks::lease_expires_at.eq(lease_until))
            .execute(conn)?,
    )
}

/// The label sets (canonical forms) of the pending tasks that need labels:
/// the task queues worth looking at besides the unlabelled one.
pub fn pending_label_sets(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(tasks::table
        .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
        .filter(tasks::runs_on.ne(""))
        .select(tasks::runs_on)
        .distinct()
        .load(conn)?)
}

/// Queues again the tasks pending since before `waited_since` (and not
/// published again since then) that have no outbox entry: their message may
/// have been lost outside Slipway. Their wait (`queued_at`) goes on: this is
/// not a new one. Returns their ids.
pub fn republish_stale(conn: &mut PgConnection, waited_since: DateTime<Utc>) -> Result<Vec<i64>> {
    conn.transaction(|conn| {
        let stale: Vec<i64> = tasks::table
            .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
            .filter(tasks::queued_at.lt(waited_since))
            .filter(
                tasks::republished_at
                    .is_null()
                    .or(tasks::republished_at.lt(waited_since)),
            )
            .filter(diesel::dsl::not(diesel::dsl::exists(
                crate::schema::outbox::table.filter(crate::schema::outbox::task_id.eq(tasks::id)),
            )))
            .select(tasks::id)
            .for_update()
            .skip_locked()
            .load(conn)?;
        for id in &stale {
            outbox::push(conn, *id)?;
        }
        diesel::update(tasks::table.filter(tasks::id.eq_any(&stale)))
            .set(tasks::republished_at.eq(Utc::now()))
            .execute(conn)?;
        Ok(stale)
    })
}

/// Raises `task_stuck` for each task pending since before `waited_since`,
/// once per wait (a re-queue starts a new one). Returns their ids.
pub fn flag_stuck(conn: &mut PgConnection, waited_since: DateTime<Utc>) -> Result<Vec<i64>> {
    conn.transaction(|conn| {
        let stuck: Vec<TaskRow> = tasks::table
            .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
            .filter(tasks::queued_at.lt(waited_since))
            .filter(
                tasks::stuck_alerted_at
                    .is_null()
                    .or(tasks::stuck_alerted_at.lt(tasks::queued_at.nullable())),
            )
            .for_update()
            .skip_locked()
            .select(TaskRow::as_select())
            .load(conn)?;
        let now = Utc::now();
        for task in &stuck {
            let minutes = (now - task.queued_at).num_minutes();
            let summary = format!(
                "task {} has waited {minutes} min in pending: no runner takes it",
                task.id
            );
            task_event(conn, task, "task_stuck", summary, None, false)?;
            diesel::update(tasks::table.find(task.id))
                .set(tasks::stuck_alerted_at.eq(now))
                .execute(conn)?;
        }
        Ok(stuck.into_iter().map(|t| t.id).collect())
    })
}

/// How many tasks are pending and how many running (the partial index on
/// unfinished tasks answers this without reading finished ones).
pub fn count_unfinished(conn: &mut PgConnection) -> Result<Vec<(String, i64)>> {
    Ok(tasks::table
        .filter(tasks::status.eq_any([TaskStatus::Pending.as_str(), TaskStatus::Running.as_str()]))
        .group_by(tasks::status)
        .select((tasks::status, diesel::dsl::count_star()))
        .load(conn)?)
}

/// How many distinct runners hold a lease that has not run out at `now`.
pub fn busy_runners(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<i64> {
    Ok(tasks::table
        .filter(tasks::status.eq(TaskStatus::Running.as_str()))
        .filter(tasks::lease_expires_at.gt(now))
        .select(diesel::dsl::count(tasks::runner_id).aggregate_distinct())
        .first(conn)?)
}
