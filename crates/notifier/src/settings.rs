//! The notifier's settings (runtime.md, alerts.md): defaults here, then the
//! TOML file, then `SLIPWAY_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use domain::workflow::{NotifyRule, parse_default_notify, parse_duration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where the notifier's gRPC service listens (`SLIPWAY_NOTIFIER_ADDR`).
    pub notifier_addr: SocketAddr,
    /// The orchestrator's gRPC endpoint: rules, secrets, alerts, deliveries.
    pub orchestrator_url: String,
    /// A PEM file of the CA that signed the orchestrator's certificate
    /// (`SLIPWAY_ORCHESTRATOR_CA`), trusted instead of the system roots.
    pub orchestrator_ca: String,
    /// The broker the orchestrator publishes events to (`SLIPWAY_AMQP_URL`).
    pub amqp_url: String,
    /// A PEM file of a CA trusted for an `amqps://` broker besides the
    /// system roots (`SLIPWAY_AMQP_CA`).
    pub amqp_ca: String,
    /// Bearer token of the public API: callers of this service present it,
    /// and it is presented to the orchestrator. Required.
    pub api_token: String,
    /// Token of the orchestrator's notifier API (`SLIPWAY_NOTIFIER_TOKEN`);
    /// empty: `SLIPWAY_RUNNER_TOKEN`, then the API token, as the
    /// orchestrator falls back.
    pub notifier_token: String,
    /// The runner token, a fallback of `notifier_token` as on the orchestrator.
    pub runner_token: String,
    /// Prefix of queue names, as the orchestrator's.
    pub queue_prefix: String,
    /// `x-expires` of the notify queue (0: never); for throwaway
    /// installations such as test runs.
    pub queue_expires_ms: u32,
    /// Base of the dashboard links in messages.
    pub public_url: String,
    /// Channels for workflows without `notify` rules: the channels of one
    /// notify entry as YAML or JSON, e.g.
    /// `{slack: {webhook_url: "https://hooks.slack.com/..."}}`. Empty: none.
    pub default_notify: String,
    /// Repeats of one event type for one workflow, branch and environment
    /// are sent at most once per this duration.
    pub notify_throttle: String,
    /// Wait after the first failed attempt; it doubles after each one.
    pub notify_retry_base: String,
    /// Attempts of one delivery before it counts as failed.
    pub notify_attempts: u32,
    /// Wait after a commit status's first failed attempt
    /// (`SLIPWAY_STATUS_RETRY_BASE`); it doubles after each one, up to a
    /// minute.
    pub status_retry_base: String,
    /// How long failed commit statuses are retried at least
    /// (`SLIPWAY_STATUS_RETRY_FOR`) before they count as failed.
    pub status_retry_for: String,
    /// Slack's Web API base (`chat.postMessage` is appended).
    pub slack_api_url: String,
    /// `smtp://user:pass@host:port` (`smtps://` for TLS); empty: no e-mail.
    pub smtp_url: String,
    /// The `From:` of e-mail messages.
    pub smtp_from: String,
    /// Events handled at once.
    pub notify_concurrency: u16,
    /// Where `GET /metrics` is served (`SLIPWAY_METRICS_ADDR`); empty: not
    /// at all; port 0 picks one.
    pub metrics_addr: String,
    /// Which log lines to write (`SLIPWAY_LOG`, e.g. `info`, `slipway=debug`).
    pub log: String,
    /// JSON log lines, for a log collector, instead of human-readable ones.
    pub log_json: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            notifier_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            orchestrator_url: "http://127.0.0.1:50051".to_owned(),
            orchestrator_ca: String::new(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_ca: String::new(),
            api_token: String::new(),
            notifier_token: String::new(),
            runner_token: String::new(),
            queue_prefix: String::new(),
            queue_expires_ms: 0,
            public_url: "http://127.0.0.1:8080".to_owned(),
            default_notify: String::new(),
            notify_throttle: "5m".to_owned(),
            notify_retry_base: "30s".to_owned(),
            notify_attempts: 6,
            status_retry_base: "1s".to_owned(),
            status_retry_for: "10m".to_owned(),
            slack_api_url: "https://slack.com/api".to_owned(),
            smtp_url: String::new(),
            smtp_from: "Slipway <slipway@localhost>".to_owned(),
            notify_concurrency: 16,
            metrics_addr: "127.0.0.1:9465".to_owned(),
            log: "info".to_owned(),
            log_json: false,
        }
    }
}

/// The settings in the form the notifier uses them, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `notify_throttle`: the window in which repeats are recorded, not sent.
    pub throttle: Duration,
    /// `notify_retry_base`: the first wait after a failed attempt.
    pub retry_base: Duration,
    /// `notify_attempts`: after this many, a delivery has failed.
    pub attempts: u32,
    /// `status_retry_base`: the first wait after a failed commit status.
    pub status_retry_base: Duration,
    /// `status_retry_for`: how long failed commit statuses are retried.
    pub status_retry_for: Duration,
    /// `default_notify`, parsed: the channels of workflows without rules.
    pub default_rule: Option<NotifyRule>,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
}

fn duration(name: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| {
        format!(
            "SLIPWAY_{}: {e}: use e.g. 5m or 30s",
            name.to_ascii_uppercase()
        )
    })
}

impl Settings {
    /// The token of the orchestrator's notifier API.
    pub fn internal_token(&self) -> &str {
        [&self.notifier_token, &self.runner_token, &self.api_token]
            .into_iter()
            .find(|t| !t.is_empty())
            .map_or("", String::as_str)
    }

