//! A private edge proxy (Caddy, the Debian package) per test: its admin API
//! on a unix socket in its own 0700 directory, its storage and autosaved
//! config in a temporary directory, its public ports free ones. It can be
//! killed and started again, with its last config or empty.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::images::free_port;

pub struct Proxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The proxy's public HTTP and HTTPS ports, for routes with domains.
    pub http_port: u16,
    pub https_port: u16,
}

impl Proxy {
    /// Starts a proxy with nothing but its admin API configured.
    pub async fn start() -> Proxy {
        let dir = tempfile::tempdir().expect("proxy dir");
        let admin_dir = dir.path().join("admin");
        std::fs::create_dir(&admin_dir).expect("admin dir");
        std::fs::set_permissions(&admin_dir, std::fs::Permissions::from_mode(0o700))
            .expect("admin dir mode");
        let mut proxy = Proxy {
            dir,
            child: None,
            http_port: free_port(),
            https_port: free_port(),
        };
        let base = serde_json::json!({"admin": {
            "listen": format!("unix/{}", proxy.socket().display()),
            "origins": ["localhost"],
        }});
        std::fs::write(proxy.base_config(), base.to_string()).expect("base config");
        proxy.spawn().await;
        proxy
    }

    /// `SLIPWAY_PROXY_ADMIN` for a runner of this proxy.
    pub fn admin(&self) -> String {
        format!("unix/{}", self.socket().display())
    }

    /// The root certificate of the proxy's own CA (`tls: internal`), once a
    /// route with it was served.
    pub fn root_cert(&self) -> PathBuf {
        self.dir
            .path()
            .join("data/caddy/pki/authorities/local/root.crt")
    }

    /// Kills the proxy at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed proxy again with its last config (`--resume`).
    pub async fn resume(&mut self) {
        self.spawn().await;
    }

    /// Starts the killed proxy again without the config it had: only its
    /// admin API, as after a lost disk or a reinstall.
    pub async fn start_empty(&mut self) {
        let _ = std::fs::remove_file(self.autosave());
        self.spawn().await;
    }

    /// The JSON config the proxy runs now.
    pub async fn config(&self) -> serde_json::Value {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::UnixStream::connect(self.socket())
            .await
            .expect("the proxy's admin socket");
        stream
            .write_all(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("admin request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("admin answer");
        let answer = String::from_utf8_lossy(&answer);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin/admin.sock")
    }

    fn base_config(&self) -> PathBuf {
        self.dir.path().join("base.json")
    }

    fn autosave(&self) -> PathBuf {
        self.dir.path().join("config/caddy/autosave.json")
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the proxy runs already");
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::File::create(self.dir.path().join("caddy.log")).expect("proxy log");
        let child = Command::new("caddy")
            .args(["run", "--resume", "--config"])
            .arg(self.base_config())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("caddy runs (Debian package caddy)");
        self.child = Some(child);
        wait_for_socket(&self.socket()).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_for_socket(socket: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while tokio::net::UnixStream::connect(socket).await.is_err() {
        assert!(
            Instant::now() < until,
            "the proxy's admin socket {} did not open",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
