//! The `logs` suite: a step that prints 100 MB as fast as `yes` can, timed
//! from the step's start to its output stored (the step's end, which
//! waits for its log) and to its last byte at a reader of the live stream
//! (`GET /api/tasks/{id}/logs/stream`), against `cat` of the same bytes to
//! a file; and the runner's resident memory while it flows, sampled every
//! 20 ms, against the same before.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::handshake;
use hyper::header::{AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use super::stack::rss_mb;
use super::{Figure, Report, Stack, Suite, Target};
use crate::git::LocalRepo;
use crate::sys;

pub struct Logs;

/// What the step prints: lines of 100 bytes.
const BYTES: u64 = 100_000_000;
const WORKFLOW: &str = "logs";

impl Suite for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn about(&self) -> &'static str {
        "100 MB of step output stored and streamed live, against cat of the same bytes, and the runner's memory meanwhile"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let print = format!("yes {} | head -c {BYTES}", "x".repeat(99));
        let repo = LocalRepo::open(&stack.dir.join("repos"), WORKFLOW)?;
        repo.write("README.md", b"logs\n")?;
        repo.commit("base")?;
        let id = stack.api.register(
            WORKFLOW,
            &format!(
                "name: {WORKFLOW}\nrepo: {}\n\
                 steps:\n  - name: print\n    run: \"{print}\"\n",
                repo.url()
            ),
        )?;
        let runner = stack.pid("runner")?;
        let idle = rss_mb(runner)?;
        let sampler = Sampler::start(runner);
        let task = stack.api.run(id, None)?;
        let reader = follow(
            stack.api.addr().to_owned(),
            stack.api.auth().to_owned(),
            format!("/api/tasks/{task}/logs/stream"),
        );
        stack
            .wait("the logs task to finish", Duration::from_secs(600), || {
                let status = stack.sql(&format!(
                    "SELECT status FROM tasks WHERE id = {task} AND finished_at IS NOT NULL"
                ))?;
                Ok((!status.is_empty()).then_some(status))
            })
            .and_then(|status| match status.as_str() {
                "success" => Ok(()),
                other => bail!("the logs task ended {other}"),
            })?;
        let peak = sampler.stop();
        let followed = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the log reader panicked"))??;

        let times = stack.sql(&format!(
            "SELECT extract(epoch FROM started_at) * 1e6, extract(epoch FROM finished_at) * 1e6 \
             FROM steps WHERE task_id = {task} AND name = 'print'"
        ))?;
        let (started, finished) = times
            .split_once('|')
            .and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?)))
            .with_context(|| format!("no times for the print step: {times:?}"))?;
        let stored: u64 = stack
            .sql(&format!(
                "SELECT coalesce(sum(length(l.data)), 0) FROM log_chunks l \
                 JOIN steps s ON s.task_id = l.task_id AND s.position = l.position \
                 WHERE l.task_id = {task} AND s.name = 'print'"
            ))?
            .parse()?;
        let last = followed
            .last
            .context("the live stream gave nothing")?
            .duration_since(UNIX_EPOCH)?
            .as_secs_f64()
            * 1e6;
        let mb = BYTES as f64 / 1e6;
        let stored_rate = mb / ((finished - started) / 1e6).max(1e-9);
        let streamed_rate = mb / ((last - started) / 1e6).max(1e-9);
        let cat = cat_rate(stack, &print)?;
        let figures = vec![
            Figure::new("step output stored", "MB/s", stored_rate)
                .floor("cat to a file", cat)
                .target(Target::AtLeast(50.0)),
            Figure::new("step output at a live reader", "MB/s", streamed_rate)
                .floor("cat to a file", cat)
                .target(Target::AtLeast(50.0)),
            Figure::new("runner resident, peak while it flows", "MB", peak)
                .floor("before it", idle),
            Figure::new(
                "bytes of output not stored",
                "bytes",
                BYTES.saturating_sub(stored) as f64,
            )
            .at_most(0.0),
            Figure::new(
                "bytes of output not streamed",
                "bytes",
                BYTES.saturating_sub(followed.bytes) as f64,
            )
            .at_most(0.0),
        ];
        Ok(Report {
            figures,
            details: json!({
                "bytes": BYTES,
                "stored_bytes": stored,
                "streamed_bytes": followed.bytes,
                "step_s": (finished - started) / 1e6,
                "stream_s": (last - started) / 1e6,
            }),
        })
    }
}

