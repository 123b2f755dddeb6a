//! Retention: pruning a workflow's old tasks batch by batch (the pruner's
//! pass, `crate::prune`), the retention in force that `GetWorkflow` shows,
//! and what runners clean up for it: the registry manifests of pruned
//! images and the workspaces crashed tasks left behind.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::workflow::Workflow;
use proto::ApiError;
use store::image_deletions::{DeletionRow, Outcome};
use store::prune::{Batch, LastPruned, Limits, Pruned};
use store::workspaces::Workspace;

use super::{App, bad_request, internal};
use crate::background::Shutdown;

/// A failed manifest deletion is tried this many times in all...
const DELETE_ATTEMPTS: i32 = 10;
/// ...the first retry after this, each next one twice as late, at most an
/// hour.
const DELETE_RETRY: Duration = Duration::from_secs(60);

/// The longest rest between two batches of a pass.
const MAX_REST: Duration = Duration::from_secs(1);

/// The retention of a workflow as `GetWorkflow` shows it.
#[derive(Debug, Clone)]
pub struct RetentionView {
    pub limits: Limits,
    pub last: LastPruned,
}

/// A manifest deletion handed to a runner, with the credentials of the
/// workflow that pushed the image.
#[derive(Debug, Clone)]
pub struct DeletionClaim {
    pub row: DeletionRow,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// How one pruner pass is made.
#[derive(Debug, Clone, Copy)]
pub struct PassOptions {
    /// Tasks per transaction.
    pub batch: i64,
    /// Queue the manifests of pruned images for deletion.
    pub delete_images: bool,
}

/// The limits in force for `spec`, given the server's default days.
pub fn limits(spec: &Workflow, default_days: u32) -> Limits {
    let (days, keep_last) = spec.retention.in_force(default_days);
    Limits { days, keep_last }
}

/// When a deletion that failed its `attempts`-th time is tried again;
/// `None`: never.
fn retry_in(attempts: i32) -> Option<Duration> {
    if attempts >= DELETE_ATTEMPTS {
        return None;
    }
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    Some(
        DELETE_RETRY
            .saturating_mul(1 << doublings)
            .min(Duration::from_secs(3600)),
    )
}

impl App {
    /// The retention in force for workflow `id` (whose live version and
    /// definition these are) and its last pruning.
    pub async fn retention(
        &self,
        id: i64,
        version: i32,
        definition: &str,
    ) -> Result<RetentionView, ApiError> {
        let spec = self.spec(id, version, definition)?;
        let limits = limits(&spec, self.retention_days);
        let last = self
            .db(&format!("workflow {id}"), move |conn| {
                store::prune::last_pruned(conn, id)
            })
            .await?;
        Ok(RetentionView { limits, last })
    }

