//! The durable spool of verified webhook deliveries the orchestrator could
//! not take when they came (it, or its database, was down): each is written
//! to disk and synced before the `202 {"queued": true}` answer, and handed
//! over in arrival order by [`drain`] as soon as the orchestrator answers
//! again. A delivery leaves the spool only once the orchestrator has stored
//! it; handing one over twice (after a crash between the two) is harmless,
//! since the orchestrator dedupes on the delivery id.
//!
//! While the spool holds anything, new deliveries join the end of it rather
//! than overtake it, so the tasks of a branch are created in the order its
//! pushes came.

mod files;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use backon::Retryable;
use chrono::{DateTime, Utc};
use prost::Message;
use proto::{ErrorCode, IngestWebhookRequest};
use tokio::sync::{Mutex, Notify};

use crate::Client;

/// How long one hand-over may take before it counts as the orchestrator
/// being away (the delivery stays, and is handed over again).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a hand-over that failed in an unexpected way is tried before
/// the delivery is set aside.
const INTERNAL_ATTEMPTS: u32 = 5;

/// A spool delivery older than this is logged as an error, once per age
/// step, and reported to the orchestrator with its hand-over (an alert).
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Why the spool could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the webhook spool {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error(
        "the webhook spool {0} is in use by another gateway; give each gateway its own SLIPWAY_DATA_DIR"
    )]
    Locked(PathBuf),
    #[error("the webhook spool {dir} holds {name}, which does not decode: {source}")]
    Corrupt {
        dir: PathBuf,
        name: String,
        source: prost::DecodeError,
    },
}

/// Why a delivery could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("webhook spool full ({held} of {max} bytes held)")]
    Full { held: u64, max: u64 },
    #[error("cannot write the webhook spool: {0}")]
    Disk(io::Error),
}

/// One spooled delivery.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    bytes: u64,
    received: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// What the entries take on disk.
    bytes: u64,
    next_seq: u64,
}

impl Queue {
    fn push(&mut self, entry: Entry) {
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
    }

    fn pop(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= entry.bytes;
        }
    }
}

/// What the spool holds, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub deliveries: u64,
    pub bytes: u64,
    /// How long the oldest delivery has waited.
    pub oldest: Option<Duration>,
}

/// What the queue holds, read without its lock.
#[derive(Debug, Default)]
struct Mirror {
    deliveries: AtomicU64,
    bytes: AtomicU64,
    /// The oldest delivery's arrival, in ms since the epoch; 0 when empty.
    oldest_ms: AtomicI64,
}

impl Mirror {
    fn set(&self, queue: &Queue) {
        self.deliveries
            .store(queue.entries.len() as u64, Ordering::SeqCst);
        self.bytes.store(
            queue.entries.iter().map(|e| e.bytes).sum(),
            Ordering::SeqCst,
        );
        self.oldest_ms.store(
            queue
                .entries
                .front()
                .map_or(0, |e| e.received.timestamp_millis().max(1)),
            Ordering::SeqCst,
        );
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    queue: Mutex<Queue>,
    mirror: Mirror,
    /// Woken when a delivery is added.
    added: Notify,
    /// Held while the gateway runs.
    _lock: File,
}

impl Spool {
    /// Opens the spool under `data_dir`, with the deliveries a previous run
    /// left, in arrival order.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Self, OpenError> {
        let dir = files::dir(data_dir);
        let io_err = |source| OpenError::Io {
            dir: dir.clone(),
            source,
        };
        files::prepare(&dir).map_err(io_err)?;
        let lock = files::lock(&dir)
            .map_err(io_err)?
            .ok_or_else(|| OpenError::Locked(dir.clone()))?;
        let mut queue = Queue::default();
        for name in files::list(&dir).map_err(io_err)? {
            let bytes = files::read(&dir, &name).map_err(io_err)?;
            let request = IngestWebhookRequest::decode(bytes.as_slice()).map_err(|source| {
                OpenError::Corrupt {
                    dir: dir.clone(),
                    name: name.clone(),
                    source,
                }
            })?;
            queue.next_seq = files::seq(&name).unwrap_or(0) + 1;
            queue.push(Entry {
                name,
                bytes: bytes.len() as u64,
                received: received_at(&request),
            });
        }
        if !queue.entries.is_empty() {
            tracing::info!(
                deliveries = queue.entries.len(),
                "webhook spool holds deliveries from before; handing them over"
            );
        }
        let mirror = Mirror::default();
        mirror.set(&queue);
        Ok(Self {
            dir,
            max_bytes,
            queue: Mutex::new(queue),
            mirror,
            added: Notify::new(),
            _lock: lock,
        })
    }

