//! The orchestrator's settings (runtime.md): defaults here, then the TOML
//! file, then `SLIPWAY_*` variables.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use domain::workflow::{Limits, ValueError, format_duration, parse_duration};
use serde::{Deserialize, Serialize};

/// Leases a runner may hold a task for: long enough for a heartbeat to
/// arrive within one, short enough that a lost runner's task is back within
/// the hour. Larger values also overflow the arithmetic on timestamps.
const LEASE_SECONDS: RangeInclusive<u64> = 2..=3600;

/// How long a task may wait before `task_stuck`: from a second (the
/// watchdog raises it at its next pass, a few seconds later at most) to a
/// week.
const PENDING_ALERT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600);

/// Shortest `x-expires` of an expiring queue: it must outlive the reconnect
/// of a runner or notifier (at most 10 s apart), or the messages waiting in
/// it are deleted with it.
const MIN_QUEUE_EXPIRES_MS: u32 = 60_000;

/// `SLIPWAY_RETENTION_DAYS` when unset (workflow.md).
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// How often the pruner passes: from a second (tests) to a day.
const PRUNE_INTERVAL: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// Tasks pruned per transaction: small enough that a batch holds its locks
/// for milliseconds.
const PRUNE_BATCH: RangeInclusive<u32> = 1..=10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where the gRPC API listens (`SLIPWAY_GRPC_ADDR`); port 0 picks one.
    pub grpc_addr: SocketAddr,
    /// The database the orchestrator alone connects to
    /// (`SLIPWAY_DATABASE_URL`).
    pub database_url: String,
    /// The broker the relay publishes tasks and events to
    /// (`SLIPWAY_AMQP_URL`).
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
    /// Delete the task queue after this long unused (0: never, else at
    /// least a minute); for throwaway installations such as test runs.
    pub queue_expires_ms: u32,
    /// How long a runner's lease lasts without a heartbeat (2 to 3600).
    pub lease_seconds: u64,
    /// How often a task whose runner vanished goes back to the queue before
    /// it fails with "runner lost".
    pub max_requeues: i32,
    /// Database connections in the pool.
    pub database_pool_size: u32,
    /// How long a task may wait in `pending` before `task_stuck` is raised
    /// (`SLIPWAY_PENDING_ALERT`, a duration such as `10m`, from `1s` to
    /// `168h`).
    pub pending_alert: String,
    /// Where `GET /metrics` is served (`SLIPWAY_METRICS_ADDR`); empty: not
    /// at all; port 0 picks one.
    pub metrics_addr: String,
    /// Which logs are written (`SLIPWAY_LOG`, a tracing filter such as `info`).
    pub log: String,
    /// Logs as JSON lines, for collectors (`SLIPWAY_LOG_JSON`).
    pub log_json: bool,
    /// GitHub token for commit statuses and clones (`SLIPWAY_GITHUB_TOKEN`).
    pub github_token: String,
    /// GitHub App id (`SLIPWAY_GITHUB_APP_ID`); with the key file it is used
    /// instead of a token: installation tokens are minted per repository.
    pub github_app_id: String,
    /// The GitHub App's private key, PEM (`SLIPWAY_GITHUB_APP_KEY_FILE`):
    /// read by the orchestrator alone.
    pub github_app_key_file: String,
    /// The GitHub API base (`SLIPWAY_GITHUB_API_URL`); GitHub Enterprise:
    /// `https://host/api/v3`.
    pub github_api_url: String,
    /// GitLab token for commit statuses and clones (`SLIPWAY_GITLAB_API_TOKEN`).
    pub gitlab_api_token: String,
    /// GitLab's base URL (`SLIPWAY_GITLAB_URL`); empty: the origin of the
    /// event's project page.
    pub gitlab_url: String,
    /// The `retention.days` of workflows that set none
    /// (`SLIPWAY_RETENTION_DAYS`, at least 1).
    pub retention_days: u32,
    /// How often the pruner deletes what is past retention
    /// (`SLIPWAY_PRUNE_INTERVAL`, a duration from `1s` to `24h`).
    pub prune_interval: String,
    /// Tasks the pruner deletes per transaction (`SLIPWAY_PRUNE_BATCH`,
    /// 1 to 10000).
    pub prune_batch: u32,
    /// Queue the registry manifests of pruned tasks' images for runners to
    /// delete (`SLIPWAY_REGISTRY_DELETE`).
    pub registry_delete: bool,
    /// Largest workflow definition, in bytes (`SLIPWAY_WORKFLOW_MAX_BYTES`);
    /// its text with aliases expanded may be four times that.
    pub workflow_max_bytes: usize,
    /// Deepest nesting of a definition (`SLIPWAY_WORKFLOW_MAX_DEPTH`).
    pub workflow_max_depth: usize,
    /// Most nodes of a definition, aliases expanded
    /// (`SLIPWAY_WORKFLOW_MAX_NODES`).
    pub workflow_max_nodes: usize,
    /// Most `steps` of a workflow (`SLIPWAY_WORKFLOW_MAX_STEPS`).
    pub workflow_max_steps: usize,
    /// Most `deploy` environments of a workflow
    /// (`SLIPWAY_WORKFLOW_MAX_ENVIRONMENTS`).
    pub workflow_max_environments: usize,
    /// Most `notify` rules of a workflow (`SLIPWAY_WORKFLOW_MAX_NOTIFY_RULES`).
    pub workflow_max_notify_rules: usize,
    /// Most secrets of one workflow (`SLIPWAY_SECRETS_MAX`).
    pub secrets_max: usize,
    /// Largest secret value, in bytes (`SLIPWAY_SECRET_MAX_BYTES`).
    pub secret_max_bytes: usize,
    /// Largest log chunk a runner may append in one call
    /// (`SLIPWAY_LOG_CHUNK_MAX_BYTES`, at least the 64 KiB runners send).
    pub log_chunk_max_bytes: usize,
}

