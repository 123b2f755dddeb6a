//! From an event to delivered messages: the workflow's rules (or the
//! server default) pick the channels, the orchestrator records the alert
//! once per event and decides the throttle, and each delivery is attempted
//! and its outcome recorded, failures again after an exponential backoff
//! until the attempts run out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::alert::{self, ChannelKind, Event, RuleRef};
use domain::workflow::{self, NotifyRule, Workflow};
use proto::ErrorCode;
use tokio::sync::{Semaphore, watch};

use crate::channels::{Channels, SendError, Target};
use crate::metrics::{Metrics, Outcome};
use crate::model::{Attempt, BadEvent, Claimed, Failure, NewDelivery, OpenAlert};
use crate::orchestrator::{CallError, Orchestrator};

/// How long a notifier holds a delivery it is sending: past it, another
/// may take it (this one died).
const CLAIM: Duration = Duration::from_secs(60);
/// Deliveries taken per round of the retry loop.
const CLAIM_BATCH: i32 = 32;
/// How long a workflow version's rules and secrets are reused: versions
/// never change, secrets may.
const CONFIG_TTL: Duration = Duration::from_secs(10);
/// Deliveries sent at once.
const MAX_SENDING: usize = 32;

/// A workflow version's rules with the secrets they name.
struct Config {
    /// The parsed definition, whose `notify` rules pick and configure channels.
    workflow: Workflow,
    /// What the channels' placeholders resolve to.
    secrets: HashMap<String, String>,
}

/// Configs by (workflow id, version), with when they were read.
type ConfigCache = HashMap<(i64, i32), (Instant, Arc<Config>)>;

/// Why an event could not be handled yet, or at all.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The orchestrator did not answer: try the event again later.
    #[error("{0}")]
    Unavailable(CallError),
    /// The event cannot be handled (unknown workflow version, bad event).
    #[error("{0}")]
    Rejected(String),
}

impl From<CallError> for HandleError {
    fn from(e: CallError) -> Self {
        if e.is_transient() {
            HandleError::Unavailable(e)
        } else {
            HandleError::Rejected(e.to_string())
        }
    }
}

impl From<BadEvent> for HandleError {
    fn from(e: BadEvent) -> Self {
        HandleError::Rejected(e.to_string())
    }
}

/// What handling events and sending deliveries needs, shared by the
/// consumer, the retry loop and the gRPC service.
pub struct Deliverer {
    /// Rules, secrets, alerts and deliveries live with the orchestrator.
    pub(crate) orchestrator: Orchestrator,
    /// The clients that send, shared by every delivery.
    pub(crate) channels: Channels,
    /// The base of the dashboard links in messages.
    pub(crate) public_url: String,
    /// The channels of workflows without `notify` rules, if any.
    default_rule: Option<NotifyRule>,
    /// Repeats within this window are recorded, not sent.
    throttle: Duration,
    /// The first wait after a failed attempt; it doubles after each one.
    retry_base: Duration,
    /// After this many attempts a delivery has failed.
    attempts: u32,
    /// Recently read configs, so a burst of events reads each once.
    configs: Mutex<ConfigCache>,
    /// Bounds the deliveries sent at once to [`MAX_SENDING`].
    sending: Arc<Semaphore>,
    /// Counts attempts by channel and outcome.
    pub(crate) metrics: Metrics,
}

impl Deliverer {
    pub fn new(
        orchestrator: Orchestrator,
        channels: Channels,
        public_url: String,
        checked: crate::settings::Checked,
        metrics: Metrics,
    ) -> Self {
        Self {
            orchestrator,
            channels,
            public_url,
            default_rule: checked.default_rule,
            throttle: checked.throttle,
            retry_base: checked.retry_base,
            attempts: checked.attempts,
            configs: Mutex::new(HashMap::new()),
            sending: Arc::new(Semaphore::new(MAX_SENDING)),
            metrics,
        }
    }

