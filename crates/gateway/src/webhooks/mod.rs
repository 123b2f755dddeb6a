//! `POST /api/webhooks/github` and `/api/webhooks/gitlab`: authenticate the
//! delivery, parse it, and have the orchestrator record it and create its
//! tasks before answering; when the orchestrator cannot take it now, keep
//! it in the spool and answer that it is queued. Nothing is stored for a
//! delivery that fails authentication or does not parse.

mod github;
mod gitlab;
mod parse;
mod payload;
pub mod signature;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::State;
use crate::body;
use crate::error::{HttpError, bad_request, unauthorized, unavailable};
use crate::metrics::Outcome;
use payload::Parsed;

pub use parse::{GITHUB_EVENTS, GITLAB_EVENTS, parse};

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A delivery as the orchestrator should record it.
struct Delivery {
    provider: &'static str,
    delivery_id: String,
    event: String,
    body_sha256: String,
    /// What the body said; only a body that parsed gets this far.
    parsed: Parsed,
}

impl From<payload::Malformed> for HttpError {
    fn from(malformed: payload::Malformed) -> Self {
        bad_request(malformed.to_string())
    }
}

/// A delivery's answer and what became of it.
type Answer = Result<(HttpResponse, Outcome), HttpError>;

/// Counts a delivery's outcome once, whatever path it took.
fn counted(
    state: &State,
    provider: &'static str,
    answer: Answer,
) -> Result<HttpResponse, HttpError> {
    let outcome = match &answer {
        Ok((_, outcome)) => *outcome,
        Err(e) => Outcome::of_error(e),
    };
    state.metrics.webhook(provider, outcome);
    answer.map(|(response, _)| response)
}

/// How long the orchestrator may take to record a delivery before it is
/// kept in the spool instead (a second hand-over is deduped).
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// Has the orchestrator record the delivery and create its tasks; the
/// answer says what became of it. While the orchestrator cannot take it
/// (or deliveries already wait for it), the delivery goes to the spool.
async fn record(state: &State, d: Delivery) -> Answer {
    let pong = d.parsed.pong;
    let request = proto::IngestWebhookRequest {
        provider: d.provider.to_owned(),
        delivery_id: d.delivery_id,
        event: d.event,
        body_sha256: d.body_sha256,
        push: d.parsed.push,
        workflow_run: d.parsed.workflow_run,
        ignored: d.parsed.ignored,
        pull_request: d.parsed.pull_request,
        forge: d.parsed.forge,
        received_at: None,
    };
    if let Some(spool) = &state.spool
        && spool.holds_any()
    {
        return queue(spool, request, pong).await;
    }
    let mut client = state.client();
    let called = tokio::time::timeout(RECORD_TIMEOUT, client.ingest_webhook(request.clone())).await;
    let outcome = match called {
        Ok(Ok(outcome)) => outcome.into_inner(),
        Ok(Err(status)) => {
            let err = HttpError::from(status);
            match &state.spool {
                Some(spool) if err.0.code == proto::ErrorCode::Unavailable => {
                    tracing::warn!(error = %err, "orchestrator cannot take a webhook now; keeping it in the spool");
                    return queue(spool, request, pong).await;
                }
                _ => return Err(err),
            }
        }
        Err(_) => match &state.spool {
            Some(spool) => {
                tracing::warn!(
                    "orchestrator did not answer a webhook in time; keeping it in the spool"
                );
                return queue(spool, request, pong).await;
            }
            None => return Err(unavailable("orchestrator unavailable: no answer in time")),
        },
    };
    if !outcome.task_ids.is_empty() {
        tracing::Span::current().record("task_ids", format!("{:?}", outcome.task_ids));
    }
    let mut body = json!({
        "delivery_id": outcome.delivery_id,
        "task_ids": outcome.task_ids,
    });
    if let Some(ignored) = outcome.ignored {
        body["ignored"] = json!(ignored);
    }
    let (status, counted) = if outcome.duplicate {
        body["duplicate"] = json!(true);
        (StatusCode::OK, Outcome::Duplicate)
    } else if outcome.task_ids.is_empty() {
        (StatusCode::ACCEPTED, Outcome::Ignored)
    } else {
        (StatusCode::ACCEPTED, Outcome::Accepted)
    };
    if pong {
        return Ok((HttpResponse::Ok().json(json!({"pong": true})), counted));
    }
    Ok((HttpResponse::build(status).json(body), counted))
}