/// What a client or a runner may send the orchestrator, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Workflow definitions.
    pub workflow: Limits,
    /// Secrets per workflow.
    pub secrets_max: usize,
    /// Bytes of a secret's value.
    pub secret_max_bytes: usize,
    /// Bytes of one log chunk.
    pub log_chunk_max_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            workflow: Limits::default(),
            secrets_max: 100,
            secret_max_bytes: 64 * 1024,
            log_chunk_max_bytes: 1024 * 1024,
        }
    }
}

/// The most a log chunk may be held to: runners send up to this much.
const MIN_LOG_CHUNK: usize = 64 * 1024;

/// The most any of the other bounds may be: 64 MiB is the gRPC messages'.
const MAX_BOUND_BYTES: usize = 64 * 1024 * 1024;

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
            github_token: String::new(),
            github_app_id: String::new(),
            github_app_key_file: String::new(),
            github_api_url: "https://api.github.com".to_owned(),
            gitlab_api_token: String::new(),
            gitlab_url: String::new(),
            retention_days: DEFAULT_RETENTION_DAYS,
            prune_interval: "10m".to_owned(),
            prune_batch: 200,
            registry_delete: false,
            workflow_max_bytes: Bounds::default().workflow.max_bytes,
            workflow_max_depth: Bounds::default().workflow.max_depth,
            workflow_max_nodes: Bounds::default().workflow.max_nodes,
            workflow_max_steps: Bounds::default().workflow.max_steps,
            workflow_max_environments: Bounds::default().workflow.max_environments,
            workflow_max_notify_rules: Bounds::default().workflow.max_notify_rules,
            secrets_max: Bounds::default().secrets_max,
            secret_max_bytes: Bounds::default().secret_max_bytes,
            log_chunk_max_bytes: Bounds::default().log_chunk_max_bytes,
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
        if !LEASE_SECONDS.contains(&self.lease_seconds) {
            return Err(format!(
                "SLIPWAY_LEASE_SECONDS must be at least {} and at most {} (seconds), got {}",
                LEASE_SECONDS.start(),
                LEASE_SECONDS.end(),
                self.lease_seconds
            ));
        }
        match parse_duration(&self.pending_alert) {
            Ok(d) if PENDING_ALERT.contains(&d) => {}
            Ok(_) | Err(ValueError::DurationTooLong(_)) => {
                return Err(format!(
                    "SLIPWAY_PENDING_ALERT must be between {} and {}, got {:?}",
                    format_duration(*PENDING_ALERT.start()),
                    format_duration(*PENDING_ALERT.end()),
                    self.pending_alert
                ));
            }
            Err(_) => {
                return Err(format!(
                    "SLIPWAY_PENDING_ALERT: invalid duration {:?}: use e.g. 10m or 90s",
                    self.pending_alert
                ));
            }
        }
        if self.queue_expires_ms != 0 && self.queue_expires_ms < MIN_QUEUE_EXPIRES_MS {
            return Err(format!(
                "SLIPWAY_QUEUE_EXPIRES_MS must be 0 (never) or between {MIN_QUEUE_EXPIRES_MS} and {}, got {}",
                u32::MAX,
                self.queue_expires_ms
            ));
        }
        if self.retention_days == 0 {
            return Err("SLIPWAY_RETENTION_DAYS must be at least 1, got 0".to_owned());
        }
        match parse_duration(&self.prune_interval) {
            Ok(d) if PRUNE_INTERVAL.contains(&d) => {}
            Ok(_) | Err(ValueError::DurationTooLong(_)) => {
                return Err(format!(
                    "SLIPWAY_PRUNE_INTERVAL must be between {} and {}, got {:?}",
                    format_duration(*PRUNE_INTERVAL.start()),
                    format_duration(*PRUNE_INTERVAL.end()),
                    self.prune_interval
                ));
            }
            Err(_) => {
                return Err(format!(
                    "SLIPWAY_PRUNE_INTERVAL: invalid duration {:?}: use e.g. 10m or 30s",
                    self.prune_interval
                ));
            }
        }
        if !PRUNE_BATCH.contains(&self.prune_batch) {
            return Err(format!(
                "SLIPWAY_PRUNE_BATCH must be from {} to {}, got {}",
                PRUNE_BATCH.start(),
                PRUNE_BATCH.end(),
                self.prune_batch
            ));
        }
        self.metrics_addr()?;
        self.bounds()?;
        Ok(())
    }

    /// The bounds on what clients and runners send, checked.
    pub fn bounds(&self) -> Result<Bounds, String> {
        let workflow = Limits {
            max_bytes: self.workflow_max_bytes,
            max_depth: self.workflow_max_depth,
            max_nodes: self.workflow_max_nodes,
            max_steps: self.workflow_max_steps,
            max_environments: self.workflow_max_environments,
            max_notify_rules: self.workflow_max_notify_rules,
        };
        workflow.check().map_err(|e| {
            format!(
                "SLIPWAY_WORKFLOW_{} must be from 1 to {}, got {}",
                e.name.to_ascii_uppercase(),
                e.ceiling,
                e.value
            )
        })?;
        let ranges = [
            ("SLIPWAY_SECRETS_MAX", self.secrets_max, 1, 100_000),
            (
                "SLIPWAY_SECRET_MAX_BYTES",
                self.secret_max_bytes,
                1,
                MAX_BOUND_BYTES,
            ),
            (
                "SLIPWAY_LOG_CHUNK_MAX_BYTES",
                self.log_chunk_max_bytes,
                MIN_LOG_CHUNK,
                MAX_BOUND_BYTES,
            ),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!("{name} must be from {min} to {max}, got {value}"));
            }
        }
        Ok(Bounds {
            workflow,
            secrets_max: self.secrets_max,
            secret_max_bytes: self.secret_max_bytes,
            log_chunk_max_bytes: self.log_chunk_max_bytes,
        })
    }

    /// `prune_interval` as a duration (checked by [`Settings::check`]).
    pub fn prune_every(&self) -> Duration {
        parse_duration(&self.prune_interval).unwrap_or(Duration::from_secs(600))
    }

    /// `metrics_addr` read: `None` when metrics are off.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        telemetry::metrics::parse_addr("SLIPWAY_METRICS_ADDR", &self.metrics_addr)
    }

    /// `pending_alert` as a duration (checked by [`Settings::check`]).
    pub fn pending_alert_after(&self) -> Duration {
        parse_duration(&self.pending_alert).unwrap_or(Duration::from_secs(600))
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;

    /// The check of valid settings with `change` made.
    fn checked(change: impl FnOnce(&mut Settings)) -> Result<(), String> {
        let mut settings = Settings {
            api_token: "token".to_owned(),
            secret_key: "key".to_owned(),
            ..Settings::default()
        };
        change(&mut settings);
        settings.check()
    }

    /// Asserts that the check passed when `ok`, else failed with a message
    /// that starts with `error`.
    fn assert_checked(case: impl std::fmt::Debug, got: Result<(), String>, ok: bool, error: &str) {
        match got {
            Ok(()) => assert!(ok, "{case:?} passed"),
            Err(e) => assert!(!ok && e.starts_with(error), "{case:?}: {e}"),
        }
    }

    /// Checks each value of `cases` as set by `set`: passes when its flag
    /// says so, else fails with a message that starts with `error`.
    fn assert_bounds<T: Copy + std::fmt::Debug>(
        cases: &[(T, bool)],
        set: impl Fn(&mut Settings, T),
        error: &str,
    ) {
        for &(value, ok) in cases {
            assert_checked(value, checked(|s| set(s, value)), ok, error);
        }
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(checked(|_| {}), Ok(()));
    }

    #[test]
    fn the_lease_is_bounded() {
        // 0 and 1 are too short to heartbeat in; u64::MAX would overflow
        // `Utc::now() + lease`.
        let cases = [1, 2, 3600, 3601, u64::MAX, 0].map(|n| (n, (2..=3600).contains(&n)));
        let error = "SLIPWAY_LEASE_SECONDS must be at least 2 and at most 3600 (seconds), got";
        assert_bounds(&cases, |s, lease| s.lease_seconds = lease, error);
    }

    #[test]
    fn an_expiring_queue_lives_at_least_a_minute() {
        let ok = [0, 60_000, u32::MAX].map(|ms| (ms, true));
        let too_short = [1, 59_999].map(|ms| (ms, false));
        let error =
            "SLIPWAY_QUEUE_EXPIRES_MS must be 0 (never) or between 60000 and 4294967295, got";
        assert_bounds(
            &[&ok[..], &too_short[..]].concat(),
            |s, ms| s.queue_expires_ms = ms,
            error,
        );
    }

    #[test]
    fn retention_and_pruning_are_bounded() {
        assert_bounds(
            &[(0, false), (1, true), (90, true), (u32::MAX, true)],
            |s, days| s.retention_days = days,
            "SLIPWAY_RETENTION_DAYS must be at least 1",
        );
        assert_bounds(
            &[
                (0, false),
                (1, true),
                (10_000, true),
                (10_001, false),
                (u32::MAX, false),
            ],
            |s, batch| s.prune_batch = batch,
            "SLIPWAY_PRUNE_BATCH must be from 1 to 10000, got",
        );
        let error = "SLIPWAY_PRUNE_INTERVAL must be between 1s and 24h, got";
        let cases = [
            ("500ms", false),
            ("1s", true),
            ("10m", true),
            ("24h", true),
            ("25h", false),
        ];
        assert_bounds(
            &cases,
            |s, every| s.prune_interval = every.to_owned(),
            error,
        );
        let got = checked(|s| s.prune_interval = "often".to_owned());
        assert_checked(
            "often",
            got,
            false,
            "SLIPWAY_PRUNE_INTERVAL: invalid duration",
        );
    }

    #[test]
    fn the_pending_alert_is_bounded() {
        let error = "SLIPWAY_PENDING_ALERT must be between 1s and 168h, got";
        let cases = [
            ("0s", false),
            ("999ms", false),
            ("1s", true),
            ("10m", true),
            ("168h", true),
            ("169h", false),
            // Past what a duration may be at all.
            ("9999h", false),
        ];
        assert_bounds(&cases, |s, after| s.pending_alert = after.to_owned(), error);
        let got = checked(|s| s.pending_alert = "soon".to_owned());
        assert_checked(
            "soon",
            got,
            false,
            "SLIPWAY_PENDING_ALERT: invalid duration",
        );
    }
}
