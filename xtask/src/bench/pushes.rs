//! Signed GitHub `push` webhooks sent as GitHub sends them: each once, on a
//! connection of its own, never retried, on a fixed schedule whatever the
//! answers do (open loop), with what became of each recorded: the status
//! and the `task_ids` and `queued` of its body, or why no answer came.
//!
//! Each push names a commit of its own ([`commits`]), so that the tasks of
//! a push are found by their commit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{CONNECTION, HOST};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::forges::{Delivery, Repo, push_payload};
use crate::sys;

/// How long GitHub waits for an answer before it counts a delivery as
/// failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// `n` commits in a line on top of `base` in the bare repository `bare`,
/// the last one the head of `branch`: each push names one of them, so that
/// its task is found by its commit, and the runners' mirror fetches one
/// branch (a branch per push made each fetch walk a thousand refs).
pub fn commits(bare: &Path, base: &str, branch: &str, n: usize) -> Result<Vec<String>> {
    let git = |args: &[&str]| -> Result<String> {
        sys::output(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=Slipway",
                    "-c",
                    "user.email=slipway@localhost",
                ])
                .args(args)
                .current_dir(bare),
        )
        .map(|out| out.trim().to_owned())
    };
    let tree = git(&["rev-parse", &format!("{base}^{{tree}}")])?;
    let mut made: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        let parent = made.last().map_or(base, String::as_str).to_owned();
        made.push(git(&[
            "commit-tree",
            &tree,
            "-p",
            &parent,
            "-m",
            &format!("push {i}"),
        ])?);
    }
    if let Some(head) = made.last() {
        git(&["update-ref", &format!("refs/heads/{branch}"), head])?;
    }
    Ok(made)
}

/// One push webhook, signed and ready to send.
pub struct Push {
    /// The commit it pushes (`after`), which its task runs.
    pub sha: String,
    delivery: Delivery,
}

impl Push {
    /// A push of `sha` to `branch` of the repository cloned from
    /// `clone_url`, signed with `secret`. Without `repository.full_name`,
    /// so that its task sends no commit statuses.
    pub fn new(
        secret: &[u8],
        clone_url: &str,
        delivery_id: String,
        branch: &str,
        sha: &str,
    ) -> Result<Self> {
        let repo = Repo {
            full_name: "chaos/pushes",
            clone_url,
        };
        let mut payload = push_payload(&repo, &format!("refs/heads/{branch}"), sha, branch);
        if let Some(repository) = payload["repository"].as_object_mut() {
            repository.remove("full_name");
        }
        let delivery = Delivery::new(secret, "push", delivery_id, &payload)?;
        Ok(Self {
            sha: sha.to_owned(),
            delivery,
        })
    }
}

/// A push of each of `commits` to `branch`, delivery ids
/// `<prefix>-<random>-<n>`, in order.
pub fn signed(
    secret: &[u8],
    clone_url: &str,
    prefix: &str,
    branch: &str,
    commits: &[String],
) -> Result<Vec<Push>> {
    let run = sys::random_hex(4);
    commits
        .iter()
        .enumerate()
        .map(|(i, sha)| {
            Push::new(
                secret,
                clone_url,
                format!("{prefix}-{run}-{i}"),
                branch,
                sha,
            )
        })
        .collect()
}

/// What became of one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The gateway answered.
    Status {
        code: u16,
        /// The body's `task_ids`.
        task_ids: Vec<u64>,
        /// The body's `"queued": true`: kept in the gateway's spool, its
        /// tasks to come.
        queued: bool,
    },
    /// No answer.
    None { kind: NoAnswer, why: String },
}

/// Why a push got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoAnswer {
    /// The connection was refused: nothing listened.
    Refused,
    /// The connection was reset or closed before the answer.
    Reset,
    /// No answer within GitHub's 10 s.
    TimedOut,
    Other,
}

/// One push as it went.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its place in the list given to [`Sender::start`].
    pub index: usize,
    /// When it left and when its answer (or failure) came, since the start.
    pub sent: Duration,
    pub done: Duration,
    pub answer: Answer,
}

impl Sent {
    /// Whether it was answered 2xx.
    pub fn accepted(&self) -> bool {
        matches!(
            self.answer,
            Answer::Status {
                code: 200..=299,
                ..
            }
        )
    }
}

