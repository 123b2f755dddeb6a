//! The Docker Engine and a registry for `up` and `test`: the engine is
//! started (`dockerd`, as root) when none answers on the local socket, the
//! registry (Debian's `docker-registry`, bound to 127.0.0.1) when
//! `SLIPWAY_REGISTRY` does not name one that answers.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::infra::spawn_ready;
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
    eprintln!("xtask: starting the Docker Engine");
    let child = spawn_ready(
        "the Docker Engine",
        &mut Command::new("dockerd"),
        &dir.join("dockerd.log"),
        Duration::from_secs(60),
        engine_answers,
    )?;
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
    // Deletes (retention's SLIPWAY_REGISTRY_DELETE) only unlink manifests;
    // the blobs nothing refers to any more are freed here, while nothing
    // pushes. An empty storage has nothing to collect (and the command
    // fails on it).
    if dir.join("data/docker/registry/v2/repositories").is_dir() {
        let gc = Command::new("docker-registry")
            .arg("garbage-collect")
            .arg(&config)
            .output();
        match gc {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "xtask: the registry's garbage-collect failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("xtask: cannot run the registry's garbage-collect: {e}"),
        }
    }
    eprintln!("xtask: starting a registry on {addr}");
    let child = spawn_ready(
        "the registry",
        Command::new("docker-registry").arg("serve").arg(&config),
        &dir.join("registry.log"),
        Duration::from_secs(30),
        || sys::port_open(port),
    )?;
    Ok((addr, Some(child)))
}
