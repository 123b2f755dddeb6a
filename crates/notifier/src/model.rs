//! What the notifier asks of the orchestrator and gets back, in its own
//! terms: `orchestrator.rs` turns these into wire messages and back through
//! `convert.rs`, so the delivery code never sees a generated type.

use std::collections::HashMap;
use std::time::Duration;

use domain::alert::{ChannelKind, Event, RuleRef};
use domain::forge::Status;

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

/// An event as taken from the queue: the domain's [`Event`] and what the
/// commit statuses need besides.
#[derive(Debug)]
pub struct Incoming {
    pub event: Event,
    /// Whether the event's task reports commit statuses to a forge.
    pub forge_statuses: bool,
    /// The task's trigger (push, pull_request, deploy, ...): deploy-only
    /// tasks set only their deploy's status.
    pub trigger: Option<String>,
}

/// Asks the orchestrator to record an event's commit statuses, once per
/// event and context.
#[derive(Debug, Clone)]
pub struct OpenStatuses {
    /// The event the statuses come from: its order decides which state of
    /// a commit and context is the latest.
    pub event_id: String,
    pub statuses: Vec<Status>,
    /// How long this notifier holds the statuses it is handed.
    pub claim: Duration,
}

/// A commit status this notifier holds, with where and how to send it.
/// Its forge and state stay as stored and are read when it is sent, so an
/// unknown one fails the status, on record, instead of vanishing here.
#[derive(Clone)]
pub struct ClaimedStatus {
    /// The status's id, to record its attempts against.
    pub id: i64,
    /// The task whose page the status links to.
    pub task_id: i64,
    /// `github` or `gitlab`, and the metrics' label.
    pub forge: String,
    /// GitHub's API base; GitLab's instance base (the API is under `/api/v4`).
    pub api_url: String,
    /// GitHub: `owner/name`; GitLab: the project id (or its path).
    pub repo: String,
    /// The commit the status is set on.
    pub sha: String,
    /// The credential to send it with; never logged.
    pub token: String,
    /// `slipway/<workflow>[/deploy/<environment>]`.
    pub context: String,
    /// pending | running | success | failure | error.
    pub state: String,
    pub description: String,
    /// Attempts made before this one: the backoff is counted from them.
    pub attempts: u32,
}

impl std::fmt::Debug for ClaimedStatus {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedStatus")
            .field("id", &self.id)
            .field("forge", &self.forge)
            .field("repo", &self.repo)
            .field("sha", &self.sha)
            .field("context", &self.context)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How one attempt at a commit status went, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAttempt {
    /// The status attempted.
    pub id: i64,
    /// `Ok`: the forge took it.
    pub result: Result<(), Failure>,
}