/// Pushes being sent on a thread of their own until the last is answered.
pub struct Sender {
    /// When the first push left.
    pub start: Instant,
    thread: Option<JoinHandle<Vec<Sent>>>,
}

impl Sender {
    /// Sends `pushes` to the gateway at `addr`, evenly spread over `over`.
    pub fn start(addr: SocketAddr, pushes: Vec<Push>, over: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the pushes' runtime")?;
        let start = Instant::now();
        let thread =
            std::thread::spawn(move || runtime.block_on(send_all(addr, pushes, over, start)));
        Ok(Self {
            start,
            thread: Some(thread),
        })
    }

    /// Whether every push has been answered or has failed.
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Every push, in the order they were given.
    pub fn join(mut self) -> Result<Vec<Sent>> {
        let thread = self.thread.take().context("the pushes were joined twice")?;
        let mut sent = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the pushes' thread panicked"))?;
        sent.sort_by_key(|s| s.index);
        Ok(sent)
    }
}

async fn send_all(
    addr: SocketAddr,
    pushes: Vec<Push>,
    over: Duration,
    start: Instant,
) -> Vec<Sent> {
    let count = u32::try_from(pushes.len().max(1)).unwrap_or(u32::MAX);
    let period = over / count;
    let mut next = tokio::time::Instant::from_std(start);
    let mut in_flight = JoinSet::new();
    let mut sent = Vec::with_capacity(pushes.len());
    for (index, push) in pushes.into_iter().enumerate() {
        tokio::time::sleep_until(next).await;
        next += period;
        in_flight.spawn(async move {
            let left = start.elapsed();
            let answer = send(addr, &push.delivery).await;
            Sent {
                index,
                sent: left,
                done: start.elapsed(),
                answer,
            }
        });
        while let Some(done) = in_flight.try_join_next() {
            sent.extend(done.ok());
        }
    }
    while let Some(done) = in_flight.join_next().await {
        sent.extend(done.ok());
    }
    sent
}

/// Pushes sent in a closed loop for `over`: `senders` clients, each on a
/// keep-alive connection of its own, each sending its next push as soon as
/// the last is answered (or has failed). The pushes are made beforehand,
/// so that the senders' time goes to sending; they are sent in order, once
/// each (the window ends early when they run out) or, with `repeat`, over
/// and over. Every push as it went, in the order sent.
pub fn closed_loop(
    addr: SocketAddr,
    senders: usize,
    over: Duration,
    pushes: Vec<Push>,
    repeat: bool,
) -> Result<Vec<Sent>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the pushes' runtime")?;
    let pushes: Arc<[Push]> = pushes.into();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + over;
    let mut sent = runtime.block_on(async move {
        let mut clients = JoinSet::new();
        for _ in 0..senders.max(1) {
            let (pushes, next) = (Arc::clone(&pushes), Arc::clone(&next));
            clients.spawn(async move {
                let mut conn = None;
                let mut sent = Vec::new();
                while Instant::now() < until {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let push = match pushes.get(index) {
                        Some(push) => push,
                        None if repeat && !pushes.is_empty() => &pushes[index % pushes.len()],
                        None => break,
                    };
                    let left = start.elapsed();
                    let answer = send_kept(&mut conn, addr, &push.delivery).await;
                    sent.push(Sent {
                        index,
                        sent: left,
                        done: start.elapsed(),
                        answer,
                    });
                }
                sent
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = clients.join_next().await {
            all.extend(joined.context("a push sender panicked")?);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    sent.sort_by_key(|s| s.index);
    Ok(sent)
}

/// Answer times in ms counted into buckets, each with its upper bound
/// (`le_ms`, inclusive; `null` for the last, unbounded one).
pub fn histogram(ms: &[f64]) -> Value {
    const BOUNDS: [f64; 12] = [
        0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 10_000.0,
    ];
    let mut counts = [0usize; BOUNDS.len() + 1];
    for v in ms {
        let bucket = BOUNDS.iter().position(|b| v <= b).unwrap_or(BOUNDS.len());
        counts[bucket] += 1;
    }
    Value::Array(
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| json!({ "le_ms": BOUNDS.get(i), "count": n }))
            .collect(),
    )
}

/// One delivery on a fresh connection.
/// Sends pushes one at a time, each on a connection of its own as a forge
/// does, and tells when each left: a push's times start there, not at the
/// bench's own set-up.
pub struct OneByOne {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl OneByOne {
    pub fn new(addr: SocketAddr) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the pushes' runtime")?;
        Ok(Self { runtime, addr })
    }

    /// The push's answer, when it was sent and how long the answer took.
    pub fn send(&self, push: &Push) -> (SystemTime, Duration, Answer) {
        self.runtime.block_on(async {
            let at = SystemTime::now();
            let start = Instant::now();
            let answer = send(self.addr, &push.delivery).await;
            (at, start.elapsed(), answer)
        })
    }
}

async fn send(addr: SocketAddr, delivery: &Delivery) -> Answer {
    let exchange = async {
        let mut conn = connect(addr).await?;
        exchange(&mut conn, addr, delivery, true).await
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(answer) | Err(answer)) => answer,
        Err(_) => timed_out(),
    }
}

/// One delivery on `conn`, kept open for the next (a new connection when
/// there is none or the gateway closed it; none after a failure).
async fn send_kept(conn: &mut Option<Connection>, addr: SocketAddr, delivery: &Delivery) -> Answer {
    let exchange = async {
        let mut open = match conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(addr).await?,
        };
        let answer = exchange(&mut open, addr, delivery, false).await?;
        *conn = Some(open);
        Ok::<_, Answer>(answer)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(answer) | Err(answer)) => answer,
        Err(_) => timed_out(),
    }
}

type Connection = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Connection, Answer> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| io_answer(&e, "connect"))?;
    let _ = stream.set_nodelay(true);
    let (conn, driver) = handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_answer(&e))?;
    tokio::spawn(driver);
    Ok(conn)
}

