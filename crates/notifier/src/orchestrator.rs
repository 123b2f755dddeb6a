//! The notifier's side of the orchestrator's gRPC APIs: `NotifierApi` (rules
//! with secrets, alerts, deliveries, commit statuses) with the internal
//! token, and the public API's `ListAlerts` with the API token. The edge
//! of the notifier's client: its calls take and return the types of
//! [`crate::model`], and the wire's messages stay here and in `convert.rs`.
//! `ListAlerts` is passed through for the notifier's own gRPC service, wire
//! to wire.

use std::time::Duration;

use proto::auth::Bearer;
use proto::notifier_api_client::NotifierApiClient;
use proto::slipway_client::SlipwayClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::convert::millis;
use crate::model::{
    Attempt, Claimed, ClaimedStatus, NotifyConfig, OpenAlert, OpenStatuses, Opened, StatusAttempt,
};

type Authed = InterceptedService<Channel, Bearer>;

pub use proto::CallError;

#[derive(Clone)]
pub struct Orchestrator {
    /// `NotifierApi`, with the internal token.
    internal: NotifierApiClient<Authed>,
    /// The public API, with the API token, for `ListAlerts`.
    public: SlipwayClient<Authed>,
}

impl Orchestrator {
    pub fn new(
        url: &str,
        ca: Option<&std::path::Path>,
        api_token: &str,
        internal_token: &str,
    ) -> Result<Self, String> {
        let channel = proto::orchestrator_channel(url, ca, Duration::from_secs(30))?;
        let api = Bearer::new(api_token).ok_or("SLIPWAY_API_TOKEN must be printable ASCII")?;
        let internal =
            Bearer::new(internal_token).ok_or("SLIPWAY_NOTIFIER_TOKEN must be printable ASCII")?;
        Ok(Self {
            internal: NotifierApiClient::with_interceptor(channel.clone(), internal),
            public: SlipwayClient::with_interceptor(channel, api),
        })
    }

    /// A workflow version's definition (`None`: the live one) with the
    /// secrets named.
    pub async fn notify_config(
        &self,
        workflow_id: i64,
        version: Option<i32>,
        secret_names: Vec<String>,
    ) -> Result<NotifyConfig, CallError> {
        Ok(self
            .internal
            .clone()
            .get_notify_config(proto::GetNotifyConfigRequest {
                workflow_id,
                version,
                secret_names,
            })
            .await?
            .into_inner()
            .into())
    }

    /// Records an event's alert, once per event, with its deliveries unless
    /// throttled; this notifier holds those for `claim`.
    pub async fn open_alert(&self, req: OpenAlert) -> Result<Opened, CallError> {
        Ok(self
            .internal
            .clone()
            .open_alert(proto::OpenAlertRequest::from(req))
            .await?
            .into_inner()
            .into())
    }

    /// Takes up to `limit` due deliveries, held for `claim`.
    pub async fn claim_deliveries(
        &self,
        limit: i32,
        claim: Duration,
    ) -> Result<Vec<Claimed>, CallError> {
        let answer = self
            .internal
            .clone()
            .claim_deliveries(proto::ClaimDeliveriesRequest {
                limit,
                claim_ms: millis(claim),
            })
            .await?
            .into_inner();
        Ok(crate::convert::claimed(answer.deliveries))
    }

    /// Records how an attempt went.
    pub async fn record_attempt(&self, attempt: Attempt) -> Result<(), CallError> {
        self.internal
            .clone()
            .record_attempt(proto::RecordAttemptRequest::from(attempt))
            .await?;
        Ok(())
    }

    /// Records an event's commit statuses, once per event and context;
    /// returns those this notifier now holds. `None`: this orchestrator
    /// does not serve commit statuses (it answered UNIMPLEMENTED).
    pub async fn open_statuses(
        &self,
        req: OpenStatuses,
    ) -> Result<Option<Vec<ClaimedStatus>>, CallError> {
        let answer = self
            .internal
            .clone()
            .open_statuses(proto::OpenStatusesRequest::from(req))
            .await;
        Ok(offered(answer)?.map(|a| crate::convert::claimed_statuses(a.statuses)))
    }

    /// Takes up to `limit` due commit statuses, held for `claim`. `None`:
    /// this orchestrator does not serve commit statuses.
    pub async fn claim_statuses(
        &self,
        limit: i32,
        claim: Duration,
    ) -> Result<Option<Vec<ClaimedStatus>>, CallError> {
        let answer = self
            .internal
            .clone()
            .claim_statuses(proto::ClaimStatusesRequest {
                limit,
                claim_ms: millis(claim),
            })
            .await;
        Ok(offered(answer)?.map(|a| crate::convert::claimed_statuses(a.statuses)))
    }

    /// Records how an attempt at a commit status went.
    pub async fn record_status_attempt(&self, attempt: StatusAttempt) -> Result<(), CallError> {
        self.internal
            .clone()
            .record_status_attempt(proto::RecordStatusAttemptRequest::from(attempt))
            .await?;
        Ok(())
    }

    /// The public API's `ListAlerts`, for the notifier's `ListDeliveries`.
    pub async fn list_alerts(
        &self,
        req: proto::ListAlertsRequest,
    ) -> Result<proto::ListAlertsResponse, CallError> {
        Ok(self.public.clone().list_alerts(req).await?.into_inner())
    }
}

/// An answer, or `None` when the orchestrator has no such call (an older
/// one, without commit statuses).
fn offered<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Result<Option<T>, CallError> {
    match answer {
        Ok(a) => Ok(Some(a.into_inner())),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(None),
        Err(status) => Err(status.into()),
    }
}
