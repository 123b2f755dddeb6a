//! Webhooks stored in groups. A few tasks store them, each on a connection
//! of its own: the deliveries that arrive while they are busy wait, then
//! the next free one takes them all into the database together in one
//! transaction, each in a savepoint of its own (one that fails leaves the
//! others be). Every delivery is answered after the commit, so "accepted"
//! still means stored; one commit, one flush of the write-ahead log,
//! serves the whole group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::Connection as _;
use domain::workflow::{self, Workflow};
use proto::ApiError;
use store::webhooks::DeliveryRow;
use store::workflows::WorkflowRow;
use tokio::sync::{mpsc, oneshot};

use super::triggers::{self, Delivery};
use super::{db_error, internal, invalid_workflow};

/// Most deliveries stored in one transaction.
const GROUP: usize = 64;

/// Tasks storing groups at once: while one waits for its commit, the
/// others work.
const STORERS: usize = 3;

/// Parsed definitions by (workflow id, version): versions never change.
pub(crate) type Specs = Mutex<HashMap<(i64, i32), Arc<Workflow>>>;

/// The definition of a workflow's version (`key`), parsed once.
pub(crate) fn spec(
    specs: &Specs,
    key: (i64, i32),
    definition: &str,
) -> Result<Arc<Workflow>, ApiError> {
    if let Some(spec) = specs.lock().map_err(internal)?.get(&key) {
        return Ok(spec.clone());
    }
    let spec = Arc::new(workflow::parse_stored(definition).map_err(|e| invalid_workflow(&e))?);
    specs.lock().map_err(internal)?.insert(key, spec.clone());
    Ok(spec)
}

/// A delivery's outcome as stored, and whether it was seen before.
type Outcome = Result<(DeliveryRow, bool), ApiError>;

/// A delivery, and who waits for its outcome.
struct Job {
    delivery: Delivery,
    answer: oneshot::Sender<Outcome>,
}

/// The way to the task storing groups, started with the first delivery.
#[derive(Default)]
pub(crate) struct Ingest {
    jobs: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl Ingest {
    /// Stores `delivery` with whatever others arrive meanwhile; its outcome
    /// once the group is committed.
    pub(crate) async fn store(
        &self,
        pool: &store::Pool,
        specs: &Arc<Specs>,
        delivery: Delivery,
    ) -> Outcome {
        let jobs = self.jobs.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for _ in 0..STORERS {
                tokio::spawn(run(pool.clone(), Arc::clone(specs), Arc::clone(&rx)));
            }
            tx
        });
        let (answer, outcome) = oneshot::channel();
        jobs.send(Job { delivery, answer })
            .map_err(|_| internal("the webhook store has stopped"))?;
        outcome
            .await
            .map_err(|_| internal("the webhook store dropped a delivery"))?
    }
}

/// Takes the deliveries waiting, up to [`GROUP`], and stores them together;
/// again and again.
async fn run(
    pool: store::Pool,
    specs: Arc<Specs>,
    jobs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>,
) {
    loop {
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        };
        let (pool, specs) = (pool.clone(), Arc::clone(&specs));
        // A panic drops the group's answers: their callers hear of it.
        let _ = tokio::task::spawn_blocking(move || store_group(&pool, &specs, group)).await;
    }
}

/// One transaction for the group, its rows written together; should that
/// fail, one transaction again with each delivery in a savepoint of its
/// own, so that one bad delivery leaves the others be. Each delivery is
/// answered after the commit.
fn store_group(pool: &store::Pool, specs: &Specs, group: Vec<Job>) {
    let spec_of = |row: &WorkflowRow, definition: &str| match spec(
        specs,
        (row.id, row.version),
        definition,
    ) {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::warn!(workflow = %row.name, error = %e, "stored definition no longer parses");
            None
        }
    };
    let deliveries: Vec<&Delivery> = group.iter().map(|job| &job.delivery).collect();
    let outcomes = pool.get().map_err(store::Error::from).and_then(|mut conn| {
        let together = conn.transaction(|conn| triggers::record_group(conn, &deliveries, &spec_of));
        match together {
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
            Err(e) => {
                tracing::debug!(error = %e, "storing a group of deliveries one by one");
                one_by_one(&mut conn, &deliveries, &spec_of)
            }
        }
    });
    let outcomes: Vec<Outcome> = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let e = db_error(e, "delivery");
            group.iter().map(|_| Err(e.clone())).collect()
        }
    };
    for (job, outcome) in group.into_iter().zip(outcomes) {
        let _ = job.answer.send(outcome);
    }
}

/// The deliveries in one transaction, each in a savepoint of its own.
fn one_by_one(
    conn: &mut diesel::PgConnection,
    deliveries: &[&Delivery],
    spec_of: triggers::SpecOf<'_>,
) -> Result<Vec<Outcome>, store::Error> {
    conn.transaction(|conn| {
        let mut workflows = None;
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let recorded = store::transaction(conn, |conn| {
                triggers::record(conn, delivery, &mut workflows, spec_of)
            });
            outcomes.push(recorded.map_err(|e| db_error(e, "delivery")));
        }
        Ok::<_, store::Error>(outcomes)
    })
}
