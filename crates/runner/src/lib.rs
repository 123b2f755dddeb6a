//! Slipway's runner: takes task messages from RabbitMQ, claims each task's
//! lease from the orchestrator, and runs it (clone with gix, steps with
//! `sh -e`). The delivery is acknowledged as soon as the claim is stored, so
//! no delivery stays unacknowledged for the length of a task; from then on
//! the lease, renewed by heartbeat, is what keeps the task this runner's.
//!
//! [`Runner::build`] checks the settings and that the broker answers;
//! [`Runner::run`] works until `shutdown` resolves.

pub mod client;
pub mod executor;
pub mod git;
pub mod process;
pub mod settings;
pub mod ship;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use queue::lapin::options::{BasicAckOptions, BasicNackOptions};
use queue::{TaskMessage, Topology};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use settings::Settings;

use crate::client::{Lease, RunnerClient};
use crate::executor::{Context, Job};

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("cannot reach the broker: {0}")]
    Broker(#[from] queue::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

pub struct Runner {
    settings: Settings,
    runner_id: String,
    context: Arc<Context>,
}

impl Runner {
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        let client = RunnerClient::new(&settings.orchestrator_url, &settings.api_token)
            .map_err(Error::Settings)?;
        // Fail at start, in one line, when the broker is not there.
        let probe = queue::connect(&settings.amqp_url).await?;
        let _ = probe.close(200, "probe".into()).await;
        let workspaces = settings.data_dir.join("workspaces");
        tokio::fs::create_dir_all(&workspaces)
            .await
            .map_err(|source| Error::DataDir {
                path: workspaces.display().to_string(),
                source,
            })?;
        let runner_id = if settings.runner_id.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "runner".to_owned());
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{host}-{}", &suffix[..8])
        } else {
            settings.runner_id.clone()
        };
        let context = Arc::new(Context {
            client,
            workspaces,
            heartbeat: Duration::from_millis(settings.heartbeat_ms),
            grace: Duration::from_millis(settings.kill_grace_ms),
        });
        Ok(Self {
            settings,
            runner_id,
            context,
        })
    }

    pub fn id(&self) -> &str {
        &self.runner_id
    }

    /// Takes and runs tasks until `shutdown` resolves; then stops the running
    /// steps and returns (their leases lapse and the tasks are re-queued).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let concurrency = self.settings.concurrency();
        let slots = Arc::new(Semaphore::new(concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut running = JoinSet::new();
        let topology = Topology::new(self.settings.queue_prefix.clone())
            .expiring(self.settings.queue_expires_ms);
        tracing::info!(runner = %self.runner_id, concurrency, "runner started");
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(200);
        'connect: loop {
            let consumed = async {
                let conn = queue::connect(&self.settings.amqp_url).await?;
                let (channel, consumer) =
                    queue::consume(&conn, &topology, 1, &self.runner_id).await?;
                Ok::<_, queue::Error>((conn, channel, consumer))
            };
            let (conn, _channel, mut consumer) = tokio::select! {
                () = &mut shutdown => break 'connect,
                c = consumed => match c {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "broker unreachable");
                        tokio::select! {
                            () = &mut shutdown => break 'connect,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'connect;
                    }
                },
            };
            backoff = Duration::from_millis(200);
            loop {
                // Reap finished tasks so the set does not grow.
                while running.try_join_next().is_some() {}
                let delivery = tokio::select! {
                    () = &mut shutdown => {
                        let _ = conn.close(200, "shutting down".into()).await;
                        break 'connect;
                    }
                    d = consumer.next() => d,
                };
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "lost the broker");
                        continue 'connect;
                    }
                    None => {
                        tracing::warn!("the broker cancelled the consumer");
                        continue 'connect;
                    }
                };
                let Ok(message) = TaskMessage::decode(&delivery.data) else {
                    tracing::warn!("dropping a malformed task message");
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                    continue;
                };
                // Wait for a free slot before claiming: the lease starts now.
                let permit = tokio::select! {
                    () = &mut shutdown => {
                        let _ = conn.close(200, "shutting down".into()).await;
                        break 'connect;
                    }
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'connect,
                    },
                };
                let mut client = self.context.client.clone();
                match client.claim(message.task_id, &self.runner_id).await {
                    Ok(claim) => {
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                        let Some(lease) = claim.lease.clone() else {
                            tracing::warn!(task_id = message.task_id, "claim without a lease");
                            continue;
                        };
                        let job = Job {
                            lease: Lease {
                                task_id: lease.task_id,
                                token: lease.lease_token,
                            },
                            claim,
                        };
                        let (ctx, stop) = (self.context.clone(), stop_rx.clone());
                        running.spawn(async move {
                            executor::execute(ctx, job, stop).await;
                            drop(permit);
                        });
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(task_id = message.task_id, error = %e, "cannot claim; the task goes back to the queue");
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await;
                        // Back off so an unreachable orchestrator is not hammered.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::info!(task_id = message.task_id, reason = %e, "task not claimable; dropping the message");
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
        let grace = Duration::from_millis(self.settings.kill_grace_ms) + Duration::from_secs(2);
        let _ = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        tracing::info!("runner stopped");
    }
}
