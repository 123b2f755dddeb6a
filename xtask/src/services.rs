//! The four Slipway services as `up`, `bench` and `chaos` run them: built,
//! migrated, started in order, watched, and stopped in reverse order.
//!
//! Watched in one of two ways: a bench ends at the first death (a figure
//! measured across a crash means nothing), while `up` and `chaos`
//! **supervise**: a service that exits is started again after a backoff,
//! and the stack gives up only when one crashes again and again.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::infra::stop_child;
use crate::{http, sys};

/// The cargo packages of the services and the CLI.
const PACKAGES: [&str; 5] = ["orchestrator", "gateway", "runner", "notifier", "cli"];

/// How long the supervisor waits before starting a dead service again: 0.5 s,
/// doubling up to 10 s while it keeps dying.
const RESTART: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_secs(10))
    .with_factor(2.0)
    .without_max_times();
/// A service that exits this many times within [`CRASH_WINDOW`] stops the
/// stack: it is broken, not unlucky.
const MAX_CRASHES: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);

/// Builds the services and the `slipway` CLI in release; returns the
/// directory of the binaries.
pub fn build_release() -> Result<PathBuf> {
    eprintln!("xtask: building the services and the slipway CLI (release)");
    build(true)
}

/// Builds the services and the `slipway` CLI, in release or debug; returns
/// the directory of the binaries. The debug build is the workspace's
/// `--bins` (the services alone would unify features differently and
/// compile dependencies again).
pub fn build(release: bool) -> Result<PathBuf> {
    let mut cmd = sys::cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
        for package in PACKAGES {
            cmd.args(["-p", package]);
        }
    } else {
        cmd.arg("--bins");
    }
    sys::run(&mut cmd)?;
    Ok(sys::target_dir().join(if release { "release" } else { "debug" }))
}

/// Builds what `cargo test --workspace` builds, without running it: after
/// the tests this is nothing to do, and the services' debug binaries are
/// among it (cargo builds a package's binaries for its integration tests).
/// `--bins` alone would not be: the tests' dev-dependencies turn on
/// features of shared dependencies (figment's `test`), so the binaries of a
/// plain build differ and compile again. Returns the binaries' directory.
pub fn build_as_tests() -> Result<PathBuf> {
    sys::run(sys::cargo().args(["test", "--workspace", "--no-run", "--quiet"]))?;
    Ok(sys::target_dir().join("debug"))
}

/// Where the services' output goes.
#[derive(Clone)]
pub enum Logs {
    /// The terminal, each line after the service's name.
    Terminal,
    /// One file per service in this directory, appended to across restarts.
    Dir(PathBuf),
}

/// How the services run.
#[derive(Clone, Copy)]
pub struct Options {
    /// How many runners (named `runner`, or `runner-1`, `runner-2`, ...).
    pub runners: usize,
    /// Start a service that exits again (`up`, `chaos`) instead of
    /// reporting it as an error (`bench`).
    pub supervise: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runners: 1,
            supervise: false,
        }
    }
}

/// A service: how to start it, and its process while it runs.
struct Service {
    name: String,
    binary: PathBuf,
    args: &'static [&'static str],
    /// `None` between its death and its restart.
    child: Option<Child>,
    /// When it last started, to tell a crash after a long run (backoff
    /// starts over) from one right after a start.
    started: Instant,
    /// When it exited, the last [`MAX_CRASHES`] times.
    crashes: VecDeque<Instant>,
    /// The waits before its next restarts.
    backoff: ExponentialBackoff,
    /// When it is due to start again, once it has died.
    restart_at: Option<Instant>,
    /// How many times it was started again.
    restarts: u32,
}

/// The running services; stopped in reverse order when dropped.
pub struct Services {
    list: Vec<Service>,
    env: BTreeMap<String, String>,
    logs: Logs,
    supervise: bool,
}

impl Services {
    /// Migrates, then starts the orchestrator, gateway, runner(s) and
    /// notifier from the binaries in `bin` with `env`, and waits until the
    /// gateway at `http_addr` is ready.
    pub fn start(
        bin: &Path,
        env: &BTreeMap<String, String>,
        logs: &Logs,
        http_addr: &str,
        options: Options,
    ) -> Result<Self> {
        // Its report goes with xtask's own messages, not to stdout (where
        // the bench prints its table).
        sys::run(
            Command::new(bin.join("slipway-orchestrator"))
                .arg("migrate")
                .envs(env)
                .stdout(std::io::stderr()),
        )?;
        let mut services = Self {
            list: Vec::new(),
            env: env.clone(),
            logs: logs.clone(),
            supervise: options.supervise,
        };
        let runners = options.runners.max(1);
        let mut plan: Vec<(String, &str, &'static [&'static str])> = vec![
            ("orchestrator".into(), "slipway-orchestrator", &["serve"]),
            ("gateway".into(), "slipway-gateway", &[]),
        ];
        for i in 1..=runners {
            let name = if runners == 1 {
                "runner".to_owned()
            } else {
                format!("runner-{i}")
            };
            plan.push((name, "slipway-runner", &[]));
        }
        plan.push(("notifier".into(), "slipway-notifier", &[]));
        for (name, binary, args) in plan {
            let mut service = Service {
                name,
                binary: bin.join(binary),
                args,
                child: None,
                started: Instant::now(),
                crashes: VecDeque::new(),
                backoff: RESTART.build(),
                restart_at: None,
                restarts: 0,
            };
            services.spawn(&mut service)?;
            services.list.push(service);
        }
        sys::wait_for("the gateway", Duration::from_secs(60), || {
            http::request(http_addr, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
        })?;
        Ok(services)
    }

