//! Reports about a task's steps, shared by the walk through its plan and
//! its deploys: each report is retried while the orchestrator is away, and
//! a refusal means the lease is gone.

use std::time::Duration;

use backon::Retryable as _;

use crate::client::{CallError, Lease, RunnerClient};
use crate::context::Context;
use crate::ship::LogSink;

/// How long a report is retried before the task is given up: the lease
/// has run out long before.
const GIVE_UP: Duration = Duration::from_secs(60);

/// Retries a report while the orchestrator is unreachable, for up to a minute.
pub(crate) async fn persist<T, F, Fut>(client: &RunnerClient, mut call: F) -> Result<T, CallError>
where
    F: FnMut(RunnerClient) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    (|| call(client.clone()))
        .retry(proto::RETRY_CALLS.with_total_delay(Some(GIVE_UP)))
        .when(CallError::is_transient)
        .notify(|e, _| tracing::warn!(error = %e, "orchestrator unavailable; retrying"))
        .await
}

/// Where a task's step reports and log lines go.
#[derive(Clone, Copy)]
pub(crate) struct Steps<'a> {
    /// The runner API.
    pub ctx: &'a Context,
    /// The task's lease, which every report presents.
    pub lease: &'a Lease,
    /// The task's log.
    pub sink: &'a LogSink,
}

impl Steps<'_> {
    /// Reports a step's status, behind everything queued before it; false
    /// when the lease is gone.
    pub async fn report(
        &self,
        position: i32,
        status: &'static str,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> bool {
        if !self.sink.flush().await {
            return false;
        }
        let result = persist(&self.ctx.client, |mut c| {
            let (lease, error) = (self.lease.clone(), error.clone());
            async move {
                c.update_step(&lease, position, status, exit_code, error)
                    .await
            }
        })
        .await;
        if let Err(e) = &result {
            tracing::warn!(task_id = self.lease.task_id, position, error = %e, "step report refused");
        }
        result.is_ok()
    }

    /// Logs and reports a failed step; false when the lease is gone.
    pub async fn fail(&self, position: i32, error: &str) -> bool {
        self.sink.line(position, error);
        self.sink.flush().await;
        self.report(position, "failed", None, Some(error.to_owned()))
            .await
    }

    /// Logs and reports a step skipped for `why`; false when the lease is gone.
    pub async fn skip(&self, position: i32, why: &str) -> bool {
        self.sink.line(position, why);
        self.sink.flush().await;
        self.report(position, "skipped", None, None).await
    }
}
