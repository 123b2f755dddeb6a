//! The notifier's Prometheus metrics, served at `GET /metrics` on
//! `SLIPWAY_METRICS_ADDR`: delivery attempts by channel kind and outcome,
//! and commit status attempts by forge and outcome.

use domain::alert::ChannelKind;
use domain::forge::Forge;
use telemetry::metrics::{self, IntCounterVec, Registry};

/// What an attempt at a delivery came to: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The channel (or forge) took the message.
    Delivered,
    /// It failed; it is tried again after its backoff.
    Retry,
    /// It failed for good (a permanent error, or its last attempt).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Self::Delivered, Self::Retry, Self::Failed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

/// Cheap to clone: the registry and its counters are shared.
#[derive(Clone)]
pub struct Metrics {
    /// What `GET /metrics` renders.
    pub(crate) registry: Registry,
    deliveries: IntCounterVec,
    statuses: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, metrics::Error> {
        let registry = Registry::new();
        let deliveries = metrics::counter(
            &registry,
            "slipway_notification_deliveries_total",
            "Attempts at delivering a notification, by channel kind and outcome (delivered, retry, failed).",
            &["channel", "outcome"],
        )?;
        // Every series from the start, so rate() sees the first attempt.
        for kind in ChannelKind::ALL {
            for outcome in Outcome::ALL {
                deliveries.with_label_values(&[kind.as_str(), outcome.as_str()]);
            }
        }
        let statuses = metrics::counter(
            &registry,
            "slipway_commit_status_attempts_total",
            "Attempts at sending a commit status, by forge and outcome (delivered, retry, failed).",
            &["forge", "outcome"],
        )?;
        for forge in [Forge::GitHub, Forge::GitLab] {
            for outcome in Outcome::ALL {
                statuses.with_label_values(&[forge.as_str(), outcome.as_str()]);
            }
        }
        Ok(Self {
            registry,
            deliveries,
            statuses,
        })
    }

    /// An attempt on the channel named `kind` (as recorded) ended.
    pub fn attempted(&self, kind: &str, outcome: Outcome) {
        // The label stays bounded whatever the record says.
        let kind = ChannelKind::parse(kind).map_or("unknown", ChannelKind::as_str);
        self.deliveries
            .with_label_values(&[kind, outcome.as_str()])
            .inc();
    }

    /// An attempt at a commit status on `forge` (as handed out) ended.
    pub fn status_attempted(&self, forge: &str, outcome: Outcome) {
        let forge = Forge::parse(forge).map_or("unknown", Forge::as_str);
        self.statuses
            .with_label_values(&[forge, outcome.as_str()])
            .inc();
    }

    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}