    /// Whether deliveries wait: a new one must then join them.
    pub fn holds_any(&self) -> bool {
        self.mirror.deliveries.load(Ordering::SeqCst) > 0
    }

    pub fn depth(&self) -> Depth {
        let oldest_ms = self.mirror.oldest_ms.load(Ordering::SeqCst);
        let oldest = (oldest_ms > 0).then(|| {
            let age = Utc::now().timestamp_millis().saturating_sub(oldest_ms);
            Duration::from_millis(u64::try_from(age).unwrap_or(0))
        });
        Depth {
            deliveries: self.mirror.deliveries.load(Ordering::SeqCst),
            bytes: self.mirror.bytes.load(Ordering::SeqCst),
            oldest,
        }
    }

    /// Keeps a delivery durably; it is handed over later, after every
    /// delivery kept before it.
    pub async fn keep(&self, mut request: IngestWebhookRequest) -> Result<(), Refused> {
        let received = Utc::now();
        request
            .received_at
            .get_or_insert(proto::timestamp(received));
        let bytes = request.encode_to_vec();
        let mut queue = self.queue.lock().await;
        let held = queue.bytes;
        if held + bytes.len() as u64 > self.max_bytes {
            return Err(Refused::Full {
                held,
                max: self.max_bytes,
            });
        }
        let name = files::name(queue.next_seq);
        let (dir, file) = (self.dir.clone(), name.clone());
        let size = bytes.len() as u64;
        tokio::task::spawn_blocking(move || files::write(&dir, &file, &bytes))
            .await
            .map_err(|e| Refused::Disk(io::Error::other(e)))?
            .map_err(Refused::Disk)?;
        queue.next_seq += 1;
        queue.push(Entry {
            name,
            bytes: size,
            received,
        });
        self.mirror.set(&queue);
        drop(queue);
        self.added.notify_one();
        Ok(())
    }

    /// The oldest delivery, read from disk.
    async fn front(&self) -> Option<(Entry, io::Result<Vec<u8>>)> {
        let entry = self.queue.lock().await.entries.front().cloned()?;
        let (dir, name) = (self.dir.clone(), entry.name.clone());
        let bytes = tokio::task::spawn_blocking(move || files::read(&dir, &name))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        Some((entry, bytes))
    }

    /// Takes the oldest delivery off the spool: handed over, or set aside.
    async fn pop(&self, name: &str, set_aside: bool) -> io::Result<()> {
        let mut queue = self.queue.lock().await;
        let (dir, file) = (self.dir.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            if set_aside {
                files::set_aside(&dir, &file)
            } else {
                files::remove(&dir, &file)
            }
        })
        .await
        .map_err(io::Error::other)??;
        if queue.entries.front().is_some_and(|e| e.name == name) {
            queue.pop();
        }
        self.mirror.set(&queue);
        Ok(())
    }
}

fn received_at(request: &IngestWebhookRequest) -> DateTime<Utc> {
    request
        .received_at
        .as_ref()
        .and_then(proto::datetime)
        .unwrap_or_else(Utc::now)
}