    async fn config(&self, workflow_id: i64, version: i32) -> Result<Arc<Config>, HandleError> {
        let key = (workflow_id, version);
        if let Ok(cache) = self.configs.lock()
            && let Some((at, config)) = cache.get(&key)
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(config.clone());
        }
        let answer = self
            .orchestrator
            .notify_config(workflow_id, Some(version), Vec::new())
            .await?;
        let workflow = workflow::parse_stored(&answer.definition)
            .map_err(|e| HandleError::Rejected(format!("stored definition: {e}")))?;
        let config = Arc::new(Config {
            workflow,
            secrets: answer.secrets,
        });
        if let Ok(mut cache) = self.configs.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < CONFIG_TTL);
            cache.insert(key, (Instant::now(), config.clone()));
        }
        Ok(config)
    }

    /// Matches an event against its rules and records its alert; returns
    /// the deliveries this notifier should now send (none when nothing
    /// matched, the event was throttled, or it was handled before).
    pub async fn open(&self, event: &Event) -> Result<Vec<Claimed>, HandleError> {
        let config = self
            .config(event.workflow_id, event.workflow_version)
            .await?;
        let routes = alert::route(
            event.kind,
            &config.workflow.notify,
            self.default_rule.as_ref(),
        );
        if routes.is_empty() {
            tracing::debug!(event = %event.id, kind = %event.kind, "no rule matches");
            return Ok(Vec::new());
        }
        let channels = routes
            .iter()
            .map(|(rule, channel)| NewDelivery {
                rule: *rule,
                channel: channel.kind(),
                target: channel.target(),
            })
            .collect();
        let answer = self
            .orchestrator
            .open_alert(OpenAlert {
                event_id: event.id.clone(),
                throttle_key: event.throttle_key(),
                bypass_throttle: event.bypasses_throttle(),
                throttle: self.throttle,
                channels,
                claim: CLAIM,
            })
            .await?;
        if answer.throttled && answer.created {
            tracing::info!(event = %event.id, kind = %event.kind, workflow = %event.workflow, "throttled: a like alert went out recently");
        }
        Ok(answer.deliveries)
    }

    /// The resolved channel of a delivery.
    async fn target(&self, event: &Event, rule: i32, kind: &str) -> Result<Target, SendError> {
        let kind = ChannelKind::parse(kind)
            .ok_or_else(|| SendError::config(format!("unknown channel {kind:?}")))?;
        let rule = RuleRef::from_index(rule)
            .ok_or_else(|| SendError::config(format!("unknown rule {rule}")))?;
        let config = match rule {
            RuleRef::Default => None,
            RuleRef::Workflow(_) => Some(
                self.config(event.workflow_id, event.workflow_version)
                    .await
                    .map_err(|e| match e {
                        HandleError::Unavailable(e) => SendError::transient(e.to_string()),
                        HandleError::Rejected(e) => SendError::config(e),
                    })?,
            ),
        };
        let source = match (rule, &config) {
            (RuleRef::Default, _) => self.default_rule.as_ref(),
            (RuleRef::Workflow(i), Some(c)) => c.workflow.notify.get(i),
            (RuleRef::Workflow(_), None) => None,
        };
        let channel = source
            .and_then(|r| alert::channel(r, kind))
            .ok_or_else(|| SendError::config("the rule of this delivery no longer exists"))?;
        let no_secrets = HashMap::new();
        let secrets = config.as_ref().map_or(&no_secrets, |c| &c.secrets);
        Target::resolve(channel, secrets)
    }

    /// Attempts one claimed delivery and records how it went.
    #[tracing::instrument(
        name = "deliver",
        skip_all,
        fields(
            otel.kind = "client",
            delivery = claimed.delivery.id,
            channel = claimed.delivery.channel.as_str(),
        )
    )]
    pub async fn deliver(&self, claimed: Claimed) {
        let Claimed { delivery, event } = claimed;
        let result = match event {
            Ok(event) => match self.target(&event, delivery.rule, &delivery.channel).await {
                Ok(target) => {
                    self.channels
                        .send(&target, &event, &self.public_url, false)
                        .await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(SendError::config(e.to_string())),
        };
        let attempt = delivery.attempts.saturating_add(1);
        let tried = match &result {
            Ok(()) => {
                self.metrics
                    .attempted(&delivery.channel, Outcome::Delivered);
                tracing::info!(delivery = delivery.id, channel = %delivery.channel, target = %delivery.target, attempt, "delivered");
                Ok(())
            }
            Err(e) => {
                let retry = (!e.permanent && attempt < self.attempts)
                    .then(|| alert::retry_delay(attempt, self.retry_base));
                tracing::warn!(delivery = delivery.id, channel = %delivery.channel, target = %delivery.target, attempt, error = %e, retry_in = ?retry, "delivery failed");
                let outcome = if retry.is_some() {
                    Outcome::Retry
                } else {
                    Outcome::Failed
                };
                self.metrics.attempted(&delivery.channel, outcome);
                Err(Failure {
                    error: e.message.clone(),
                    retry_in: retry,
                })
            }
        };
        let req = Attempt {
            delivery_id: delivery.id,
            result: tried,
        };
        // Not recorded: the claim runs out and the delivery is tried again,
        // which for a delivered one means a second message (at least once).
        if let Err(e) = self.orchestrator.record_attempt(req).await {
            tracing::warn!(delivery = delivery.id, error = %e, "could not record the attempt");
        }
    }

    /// Sends claimed deliveries in the background, at most
    /// [`MAX_SENDING`] at once.
    pub async fn spawn_all(self: &Arc<Self>, claimed: Vec<Claimed>) {
        for c in claimed {
            let Ok(permit) = self.sending.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            // In the event's span, when there is one: a first delivery joins
            // its task's trace.
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                me.deliver(c).await;
                drop(permit);
            }));
        }
    }

    /// Takes due deliveries (retries, and any whose notifier died) until
    /// `stop` is set.
    pub async fn retry_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = (self.retry_base / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match self.orchestrator.claim_deliveries(CLAIM_BATCH, CLAIM).await {
                Ok(claimed) => self.spawn_all(claimed).await,
                Err(e) if e.0.code == ErrorCode::Unavailable => {
                    tracing::debug!(error = %e, "cannot claim deliveries now");
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim deliveries"),
            }
        }
    }
}
