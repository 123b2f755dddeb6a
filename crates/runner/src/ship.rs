//! Ships a task's log to the orchestrator: chunks are queued in order,
//! batched per step, and sent by one task so they arrive in the order they
//! were written. A flush waits until everything queued so far is stored.

use backon::Retryable as _;
use tokio::sync::{mpsc, oneshot};

use crate::client::{CallError, Lease, RunnerClient};

/// Largest batch sent in one call.
const BATCH_BYTES: usize = 64 * 1024;

enum Item {
    Chunk(i32, Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// The sending side, held by the step executor.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<Item>,
}

impl LogSink {
    /// Starts the shipping task for one lease.
    pub fn start(client: RunnerClient, lease: Lease) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // In the task's span: the log calls join the task's trace.
        tokio::spawn(tracing::Instrument::in_current_span(ship(
            client, lease, rx,
        )));
        Self { tx }
    }

    /// Queues output; never blocks, so a step's reader is never held up by
    /// the network.
    pub fn write(&self, position: i32, data: Vec<u8>) {
        if !data.is_empty() {
            // A closed shipper means the lease is gone; the output is moot.
            let _ = self.tx.send(Item::Chunk(position, data));
        }
    }

    pub fn line(&self, position: i32, text: &str) {
        self.write(position, format!("{text}\n").into_bytes());
    }

    /// Waits until everything written so far reached the orchestrator (or
    /// could not, for good).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn ship(mut client: RunnerClient, lease: Lease, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut pending: Option<Item> = None;
    loop {
        let item = match pending.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        match item {
            Item::Flush(done) => {
                let _ = done.send(());
            }
            Item::Chunk(position, mut data) => {
                // Take whatever else of the same step is already queued.
                while data.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(Item::Chunk(p, more)) if p == position => data.extend_from_slice(&more),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if !send(&mut client, &lease, position, data).await {
                    // The lease is lost: drain and drop everything, answer flushes.
                    while let Some(item) = rx.recv().await {
                        if let Item::Flush(done) = item {
                            let _ = done.send(());
                        }
                    }
                    return;
                }
            }
        }
    }
}

/// Sends one batch, retrying while the orchestrator is unreachable; false
/// when the lease is gone.
async fn send(client: &mut RunnerClient, lease: &Lease, position: i32, data: Vec<u8>) -> bool {
    let sent = (|| {
        let (mut client, data) = (client.clone(), data.clone());
        async move { client.append_log(lease, position, data).await }
    })
    .retry(proto::RETRY_CALLS)
    .when(CallError::is_transient)
    .notify(
        |e, _| tracing::warn!(task_id = lease.task_id, error = %e, "cannot ship the log; retrying"),
    )
    .await;
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(task_id = lease.task_id, error = %e, "log refused");
            false
        }
    }
}