/// Sends `delivery` on `conn` and reads the answer; `close` asks the
/// gateway to close the connection after it.
async fn exchange(
    conn: &mut Connection,
    addr: SocketAddr,
    delivery: &Delivery,
    close: bool,
) -> Result<Answer, Answer> {
    conn.ready().await.map_err(|e| hyper_answer(&e))?;
    let mut request = Request::post("/api/webhooks/github").header(HOST, addr.to_string());
    if close {
        request = request.header(CONNECTION, "close");
    }
    for (name, value) in delivery.headers() {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(delivery.body.clone()))
        .map_err(|e| none(NoAnswer::Other, e.to_string()))?;
    let answer = conn
        .send_request(request)
        .await
        .map_err(|e| hyper_answer(&e))?;
    let code = answer.status().as_u16();
    let body: Bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| hyper_answer(&e))?
        .to_bytes();
    Ok(status(code, &body))
}

fn timed_out() -> Answer {
    none(NoAnswer::TimedOut, "no answer in 10s".to_owned())
}

fn none(kind: NoAnswer, why: String) -> Answer {
    Answer::None { kind, why }
}

/// An answer with its body's `task_ids` and `queued`.
fn status(code: u16, body: &[u8]) -> Answer {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    Answer::Status {
        code,
        task_ids: json["task_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        queued: json["queued"] == true,
    }
}

fn io_answer(e: &std::io::Error, stage: &str) -> Answer {
    use std::io::ErrorKind;
    let kind = match e.kind() {
        ErrorKind::ConnectionRefused => NoAnswer::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            NoAnswer::Reset
        }
        _ => NoAnswer::Other,
    };
    none(kind, format!("{stage}: {e}"))
}

/// By the error's kind: a connection closed or reset under the request is
/// `Reset`.
fn hyper_answer(e: &hyper::Error) -> Answer {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return none(NoAnswer::Reset, e.to_string());
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return io_answer(io, "request");
        }
        source = inner.source();
    }
    none(NoAnswer::Other, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{Answer, status};

    #[test]
    fn answers_give_their_tasks_and_whether_they_were_queued() {
        assert_eq!(
            status(202, br#"{"delivery_id": "d", "task_ids": [17]}"#),
            Answer::Status {
                code: 202,
                task_ids: vec![17],
                queued: false
            }
        );
        assert_eq!(
            status(
                202,
                br#"{"delivery_id": "d", "queued": true, "task_ids": []}"#
            ),
            Answer::Status {
                code: 202,
                task_ids: vec![],
                queued: true
            }
        );
        assert_eq!(
            status(503, b"unavailable"),
            Answer::Status {
                code: 503,
                task_ids: vec![],
                queued: false
            }
        );
    }
}
