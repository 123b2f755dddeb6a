//! Private Postgres and RabbitMQ instances for `up`, `test` and `bench`, or
//! the ones `SLIPWAY_DATABASE_URL` / `SLIPWAY_AMQP_URL` name, with the Docker
//! Engine, the registry and the edge proxy beside them. Postgres refuses to
//! run as root, so as root its cluster runs as the `postgres` system user,
//! in a directory that user can reach.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use crate::proxy::{self, Proxy};
use crate::sys::{self, Need};

/// Which set of instances: `up`, `test` and `bench` keep separate data and
/// ports, so that each can run while the others do.
#[derive(Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub pg_port: u16,
    /// RabbitMQ's distribution port is this plus 1000.
    pub amqp_port: u16,
    pub registry_port: u16,
    /// The edge proxy's private HTTP and HTTPS ports (tests start proxies
    /// of their own).
    pub proxy_ports: Option<proxy::Ports>,
    /// Trade durability for speed (test data is thrown away).
    pub fast: bool,
    /// Whether `SLIPWAY_DATABASE_URL`, `SLIPWAY_AMQP_URL`,
    /// `SLIPWAY_REGISTRY` and `SLIPWAY_PROXY_ADMIN` may name instances to use
    /// instead of starting private ones.
    pub reuse: bool,
}

pub const DEV: Profile = Profile {
    name: "dev",
    pg_port: 55432,
    amqp_port: 55672,
    registry_port: 5000,
    proxy_ports: Some(proxy::Ports {
        http: 55080,
        https: 55443,
    }),
    fast: false,
    reuse: true,
};

pub const TEST: Profile = Profile {
    name: "test",
    pg_port: 55433,
    amqp_port: 55673,
    registry_port: 5001,
    proxy_ports: None,
    fast: true,
    reuse: true,
};

/// The directory of the newest Postgres's programs (`initdb`, `pgbench`).
pub fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// What building and testing Slipway needs on the machine.
pub fn build_needs() -> Vec<Need> {
    vec![
        Need {
            package: "protobuf-compiler",
            present: || sys::has("protoc"),
        },
        // protoc's well-known types (google/protobuf/timestamp.proto).
        Need {
            package: "libprotobuf-dev",
            present: || Path::new("/usr/include/google/protobuf/timestamp.proto").is_file(),
        },
        Need {
            package: "pkg-config",
            present: || sys::has("pkg-config"),
        },
        // OpenSSL for the libpq the orchestrator builds in (pq-sys `bundled`).
        Need {
            package: "libssl-dev",
            present: || Path::new("/usr/include/openssl/ssl.h").is_file(),
        },
        Need {
            package: "git",
            present: || sys::has("git"),
        },
    ]
}

/// A setting that names an instance to use, if `reuse` allows it.
pub fn shared(reuse: bool, key: &str) -> Option<String> {
    reuse.then(|| std::env::var(key).ok()).flatten()
}

/// What the private instances need; `reuse` as in [`Profile`].
pub fn infra_needs(reuse: bool) -> Vec<Need> {
    let mut needs = crate::docker::needs(reuse);
    if shared(reuse, "SLIPWAY_DATABASE_URL").is_none() {
        needs.push(Need {
            package: "postgresql",
            present: || pg_bin().is_some() && sys::has("psql"),
        });
    }
    if shared(reuse, "SLIPWAY_AMQP_URL").is_none() {
        needs.push(Need {
            package: "rabbitmq-server",
            present: || Path::new(RABBITMQ_SERVER).is_file(),
        });
    }
    // The tests start proxies of their own, whatever `up` uses.
    needs.push(proxy::need());
    needs
}

/// Where a profile keeps its data: in the checkout, or, as root, under
/// /var/tmp, since the `postgres` user may not be able to enter the checkout.
pub fn base_dir(profile: Profile) -> PathBuf {
    let root = sys::root();
    if sys::is_root() {
        let hash = hex::encode(Sha256::digest(root.to_string_lossy().as_bytes()));
        PathBuf::from(format!("/var/tmp/slipway-{}", &hash[..10])).join(profile.name)
    } else {
        root.join(".slipway").join(profile.name)
    }
}

