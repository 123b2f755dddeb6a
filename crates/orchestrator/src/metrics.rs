//! The orchestrator's Prometheus metrics. Transitions are counted in
//! [`App`](crate::app::App) right after the transaction that made them
//! committed, from the rows it returned, so each moves a metric once; the
//! gauges (unfinished tasks, busy runners, queue depths) are read from the
//! database and the broker at scrape time.

use chrono::{DateTime, Utc};
use domain::plan::StepKind;
use domain::state::{DeploymentStatus, StepStatus, TaskStatus};
use store::deployments::{DeploymentRow, RollbackRow};
use store::tasks::{StepRow, TaskRow};
use telemetry::metrics::{
    self, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

/// Task statuses a task ends in.
const FINISHED: [TaskStatus; 3] = [
    TaskStatus::Success,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];

/// Deployment statuses a deploy ends in (a `rolled_back` one ended
/// `failed` first, and is counted among rollbacks).
const DEPLOY_OUTCOMES: [DeploymentStatus; 4] = [
    DeploymentStatus::Succeeded,
    DeploymentStatus::Failed,
    DeploymentStatus::TimedOut,
    DeploymentStatus::Skipped,
];

pub struct Metrics {
    /// Every series of the orchestrator, rendered for `GET /metrics`.
    pub(crate) registry: Registry,
    tasks: IntGaugeVec,
    finished: IntCounterVec,
    requeued: IntCounter,
    task_seconds: HistogramVec,
    step_seconds: HistogramVec,
    queue_wait: Histogram,
    deploys: IntCounterVec,
    rollbacks: IntCounterVec,
    /// Without labels, but a vector so that it can be unset.
    runners_busy: IntGaugeVec,
    ready: IntGaugeVec,
    consumers: IntGaugeVec,
    runners_online: IntGauge,
    runner_slots: IntGaugeVec,
    /// Rows the pruner deleted, and manifests runners deleted, by kind.
    pruned: IntCounterVec,
    /// What Slipway stores, by kind; `logs` is measured by the pruner.
    data_bytes: IntGaugeVec,
}

/// The kinds of `slipway_pruned_total`: the rows of
/// [`store::prune::Pruned::by_kind`], and registry manifests.
const PRUNED_KINDS: [&str; 10] = [
    "tasks",
    "steps",
    "log_chunks",
    "events",
    "alerts",
    "deliveries",
    "commit_statuses",
    "deployments",
    "rollbacks",
    "images",
];

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

impl Metrics {
    pub fn new() -> Result<Self, metrics::Error> {
        let registry = Registry::new();
        let r = &registry;
        let tasks = metrics::gauge(
            r,
            "slipway_tasks",
            "Unfinished tasks by status (pending, running), read from the database at scrape time.",
            &["status"],
        )?;
        let finished = metrics::counter(
            r,
            "slipway_tasks_finished_total",
            "Tasks that ended, by final status.",
            &["status"],
        )?;
        let requeued = IntCounter::new(
            "slipway_tasks_requeued_total",
            "Running tasks put back in the queue because their runner stopped heartbeating.",
        )?;
        r.register(Box::new(requeued.clone()))?;
        let task_seconds = metrics::histogram(
            r,
            "slipway_task_duration_seconds",
            "How long tasks ran, from their claim to their end, by final status.",
            &["status"],
            metrics::RUN_BUCKETS,
        )?;
        let step_seconds = metrics::histogram(
            r,
            "slipway_step_duration_seconds",
            "How long steps ran, from start to the end their runner reported, by kind (clone, run, image, deploy) and final status.",
            &["kind", "status"],
            metrics::RUN_BUCKETS,
        )?;
        let queue_wait = metrics::plain_histogram(
            r,
            "slipway_queue_wait_seconds",
            "How long tasks waited between being queued (created or re-queued) and claimed by a runner.",
            metrics::WAIT_BUCKETS,
        )?;
        let deploys = metrics::counter(
            r,
            "slipway_deploys_total",
            "Deployments that ended, by outcome (succeeded, failed, timed_out, skipped).",
            &["outcome"],
        )?;
        let rollbacks = metrics::counter(
            r,
            "slipway_rollbacks_total",
            "Rollbacks that ended, by reason (deploy_failed, health_check_failed, manual) and outcome (succeeded, failed).",
            &["reason", "outcome"],
        )?;
        let runners_busy = metrics::gauge(
            r,
            "slipway_runners_busy",
            "Distinct runners holding a live task lease, read from the database at scrape time.",
            &[],
        )?;
        let ready = metrics::gauge(
            r,
            "slipway_queue_messages_ready",
            "Messages ready for delivery in the task queues (one per label set) and the notify queue; absent while the broker is unreachable.",
            &["queue"],
        )?;
        let consumers = metrics::gauge(
            r,
            "slipway_queue_consumers",
            "Consumers of the task queues (runners with a free slot) and of the notify queue (notifiers); absent while the broker is unreachable.",
            &["queue"],
        )?;
        let runners_online = IntGauge::new(
            "slipway_runners_online",
            "Runners that announced themselves in the last 15 s, busy or idle.",
        )?;
        r.register(Box::new(runners_online.clone()))?;
        let runner_slots = metrics::gauge(
            r,
            "slipway_online_runner_slots",
            "Task slots of the runners online, all of them (state=total) and those running a task (state=busy).",
            &["state"],
        )?;
        let pruned = metrics::counter(
            r,
            "slipway_pruned_total",
            "What retention removed, by kind: rows (tasks, steps, log_chunks, events, alerts, deliveries, commit_statuses, deployments, rollbacks) and registry manifests a runner deleted (images).",
            &["kind"],
        )?;
        let data_bytes = metrics::gauge(
            r,
            "slipway_data_bytes",
            "Bytes Slipway stores, by kind: logs (the task log chunks in Postgres), measured by the pruner after each pass.",
            &["kind"],
        )?;
        for kind in PRUNED_KINDS {
            pruned.with_label_values(&[kind]);
        }
        // Every bounded series from the start, so rate() sees the first event.
        for status in FINISHED {
            finished.with_label_values(&[status.as_str()]);
            task_seconds.with_label_values(&[status.as_str()]);
            for kind in StepKind::ALL {
                step_seconds.with_label_values(&[kind.as_str(), status.as_str()]);
            }
        }
        for outcome in DEPLOY_OUTCOMES {
            deploys.with_label_values(&[outcome.as_str()]);
        }
        for reason in ["deploy_failed", "health_check_failed", "manual"] {
            for outcome in ["succeeded", "failed"] {
                rollbacks.with_label_values(&[reason, outcome]);
            }
        }
        Ok(Self {
            registry,
            tasks,
            finished,
            requeued,
            task_seconds,
            step_seconds,
            queue_wait,
            deploys,
            rollbacks,
            runners_busy,
            ready,
            consumers,
            runners_online,
            runner_slots,
            pruned,
            data_bytes,
        })
    }

    /// A task was claimed: how long it waited in the queue.
    pub fn claimed(&self, task: &TaskRow) {
        if let Some(started) = task.started_at {
            self.queue_wait.observe(seconds(task.queued_at, started));
        }
    }

    /// A task ended; its duration counts when it had started.
    pub fn task_ended(&self, task: &TaskRow) {
        let status = task.status.as_str();
        self.finished.with_label_values(&[status]).inc();
        if let (Some(started), Some(finished)) = (task.started_at, task.finished_at) {
            self.task_seconds
                .with_label_values(&[status])
                .observe(seconds(started, finished));
        }
    }

    /// A task that never ran ended (cancelled while pending, or it could
    /// not start).
    pub fn task_ended_unstarted(&self, status: TaskStatus) {
        self.finished.with_label_values(&[status.as_str()]).inc();
    }

    pub fn task_requeued(&self) {
        self.requeued.inc();
    }

    /// A runner reported a step's change; a step that ran and ended counts.
    pub fn step_changed(&self, step: &StepRow) {
        let Ok(status) = step.status() else { return };
        if !status.is_finished() || status == StepStatus::Skipped {
            return;
        }
        if let (Some(started), Some(finished)) = (step.started_at, step.finished_at) {
            self.step_seconds
                // The `kind` label, not the name: names are free only for the
                // workflow's own steps, and the label must stay bounded.
                .with_label_values(&[StepKind::of(&step.name).as_str(), status.as_str()])
                .observe(seconds(started, finished));
        }
    }

    /// A deployment changed; one that ended counts by its outcome, and a
    /// deployment that carried out a manual rollback ends that rollback.
    pub fn deployment_changed(&self, d: &DeploymentRow) {
        let Ok(status) = d.status() else { return };
        if !DEPLOY_OUTCOMES.contains(&status) {
            return;
        }
        self.deploys.with_label_values(&[status.as_str()]).inc();
        // A rollback deployment is made with its running rollback record,
        // which its end closes in the same transaction.
        if d.trigger == "rollback" && status != DeploymentStatus::Skipped {
            let outcome = if status == DeploymentStatus::Succeeded {
                "succeeded"
            } else {
                "failed"
            };
            self.rollbacks.with_label_values(&["manual", outcome]).inc();
        }
    }

    /// A runner recorded the rollback of a failed deploy.
    pub fn rollback_recorded(&self, r: &RollbackRow) {
        self.rollbacks
            .with_label_values(&[r.reason.as_str(), r.status.as_str()])
            .inc();
    }

    /// A pruner batch committed.
    pub fn pruned(&self, pruned: &store::prune::Pruned) {
        for (kind, n) in pruned.by_kind() {
            if let Ok(n) = u64::try_from(n)
                && n > 0
            {
                self.pruned.with_label_values(&[kind]).inc_by(n);
            }
        }
    }

    /// A runner deleted a registry manifest of a pruned image.
    pub fn image_deleted(&self) {
        self.pruned.with_label_values(&["images"]).inc();
    }

    /// The bytes of the task logs stored, as last measured.
    pub fn set_log_bytes(&self, bytes: i64) {
        self.data_bytes.with_label_values(&["logs"]).set(bytes);
    }

    /// Sets the runner gauges from the announcements heard.
    pub fn set_runners(&self, online: crate::runners::Online) {
        self.runners_online.set(online.runners);
        self.runner_slots
            .with_label_values(&["total"])
            .set(online.slots);
        self.runner_slots
            .with_label_values(&["busy"])
            .set(online.busy);
    }

    /// Sets the gauges read at scrape time; `None` for what could not be
    /// read, whose series then disappear rather than show a stale value.
    pub fn set_gauges(
        &self,
        unfinished: Option<Vec<(String, i64)>>,
        busy: Option<i64>,
        depths: Option<Vec<(String, queue::Depth)>>,
    ) {
        self.tasks.reset();
        if let Some(counts) = unfinished {
            for status in [TaskStatus::Pending, TaskStatus::Running] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                self.tasks.with_label_values(&[status.as_str()]).set(n);
            }
        }
        self.runners_busy.reset();
        if let Some(busy) = busy {
            self.runners_busy.with_label_values::<&str>(&[]).set(busy);
        }
        self.ready.reset();
        self.consumers.reset();
        for (queue, depth) in depths.unwrap_or_default() {
            self.ready
                .with_label_values(&[queue.as_str()])
                .set(i64::from(depth.ready));
            self.consumers
                .with_label_values(&[queue.as_str()])
                .set(i64::from(depth.consumers));
        }
    }
}
