//! `POST /api/webhooks/github` and `/api/webhooks/gitlab`: authenticate the
//! delivery, parse it, and have the orchestrator record it and create its
//! tasks before answering. Nothing is stored for a delivery that fails
//! authentication or does not parse.

mod github;
mod gitlab;
pub mod signature;

use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::State;
use crate::body;
use crate::error::{HttpError, bad_request, unauthorized};
use crate::metrics::Outcome;

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
    push: Option<proto::PushEvent>,
    workflow_run: Option<proto::WorkflowRunEvent>,
    ignored: Option<String>,
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

async fn record(state: &State, d: Delivery) -> Answer {
    let outcome = state
        .client()
        .ingest_webhook(proto::IngestWebhookRequest {
            provider: d.provider.to_owned(),
            delivery_id: d.delivery_id,
            event: d.event,
            body_sha256: d.body_sha256,
            push: d.push,
            workflow_run: d.workflow_run,
            ignored: d.ignored,
            pull_request: None,
            forge: None,
        })
        .await?
        .into_inner();
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
    Ok((HttpResponse::build(status).json(body), counted))
}

/// Every path the listed commits touched, sorted and without repeats.
pub(crate) fn changed_paths<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut paths: Vec<String> = paths.cloned().collect();
    paths.sort();
    paths.dedup();
    paths
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, HttpError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed json: {e}")))?;
    serde_json::from_value(value).map_err(|e| bad_request(format!("malformed {what} event: {e}")))
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
    let mut delivery = Delivery {
        provider: "github",
        delivery_id,
        event: event.clone(),
        body_sha256,
        push: None,
        workflow_run: None,
        ignored: None,
    };
    match event.as_str() {
        "ping" => {
            // Validate the JSON like any delivery, then record it.
            let _: serde_json::Value = parse(&body, "ping")?;
            delivery.ignored = Some("ping".to_owned());
            let (_, outcome) = record(state, delivery).await?;
            Ok((HttpResponse::Ok().json(json!({"pong": true})), outcome))
        }
        "push" => {
            let push: github::Push = parse(&body, "push")?;
            delivery.push = Some(push.into_event());
            record(state, delivery).await
        }
        "workflow_run" => {
            let run: github::WorkflowRun = parse(&body, "workflow_run")?;
            match run.into_event() {
                Ok(event) => delivery.workflow_run = Some(event),
                Err(why) => delivery.ignored = Some(why),
            }
            record(state, delivery).await
        }
        other => {
            let _: serde_json::Value = parse(&body, other)?;
            delivery.ignored = Some(format!("event {other} not handled"));
            record(state, delivery).await
        }
    }
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
    let mut delivery = Delivery {
        provider: "gitlab",
        delivery_id,
        event: event.clone(),
        body_sha256,
        push: None,
        workflow_run: None,
        ignored: None,
    };
    match event.as_str() {
        "Push Hook" | "Tag Push Hook" => {
            let push: gitlab::Push = parse(&body, "push")?;
            delivery.push = Some(push.into_event());
        }
        other => {
            let _: serde_json::Value = parse(&body, other)?;
            delivery.ignored = Some(format!("event {other} not handled"));
        }
    }
    record(state, delivery).await
}