/// Whether a hand-over failed because the orchestrator (or what it needs)
/// is away, or rejected our token (an operator can fix that): kept and
/// tried again, however long it takes.
fn waits(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::Unavailable | ErrorCode::Unauthenticated)
}

/// What became of one hand-over.
enum HandedOver {
    Stored,
    /// Refused for good: kept aside.
    Refused(proto::ApiError),
}

/// Hands spooled deliveries to the orchestrator, oldest first, for as long
/// as the gateway runs.
pub async fn drain(spool: Arc<Spool>, client: Client, metrics: Arc<crate::metrics::SpoolCounters>) {
    loop {
        let added = spool.added.notified();
        let Some((entry, bytes)) = spool.front().await else {
            added.await;
            continue;
        };
        let request = match bytes
            .map_err(|e| e.to_string())
            .and_then(|b| IngestWebhookRequest::decode(b.as_slice()).map_err(|e| e.to_string()))
        {
            Ok(request) => request,
            Err(why) => {
                tracing::error!(file = %entry.name, error = %why, "spooled delivery unreadable; set aside");
                settle(&spool, &entry, true, &metrics).await;
                continue;
            }
        };
        match hand_over(&client, &request, &entry).await {
            HandedOver::Stored => {
                metrics.handed_over.inc();
                settle(&spool, &entry, false, &metrics).await;
            }
            HandedOver::Refused(err) => {
                tracing::error!(
                    provider = %request.provider,
                    delivery = %request.delivery_id,
                    file = %entry.name,
                    error = %err,
                    "the orchestrator refused a spooled delivery; kept in the spool's failed/ directory"
                );
                metrics.set_aside.inc();
                settle(&spool, &entry, true, &metrics).await;
            }
        }
    }
}

/// Removes a handled delivery, retrying while the disk fails (the
/// delivery stays first meanwhile: nothing overtakes it).
async fn settle(
    spool: &Spool,
    entry: &Entry,
    set_aside: bool,
    metrics: &crate::metrics::SpoolCounters,
) {
    let remove = || spool.pop(&entry.name, set_aside);
    if let Err(e) = remove
        .retry(proto::RETRY_CALLS)
        .notify(|e, _| {
            metrics.disk_errors.inc();
            tracing::warn!(file = %entry.name, error = %e, "cannot remove a handed-over delivery from the webhook spool; retrying");
        })
        .await
    {
        tracing::error!(file = %entry.name, error = %e, "cannot remove a delivery from the webhook spool");
    }
}

/// Hands one delivery over, retrying while the orchestrator is away.
async fn hand_over(client: &Client, request: &IngestWebhookRequest, entry: &Entry) -> HandedOver {
    let mut internal_failures = 0u32;
    let mut stale_logged = false;
    let call = || async {
        let mut client = client.clone();
        match tokio::time::timeout(HAND_OVER_TIMEOUT, client.ingest_webhook(request.clone())).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(proto::ApiError::from(status)),
            Err(_) => Err(proto::ApiError::new(
                ErrorCode::Unavailable,
                "orchestrator unavailable: no answer in time",
            )),
        }
    };
    let result = call
        .retry(proto::RETRY_CALLS)
        .when(|e| {
            if waits(e.code) {
                return true;
            }
            internal_failures += 1;
            e.code == ErrorCode::Internal && internal_failures < INTERNAL_ATTEMPTS
        })
        .notify(|e, _| {
            let waited = (Utc::now() - entry.received).to_std().unwrap_or_default();
            if waited > STALE_AFTER && !stale_logged {
                stale_logged = true;
                tracing::error!(
                    delivery = %request.delivery_id,
                    waited_s = waited.as_secs(),
                    error = %e,
                    "a webhook delivery has waited in the spool for over an hour: the orchestrator cannot take it"
                );
            }
        })
        .await;
    match result {
        Ok(()) => HandedOver::Stored,
        Err(e) => HandedOver::Refused(e),
    }
}

#[cfg(test)]
mod tests;
