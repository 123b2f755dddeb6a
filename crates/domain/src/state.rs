//! The task and step state machines. Every writer of a task's or step's
//! status goes through [`TaskStatus::apply`] / [`StepStatus::apply`], so an
//! illegal move (a finished task starting again, say) is rejected in one
//! place instead of being guarded at each call site.

use std::fmt;
use std::str::FromStr;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// A runner took the lease.
    Claimed,
    /// Every step that had to pass passed.
    Succeeded,
    /// A step, the clone or the set-up failed, or the runner was lost for good.
    Failed,
    /// A user cancelled it (pending or running).
    Cancelled,
    /// Its runner's lease ran out and the task goes back to the queue.
    Requeued,
}

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Pending,
    Running,
    Success,
    Failed,
    Skipped,
    Cancelled,
}

/// What happened to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepEvent {
    Started,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    /// The task was re-queued: the step will run again from scratch.
    Reset,
}

/// A move the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event} while {from}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub event: &'static str,
}

impl TaskStatus {
    /// The status after `event`, or an error when `event` cannot happen now.
    pub fn apply(self, event: TaskEvent) -> Result<TaskStatus, IllegalTransition> {
        use TaskEvent as E;
        use TaskStatus as S;
        match (self, event) {
            (S::Pending, E::Claimed) => Ok(S::Running),
            (S::Pending, E::Cancelled) => Ok(S::Cancelled),
            // A task that cannot even start (its workflow vanished, a secret
            // cannot be decrypted) fails without running.
            (S::Pending, E::Failed) => Ok(S::Failed),
            (S::Running, E::Succeeded) => Ok(S::Success),
            (S::Running, E::Failed) => Ok(S::Failed),
            (S::Running, E::Cancelled) => Ok(S::Cancelled),
            (S::Running, E::Requeued) => Ok(S::Pending),
            (from, event) => Err(IllegalTransition {
                from: from.as_str(),
                event: event.as_str(),
            }),
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl TaskEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Requeued => "requeued",
        }
    }
}

impl StepStatus {
    /// The status after `event`, or an error when `event` cannot happen now.
    pub fn apply(self, event: StepEvent) -> Result<StepStatus, IllegalTransition> {
        use StepEvent as E;
        use StepStatus as S;
        match (self, event) {
            (S::Pending, E::Started) => Ok(S::Running),
            (S::Pending, E::Skipped) => Ok(S::Skipped),
            (S::Pending, E::Cancelled) => Ok(S::Cancelled),
            (S::Running, E::Succeeded) => Ok(S::Success),
            (S::Running, E::Failed) => Ok(S::Failed),
            (S::Running, E::Cancelled) => Ok(S::Cancelled),
            // A re-queued task runs every step again, whatever they reached.
            (_, E::Reset) => Ok(S::Pending),
            (from, event) => Err(IllegalTransition {
                from: from.as_str(),
                event: event.as_str(),
            }),
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }
}

impl StepEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Reset => "reset",
        }
    }
}

/// Where a deployment is in its life (api.md's deployment states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentStatus {
    Pending,
    AwaitingApproval,
    Deploying,
    Verifying,
    Succeeded,
    Failed,
    RolledBack,
    TimedOut,
    Skipped,
}

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentEvent {
    /// A manual environment waits for a person.
    HoldForApproval,
    /// A person approved it.
    Approve,
    /// The environment is free: the new version is being started.
    Start,
    /// It started: its health is being probed.
    Verify,
    /// Healthy after the watch period.
    Succeed,
    /// It would not start, or lost its health; no rollback (yet).
    Fail,
    /// It failed and the previous version was restored.
    RollBack,
    /// It ran past its deploy timeout.
    TimeOut,
    /// Outdated: a newer version is already on the environment.
    Skip,
}

impl DeploymentStatus {
    pub fn apply(self, event: DeploymentEvent) -> Result<DeploymentStatus, IllegalTransition> {
        use DeploymentEvent as E;
        use DeploymentStatus as S;
        match (self, event) {
            (S::Pending, E::HoldForApproval) => Ok(S::AwaitingApproval),
            (S::AwaitingApproval, E::Approve) => Ok(S::Pending),
            (S::Pending, E::Start) => Ok(S::Deploying),
            (S::Pending | S::AwaitingApproval, E::Skip) => Ok(S::Skipped),
            (S::Deploying, E::Verify) => Ok(S::Verifying),
            (S::Verifying, E::Succeed) => Ok(S::Succeeded),
            (S::Deploying | S::Verifying, E::Fail) => Ok(S::Failed),
            // A rollback follows the failure it undoes.
            (S::Failed, E::RollBack) => Ok(S::RolledBack),
            (S::Deploying | S::Verifying, E::TimeOut) => Ok(S::TimedOut),
            (from, event) => Err(IllegalTransition {
                from: from.as_str(),
                event: event.as_str(),
            }),
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::RolledBack | Self::TimedOut | Self::Skipped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Deploying => "deploying",
            Self::Verifying => "verifying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::TimedOut => "timed_out",
            Self::Skipped => "skipped",
        }
    }
}

