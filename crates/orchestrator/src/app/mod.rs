//! The orchestrator's operations, independent of the wire: both gRPC
//! services call into [`App`]. Database work runs on the blocking pool; every
//! error leaves here as an [`ApiError`] with the code the caller will see.
//!
//! This module owns the shared state, the blocking-pool helper with its
//! error mapping, the cache of parsed definitions, change notification and
//! the metrics a scrape reads; the operations live in one submodule per
//! concern, each an `impl App` block.

mod alerts;
mod deploys;
mod health;
mod ingest;
mod insights;
mod leases;
mod retention;
mod statuses;
mod tasks;
mod triggers;
mod workflows;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use domain::workflow::{self, Workflow};
use proto::{ApiError, ErrorCode};
use store::PgConnection;
use tokio::sync::{Notify, broadcast};

use crate::crypto::SecretBox;
use crate::metrics::Metrics;

pub use deploys::{Environment, ServedAt};
pub use insights::{EnvironmentView, Stats, WorkflowNow};
pub use leases::Claim;
pub use retention::{DeletionClaim, PassOptions, RetentionView};
pub use statuses::Sendable;
pub use triggers::{Outcome, Webhook, WorkflowRun};

/// Shared state of the orchestrator.
pub struct App {
    /// Connections for the blocking pool; the only way to the database.
    pool: store::Pool,
    /// Seals secrets on the way in and opens them for claims and notifiers.
    secrets: SecretBox,
    /// Wakes the relay when a task was queued or an event written.
    pub(crate) outbox: Arc<Notify>,
    /// Carries the id of a task whose log or status changed, for log streams.
    changes: broadcast::Sender<i64>,
    /// Parsed definitions by (workflow id, version): versions never change,
    /// so a webhook need not parse every workflow again.
    specs: Arc<ingest::Specs>,
    /// Stores webhooks in groups, one transaction each.
    ingest: ingest::Ingest,
    /// How long a claim or heartbeat keeps a task's lease.
    pub(crate) lease: Duration,
    /// How often a task whose runner vanished is queued again before it fails.
    pub(crate) max_requeues: i32,
    /// Whether the outbox relay holds a working broker connection.
    pub(crate) broker_up: AtomicBool,
    /// The relay's broker connection while it works: scrapes look at the
    /// queues through it.
    pub(crate) broker: Mutex<Option<Arc<queue::lapin::Connection>>>,
    /// Counted here, after each transition committed.
    pub(crate) metrics: Metrics,
    /// The runners heard from lately.
    pub(crate) runners: crate::runners::Runners,
    /// The forges' credentials: where statuses go, tokens for them and clones.
    pub(crate) forges: crate::forges::Forges,
    /// `SLIPWAY_RETENTION_DAYS`: the `retention.days` of workflows that set none.
    pub(crate) retention_days: u32,
    /// What clients and runners may send: definitions, secrets, log chunks.
    pub(crate) bounds: crate::settings::Bounds,
}

pub(crate) fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "internal error");
    ApiError::new(ErrorCode::Internal, "internal error")
}

/// Maps a store error; `what` names the thing for a "not found".
fn db_error(err: store::Error, what: &str) -> ApiError {
    match err {
        store::Error::NotFound => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
        store::Error::Conflict(msg) => ApiError::new(ErrorCode::Conflict, msg),
        store::Error::Transition(t) => ApiError::new(ErrorCode::Conflict, t.to_string()),
        store::Error::LeaseLost => {
            ApiError::new(ErrorCode::Conflict, "the task's lease is no longer held")
        }
        store::Error::Invalid(msg) => ApiError::new(ErrorCode::BadRequest, msg),
        store::Error::Workflow(e) => invalid_workflow(&e),
        store::Error::LimitReached(msg) => ApiError::new(ErrorCode::LimitReached, msg),
        store::Error::Pool(e) => {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::new(ErrorCode::Unavailable, "database unavailable")
        }
        store::Error::Database(diesel_err) if connection_lost(&diesel_err) => {
            tracing::warn!(error = %diesel_err, "database connection lost");
            ApiError::new(ErrorCode::Unavailable, "database unavailable")
        }
        other => internal(other),
    }
}

