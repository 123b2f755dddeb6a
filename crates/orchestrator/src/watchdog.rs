//! The lease watchdog: a task whose runner stopped heartbeating goes back to
//! the queue once, then fails with "runner lost" (each time a `runner_lost`
//! event). Nothing stays `running` after its runner is gone. It also
//! publishes again a task that has waited long in `pending` with no outbox
//! entry, in case its message was lost outside Slipway, and raises
//! `task_stuck` for a task pending longer than `SLIPWAY_PENDING_ALERT`.
//!
//! [`Watchdog::start`] runs it until its [`Shutdown`]; a pass in hand is
//! finished first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::app::App;
use crate::background::Shutdown;

/// How long a pending task waits before its message is published again.
const REPUBLISH_AFTER: Duration = Duration::from_secs(300);

/// What the watchdog is started with.
pub struct Options {
    /// How long a task may wait in `pending` before `task_stuck` is raised
    /// (`SLIPWAY_PENDING_ALERT`).
    pub stuck_after: Duration,
}

/// The lease watchdog, ready to run.
pub struct Watchdog {
    /// The tasks it checks, and the lease their runners hold them for.
    app: Arc<App>,
    /// When a pending task counts as stuck.
    options: Options,
}

impl Watchdog {
    pub fn new(app: Arc<App>, options: Options) -> Self {
        Self { app, options }
    }

    /// Checks leases and pending tasks until `shutdown`; a pass in hand
    /// runs to its end.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Self { app, options } = self;
        // Check a few times per lease, so a lost runner is noticed soon after
        // its lease ends.
        let every = (app.lease / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Unknown: the orchestrator was away, so nobody could heartbeat.
        let mut last_pass: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.requested() => return,
                _ = tick.tick() => {}
            }
            let away = last_pass.is_none_or(|at| at.elapsed() > app.lease);
            let pass = if away {
                // Runners could not renew their leases while this orchestrator
                // was not there (start, restart, database outage): give them a
                // full lease before anything counts as lost.
                app.extend_running_leases().await
            } else {
                app.expire_leases().await
            };
            match pass {
                Ok(()) => last_pass = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "lease check failed"),
            }
            let since = Utc::now() - REPUBLISH_AFTER;
            if let Err(e) = app.republish_stale(since).await {
                tracing::warn!(error = %e, "stale task check failed");
            }
            if let Err(e) = app.flag_stuck(options.stuck_after).await {
                tracing::warn!(error = %e, "stuck task check failed");
            }
        }
    }
}
