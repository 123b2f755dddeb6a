//! The wire and the notifier's own types, each way: events
//! (`slipway.v1.AlertEvent`, on the queue and with claimed deliveries) into
//! the domain's [`Event`], refusing one without an id or of an unknown type;
//! and the orchestrator's alert, delivery and commit status messages into
//! those of [`crate::model`], refusing one without a field it cannot do
//! without.

use std::time::Duration;

use domain::alert::Event;
use domain::workflow::AlertEvent;

use crate::model::{
    Attempt, BadEvent, Claimed, ClaimedStatus, Delivery, Incoming, NewDelivery, NotifyConfig,
    OpenAlert, OpenStatuses, Opened, StatusAttempt,
};

/// A wire message without a field the notifier cannot do without.
#[derive(Debug, thiserror::Error)]
#[error("{message} without its {field}")]
pub struct MissingField {
    /// Which message, as the log names it.
    message: &'static str,
    /// The field it lacks.
    field: &'static str,
}

fn kind(s: &str) -> Result<AlertEvent, BadEvent> {
    AlertEvent::parse(s).ok_or_else(|| BadEvent(format!("unknown event type {s:?}")))
}

/// An event as the orchestrator publishes it, and hands it out with a
/// claimed delivery.
pub fn from_proto(m: proto::AlertEvent) -> Result<Event, BadEvent> {
    if m.id.is_empty() {
        return Err(BadEvent("event without an id".to_owned()));
    }
    Ok(Event {
        kind: kind(&m.r#type)?,
        id: m.id,
        at: m.at.as_ref().map(rfc3339).unwrap_or_default(),
        workflow_id: m.workflow_id,
        workflow: m.workflow,
        workflow_version: m.workflow_version,
        task_id: m.task_id,
        deployment_id: m.deployment_id,
        environment: m.environment,
        branch: m.branch,
        tag: m.tag,
        commit: m.commit,
        message: m.message,
        summary: m.summary,
        error: m.error,
        reason: m.reason,
        outcome: m.outcome,
        recovery: m.recovery,
    })
}

/// An event as taken from the queue, with what its commit statuses need.
pub fn incoming(m: proto::AlertEvent) -> Result<Incoming, BadEvent> {
    let forge_statuses = m.forge_statuses;
    let trigger = m.trigger.clone();
    Ok(Incoming {
        event: from_proto(m)?,
        forge_statuses,
        trigger,
    })
}

/// A protobuf timestamp as RFC 3339 UTC with milliseconds.
fn rfc3339(ts: &proto::Timestamp) -> String {
    proto::datetime(ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A duration as the wire's milliseconds, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl From<proto::NotifyConfig> for NotifyConfig {
    fn from(m: proto::NotifyConfig) -> Self {
        NotifyConfig {
            definition: m.definition,
            secrets: m.secrets.into_iter().collect(),
        }
    }
}

impl From<NewDelivery> for proto::NewDelivery {
    fn from(d: NewDelivery) -> Self {
        proto::NewDelivery {
            rule: d.rule.index(),
            channel: d.channel.as_str().to_owned(),
            target: d.target,
        }
    }
}

impl From<OpenAlert> for proto::OpenAlertRequest {
    fn from(a: OpenAlert) -> Self {
        proto::OpenAlertRequest {
            event_id: a.event_id,
            throttle_key: a.throttle_key,
            bypass_throttle: a.bypass_throttle,
            throttle_ms: millis(a.throttle),
            channels: a.channels.into_iter().map(Into::into).collect(),
            claim_ms: millis(a.claim),
        }
    }
}

impl From<proto::OpenAlertResponse> for Opened {
    fn from(m: proto::OpenAlertResponse) -> Self {
        Opened {
            created: m.created,
            throttled: m.throttled,
            deliveries: claimed(m.deliveries),
        }
    }
}

impl From<proto::Delivery> for Delivery {
    fn from(d: proto::Delivery) -> Self {
        Delivery {
            id: d.id,
            rule: d.rule,
            channel: d.channel,
            target: d.target,
            attempts: u32::try_from(d.attempts).unwrap_or(0),
        }
    }
}

impl TryFrom<proto::ClaimedDelivery> for Claimed {
    type Error = MissingField;

    fn try_from(c: proto::ClaimedDelivery) -> Result<Self, MissingField> {
        let missing = |field| MissingField {
            message: "claimed delivery",
            field,
        };
        let delivery = c.delivery.ok_or_else(|| missing("delivery"))?;
        let event = c.event.ok_or_else(|| missing("event"))?;
        Ok(Claimed {
            delivery: delivery.into(),
            event: from_proto(event),
        })
    }
}

/// Claimed deliveries as the notifier sends them. One without its delivery
/// or event can be neither sent nor recorded: it is logged and skipped.
pub fn claimed(wire: Vec<proto::ClaimedDelivery>) -> Vec<Claimed> {
    wire.into_iter()
        .filter_map(|c| {
            Claimed::try_from(c)
                .inspect_err(|e| tracing::warn!(error = %e, "skipping a claimed delivery"))
                .ok()
        })
        .collect()
}

impl From<Attempt> for proto::RecordAttemptRequest {
    fn from(a: Attempt) -> Self {
        let (error, retry_in) = match a.result {
            Ok(()) => (None, None),
            Err(f) => (Some(f.error), f.retry_in),
        };
        proto::RecordAttemptRequest {
            delivery_id: a.delivery_id,
            delivered: error.is_none(),
            error,
            retry_in_ms: retry_in.map(millis),
        }
    }
}

impl From<OpenStatuses> for proto::OpenStatusesRequest {
    fn from(o: OpenStatuses) -> Self {
        proto::OpenStatusesRequest {
            event_id: o.event_id,
            statuses: o
                .statuses
                .into_iter()
                .map(|s| proto::NewStatus {
                    context: s.context,
                    state: s.state.as_str().to_owned(),
                    description: s.description,
                })
                .collect(),
            claim_ms: millis(o.claim),
        }
    }
}

impl TryFrom<proto::ClaimedStatus> for ClaimedStatus {
    type Error = MissingField;

    fn try_from(c: proto::ClaimedStatus) -> Result<Self, MissingField> {
        let status = c.status.ok_or(MissingField {
            message: "claimed status",
            field: "status",
        })?;
        Ok(ClaimedStatus {
            id: status.id,
            task_id: c.task_id,
            forge: c.forge,
            api_url: c.api_url,
            repo: c.repo,
            sha: c.sha,
            token: c.token,
            context: status.context,
            state: status.state,
            description: status.description,
            attempts: u32::try_from(status.attempts).unwrap_or(0),
        })
    }
}

/// Claimed statuses as the notifier sends them. One without its status can
/// be neither sent nor recorded: it is logged and skipped.
pub fn claimed_statuses(wire: Vec<proto::ClaimedStatus>) -> Vec<ClaimedStatus> {
    wire.into_iter()
        .filter_map(|c| {
            ClaimedStatus::try_from(c)
                .inspect_err(|e| tracing::warn!(error = %e, "skipping a claimed status"))
                .ok()
        })
        .collect()
}

impl From<StatusAttempt> for proto::RecordStatusAttemptRequest {
    fn from(a: StatusAttempt) -> Self {
        let (error, retry_in) = match a.result {
            Ok(()) => (None, None),
            Err(f) => (Some(f.error), f.retry_in),
        };
        proto::RecordStatusAttemptRequest {
            id: a.id,
            delivered: error.is_none(),
            error,
            retry_in_ms: retry_in.map(millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    fn wire_event() -> proto::AlertEvent {
        proto::AlertEvent {
            id: "e1".into(),
            r#type: "build_failed".into(),
            workflow_id: 3,
            ..Default::default()
        }
    }

    fn wire_delivery() -> proto::Delivery {
        proto::Delivery {
            id: 7,
            rule: -1,
            channel: "slack".into(),
            attempts: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_claimed_delivery_needs_its_delivery_and_event() {
        let no_event = proto::ClaimedDelivery {
            delivery: Some(wire_delivery()),
            event: None,
        };
        let err = Claimed::try_from(no_event).expect_err("no event");
        assert_eq!(err.to_string(), "claimed delivery without its event");
        let no_delivery = proto::ClaimedDelivery {
            delivery: None,
            event: Some(wire_event()),
        };
        let err = Claimed::try_from(no_delivery).expect_err("no delivery");
        assert_eq!(err.to_string(), "claimed delivery without its delivery");

        let whole = proto::ClaimedDelivery {
            delivery: Some(wire_delivery()),
            event: Some(wire_event()),
        };
        let claimed = Claimed::try_from(whole).expect("whole");
        assert_eq!((claimed.delivery.id, claimed.delivery.attempts), (7, 2));
        assert_eq!(claimed.event.expect("an event").id, "e1");
    }

    #[test]
    fn an_unreadable_event_stays_with_its_delivery() {
        let unknown = proto::ClaimedDelivery {
            delivery: Some(wire_delivery()),
            event: Some(proto::AlertEvent {
                r#type: "lunch_served".into(),
                ..wire_event()
            }),
        };
        let kept = claimed(vec![unknown]);
        assert_eq!(kept.len(), 1, "kept, so its failure is recorded");
        assert!(kept[0].event.is_err());
    }

    #[test]
    fn attempts_record_delivered_error_and_retry() {
        let delivered = proto::RecordAttemptRequest::from(Attempt {
            delivery_id: 7,
            result: Ok(()),
        });
        assert!(delivered.delivered);
        assert_eq!((delivered.error, delivered.retry_in_ms), (None, None));
        let failed = proto::RecordAttemptRequest::from(Attempt {
            delivery_id: 7,
            result: Err(Failure {
                error: "answered 500".into(),
                retry_in: Some(Duration::from_secs(30)),
            }),
        });
        assert!(!failed.delivered);
        assert_eq!(failed.error.as_deref(), Some("answered 500"));
        assert_eq!(failed.retry_in_ms, Some(30_000));
    }

    #[test]
    fn incoming_events_keep_what_statuses_need() {
        let wire = proto::AlertEvent {
            r#type: "task_created".into(),
            trigger: Some("push".into()),
            forge_statuses: true,
            seq: 9,
            ..wire_event()
        };
        let incoming = incoming(wire).expect("an event");
        assert_eq!(incoming.event.kind, AlertEvent::TaskCreated);
        assert!(incoming.forge_statuses);
        assert_eq!(incoming.trigger.as_deref(), Some("push"));
    }

    #[test]
    fn statuses_to_and_from_the_wire() {
        let open = proto::OpenStatusesRequest::from(OpenStatuses {
            event_id: "e1".into(),
            statuses: vec![domain::forge::Status {
                context: "slipway/hello".into(),
                state: domain::forge::State::Failure,
                description: "failed at step test".into(),
            }],
            claim: Duration::from_secs(60),
        });
        assert_eq!(open.claim_ms, 60_000);
        assert_eq!(
            (
                open.statuses[0].context.as_str(),
                open.statuses[0].state.as_str()
            ),
            ("slipway/hello", "failure")
        );

        let wire = proto::ClaimedStatus {
            status: Some(proto::CommitStatus {
                id: 4,
                context: "slipway/hello".into(),
                state: "pending".into(),
                description: "queued".into(),
                attempts: 3,
                ..Default::default()
            }),
            task_id: 12,
            forge: "github".into(),
            api_url: "https://api.github.com".into(),
            repo: "acme/hello".into(),
            sha: "abc".into(),
            token: "ghs_secret".into(),
        };
        let claimed = ClaimedStatus::try_from(wire.clone()).expect("whole");
        assert_eq!((claimed.id, claimed.task_id, claimed.attempts), (4, 12, 3));
        assert!(!format!("{claimed:?}").contains("ghs_secret"));
        let headless = proto::ClaimedStatus {
            status: None,
            ..wire
        };
        assert!(claimed_statuses(vec![headless]).is_empty());

        let retry = proto::RecordStatusAttemptRequest::from(StatusAttempt {
            id: 4,
            result: Err(Failure {
                error: "answered 502".into(),
                retry_in: Some(Duration::from_millis(1500)),
            }),
        });
        assert_eq!((retry.delivered, retry.retry_in_ms), (false, Some(1500)));
        let failed = proto::RecordStatusAttemptRequest::from(StatusAttempt {
            id: 4,
            result: Err(Failure {
                error: "answered 422".into(),
                retry_in: None,
            }),
        });
        assert_eq!((failed.delivered, failed.retry_in_ms), (false, None));
        let delivered = proto::RecordStatusAttemptRequest::from(StatusAttempt {
            id: 4,
            result: Ok(()),
        });
        assert!(delivered.delivered && delivered.error.is_none());
    }
}
