//! The stack a bench runs against: every instance its own, in a temporary
//! directory, on free ports, so that a bench runs beside `up` and `test`;
//! Postgres on the durable profile (fsync and synchronous commit on), the
//! services from the release binaries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::api::Api;
use crate::infra::{Infra, Profile};
use crate::proxy::Ports;
use crate::services::{Logs, Services};
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
    pub fn start(bin: &Path, cancel: Cancel) -> Result<Self> {
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
        let mut infra = Infra::start_in(profile, &base)?;
        let data_dir = base.join("data");
        let ports = profile
            .proxy_ports
            .context("the bench profile has a proxy")?;
        let proxy_env = infra.start_proxy(&data_dir.join("proxy"), ports)?.env();

        let http_addr = format!("127.0.0.1:{}", sys::free_port()?);
        let grpc_addr = format!("127.0.0.1:{}", sys::free_port()?);
        let token = sys::random_hex(24);
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(proxy_env);
        let logs = base.join("logs");
        let services = Services::start(bin, &env, &Logs::Dir(logs.clone()), &http_addr)
            .with_context(|| format!("see the services' logs in {}", logs.display()))?;
        let dir = root.join("work");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            api: Api::new(&http_addr, &token),
            dir,
            registry: infra.registry.clone(),
            cancel,
            services: RefCell::new(services),
            infra,
            root,
            keep: false,
        })
    }

    /// An error when the bench was interrupted or a service has died.
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

    /// Keeps the directory (logs, data) for a look after a failure.
    pub fn keep(&mut self) {
        self.keep = true;
    }
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
