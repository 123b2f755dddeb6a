//! The Docker Engine and a registry for `up` and `test`: the engine is
//! started (`dockerd`, as root) when none answers on the local socket, the
//! registry (Debian's `docker-registry`, bound to 127.0.0.1) when
//! `SLIPWAY_REGISTRY` does not name one that answers.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::sys::{self, Need};

const SOCKET: &str = "/var/run/docker.sock";

/// What the engine and the registry need; `reuse` as in
/// [`crate::infra::Profile`].
pub fn needs(reuse: bool) -> Vec<Need> {
    let mut needs = vec![
        // Test images are built FROM scratch around a static busybox.
        Need {
            package: "busybox-static",
            present: || Path::new("/bin/busybox").is_file(),
        },
        Need {
            package: "docker-compose",
            present: || sys::has("docker-compose"),
        },
    ];
    if std::env::var_os("SLIPWAY_DOCKER_HOST").is_none() {
        needs.push(Need {
            package: "docker.io",
            present: || sys::has("dockerd"),
        });
    }
    if crate::infra::shared(reuse, "SLIPWAY_REGISTRY").is_none() {
        needs.push(Need {
            package: "docker-registry",
            present: || sys::has("docker-registry"),
        });
    }
    needs
}

/// Whether an engine answers `/_ping` on the local socket.
fn engine_answers() -> bool {
    let Ok(mut stream) = UnixStream::connect(SOCKET) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ")
}

/// Starts `dockerd` unless an engine answers (or `SLIPWAY_DOCKER_HOST`
/// names one); returns the process when it started one.
pub fn start_engine(dir: &Path) -> Result<Option<Child>> {
    if std::env::var_os("SLIPWAY_DOCKER_HOST").is_some() || engine_answers() {
        return Ok(None);
    }
    if !sys::is_root() {
        bail!(
            "no Docker Engine answers on {SOCKET}; start one (sudo systemctl start docker) or set SLIPWAY_DOCKER_HOST"
        );
    }
    fs::create_dir_all(dir)?;
    let log = fs::File::create(dir.join("dockerd.log"))?;
    eprintln!("xtask: starting the Docker Engine");
    let mut child = Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start dockerd")?;
    let ready = sys::wait_for("the Docker Engine", Duration::from_secs(60), || {
        engine_answers() || matches!(child.try_wait(), Ok(Some(_)))
    });
    if ready.is_err() || !engine_answers() {
        crate::infra::stop_child(&mut child, Duration::from_secs(5));
        bail!(
            "the Docker Engine did not start; see {}",
            dir.join("dockerd.log").display()
        );
    }
    Ok(Some(child))
}

/// Starts a registry on 127.0.0.1:`port` unless `SLIPWAY_REGISTRY` names
/// one (and `reuse` allows it) or one answers there; returns its address and
/// the process.
pub fn start_registry(dir: &Path, port: u16, reuse: bool) -> Result<(String, Option<Child>)> {
    if let Some(registry) = crate::infra::shared(reuse, "SLIPWAY_REGISTRY") {
        return Ok((registry, None));
    }
    let addr = format!("127.0.0.1:{port}");
    if sys::port_open(port) {
        eprintln!("xtask: reusing the registry already running on {addr}");
        return Ok((addr, None));
    }
    fs::create_dir_all(dir.join("data"))?;
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        ),
    )?;
    let log = fs::File::create(dir.join("registry.log"))?;
    eprintln!("xtask: starting a registry on {addr}");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start docker-registry")?;
    let ready = sys::wait_for("the registry", Duration::from_secs(30), || {
        sys::port_open(port) || matches!(child.try_wait(), Ok(Some(_)))
    });
    if ready.is_err() || !sys::port_open(port) {
        crate::infra::stop_child(&mut child, Duration::from_secs(5));
        bail!(
            "the registry did not start; see {}",
            dir.join("registry.log").display()
        );
    }
    Ok((addr, Some(child)))
}
