//! The notifier's own gRPC service (`slipway.v1.Notifier`): a test message
//! to a channel configuration, and the alerts with their deliveries.

use std::sync::Arc;

use domain::alert::{Channel, Event};
use domain::workflow::{
    AlertEvent, DingTalkChannel, EmailChannel, SlackChannel, WebhookChannel, secret_refs,
};
use proto::notifier_server::Notifier;
use proto::test_channel_request::Channel as Wire;
use proto::{ApiError, ErrorCode};
use tonic::{Request, Response, Status};

use crate::channels::Target;
use crate::deliver::Deliverer;

pub struct NotifierService {
    deliverer: Arc<Deliverer>,
}

impl NotifierService {
    pub fn new(deliverer: Arc<Deliverer>) -> Self {
        Self { deliverer }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn bad(msg: impl Into<String>) -> Status {
    ApiError::new(ErrorCode::BadRequest, msg).into()
}

/// The channel of a test request, in the domain's terms.
enum Owned {
    Slack(SlackChannel),
    Email(EmailChannel),
    DingTalk(DingTalkChannel),
    Webhook(WebhookChannel),
}

impl Owned {
    fn from_wire(wire: Wire) -> Result<Self, Status> {
        Ok(match wire {
            Wire::Slack(s) => match (&s.webhook_url, &s.token, &s.channel) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => Owned::Slack(SlackChannel {
                    webhook_url: s.webhook_url,
                    token: s.token,
                    channel: s.channel,
                }),
                _ => return Err(bad("slack: give either webhook_url, or token and channel")),
            },
            Wire::Email(e) if e.to.is_empty() => {
                return Err(bad("email: list at least one address"));
            }
            Wire::Email(e) => Owned::Email(EmailChannel { to: e.to }),
            Wire::Dingtalk(d) => Owned::DingTalk(DingTalkChannel {
                webhook_url: d.webhook_url,
                secret: d.secret,
            }),
            Wire::Webhook(w) => Owned::Webhook(WebhookChannel {
                url: w.url,
                secret: w.secret,
            }),
        })
    }

    fn channel(&self) -> Channel<'_> {
        match self {
            Owned::Slack(c) => Channel::Slack(c),
            Owned::Email(c) => Channel::Email(c),
            Owned::DingTalk(c) => Channel::DingTalk(c),
            Owned::Webhook(c) => Channel::Webhook(c),
        }
    }
}

fn test_event(workflow_id: i64, workflow: String) -> Event {
    Event {
        id: format!("test-{}", uuid::Uuid::new_v4()),
        kind: AlertEvent::TaskSucceeded,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        workflow_id,
        workflow,
        workflow_version: 0,
        task_id: None,
        deployment_id: None,
        environment: None,
        branch: None,
        tag: None,
        commit: None,
        message: None,
        summary: "a test message from Slipway: this channel is set up right".to_owned(),
        error: None,
        reason: None,
        outcome: None,
        recovery: false,
    }
}

#[tonic::async_trait]
impl Notifier for NotifierService {
    async fn test_channel(
        &self,
        req: Request<proto::TestChannelRequest>,
    ) -> Answer<proto::TestChannelResponse> {
        let req = req.into_inner();
        let wire = req
            .channel
            .ok_or_else(|| bad("name a channel: slack, email, dingtalk or webhook"))?;
        let owned = Owned::from_wire(wire)?;
        let channel = owned.channel();
        let names: Vec<String> = channel.values().into_iter().flat_map(secret_refs).collect();
        let (secrets, workflow_id, workflow) = match req.workflow_id {
            Some(id) => {
                let config = self
                    .deliverer
                    .orchestrator
                    .notify_config(id, None, names)
                    .await
                    .map_err(|e| Status::from(e.0))?;
                let name = domain::workflow::parse_stored(&config.definition)
                    .map(|w| w.name.to_string())
                    .unwrap_or_default();
                (config.secrets, id, name)
            }
            None if !names.is_empty() => {
                return Err(bad(
                    "secrets placeholders need workflow_id: the workflow whose secrets to use",
                ));
            }
            None => (Default::default(), 0, "slipway".to_owned()),
        };
        let target = match Target::resolve(channel, &secrets) {
            Ok(t) => t,
            Err(e) => return Err(bad(e.message)),
        };
        let event = test_event(workflow_id, workflow);
        let sent = self
            .deliverer
            .channels
            .send(&target, &event, &self.deliverer.public_url, true)
            .await;
        match &sent {
            Ok(()) => tracing::info!(target = %target.describe(), "test message delivered"),
            Err(e) => {
                tracing::warn!(target = %target.describe(), error = %e, "test message failed")
            }
        }
        Ok(Response::new(proto::TestChannelResponse {
            delivered: sent.is_ok(),
            error: sent.err().map(|e| e.message),
            target: target.describe(),
        }))
    }

    async fn list_deliveries(
        &self,
        req: Request<proto::ListAlertsRequest>,
    ) -> Answer<proto::ListAlertsResponse> {
        let answer = self
            .deliverer
            .orchestrator
            .list_alerts(req.into_inner())
            .await
            .map_err(|e| Status::from(e.0))?;
        Ok(Response::new(answer))
    }
}
