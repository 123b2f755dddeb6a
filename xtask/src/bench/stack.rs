//! The stack a bench runs against: every instance its own, in a temporary
//! directory, on free ports, so that a bench runs beside `up` and `test`;
//! Postgres on the durable profile (fsync and synchronous commit on), the
//! services from the release binaries, and a local server in GitHub's place
//! that records the commit statuses it is sent.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::api::Api;
use crate::infra::{Infra, Profile};
use crate::proxy::Ports;
use crate::services::{self, Logs, Services};
use crate::sys;

/// Set by Ctrl-C or SIGTERM; the bench stops at its next wait.
#[derive(Clone)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
        Ok(Self(flag))
    }

    fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }
}

/// A running bench stack; stops everything and removes its directory when
/// dropped (unless [`Stack::keep`] was called).
pub struct Stack {
    /// The gateway's REST API, with the stack's token: how suites drive it.
    pub api: Api,
    /// Where suites keep their files (repositories, builds).
    pub dir: PathBuf,
    /// The registry the runner pushes to, `host:port`.
    pub registry: String,
    /// The gateway, `host:port`, for what suites send it besides the REST
    /// API (webhooks).
    pub gateway: String,
    /// The gateway's `SLIPWAY_GITHUB_SECRET`, which signs GitHub webhooks.
    pub github_secret: String,
    /// GitHub's REST API as the orchestrator and notifier see it
    /// (`SLIPWAY_GITHUB_API_URL`, with `SLIPWAY_GITHUB_TOKEN`): it records
    /// the commit statuses of tasks from GitHub webhooks. Started before
    /// the services, stopped after them.
    pub forge: FakeGitHub,
    cancel: Cancel,
    /// Checked at every wait, so that a dead service ends the bench at once.
    services: RefCell<Services>,
    infra: Infra,
    /// The temporary directory of everything above, removed at the end
    /// unless `keep`.
    root: PathBuf,
    keep: bool,
}

