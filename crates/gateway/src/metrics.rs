//! The gateway's Prometheus metrics, served at `GET /metrics` (no auth):
//! webhook deliveries by provider and by what became of them.

use actix_web::HttpResponse;
use actix_web::web::Data;
use proto::ErrorCode;
use telemetry::metrics::{self, IntCounterVec, Registry};

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
    const ALL: [Outcome; 7] = [
        Self::Accepted,
        Self::Ignored,
        Self::Duplicate,
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

/// The gateway's registry and its metrics.
pub struct Metrics {
    registry: Registry,
    webhooks: IntCounterVec,
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
        Ok(Self { registry, webhooks })
    }

    pub fn webhook(&self, provider: &'static str, outcome: Outcome) {
        self.webhooks
            .with_label_values(&[provider, outcome.as_str()])
            .inc();
    }
}

/// `GET /metrics`.
pub async fn serve(state: Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&state.metrics.registry))
}
