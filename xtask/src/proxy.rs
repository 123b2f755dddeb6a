//! The edge proxy (Caddy) for `up` and `bench`, or the one
//! `SLIPWAY_PROXY_ADMIN` names. Caddy runs like Postgres and RabbitMQ: in the
//! foreground of xtask, its data under `<data dir>/proxy`, its admin API on a
//! unix socket in a directory only its owner can enter, `caddy run --resume`
//! so that the runner's routes survive a restart.
//!
//! The runner owns the routes (edge.md); xtask decides only what surrounds
//! them: the admin endpoint, the proxy's HTTP and HTTPS ports, no system
//! trust for Caddy's local CA, and, with `SLIPWAY_DOMAIN`, the route named
//! `gateway` that serves the gateway itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http;
use crate::infra::{spawn_ready, stop_child};
use crate::sys::{self, Need};

/// The `@id` of the route that serves the gateway through the proxy.
const GATEWAY_ROUTE: &str = "gateway";
/// The HTTP server the runner keeps its routes in and `up` adds the
/// gateway's route to.
const SERVER: &str = "slipway";
/// A unix socket path longer than this cannot be bound (`sun_path`).
const MAX_SOCKET_PATH: usize = 107;

pub fn need() -> Need {
    Need {
        package: "caddy",
        present: || sys::has("caddy"),
    }
}

/// The proxy's public ports, which the runner puts in the routes it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

impl Ports {
    /// What a proxy serving the internet binds (ACME needs both).
    pub const PUBLIC: Self = Self {
        http: 80,
        https: 443,
    };

    /// `SLIPWAY_PROXY_HTTP_PORT` / `SLIPWAY_PROXY_HTTPS_PORT` when set, else
    /// `default`.
    pub fn from_env(default: Self) -> Result<Self> {
        let port = |key: &str, default: u16| -> Result<u16> {
            match std::env::var(key) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{key}={v:?} is not a port number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            http: port("SLIPWAY_PROXY_HTTP_PORT", default.http)?,
            https: port("SLIPWAY_PROXY_HTTPS_PORT", default.https)?,
        })
    }
}

/// Where the admin API answers, in the notation of `SLIPWAY_PROXY_ADMIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admin {
    /// `unix/<path>`
    Unix(PathBuf),
    /// `http://host:port`
    Tcp(String),
}

impl Admin {
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix/") {
            if !path.starts_with('/') {
                bail!("SLIPWAY_PROXY_ADMIN={s:?}: the socket path must be absolute (unix//path)");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match s.strip_prefix("http://") {
            Some(addr) if !addr.is_empty() => Ok(Self::Tcp(addr.trim_end_matches('/').to_owned())),
            _ => bail!("SLIPWAY_PROXY_ADMIN={s:?}: use unix/<socket path> or http://<host>:<port>"),
        }
    }

