//! The gateway's Prometheus metrics, served at `GET /metrics` (no auth):
//! webhook deliveries by provider and by what became of them, and the
//! webhook spool: what it holds, how old its oldest delivery is, what left it.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::web::Data;
use proto::ErrorCode;
use telemetry::metrics::{self, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::State;
use crate::error::HttpError;

/// The providers with a webhook endpoint.
const PROVIDERS: [&str; 2] = ["github", "gitlab"];

/// What became of a webhook delivery: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded; it created tasks (or a deploy-only task).
    Accepted,
    /// Recorded; nothing to run (ping, other event, no matching workflow).
    Ignored,
    /// Seen before: answered with its first outcome.
    Duplicate,
    /// Kept in the spool while the orchestrator was away: `202` with
    /// `"queued": true`.
    Queued,
    /// Missing or wrong signature or token, or the provider is disabled.
    Unauthorized,
    /// Malformed: missing headers, bad JSON, not a payload of its event.
    Invalid,
    /// Body over `SLIPWAY_WEBHOOK_MAX_BYTES`.
    TooLarge,
    /// The orchestrator could not record it (down, or failed).
    Error,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Self::Accepted,
        Self::Ignored,
        Self::Duplicate,
        Self::Queued,
        Self::Unauthorized,
        Self::Invalid,
        Self::TooLarge,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Queued => "queued",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::Error => "error",
        }
    }

    /// The outcome of a delivery the gateway refused or could not record.
    pub fn of_error(err: &HttpError) -> Self {
        match err.0.code {
            ErrorCode::Unauthenticated => Self::Unauthorized,
            ErrorCode::BadRequest | ErrorCode::InvalidWorkflow => Self::Invalid,
            ErrorCode::PayloadTooLarge => Self::TooLarge,
            ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::RequestTimeout
            | ErrorCode::LimitReached
            | ErrorCode::Unavailable
            | ErrorCode::Internal => Self::Error,
        }
    }
}

/// What moves deliveries out of the spool (the drain) counts here.
pub struct SpoolCounters {
    /// Handed over to the orchestrator and stored.
    pub handed_over: IntCounter,
    /// Refused for good by the orchestrator: moved to `failed/`.
    pub set_aside: IntCounter,
    /// Failed removals of handled deliveries (retried).
    pub disk_errors: IntCounter,
}

/// The gateway's registry and its metrics.
pub struct Metrics {
    registry: Registry,
    webhooks: IntCounterVec,
    pub spool: Arc<SpoolCounters>,
    spool_deliveries: IntGauge,
    spool_bytes: IntGauge,
    spool_oldest: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, metrics::Error> {
        let registry = Registry::new();
        let webhooks = metrics::counter(
            &registry,
            "slipway_webhooks_received_total",
            "Webhook deliveries received, by provider and outcome.",
            &["provider", "outcome"],
        )?;
        // Every series from the start, so rate() sees the first delivery.
        for provider in PROVIDERS {
            for outcome in Outcome::ALL {
                webhooks.with_label_values(&[provider, outcome.as_str()]);
            }
        }
        let plain_counter = |name: &str, help: &str| {
            metrics::counter(&registry, name, help, &[])
                .map(|c| c.with_label_values(&[] as &[&str]))
        };
        let plain_gauge = |name: &str, help: &str| {
            metrics::gauge(&registry, name, help, &[]).map(|g| g.with_label_values(&[] as &[&str]))
        };
        let spool = Arc::new(SpoolCounters {
            handed_over: plain_counter(
                "slipway_webhook_spool_handed_over_total",
                "Spooled webhook deliveries handed over to the orchestrator.",
            )?,
            set_aside: plain_counter(
                "slipway_webhook_spool_set_aside_total",
                "Spooled webhook deliveries the orchestrator refused, kept in failed/.",
            )?,
            disk_errors: plain_counter(
                "slipway_webhook_spool_disk_errors_total",
                "Failed removals of handed-over deliveries from the spool (retried).",
            )?,
        });
        Ok(Self {
            spool,
            spool_deliveries: plain_gauge(
                "slipway_webhook_spool_deliveries",
                "Webhook deliveries waiting in the spool for the orchestrator.",
            )?,
            spool_bytes: plain_gauge(
                "slipway_webhook_spool_bytes",
                "Bytes the spooled webhook deliveries take on disk.",
            )?,
            spool_oldest: plain_gauge(
                "slipway_webhook_spool_oldest_seconds",
                "How long the oldest spooled webhook delivery has waited (0 when empty).",
            )?,
            registry,
            webhooks,
        })
    }

    pub fn webhook(&self, provider: &'static str, outcome: Outcome) {
        self.webhooks
            .with_label_values(&[provider, outcome.as_str()])
            .inc();
    }
}

/// `GET /metrics`; the spool's gauges are read now.
pub async fn serve(state: Data<State>) -> HttpResponse {
    let m = &state.metrics;
    if let Some(spool) = &state.spool {
        let depth = spool.depth();
        m.spool_deliveries
            .set(i64::try_from(depth.deliveries).unwrap_or(i64::MAX));
        m.spool_bytes
            .set(i64::try_from(depth.bytes).unwrap_or(i64::MAX));
        m.spool_oldest.set(
            depth
                .oldest
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
    }
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&state.metrics.registry))
}
