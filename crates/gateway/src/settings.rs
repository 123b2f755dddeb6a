//! The gateway's settings (runtime.md).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use domain::workflow::{ValueError, parse_duration};
use serde::{Deserialize, Serialize};

/// How long a request body may take: long enough for a large webhook over
/// a slow link, short enough that a stalled client lets go soon.
const REQUEST_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where the HTTP server listens (`SLIPWAY_HTTP_ADDR`); port 0 picks one.
    pub http_addr: SocketAddr,
    /// The orchestrator's gRPC endpoint, which every request is passed to.
    pub orchestrator_url: String,
    /// A PEM file of the CA that signed the orchestrator's certificate
    /// (`SLIPWAY_ORCHESTRATOR_CA`), trusted instead of the system roots.
    pub orchestrator_ca: String,
    /// Bearer token for `/api/*` (and what the gateway presents to the
    /// orchestrator). Required.
    pub api_token: String,
    /// Key of GitHub's `X-Hub-Signature-256`; unset disables that endpoint.
    pub github_secret: String,
    /// Expected `X-Gitlab-Token`; unset disables that endpoint.
    pub gitlab_token: String,
    /// Largest webhook body accepted (`SLIPWAY_WEBHOOK_MAX_BYTES`).
    pub webhook_max_bytes: usize,
    /// Largest body of a REST API request or a dashboard form
    /// (`SLIPWAY_API_MAX_BYTES`).
    pub api_max_bytes: usize,
    /// Where users reach the dashboard; `https://` makes its cookies secure-only.
    pub public_url: String,
    /// Which log lines to write (`SLIPWAY_LOG`, e.g. `info`, `slipway=debug`).
    pub log: String,
    /// JSON log lines, for a log collector, instead of human-readable ones.
    pub log_json: bool,
    /// The webhook spool lives under `<data_dir>/spool/webhooks`
    /// (`SLIPWAY_DATA_DIR`); one gateway per data directory.
    pub data_dir: PathBuf,
    /// How much the webhook spool may hold (`SLIPWAY_WEBHOOK_SPOOL_BYTES`,
    /// e.g. `256MiB`); `0` turns the spool off: deliveries the orchestrator
    /// cannot take are then answered `503`.
    pub webhook_spool_bytes: String,
    /// How long a request body may take to arrive, from the end of its
    /// headers (`SLIPWAY_REQUEST_TIMEOUT`, a duration from `1s` to `1h`): a
    /// client sending a byte a second is cut off, not waited for.
    pub request_timeout: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            orchestrator_url: "http://127.0.0.1:50051".to_owned(),
            orchestrator_ca: String::new(),
            api_token: String::new(),
            github_secret: String::new(),
            gitlab_token: String::new(),
            webhook_max_bytes: 25 * 1024 * 1024,
            api_max_bytes: 4 * 1024 * 1024,
            public_url: "http://127.0.0.1:8080".to_owned(),
            log: "info".to_owned(),
            log_json: false,
            data_dir: PathBuf::from("./.slipway/data"),
            webhook_spool_bytes: "256MiB".to_owned(),
            request_timeout: "30s".to_owned(),
        }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.api_token.is_empty() {
            return Err("SLIPWAY_API_TOKEN is required".to_owned());
        }
        self.webhook_spool_bytes()?;
        self.request_timeout()?;
        Ok(())
    }

    /// `webhook_spool_bytes` read.
    pub fn webhook_spool_bytes(&self) -> Result<u64, String> {
        telemetry::size::parse_bytes(&self.webhook_spool_bytes).map_err(|e| {
            format!(
                "SLIPWAY_WEBHOOK_SPOOL_BYTES={:?}: {e} (e.g. 256MiB, or 0 to turn the spool off)",
                self.webhook_spool_bytes
            )
        })
    }

    /// `request_timeout` read.
    pub fn request_timeout(&self) -> Result<Duration, String> {
        match parse_duration(&self.request_timeout) {
            Ok(d) if REQUEST_TIMEOUT.contains(&d) => Ok(d),
            Ok(_) | Err(ValueError::DurationTooLong(_)) => Err(format!(
                "SLIPWAY_REQUEST_TIMEOUT={:?}: must be from 1s to 1h",
                self.request_timeout
            )),
            Err(e) => Err(format!(
                "SLIPWAY_REQUEST_TIMEOUT={:?}: {e}",
                self.request_timeout
            )),
        }
    }
}
