//! The notifier's side of the orchestrator's gRPC APIs: `NotifierApi` (rules
//! with secrets, alerts, deliveries) with the internal token, and the public
//! API's `ListAlerts` with the API token.

use std::time::Duration;

use proto::auth::Bearer;
use proto::notifier_api_client::NotifierApiClient;
use proto::slipway_client::SlipwayClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Authed = InterceptedService<Channel, Bearer>;

pub use proto::CallError;

#[derive(Clone)]
pub struct Orchestrator {
    internal: NotifierApiClient<Authed>,
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

    pub async fn notify_config(
        &self,
        workflow_id: i64,
        version: Option<i32>,
        secret_names: Vec<String>,
    ) -> Result<proto::NotifyConfig, CallError> {
        Ok(self
            .internal
            .clone()
            .get_notify_config(proto::GetNotifyConfigRequest {
                workflow_id,
                version,
                secret_names,
            })
            .await?
            .into_inner())
    }

    pub async fn open_alert(
        &self,
        req: proto::OpenAlertRequest,
    ) -> Result<proto::OpenAlertResponse, CallError> {
        Ok(self.internal.clone().open_alert(req).await?.into_inner())
    }

    pub async fn claim_deliveries(
        &self,
        limit: i32,
        claim: Duration,
    ) -> Result<Vec<proto::ClaimedDelivery>, CallError> {
        Ok(self
            .internal
            .clone()
            .claim_deliveries(proto::ClaimDeliveriesRequest {
                limit,
                claim_ms: millis(claim),
            })
            .await?
            .into_inner()
            .deliveries)
    }

    pub async fn record_attempt(
        &self,
        req: proto::RecordAttemptRequest,
    ) -> Result<proto::Delivery, CallError> {
        Ok(self
            .internal
            .clone()
            .record_attempt(req)
            .await?
            .into_inner())
    }

    pub async fn list_alerts(
        &self,
        req: proto::ListAlertsRequest,
    ) -> Result<proto::ListAlertsResponse, CallError> {
        Ok(self.public.clone().list_alerts(req).await?.into_inner())
    }
}

pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