/// Keeps a delivery in the spool: `202 {"queued": true}`, or `503` when
/// the spool is full or cannot be written.
async fn queue(
    spool: &crate::spool::Spool,
    request: proto::IngestWebhookRequest,
    pong: bool,
) -> Answer {
    let delivery_id = request.delivery_id.clone();
    if let Err(refused) = spool.keep(request).await {
        tracing::error!(error = %refused, "webhook refused: the spool cannot keep it");
        return Err(unavailable(refused.to_string()));
    }
    if pong {
        return Ok((
            HttpResponse::Ok().json(json!({"pong": true})),
            Outcome::Queued,
        ));
    }
    Ok((
        HttpResponse::Accepted().json(json!({
            "delivery_id": delivery_id,
            "queued": true,
            "task_ids": [],
        })),
        Outcome::Queued,
    ))
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The root span of every task a delivery creates (docs/tracing.md).
#[tracing::instrument(
    name = "webhook",
    parent = None,
    skip_all,
    fields(
        otel.kind = "server",
        provider = "github",
        delivery = header(&req, "x-github-delivery"),
        task_ids = tracing::field::Empty,
    )
)]
pub async fn github(
    state: Data<State>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let answer = github_delivery(&state, &req, payload).await;
    counted(&state, "github", answer)
}

async fn github_delivery(state: &State, req: &HttpRequest, payload: Payload) -> Answer {
    let body = body::read(req, payload, state.settings.webhook_max_bytes).await?;
    if state.settings.github_secret.is_empty() {
        return Err(unauthorized(
            "github webhooks are disabled: SLIPWAY_GITHUB_SECRET is not set",
        ));
    }
    if !signature::github_valid(
        state.settings.github_secret.as_bytes(),
        &body,
        header(req, "x-hub-signature-256"),
    ) {
        return Err(unauthorized("missing or wrong X-Hub-Signature-256"));
    }
    let event = header(req, "x-github-event")
        .ok_or_else(|| bad_request("missing X-GitHub-Event header"))?
        .to_owned();
    let body_sha256 = sha256_hex(&body);
    let delivery_id = header(req, "x-github-delivery")
        .map_or_else(|| format!("sha256:{body_sha256}"), str::to_owned);
    let parsed = github::read(&event, &body)?;
    let delivery = Delivery {
        provider: "github",
        delivery_id,
        event,
        body_sha256,
        parsed,
    };
    record(state, delivery).await
}

/// The root span of every task a delivery creates (docs/tracing.md).
#[tracing::instrument(
    name = "webhook",
    parent = None,
    skip_all,
    fields(
        otel.kind = "server",
        provider = "gitlab",
        delivery = header(&req, "x-gitlab-event-uuid"),
        task_ids = tracing::field::Empty,
    )
)]
pub async fn gitlab(
    state: Data<State>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let answer = gitlab_delivery(&state, &req, payload).await;
    counted(&state, "gitlab", answer)
}

async fn gitlab_delivery(state: &State, req: &HttpRequest, payload: Payload) -> Answer {
    let body = body::read(req, payload, state.settings.webhook_max_bytes).await?;
    if state.settings.gitlab_token.is_empty() {
        return Err(unauthorized(
            "gitlab webhooks are disabled: SLIPWAY_GITLAB_TOKEN is not set",
        ));
    }
    if !signature::gitlab_valid(
        state.settings.gitlab_token.as_bytes(),
        header(req, "x-gitlab-token"),
    ) {
        return Err(unauthorized("missing or wrong X-Gitlab-Token"));
    }
    let event = header(req, "x-gitlab-event")
        .ok_or_else(|| bad_request("missing X-Gitlab-Event header"))?
        .to_owned();
    let body_sha256 = sha256_hex(&body);
    let delivery_id = header(req, "x-gitlab-event-uuid")
        .or_else(|| header(req, "idempotency-key"))
        .map_or_else(|| format!("sha256:{body_sha256}"), str::to_owned);
    let parsed = gitlab::read(&event, &body)?;
    let delivery = Delivery {
        provider: "gitlab",
        delivery_id,
        event,
        body_sha256,
        parsed,
    };
    record(state, delivery).await
}
