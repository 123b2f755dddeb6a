//! Ships a task's log, the changes of its steps and the commit its clone
//! checked out to the orchestrator: all are queued in order, chunks batched per step and consecutive step
//! changes in one call, and sent by one task so they arrive in the order
//! they happened. A flush waits until everything queued so far is stored.
//! Lines longer than `SLIPWAY_LOG_LINE_MAX_BYTES` are cut on the way, with
//! a marker; a line is never held whole, only its length counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use backon::Retryable as _;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::client::{CallError, Lease, RunnerClient};
use crate::git::Checkout;
use crate::report::persist;

/// Largest batch sent in one call: the orchestrator's default limit of a
/// chunk (`SLIPWAY_LOG_CHUNK_MAX_BYTES`). One refused as too large makes
/// the batches of the rest of the task [`SMALL_BATCH_BYTES`].
const BATCH_BYTES: usize = 1024 * 1024;

/// The least any orchestrator takes per chunk.
const SMALL_BATCH_BYTES: usize = 64 * 1024;

/// Most output queued and not yet stored, in bytes: readers of a step's
/// output wait for room past it ([`LogSink::room`]), so that the runner's
/// memory stays bounded whatever a step prints.
const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The bytes queued, and a signal when some were stored.
#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    freed: Notify,
}

impl Queued {
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }
}

enum Item {
    Chunk(i32, Vec<u8>),
    Step(StepReport),
    Commit(Box<Checkout>),
    Flush(oneshot::Sender<bool>),
    Finish(Finish),
}

/// The task's end, reported once everything queued before it is stored,
/// with the step changes right before it in the same call.
struct Finish {
    status: &'static str,
    error: Option<String>,
    done: oneshot::Sender<bool>,
}

/// Most step changes sent in one call.
const STEPS_PER_CALL: usize = 64;

/// A step's change, stamped when the runner saw it.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub position: i32,
    pub status: &'static str,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub at: SystemTime,
}

/// The sending side, held by the step executor.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<Item>,
    queued: Arc<Queued>,
}

impl LogSink {
    /// Starts the shipping task for one lease; lines past `line_max` bytes
    /// are cut.
    pub fn start(client: RunnerClient, lease: Lease, line_max: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        // In the task's span: the log calls join the task's trace.
        tokio::spawn(tracing::Instrument::in_current_span(ship(
            client,
            lease,
            rx,
            LineCut::new(line_max),
            Arc::clone(&queued),
        )));
        Self { tx, queued }
    }

    /// Queues output; never blocks. Readers of a step's output wait for
    /// [`room`](Self::room) before they read more.
    pub fn write(&self, position: i32, data: Vec<u8>) {
        if !data.is_empty() {
            let len = data.len();
            self.queued.add(len);
            // A closed shipper means the lease is gone; the output is moot.
            if self.tx.send(Item::Chunk(position, data)).is_err() {
                self.queued.release(len);
            }
        }
    }

    /// Resolves once less than [`QUEUE_BYTES`] wait to be stored (at once
    /// when the shipper is gone: what is written then is dropped).
    pub async fn room(&self) {
        loop {
            let freed = self.queued.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.queued.bytes.load(Ordering::Acquire) < QUEUE_BYTES || self.tx.is_closed() {
                return;
            }
            freed.await;
        }
    }

    pub fn line(&self, position: i32, text: &str) {
        self.write(position, format!("{text}\n").into_bytes());
    }

    /// Queues a step's change behind the output written before it; false
    /// when the lease is gone.
    pub fn step(&self, report: StepReport) -> bool {
        self.tx.send(Item::Step(report)).is_ok()
    }

    /// Queues the commit a clone checked out, behind what came before it;
    /// false when the lease is gone.
    pub fn commit(&self, checkout: Checkout) -> bool {
        self.tx.send(Item::Commit(Box::new(checkout))).is_ok()
    }

