//! An open-loop HTTP load: requests leave at a fixed rate whatever the
//! answers do (a slow or missing answer delays no later request), over a
//! pool of HTTP/1.1 keep-alive connections, and each one's outcome is judged
//! as shared/spec/edge.md counts failures: a non-2xx answer, or a 2xx the
//! app did not give, or no answer on a fresh connection. A request sent on a
//! reused connection that turns out closed is retried once on a fresh one,
//! as browsers and HTTP libraries do (a proxy's configuration change closes
//! idle keep-alive connections).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{CONNECTION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// How long a request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The request's path, e.g. `/`.
    pub path: String,
}

/// A point in time every sample of a load is measured from, with the wall
/// clock at that point (to place times the API reports).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            start: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `instant` as a time since the start.
    pub fn since(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.start)
    }

    /// A wall-clock time as a time since the start (zero for earlier ones).
    pub fn wall_since(&self, wall: SystemTime) -> Duration {
        wall.duration_since(self.wall).unwrap_or_default()
    }
}

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The app answered 2xx; its page names its version.
    Answered { version: u32 },
    /// A non-2xx answer.
    Status(u16),
    /// A 2xx answer the app did not give (a proxy's empty page).
    NotTheApp,
    /// No answer: refused, reset, closed, or too slow.
    NoAnswer(String),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        !matches!(self, Self::Answered { .. })
    }
}

/// One request of a load.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it left, since the load's start.
    pub sent: Duration,
    /// When its answer, or its failure, came.
    pub done: Duration,
    /// Whether it went again on a fresh connection after its reused one
    /// was found closed.
    pub retried: bool,
    pub outcome: Outcome,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }
}

/// A load running on its own thread until [`Load::stop`].
pub struct Load {
    pub clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<Vec<Sample>>>>,
}

impl Load {
    /// Starts sending `rate` requests a second to `target`.
    pub fn start(target: Target, rate: u32) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the load's runtime")?;
        let clock = Clock::now();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            Ok(runtime.block_on(generate(target, rate.max(1), clock, stopped)))
        });
        Ok(Self {
            clock,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops sending, waits for the answers still due, and returns every
    /// sample in the order they were sent.
    pub fn stop(mut self) -> Result<Vec<Sample>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take().context("the load was stopped twice")?;
        let mut samples = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the load's thread panicked"))??;
        samples.sort_by_key(|s| s.sent);
        Ok(samples)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Connection = SendRequest<Empty<Bytes>>;

/// Idle keep-alive connections, the most recently used last.
type Pool = Arc<Mutex<Vec<Connection>>>;

async fn generate(
    target: Target,
    rate: u32,
    clock: Clock,
    mut stopped: oneshot::Receiver<()>,
) -> Vec<Sample> {
    let period = Duration::from_secs(1) / rate;
    let pool: Pool = Arc::default();
    let mut requests = JoinSet::new();
    let mut samples = Vec::new();
    let mut next = clock.start;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep_until(next.into()) => {}
        }
        requests.spawn(request(target.clone(), Arc::clone(&pool), clock));
        // Open loop: the schedule, not the answers, says when the next one
        // leaves; a late timer makes the next ones leave at once.
        next += period;
        while let Some(done) = requests.try_join_next() {
            samples.extend(done.ok());
        }
    }
    while let Some(done) = requests.join_next().await {
        samples.extend(done.ok());
    }
    samples
}

async fn request(target: Target, pool: Pool, clock: Clock) -> Sample {
    let sent = Instant::now();
    let idle = {
        let mut idle = pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A connection the client already knows is closed is not used.
        idle.retain(|c| !c.is_closed());
        idle.pop()
    };
    let mut retried = false;
    let result = match idle {
        Some(conn) => match attempt(conn, &target, &pool).await {
            Err(Attempt::Closed(_)) => {
                retried = true;
                fresh(&target, &pool).await
            }
            other => other,
        },
        None => fresh(&target, &pool).await,
    };
    let outcome = match result {
        Ok((status, body)) if status.is_success() => match version(&body) {
            Some(version) => Outcome::Answered { version },
            None => Outcome::NotTheApp,
        },
        Ok((status, _)) => Outcome::Status(status.as_u16()),
        Err(Attempt::Closed(why) | Attempt::Other(why)) => Outcome::NoAnswer(why),
    };
    Sample {
        sent: clock.since(sent),
        done: clock.since(Instant::now()),
        retried,
        outcome,
    }
}

/// Why an attempt got no answer.
enum Attempt {
    /// The connection turned out closed before the answer began.
    Closed(String),
    Other(String),
}

async fn fresh(target: &Target, pool: &Pool) -> Result<(StatusCode, Bytes), Attempt> {
    let connect = async {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    };
    let stream = match tokio::time::timeout(REQUEST_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Attempt::Other(format!("connect: {e}"))),
        Err(_) => return Err(Attempt::Other("connect: timed out".to_owned())),
    };
    let (conn, driver) = handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Attempt::Other(format!("handshake: {e}")))?;
    tokio::spawn(driver);
    // On a fresh connection nothing is retried: any failure counts.
    attempt(conn, target, pool).await.map_err(|e| match e {
        Attempt::Closed(why) | Attempt::Other(why) => Attempt::Other(why),
    })
}

