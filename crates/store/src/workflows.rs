//! Workflows and their versions. A workflow's definition is immutable per
//! version: `PUT` adds a version and tasks keep the version they started with.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::{workflow_versions, workflows};
use crate::{Error, Result, is_unique_violation};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub struct WorkflowRow {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A check of a new definition against every other live workflow with its
/// current definition (the routes they serve, say), run in the write's
/// transaction after it took [`CLAIMS_LOCK`].
pub type Guard<'a> = &'a dyn Fn(&[(WorkflowRow, String)]) -> Result<()>;

/// Serialises the writes that run a [`Guard`]: the second of two applies
/// taking one domain waits for the first to commit, then sees it.
const CLAIMS_LOCK: i64 = 0x5117_c1a1;

/// Runs `guard`, if any, on the live workflows other than `except`, holding
/// [`CLAIMS_LOCK`] until the transaction ends.
fn check_others(
    conn: &mut PgConnection,
    except: Option<i64>,
    guard: Option<Guard<'_>>,
) -> Result<()> {
    let Some(guard) = guard else {
        return Ok(());
    };
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(CLAIMS_LOCK)
        .execute(conn)?;
    let mut others = live_with_definitions(conn)?;
    others.retain(|(w, _)| Some(w.id) != except);
    guard(&others)
}

fn name_taken(err: diesel::result::Error, name: &str) -> Error {
    if is_unique_violation(&err) {
        Error::Conflict(format!("workflow name {name} is taken"))
    } else {
        Error::Database(err)
    }
}

/// Creates a workflow at version 1, once `guard` passed.
pub fn create(
    conn: &mut PgConnection,
    name: &str,
    repo: &str,
    definition: &str,
    guard: Option<Guard<'_>>,
) -> Result<WorkflowRow> {
    conn.transaction(|conn| {
        check_others(conn, None, guard)?;
        let row: WorkflowRow = diesel::insert_into(workflows::table)
            .values((
                workflows::name.eq(name),
                workflows::repo.eq(repo),
                workflows::version.eq(1),
            ))
            .returning(WorkflowRow::as_returning())
            .get_result(conn)
            .map_err(|e| name_taken(e, name))?;
        diesel::insert_into(workflow_versions::table)
            .values((
                workflow_versions::workflow_id.eq(row.id),
                workflow_versions::version.eq(1),
                workflow_versions::definition.eq(definition),
            ))
            .execute(conn)?;
        Ok(row)
    })
}

/// Adds a version, once `guard` passed; the workflow may be renamed as
/// long as the name is free.
pub fn update(
    conn: &mut PgConnection,
    id: i64,
    name: &str,
    repo: &str,
    definition: &str,
    guard: Option<Guard<'_>>,
) -> Result<WorkflowRow> {
    conn.transaction(|conn| {
        check_others(conn, Some(id), guard)?;
        // Locked, so two concurrent updates get versions n+1 and n+2.
        let current: WorkflowRow = workflows::table
            .find(id)
            .filter(workflows::deleted_at.is_null())
            .for_update()
            .select(WorkflowRow::as_select())
            .first(conn)
            .optional()?
            .ok_or(Error::NotFound)?;
        let version = current.version + 1;
        let row: WorkflowRow = diesel::update(workflows::table.find(id))
            .set((
                workflows::name.eq(name),
                workflows::repo.eq(repo),
                workflows::version.eq(version),
                workflows::updated_at.eq(Utc::now()),
            ))
            .returning(WorkflowRow::as_returning())
            .get_result(conn)
            .map_err(|e| name_taken(e, name))?;
        diesel::insert_into(workflow_versions::table)
            .values((
                workflow_versions::workflow_id.eq(id),
                workflow_versions::version.eq(version),
                workflow_versions::definition.eq(definition),
            ))
            .execute(conn)?;
        Ok(row)
    })
}

/// Marks a workflow deleted; its tasks and versions stay for the history.
pub fn delete(conn: &mut PgConnection, id: i64) -> Result<()> {
    let updated = diesel::update(
        workflows::table
            .find(id)
            .filter(workflows::deleted_at.is_null()),
    )
    .set(workflows::deleted_at.eq(Utc::now()))
    .execute(conn)?;
    if updated == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// A workflow that is not deleted.
pub fn live(conn: &mut PgConnection, id: i64) -> Result<WorkflowRow> {
    workflows::table
        .find(id)
        .filter(workflows::deleted_at.is_null())
        .select(WorkflowRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

/// Every live workflow, oldest first.
pub fn list(conn: &mut PgConnection) -> Result<Vec<WorkflowRow>> {
    Ok(workflows::table
        .filter(workflows::deleted_at.is_null())
        .order(workflows::id.asc())
        .select(WorkflowRow::as_select())
        .load(conn)?)
}

/// The definition text of one version.
pub fn definition(conn: &mut PgConnection, workflow_id: i64, version: i32) -> Result<String> {
    workflow_versions::table
        .find((workflow_id, version))
        .select(workflow_versions::definition)
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound)
}

/// Every live workflow with its current definition, for trigger matching.
pub fn live_with_definitions(conn: &mut PgConnection) -> Result<Vec<(WorkflowRow, String)>> {
    Ok(workflows::table
        .inner_join(
            workflow_versions::table.on(workflow_versions::workflow_id
                .eq(workflows::id)
                .and(workflow_versions::version.eq(workflows::version))),
        )
        .filter(workflows::deleted_at.is_null())
        .order(workflows::id.asc())
        .select((WorkflowRow::as_select(), workflow_versions::definition))
        .load(conn)?)
}

/// Remembers the GitHub App installation a webhook for these workflows
/// came through: manual runs of them use it. Rows that already hold it are
/// left alone, so that the deliveries of one repository do not queue on
/// its workflow's row lock.
pub fn set_installation(conn: &mut PgConnection, ids: &[i64], installation_id: i64) -> Result<()> {
    diesel::update(
        workflows::table
            .filter(workflows::id.eq_any(ids))
            .filter(workflows::installation_id.is_distinct_from(installation_id)),
    )
    .set(workflows::installation_id.eq(installation_id))
    .execute(conn)?;
    Ok(())
}

/// The GitHub App installation of the workflow's last GitHub webhook.
pub fn installation(conn: &mut PgConnection, id: i64) -> Result<Option<i64>> {
    Ok(workflows::table
        .find(id)
        .select(workflows::installation_id)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten())
}
