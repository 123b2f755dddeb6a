//! Pull requests and commit statuses (forges.md): what a task records about
//! its pull request and its forge, and the statuses sent there. One status
//! per event and context; per commit and context they go out in the order
//! of their events, and one older than a status already delivered is
//! superseded, never sent. A notifier claims a due status by moving its
//! `next_attempt_at` forward, as it does deliveries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use serde::{Deserialize, Serialize};

use crate::schema::{commit_statuses, events, tasks};
use crate::{Error, Result};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const SUPERSEDED: &str = "superseded";

/// The pull request a task runs for, as `GET /api/tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestInfo {
    pub number: i64,
    pub title: String,
    pub url: String,
    /// `<owner>:<branch>` for a fork.
    pub source_branch: String,
    pub target_branch: String,
    pub fork: bool,
    /// The ref its head is fetched from (`refs/pull/<n>/head`,
    /// `refs/merge-requests/<iid>/head`).
    #[serde(default)]
    pub fetch_ref: String,
}

/// Where a task's commit statuses go and whose credentials clone it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeTarget {
    /// `github` or `gitlab`.
    pub forge: String,
    /// GitHub: `owner/name`; GitLab: the project id or its path.
    pub repo: String,
    /// GitLab: the project's page, whose origin is the API base when none
    /// is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    /// GitHub: the App installation that sent the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = commit_statuses)]
pub struct StatusRow {
    pub id: i64,
    pub event_id: String,
    pub task_id: i64,
    pub seq: i64,
    pub context: String,
    pub state: String,
    pub description: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A status an event sets.
#[derive(Debug, Clone)]
pub struct NewStatus {
    pub context: String,
    pub state: String,
    pub description: String,
}

/// A status handed to a notifier, with where it goes.
#[derive(Debug, Clone)]
pub struct ClaimedStatus {
    pub status: StatusRow,
    pub sha: String,
    pub forge: ForgeTarget,
}

/// One attempt at sending a status: as for an alert's delivery.
pub use crate::alerts::Attempt;

/// Records the statuses an event sets (once per event and context; the
/// event's task must report to a forge) and claims those of them due now.
pub fn open(
    conn: &mut PgConnection,
    event_id: &str,
    statuses: &[NewStatus],
    claim: Duration,
) -> Result<Vec<ClaimedStatus>> {
    conn.transaction(|conn| {
        let (task_id, seq): (Option<i64>, i64) = events::table
            .find(event_id)
            .select((events::task_id, events::seq))
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        let task_id =
            task_id.ok_or_else(|| Error::Invalid(format!("event {event_id} has no task")))?;
        let forge: Option<serde_json::Value> = tasks::table
            .find(task_id)
            .select(tasks::forge)
            .first(conn)?;
        if forge.is_none() {
            return Err(Error::Invalid(format!(
                "task {task_id} does not report commit statuses"
            )));
        }
        let rows: Vec<_> = statuses
            .iter()
            .map(|s| {
                (
                    commit_statuses::event_id.eq(event_id),
                    commit_statuses::task_id.eq(task_id),
                    commit_statuses::seq.eq(seq),
                    commit_statuses::context.eq(&s.context),
                    commit_statuses::state.eq(&s.state),
                    commit_statuses::description.eq(&s.description),
                )
            })
            .collect();
        diesel::insert_into(commit_statuses::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)?;
        Ok(())
    })?;
    claim_due(conn, Some(event_id), 100, claim)
}

/// Claims statuses due for an attempt: per commit and context the oldest
/// one not yet done, oldest first. Statuses older than one already
/// delivered for their commit and context are marked superseded first.
pub fn claim_due(
    conn: &mut PgConnection,
    only_event: Option<&str>,
    limit: i64,
    claim: Duration,
) -> Result<Vec<ClaimedStatus>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let claim_ms = i64::try_from(claim.as_millis()).unwrap_or(i64::MAX);
    let ids: Vec<Id> = conn.transaction(|conn| {
        diesel::sql_query(SUPERSEDE).execute(conn)?;
        diesel::sql_query(CLAIM)
            .bind::<Nullable<Text>, _>(only_event)
            .bind::<BigInt, _>(limit)
            .bind::<BigInt, _>(claim_ms)
            .load(conn)
    })?;
    let ids: Vec<i64> = ids.into_iter().map(|i| i.id).collect();
    let rows: Vec<(StatusRow, Option<String>, Option<serde_json::Value>)> = commit_statuses::table
        .inner_join(tasks::table)
        .filter(commit_statuses::id.eq_any(&ids))
        .order(commit_statuses::seq.asc())
        .select((StatusRow::as_select(), tasks::commit_sha, tasks::forge))
        .load(conn)?;
    rows.into_iter()
        .map(|(status, sha, forge)| {
            let corrupt = || {
                Error::Corrupt(format!(
                    "commit status {} lost its task's commit or forge",
                    status.id
                ))
            };
            let sha = sha.ok_or_else(corrupt)?;
            let forge = forge
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| Error::Corrupt(e.to_string()))?
                .ok_or_else(corrupt)?;
            Ok(ClaimedStatus { status, sha, forge })
        })
        .collect()
}

