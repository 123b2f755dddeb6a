//! Commit statuses (forges.md): an event of a task that reports to a forge
//! maps to at most one status (`domain::forge::status_for`); the
//! orchestrator records it once per event and context and hands out, per
//! commit and context, only the oldest one not yet done, with the forge's
//! credentials. This notifier sends what it is handed and records each
//! attempt; a failure worth retrying is handed out again after its backoff,
//! until the retry window has passed. Statuses are never throttled and do
//! not depend on notify rules.

use std::sync::Arc;
use std::time::Duration;

use domain::forge::{EventFacts, Status, status_for};
use tokio::sync::{Notify, Semaphore, watch};

use crate::deliver::HandleError;
use crate::forges::{Forges, Verdict};
use crate::metrics::{Metrics, Outcome};
use crate::model::{ClaimedStatus, Failure, Incoming, OpenStatuses, StatusAttempt};
use crate::orchestrator::Orchestrator;

/// How long a notifier holds a status it is sending: past it, another may
/// take it (this one died).
const CLAIM: Duration = Duration::from_secs(60);
/// Statuses taken per claim, at most.
const CLAIM_BATCH: usize = 32;
/// Statuses sent at once.
const MAX_SENDING: usize = 32;
/// The longest wait between two attempts (forges.md: backoff capped at a
/// minute).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How often to ask an orchestrator that does not serve commit statuses
/// (an older one) whether it does now.
const UNSUPPORTED_POLL: Duration = Duration::from_secs(60);

/// The status `incoming` sets, if its task reports to a forge and the
/// event maps to one.
pub fn status_of(incoming: &Incoming) -> Option<Status> {
    if !incoming.forge_statuses {
        return None;
    }
    let e = &incoming.event;
    status_for(&EventFacts {
        kind: e.kind,
        workflow: &e.workflow,
        environment: e.environment.as_deref(),
        trigger: incoming.trigger.as_deref(),
        reason: e.reason.as_deref(),
        outcome: e.outcome.as_deref(),
    })
}

/// When failed attempts are tried again (forges.md): the first retry
/// `base` after the failure, doubling up to a minute, for as long as the
/// backoff schedule has not yet spent `retry_for`; a wait the forge asked
/// for is honoured when longer.
///
/// The delay is computed from the count of attempts the orchestrator
/// stored rather than by an in-process backoff iterator: attempts of one
/// status may be made by different notifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `SLIPWAY_STATUS_RETRY_BASE`: the wait after the first failure.
    pub base: Duration,
    /// `SLIPWAY_STATUS_RETRY_FOR`: how long failures are retried at least.
    pub retry_for: Duration,
}

impl RetryPolicy {
    /// The scheduled wait after the `failed`-th failed attempt (1-based).
    fn backoff(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(20);
        self.base
            .saturating_mul(1 << doublings)
            .min(MAX_RETRY_DELAY.max(self.base))
    }

    /// The wait before trying again after `failed` failed attempts (this
    /// one included), or `None` once the retries have run for `retry_for`.
    pub fn retry_in(&self, failed: u32, asked: Option<Duration>) -> Option<Duration> {
        let mut waited = Duration::ZERO;
        // Bounded: each wait is at least `base`, which the settings keep
        // above zero; the bound is for a zero one all the same.
        for k in 1..failed.min(1 << 20) {
            if waited >= self.retry_for {
                break;
            }
            waited = waited.saturating_add(self.backoff(k));
        }
        if waited >= self.retry_for {
            return None;
        }
        let backoff = self.backoff(failed.max(1));
        Some(asked.map_or(backoff, |asked| asked.max(backoff)))
    }
}

/// What sending commit statuses needs, shared by the consumer and the
/// claim loop.
pub struct Statuses {
    /// Records statuses and attempts, and hands out what is due.
    orchestrator: Orchestrator,
    /// The client that talks to the forges.
    forges: Forges,
    /// The base of the task links (`target_url`).
    public_url: String,
    /// When failed attempts are tried again.
    policy: RetryPolicy,
    /// Bounds the statuses sent at once to [`MAX_SENDING`].
    sending: Arc<Semaphore>,
    /// Counts attempts by forge and outcome.
    metrics: Metrics,
    /// Wakes the claim loop: a status was delivered (the next state of its
    /// commit and context is due now), or a retry fell due.
    wake: Notify,
}