    /// Prunes every workflow once, batch by batch, until done or `shutdown`
    /// (the batch in hand is finished first). Returns what it removed.
    pub async fn prune_pass(&self, options: PassOptions, shutdown: &Shutdown) -> Pruned {
        let pass_started = Utc::now();
        let workflows = match self.db("workflows", store::prune::workflows).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the workflows to prune");
                return Pruned::default();
            }
        };
        let mut total = Pruned::default();
        for (workflow_id, version, definition) in workflows {
            let spec = match self.spec(workflow_id, version, &definition) {
                Ok(spec) => spec,
                Err(e) => {
                    // Its limits are unknown: keep everything rather than guess.
                    tracing::warn!(workflow_id, error = %e.message, "not pruning a workflow whose definition no longer parses");
                    continue;
                }
            };
            let limits = limits(&spec, self.retention_days);
            let mut after = 0;
            loop {
                if shutdown.is_requested() {
                    return total;
                }
                let batch = Batch {
                    workflow_id,
                    limits,
                    now: Utc::now(),
                    pass_started,
                    after,
                    size: options.batch,
                    delete_images: options.delete_images,
                };
                let began = Instant::now();
                let done = self
                    .db(&format!("workflow {workflow_id}"), move |conn| {
                        store::prune::batch(conn, &batch)
                    })
                    .await;
                let took = began.elapsed();
                match done {
                    Ok(done) => {
                        self.metrics.pruned(&done.pruned);
                        total = Pruned::total([&total, &done.pruned]);
                        match done.next {
                            Some(next) => after = next,
                            None => break,
                        }
                    }
                    Err(e) => {
                        // Another writer held a row (a deploy of one of the
                        // tasks, say): the next pass looks again.
                        tracing::warn!(workflow_id, error = %e.message, "pruning stopped for this pass");
                        break;
                    }
                }
                // The pruner rests as long as its batch took: on a small
                // machine the database's CPU is shared with webhooks and
                // leases, which get at least half of it while it prunes.
                tokio::time::sleep(took.min(MAX_REST)).await;
            }
        }
        total
    }

    /// Measures the bytes of the stored task logs for the metrics.
    pub async fn measure_log_bytes(&self) {
        match self.db("logs", store::prune::log_bytes).await {
            Ok(bytes) => self.metrics.set_log_bytes(bytes),
            Err(e) => tracing::debug!(error = %e.message, "cannot measure the logs"),
        }
    }

    /// Of the workspaces a runner found, those it may remove.
    pub async fn check_workspaces(
        &self,
        found: Vec<Workspace>,
    ) -> Result<Vec<Workspace>, ApiError> {
        if found.len() > 10_000 {
            return Err(bad_request("at most 10000 workspaces per call"));
        }
        self.db("workspaces", move |conn| {
            store::workspaces::stale(conn, &found)
        })
        .await
    }

    /// Claims up to `limit` due manifest deletions for `runner` for
    /// `claim`, each with its workflow's registry credentials.
    pub async fn claim_image_deletions(
        &self,
        runner: String,
        limit: i64,
        claim: Duration,
    ) -> Result<Vec<DeletionClaim>, ApiError> {
        if runner.is_empty() {
            return Err(bad_request("runner_id is required"));
        }
        let until = Utc::now()
            + chrono::Duration::from_std(claim)
                .map_err(|_| bad_request("claim_ms is too large"))?;
        let rows = self
            .db("image deletions", move |conn| {
                let rows = store::image_deletions::claim_due(conn, &runner, limit, until)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let sealed = store::secrets::sealed(conn, row.workflow_id)?;
                    out.push((row, sealed));
                }
                Ok(out)
            })
            .await?;
        let mut claims = Vec::with_capacity(rows.len());
        for (row, sealed) in rows {
            let open = |name: &str| -> Result<Option<String>, ApiError> {
                sealed
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| {
                        self.secrets
                            .open(row.workflow_id, &s.name, &s.nonce, &s.ciphertext)
                            .map_err(internal)
                    })
                    .transpose()
            };
            let username = open("REGISTRY_USERNAME")?;
            let password = open("REGISTRY_PASSWORD")?;
            claims.push(DeletionClaim {
                row,
                username,
                password,
            });
        }
        Ok(claims)
    }

    /// Records how a claimed deletion went.
    pub async fn report_image_deletion(
        &self,
        id: i64,
        runner: String,
        deleted: bool,
        error: Option<String>,
    ) -> Result<(), ApiError> {
        let (counted, attempts) = self
            .db(&format!("image deletion {id}"), move |conn| {
                let row = store::image_deletions::get(conn, id)?;
                let outcome = if deleted {
                    Outcome::Deleted
                } else {
                    let error = error.unwrap_or_else(|| "failed".to_owned());
                    let retry_at = retry_in(row.attempts)
                        .and_then(|d| chrono::Duration::from_std(d).ok().map(|d| Utc::now() + d));
                    Outcome::Failed { error, retry_at }
                };
                let counted = store::image_deletions::record(conn, id, &runner, &outcome)?;
                Ok((counted, row.attempts))
            })
            .await?;
        if counted && deleted {
            self.metrics.image_deleted();
        } else if counted && retry_in(attempts).is_none() {
            tracing::warn!(id, "gave up deleting a registry manifest");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_in;

    #[test]
    fn a_failed_deletion_backs_off_then_gives_up() {
        let cases = [
            (1, Some(60)),
            (2, Some(120)),
            (3, Some(240)),
            (7, Some(3600)),
            (9, Some(3600)),
            (10, None),
            (0, Some(60)),
            (i32::MIN, Some(60)),
            (i32::MAX, None),
        ];
        for (attempts, want) in cases {
            assert_eq!(
                retry_in(attempts),
                want.map(Duration::from_secs),
                "{attempts}"
            );
        }
    }
}
