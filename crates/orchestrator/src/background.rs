//! How the orchestrator's background loops (the outbox relay, the lease
//! watchdog, the pruner) are stopped: each runs until its [`Shutdown`] is requested and
//! finishes the work in hand first; its [`Handle`] waits for that.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The signal a background loop stops on: a `watch` that turns `true`, or
/// whose sender is gone (nobody is left to say stop).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new(receiver: watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    /// Whether the loop should stop now.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the loop should stop.
    pub async fn requested(&mut self) {
        // An error means the sender is gone: stop as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A started background loop.
#[derive(Debug)]
pub struct Handle {
    /// Names the loop in the log if it has to be aborted.
    name: &'static str,
    /// The loop, awaited when it stops.
    task: JoinHandle<()>,
}

impl Handle {
    pub(crate) fn spawn(
        name: &'static str,
        run: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self {
            name,
            task: tokio::spawn(run),
        }
    }

    /// Waits for the loop to end once its shutdown was requested. A loop
    /// still busy after `grace` (a broker that stopped answering) is aborted.
    pub async fn stopped(self, grace: Duration) {
        let Self { name, mut task } = self;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(component = name, error = %e, "background loop failed"),
            Err(_) => {
                tracing::warn!(
                    component = name,
                    "background loop did not stop in time; aborting it"
                );
                task.abort();
                // Gone once this returns: nothing of it runs past the stop.
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{oneshot, watch};

    use super::{Handle, Shutdown};

    /// Long enough for any loop here that stops when told.
    const GRACE: Duration = Duration::from_secs(10);

    /// A loop that waits for its shutdown, then says it saw it.
    fn waiting(mut shutdown: Shutdown) -> (Handle, oneshot::Receiver<()>) {
        let (saw, seen) = oneshot::channel();
        let handle = Handle::spawn("test", async move {
            shutdown.requested().await;
            let _ = saw.send(());
        });
        (handle, seen)
    }

    #[tokio::test]
    async fn a_loop_stops_when_told_or_when_nobody_is_left_to_tell_it() {
        type Tell = fn(watch::Sender<bool>) -> Option<watch::Sender<bool>>;
        let ways: [(&str, Tell); 2] = [
            ("told", |stop| {
                stop.send(true).expect("the loop listens");
                Some(stop)
            }),
            ("owner gone", |_stop| None),
        ];
        for (way, tell) in ways {
            let (stop, stopping) = watch::channel(false);
            let shutdown = Shutdown::new(stopping);
            let (handle, mut seen) = waiting(shutdown.clone());
            assert!(!shutdown.is_requested(), "{way}");
            let _kept = tell(stop);
            assert!(shutdown.is_requested(), "{way}");
            handle.stopped(GRACE).await;
            assert_eq!(seen.try_recv(), Ok(()), "{way}");
        }
    }

    #[tokio::test]
    async fn a_loop_that_does_not_stop_is_gone_after_the_grace() {
        let (_stop, stopping) = watch::channel(false);
        let mut shutdown = Shutdown::new(stopping);
        // Dropped with the loop's future: closes the channel.
        let (alive, mut gone) = oneshot::channel::<()>();
        let handle = Handle::spawn("test", async move {
            let _alive = alive;
            shutdown.requested().await;
        });
        handle.stopped(Duration::from_millis(10)).await;
        assert_eq!(gone.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    }
}
