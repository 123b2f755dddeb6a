//! The lease watchdog: a task whose runner stopped heartbeating goes back to
//! the queue once, then fails with "runner lost". Nothing stays `running`
//! after its runner is gone.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;

pub async fn run(app: Arc<App>) {
    // Check a few times per lease, so a lost runner is noticed soon after
    // its lease ends.
    let every = (app.lease / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.expire_leases().await {
            tracing::warn!(error = %e, "lease check failed");
        }
    }
}