impl DeploymentEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HoldForApproval => "hold_for_approval",
            Self::Approve => "approve",
            Self::Start => "start",
            Self::Verify => "verify",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
            Self::RollBack => "roll_back",
            Self::TimeOut => "time_out",
            Self::Skip => "skip",
        }
    }
}

impl FromStr for DeploymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "awaiting_approval" => Self::AwaitingApproval,
            "deploying" => Self::Deploying,
            "verifying" => Self::Verifying,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "rolled_back" => Self::RolledBack,
            "timed_out" => Self::TimedOut,
            "skipped" => Self::Skipped,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for TaskStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "success" => Self::Success,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

impl FromStr for StepStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "success" => Self::Success,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "cancelled" => Self::Cancelled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK_STATES: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Success,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];
    const TASK_EVENTS: [TaskEvent; 5] = [
        TaskEvent::Claimed,
        TaskEvent::Succeeded,
        TaskEvent::Failed,
        TaskEvent::Cancelled,
        TaskEvent::Requeued,
    ];

    #[test]
    fn task_transitions_follow_the_table() {
        use TaskEvent as E;
        use TaskStatus as S;
        // Every legal move; everything else must be rejected.
        let legal = [
            (S::Pending, E::Claimed, S::Running),
            (S::Pending, E::Cancelled, S::Cancelled),
            (S::Pending, E::Failed, S::Failed),
            (S::Running, E::Succeeded, S::Success),
            (S::Running, E::Failed, S::Failed),
            (S::Running, E::Cancelled, S::Cancelled),
            (S::Running, E::Requeued, S::Pending),
        ];
        for from in TASK_STATES {
            for event in TASK_EVENTS {
                let expected = legal
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (from.apply(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event:?}"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn finished_tasks_never_move() {
        for from in [
            TaskStatus::Success,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            assert!(from.is_finished());
            for event in TASK_EVENTS {
                assert!(from.apply(event).is_err(), "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn step_transitions_follow_the_table() {
        use StepEvent as E;
        use StepStatus as S;
        let states = [
            S::Pending,
            S::Running,
            S::Success,
            S::Failed,
            S::Skipped,
            S::Cancelled,
        ];
        let events = [
            E::Started,
            E::Succeeded,
            E::Failed,
            E::Skipped,
            E::Cancelled,
            E::Reset,
        ];
        let legal = [
            (S::Pending, E::Started, S::Running),
            (S::Pending, E::Skipped, S::Skipped),
            (S::Pending, E::Cancelled, S::Cancelled),
            (S::Running, E::Succeeded, S::Success),
            (S::Running, E::Failed, S::Failed),
            (S::Running, E::Cancelled, S::Cancelled),
        ];
        for from in states {
            for event in events {
                let expected = if event == E::Reset {
                    Some(S::Pending)
                } else {
                    legal
                        .iter()
                        .find(|(f, e, _)| *f == from && *e == event)
                        .map(|(_, _, to)| *to)
                };
                match (from.apply(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event:?}"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn deployment_transitions_follow_the_table() {
        use DeploymentEvent as E;
        use DeploymentStatus as S;
        let states = [
            S::Pending,
            S::AwaitingApproval,
            S::Deploying,
            S::Verifying,
            S::Succeeded,
            S::Failed,
            S::RolledBack,
            S::TimedOut,
            S::Skipped,
        ];
        let events = [
            E::HoldForApproval,
            E::Approve,
            E::Start,
            E::Verify,
            E::Succeed,
            E::Fail,
            E::RollBack,
            E::TimeOut,
            E::Skip,
        ];
        let legal = [
            (S::Pending, E::HoldForApproval, S::AwaitingApproval),
            (S::AwaitingApproval, E::Approve, S::Pending),
            (S::Pending, E::Start, S::Deploying),
            (S::Pending, E::Skip, S::Skipped),
            (S::AwaitingApproval, E::Skip, S::Skipped),
            (S::Deploying, E::Verify, S::Verifying),
            (S::Verifying, E::Succeed, S::Succeeded),
            (S::Deploying, E::Fail, S::Failed),
            (S::Verifying, E::Fail, S::Failed),
            (S::Failed, E::RollBack, S::RolledBack),
            (S::Deploying, E::TimeOut, S::TimedOut),
            (S::Verifying, E::TimeOut, S::TimedOut),
        ];
        for from in states {
            assert_eq!(from.as_str().parse::<S>(), Ok(from));
            for event in events {
                let expected = legal
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (from.apply(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event:?}"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert!(S::RolledBack.is_finished() && !S::Verifying.is_finished());
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in TASK_STATES {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!("done".parse::<TaskStatus>().is_err());
        assert_eq!("skipped".parse::<StepStatus>(), Ok(StepStatus::Skipped));
    }

    #[test]
    fn rejection_names_the_move() {
        let err = TaskStatus::Success.apply(TaskEvent::Claimed).unwrap_err();
        assert_eq!(err.to_string(), "illegal transition: claimed while success");
    }
}