/// Running infrastructure; stops what it started when dropped.
pub struct Infra {
    pub database_url: String,
    pub amqp_url: String,
    /// `host:port` of the registry images are pushed to.
    pub registry: String,
    /// The edge proxy, once [`Infra::start_proxy`] started or found it.
    pub proxy: Option<Proxy>,
    /// [`Profile::reuse`] of the profile it was started for.
    reuse: bool,
    /// The profile and directory it was started with, for starting an
    /// instance again on the same ports and data.
    profile: Profile,
    base: PathBuf,
    postgres: Option<Postgres>,
    rabbit: Option<Rabbit>,
    engine: Option<Child>,
    registry_process: Option<Child>,
}

struct Postgres {
    bin: PathBuf,
    data: PathBuf,
}

struct Rabbit {
    child: Child,
    /// epmd was started by this broker and goes with it.
    stop_epmd: bool,
}

impl Infra {
    pub fn start(profile: Profile) -> Result<Self> {
        Self::start_in(profile, &base_dir(profile))
    }

    /// The instances of `profile` with their data under `base`.
    pub fn start_in(profile: Profile, base: &Path) -> Result<Self> {
        let base = base.to_path_buf();
        fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
        if sys::is_root() {
            // The `postgres` user must be able to walk down to its cluster,
            // whatever root's umask is.
            for dir in [base.parent(), Some(base.as_path())].into_iter().flatten() {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
            }
        }
        let mut infra = Self {
            database_url: String::new(),
            amqp_url: String::new(),
            registry: String::new(),
            proxy: None,
            reuse: profile.reuse,
            profile,
            base: base.clone(),
            postgres: None,
            rabbit: None,
            engine: None,
            registry_process: None,
        };
        match shared(profile.reuse, "SLIPWAY_DATABASE_URL") {
            Some(url) => infra.database_url = url,
            None => {
                let (url, pg) = start_postgres(profile, &base.join("postgres"))?;
                infra.database_url = url;
                infra.postgres = pg;
            }
        }
        match shared(profile.reuse, "SLIPWAY_AMQP_URL") {
            Some(url) => infra.amqp_url = url,
            None => {
                let (url, rabbit) = start_rabbit(profile, &base.join("rabbitmq"))?;
                infra.amqp_url = url;
                infra.rabbit = rabbit;
            }
        }
        infra.engine = crate::docker::start_engine(&base.join("docker"))?;
        let (registry, process) = crate::docker::start_registry(
            &base.join("registry"),
            profile.registry_port,
            profile.reuse,
        )?;
        infra.registry = registry;
        infra.registry_process = process;
        Ok(infra)
    }

    /// Starts the edge proxy with its data in `dir` (the runner's default
    /// is `<SLIPWAY_DATA_DIR>/proxy`), or finds the one
    /// `SLIPWAY_PROXY_ADMIN` names.
    pub fn start_proxy(&mut self, dir: &Path, ports: proxy::Ports) -> Result<&Proxy> {
        Ok(self.proxy.insert(Proxy::start(dir, ports, self.reuse)?))
    }

    /// Whether the registry is the one this started (it allows deletes).
    pub fn own_registry(&self) -> bool {
        self.registry_process.is_some()
    }

