//! Slipway's database: the diesel schema, the rows, the queries, and the
//! embedded migrations. Only the orchestrator links this crate: it is the one
//! service that opens a database connection.
//!
//! Queries are plain functions over a `&mut PgConnection`; operations that
//! must be atomic open their own transaction. Every task and step status
//! change goes through the domain's state machine.

pub mod alerts;
pub mod deployments;
pub mod events;
pub mod forges;
pub mod health;
pub mod image_deletions;
pub mod insights;
pub mod logs;
pub mod outbox;
pub mod prune;
pub mod schema;
pub mod secrets;
pub mod task_deploys;
pub mod tasks;
pub mod webhooks;
pub mod workflows;
pub mod workspaces;

use std::time::Duration;

pub use diesel::PgConnection;

use diesel::Connection as _;
use diesel::RunQueryDsl as _;
use diesel::r2d2::{ConnectionManager, Pool as R2d2Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The migrations in the top-level `migrations/`, built into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

pub type Pool = R2d2Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// What can go wrong in the database layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Transition(#[from] domain::state::IllegalTransition),
    #[error("the task's lease is no longer held")]
    LeaseLost,
    /// A request that names records which do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// A workflow definition refused for what other records hold (a route
    /// another workflow serves), placed in the definition.
    #[error("{0}")]
    Workflow(domain::workflow::SpecError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
    /// A record that would go past a count the server bounds.
    #[error("{0}")]
    LimitReached(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection pool. `connect_timeout` bounds how long a caller waits for a
/// connection when the database is down, so requests fail fast with `503`.
pub fn pool(url: &str, max_size: u32, connect_timeout: Duration) -> Result<Pool> {
    let manager = ConnectionManager::<PgConnection>::new(url);
    let pool = R2d2Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(connect_timeout)
        // Callers see and log every failure themselves, once and briefly.
        .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
        .build(manager)?;
    Ok(pool)
}

/// Runs the pending migrations; returns the versions it applied.
pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| Error::Migration(e.to_string()))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// True for a unique-constraint violation, which callers turn into a
/// conflict ("name taken", "duplicate delivery").
pub(crate) fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Runs `f` in a transaction (a savepoint inside another one).
pub fn transaction<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    conn.transaction(f)
}

/// A trivial query, to tell whether the database answers.
pub fn ping(conn: &mut PgConnection) -> Result<()> {
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}