    /// Waits for a message on `stop`, or (without supervision) for a
    /// service to exit on its own; with supervision, until a service
    /// crashes too often.
    pub fn watch(&mut self, stop: &mpsc::Receiver<()>) -> Result<()> {
        loop {
            match stop.recv_timeout(Duration::from_millis(200)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.check()?;
        }
    }

    /// Without supervision, an error naming the first service that has
    /// exited. With it, starts again the services that are due, and an
    /// error only for one that crashed [`MAX_CRASHES`] times within
    /// [`CRASH_WINDOW`].
    pub fn check(&mut self) -> Result<()> {
        let now = Instant::now();
        for i in 0..self.list.len() {
            let exited = match self.list[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if let Some(status) = exited {
                let s = &mut self.list[i];
                s.child = None;
                if !self.supervise {
                    bail!("{} exited with {status}", s.name);
                }
                if now.duration_since(s.started) > CRASH_WINDOW {
                    // It ran well for a while: a fresh start of the backoff.
                    s.backoff = RESTART.build();
                }
                s.crashes.push_back(now);
                while s.crashes.len() > MAX_CRASHES {
                    s.crashes.pop_front();
                }
                if s.crashes.len() == MAX_CRASHES
                    && s.crashes
                        .front()
                        .is_some_and(|first| now.duration_since(*first) <= CRASH_WINDOW)
                {
                    bail!(
                        "{} exited {MAX_CRASHES} times within {}s (last: {}); stopping everything",
                        s.name,
                        CRASH_WINDOW.as_secs(),
                        describe(status)
                    );
                }
                let delay = s.backoff.next().unwrap_or(Duration::from_secs(10));
                eprintln!(
                    "xtask: {} exited ({}); restarting in {} (restart {})",
                    s.name,
                    describe(status),
                    seconds(delay),
                    s.restarts + 1
                );
                s.restart_at = Some(now + delay);
            }
            if self.list[i].restart_at.is_some_and(|at| at <= now) {
                let mut s = self.list.remove(i);
                s.restart_at = None;
                s.restarts += 1;
                let spawned = self.spawn(&mut s);
                self.list.insert(i, s);
                spawned?;
            }
        }
        Ok(())
    }

    /// Kills the service `name` (its whole process group) with SIGKILL, as
    /// a crash or the OOM killer would; the supervisor starts it again.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let s = self
            .list
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("no service named {name}"))?;
        let child = s
            .child
            .as_mut()
            .with_context(|| format!("{name} is not running"))?;
        let pid = i32::try_from(child.id())?;
        killpg(Pid::from_raw(pid), Signal::SIGKILL)
            .with_context(|| format!("cannot kill {name}"))?;
        Ok(())
    }

    /// The process id of the service `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.list
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.child.as_ref())
            .map(Child::id)
    }

    /// How many times each service was started again, by name.
    pub fn restarts(&self) -> Vec<(String, u32)> {
        self.list
            .iter()
            .map(|s| (s.name.clone(), s.restarts))
            .collect()
    }

    /// Stops the services, the last started first.
    pub fn stop(&mut self) {
        while let Some(service) = self.list.pop() {
            if let Some(mut child) = service.child {
                eprintln!("xtask: stopping {}", service.name);
                stop_child(&mut child, Duration::from_secs(15));
            }
        }
    }

    fn spawn(&self, service: &mut Service) -> Result<()> {
        let mut cmd = Command::new(&service.binary);
        cmd.args(service.args)
            .envs(&self.env)
            .stdin(Stdio::null())
            // Its own process group: a terminal's Ctrl-C reaches xtask alone,
            // which then stops the services in order.
            .process_group(0);
        match &self.logs {
            Logs::Terminal => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Logs::Dir(dir) => {
                fs::create_dir_all(dir)?;
                let file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.log", service.name)))?;
                cmd.stdout(file.try_clone()?).stderr(file);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", service.binary.display()))?;
        if let Some(out) = child.stdout.take() {
            prefix(&service.name, out);
        }
        if let Some(err) = child.stderr.take() {
            prefix(&service.name, err);
        }
        service.child = Some(child);
        service.started = Instant::now();
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `signal 9` or `status 1`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `0.5s`, `1s`, `10s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

fn prefix(name: &str, stream: impl Read + Send + 'static) {
    let name = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[{name:12}] {line}");
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use backon::BackoffBuilder;

    use super::{RESTART, seconds};

    #[test]
    fn restarts_back_off_from_half_a_second_to_ten() {
        let waits: Vec<String> = RESTART.build().take(8).map(seconds).collect();
        assert_eq!(
            waits,
            ["0.5s", "1s", "2s", "4s", "8s", "10s", "10s", "10s"],
            "{waits:?}"
        );
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }
}