/// The bytes of `print`, made into a file first, then copied by `cat` to
/// another: MB/s of the copy.
fn cat_rate(stack: &Stack, print: &str) -> Result<f64> {
    let dir = stack.dir.join("cat");
    std::fs::create_dir_all(&dir)?;
    let (from, to) = (dir.join("from"), dir.join("to"));
    sys::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{print} > {}", from.display())),
    )?;
    let began = Instant::now();
    sys::run(Command::new("sh").arg("-c").arg(format!(
        "cat {} > {}",
        from.display(),
        to.display()
    )))?;
    let took = began.elapsed();
    std::fs::remove_dir_all(&dir)?;
    Ok(BYTES as f64 / 1e6 / took.as_secs_f64().max(1e-9))
}

/// Samples a process's resident memory every 20 ms on a thread of its own.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<f64>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mb) = rss_mb(pid) {
                    peak = peak.max(mb);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Self { stop, thread }
    }

    /// The highest sample.
    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// What a reader of a live log stream got.
struct Followed {
    /// The text of its `log` events, in bytes.
    bytes: u64,
    /// When the last of it arrived.
    last: Option<SystemTime>,
}

/// Reads the server-sent events at `path` of the gateway `addr` until the
/// `end` event, on a thread of its own.
fn follow(addr: String, auth: String, path: String) -> JoinHandle<Result<Followed>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let stream = TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let (mut conn, driver) = handshake(TokioIo::new(stream)).await?;
            tokio::spawn(driver);
            let request = Request::get(&path)
                .header(HOST, &addr)
                .header(AUTHORIZATION, &auth)
                .body(Empty::<Bytes>::new())?;
            let answer = conn.send_request(request).await?;
            if answer.status() != 200 {
                bail!("GET {path}: {}", answer.status());
            }
            let mut body = answer.into_body();
            let mut events = Events::default();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    if events.feed(&data) {
                        events.last = Some(SystemTime::now());
                    }
                    if events.ended {
                        break;
                    }
                }
            }
            Ok(Followed {
                bytes: events.bytes,
                last: events.last,
            })
        })
    })
}

/// A parser of server-sent events that counts the text of `log` events.
#[derive(Default)]
struct Events {
    /// The unfinished last line.
    line: Vec<u8>,
    /// The current event's type and its data lines' bytes and count.
    kind: String,
    data_bytes: u64,
    data_lines: u64,
    bytes: u64,
    last: Option<SystemTime>,
    ended: bool,
}

impl Events {
    /// Takes more of the stream; whether it completed log text.
    fn feed(&mut self, data: &[u8]) -> bool {
        let mut logged = false;
        for &b in data {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                // The event ends: its data lines joined by newlines.
                if self.kind == "log" && self.data_lines > 0 {
                    self.bytes += self.data_bytes + self.data_lines - 1;
                    logged = true;
                }
                self.ended |= self.kind == "end";
                self.kind.clear();
                self.data_bytes = 0;
                self.data_lines = 0;
            } else if let Some(kind) = line.strip_prefix(b"event: ") {
                self.kind = String::from_utf8_lossy(kind).into_owned();
            } else if let Some(text) = line.strip_prefix(b"data: ") {
                self.data_bytes += text.len() as u64;
                self.data_lines += 1;
            }
        }
        logged
    }
}

#[cfg(test)]
mod tests {
    use super::Events;

    #[test]
    fn log_events_count_their_text_across_pieces() {
        let mut events = Events::default();
        assert!(!events.feed(b"event: log\ndata: ab"));
        assert!(events.feed(b"c\ndata: \n\nevent: log\ndata: d\n\n"));
        assert!(!events.ended);
        events.feed(b"event: end\ndata: {\"status\":\"success\"}\n\n");
        // "abc\n" and "d".
        assert_eq!(events.bytes, 5);
        assert!(events.ended);
    }
}
