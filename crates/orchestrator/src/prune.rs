//! The pruner: every `SLIPWAY_PRUNE_INTERVAL` it deletes, workflow by
//! workflow and in batches of `SLIPWAY_PRUNE_BATCH` tasks (one short
//! transaction each), what is past each workflow's retention
//! (`store::prune` says what may go), queues the registry manifests of the
//! pruned images when `SLIPWAY_REGISTRY_DELETE` is set, then measures the
//! stored logs for `slipway_data_bytes`.
//!
//! [`Pruner::run`] runs it until its [`Shutdown`]; a batch in hand is
//! finished first, the rest of the pass is left for the next start.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, PassOptions};
use crate::background::Shutdown;

/// What the pruner is started with.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time between the starts of two passes (`SLIPWAY_PRUNE_INTERVAL`).
    pub every: Duration,
    /// Tasks per transaction (`SLIPWAY_PRUNE_BATCH`).
    pub batch: u32,
    /// Queue manifest deletions (`SLIPWAY_REGISTRY_DELETE`).
    pub delete_images: bool,
}

/// The pruner, ready to run.
pub struct Pruner {
    /// The database it prunes, and the metrics it counts in.
    app: Arc<App>,
    options: Options,
}

impl Pruner {
    pub fn new(app: Arc<App>, options: Options) -> Self {
        Self { app, options }
    }

    /// Prunes at start, then every interval, until `shutdown`.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Self { app, options } = self;
        let mut tick = tokio::time::interval(options.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pass = PassOptions {
            batch: i64::from(options.batch),
            delete_images: options.delete_images,
        };
        loop {
            tokio::select! {
                biased;
                () = shutdown.requested() => return,
                _ = tick.tick() => {}
            }
            let started = std::time::Instant::now();
            let pruned = app.prune_pass(pass, &shutdown).await;
            if pruned.tasks > 0 {
                tracing::info!(
                    tasks = pruned.tasks,
                    log_bytes = pruned.log_bytes,
                    images = pruned.images,
                    took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "pruned what is past retention"
                );
            }
            if shutdown.is_requested() {
                return;
            }
            app.measure_log_bytes().await;
        }
    }
}