/// A free port whose distribution port (+1000, RabbitMQ's) is free too.
fn free_amqp_port() -> Result<u16> {
    for _ in 0..50 {
        let port = sys::free_port()?;
        if port < 64_000 && TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free pair of ports for RabbitMQ")
}

impl Stack {
    /// Starts the stack: the services from `bin` as `options` says, with
    /// `extra` settings on top of the stack's own.
    pub fn start(
        bin: &Path,
        cancel: Cancel,
        options: services::Options,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        // As root, the `postgres` user must reach its cluster: not under a
        // private /tmp of root's.
        let parent = if sys::is_root() {
            PathBuf::from("/var/tmp")
        } else {
            std::env::temp_dir()
        };
        // Kept when the start fails, for its logs; removed when the stack is dropped.
        let root = tempfile::Builder::new()
            .prefix("slipway-bench-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?
            .keep();
        let base = root.join("stack");
        eprintln!("xtask: bench stack in {}", base.display());
        let profile = Profile {
            name: "bench",
            pg_port: sys::free_port()?,
            amqp_port: free_amqp_port()?,
            registry_port: sys::free_port()?,
            proxy_ports: Some(Ports {
                http: sys::free_port()?,
                https: sys::free_port()?,
            }),
            fast: false,
            reuse: false,
        };
        let github_token = sys::random_hex(20);
        let forge = FakeGitHub::start(&github_token)?;
        let mut infra = Infra::start_in(profile, &base)?;
        let data_dir = base.join("data");
        let ports = profile
            .proxy_ports
            .context("the bench profile has a proxy")?;
        let proxy_env = infra.start_proxy(&data_dir.join("proxy"), ports)?.env();

        let http_addr = format!("127.0.0.1:{}", sys::free_port()?);
        let grpc_addr = format!("127.0.0.1:{}", sys::free_port()?);
        let token = sys::random_hex(24);
        let github_secret = sys::random_hex(20);
        let mut env: BTreeMap<String, String> = [
            ("SLIPWAY_API_TOKEN", token.clone()),
            ("SLIPWAY_SECRET_KEY", sys::random_hex(24)),
            ("SLIPWAY_DATABASE_URL", infra.database_url.clone()),
            ("SLIPWAY_AMQP_URL", infra.amqp_url.clone()),
            ("SLIPWAY_REGISTRY", infra.registry.clone()),
            ("SLIPWAY_DATA_DIR", data_dir.display().to_string()),
            ("SLIPWAY_HTTP_ADDR", http_addr.clone()),
            ("SLIPWAY_GRPC_ADDR", grpc_addr.clone()),
            ("SLIPWAY_ORCHESTRATOR_URL", format!("http://{grpc_addr}")),
            (
                "SLIPWAY_NOTIFIER_ADDR",
                format!("127.0.0.1:{}", sys::free_port()?),
            ),
            ("SLIPWAY_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("SLIPWAY_PUBLIC_URL", format!("http://{http_addr}")),
            ("SLIPWAY_LOG", "info".to_owned()),
            ("SLIPWAY_GITHUB_SECRET", github_secret.clone()),
            ("SLIPWAY_GITHUB_TOKEN", github_token),
            ("SLIPWAY_GITHUB_API_URL", forge.url.clone()),
            // The `prune` suite's pruner starts within a second of the
            // rows it seeded getting old; other suites leave nothing old.
            ("SLIPWAY_PRUNE_INTERVAL", "1s".to_owned()),
            // The `throughput` suite's one runner at concurrency 4.
            ("SLIPWAY_RUNNER_CONCURRENCY", "4".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(proxy_env);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let logs = base.join("logs");
        let services = Services::start(bin, &env, &Logs::Dir(logs.clone()), &http_addr, options)
            .with_context(|| format!("see the services' logs in {}", logs.display()))?;
        let dir = root.join("work");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            api: Api::new(&http_addr, &token),
            dir,
            registry: infra.registry.clone(),
            gateway: http_addr,
            github_secret,
            forge,
            cancel,
            services: RefCell::new(services),
            infra,
            root,
            keep: false,
        })
    }

    /// An error when the bench was interrupted or a service has died (when
    /// supervised: a service has died too often; the others are started
    /// again when due).
    pub fn check(&self) -> Result<()> {
        self.cancel.check()?;
        self.services.borrow_mut().check()
    }

    /// Polls `poll` every 100 ms until it gives a value, for at most
    /// `timeout`.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut poll: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            if let Some(value) = poll()? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("{what}: not done after {}s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `sql` on the stack's database with `psql`; returns what it
    /// printed (unaligned, tuples only).
    pub fn sql(&self, sql: &str) -> Result<String> {
        sys::output(
            Command::new("psql")
                .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(&self.infra.database_url)
                .arg("-c")
                .arg(sql),
        )
        .map(|out| out.trim().to_owned())
    }

    /// The stack's database, as a connection URL.
    pub fn database_url(&self) -> &str {
        &self.infra.database_url
    }

    /// The resident memory of the service `name` now, in MB (`VmRSS`, 10^6 bytes).
    pub fn rss(&self, name: &str) -> Result<f64> {
        rss_mb(self.pid(name)?)
    }

    /// The process id of the service `name`.
    pub fn pid(&self, name: &str) -> Result<u32> {
        self.services
            .borrow()
            .pid(name)
            .with_context(|| format!("{name} is not running"))
    }

    /// Kills the service `name` with SIGKILL (see [`Services::kill`]).
    pub fn kill(&self, name: &str) -> Result<()> {
        self.services.borrow_mut().kill(name)
    }

    /// How many times each service was started again.
    pub fn restarts(&self) -> Vec<(String, u32)> {
        self.services.borrow().restarts()
    }

    /// The stack's own Postgres and RabbitMQ, to kill and start again.
    pub fn infra(&mut self) -> &mut Infra {
        &mut self.infra
    }

    /// Where the services' logs are.
    pub fn logs(&self) -> PathBuf {
        self.root.join("stack/logs")
    }

    /// Keeps the directory (logs, data) for a look after a failure.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

/// The resident memory of process `pid`, in MB (10^6 bytes; `VmRSS` of its status).
pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the status of process {pid}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("process {pid} has no VmRSS"))?;
    Ok(kib * 1024.0 / 1e6)
}

impl Drop for Stack {
    /// Stops every process and removes what the stack left in the Docker
    /// Engine and on disk.
    fn drop(&mut self) {
        self.services.borrow_mut().stop();
        self.infra.stop();
        // Images the runner built and pulled for this stack's registry.
        let prefix = format!("{}/", self.registry);
        if let Ok(list) = sys::output(Command::new("docker").args([
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])) {
            let ours: Vec<&str> = list.lines().filter(|l| l.starts_with(&prefix)).collect();
            if !ours.is_empty() {
                let _ = sys::output(
                    Command::new("docker")
                        .args(["image", "rm", "-f"])
                        .args(&ours),
                );
            }
        }
        if self.keep {
            eprintln!(
                "xtask: the bench stack's files are kept in {}",
                self.root.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("xtask: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// A local server in GitHub's place (forges.md): answers
/// `POST /repos/{owner}/{repo}/statuses/{sha}` with `201` when it carries
/// the stack's token (`401` otherwise), and `POST /hooks/{name}` (a notify
/// webhook a suite sets up) with `200`; records when each request arrived.
pub struct FakeGitHub {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: Arc<Log>,
    /// Serves the requests on a thread of its own; dropping it stops the
    /// server.
    _runtime: tokio::runtime::Runtime,
}

/// What the fake received, and a signal for whoever waits for more.
#[derive(Default)]
struct Log {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The wall clock when its body had been read, to set beside the
    /// times the API reports.
    pub at: SystemTime,
    pub path: String,
    /// Where a commit status went; `None` for any other request.
    pub status: Option<StatusTarget>,
    /// Whether it carried `Authorization: Bearer <the stack's token>`.
    pub authorized: bool,
    /// Its body (`Null` when it was not JSON).
    pub body: Value,
    /// Its `X-Slipway-Event-Id` (a notify webhook's), if any.
    pub event_id: Option<String>,
}

/// The commit a status was set on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusTarget {
    /// `owner/name`.
    pub repo: String,
    /// The commit's 40 hex digits.
    pub sha: String,
}

impl FakeGitHub {
    fn start(token: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-forge")
            .enable_all()
            .build()
            .context("cannot start the fake GitHub's runtime")?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let log = Arc::new(Log::default());
        let bearer: Arc<str> = format!("Bearer {token}").into();
        runtime.spawn(serve(listener, Arc::clone(&log), bearer));
        Ok(Self {
            url,
            log,
            _runtime: runtime,
        })
    }

    /// How many requests have arrived.
    pub fn count(&self) -> usize {
        self.log
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The requests from the `from`-th on, in the order they arrived.
    pub fn received(&self, from: usize) -> Vec<Received> {
        let received = self
            .log
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        received
            .get(from..)
            .map(<[Received]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until more than `seen` requests have arrived, for at most
    /// `timeout`; whether they have.
    pub fn wait_past(&self, seen: usize, timeout: Duration) -> bool {
        let received = self
            .log
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (received, _) = self
            .log
            .arrived
            .wait_timeout_while(received, timeout, |r| r.len() <= seen)
            .unwrap_or_else(PoisonError::into_inner);
        received.len() > seen
    }
}

async fn serve(listener: tokio::net::TcpListener, log: Arc<Log>, bearer: Arc<str>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: give the open ones time to close.
                eprintln!("xtask: the fake GitHub cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (log, bearer) = (Arc::clone(&log), Arc::clone(&bearer));
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, Arc::clone(&log), Arc::clone(&bearer)));
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The repository (`owner/name`) and commit of a
/// `/repos/{owner}/{repo}/statuses/{sha}` path.
fn status_target(path: &str) -> Option<StatusTarget> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts[..] {
        ["repos", owner, repo, "statuses", sha]
            if !owner.is_empty()
                && !repo.is_empty()
                && sha.len() == 40
                && sha.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(StatusTarget {
                repo: format!("{owner}/{repo}"),
                sha: sha.to_owned(),
            })
        }
        _ => None,
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Log>,
    bearer: Arc<str>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let post = req.method() == Method::POST;
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == bearer.as_bytes());
    let event_id = req
        .headers()
        .get("x-slipway-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req.into_body().collect().await?.to_bytes();
    let at = SystemTime::now();
    let target = status_target(&path);
    let (status, answer) = if !post {
        (
            StatusCode::NOT_FOUND,
            r#"{"message":"Not Found"}"#.to_owned(),
        )
    } else if target.is_some() {
        if authorized {
            // GitHub answers with the status it created.
            (
                StatusCode::CREATED,
                String::from_utf8_lossy(&body).into_owned(),
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Bad credentials"}"#.to_owned(),
            )
        }
    } else if path.starts_with("/hooks/") {
        (StatusCode::OK, "{}".to_owned())
    } else {
        (
            StatusCode::NOT_FOUND,
            r#"{"message":"Not Found"}"#.to_owned(),
        )
    };
    if post {
        let mut received = log.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.push(Received {
            at,
            path,
            status: target,
            authorized,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            event_id,
        });
        log.arrived.notify_all();
    }
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{StatusTarget, status_target};

    #[test]
    fn only_the_statuses_endpoint_names_a_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            status_target(&format!("/repos/acme/app/statuses/{sha}")),
            Some(StatusTarget {
                repo: "acme/app".to_owned(),
                sha: sha.to_owned(),
            })
        );
        assert_eq!(status_target(&format!("/repos/acme/statuses/{sha}")), None);
        assert_eq!(status_target("/repos/acme/app/statuses/main"), None);
        assert_eq!(
            status_target(&format!("/repos/acme/app/commits/{sha}")),
            None
        );
        assert_eq!(status_target("/hooks/alerts"), None);
    }
}