    /// Kills Postgres with SIGKILL, the postmaster and every process it
    /// started (each backend leads a process group of its own), as a crash
    /// of its machine would; waits until they are gone and its port is
    /// closed.
    pub fn kill_postgres(&mut self) -> Result<()> {
        let pg = self
            .postgres
            .as_ref()
            .context("this Postgres was not started here")?;
        let pid_file = pg.data.join("postmaster.pid");
        let text = fs::read_to_string(&pid_file)
            .with_context(|| format!("cannot read {}", pid_file.display()))?;
        let pid: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no pid in {}", pid_file.display()))?;
        let mut all = vec![pid];
        all.extend(children(pid));
        for p in &all {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        sys::wait_for("Postgres to go", Duration::from_secs(10), || {
            all.iter().all(|p| gone(*p)) && !sys::port_open(self.profile.pg_port)
        })?;
        // What a restarted machine would find: lock files naming a process
        // that is no more. The postmaster may linger as a zombie until its
        // parent (not us: `pg_ctl` detached it) reaps it, and Postgres
        // would take that for a live server.
        let socket_lock = self
            .base
            .join("postgres")
            .join(format!(".s.PGSQL.{}.lock", self.profile.pg_port));
        for lock in [&pid_file, &socket_lock] {
            match fs::remove_file(lock) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", lock.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Starts Postgres again on the same data directory and port; it
    /// recovers from its write-ahead log first.
    pub fn start_postgres_again(&mut self) -> Result<()> {
        let (_, pg) = start_postgres(self.profile, &self.base.join("postgres"))?;
        self.postgres = pg.or(self.postgres.take());
        Ok(())
    }

    /// Kills RabbitMQ with SIGKILL (the broker's whole process group); waits
    /// until its port is closed.
    pub fn kill_rabbit(&mut self) -> Result<()> {
        let rabbit = self
            .rabbit
            .as_mut()
            .context("this RabbitMQ was not started here")?;
        let pid = i32::try_from(rabbit.child.id())?;
        killpg(Pid::from_raw(pid), Signal::SIGKILL).context("cannot kill RabbitMQ")?;
        let _ = rabbit.child.wait();
        let port = self.profile.amqp_port;
        sys::wait_for("RabbitMQ to go", Duration::from_secs(10), || {
            !sys::port_open(port)
        })
    }

    /// Starts RabbitMQ again on the same data directory and port; durable
    /// queues come back with their persistent messages.
    pub fn start_rabbit_again(&mut self) -> Result<()> {
        let stop_epmd = self.rabbit.as_ref().is_some_and(|r| r.stop_epmd);
        let (_, rabbit) = start_rabbit(self.profile, &self.base.join("rabbitmq"))?;
        self.rabbit = rabbit.map(|mut r| {
            // epmd outlives the broker; whoever started it first stops it.
            r.stop_epmd = stop_epmd;
            r
        });
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut proxy) = self.proxy.take() {
            proxy.stop();
        }
        if let Some(mut registry) = self.registry_process.take() {
            eprintln!("xtask: stopping the registry");
            stop_child(&mut registry, Duration::from_secs(10));
        }
        if let Some(mut engine) = self.engine.take() {
            eprintln!("xtask: stopping the Docker Engine");
            stop_child(&mut engine, Duration::from_secs(30));
        }
        if let Some(mut rabbit) = self.rabbit.take() {
            eprintln!("xtask: stopping RabbitMQ");
            stop_child(&mut rabbit.child, Duration::from_secs(30));
            if rabbit.stop_epmd {
                let _ = Command::new("epmd")
                    .arg("-kill")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(pg) = self.postgres.take() {
            eprintln!("xtask: stopping Postgres");
            let mut cmd = as_postgres(&pg.bin.join("pg_ctl"));
            cmd.arg("-D")
                .arg(&pg.data)
                .args(["-m", "fast", "-w", "stop"]);
            let _ = cmd.stdout(Stdio::null()).status();
        }
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd` in the background (its own process group, its output in the
/// file `log`) and waits up to `timeout` until `ready` holds. When it exits
/// first or never gets ready it is stopped again, and the error names the
/// log with its last line.
pub fn spawn_ready(
    what: &str,
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<Child> {
    let file = fs::File::create(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    let exited = |child: &mut Child| matches!(child.try_wait(), Ok(Some(_)));
    let _ = sys::wait_for(what, timeout, || ready() || exited(&mut child));
    if exited(&mut child) || !ready() {
        stop_child(&mut child, Duration::from_secs(5));
        let text = fs::read_to_string(log).unwrap_or_default();
        let last = text.lines().last().unwrap_or_default().trim();
        bail!("{what} did not start ({last}); see {}", log.display());
    }
    Ok(child)
}

/// SIGTERM to the child's process group, SIGKILL after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = sys::wait_for("process exit", grace, || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.wait();
}

/// The processes whose parent is `pid`, from `/proc`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| stat(*p).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// Whether `pid` has exited (gone, or a zombie waiting to be reaped).
fn gone(pid: i32) -> bool {
    stat(pid).is_none_or(|(state, _)| state == 'Z')
}

/// The state and parent of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold spaces: the fields after
    // it are `state ppid ...`.
    let mut rest = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let parent = rest.next()?.parse().ok()?;
    Some((state, parent))
}

/// A command run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if sys::is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn psql(port: u16, sql: &str) -> Result<String> {
    sys::output(
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(sql),
    )
}

fn start_postgres(profile: Profile, dir: &Path) -> Result<(String, Option<Postgres>)> {
    let url = format!("postgres://slipway@127.0.0.1:{}/slipway", profile.pg_port);
    let bin = pg_bin().context("postgres is not installed")?;
    let data = dir.join("data");
    fs::create_dir_all(dir)?;
    if sys::is_root() {
        sys::run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
        )?;
    }
    if !data.join("PG_VERSION").is_file() {
        eprintln!("xtask: creating a Postgres cluster in {}", data.display());
        let mut cmd = as_postgres(&bin.join("initdb"));
        cmd.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        sys::output(&mut cmd)?;
    }
    let started = if sys::port_open(profile.pg_port) {
        // Ours from an earlier run (perhaps of another checkout): usable as
        // long as it lets us in as `postgres`.
        if psql(profile.pg_port, "SELECT 1").is_err() {
            bail!(
                "port {} is taken by another program; set SLIPWAY_DATABASE_URL to use an existing Postgres",
                profile.pg_port
            );
        }
        eprintln!(
            "xtask: reusing the Postgres already running on port {}",
            profile.pg_port
        );
        None
    } else {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            profile.pg_port,
            dir.display()
        );
        options.push_str(if profile.fast {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        } else {
            // Said, not assumed: a bench on this profile measures a
            // database that keeps what it acknowledged.
            " -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        });
        let mut cmd = as_postgres(&bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.join("server.log"))
            .arg("-o")
            .arg(options)
            .arg("start")
            .stdout(Stdio::null());
        sys::run(&mut cmd).with_context(|| format!("see {}", dir.join("server.log").display()))?;
        Some(Postgres { bin, data })
    };
    let exists = psql(
        profile.pg_port,
        "SELECT 1 FROM pg_roles WHERE rolname = 'slipway'",
    )?;
    if exists.trim().is_empty() {
        psql(profile.pg_port, "CREATE ROLE slipway LOGIN CREATEDB")?;
    }
    let exists = psql(
        profile.pg_port,
        "SELECT 1 FROM pg_database WHERE datname = 'slipway'",
    )?;
    if exists.trim().is_empty() {
        psql(profile.pg_port, "CREATE DATABASE slipway OWNER slipway")?;
    }
    Ok((url, started))
}

fn start_rabbit(profile: Profile, dir: &Path) -> Result<(String, Option<Rabbit>)> {
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", profile.amqp_port);
    if sys::port_open(profile.amqp_port) {
        eprintln!(
            "xtask: reusing the RabbitMQ already running on port {}",
            profile.amqp_port
        );
        return Ok((url, None));
    }
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join("rabbitmq.conf"),
        format!("listeners.tcp.default = 127.0.0.1:{}\n", profile.amqp_port),
    )?;
    fs::write(dir.join("enabled_plugins"), "[].\n")?;
    let epmd_was_running = sys::port_open(4369);
    eprintln!("xtask: starting RabbitMQ on port {}", profile.amqp_port);
    let child = spawn_ready(
        "RabbitMQ",
        Command::new(RABBITMQ_SERVER)
            .env("HOME", dir)
            .env(
                "RABBITMQ_NODENAME",
                format!("slipway-{}@localhost", profile.name),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", profile.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", (profile.amqp_port + 1000).to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid")),
        &dir.join("server.out"),
        Duration::from_secs(90),
        || sys::port_open(profile.amqp_port),
    )?;
    let rabbit = Rabbit {
        child,
        stop_epmd: !epmd_was_running,
    };
    Ok((url, Some(rabbit)))
}
