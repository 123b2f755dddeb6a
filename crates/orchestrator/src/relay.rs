//! The outbox relay: publishes queued task ids and recorded events to
//! RabbitMQ with confirms, and deletes each outbox row (marks each event
//! published) only once the broker has it. While the broker is down tasks
//! and events wait in the database; the relay reconnects with backoff and
//! catches up. Each message carries its task's trace context.
//!
//! [`Relay::start`] runs it until its [`Shutdown`]; a batch being published
//! is finished first, so what the broker confirmed leaves the outbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::BackoffBuilder as _;
use queue::{Publisher, TaskMessage, Topology};

use prost::Message as _;
use tracing::Instrument as _;

use crate::app::App;
use crate::background::Shutdown;
use crate::grpc::alert_event;

/// Entries published per round.
const BATCH: i64 = 100;
/// How often the outbox is read when nothing announced new entries.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Where the relay publishes to.
pub struct Options {
    /// The broker (`SLIPWAY_AMQP_URL`).
    pub amqp_url: String,
    /// A CA trusted for an `amqps://` broker besides the system roots
    /// (`SLIPWAY_AMQP_CA`).
    pub amqp_ca: Option<PathBuf>,
    /// The queues and exchange it declares and publishes to.
    pub topology: Topology,
}

/// The outbox relay, ready to run.
pub struct Relay {
    /// The outbox it reads, and where it tells whether the broker is up.
    app: Arc<App>,
    /// Where it publishes to.
    options: Options,
}

/// Why the relay let go of a broker connection.
enum Release {
    /// The broker failed: reconnect.
    Lost(String),
    /// The relay was told to stop.
    Shutdown,
}

impl Relay {
    pub fn new(app: Arc<App>, options: Options) -> Self {
        Self { app, options }
    }

