//! The lease watchdog: a task whose runner stopped heartbeating goes back to
//! the queue once, then fails with "runner lost" (each time a `runner_lost`
//! event). Nothing stays `running` after its runner is gone. It also
//! publishes again a task that has waited long in `pending` with no outbox
//! entry, in case its message was lost outside Slipway, and raises
//! `task_stuck` for a task pending longer than `SLIPWAY_PENDING_ALERT`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::app::App;

/// How long a pending task waits before its message is published again.
const REPUBLISH_AFTER: Duration = Duration::from_secs(300);

pub async fn run(app: Arc<App>, stuck_after: Duration) {
    // Check a few times per lease, so a lost runner is noticed soon after
    // its lease ends.
    let every = (app.lease / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Unknown: the orchestrator was away, so nobody could heartbeat.
    let mut last_pass: Option<Instant> = None;
    loop {
        tick.tick().await;
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
        if let Err(e) = app.flag_stuck(stuck_after).await {
            tracing::warn!(error = %e, "stuck task check failed");
        }
    }
}
