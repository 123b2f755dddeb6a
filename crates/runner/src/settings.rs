//! The runner's settings (runtime.md).

use std::path::PathBuf;

use domain::labels::Labels;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// The orchestrator's gRPC address (`SLIPWAY_ORCHESTRATOR_URL`):
    /// leases, reports and logs go there; `https://` uses TLS.
    pub orchestrator_url: String,
    /// A PEM file of the CA that signed the orchestrator's certificate
    /// (`SLIPWAY_ORCHESTRATOR_CA`), trusted instead of the system roots;
    /// empty: the system roots (docs/tls.md).
    pub orchestrator_ca: String,
    /// The broker the task queues live on (`SLIPWAY_AMQP_URL`).
    pub amqp_url: String,
    /// A PEM file of a CA trusted for an `amqps://` broker besides the
    /// system roots (`SLIPWAY_AMQP_CA`); empty: the system roots alone.
    pub amqp_ca: String,
    /// Token the runner presents to the orchestrator, unless `runner_token`
    /// is set. One of the two is required.
    pub api_token: String,
    /// The orchestrator's runner token (`SLIPWAY_RUNNER_TOKEN`), when it has one.
    pub runner_token: String,
    /// Prefix of queue names, the orchestrator's, to share a broker
    /// between installations.
    pub queue_prefix: String,
    /// Delete the task queue after this long unused (0: never); for
    /// throwaway installations such as test runs.
    pub queue_expires_ms: u32,
    /// Where images are pushed: `host:port[/prefix]`.
    pub registry: String,
    /// The Docker Engine: empty for the local socket, else `unix:///path`
    /// or `tcp://host:port`.
    pub docker_host: String,
    /// Local images kept per deployed repository after a deploy (the
    /// newest; in-use ones always stay).
    pub keep_images: usize,
    /// Stopped versions kept per environment besides the running one (at
    /// least one): what a rollback starts again at once.
    pub keep_containers: usize,
    /// Workspaces live under `<data_dir>/workspaces`, the repositories'
    /// mirrors under `<data_dir>/mirrors`, caches under `<data_dir>/caches`.
    pub data_dir: PathBuf,
    /// `SLIPWAY_CACHE_MAX_BYTES`: the space the caches of this host may
    /// take, in bytes or with a `KiB`, `MiB`, `GiB` or `TiB` suffix; the
    /// least recently used go first past it.
    pub cache_max_bytes: String,
    /// Tasks this runner runs at once (`SLIPWAY_RUNNER_CONCURRENCY`); 0 means
    /// the number of CPUs.
    pub runner_concurrency: usize,
    /// How the runner names itself in leases; empty: host name and a random suffix.
    pub runner_id: String,
    /// `SLIPWAY_RUNNER_LABELS`: labels separated by commas (`linux,gpu`); the
    /// runner takes the tasks of workflows whose `runs_on` it has all of.
    pub runner_labels: String,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace_ms: u64,
    /// Time between heartbeats; a cancel reaches a step within about this.
    pub heartbeat_ms: u64,
    /// Where `GET /metrics` is served (`SLIPWAY_METRICS_ADDR`); empty (the
    /// default): not at all, as several runners may share a host; port 0
    /// picks one.
    pub metrics_addr: String,
    /// The edge proxy's admin API (`SLIPWAY_PROXY_ADMIN`): `unix/<socket>`
    /// or `http://host:port`; empty: `unix/<data_dir>/proxy/admin.sock`.
    pub proxy_admin: String,
    /// The proxy's public HTTP and HTTPS ports, which the routes it serves
    /// for domains listen on (`SLIPWAY_PROXY_HTTP_PORT`, `..._HTTPS_PORT`).
    pub proxy_http_port: u16,
    pub proxy_https_port: u16,
    /// How often the runner checks that the proxy still has its routes, and
    /// re-applies them when it restarted without them.
    pub proxy_check_ms: u64,
    /// The host this runner deploys to (`SLIPWAY_RUNNER_HOST`), recorded on
    /// each deployment; empty: the host name.
    pub runner_host: String,
    /// Log filter (`SLIPWAY_LOG`, e.g. `info` or `runner=debug`).
    pub log: String,
    /// Log lines as JSON, for a log collector (`SLIPWAY_LOG_JSON`).
    pub log_json: bool,
    /// How often the runner removes the workspaces crashed tasks left and
    /// deletes the registry manifests of pruned images
    /// (`SLIPWAY_SWEEP_INTERVAL`, a duration from `1s` to `24h`).
    pub sweep_interval: String,
    /// Longest line of a task's log (`SLIPWAY_LOG_LINE_MAX_BYTES`, bytes or
    /// a size such as `64KiB`, from 1 KiB to 16 MiB): the rest of a longer
    /// line is cut, with a marker, as it streams by.
    pub log_line_max_bytes: String,
    /// How often each environment's current deployment on this host is
    /// probed after its deploy (`SLIPWAY_HEALTH_INTERVAL`, a duration from
    /// `1s` to `24h`); the runners of a host take turns.
    pub health_interval: String,
}

