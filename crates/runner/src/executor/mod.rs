//! Runs one claimed task: heartbeats the lease, walks the task's plan step
//! by step ([`walk`]), and reports the end. Stops a running step at once on
//! cancel; abandons the task silently when the lease is lost or the runner
//! shuts down (the orchestrator re-queues it).

mod env;
mod image;
mod walk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument as _;

use crate::client::{Claim, Lease, RunnerClient};
use crate::context::Context;
use crate::process::Stop;
use crate::ship::LogSink;

/// How a task ended, as far as the runner reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    Success,
    Failed(String),
    Cancelled,
    /// The lease is gone or the runner stops: say nothing.
    Abandoned,
}

pub async fn execute(
    ctx: Arc<Context>,
    claim: Claim,
    mut shutdown: watch::Receiver<bool>,
) -> Finished {
    let lease = claim.lease.clone();
    let task_id = lease.task_id;
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let stop_tx = Arc::new(stop_tx);

    let heartbeat = AbortOnDrop(tokio::spawn(
        heartbeat(
            ctx.client.clone(),
            lease.clone(),
            ctx.heartbeat,
            claim.lease_time,
            stop_tx.clone(),
        )
        .in_current_span(),
    ));
    let stopper = AbortOnDrop({
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while shutdown.changed().await.is_ok() {
                if *shutdown.borrow() {
                    break;
                }
            }
            stop_tx.send_replace(Stop::Abort);
        })
    });

    let workspace = ctx.workspaces.join(format!(
        "task-{task_id}-{}",
        lease.token.get(..8).unwrap_or(&lease.token)
    ));
    tracing::info!(task_id, workflow = %claim.workflow, "running task");
    let sink = LogSink::start(ctx.client.clone(), lease.clone(), ctx.log_line_max);
    let end = walk::run(&ctx, &claim, &sink, &workspace, stop_rx).await;
    drop(heartbeat);
    drop(stopper);

    let report = match &end {
        End::Success => Some(("success", None)),
        End::Failed(e) => Some(("failed", Some(e.clone()))),
        End::Cancelled => Some(("cancelled", None)),
        End::Abandoned => None,
    };
    if let Some((status, error)) = report {
        // After everything queued, with the last step changes: every
        // step's result is stored before the task's end, in its transaction.
        if sink.finish(status, error).await {
            tracing::info!(task_id, status, "task finished");
        } else {
            tracing::warn!(task_id, "could not report the end of the task");
        }
    } else {
        tracing::warn!(task_id, "task abandoned");
    }
    Finished { task_id, workspace }
}

/// A task that has ended, and the workspace it leaves behind.
pub struct Finished {
    task_id: i64,
    workspace: PathBuf,
}

impl Finished {
    /// Removes the task's workspace: once its slot is free, so that the
    /// next task need not wait for the file system.
    pub async fn clean_up(self) {
        if let Err(e) = tokio::fs::remove_dir_all(&self.workspace).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task_id = self.task_id, error = %e, "cannot remove the workspace");
        }
    }
}

/// Aborts a background task when dropped, so a panicking executor does not
/// leave its heartbeat renewing the lease forever.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease until aborted; turns a requested cancel or a lost lease
/// into a stop. When no heartbeat got through for almost a whole lease, the
/// orchestrator may already have given the task to another runner: stop.
async fn heartbeat(
    mut client: RunnerClient,
    lease: Lease,
    every: Duration,
    lease_time: Duration,
    stop: Arc<watch::Sender<Stop>>,
) {
    let margin = (lease_time / 4).max(Duration::from_millis(500));
    let fence = lease_time.saturating_sub(margin);
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let answer = client.heartbeat(&lease).await;
        if answer.is_ok() {
            last_ok = Instant::now();
        }
        match answer {
            Ok(true) => {
                stop.send_if_modified(|s| {
                    let changed = *s == Stop::No;
                    if changed {
                        *s = Stop::Cancel;
                    }
                    changed
                });
            }
            Ok(false) => {}
            Err(e) if e.is_transient() => {
                if !fence.is_zero() && last_ok.elapsed() >= fence {
                    tracing::warn!(task_id = lease.task_id, error = %e, "no heartbeat for most of the lease; stopping");
                    stop.send_replace(Stop::Abort);
                    return;
                }
                tracing::warn!(task_id = lease.task_id, error = %e, "heartbeat failed; retrying");
            }
            Err(e) => {
                tracing::warn!(task_id = lease.task_id, error = %e, "lease lost");
                stop.send_replace(Stop::Abort);
                return;
            }
        }
    }
}

/// Resolves once `stop` asks for a stop.
pub(crate) async fn stopped(mut stop: watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::No {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}