/// Whether diesel failed because the connection to the database went away
/// (worth retrying once it is back), rather than because of the query.
fn connection_lost(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        // libpq found the connection closed, or the server answered with a
        // connection-class SQLSTATE (08xxx).
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        // libpq could not send the query. It also refuses queries over the
        // bind-parameter limit this way, but ours stay far below it.
        | Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
        // An earlier failure, a lost connection in practice, left the
        // connection's transaction state unknown; the pool drops it.
        | Error::BrokenTransactionManager => true,
        // The commit failed and so did the rollback after it.
        Error::RollbackErrorOnCommit {
            rollback_error,
            commit_error,
        } => connection_lost(commit_error) || connection_lost(rollback_error),
        _ => false,
    }
}

fn invalid_workflow(err: &workflow::SpecError) -> ApiError {
    ApiError::new(ErrorCode::InvalidWorkflow, err.to_string())
        .with_field("path", err.path.clone())
        .with_field("line", err.line)
        .with_field("column", err.column)
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

impl App {
    pub fn new(
        pool: store::Pool,
        secrets: SecretBox,
        lease: Duration,
        max_requeues: i32,
        metrics: Metrics,
        forges: crate::forges::Forges,
    ) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Self {
            pool,
            secrets,
            outbox: Arc::new(Notify::new()),
            changes,
            specs: Arc::default(),
            ingest: ingest::Ingest::default(),
            lease,
            max_requeues,
            broker_up: AtomicBool::new(false),
            broker: Mutex::new(None),
            metrics,
            runners: crate::runners::Runners::default(),
            forges,
            retention_days: crate::settings::DEFAULT_RETENTION_DAYS,
            bounds: crate::settings::Bounds::default(),
        }
    }

    /// The same, with these bounds on what clients and runners send.
    pub fn with_bounds(mut self, bounds: crate::settings::Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The same, with `days` as the default `retention.days`.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub(crate) async fn db<T, F>(&self, what: &str, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> store::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(internal)?;
        result.map_err(|e| db_error(e, what))
    }

    /// Subscribes to task changes (log chunks, status).
    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.changes.subscribe()
    }

    /// A task changed: its log followers look again, and the relay
    /// publishes the events the change wrote.
    fn changed(&self, task_id: i64) {
        // No subscriber is fine.
        let _ = self.changes.send(task_id);
        self.queued();
    }

    /// A task's log grew or its steps moved: its followers look again.
    /// Neither writes an event, so the relay sleeps on.
    fn progressed(&self, task_id: i64) {
        let _ = self.changes.send(task_id);
    }

    /// Wakes the relay: a task was queued, or an event written.
    fn queued(&self) {
        self.outbox.notify_one();
    }

    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    pub async fn database_up(&self) -> bool {
        self.db("database", store::ping).await.is_ok()
    }

    fn spec(
        &self,
        workflow_id: i64,
        version: i32,
        definition: &str,
    ) -> Result<Arc<Workflow>, ApiError> {
        ingest::spec(&self.specs, (workflow_id, version), definition)
    }

    /// The metrics in the text format, with the gauges read now from the
    /// database and the broker.
    pub async fn render_metrics(&self, topology: &queue::Topology) -> String {
        let now = Utc::now();
        let counts = self
            .db("tasks", move |conn| {
                Ok((
                    store::tasks::count_unfinished(conn)?,
                    store::tasks::busy_runners(conn, now)?,
                    store::tasks::pending_label_sets(conn)?,
                ))
            })
            .await;
        let (unfinished, busy, label_sets) = match counts {
            Ok((unfinished, busy, sets)) => (Some(unfinished), Some(busy), sets),
            Err(e) => {
                tracing::debug!(error = %e, "metrics without the database's counts");
                (None, None, Vec::new())
            }
        };
        let connection = self.broker.lock().ok().and_then(|b| b.clone());
        let depths = match connection {
            Some(c) => queue::depths(&c, topology, &label_sets)
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "metrics without queue depths"))
                .ok(),
            None => None,
        };
        self.metrics.set_gauges(unfinished, busy, depths);
        self.metrics
            .set_runners(self.runners.online(std::time::Instant::now()));
        telemetry::metrics::render(&self.metrics.registry)
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind as Kind, Error as Diesel};
    use proto::ErrorCode;

    use super::{connection_lost, db_error};

    /// An error the database reported, of `kind`, with libpq's `message`.
    fn reported(kind: Kind, message: &str) -> Diesel {
        Diesel::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// A failed commit whose rollback failed too.
    fn commit_failed(commit: Diesel, rollback: Diesel) -> Diesel {
        Diesel::RollbackErrorOnCommit {
            rollback_error: Box::new(rollback),
            commit_error: Box::new(commit),
        }
    }

    #[test]
    fn a_lost_connection_is_told_by_the_errors_kind_not_its_message() {
        let closed = || reported(Kind::ClosedConnection, "server closed the connection");
        let cases = [
            ("closed", closed(), true),
            (
                "closed, message without the word",
                reported(Kind::ClosedConnection, "SSL SYSCALL error: EOF detected"),
                true,
            ),
            (
                "not sent",
                reported(
                    Kind::UnableToSendCommand,
                    "could not send data to server: Broken pipe",
                ),
                true,
            ),
            (
                "broken transaction manager",
                Diesel::BrokenTransactionManager,
                true,
            ),
            (
                "commit on a lost connection",
                commit_failed(closed(), Diesel::BrokenTransactionManager),
                true,
            ),
            (
                "rollback on a lost connection",
                commit_failed(reported(Kind::SerializationFailure, "conflict"), closed()),
                true,
            ),
            (
                "commit failed, connection there",
                commit_failed(
                    reported(Kind::SerializationFailure, "conflict"),
                    reported(Kind::Unknown, "no"),
                ),
                false,
            ),
            (
                "constraint naming a connection",
                reported(
                    Kind::UniqueViolation,
                    "duplicate key value violates unique constraint \"connections_pkey\"",
                ),
                false,
            ),
            (
                "query naming a connection",
                reported(Kind::Unknown, "relation \"connection\" does not exist"),
                false,
            ),
            ("no row", Diesel::NotFound, false),
        ];
        for (case, err, lost) in cases {
            assert_eq!(connection_lost(&err), lost, "{case}");
        }
    }

    #[test]
    fn store_errors_map_to_the_code_a_caller_sees() {
        use ErrorCode::{BadRequest, Conflict, Internal, InvalidWorkflow, NotFound, Unavailable};
        let cases = [
            ("missing row", store::Error::NotFound, NotFound),
            (
                "conflict",
                store::Error::Conflict("taken".to_owned()),
                Conflict,
            ),
            ("lease lost", store::Error::LeaseLost, Conflict),
            (
                "records that do not fit",
                store::Error::Invalid("deployment 2 is of another environment".to_owned()),
                BadRequest,
            ),
            (
                "definition refused",
                store::Error::Workflow(
                    domain::workflow::Spot {
                        path: "deploy[0].route.listen".to_owned(),
                        line: 7,
                        column: 3,
                    }
                    .error("listen port 80 is already used"),
                ),
                InvalidWorkflow,
            ),
            (
                "connection lost",
                store::Error::Database(Diesel::BrokenTransactionManager),
                Unavailable,
            ),
            (
                "query failed",
                store::Error::Database(reported(Kind::CheckViolation, "connection")),
                Internal,
            ),
            (
                "corrupt value",
                store::Error::Corrupt("status".to_owned()),
                Internal,
            ),
        ];
        for (case, err, code) in cases {
            assert_eq!(db_error(err, "task 1").code, code, "{case}");
        }
    }
}
