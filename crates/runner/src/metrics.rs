//! The runner's Prometheus metrics, served at `GET /metrics` when
//! `SLIPWAY_METRICS_ADDR` is set (off by default: many runners may share a
//! host): its slots, the tasks it runs, what its claims came to, how its
//! caches fare, and how much of the data directory each kind of data takes.

use telemetry::metrics::{self, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::cache::Match;

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

/// What the data directory holds, by its subdirectory: the `kind` label.
pub const DATA_KINDS: [&str; 3] = ["workspaces", "caches", "mirrors"];

pub struct Metrics {
    registry: Registry,
    running: IntGauge,
    claims: IntCounterVec,
    data_bytes: IntGaugeVec,
    caches: CacheCounters,
    /// What the sweep removed: crashed tasks' workspaces, pruned images'
    /// registry manifests.
    swept: IntCounterVec,
}

/// What the tasks' caches came to, counted where it happens.
#[derive(Clone)]
pub struct CacheCounters {
    /// Restores, by how the cache was found (`exact`, `branch`,
    /// `default_branch`).
    hits: IntCounterVec,
    /// Cache entries of tasks for which nothing was restored.
    pub misses: IntCounter,
    /// Caches saved.
    pub saves: IntCounter,
    /// Corrupt archives discarded.
    pub discarded: IntCounter,
    /// Caches evicted to stay within `SLIPWAY_CACHE_MAX_BYTES`.
    pub evictions: IntCounter,
}

impl CacheCounters {
    pub fn hit(&self, matched: &Match) {
        let label = match matched {
            Match::Exact => "exact",
            Match::Branch(_) => "branch",
            Match::DefaultBranch(_) => "default_branch",
        };
        self.hits.with_label_values(&[label]).inc();
    }
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
        let data_bytes = metrics::gauge(
            &registry,
            "slipway_runner_data_bytes",
            "Bytes the runner's data directory holds, by kind (workspaces, caches, mirrors); measured every minute and after each task.",
            &["kind"],
        )?;
        for kind in DATA_KINDS {
            data_bytes.with_label_values(&[kind]);
        }
        let hits = metrics::counter(
            &registry,
            "slipway_runner_cache_hits_total",
            "Caches restored, by how they were found (exact key, the task's branch, the default branch).",
            &["match"],
        )?;
        for label in ["exact", "branch", "default_branch"] {
            hits.with_label_values(&[label]);
        }
        let plain = |name: &str, help: &str| {
            metrics::counter(&registry, name, help, &[])
                .map(|c| c.with_label_values(&[] as &[&str]))
        };
        let caches = CacheCounters {
            hits,
            misses: plain(
                "slipway_runner_cache_misses_total",
                "Cache entries of tasks for which no cache was restored.",
            )?,
            saves: plain("slipway_runner_cache_saves_total", "Caches saved.")?,
            discarded: plain(
                "slipway_runner_cache_discarded_total",
                "Corrupt cache archives discarded.",
            )?,
            evictions: plain(
                "slipway_runner_cache_evictions_total",
                "Caches evicted, least recently used first, to stay within SLIPWAY_CACHE_MAX_BYTES.",
            )?,
        };
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
            data_bytes,
            caches,
            swept,
        })
    }

    /// The cache counters, for the tasks to count with.
    pub fn caches(&self) -> CacheCounters {
        self.caches.clone()
    }

    /// Records how many bytes the data directory's `kind` holds.
    pub fn data_bytes(&self, kind: &str, bytes: u64) {
        self.data_bytes
            .with_label_values(&[kind])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
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
