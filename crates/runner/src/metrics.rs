//! The runner's Prometheus metrics, served at `GET /metrics` when
//! `SLIPWAY_METRICS_ADDR` is set (off by default: many runners may share a
//! host): its slots, the tasks it runs, and what its claims came to.

use telemetry::metrics::{self, IntCounterVec, IntGauge, Registry};

/// What a claim of a delivered task came to: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The lease is this runner's: the task runs here.
    Claimed,
    /// Already claimed, finished, cancelled or deleted: the message was moot.
    Moot,
    /// The orchestrator did not answer or failed: the message went back.
    Error,
}

impl Claim {
    const ALL: [Claim; 3] = [Self::Claimed, Self::Moot, Self::Error];

    fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Moot => "moot",
            Self::Error => "error",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    running: IntGauge,
    claims: IntCounterVec,
    /// What the sweep removed: crashed tasks' workspaces, pruned images'
    /// registry manifests.
    swept: IntCounterVec,
}

impl Metrics {
    pub fn new(slots: usize) -> Result<Self, metrics::Error> {
        let registry = Registry::new();
        let total = IntGauge::new(
            "slipway_runner_slots",
            "Tasks this runner runs at once (SLIPWAY_RUNNER_CONCURRENCY).",
        )?;
        registry.register(Box::new(total.clone()))?;
        total.set(i64::try_from(slots).unwrap_or(i64::MAX));
        let running = IntGauge::new(
            "slipway_runner_tasks_running",
            "Tasks this runner is running now.",
        )?;
        registry.register(Box::new(running.clone()))?;
        let claims = metrics::counter(
            &registry,
            "slipway_runner_claims_total",
            "Task messages this runner took, by what the claim came to (claimed, moot, error).",
            &["outcome"],
        )?;
        for outcome in Claim::ALL {
            claims.with_label_values(&[outcome.as_str()]);
        }
        let swept = metrics::counter(
            &registry,
            "slipway_runner_swept_total",
            "What this runner cleaned up: workspaces of tasks that ended without it (a crash), and registry manifests of pruned images (images).",
            &["kind"],
        )?;
        for kind in ["workspaces", "images"] {
            swept.with_label_values(&[kind]);
        }
        Ok(Self {
            registry,
            running,
            claims,
            swept,
        })
    }

    pub fn claim(&self, outcome: Claim) {
        self.claims.with_label_values(&[outcome.as_str()]).inc();
    }

    /// The sweep removed `n` things of `kind` (`workspaces`, `images`).
    pub fn swept(&self, kind: &str, n: u64) {
        self.swept.with_label_values(&[kind]).inc_by(n);
    }

    /// Counts a task as running until the guard is dropped.
    pub fn running(&self) -> Running {
        self.running.inc();
        Running(self.running.clone())
    }

    /// How many tasks run now.
    pub fn running_now(&self) -> usize {
        usize::try_from(self.running.get()).unwrap_or(0)
    }

    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}

/// A task counted as running; dropping it ends that.
pub struct Running(IntGauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}