    /// The value the runner reads from `SLIPWAY_PROXY_ADMIN`.
    pub fn setting(&self) -> String {
        match self {
            Self::Unix(path) => format!("unix/{}", path.display()),
            Self::Tcp(addr) => format!("http://{addr}"),
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<http::Response> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let headers = [("Content-Type", "application/json")];
        match self {
            Self::Unix(socket) => {
                http::request_unix(socket, method, path, &headers, body.as_bytes())
            }
            Self::Tcp(addr) => http::request(addr, method, path, &headers, body.as_bytes()),
        }
    }

    /// A change of the configuration; anything but a 200 is an error.
    fn change(&self, method: &str, path: &str, body: &Value) -> Result<()> {
        let answer = self.request(method, path, Some(body))?;
        if answer.status != 200 {
            bail!(
                "the proxy refused {method} {path}: {} {}",
                answer.status,
                answer.body.trim()
            );
        }
        Ok(())
    }

    /// The value at `path` (`/config/...` or `/id/...`); `None` when there
    /// is none (Caddy answers `null`, or 400/404 for a path through a
    /// missing object).
    pub fn get(&self, path: &str) -> Result<Option<Value>> {
        let answer = self.request("GET", path, None)?;
        match answer.status {
            200 => {
                let value: Value = serde_json::from_str(&answer.body)
                    .with_context(|| format!("GET {path}: the proxy's answer is not JSON"))?;
                Ok((!value.is_null()).then_some(value))
            }
            400 | 404 => Ok(None),
            other => bail!("GET {path} on the proxy: {other} {}", answer.body.trim()),
        }
    }

    /// Whether the admin API answers.
    pub fn answers(&self) -> bool {
        self.request("GET", "/config/", None)
            .is_ok_and(|a| a.status == 200)
    }

    /// Puts `value` at `/config/<keys>`, creating the objects on the way
    /// that do not exist yet (Caddy refuses a path through a missing one).
    fn put_path(&self, keys: &[&str], value: Value) -> Result<()> {
        for depth in 1..=keys.len() {
            let path = format!("/config/{}", keys[..depth].join("/"));
            if self.get(&path)?.is_none() {
                let nested = keys[depth..]
                    .iter()
                    .rev()
                    .fold(value, |inner, key| json!({ *key: inner }));
                return self.change("PUT", &path, &nested);
            }
        }
        self.change("PATCH", &format!("/config/{}", keys.join("/")), &value)
    }

    /// Serves the gateway (at `upstream`, `host:port`) through the proxy on
    /// `https://<domain>/`: the route `gateway` in the `slipway` server,
    /// which is created listening on the HTTPS port when missing. The route
    /// goes first, before any catch-all the runner keeps at the end.
    pub fn serve_gateway(&self, domain: &str, upstream: &str, https_port: u16) -> Result<()> {
        let route = json!({
            "@id": GATEWAY_ROUTE,
            "match": [{ "host": [domain] }],
            "handle": [{ "handler": "reverse_proxy", "upstreams": [{ "dial": upstream }] }],
            "terminal": true,
        });
        let id = format!("/id/{GATEWAY_ROUTE}");
        if self.get(&id)?.is_some() {
            return self.change("PATCH", &id, &route);
        }
        let server = ["apps", "http", "servers", SERVER];
        if self
            .get(&format!("/config/{}", server.join("/")))?
            .is_none()
        {
            return self.put_path(&server, server_config(https_port, vec![route]));
        }
        let routes = format!("/config/{}/routes", server.join("/"));
        if self.get(&routes)?.is_none() {
            self.change("PUT", &routes, &json!([route]))
        } else {
            // PUT on an array index inserts there.
            self.change("PUT", &format!("{routes}/0"), &route)
        }
    }

    /// Removes the `gateway` route, if any.
    pub fn forget_gateway(&self) -> Result<()> {
        let id = format!("/id/{GATEWAY_ROUTE}");
        if self.get(&id)?.is_some() {
            let answer = self.request("DELETE", &id, None)?;
            if answer.status != 200 {
                bail!(
                    "the proxy refused to remove the gateway's route: {}",
                    answer.body.trim()
                );
            }
        }
        Ok(())
    }
}

/// The `slipway` HTTP server as the runner creates it.
fn server_config(https_port: u16, routes: Vec<Value>) -> Value {
    json!({
        "listen": [format!(":{https_port}")],
        "protocols": ["h1", "h2"],
        "routes": routes,
    })
}

/// What xtask decides in Caddy's configuration: the admin endpoint on
/// `socket` (origin `localhost`, without which Caddy answers 403 on a
/// socket), the HTTP and HTTPS ports, and no installation of Caddy's local
/// CA into the system's trust store (the root is in Caddy's storage).
pub fn base_config(socket: &Path, ports: Ports) -> Value {
    json!({
        "admin": {
            "listen": format!("unix/{}", socket.display()),
            "origins": ["localhost"],
        },
        "apps": {
            "http": { "http_port": ports.http, "https_port": ports.https },
            "pki": { "certificate_authorities": { "local": { "install_trust": false } } },
        },
    })
}

/// The configuration Caddy resumes from: the autosaved one (the runner's
/// routes, certificates' automation) with `base` laid over it, and the
/// `slipway` server moved to the HTTPS port of `base` (a run with
/// `SLIPWAY_DOMAIN` binds 443, a run without a private port).
pub fn resumed_config(mut saved: Value, base: &Value) -> Value {
    overlay(&mut saved, base);
    let https = base.pointer("/apps/http/https_port").cloned();
    if let (Some(https), Some(server)) = (
        https.and_then(|p| p.as_u64()),
        saved.pointer_mut(&format!("/apps/http/servers/{SERVER}")),
    ) && let Some(server) = server.as_object_mut()
    {
        server.insert("listen".to_owned(), json!([format!(":{https}")]));
    }
    saved
}

/// Lays the leaves of `top` over `under`, object by object.
fn overlay(under: &mut Value, top: &Value) {
    match (under, top) {
        (Value::Object(under), Value::Object(top)) => {
            for (key, value) in top {
                match under.get_mut(key) {
                    Some(slot) if slot.is_object() && value.is_object() => overlay(slot, value),
                    _ => {
                        under.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (under, top) => *under = top.clone(),
    }
}

/// The proxy `up` and `bench` use.
pub struct Proxy {
    pub admin: Admin,
    pub ports: Ports,
    /// The root of Caddy's storage (certificates, the local CA), when this
    /// process started Caddy.
    pub storage: Option<PathBuf>,
    child: Option<Child>,
}

impl Proxy {
    /// Reuses the proxy `SLIPWAY_PROXY_ADMIN` names (when `reuse` allows
    /// it), or starts Caddy with its data in `dir` on `ports`.
    pub fn start(dir: &Path, ports: Ports, reuse: bool) -> Result<Self> {
        if let Some(setting) = crate::infra::shared(reuse, "SLIPWAY_PROXY_ADMIN") {
            let admin = Admin::parse(&setting)?;
            if !admin.answers() {
                bail!("no edge proxy answers at SLIPWAY_PROXY_ADMIN={setting}");
            }
            eprintln!("xtask: using the edge proxy at {setting}");
            return Ok(Self {
                admin,
                ports,
                storage: None,
                child: None,
            });
        }
        let socket = dir.join("admin.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the proxy's admin socket path {} is too long for a unix socket; set SLIPWAY_DATA_DIR to a shorter directory",
                socket.display()
            );
        }
        let admin = Admin::Unix(socket.clone());
        // Only the owner may enter where the socket is: the admin API can
        // reconfigure everything the proxy serves.
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        if admin.answers() {
            bail!(
                "an edge proxy already answers on {}: stop it, or set SLIPWAY_PROXY_ADMIN=unix/{} to use it",
                socket.display(),
                socket.display()
            );
        }
        let config_home = dir.join("config");
        let data_home = dir.join("data");
        fs::create_dir_all(config_home.join("caddy"))?;
        fs::create_dir_all(&data_home)?;
        let base = base_config(&socket, ports);
        let base_file = dir.join("base.json");
        fs::write(&base_file, serde_json::to_vec_pretty(&base)?)?;
        // `--resume` ignores `--config` when an autosave exists: what xtask
        // decides goes into the autosave too.
        let autosave = config_home.join("caddy/autosave.json");
        if let Ok(text) = fs::read_to_string(&autosave) {
            let saved: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", autosave.display()))?;
            fs::write(&autosave, resumed_config(saved, &base).to_string())?;
        }
        eprintln!(
            "xtask: starting the edge proxy (Caddy) on ports {} and {}",
            ports.http, ports.https
        );
        let child = spawn_ready(
            "the edge proxy",
            Command::new("caddy")
                .args(["run", "--resume", "--config"])
                .arg(&base_file)
                .env("XDG_CONFIG_HOME", &config_home)
                .env("XDG_DATA_HOME", &data_home),
            &dir.join("caddy.log"),
            Duration::from_secs(30),
            || admin.answers(),
        )?;
        Ok(Self {
            admin,
            ports,
            storage: Some(data_home.join("caddy")),
            child: Some(child),
        })
    }

    /// Whether this process started the proxy (and so owns its settings).
    pub fn owned(&self) -> bool {
        self.child.is_some()
    }

    /// The runner's settings for this proxy.
    pub fn env(&self) -> [(String, String); 3] {
        [
            ("SLIPWAY_PROXY_ADMIN".to_owned(), self.admin.setting()),
            (
                "SLIPWAY_PROXY_HTTP_PORT".to_owned(),
                self.ports.http.to_string(),
            ),
            (
                "SLIPWAY_PROXY_HTTPS_PORT".to_owned(),
                self.ports.https.to_string(),
            ),
        ]
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            eprintln!("xtask: stopping the edge proxy");
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_settings_parse_both_notations() {
        let unix = Admin::parse("unix//var/lib/slipway/proxy/admin.sock").ok();
        assert_eq!(
            unix,
            Some(Admin::Unix(PathBuf::from(
                "/var/lib/slipway/proxy/admin.sock"
            )))
        );
        assert_eq!(
            unix.map(|a| a.setting()).as_deref(),
            Some("unix//var/lib/slipway/proxy/admin.sock")
        );
        assert_eq!(
            Admin::parse("http://10.0.0.2:2019/").ok(),
            Some(Admin::Tcp("10.0.0.2:2019".to_owned()))
        );
        for bad in [
            "unix/relative.sock",
            "localhost:2019",
            "http://",
            "https://h:1",
        ] {
            assert!(Admin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resumed_config_keeps_routes_and_takes_the_new_ports_and_socket() {
        let saved = json!({
            "admin": { "listen": "unix//old/admin.sock", "origins": ["localhost"] },
            "apps": {
                "http": {
                    "http_port": 80,
                    "https_port": 443,
                    "servers": {
                        "slipway": { "listen": [":443"], "routes": [{ "@id": "gateway" }] },
                        "slipway-listen-18088": { "listen": [":18088"], "routes": [{ "@id": "slipway-x" }] }
                    }
                },
                "tls": { "automation": { "policies": [{ "@id": "slipway-tls" }] } }
            }
        });
        let base = base_config(
            Path::new("/data/proxy/admin.sock"),
            Ports {
                http: 55080,
                https: 55443,
            },
        );
        let config = resumed_config(saved, &base);
        assert_eq!(
            config.pointer("/admin/listen"),
            Some(&json!("unix//data/proxy/admin.sock"))
        );
        assert_eq!(config.pointer("/apps/http/http_port"), Some(&json!(55080)));
        assert_eq!(
            config.pointer("/apps/http/servers/slipway/listen"),
            Some(&json!([":55443"]))
        );
        assert_eq!(
            config.pointer("/apps/http/servers/slipway/routes/0/@id"),
            Some(&json!("gateway"))
        );
        assert_eq!(
            config.pointer("/apps/http/servers/slipway-listen-18088/listen"),
            Some(&json!([":18088"]))
        );
        assert_eq!(
            config.pointer("/apps/tls/automation/policies/0/@id"),
            Some(&json!("slipway-tls"))
        );
        assert_eq!(
            config.pointer("/apps/pki/certificate_authorities/local/install_trust"),
            Some(&json!(false))
        );
    }
}
