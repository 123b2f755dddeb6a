//! The four Slipway services as `up` and `bench` run them: built in release,
//! migrated, started in order, supervised, and stopped in reverse order.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::infra::stop_child;
use crate::{http, sys};

/// The cargo packages of the services and the CLI.
const PACKAGES: [&str; 5] = ["orchestrator", "gateway", "runner", "notifier", "cli"];

/// Builds the services and the `slipway` CLI in release; returns the
/// directory of the binaries.
pub fn build_release() -> Result<PathBuf> {
    eprintln!("xtask: building the services and the slipway CLI (release)");
    let mut cmd = sys::cargo();
    cmd.args(["build", "--release"]);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    sys::run(&mut cmd)?;
    Ok(sys::target_dir().join("release"))
}

/// Where the services' output goes.
pub enum Logs {
    /// The terminal, each line after the service's name.
    Terminal,
    /// One file per service in this directory.
    Dir(PathBuf),
}

/// A running service.
struct Service {
    name: &'static str,
    child: Child,
}

/// The running services; stopped in reverse order when dropped.
pub struct Services {
    list: Vec<Service>,
}

impl Services {
    /// Migrates, then starts the orchestrator, gateway, runner and notifier
    /// from the binaries in `bin` with `env`, and waits until the gateway
    /// at `http_addr` is ready.
    pub fn start(
        bin: &Path,
        env: &BTreeMap<String, String>,
        logs: &Logs,
        http_addr: &str,
    ) -> Result<Self> {
        // Its report goes with xtask's own messages, not to stdout (where
        // the bench prints its table).
        sys::run(
            Command::new(bin.join("slipway-orchestrator"))
                .arg("migrate")
                .envs(env)
                .stdout(std::io::stderr()),
        )?;
        let mut services = Self { list: Vec::new() };
        for (name, binary, args) in [
            ("orchestrator", "slipway-orchestrator", &["serve"][..]),
            ("gateway", "slipway-gateway", &[]),
            ("runner", "slipway-runner", &[]),
            ("notifier", "slipway-notifier", &[]),
        ] {
            services
                .list
                .push(spawn(name, &bin.join(binary), args, env, logs)?);
        }
        sys::wait_for("the gateway", Duration::from_secs(60), || {
            http::request(http_addr, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
        })?;
        Ok(services)
    }

    /// Waits for a message on `stop`, or for a service to exit on its own.
    pub fn watch(&mut self, stop: &mpsc::Receiver<()>) -> Result<()> {
        loop {
            match stop.recv_timeout(Duration::from_millis(500)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.check()?;
        }
    }

    /// An error naming the first service that has exited.
    pub fn check(&mut self) -> Result<()> {
        for s in &mut self.list {
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!("{} exited with {status}", s.name);
            }
        }
        Ok(())
    }

    /// Stops the services, the last started first.
    pub fn stop(&mut self) {
        while let Some(mut service) = self.list.pop() {
            eprintln!("xtask: stopping {}", service.name);
            stop_child(&mut service.child, Duration::from_secs(15));
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(
    name: &'static str,
    binary: &Path,
    args: &[&str],
    env: &BTreeMap<String, String>,
    logs: &Logs,
) -> Result<Service> {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::null())
        // Its own process group: a terminal's Ctrl-C reaches xtask alone,
        // which then stops the services in order.
        .process_group(0);
    match logs {
        Logs::Terminal => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Logs::Dir(dir) => {
            fs::create_dir_all(dir)?;
            let file = fs::File::create(dir.join(format!("{name}.log")))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if let Some(out) = child.stdout.take() {
        prefix(name, out);
    }
    if let Some(err) = child.stderr.take() {
        prefix(name, err);
    }
    Ok(Service { name, child })
}

fn prefix(name: &'static str, stream: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[{name:12}] {line}");
        }
    });
}