/// Marks pending statuses older than a delivered one of the same key (the
/// task's forge, repository and commit, and the context) superseded.
const SUPERSEDE: &str = "
    UPDATE commit_statuses s SET status = 'superseded'
    FROM tasks t
    WHERE s.task_id = t.id AND s.status = 'pending' AND t.commit_sha IS NOT NULL
      AND EXISTS (
        SELECT 1 FROM commit_statuses o JOIN tasks ot ON ot.id = o.task_id
        WHERE o.status = 'delivered' AND o.seq > s.seq
          AND o.context = s.context
          AND ot.commit_sha = t.commit_sha
          AND ot.forge->>'forge' = t.forge->>'forge'
          AND ot.forge->>'repo' = t.forge->>'repo')";

/// Claims due statuses ($1: only this event's, or any; $2: how many; $3:
/// for how many milliseconds) that have no older pending status of the
/// same key. A status whose task does not know its commit yet waits.
const CLAIM: &str = "
    UPDATE commit_statuses SET next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
    WHERE id IN (
      SELECT s.id FROM commit_statuses s JOIN tasks t ON t.id = s.task_id
      WHERE s.status = 'pending' AND s.next_attempt_at <= now()
        AND t.commit_sha IS NOT NULL AND t.forge IS NOT NULL
        AND ($1::text IS NULL OR s.event_id = $1)
        AND NOT EXISTS (
          SELECT 1 FROM commit_statuses o JOIN tasks ot ON ot.id = o.task_id
          WHERE o.status = 'pending' AND (o.seq, o.id) < (s.seq, s.id)
            AND o.context = s.context
            AND ot.commit_sha = t.commit_sha
            AND ot.forge->>'forge' = t.forge->>'forge'
            AND ot.forge->>'repo' = t.forge->>'repo')
      ORDER BY s.seq, s.id
      LIMIT $2
      FOR UPDATE OF s SKIP LOCKED)
    RETURNING id";

/// Records one attempt at sending status `id`; a status no longer pending
/// (superseded meanwhile, or reported by a slower notifier) is left as it is.
pub fn record_attempt(conn: &mut PgConnection, id: i64, attempt: &Attempt) -> Result<StatusRow> {
    let target = commit_statuses::table
        .find(id)
        .filter(commit_statuses::status.eq(PENDING));
    let row = match attempt {
        Attempt::Delivered => diesel::update(target)
            .set((
                commit_statuses::status.eq(DELIVERED),
                commit_statuses::attempts.eq(commit_statuses::attempts + 1),
                commit_statuses::delivered_at.eq(Utc::now()),
                commit_statuses::last_error.eq(None::<String>),
            ))
            .returning(StatusRow::as_returning())
            .get_result(conn)
            .optional()?,
        Attempt::Failed { error, retry_at } => diesel::update(target)
            .set((
                commit_statuses::status.eq(if retry_at.is_some() { PENDING } else { FAILED }),
                commit_statuses::attempts.eq(commit_statuses::attempts + 1),
                commit_statuses::last_error.eq(error),
                commit_statuses::next_attempt_at.eq(retry_at.unwrap_or_else(Utc::now)),
            ))
            .returning(StatusRow::as_returning())
            .get_result(conn)
            .optional()?,
    };
    match row {
        Some(row) => Ok(row),
        None => commit_statuses::table
            .find(id)
            .select(StatusRow::as_select())
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound),
    }
}

/// A task's statuses, oldest first.
pub fn for_task(conn: &mut PgConnection, task_id: i64) -> Result<Vec<StatusRow>> {
    Ok(commit_statuses::table
        .filter(commit_statuses::task_id.eq(task_id))
        .order((commit_statuses::seq.asc(), commit_statuses::id.asc()))
        .select(StatusRow::as_select())
        .load(conn)?)
}