/// A duration setting from 1 s to 24 h.
fn interval(name: &str, value: &str) -> Result<std::time::Duration, String> {
    let bounds = std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(24 * 3600);
    match domain::workflow::parse_duration(value) {
        Ok(d) if bounds.contains(&d) => Ok(d),
        Ok(_) | Err(domain::workflow::ValueError::DurationTooLong(_)) => {
            Err(format!("{name} must be between 1s and 24h, got {value:?}"))
        }
        Err(_) => Err(format!(
            "{name}: invalid duration {value:?}: use e.g. 5m or 30s"
        )),
    }
}

/// The bounds of `log_line_max_bytes`.
const LOG_LINE: std::ops::RangeInclusive<u64> = 1024..=16 * 1024 * 1024;

/// The longest heartbeat interval and kill grace accepted: an hour. Longer
/// ones are mistakes, and overflow clock arithmetic at the extreme.
const MAX_MS: u64 = 3_600_000;

/// The most tasks one runner takes at once.
const MAX_CONCURRENCY: usize = 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            orchestrator_url: "http://127.0.0.1:50051".to_owned(),
            orchestrator_ca: String::new(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_ca: String::new(),
            api_token: String::new(),
            runner_token: String::new(),
            queue_prefix: String::new(),
            queue_expires_ms: 0,
            registry: "127.0.0.1:5000".to_owned(),
            docker_host: String::new(),
            keep_images: 5,
            keep_containers: 2,
            data_dir: PathBuf::from("./.slipway/data"),
            cache_max_bytes: "10GiB".to_owned(),
            runner_concurrency: 0,
            runner_id: String::new(),
            runner_labels: String::new(),
            kill_grace_ms: 5000,
            heartbeat_ms: 1000,
            metrics_addr: String::new(),
            proxy_admin: String::new(),
            proxy_http_port: 80,
            proxy_https_port: 443,
            proxy_check_ms: 2000,
            runner_host: String::new(),
            log: "info".to_owned(),
            log_json: false,
            sweep_interval: "5m".to_owned(),
            log_line_max_bytes: "64KiB".to_owned(),
            health_interval: "60s".to_owned(),
        }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.token().is_empty() {
            return Err("SLIPWAY_RUNNER_TOKEN or SLIPWAY_API_TOKEN is required".to_owned());
        }
        if !(1..=MAX_MS).contains(&self.heartbeat_ms) {
            return Err(format!(
                "SLIPWAY_HEARTBEAT_MS must be from 1 to {MAX_MS} (an hour), not {}",
                self.heartbeat_ms
            ));
        }
        if self.kill_grace_ms > MAX_MS {
            return Err(format!(
                "SLIPWAY_KILL_GRACE_MS must be at most {MAX_MS} (an hour), not {}",
                self.kill_grace_ms
            ));
        }
        if self.runner_concurrency > MAX_CONCURRENCY {
            return Err(format!(
                "SLIPWAY_RUNNER_CONCURRENCY must be at most {MAX_CONCURRENCY}, not {}",
                self.runner_concurrency
            ));
        }
        if !(1..=MAX_MS).contains(&self.proxy_check_ms) {
            return Err(format!(
                "SLIPWAY_PROXY_CHECK_MS must be from 1 to {MAX_MS} (an hour), not {}",
                self.proxy_check_ms
            ));
        }
        if self.proxy_http_port == 0 || self.proxy_https_port == 0 {
            return Err(
                "SLIPWAY_PROXY_HTTP_PORT and SLIPWAY_PROXY_HTTPS_PORT must be from 1 to 65535"
                    .to_owned(),
            );
        }
        self.sweep_every()?;
        self.health_every()?;
        self.metrics_addr()?;
        self.cache_max_bytes()?;
        self.log_line_max()?;
        self.labels()?;
        self.proxy_admin()?;
        Ok(())
    }

    /// `sweep_interval` read.
    pub fn sweep_every(&self) -> Result<std::time::Duration, String> {
        interval("SLIPWAY_SWEEP_INTERVAL", &self.sweep_interval)
    }

    /// `health_interval` read.
    pub fn health_every(&self) -> Result<std::time::Duration, String> {
        interval("SLIPWAY_HEALTH_INTERVAL", &self.health_interval)
    }

    /// `proxy_admin` read, with its default under the data directory.
    pub fn proxy_admin(&self) -> Result<crate::route::Admin, String> {
        if self.proxy_admin.is_empty() {
            let socket = self.data_dir.join("proxy").join("admin.sock");
            let socket = std::path::absolute(&socket).unwrap_or(socket);
            return Ok(crate::route::Admin::Unix(socket));
        }
        crate::route::Admin::parse(&self.proxy_admin)
    }

    /// `runner_host`, else the host name.
    pub fn host(&self) -> String {
        if !self.runner_host.is_empty() {
            return self.runner_host.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// `cache_max_bytes` read.
    pub fn cache_max_bytes(&self) -> Result<u64, String> {
        telemetry::size::parse_bytes(&self.cache_max_bytes).map_err(|e| {
            format!(
                "SLIPWAY_CACHE_MAX_BYTES={:?}: {e}: write bytes (10737418240) or a size with KiB, MiB, GiB or TiB (10GiB)",
                self.cache_max_bytes
            )
        })
    }

    /// `log_line_max_bytes` read.
    pub fn log_line_max(&self) -> Result<usize, String> {
        let invalid = |e: &str| {
            format!(
                "SLIPWAY_LOG_LINE_MAX_BYTES={:?}: {e}: write bytes (65536) or a size with KiB or MiB (64KiB), from 1KiB to 16MiB",
                self.log_line_max_bytes
            )
        };
        let bytes = telemetry::size::parse_bytes(&self.log_line_max_bytes).map_err(invalid)?;
        if !LOG_LINE.contains(&bytes) {
            return Err(invalid("out of range"));
        }
        usize::try_from(bytes).map_err(|_| invalid("too large"))
    }

    /// `runner_labels` read.
    pub fn labels(&self) -> Result<Labels, String> {
        Labels::parse_list(&self.runner_labels).map_err(|e| format!("SLIPWAY_RUNNER_LABELS: {e}"))
    }

    /// `metrics_addr` read: `None` when metrics are off.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        telemetry::metrics::parse_addr("SLIPWAY_METRICS_ADDR", &self.metrics_addr)
    }

    /// The token presented to the orchestrator.
    pub fn token(&self) -> &str {
        if self.runner_token.is_empty() {
            &self.api_token
        } else {
            &self.runner_token
        }
    }

    /// `SLIPWAY_ORCHESTRATOR_CA`, when set.
    pub fn orchestrator_ca(&self) -> Option<&std::path::Path> {
        proto::tls::path_setting(&self.orchestrator_ca)
    }

    /// `SLIPWAY_AMQP_CA`, when set.
    pub fn amqp_ca(&self) -> Option<&std::path::Path> {
        proto::tls::path_setting(&self.amqp_ca)
    }

    pub fn concurrency(&self) -> usize {
        if self.runner_concurrency > 0 {
            self.runner_concurrency
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_size_that_is_not_one_is_named() {
        let s = Settings {
            api_token: "t".to_owned(),
            cache_max_bytes: "lots".to_owned(),
            ..Settings::default()
        };
        let err = s.check().unwrap_err();
        assert!(
            err.starts_with("SLIPWAY_CACHE_MAX_BYTES=\"lots\": not a size"),
            "{err}"
        );
    }

    #[test]
    fn times_and_counts_are_bounded_at_start() {
        let base = Settings {
            api_token: "t".to_owned(),
            ..Settings::default()
        };
        assert_eq!(base.check(), Ok(()));
        // A change to valid settings, and the start of the error it makes.
        type Case = (fn(&mut Settings), Option<&'static str>);
        let cases: [Case; 11] = [
            (
                |s| s.sweep_interval = "0s".to_owned(),
                Some("SLIPWAY_SWEEP_INTERVAL must be between 1s and 24h"),
            ),
            (|s| s.sweep_interval = "1s".to_owned(), None),
            (
                |s| s.sweep_interval = "25h".to_owned(),
                Some("SLIPWAY_SWEEP_INTERVAL must be between 1s and 24h"),
            ),
            (
                |s| s.sweep_interval = "soon".to_owned(),
                Some("SLIPWAY_SWEEP_INTERVAL: invalid duration"),
            ),
            (
                |s| s.heartbeat_ms = 0,
                Some("SLIPWAY_HEARTBEAT_MS must be from 1 to 3600000"),
            ),
            (|s| s.heartbeat_ms = MAX_MS, None),
            (
                |s| s.heartbeat_ms = u64::MAX,
                Some("SLIPWAY_HEARTBEAT_MS must be from 1 to 3600000"),
            ),
            (|s| s.kill_grace_ms = 0, None),
            (
                |s| s.kill_grace_ms = MAX_MS + 1,
                Some("SLIPWAY_KILL_GRACE_MS must be at most 3600000"),
            ),
            (|s| s.runner_concurrency = MAX_CONCURRENCY, None),
            (
                |s| s.runner_concurrency = usize::MAX,
                Some("SLIPWAY_RUNNER_CONCURRENCY must be at most 1024"),
            ),
        ];
        for (i, (change, want)) in cases.into_iter().enumerate() {
            let mut s = base.clone();
            change(&mut s);
            match (s.check(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.starts_with(want), "case {i}: {e}"),
                (got, want) => panic!("case {i}: {got:?}, want {want:?}"),
            }
        }
    }
}
