//! A registry that wants credentials, for tests of a login: Debian's
//! `docker-registry` with htpasswd auth, on a free port of its own. The
//! registry `cargo xtask test` runs ([`crate::registry`]) lets anyone push,
//! so it cannot tell a right password from a wrong one or from none.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::DEADLINE;
use crate::images::free_port;

/// A `docker-registry` process, killed when dropped.
pub struct AuthRegistry {
    /// `127.0.0.1:PORT`: the registry part of the references pushed to it.
    pub addr: String,
    /// The registry's process, killed on drop.
    child: Child,
    /// Its configuration, htpasswd file, storage and log; removed after it.
    dir: tempfile::TempDir,
}

impl AuthRegistry {
    /// Starts a registry that lets `user` in with `password` (hashed with
    /// bcrypt through perl's crypt(3), which is libxcrypt on Debian), and
    /// waits until it answers.
    pub async fn start(user: &str, password: &str) -> Self {
        Self::launch(user, password, false).await
    }

    /// The same, allowing manifests to be deleted (`storage.delete`).
    pub async fn start_deleting(user: &str, password: &str) -> Self {
        Self::launch(user, password, true).await
    }

    async fn launch(user: &str, password: &str, deletes: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let hash = Command::new("perl")
            .args([
                "-e",
                "print crypt($ARGV[0], q($2b$05$) . q(slipwaysaltsaltsaltsalt))",
                password,
            ])
            .output()
            .expect("perl runs");
        let hash = String::from_utf8(hash.stdout).expect("perl prints text");
        assert!(hash.starts_with("$2b$05$"), "no bcrypt from perl: {hash:?}");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {deletes}\n\
             http:\n  addr: {addr}\n\
             auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry's config");
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("create the registry's log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("/usr/bin/docker-registry (Debian package docker-registry)");
        let mut registry = Self { addr, child, dir };
        registry.wait_ready().await;
        registry
    }

    /// Polls `/v2/` until it asks for credentials (401), as a registry with
    /// auth does once it listens.
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let url = format!("http://{}/v2/", self.addr);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(answer) = client.get(&url).send().await
                && answer.status() == 401
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("the registry's status") {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("the registry exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "the registry on {} did not answer in {DEADLINE:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
