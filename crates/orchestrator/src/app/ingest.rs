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

/// A delivery, and who waits for its outcome (as stored, and whether it
/// was seen before).
struct Job {
    delivery: Delivery,
    answer: oneshot::Sender<Result<(DeliveryRow, bool), ApiError>>,
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
    ) -> Result<(DeliveryRow, bool), ApiError> {
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

/// One transaction for the group; each delivery answered after it.
fn store_group(pool: &store::Pool, specs: &Specs, group: Vec<Job>) {
    let mut outcomes: Vec<Result<(DeliveryRow, bool), ApiError>> = Vec::with_capacity(group.len());
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
    let committed = pool.get().map_err(store::Error::from).and_then(|mut conn| {
        conn.transaction(|conn| {
            let mut workflows = None;
            for job in &group {
                let recorded = store::transaction(conn, |conn| {
                    triggers::record(conn, &job.delivery, &mut workflows, &spec_of)
                });
                outcomes.push(recorded.map_err(|e| db_error(e, "delivery")));
            }
            Ok::<_, store::Error>(())
        })
    });
    match committed {
        Ok(()) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.answer.send(outcome);
            }
        }
        Err(e) => {
            let e = db_error(e, "delivery");
            for job in group {
                let _ = job.answer.send(Err(e.clone()));
            }
        }
    }
}
