//! What a receiver recorded: the log a test reads, and waits on until what
//! it expects has arrived, shared by the HTTP server and the SMTP sink.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// Locks, ignoring poison: a test that panicked while holding the lock must
/// not hide what was recorded from the tests' failure messages.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a server recorded, with a signal so that waiting tests wake when
/// something arrives instead of sleeping.
pub(super) struct Log<T> {
    items: Mutex<Vec<T>>,
    arrived: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    pub(super) fn new() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            arrived: watch::Sender::new(0),
        }
    }

    pub(super) fn push(&self, item: T) {
        let len = {
            let mut items = lock(&self.items);
            items.push(item);
            items.len()
        };
        self.arrived.send_replace(len);
    }

    pub(super) fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Waits until `done` holds for what arrived; `Err` carries what
    /// arrived when `deadline` passed.
    pub(super) async fn wait(
        &self,
        deadline: Duration,
        done: impl Fn(&[T]) -> bool,
    ) -> Result<Vec<T>, Vec<T>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut arrived = self.arrived.subscribe();
        loop {
            // Marked before looking, so an arrival after the look wakes us.
            arrived.mark_unchanged();
            let items = self.snapshot();
            if done(&items) {
                return Ok(items);
            }
            if tokio::time::timeout_at(until, arrived.changed())
                .await
                .is_err()
            {
                let items = self.snapshot();
                return if done(&items) { Ok(items) } else { Err(items) };
            }
        }
    }
}
