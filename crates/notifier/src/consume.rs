//! Takes events from the notify queue. An event is acknowledged only once
//! its alert (or that it matched nothing) and its commit status are
//! recorded, so an event taken while the orchestrator is away is handled
//! when it is back, and one whose notifier stopped midway goes to the
//! next. A message that is not an event is logged and dropped: it can
//! never be handled.

use std::collections::HashMap;
use std::sync::Arc;

use backon::BackoffBuilder as _;
use futures_util::StreamExt;
use prost::Message as _;
use queue::Topology;
use queue::lapin::message::Delivery;
use queue::lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{oneshot, watch};
use tracing::Instrument as _;

use crate::deliver::{Deliverer, HandleError};
use crate::statuses::{self, Statuses};

/// Consumes until `stop` is set, reconnecting to the broker with backoff.
pub async fn run(
    deliverer: Arc<Deliverer>,
    statuses: Arc<Statuses>,
    amqp_url: String,
    amqp_ca: Option<std::path::PathBuf>,
    topology: Topology,
    prefetch: u16,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = queue::RECONNECT.build();
    let tag = format!("notifier-{}", std::process::id());
    loop {
        match queue::connect(&amqp_url, amqp_ca.as_deref()).await {
            Ok(connection) => {
                match queue::event_consumer(&connection, &topology, prefetch, &tag).await {
                    Ok((_channel, consumer)) => {
                        tracing::info!("taking events from the broker");
                        delays = queue::RECONNECT.build();
                        let why = consume(&deliverer, &statuses, consumer, stop.clone()).await;
                        if let Some(why) = why {
                            tracing::warn!(error = %why, "lost the broker");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot consume events"),
                }
                // Closing hands unacknowledged events back to the queue.
                let _ = connection.close(200, "notifier stopping".into()).await;
            }
            Err(e) => tracing::warn!(error = %e, "broker unreachable"),
        }
        if *stop.borrow() {
            return;
        }
        // The policy has no end.
        let backoff = delays.next().unwrap_or_default();
        tracing::debug!(retry_in = ?backoff, "connecting to the broker again");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Handles deliveries until the consumer ends (returns why) or `stop` is set.
async fn consume(
    deliverer: &Arc<Deliverer>,
    statuses: &Arc<Statuses>,
    mut consumer: queue::lapin::Consumer,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let mut handlers = tokio::task::JoinSet::new();
    let handler_stop = stop.clone();
    let mut chains = TaskChains::default();
    let why = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let d = deliverer.clone();
                    let s = statuses.clone();
                    let stop = handler_stop.clone();
                    let (previous, done) = chains.join(task_of(&delivery.data));
                    handlers.spawn(async move {
                        if let Some(previous) = previous {
                            // Finished or gone: either way it is this one's turn.
                            let _ = previous.await;
                        }
                        handle(&d, &s, delivery, stop).await;
                        drop(done);
                    });
                }
                Some(Err(e)) => break Some(e.to_string()),
                None => break Some("consumer closed".to_owned()),
            },
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break None,
        }
    };
    // Unfinished handlers leave their events unacknowledged, for the next.
    handlers.abort_all();
    why
}

/// The task an event message is about, when it decodes and has one.
fn task_of(data: &[u8]) -> Option<i64> {
    proto::AlertEvent::decode(data).ok()?.task_id
}

/// Per task, the end of the handler of its latest event: the handler of
/// its next event waits for it, so one task's events are handled in the
/// order the broker gave them (a `pending` commit status is recorded before
/// the `success` that follows it) while other tasks' go on in parallel.
#[derive(Default)]
struct TaskChains {
    ends: HashMap<i64, oneshot::Receiver<()>>,
}

/// Past this many tasks remembered, those whose last handler has finished
/// are forgotten.
const CHAINS_SWEEP: usize = 1024;

impl TaskChains {
    /// What a new event of `task` waits for, and what it drops when done.
    fn join(
        &mut self,
        task: Option<i64>,
    ) -> (Option<oneshot::Receiver<()>>, Option<oneshot::Sender<()>>) {
        let Some(task) = task else {
            return (None, None);
        };
        if self.ends.len() >= CHAINS_SWEEP {
            self.ends.retain(|_, end| {
                matches!(end.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
        }
        let (done, end) = oneshot::channel();
        (self.ends.insert(task, end), Some(done))
    }
}

/// Handles one event in a span that joins its task's trace (the message's
/// `traceparent`).
async fn handle(
    deliverer: &Arc<Deliverer>,
    statuses: &Arc<Statuses>,
    delivery: Delivery,
    stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!(
        "handle event",
        otel.kind = "consumer",
        event = tracing::field::Empty,
        kind = tracing::field::Empty,
        task_id = tracing::field::Empty,
    );
    telemetry::propagation::set_parent(&span, &queue::headers(&delivery.properties));
    handle_in_span(deliverer, statuses, delivery, stop)
        .instrument(span)
        .await;
}

async fn handle_in_span(
    deliverer: &Arc<Deliverer>,
    statuses: &Arc<Statuses>,
    delivery: Delivery,
    mut stop: watch::Receiver<bool>,
) {
    let incoming = match proto::AlertEvent::decode(delivery.data.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|m| crate::convert::incoming(m).map_err(|e| e.to_string()))
    {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a message that is not an event");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        }
    };
    let status = statuses::status_of(&incoming);
    let event = incoming.event;
    let span = tracing::Span::current();
    span.record("event", event.id.as_str());
    span.record("kind", tracing::field::display(&event.kind));
    if let Some(task_id) = event.task_id {
        span.record("task_id", task_id);
    }
    // Each part, once recorded (or refused for good), is sent at once and
    // not asked for again; the event is acknowledged when both are.
    let mut alert_done = false;
    let mut status_done = status.is_none();
    let mut delays = proto::RETRY_CALLS.build();
    loop {
        let mut unavailable = None;
        if !alert_done {
            match deliverer.open(&event).await {
                Ok(claimed) => {
                    alert_done = true;
                    deliverer.spawn_all(claimed).await;
                }
                Err(HandleError::Rejected(why)) => {
                    tracing::warn!(event = %event.id, kind = %event.kind, error = %why, "dropping an event that cannot be handled");
                    alert_done = true;
                }
                Err(HandleError::Unavailable(e)) => unavailable = Some(e),
            }
        }
        if let (false, Some(status)) = (status_done, &status) {
            match statuses.open(&event.id, status.clone()).await {
                Ok(claimed) => {
                    status_done = true;
                    statuses.spawn_all(claimed).await;
                }
                Err(HandleError::Rejected(why)) => {
                    tracing::warn!(event = %event.id, kind = %event.kind, error = %why, "dropping the commit status of an event");
                    status_done = true;
                }
                Err(HandleError::Unavailable(e)) => unavailable = Some(e),
            }
        }
        if alert_done && status_done {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // Handed to another notifier: the alert and the status
                // exist, so it sends nothing twice.
                tracing::warn!(event = %event.id, error = %e, "cannot acknowledge the event");
            }
            return;
        }
        // The policy has no end.
        let backoff = delays.next().unwrap_or_default();
        if let Some(e) = unavailable {
            tracing::warn!(event = %event.id, error = %e, retry_in = ?backoff, "orchestrator unavailable");
        }
        let stopping = tokio::select! {
            _ = tokio::time::sleep(backoff) => false,
            stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
        };
        if stopping {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let _ = delivery.nack(requeue).await;
            return;
        }
    }
}