impl Statuses {
    pub fn new(
        orchestrator: Orchestrator,
        forges: Forges,
        public_url: String,
        policy: RetryPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            orchestrator,
            forges,
            public_url,
            policy,
            sending: Arc::new(Semaphore::new(MAX_SENDING)),
            metrics,
            wake: Notify::new(),
        }
    }

    /// Records the status an event sets; returns those this notifier
    /// should now send.
    pub async fn open(
        &self,
        event_id: &str,
        status: Status,
    ) -> Result<Vec<ClaimedStatus>, HandleError> {
        let opened = self
            .orchestrator
            .open_statuses(OpenStatuses {
                event_id: event_id.to_owned(),
                statuses: vec![status],
                claim: CLAIM,
            })
            .await?;
        opened.ok_or_else(|| {
            HandleError::Rejected("the orchestrator does not serve commit statuses".to_owned())
        })
    }

    /// Attempts one claimed status and records how it went.
    #[tracing::instrument(
        name = "commit status",
        skip_all,
        fields(
            otel.kind = "client",
            status = claimed.id,
            forge = claimed.forge.as_str(),
        )
    )]
    pub async fn send(self: &Arc<Self>, claimed: ClaimedStatus) {
        let sent = self.forges.send(&claimed, &self.public_url).await;
        let attempt = claimed.attempts.saturating_add(1);
        let (outcome, result) = match (sent.verdict, sent.error) {
            (Verdict::Delivered, _) => {
                tracing::info!(status = claimed.id, repo = %claimed.repo, sha = %claimed.sha, context = %claimed.context, state = %claimed.state, attempt, "commit status set");
                (Outcome::Delivered, Ok(()))
            }
            (verdict, error) => {
                let error = error.unwrap_or_else(|| "failed".to_owned());
                let retry_in = match verdict {
                    Verdict::Retry { asked } => self.policy.retry_in(attempt, asked),
                    Verdict::Delivered | Verdict::Failed => None,
                };
                tracing::warn!(status = claimed.id, repo = %claimed.repo, context = %claimed.context, attempt, error = %error, retry_in = ?retry_in, "commit status failed");
                let outcome = if retry_in.is_some() {
                    Outcome::Retry
                } else {
                    Outcome::Failed
                };
                (outcome, Err(Failure { error, retry_in }))
            }
        };
        self.metrics.status_attempted(&claimed.forge, outcome);
        let retry_in = result.as_ref().err().and_then(|f| f.retry_in);
        let recorded = self
            .orchestrator
            .record_status_attempt(StatusAttempt {
                id: claimed.id,
                result,
            })
            .await;
        // Not recorded: the claim runs out and the status is sent again,
        // which the forge takes as the same state once more.
        if let Err(e) = recorded {
            tracing::warn!(status = claimed.id, error = %e, "could not record the commit status attempt");
            return;
        }
        match (outcome, retry_in) {
            (Outcome::Delivered, _) => self.wake.notify_one(),
            (_, Some(delay)) => {
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    me.wake.notify_one();
                });
            }
            _ => {}
        }
    }

    /// Sends claimed statuses in the background, at most [`MAX_SENDING`]
    /// at once.
    pub async fn spawn_all(self: &Arc<Self>, claimed: Vec<ClaimedStatus>) {
        for c in claimed {
            let Ok(permit) = self.sending.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                me.send(c).await;
                drop(permit);
            }));
        }
    }

    /// Takes due statuses (retries, the next state of a commit and context,
    /// those whose notifier died) at start, after each delivery, when a
    /// retry falls due and every `poll`, until `stop` is set.
    pub async fn claim_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = (self.policy.base / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut supported = true;
        loop {
            let room = self.sending.available_permits().min(CLAIM_BATCH);
            if room > 0 {
                let limit = i32::try_from(room).unwrap_or(i32::MAX);
                match self.orchestrator.claim_statuses(limit, CLAIM).await {
                    Ok(Some(claimed)) => {
                        supported = true;
                        self.spawn_all(claimed).await;
                    }
                    Ok(None) => {
                        if supported {
                            tracing::info!(
                                "the orchestrator does not serve commit statuses; asking again every minute"
                            );
                        }
                        supported = false;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::debug!(error = %e, "cannot claim commit statuses now");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim commit statuses"),
                }
            }
            let wait = if supported { poll } else { UNSUPPORTED_POLL };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified(), if supported => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::alert::Event;
    use domain::forge::State;
    use domain::workflow::AlertEvent;

    use super::*;

    fn incoming(kind: AlertEvent, forge_statuses: bool) -> Incoming {
        Incoming {
            event: Event {
                id: "e".into(),
                kind,
                at: String::new(),
                workflow_id: 1,
                workflow: "hello".into(),
                workflow_version: 1,
                task_id: Some(3),
                deployment_id: None,
                environment: Some("prod".into()),
                branch: Some("main".into()),
                tag: None,
                commit: None,
                message: None,
                summary: String::new(),
                error: None,
                reason: Some("test".into()),
                outcome: None,
                recovery: false,
            },
            forge_statuses,
            trigger: Some("push".into()),
        }
    }

    #[test]
    fn events_map_to_statuses_only_for_tasks_that_report() {
        let failed = status_of(&incoming(AlertEvent::BuildFailed, true)).expect("a status");
        assert_eq!(
            failed,
            Status {
                context: "slipway/hello".into(),
                state: State::Failure,
                description: "failed at step test".into(),
            }
        );
        let deploy = status_of(&incoming(AlertEvent::DeployStarted, true)).expect("a status");
        assert_eq!(deploy.context, "slipway/hello/deploy/prod");
        assert_eq!(status_of(&incoming(AlertEvent::BuildFailed, false)), None);
        assert_eq!(status_of(&incoming(AlertEvent::TaskStuck, true)), None);
        let approval_of_a_deploy = Incoming {
            trigger: Some("deploy".into()),
            ..incoming(AlertEvent::TaskCreated, true)
        };
        assert_eq!(status_of(&approval_of_a_deploy), None);
    }

    #[test]
    fn task_created_goes_to_no_channel_by_default() {
        let settings = crate::Settings {
            api_token: "t".into(),
            default_notify: r#"{"webhook": {"url": "https://hooks.example/x"}}"#.into(),
            ..crate::Settings::default()
        };
        let default = settings.check().expect("valid").default_rule;
        let routes = domain::alert::route(AlertEvent::TaskCreated, &[], default.as_ref());
        assert!(routes.is_empty());
        assert!(!domain::alert::route(AlertEvent::BuildFailed, &[], default.as_ref()).is_empty());
    }

    #[test]
    fn retries_back_off_to_a_minute_for_ten_minutes() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            retry_for: Duration::from_secs(600),
        };
        let s = |secs: u64| Some(Duration::from_secs(secs));
        let cases: Vec<(u32, Option<Duration>, Option<Duration>)> = vec![
            // The first retry within 2 s.
            (1, None, s(1)),
            (2, None, s(2)),
            (3, None, s(4)),
            (6, None, s(32)),
            (7, None, s(60)),
            (12, None, s(60)),
            // A longer wait asked for is honoured; a shorter one is not
            // a reason to hurry.
            (1, s(30), s(30)),
            (7, s(5), s(60)),
            // 1+2+4+8+16+32 = 63 s, then a minute each: the 16th failure
            // comes after 63 + 9 * 60 = 603 s of scheduled waits.
            (15, None, s(60)),
            (16, None, None),
            (16, s(1), None),
            (u32::MAX, None, None),
        ];
        for (failed, asked, want) in cases {
            assert_eq!(policy.retry_in(failed, asked), want, "{failed} {asked:?}");
        }
    }

    #[test]
    fn short_policies_for_tests() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            retry_for: Duration::from_millis(500),
        };
        let ms = |ms: u64| Some(Duration::from_millis(ms));
        // Waits 100, 200, 400: 300 ms spent before the third failure,
        // 700 ms before the fourth.
        assert_eq!(policy.retry_in(1, None), ms(100));
        assert_eq!(policy.retry_in(3, None), ms(400));
        assert_eq!(policy.retry_in(4, None), None);
        // A base past the cap is not cut below itself.
        let slow = RetryPolicy {
            base: Duration::from_secs(120),
            retry_for: Duration::from_secs(600),
        };
        assert_eq!(slow.retry_in(3, None), Some(Duration::from_secs(120)));
    }
}
