//! The orchestrator's settings (runtime.md): defaults here, then the TOML
//! file, then `SLIPWAY_*` variables.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where the gRPC API listens (`SLIPWAY_GRPC_ADDR`); port 0 picks one.
    pub grpc_addr: SocketAddr,
    pub database_url: String,
    pub amqp_url: String,
    /// A PEM file of a CA trusted for an `amqps://` broker besides the
    /// system roots (`SLIPWAY_AMQP_CA`); empty: the system roots alone.
    pub amqp_ca: String,
    /// The gRPC listener's certificate chain (`SLIPWAY_GRPC_TLS_CERT`, PEM);
    /// with `grpc_tls_key`, the listener serves TLS only (docs/tls.md).
    pub grpc_tls_cert: String,
    /// The private key of `grpc_tls_cert` (`SLIPWAY_GRPC_TLS_KEY`, PEM).
    pub grpc_tls_key: String,
    /// Bearer token every gRPC caller presents. Required.
    pub api_token: String,
    /// Token runners present (`SLIPWAY_RUNNER_TOKEN`); empty: the API token.
    /// A separate one keeps API clients from claiming tasks and reading
    /// their secrets.
    pub runner_token: String,
    /// Token notifiers present (`SLIPWAY_NOTIFIER_TOKEN`); empty: the
    /// runner token. The notifier API hands out channel secrets.
    pub notifier_token: String,
    /// Key that seals stored secrets. Required.
    pub secret_key: String,
    /// The key being rotated away from (`SLIPWAY_SECRET_KEY_PREVIOUS`): it
    /// still opens secrets, which are sealed again with `secret_key` at start.
    pub secret_key_previous: String,
    /// Prefix of queue names, to share a broker between installations.
    pub queue_prefix: String,
    /// Delete the task queue after this long unused (0: never); for
    /// throwaway installations such as test runs.
    pub queue_expires_ms: u32,
    /// How long a runner's lease lasts without a heartbeat.
    pub lease_seconds: u64,
    /// How often a task whose runner vanished goes back to the queue before
    /// it fails with "runner lost".
    pub max_requeues: i32,
    /// Database connections in the pool.
    pub database_pool_size: u32,
    /// How long a task may wait in `pending` before `task_stuck` is raised
    /// (`SLIPWAY_PENDING_ALERT`, a duration such as `10m`).
    pub pending_alert: String,
    /// Where `GET /metrics` is served (`SLIPWAY_METRICS_ADDR`); empty: not
    /// at all; port 0 picks one.
    pub metrics_addr: String,
    pub log: String,
    pub log_json: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: "postgres://slipway@127.0.0.1:5432/slipway".to_owned(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_ca: String::new(),
            grpc_tls_cert: String::new(),
            grpc_tls_key: String::new(),
            api_token: String::new(),
            runner_token: String::new(),
            notifier_token: String::new(),
            secret_key: String::new(),
            secret_key_previous: String::new(),
            queue_prefix: String::new(),
            queue_expires_ms: 0,
            lease_seconds: 20,
            max_requeues: 1,
            database_pool_size: 8,
            pending_alert: "10m".to_owned(),
            metrics_addr: "127.0.0.1:9464".to_owned(),
            log: "info".to_owned(),
            log_json: false,
        }
    }
}

impl Settings {
    /// `SLIPWAY_AMQP_CA`, when set.
    pub fn amqp_ca(&self) -> Option<&std::path::Path> {
        proto::tls::path_setting(&self.amqp_ca)
    }

    /// The token of the runner API.
    pub fn runner_token(&self) -> &str {
        if self.runner_token.is_empty() {
            &self.api_token
        } else {
            &self.runner_token
        }
    }

    /// The token of the notifier API.
    pub fn notifier_token(&self) -> &str {
        if self.notifier_token.is_empty() {
            self.runner_token()
        } else {
            &self.notifier_token
        }
    }

    /// Rejects settings the orchestrator cannot start with, naming the variable.
    pub fn check(&self) -> Result<(), String> {
        if self.api_token.is_empty() {
            return Err("SLIPWAY_API_TOKEN is required".to_owned());
        }
        if self.secret_key.is_empty() {
            return Err("SLIPWAY_SECRET_KEY is required".to_owned());
        }
        if self.lease_seconds < 2 {
            return Err("SLIPWAY_LEASE_SECONDS must be at least 2".to_owned());
        }
        match domain::workflow::parse_duration(&self.pending_alert) {
            Ok(d) if !d.is_zero() => {}
            _ => {
                return Err(format!(
                    "SLIPWAY_PENDING_ALERT: invalid duration {:?}: use e.g. 10m or 90s",
                    self.pending_alert
                ));
            }
        }
        self.metrics_addr()?;
        Ok(())
    }

    /// `metrics_addr` read: `None` when metrics are off.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        telemetry::metrics::parse_addr("SLIPWAY_METRICS_ADDR", &self.metrics_addr)
    }

    /// `pending_alert` as a duration (checked by [`Settings::check`]).
    pub fn pending_alert_after(&self) -> std::time::Duration {
        domain::workflow::parse_duration(&self.pending_alert)
            .unwrap_or(std::time::Duration::from_secs(600))
    }
}
