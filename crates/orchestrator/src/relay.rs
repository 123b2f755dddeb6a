//! The outbox relay: publishes queued task ids to RabbitMQ with confirms and
//! deletes each outbox row only once the broker has it. While the broker is
//! down tasks wait in the outbox; the relay reconnects with backoff and
//! catches up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use queue::{Publisher, TaskMessage, Topology};

use crate::app::App;

/// Entries published per round.
const BATCH: i64 = 100;
/// How often the outbox is read when nothing announced new entries.
const IDLE_POLL: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub async fn run(app: Arc<App>, amqp_url: String, topology: Topology) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(&amqp_url, &topology).await {
            Ok((connection, publisher)) => {
                tracing::info!("connected to the broker");
                app.broker_up.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(200);
                let err = relay(&app, &publisher).await;
                app.broker_up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, "lost the broker; tasks wait in the outbox");
                let _ = connection.close(200, "reconnecting".into()).await;
            }
            Err(err) => {
                app.broker_up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, retry_in = ?backoff, "broker unreachable");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(
    url: &str,
    topology: &Topology,
) -> queue::Result<(queue::lapin::Connection, Publisher)> {
    let connection = queue::connect(url).await?;
    let publisher = Publisher::open(&connection, topology).await?;
    Ok((connection, publisher))
}

/// Publishes until the broker fails; returns why.
async fn relay(app: &App, publisher: &Publisher) -> String {
    loop {
        let entries = match app
            .db("outbox", |conn| store::outbox::oldest(conn, BATCH))
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                // The database is down: wait and try again, the broker is fine.
                tracing::warn!(error = %e, "cannot read the outbox");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        let mut done = Vec::with_capacity(entries.len());
        let mut failure = None;
        for (entry_id, task_id) in &entries {
            match publisher.publish(TaskMessage { task_id: *task_id }).await {
                Ok(()) => done.push(*entry_id),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if !done.is_empty() {
            let count = done.len();
            if let Err(e) = app
                .db("outbox", move |conn| store::outbox::remove(conn, &done))
                .await
            {
                // Published but not removed: they will be published again,
                // and a second claim of a task is refused.
                tracing::warn!(error = %e, "cannot clear published outbox entries");
            }
            tracing::debug!(count, "published tasks");
        }
        if let Some(err) = failure {
            return err;
        }
        if !publisher.is_open() {
            return "channel closed".to_owned();
        }
        if entries.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            let _ = tokio::time::timeout(IDLE_POLL, app.outbox.notified()).await;
        }
    }
}
