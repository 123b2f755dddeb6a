//! What the notifier asks of the orchestrator and gets back, in its own
//! terms: `orchestrator.rs` turns these into wire messages and back through
//! `convert.rs`, so the delivery code never sees a generated type.

use std::collections::HashMap;
use std::time::Duration;

use domain::alert::{ChannelKind, Event, RuleRef};

/// A workflow version's definition with the secrets the notifier asked for.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The version's YAML, whose `notify` rules pick the channels.
    pub definition: String,
    /// Values of the secrets that the channels' placeholders name.
    pub secrets: HashMap<String, String>,
}

/// One channel an event's alert is to go to.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The rule that names the channel, looked up again when it is sent.
    pub rule: RuleRef,
    /// Which of the rule's channels.
    pub channel: ChannelKind,
    /// Where it goes, without secrets, for the delivery list.
    pub target: String,
}

/// Asks the orchestrator to record an event's alert, once per event.
#[derive(Debug, Clone)]
pub struct OpenAlert {
    /// The event's id: a second alert for it is refused, so none is sent twice.
    pub event_id: String,
    /// Repeats with the same key within `throttle` are recorded, not sent.
    pub throttle_key: String,
    /// Rollbacks, deploy timeouts and recoveries go out whatever the throttle.
    pub bypass_throttle: bool,
    /// The throttle window (`SLIPWAY_NOTIFY_THROTTLE`).
    pub throttle: Duration,
    /// The deliveries to create when the alert is new and not throttled.
    pub channels: Vec<NewDelivery>,
    /// How long this notifier holds the deliveries it is handed.
    pub claim: Duration,
}

/// What opening an alert came to.
#[derive(Debug)]
pub struct Opened {
    /// False: the event had its alert already; nothing new to send.
    pub created: bool,
    /// A repeat within the throttle window: recorded, not sent.
    pub throttled: bool,
    /// The deliveries this notifier now holds and should send.
    pub deliveries: Vec<Claimed>,
}

/// A delivery as the notifier sends it. Its rule and channel stay as stored
/// and are read when it is sent, so an unknown one fails the delivery, on
/// record, instead of vanishing here.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The delivery's id, to record its attempts against.
    pub id: i64,
    /// The rule that names the channel (-1: the server default).
    pub rule: i32,
    /// Which of the rule's channels, and the metrics' label.
    pub channel: String,
    /// Where it goes, without secrets, for the log.
    pub target: String,
    /// Attempts made before this one: the backoff is counted from them.
    pub attempts: u32,
}

/// A delivery this notifier holds, with the event it tells of.
#[derive(Debug)]
pub struct Claimed {
    /// The delivery to attempt.
    pub delivery: Delivery,
    /// What to send; an event this notifier cannot read fails the delivery, on record.
    pub event: Result<Event, BadEvent>,
}

/// How one attempt of a delivery went, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery attempted.
    pub delivery_id: i64,
    /// `Ok`: the channel took the message.
    pub result: Result<(), Failure>,
}

/// Why an attempt failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why, with secrets already removed: the API shows it.
    pub error: String,
    /// When to try again; `None`: never, the delivery failed.
    pub retry_in: Option<Duration>,
}

/// Why a message is not an event this notifier knows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadEvent(pub String);
