//! A fresh database per test, cloned from a template that the migrations
//! are applied to (crates.io's test-db approach). An advisory lock keeps
//! parallel test processes from migrating or cloning the template at once.

use diesel::prelude::*;
use diesel::sql_query;

const TEMPLATE: &str = "slipway_test_template";
const LOCK_KEY: i64 = 0x5117_3a7e;

fn admin_url() -> String {
    std::env::var("SLIPWAY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://slipway@127.0.0.1:55433/slipway".to_owned())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{name}")
}

pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Runs one SQL statement on this database (for a test to move a row
    /// back in time, say); returns the rows it touched.
    pub fn execute(&self, sql: &str) -> usize {
        let mut conn = PgConnection::establish(&self.url).expect("connect to the test database");
        sql_query(sql)
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Moves tasks `days` back in time, in one statement (so a pruner never
    /// sees them half moved): their times, their log chunks', and their
    /// events' (written and published). What retention tests seed instead
    /// of waiting.
    pub fn age_tasks(&self, ids: &[i64], days: u32) {
        let ids = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let back = format!("interval '{days} days'");
        self.execute(&format!(
            "WITH t AS (
                 UPDATE tasks SET created_at = created_at - {back}, queued_at = queued_at - {back},
                     started_at = started_at - {back}, finished_at = finished_at - {back}
                 WHERE id IN ({ids}) RETURNING id),
             e AS (
                 UPDATE events SET created_at = created_at - {back}, published_at = published_at - {back}
                 WHERE task_id IN (SELECT id FROM t) RETURNING id)
             UPDATE log_chunks SET created_at = created_at - {back}
             WHERE task_id IN (SELECT id FROM t)"
        ));
    }

    /// The `count(*) AS n` of one SQL query on this database.
    pub fn count(&self, sql: &str) -> i64 {
        let mut conn = PgConnection::establish(&self.url).expect("connect to the test database");
        sql_query(sql)
            .get_result::<Count>(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }

    pub fn create() -> Self {
        let admin_url = admin_url();
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!("cannot connect to {admin_url} (run the tests with `cargo xtask test`): {e}")
        });
        sql_query(format!("SELECT pg_advisory_lock({LOCK_KEY})"))
            .execute(&mut admin)
            .expect("advisory lock");
        let exists: i64 = sql_query(format!(
            "SELECT count(*) AS n FROM pg_database WHERE datname = '{TEMPLATE}'"
        ))
        .get_result::<Count>(&mut admin)
        .expect("look up the template")
        .n;
        if exists == 0 {
            sql_query(format!("CREATE DATABASE {TEMPLATE}"))
                .execute(&mut admin)
                .expect("create the template");
        }
        {
            let mut template = PgConnection::establish(&with_database(&admin_url, TEMPLATE))
                .expect("connect to the template");
            store::migrate(&mut template).expect("migrate the template");
        }
        let name = format!("slipway_test_{}", uuid::Uuid::new_v4().simple());
        sql_query(format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .execute(&mut admin)
            .expect("clone the template");
        sql_query(format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
            .execute(&mut admin)
            .expect("advisory unlock");
        Self {
            url: with_database(&admin_url, &name),
            name,
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
            let _ = sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}
