//! What a runner cleans up besides its own tasks, at start and every
//! `SLIPWAY_SWEEP_INTERVAL`: the workspaces tasks left behind when a runner
//! crashed (the orchestrator says which: runners of one host may share the
//! data directory, so a workspace goes only when its task is finished or
//! runs under another lease, never because of its age), and the registry
//! manifests of pruned images the orchestrator queued for deletion.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{RunnerClient, Workspace};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Workspaces asked about per call.
const WORKSPACES_PER_CALL: usize = 500;
/// Manifest deletions claimed per call...
const DELETIONS_PER_CLAIM: u32 = 20;
/// ...and how long the claim holds them: long past a few deletions.
const DELETION_CLAIM: Duration = Duration::from_secs(300);
/// Claims per sweep at most, so a long queue does not hold one sweep.
const CLAIMS_PER_SWEEP: usize = 50;

/// What a sweep works with.
pub struct Sweeper {
    pub client: RunnerClient,
    /// `<data_dir>/workspaces`.
    pub workspaces: std::path::PathBuf,
    pub registry: Registry,
    pub runner_id: String,
    pub metrics: Arc<Metrics>,
}

impl Sweeper {
    /// Sweeps now, then every `every`, until `stop`.
    pub async fn run(mut self, every: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            self.workspaces().await;
            self.images(&stop).await;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Removes the workspaces whose task no longer runs under their lease.
    pub async fn workspaces(&mut self) {
        let found = match list(&self.workspaces).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(dir = %self.workspaces.display(), error = %e, "cannot list the workspaces");
                return;
            }
        };
        let mut removed = 0;
        for chunk in found.chunks(WORKSPACES_PER_CALL) {
            let stale = match self.client.check_workspaces(chunk).await {
                Ok(stale) => stale,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the workspaces now");
                    return;
                }
            };
            for w in stale {
                // Only a name this runner asked about is removed.
                if !chunk.contains(&w) {
                    continue;
                }
                let dir = self.workspaces.join(name(&w));
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => removed += 1,
                    // Its own runner finished it meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a leftover workspace");
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed the workspaces of tasks that ended elsewhere"
            );
            self.metrics.swept("workspaces", removed);
        }
    }

    /// Deletes the registry manifests queued for deletion, a claim at a time.
    pub async fn images(&mut self, stop: &watch::Receiver<bool>) {
        for _ in 0..CLAIMS_PER_SWEEP {
            if *stop.borrow() {
                return;
            }
            let claimed = match self
                .client
                .claim_image_deletions(&self.runner_id, DELETIONS_PER_CLAIM, DELETION_CLAIM)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot claim image deletions now");
                    return;
                }
            };
            let full = claimed.len() >= DELETIONS_PER_CLAIM as usize;
            for d in claimed {
                let credentials = d
                    .credentials
                    .as_ref()
                    .map(|(u, p)| (u.as_str(), p.as_str()));
                let outcome = self
                    .registry
                    .delete_manifest(&d.repository, &d.digest, credentials)
                    .await;
                match &outcome {
                    Ok(how) => {
                        tracing::info!(repository = %d.repository, digest = %d.digest, ?how, "deleted the manifest of a pruned image");
                        self.metrics.swept("images", 1);
                    }
                    Err(e) => {
                        tracing::warn!(repository = %d.repository, digest = %d.digest, error = %e, "cannot delete the manifest of a pruned image");
                    }
                }
                let report = outcome.map(|_| ()).map_err(|e| e.to_string());
                if let Err(e) = self
                    .client
                    .report_image_deletion(d.id, &self.runner_id, report)
                    .await
                {
                    // The claim lapses and the deletion comes due again.
                    tracing::debug!(id = d.id, error = %e, "cannot report an image deletion");
                }
            }
            if !full {
                return;
            }
        }
    }
}

/// The directory name of a workspace (executor: `task-<id>-<lease prefix>`).
pub fn name(w: &Workspace) -> String {
    format!("task-{}-{}", w.task_id, w.lease_prefix)
}

/// Reads a workspace's directory name back; `None` for anything else.
pub fn parse(name: &str) -> Option<Workspace> {
    let rest = name.strip_prefix("task-")?;
    let (id, prefix) = rest.split_once('-')?;
    let task_id: i64 = id.parse().ok().filter(|id| *id > 0)?;
    let plain = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plain.then(|| Workspace {
        task_id,
        lease_prefix: prefix.to_owned(),
    })
}

/// The task workspaces under `dir`.
async fn list(dir: &Path) -> std::io::Result<Vec<Workspace>> {
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let Some(w) = entry.file_name().to_str().and_then(parse) else {
            continue;
        };
        if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            found.push(w);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::{name, parse};
    use crate::client::Workspace;

    #[test]
    fn workspace_names_read_back_and_nothing_else_does() {
        let w = Workspace {
            task_id: 17,
            lease_prefix: "3f2a9c1b".to_owned(),
        };
        assert_eq!(parse(&name(&w)), Some(w));
        // A uuid prefix of 8 characters may hold a dash.
        assert_eq!(
            parse("task-5-abcd-123").map(|w| w.lease_prefix),
            Some("abcd-123".to_owned())
        );
        for other in [
            "task-",
            "task-17",
            "task-17-",
            "task-x-3f2a9c1b",
            "task--3f2a9c1b",
            "task-0-3f2a9c1b",
            "task-17-../etc",
            "cache",
            "mirror-17-abc",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