    /// Rejects settings the notifier cannot start with, naming the variable.
    pub fn check(&self) -> Result<Checked, String> {
        if self.api_token.is_empty() {
            return Err("SLIPWAY_API_TOKEN is required".to_owned());
        }
        if self.notify_attempts == 0 {
            return Err("SLIPWAY_NOTIFY_ATTEMPTS must be at least 1".to_owned());
        }
        if self.notify_concurrency == 0 {
            return Err("SLIPWAY_NOTIFY_CONCURRENCY must be at least 1".to_owned());
        }
        let retry_base = duration("notify_retry_base", &self.notify_retry_base)?;
        if retry_base.is_zero() {
            return Err("SLIPWAY_NOTIFY_RETRY_BASE must be positive".to_owned());
        }
        let status_retry_base = duration("status_retry_base", &self.status_retry_base)?;
        if status_retry_base.is_zero() {
            return Err("SLIPWAY_STATUS_RETRY_BASE must be positive".to_owned());
        }
        let status_retry_for = duration("status_retry_for", &self.status_retry_for)?;
        let smtp_scheme = ["smtp://", "smtps://"]
            .iter()
            .any(|scheme| self.smtp_url.starts_with(scheme));
        if !self.smtp_url.is_empty() && !smtp_scheme {
            return Err("SLIPWAY_SMTP_URL must start with smtp:// or smtps://".to_owned());
        }
        let default_rule = if self.default_notify.trim().is_empty() {
            None
        } else {
            Some(
                parse_default_notify(&self.default_notify, &domain::alert::DEFAULT_EVENTS)
                    .map_err(|e| format!("SLIPWAY_DEFAULT_NOTIFY: {e}"))?,
            )
        };
        Ok(Checked {
            throttle: duration("notify_throttle", &self.notify_throttle)?,
            retry_base,
            attempts: self.notify_attempts,
            status_retry_base,
            status_retry_for,
            default_rule,
            metrics_addr: telemetry::metrics::parse_addr(
                "SLIPWAY_METRICS_ADDR",
                &self.metrics_addr,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            api_token: "t".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_check_and_errors_name_the_variable() {
        let checked = settings().check().expect("defaults are valid");
        assert_eq!(checked.throttle, Duration::from_secs(300));
        assert_eq!(checked.status_retry_base, Duration::from_secs(1));
        assert_eq!(checked.status_retry_for, Duration::from_secs(600));
        assert!(checked.default_rule.is_none());

        let cases = [
            (Settings::default(), "SLIPWAY_API_TOKEN"),
            (
                Settings {
                    notify_throttle: "5 minutes".into(),
                    ..settings()
                },
                "SLIPWAY_NOTIFY_THROTTLE",
            ),
            (
                Settings {
                    default_notify: "{slack: {webhook_url: nope}}".into(),
                    ..settings()
                },
                "SLIPWAY_DEFAULT_NOTIFY",
            ),
            (
                Settings {
                    smtp_url: "http://x".into(),
                    ..settings()
                },
                "SLIPWAY_SMTP_URL",
            ),
            (
                Settings {
                    status_retry_base: "0s".into(),
                    ..settings()
                },
                "SLIPWAY_STATUS_RETRY_BASE",
            ),
            (
                Settings {
                    status_retry_for: "ten minutes".into(),
                    ..settings()
                },
                "SLIPWAY_STATUS_RETRY_FOR",
            ),
        ];
        for (s, name) in cases {
            let err = s.check().expect_err(name);
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn durations_past_720h_are_refused_by_name() {
        // Both end up in milliseconds on the wire and in timers: the bound
        // here keeps any overflow away from run time.
        let throttle = |v: &str| Settings {
            notify_throttle: v.into(),
            ..settings()
        };
        let retry_base = |v: &str| Settings {
            notify_retry_base: v.into(),
            ..settings()
        };
        let cases = [
            (throttle("721h"), "SLIPWAY_NOTIFY_THROTTLE", "720h"),
            (
                retry_base("2592000001ms"),
                "SLIPWAY_NOTIFY_RETRY_BASE",
                "720h",
            ),
            (
                retry_base("99999999999999999999h"),
                "SLIPWAY_NOTIFY_RETRY_BASE",
                "invalid",
            ),
        ];
        for (s, name, why) in cases {
            let err = s.check().expect_err(name);
            assert!(err.starts_with(name) && err.contains(why), "{err}");
        }
        let longest = Settings {
            notify_throttle: "720h".into(),
            notify_retry_base: "720h".into(),
            ..settings()
        };
        let checked = longest.check().expect("720h is allowed");
        assert_eq!(checked.throttle, domain::workflow::MAX_DURATION);
        assert_eq!(checked.retry_base, domain::workflow::MAX_DURATION);
    }

    #[test]
    fn default_notify_takes_the_seed_events() {
        let s = Settings {
            default_notify: r#"{"email": {"to": ["ops@example.com"]}}"#.into(),
            ..settings()
        };
        let rule = s.check().expect("valid").default_rule.expect("a rule");
        assert_eq!(rule.on, domain::alert::DEFAULT_EVENTS);
        assert!(rule.email.is_some());
        let secret = Settings {
            default_notify: "slack: {webhook_url: \"${{ secrets.X }}\"}".into(),
            ..settings()
        };
        assert!(secret.check().is_err());
    }
}
