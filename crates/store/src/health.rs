//! The health of each environment's current deployment after its deploy
//! (api.md, "Insights"; alerts.md `health_down`, `health_recovered`): the
//! runners of its host take turns probing it, and each result moves the
//! environment's health.
//!
//! `DOWN_AFTER` failed probes in a row make it `down` and raise
//! `health_down`, once per outage; the next good probe makes it `up` and
//! raises `health_recovered`. Nothing is rolled back.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::Result;
use crate::events::{self, Event};
use crate::schema::{deployments, environments};

/// Failed probes in a row that make an environment down.
pub const DOWN_AFTER: i32 = 3;

/// An environment's current deployment, due for a probe.
#[derive(Debug, Clone, QueryableByName)]
pub struct Due {
    #[diesel(sql_type = BigInt)]
    pub workflow_id: i64,
    #[diesel(sql_type = Text)]
    pub workflow: String,
    #[diesel(sql_type = Text)]
    pub environment: String,
    #[diesel(sql_type = BigInt)]
    pub deployment_id: i64,
    /// The workflow version that deployed it, and its definition.
    #[diesel(sql_type = Integer)]
    pub version: i32,
    #[diesel(sql_type = Text)]
    pub definition: String,
}

/// Takes up to `limit` environments of `host` whose probe is due, moving
/// their next probe `interval` ahead, so the other runners of the host
/// leave them alone. An environment with a deploy under way is not due:
/// its version is changing.
pub fn claim_due(
    conn: &mut PgConnection,
    host: &str,
    interval: std::time::Duration,
    limit: i32,
) -> Result<Vec<Due>> {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    Ok(diesel::sql_query(
        "WITH due AS ( \
             SELECT e.workflow_id, e.name FROM environments e \
             JOIN deployments d ON d.id = e.current_deployment_id \
             JOIN workflows w ON w.id = e.workflow_id \
             WHERE d.host = $1 AND e.health_next_at <= now() AND w.deleted_at IS NULL \
               AND NOT EXISTS ( \
                   SELECT 1 FROM deployments x \
                   WHERE x.workflow_id = e.workflow_id AND x.environment = e.name \
                     AND x.status IN ('deploying', 'verifying')) \
             ORDER BY e.health_next_at \
             LIMIT $3 \
             FOR UPDATE OF e SKIP LOCKED \
         ) \
         UPDATE environments e \
         SET health_next_at = now() + make_interval(secs => $2::float8 / 1000) \
         FROM due, deployments d, workflows w, tasks t, workflow_versions v \
         WHERE e.workflow_id = due.workflow_id AND e.name = due.name \
           AND d.id = e.current_deployment_id AND w.id = e.workflow_id \
           AND t.id = d.task_id \
           AND v.workflow_id = t.workflow_id AND v.version = t.workflow_version \
         RETURNING e.workflow_id, w.name AS workflow, e.name AS environment, \
                   d.id AS deployment_id, v.version, v.definition",
    )
    .bind::<Text, _>(host)
    .bind::<BigInt, _>(interval_ms)
    .bind::<Integer, _>(limit)
    .load(conn)?)
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing anyone is told about.
    None,
    /// It became down: `health_down` was raised.
    Down,
    /// It answers again after being down: `health_recovered` was raised.
    Recovered,
}

/// Records one probe of `deployment_id` on its environment, with the
/// event it raises, in one transaction. A result for a deployment that is
/// no longer the environment's current one changes nothing.
pub fn record(
    conn: &mut PgConnection,
    workflow_id: i64,
    environment: &str,
    deployment_id: i64,
    healthy: bool,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Change> {
    conn.transaction(|conn| {
        let row: Option<(Option<i64>, String, Option<i64>, i32)> = environments::table
            .find((workflow_id, environment))
            .select((
                environments::current_deployment_id,
                environments::health,
                environments::health_deployment_id,
                environments::health_failures,
            ))
            .for_update()
            .first(conn)
            .optional()?;
        let Some((current, health, probed, failures)) = row else {
            return Ok(Change::None);
        };
        if current != Some(deployment_id) {
            return Ok(Change::None);
        }
        // A new current deployment starts with a clean slate.
        let (health, failures) = if probed == Some(deployment_id) {
            (health, failures)
        } else {
            ("unknown".to_owned(), 0)
        };
        let (next, failures, change) = match (healthy, health.as_str()) {
            (true, "down") => ("up", 0, Change::Recovered),
            (true, _) => ("up", 0, Change::None),
            (false, "down") => ("down", failures + 1, Change::None),
            (false, _) if failures + 1 >= DOWN_AFTER => ("down", failures + 1, Change::Down),
            (false, now) => (now, failures + 1, Change::None),
        };
        let next = next.to_owned();
        diesel::update(environments::table.find((workflow_id, environment)))
            .set((
                environments::health.eq(&next),
                environments::health_deployment_id.eq(deployment_id),
                environments::health_failures.eq(failures),
                environments::health_checked_at.eq(at),
                environments::health_error.eq(if healthy { None } else { error }),
            ))
            .execute(conn)?;
        let task_id: Option<i64> = deployments::table
            .find(deployment_id)
            .select(deployments::task_id)
            .first(conn)?;
        let (kind, summary) = match change {
            Change::None => return Ok(change),
            Change::Down => (
                "health_down",
                format!("{environment} is down: {DOWN_AFTER} health checks failed in a row"),
            ),
            Change::Recovered => (
                "health_recovered",
                format!("{environment} answers its health check again"),
            ),
        };
        events::emit(
            conn,
            &Event {
                kind,
                workflow_id,
                task_id,
                deployment_id: Some(deployment_id),
                environment: Some(environment),
                summary,
                error: if healthy { None } else { error },
                recovery: change == Change::Recovered,
                ..Event::default()
            },
        )?;
        Ok(change)
    })
}