    /// Publishes until `shutdown`, reconnecting to the broker as needed.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Self { app, options } = self;
        let mut delays = queue::RECONNECT.build();
        loop {
            let connecting = connect(
                &options.amqp_url,
                options.amqp_ca.as_deref(),
                &options.topology,
            );
            let connected = tokio::select! {
                biased;
                () = shutdown.requested() => return,
                connected = connecting => connected,
            };
            match connected {
                Ok((connection, publisher)) => {
                    tracing::info!("connected to the broker");
                    app.broker_up.store(true, Ordering::Relaxed);
                    let connection = Arc::new(connection);
                    share(&app, Some(connection.clone()));
                    delays = queue::RECONNECT.build();
                    let released = relay(&app, &publisher, &mut shutdown).await;
                    share(&app, None);
                    app.broker_up.store(false, Ordering::Relaxed);
                    match released {
                        Release::Lost(err) => {
                            tracing::warn!(
                                error = %err,
                                "lost the broker; tasks wait in the outbox"
                            );
                            let _ = connection.close(200, "reconnecting".into()).await;
                        }
                        Release::Shutdown => {
                            let _ = connection.close(200, "shutting down".into()).await;
                            return;
                        }
                    }
                }
                Err(err) => {
                    app.broker_up.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %err, "broker unreachable");
                }
            }
            // The policy has no end.
            let backoff = delays.next().unwrap_or_default();
            tokio::select! {
                biased;
                () = shutdown.requested() => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// Lends the connection to metrics scrapes, or takes it back.
fn share(app: &App, connection: Option<Arc<queue::lapin::Connection>>) {
    if let Ok(mut broker) = app.broker.lock() {
        *broker = connection;
    }
}

async fn connect(
    url: &str,
    ca: Option<&Path>,
    topology: &Topology,
) -> queue::Result<(queue::lapin::Connection, Publisher)> {
    let connection = queue::connect(url, ca).await?;
    let publisher = Publisher::open(&connection, topology).await?;
    Ok((connection, publisher))
}

/// What stopped a round of publishing.
enum Stop {
    /// The broker failed: reconnect.
    Broker(String),
    /// The database did not answer: wait and go on.
    Database,
}

/// Publishes until the broker fails or `shutdown`; says which.
async fn relay(app: &App, publisher: &Publisher, shutdown: &mut Shutdown) -> Release {
    // A round in hand runs to its end, so what the broker confirmed leaves
    // the outbox before the relay stops.
    while !shutdown.is_requested() {
        let round = async {
            let tasks_full = publish_tasks(app, publisher).await?;
            let events_full = publish_events(app, publisher).await?;
            Ok::<bool, Stop>(tasks_full || events_full)
        };
        match round.await {
            Ok(more) => {
                if !publisher.is_open() {
                    return Release::Lost("channel closed".to_owned());
                }
                if !more {
                    tokio::select! {
                        biased;
                        () = shutdown.requested() => {}
                        _ = tokio::time::timeout(IDLE_POLL, app.outbox.notified()) => {}
                    }
                }
            }
            Err(Stop::Broker(err)) => return Release::Lost(err),
            Err(Stop::Database) => tokio::select! {
                biased;
                () = shutdown.requested() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            },
        }
    }
    Release::Shutdown
}

/// Publishes a batch of outbox entries; true when the batch was full.
async fn publish_tasks(app: &App, publisher: &Publisher) -> Result<bool, Stop> {
    let entries = read(app, "outbox", |conn| store::outbox::oldest(conn, BATCH)).await?;
    let count = entries.len();
    let (done, failure) = in_order(entries, |entry| async move {
        let span = tracing::info_span!(
            "publish task",
            otel.kind = "producer",
            task_id = entry.task_id
        );
        telemetry::propagation::set_parent_traceparent(&span, entry.trace_context.as_deref());
        let headers = telemetry::propagation::headers(&span);
        let message = TaskMessage {
            task_id: entry.task_id,
        };
        publisher
            .publish(message, &entry.runs_on, &headers)
            .instrument(span)
            .await
            .map(|()| entry.id)
    })
    .await;
    if !done.is_empty() {
        let published = done.len();
        if let Err(e) = app
            .db("outbox", move |conn| store::outbox::remove(conn, &done))
            .await
        {
            // Published but not removed: they will be published again,
            // and a second claim of a task is refused.
            tracing::warn!(error = %e, "cannot clear published outbox entries");
        }
        tracing::debug!(count = published, "published tasks");
    }
    settled(failure, count)
}

/// Publishes a batch of recorded events; true when the batch was full.
async fn publish_events(app: &App, publisher: &Publisher) -> Result<bool, Stop> {
    let events = read(app, "events", |conn| {
        store::events::unpublished(conn, BATCH)
    })
    .await?;
    let count = events.len();
    let (done, failure) = in_order(events, |event| async move {
        let id = event.id.clone();
        let span = tracing::info_span!(
            "publish event",
            otel.kind = "producer",
            event = %id,
            kind = %event.kind,
            task_id = event.task_id,
        );
        telemetry::propagation::set_parent_traceparent(&span, event.trace_context.as_deref());
        let headers = telemetry::propagation::headers(&span);
        let body = alert_event(event).encode_to_vec();
        publisher
            .publish_event(&id, &body, &headers)
            .instrument(span)
            .await
            .map(|()| id)
    })
    .await;
    if !done.is_empty() {
        let published = done.len();
        if let Err(e) = app
            .db("events", move |conn| {
                store::events::mark_published(conn, &done)
            })
            .await
        {
            // They will be published again; the notifier records one alert
            // per event id.
            tracing::warn!(error = %e, "cannot mark published events");
        }
        tracing::debug!(count = published, "published events");
    }
    settled(failure, count)
}

/// Reads the next batch of `what`; a database that fails stops the round.
async fn read<T, F>(app: &App, what: &'static str, query: F) -> Result<Vec<T>, Stop>
where
    F: FnOnce(&mut store::PgConnection) -> store::Result<Vec<T>> + Send + 'static,
    T: Send + 'static,
{
    app.db(what, query).await.map_err(|e| {
        tracing::warn!(error = %e, what, "cannot read the next batch");
        Stop::Database
    })
}

/// Publishes `items` one after the other, in order, until one fails;
/// returns what each confirmed publish gave back, and the failure.
async fn in_order<T, K, F, Fut>(items: Vec<T>, mut publish: F) -> (Vec<K>, Option<String>)
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<K, queue::Error>>,
{
    let mut done = Vec::with_capacity(items.len());
    for item in items {
        match publish(item).await {
            Ok(key) => done.push(key),
            Err(e) => return (done, Some(e.to_string())),
        }
    }
    (done, None)
}

/// How a batch of `count` ended: the broker failed, or whether it was full.
fn settled(failure: Option<String>, count: usize) -> Result<bool, Stop> {
    match failure {
        Some(err) => Err(Stop::Broker(err)),
        None => Ok(is_full(count)),
    }
}

fn is_full(count: usize) -> bool {
    count >= usize::try_from(BATCH).unwrap_or(usize::MAX)
}
