//! Events from the wire (`slipway.v1.AlertEvent`, on the queue and with
//! claimed deliveries) into the domain's [`Event`]; an event without an id
//! or of an unknown type is refused here.

use domain::alert::Event;
use domain::workflow::AlertEvent;

/// Why a message is not an event this notifier knows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadEvent(pub String);

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

/// A protobuf timestamp as RFC 3339 UTC with milliseconds.
fn rfc3339(ts: &proto::Timestamp) -> String {
    proto::datetime(ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
