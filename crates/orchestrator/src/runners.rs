//! Which runners are online: each announces itself every few seconds
//! whether it is busy or not, so a runner is online while its last word is
//! recent. Kept in memory: after a restart of the orchestrator every runner
//! is counted again at its next announcement.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A runner silent for this long is offline: it announces itself every
/// 5 s, so three announcements were missed.
const SILENT_AFTER: Duration = Duration::from_secs(15);

/// What a runner said of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Tasks it runs at once (`SLIPWAY_RUNNER_CONCURRENCY`).
    pub slots: u32,
    /// Tasks it runs now.
    pub busy: u32,
}

/// The runners heard from lately.
#[derive(Default)]
pub struct Runners {
    seen: Mutex<HashMap<String, (Instant, Presence)>>,
}

/// The runners online now, and their slots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Online {
    /// Runners heard from lately (`slipway_runners_online`).
    pub runners: i64,
    /// Their slots together (`slipway_online_runner_slots{state="total"}`).
    pub slots: i64,
    /// Their busy slots together (`{state="busy"}`).
    pub busy: i64,
}

impl Runners {
    pub fn announce(&self, runner_id: String, presence: Presence, leaving: bool) {
        self.record(runner_id, presence, leaving, Instant::now());
    }

    fn record(&self, runner_id: String, presence: Presence, leaving: bool, at: Instant) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if leaving {
            seen.remove(&runner_id);
        } else {
            seen.insert(runner_id, (at, presence));
        }
    }

    /// Those heard from within [`SILENT_AFTER`] of `now`; forgets the rest.
    pub fn online(&self, now: Instant) -> Online {
        let Ok(mut seen) = self.seen.lock() else {
            return Online::default();
        };
        seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < SILENT_AFTER);
        seen.values().fold(Online::default(), |acc, (_, p)| Online {
            runners: acc.runners + 1,
            slots: acc.slots + i64::from(p.slots),
            busy: acc.busy + i64::from(p.busy),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_is_online_until_it_leaves_or_goes_quiet() {
        let runners = Runners::default();
        let t0 = Instant::now();
        let p = |slots, busy| Presence { slots, busy };
        runners.record("a".into(), p(2, 1), false, t0);
        runners.record("b".into(), p(4, 0), false, t0);
        assert_eq!(
            runners.online(t0),
            Online {
                runners: 2,
                slots: 6,
                busy: 1
            }
        );
        // A later word replaces the earlier one.
        runners.record("a".into(), p(2, 2), false, t0 + Duration::from_secs(10));
        let later = runners.online(t0 + SILENT_AFTER);
        assert_eq!((later.runners, later.busy), (1, 2), "b went quiet");
        runners.record("a".into(), p(2, 0), true, t0 + SILENT_AFTER);
        assert_eq!(runners.online(t0 + SILENT_AFTER).runners, 0);
    }
}
