//! The notifier API (`slipway.v1.NotifierApi`): what notifiers call to read
//! a workflow's notify rules with their secrets, record alerts and claim
//! and report deliveries. The notifier decides; the database is here.

use std::sync::Arc;
use std::time::Duration;

use proto::notifier_api_server::NotifierApi;
use proto::{ApiError, ErrorCode};
use store::alerts::{Attempt, NewDelivery, OpenAlert};
use tonic::{Request, Response, Status};

use super::convert;
use crate::app::App;

/// Longest claim a notifier may ask for.
const MAX_CLAIM: Duration = Duration::from_secs(600);
/// Most deliveries handed out per claim.
const MAX_CLAIM_BATCH: i32 = 100;

pub struct NotifierService {
    app: Arc<App>,
}

impl NotifierService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

fn millis(ms: i64, what: &str, max: Duration) -> Result<Duration, ApiError> {
    let ms = u64::try_from(ms).map_err(|_| bad(format!("{what} must not be negative")))?;
    Ok(Duration::from_millis(ms).min(max))
}

/// An attempt as a notifier reports it: delivered, or failed and tried
/// again after `retry_in_ms` (never when absent).
fn attempt(
    delivered: bool,
    error: Option<String>,
    retry_in_ms: Option<i64>,
) -> Result<Attempt, ApiError> {
    if delivered {
        return Ok(Attempt::Delivered);
    }
    let retry_at = match retry_in_ms {
        Some(ms) => {
            let wait = millis(ms, "retry_in_ms", Duration::from_secs(24 * 3600))?;
            Some(chrono::Utc::now() + wait)
        }
        None => None,
    };
    Ok(Attempt::Failed {
        error: error.unwrap_or_else(|| "failed".to_owned()),
        retry_at,
    })
}

#[tonic::async_trait]
impl NotifierApi for NotifierService {
    async fn get_notify_config(
        &self,
        req: Request<proto::GetNotifyConfigRequest>,
    ) -> Answer<proto::NotifyConfig> {
        let req = req.into_inner();
        let (definition, version, secrets) = self
            .app
            .notify_config(req.workflow_id, req.version, req.secret_names)
            .await?;
        Ok(Response::new(proto::NotifyConfig {
            definition,
            version,
            secrets: secrets.into_iter().collect(),
        }))
    }

    async fn open_alert(
        &self,
        req: Request<proto::OpenAlertRequest>,
    ) -> Answer<proto::OpenAlertResponse> {
        let req = req.into_inner();
        let mut channels = Vec::with_capacity(req.channels.len());
        for c in req.channels {
            if domain::alert::ChannelKind::parse(&c.channel).is_none() {
                return Err(bad(format!("unknown channel {:?}", c.channel)).into());
            }
            channels.push(NewDelivery {
                rule: c.rule,
                channel: c.channel,
                target: c.target,
            });
        }
        let open = OpenAlert {
            event_id: req.event_id,
            throttle_key: req.throttle_key,
            bypass_throttle: req.bypass_throttle,
            window: millis(req.throttle_ms, "throttle_ms", Duration::MAX)?,
            channels,
        };
        let claim = millis(req.claim_ms, "claim_ms", MAX_CLAIM)?;
        let opened = self.app.open_alert(open, claim).await?;
        Ok(Response::new(proto::OpenAlertResponse {
            alert_id: opened.alert.id,
            created: opened.created,
            throttled: opened.alert.throttled,
            deliveries: opened
                .deliveries
                .into_iter()
                .map(convert::claimed)
                .collect(),
        }))
    }

    async fn claim_deliveries(
        &self,
        req: Request<proto::ClaimDeliveriesRequest>,
    ) -> Answer<proto::ClaimDeliveriesResponse> {
        let req = req.into_inner();
        let limit = req.limit.clamp(1, MAX_CLAIM_BATCH);
        let claim = millis(req.claim_ms, "claim_ms", MAX_CLAIM)?;
        let claimed = self.app.claim_deliveries(i64::from(limit), claim).await?;
        Ok(Response::new(proto::ClaimDeliveriesResponse {
            deliveries: claimed.into_iter().map(convert::claimed).collect(),
        }))
    }

    async fn record_attempt(
        &self,
        req: Request<proto::RecordAttemptRequest>,
    ) -> Answer<proto::Delivery> {
        let req = req.into_inner();
        let attempt = attempt(req.delivered, req.error, req.retry_in_ms)?;
        let row = self.app.record_attempt(req.delivery_id, attempt).await?;
        Ok(Response::new(convert::delivery(row)))
    }

    async fn open_statuses(
        &self,
        req: Request<proto::OpenStatusesRequest>,
    ) -> Answer<proto::ClaimStatusesResponse> {
        let req = req.into_inner();
        let mut statuses = Vec::with_capacity(req.statuses.len());
        for s in req.statuses {
            if domain::forge::State::parse(&s.state).is_none() {
                return Err(bad(format!("unknown commit status state {:?}", s.state)).into());
            }
            if s.context.trim().is_empty() {
                return Err(bad("a commit status needs a context").into());
            }
            statuses.push(store::forges::NewStatus {
                context: s.context,
                state: s.state,
                description: s.description,
            });
        }
        let claim = millis(req.claim_ms, "claim_ms", MAX_CLAIM)?;
        let sendable = self
            .app
            .open_statuses(req.event_id, statuses, claim)
            .await?;
        Ok(Response::new(proto::ClaimStatusesResponse {
            statuses: sendable.into_iter().map(convert::claimed_status).collect(),
        }))
    }

    async fn claim_statuses(
        &self,
        req: Request<proto::ClaimStatusesRequest>,
    ) -> Answer<proto::ClaimStatusesResponse> {
        let req = req.into_inner();
        let limit = req.limit.clamp(1, MAX_CLAIM_BATCH);
        let claim = millis(req.claim_ms, "claim_ms", MAX_CLAIM)?;
        let sendable = self.app.claim_statuses(i64::from(limit), claim).await?;
        Ok(Response::new(proto::ClaimStatusesResponse {
            statuses: sendable.into_iter().map(convert::claimed_status).collect(),
        }))
    }

    async fn record_status_attempt(
        &self,
        req: Request<proto::RecordStatusAttemptRequest>,
    ) -> Answer<proto::CommitStatus> {
        let req = req.into_inner();
        let attempt = attempt(req.delivered, req.error, req.retry_in_ms)?;
        let row = self.app.record_status_attempt(req.id, attempt).await?;
        Ok(Response::new(convert::commit_status(row)))
    }
}