    /// Reports the task's end (`success`, `failed`, `cancelled`) after
    /// everything queued so far, the last step changes in the same call, so
    /// that they are stored first, in one transaction with it; false when
    /// something was refused for good (the lease is gone).
    pub async fn finish(&self, status: &'static str, error: Option<String>) -> bool {
        let (done, wait) = oneshot::channel();
        let end = Finish {
            status,
            error,
            done,
        };
        if self.tx.send(Item::Finish(end)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    /// Waits until everything queued so far reached the orchestrator; false
    /// when some of it was refused for good (the lease is gone).
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

async fn ship(
    mut client: RunnerClient,
    lease: Lease,
    mut rx: mpsc::UnboundedReceiver<Item>,
    mut cut: LineCut,
    queued: Arc<Queued>,
) {
    let mut pending: Option<Item> = None;
    let mut batch = BATCH_BYTES;
    while let Some(item) = next(&mut pending, &mut rx).await {
        let stored = match item {
            Item::Flush(done) => {
                let _ = done.send(true);
                true
            }
            Item::Step(first) => {
                let mut steps = vec![first];
                // Take the changes queued right behind it.
                while steps.len() < STEPS_PER_CALL {
                    match rx.try_recv() {
                        Ok(Item::Step(next)) => steps.push(next),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match pending.take() {
                    Some(Item::Finish(end)) => send_finish(&client, &lease, steps, end).await,
                    other => {
                        pending = other;
                        send_steps(&client, &lease, steps).await
                    }
                }
            }
            Item::Finish(end) => send_finish(&client, &lease, Vec::new(), end).await,
            Item::Commit(checkout) => send_commit(&client, &lease, &checkout).await,
            Item::Chunk(position, data) => {
                let mut taken = data.len();
                let mut data = cut.apply(position, &data);
                // Take whatever else of the same step is already queued.
                while data.len() < batch {
                    match rx.try_recv() {
                        Ok(Item::Chunk(p, more)) if p == position => {
                            taken += more.len();
                            data.extend_from_slice(&cut.apply(p, &more));
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut sent = true;
                let mut rest = data.as_slice();
                while !rest.is_empty() {
                    let piece = &rest[..rest.len().min(batch)];
                    match send(&mut client, &lease, position, piece.to_vec()).await {
                        Shipped::Stored => rest = &rest[piece.len()..],
                        Shipped::TooLarge if batch > SMALL_BATCH_BYTES => {
                            tracing::info!(
                                task_id = lease.task_id,
                                bytes = piece.len(),
                                "the orchestrator takes smaller log chunks; sending 64 KiB ones"
                            );
                            batch = SMALL_BATCH_BYTES;
                        }
                        Shipped::TooLarge | Shipped::Refused => {
                            sent = false;
                            break;
                        }
                    }
                }
                queued.release(taken);
                sent
            }
        };
        if !stored {
            // The lease is lost: drop everything, answer flushes with the
            // loss; writers find the shipper closed.
            rx.close();
            while let Some(item) = next(&mut pending, &mut rx).await {
                match item {
                    Item::Flush(done) | Item::Finish(Finish { done, .. }) => {
                        let _ = done.send(false);
                    }
                    Item::Chunk(_, data) => queued.release(data.len()),
                    Item::Step(_) | Item::Commit(_) => {}
                }
            }
        }
    }
}

/// The item put aside, else the next queued; `None` once every sender is
/// gone.
async fn next(pending: &mut Option<Item>, rx: &mut mpsc::UnboundedReceiver<Item>) -> Option<Item> {
    match pending.take() {
        Some(item) => Some(item),
        None => rx.recv().await,
    }
}

/// Sends step changes in one call, retrying while the orchestrator is
/// unreachable; false when they were refused (the lease is gone).
async fn send_steps(client: &RunnerClient, lease: &Lease, steps: Vec<StepReport>) -> bool {
    let steps = wire(steps);
    let sent = persist(client, |mut c| {
        let steps = steps.clone();
        async move { c.update_steps(lease, steps).await }
    })
    .await;
    if let Err(e) = &sent {
        tracing::warn!(task_id = lease.task_id, error = %e, "step changes refused");
    }
    sent.is_ok()
}

/// The step changes as the orchestrator takes them.
fn wire(steps: Vec<StepReport>) -> Vec<proto::UpdateStepRequest> {
    steps
        .into_iter()
        .map(|s| proto::UpdateStepRequest {
            lease: None,
            position: s.position,
            status: s.status.to_owned(),
            exit_code: s.exit_code,
            error: s.error,
            at: Some(proto::timestamp(chrono::DateTime::<chrono::Utc>::from(
                s.at,
            ))),
        })
        .collect()
}

/// Reports the task's end with the step changes before it, retrying while
/// the orchestrator is unreachable; false when it was refused (the lease is
/// gone). Whoever waits for the end hears the same.
async fn send_finish(
    client: &RunnerClient,
    lease: &Lease,
    steps: Vec<StepReport>,
    end: Finish,
) -> bool {
    let steps = wire(steps);
    let sent = persist(client, |mut c| {
        let (steps, error) = (steps.clone(), end.error.clone());
        async move { c.finish(lease, end.status, error, steps).await }
    })
    .await;
    if let Err(e) = &sent {
        tracing::warn!(task_id = lease.task_id, error = %e, "the end of the task was refused");
    }
    let _ = end.done.send(sent.is_ok());
    sent.is_ok()
}

/// Reports the commit checked out, retrying while the orchestrator is
/// unreachable; false when it was refused (the lease is gone).
async fn send_commit(client: &RunnerClient, lease: &Lease, checkout: &Checkout) -> bool {
    let sent = persist(client, |mut c| async move {
        c.report_commit(lease, checkout).await
    })
    .await;
    if let Err(e) = &sent {
        tracing::warn!(task_id = lease.task_id, error = %e, "commit refused");
    }
    sent.is_ok()
}

/// What became of a batch.
enum Shipped {
    Stored,
    /// Larger than the orchestrator takes.
    TooLarge,
    /// Refused for good: the lease is gone.
    Refused,
}

/// Sends one batch, retrying while the orchestrator is unreachable.
async fn send(client: &mut RunnerClient, lease: &Lease, position: i32, data: Vec<u8>) -> Shipped {
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
        Ok(()) => Shipped::Stored,
        Err(e) if e.0.code == proto::ErrorCode::PayloadTooLarge => Shipped::TooLarge,
        Err(e) => {
            tracing::warn!(task_id = lease.task_id, error = %e, "log refused");
            Shipped::Refused
        }
    }
}

/// Cuts each line of each step's output at a number of bytes as the output
/// streams by: what is past the limit is dropped up to the line's end, and
/// a marker says so. A carriage return ends a line too (progress bars
/// redraw one line with it).
struct LineCut {
    /// Longest line kept, in bytes.
    max: usize,
    /// Per step position: bytes of the current line so far (up to `max`)
    /// and whether it was cut.
    lines: HashMap<i32, (usize, bool)>,
}

impl LineCut {
    fn new(max: usize) -> Self {
        Self {
            max,
            lines: HashMap::new(),
        }
    }

    fn marker(&self) -> String {
        format!(" [line cut: longer than {} bytes]", self.max)
    }

    /// `data` of step `position` with its over-long lines cut.
    fn apply(&mut self, position: i32, data: &[u8]) -> Vec<u8> {
        let max = self.max;
        let marker = self.marker();
        let (line, cut) = self.lines.entry(position).or_insert((0, false));
        let mut out = Vec::with_capacity(data.len().min(max + marker.len() + 1));
        let mut rest = data;
        while !rest.is_empty() {
            let end = rest.iter().position(|b| matches!(b, b'\n' | b'\r'));
            let segment = &rest[..end.unwrap_or(rest.len())];
            if !*cut {
                let room = max - *line;
                if segment.len() <= room {
                    out.extend_from_slice(segment);
                    *line += segment.len();
                } else {
                    let keep = char_boundary(segment, room);
                    out.extend_from_slice(&segment[..keep]);
                    out.extend_from_slice(marker.as_bytes());
                    *cut = true;
                }
            }
            match end {
                Some(i) => {
                    out.push(rest[i]);
                    (*line, *cut) = (0, false);
                    rest = &rest[i + 1..];
                }
                None => break,
            }
        }
        out
    }
}

/// The largest `n <= at` that does not split a UTF-8 character of `text`
/// (as far as `text` shows one).
fn char_boundary(text: &[u8], at: usize) -> usize {
    let mut n = at.min(text.len());
    // At most three continuation bytes (`10xxxxxx`) follow a lead byte.
    for _ in 0..3 {
        if n == 0 || n == text.len() || text[n] & 0xC0 != 0x80 {
            break;
        }
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(max: usize, chunks: &[&[u8]]) -> String {
        let mut cut = LineCut::new(max);
        let out: Vec<u8> = chunks.iter().flat_map(|c| cut.apply(0, c)).collect();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn short_lines_pass_unchanged() {
        assert_eq!(cut(8, &[b"one\ntwo", b"\nthree\n"]), "one\ntwo\nthree\n");
        assert_eq!(cut(8, &[b"12345678\n"]), "12345678\n");
    }

    #[test]
    fn a_long_line_is_cut_with_a_marker_across_chunks() {
        let marker = " [line cut: longer than 8 bytes]";
        assert_eq!(
            cut(8, &[b"12345", b"6789abc", b"def\nnext\n"]),
            format!("12345678{marker}\nnext\n")
        );
        // Without an end: cut once, the rest dropped as it comes.
        let many: Vec<&[u8]> = vec![b"xxxxxxxxxx"; 1000];
        assert_eq!(cut(8, &many), format!("xxxxxxxx{marker}"));
        // A carriage return ends a line as well.
        assert_eq!(
            cut(8, &[b"1234567890\r1\r"]),
            format!("12345678{marker}\r1\r")
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: the cut falls inside it and backs off.
        assert_eq!(
            cut(8, &["1234567é9\n".as_bytes()]),
            "1234567 [line cut: longer than 8 bytes]\n"
        );
    }

    #[test]
    fn each_step_has_its_own_line() {
        let mut cut = LineCut::new(4);
        assert_eq!(cut.apply(0, b"abc"), b"abc");
        assert_eq!(cut.apply(1, b"defg\n"), b"defg\n");
        assert_eq!(
            String::from_utf8_lossy(&cut.apply(0, b"de\n")),
            "d [line cut: longer than 4 bytes]\n"
        );
    }
}
