//! Registry manifests to delete: the images of pruned tasks that nothing
//! retained uses, queued by the pruner (`prune.rs`). The orchestrator talks
//! to no registry: a runner claims due deletions by moving their
//! `next_attempt_at` past the time one needs (a runner that dies lets them
//! come due again), deletes each through the registry's API and reports.
//! A deleted manifest's row goes; one that kept failing stays `failed`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::{deployments, image_deletions, tasks};
use crate::{Error, Result};

pub const PENDING: &str = "pending";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = image_deletions)]
pub struct DeletionRow {
    pub id: i64,
    /// Whose registry credentials (secrets) log in.
    pub workflow_id: i64,
    /// `registry/name`, without tag or digest.
    pub repository: String,
    pub digest: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub claimed_by: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Whether a task or a deployment still refers to `digest`.
pub fn in_use(conn: &mut PgConnection, digest: &str) -> Result<bool> {
    let task: bool = diesel::select(diesel::dsl::exists(
        tasks::table.filter(tasks::image_digest.eq(digest)),
    ))
    .get_result(conn)?;
    if task {
        return Ok(true);
    }
    // `registry/name@<digest>`, matched on the indexed expression.
    let deployment: bool = diesel::select(diesel::dsl::exists(
        deployments::table.filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("split_part(image, '@', 2) = ")
                .bind::<diesel::sql_types::Text, _>(digest),
        ),
    ))
    .get_result(conn)?;
    Ok(deployment)
}

/// Claims up to `limit` deletions due now for `runner` until `until`. A
/// manifest whose digest came back into use since it was queued (the same
/// image built again) is dropped from the queue instead of handed out.
pub fn claim_due(
    conn: &mut PgConnection,
    runner: &str,
    limit: i64,
    until: DateTime<Utc>,
) -> Result<Vec<DeletionRow>> {
    conn.transaction(|conn| {
        let due: Vec<DeletionRow> = image_deletions::table
            .filter(image_deletions::status.eq(PENDING))
            .filter(image_deletions::next_attempt_at.le(Utc::now()))
            .order(image_deletions::next_attempt_at.asc())
            .limit(limit)
            .for_update()
            .skip_locked()
            .select(DeletionRow::as_select())
            .load(conn)?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            if in_use(conn, &row.digest)? {
                diesel::delete(image_deletions::table.find(row.id)).execute(conn)?;
                continue;
            }
            let row = diesel::update(image_deletions::table.find(row.id))
                .set((
                    image_deletions::claimed_by.eq(runner),
                    image_deletions::next_attempt_at.eq(until),
                    image_deletions::attempts.eq(row.attempts + 1),
                ))
                .returning(DeletionRow::as_returning())
                .get_result(conn)?;
            claimed.push(row);
        }
        Ok(claimed)
    })
}

/// How a runner's deletion went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted, or the registry no longer had it.
    Deleted,
    /// Failed; tried again at `retry_at`, or never again when `None`.
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Records how the deletion `id` claimed by `runner` went. A report from a
/// runner whose claim lapsed and went to another is ignored: the other
/// one reports. Returns whether it counted.
pub fn record(conn: &mut PgConnection, id: i64, runner: &str, outcome: &Outcome) -> Result<bool> {
    conn.transaction(|conn| {
        let row: DeletionRow = image_deletions::table
            .find(id)
            .for_update()
            .select(DeletionRow::as_select())
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        if row.claimed_by.as_deref() != Some(runner) || row.status != PENDING {
            return Ok(false);
        }
        match outcome {
            Outcome::Deleted => {
                diesel::delete(image_deletions::table.find(id)).execute(conn)?;
            }
            Outcome::Failed { error, retry_at } => {
                diesel::update(image_deletions::table.find(id))
                    .set((
                        image_deletions::status.eq(if retry_at.is_some() {
                            PENDING
                        } else {
                            FAILED
                        }),
                        image_deletions::last_error.eq(error),
                        image_deletions::next_attempt_at.eq(retry_at.unwrap_or_else(Utc::now)),
                    ))
                    .execute(conn)?;
            }
        }
        Ok(true)
    })
}

/// One deletion (for tests and operators).
pub fn get(conn: &mut PgConnection, id: i64) -> Result<DeletionRow> {
    image_deletions::table
        .find(id)
        .select(DeletionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}