/// One request on `conn`, which goes back to the pool when the server
/// keeps it open.
async fn attempt(
    mut conn: Connection,
    target: &Target,
    pool: &Pool,
) -> Result<(StatusCode, Bytes), Attempt> {
    let exchange = async {
        conn.ready().await?;
        let request = Request::get(target.path.as_str())
            .header(HOST, target.addr.to_string())
            .body(Empty::new())
            .unwrap_or_default();
        let answer = conn.send_request(request).await?;
        let status = answer.status();
        let keep = !answer
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = answer.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body, keep))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok((status, body, keep))) => {
            if keep && !conn.is_closed() {
                pool.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(conn);
            }
            Ok((status, body))
        }
        Ok(Err(e)) if closed(&e) => Err(Attempt::Closed(e.to_string())),
        Ok(Err(e)) => Err(Attempt::Other(e.to_string())),
        Err(_) => Err(Attempt::Other("no answer in time".to_owned())),
    }
}

/// Whether a request failed because its connection was closed under it
/// (before any answer), by the error's kind.
fn closed(e: &hyper::Error) -> bool {
    if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = inner.source();
    }
    false
}

/// The version the app's page names: `version <n>`.
pub fn version(body: &[u8]) -> Option<u32> {
    std::str::from_utf8(body)
        .ok()?
        .trim()
        .strip_prefix("version ")?
        .parse()
        .ok()
}

/// Figures over the samples of a load.
pub struct Summary<'a> {
    samples: &'a [Sample],
}

impl<'a> Summary<'a> {
    pub fn new(samples: &'a [Sample]) -> Self {
        Self { samples }
    }

    pub fn sent(&self) -> usize {
        self.samples.len()
    }

    pub fn failed(&self) -> usize {
        self.samples.iter().filter(|s| s.outcome.failed()).count()
    }

    pub fn retried(&self) -> usize {
        self.samples.iter().filter(|s| s.retried).count()
    }

    /// The `q` quantile (0..=1) of the answered requests' latencies.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        let mut answered: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| !s.outcome.failed())
            .map(Sample::latency)
            .collect();
        quantile(&mut answered, q)
    }

    /// When the first answer from `version` came, at or after `from`.
    pub fn first_answer(&self, version: u32, from: Duration) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|s| s.done >= from && s.outcome == Outcome::Answered { version })
            .map(|s| s.done)
            .min()
    }

    /// The longest time between two answers of the app: how long the app
    /// could not be reached (a few milliseconds when it always could).
    pub fn longest_silence(&self) -> Duration {
        let mut answers: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| !s.outcome.failed())
            .map(|s| s.done)
            .collect();
        answers.sort();
        answers
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or_default()
    }

    /// The failures by kind, for the report: `(what, how many)`.
    pub fn failures(&self) -> Vec<(String, usize)> {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for s in self.samples.iter().filter(|s| s.outcome.failed()) {
            let kind = match &s.outcome {
                Outcome::Status(code) => format!("status {code}"),
                Outcome::NotTheApp => "2xx not from the app".to_owned(),
                Outcome::NoAnswer(why) => format!("no answer: {why}"),
                Outcome::Answered { .. } => continue,
            };
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
        kinds
    }
}

/// The `q` quantile of `values` (nearest rank); sorts them.
pub fn quantile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let last = values.len() - 1;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).saturating_sub(1);
    values.get(rank.min(last)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: u64, done_ms: u64, outcome: Outcome) -> Sample {
        Sample {
            sent: Duration::from_millis(sent_ms),
            done: Duration::from_millis(done_ms),
            retried: false,
            outcome,
        }
    }

    #[test]
    fn the_version_comes_from_the_page() {
        assert_eq!(version(b"version 7\n"), Some(7));
        assert_eq!(version(b""), None);
        assert_eq!(version(b"hello"), None);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let mut ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut ms, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&mut ms, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&mut ms, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn failures_silences_and_first_answers() {
        let samples = [
            sample(0, 1, Outcome::Answered { version: 1 }),
            sample(10, 11, Outcome::NoAnswer("connect: refused".into())),
            sample(20, 21, Outcome::NotTheApp),
            sample(30, 32, Outcome::Status(502)),
            sample(40, 42, Outcome::Answered { version: 2 }),
            sample(50, 51, Outcome::Answered { version: 2 }),
        ];
        let s = Summary::new(&samples);
        assert_eq!(s.sent(), 6);
        assert_eq!(s.failed(), 3);
        assert_eq!(s.longest_silence(), Duration::from_millis(41));
        assert_eq!(
            s.first_answer(2, Duration::ZERO),
            Some(Duration::from_millis(42))
        );
        assert_eq!(
            s.first_answer(2, Duration::from_millis(45)),
            Some(Duration::from_millis(51))
        );
        assert_eq!(s.first_answer(3, Duration::ZERO), None);
        assert_eq!(s.latency(0.5), Some(Duration::from_millis(1)));
        assert_eq!(s.failures().len(), 3);
    }
}
