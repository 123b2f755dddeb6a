//! Workflow caches (workflow.md, "Caches and retention"): the `cache`
//! entries of a task restored into its workspace after the checkout, and
//! saved from it after the task succeeded, in the host's store
//! ([`store`]) as archives ([`archive`]).
//!
//! An entry's key is the hash of the workflow's name, the entry's paths
//! and its `key_files`' contents (without `key_files`: the task's branch).
//! A restore takes the cache of that key, else the newest of the same
//! workflow and paths saved on the task's branch, else on the repository's
//! default branch. A save happens only when the key was not found as it
//! is, and never for a pull request, so a pull request cannot plant what a
//! branch's build restores. Nothing here fails a task: a cache that cannot
//! be read or written is a log line.

pub mod archive;
pub mod store;

use std::fmt::Write as _;
use std::io::{self, Read as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use domain::workflow::CacheSpec;
use sha2::{Digest, Sha256};

use crate::metrics::CacheCounters;
pub use store::{Match, Saved, Store};

/// The host's caches, shared by the tasks of a runner.
#[derive(Clone)]
pub struct Caches {
    store: Arc<Store>,
    counters: CacheCounters,
}

/// What a task's caches are found and saved by.
#[derive(Debug, Clone)]
pub struct Task {
    /// The workflow's name.
    pub workflow: String,
    /// The task's branch; `None` for a tag.
    pub branch: Option<String>,
    /// The branch's full ref, else the ref checked out: what a key without
    /// `key_files` is made of.
    pub task_ref: String,
    /// The repository's default branch, when known: the last fallback.
    pub default_branch: Option<String>,
}

/// A task's `cache` entry after its restore: what its save needs.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: CacheSpec,
    /// The key it is saved under.
    pub key: String,
    /// The workflow and paths it is for.
    pub scope: String,
    /// The key was found as it is: nothing to save.
    pub exact: bool,
}

impl Caches {
    /// Opens the store under `dir`, sweeping what earlier runners left.
    ///
    /// Blocking.
    pub fn open(
        dir: std::path::PathBuf,
        max_bytes: u64,
        counters: CacheCounters,
    ) -> io::Result<Self> {
        Ok(Self {
            store: Arc::new(Store::open(dir, max_bytes)?),
            counters,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Restores `spec` into `workspace`; returns what its save needs and
    /// the lines the clone step's log shows.
    pub async fn restore(
        &self,
        task: &Task,
        spec: &CacheSpec,
        workspace: &Path,
        cancel: Arc<AtomicBool>,
    ) -> (Planned, Vec<String>) {
        let this = self.clone();
        let (task, spec_owned, workspace) = (task.clone(), spec.clone(), workspace.to_path_buf());
        let joined = tokio::task::spawn_blocking(move || {
            this.restore_blocking(&task, &spec_owned, &workspace, &cancel)
        })
        .await;
        joined.unwrap_or_else(|e| {
            let planned = Planned {
                spec: spec.clone(),
                key: String::new(),
                scope: String::new(),
                exact: true,
            };
            (
                planned,
                vec![format!("{}: no cache restored: {e}", label(spec))],
            )
        })
    }

    fn restore_blocking(
        &self,
        task: &Task,
        spec: &CacheSpec,
        workspace: &Path,
        cancel: &AtomicBool,
    ) -> (Planned, Vec<String>) {
        let workflow = task.workflow.as_str();
        let label = label(spec);
        let scope = scope(workflow, spec);
        let mut lines = Vec::new();
        let key = match key(workflow, spec, workspace, &task.task_ref) {
            Ok(key) => key,
            Err(e) => {
                // Without a key there is nothing to find or save under.
                let planned = Planned {
                    spec: spec.clone(),
                    key: String::new(),
                    scope,
                    exact: true,
                };
                lines.push(format!("{label}: cannot compute its key: {e}; no cache"));
                return (planned, lines);
            }
        };
        let mut planned = Planned {
            spec: spec.clone(),
            key: key.clone(),
            scope: scope.clone(),
            exact: false,
        };
        let started = Instant::now();
        let found = match self.store.find(
            &key,
            &scope,
            task.branch.as_deref(),
            task.default_branch.as_deref(),
        ) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache index");
                lines.push(format!(
                    "{label}: cannot read the caches: {e}; none restored"
                ));
                return (planned, lines);
            }
        };
        let Some(found) = found else {
            self.counters.misses.inc();
            lines.push(format!("{label}: no cache for key {}", short(&key)));
            return (planned, lines);
        };
        let (found_key, bytes, matched) =
            (found.entry.key.clone(), found.entry.bytes, found.matched);
        match archive::unpack(found.archive, workspace, &spec.paths, cancel) {
            Ok(restored) => {
                let source = match &matched {
                    Match::Exact => {
                        planned.exact = true;
                        format!("key {}", short(&found_key))
                    }
                    Match::Branch(b) => format!(
                        "the newest of branch {b} (key {}; key {} not found)",
                        short(&found_key),
                        short(&key)
                    ),
                    Match::DefaultBranch(b) => format!(
                        "the newest of the default branch {b} (key {}; key {} not found)",
                        short(&found_key),
                        short(&key)
                    ),
                };
                self.counters.hit(&matched);
                lines.push(format!(
                    "{label}: restored {source}, {} in {}",
                    human_bytes(bytes),
                    seconds(started.elapsed())
                ));
                for (path, why) in restored.skipped {
                    lines.push(format!("{label}: {path} left out: {why}"));
                }
            }
            Err(archive::UnpackError::Corrupt(e)) => {
                tracing::warn!(key = %found_key, error = %e, "discarding a corrupt cache");
                self.counters.discarded.inc();
                self.counters.misses.inc();
                if let Err(e) = self.store.discard(&found_key) {
                    tracing::warn!(error = %e, "cannot discard a corrupt cache");
                }
                lines.push(format!(
                    "{label}: the cache of key {} is corrupt and was discarded ({e}); none restored",
                    short(&found_key)
                ));
            }
            Err(e) => {
                self.counters.misses.inc();
                lines.push(format!(
                    "{label}: the cache of key {} could not be restored: {e}",
                    short(&found_key)
                ));
            }
        }
        (planned, lines)
    }

    /// Saves the workspace's paths of `planned` under its key; returns the
    /// line the log shows.
    pub async fn save(&self, planned: &Planned, workspace: &Path, task: &Task) -> String {
        let this = self.clone();
        let (planned_owned, workspace, branch) = (
            planned.clone(),
            workspace.to_path_buf(),
            task.branch.clone(),
        );
        let joined = tokio::task::spawn_blocking(move || {
            this.save_blocking(&planned_owned, &workspace, branch.as_deref())
        })
        .await;
        joined.unwrap_or_else(|e| format!("{}: not saved: {e}", label(&planned.spec)))
    }

    fn save_blocking(&self, planned: &Planned, workspace: &Path, branch: Option<&str>) -> String {
        let label = label(&planned.spec);
        let started = Instant::now();
        let saved = (|| {
            let pending = self.store.begin()?;
            let packed = archive::pack(workspace, &planned.spec.paths, pending.file())?;
            if packed.paths.is_empty() {
                return Ok((None, packed));
            }
            let saved = self
                .store
                .commit(pending, &planned.key, &planned.scope, branch)?;
            Ok::<_, io::Error>((Some(saved), packed))
        })();
        let mut line = match saved {
            Ok((None, _)) => format!("{label}: nothing to save (no such paths in the workspace)"),
            Ok((Some((Saved::Stored { evicted }, bytes)), _)) => {
                self.counters.saves.inc();
                self.counters
                    .evictions
                    .inc_by(u64::try_from(evicted).unwrap_or(0));
                let mut line = format!(
                    "{label}: saved key {}, {} in {}",
                    short(&planned.key),
                    human_bytes(bytes),
                    seconds(started.elapsed())
                );
                if evicted > 0 {
                    let _ = write!(
                        line,
                        "; {evicted} least recently used caches evicted to stay within {}",
                        human_bytes(self.store.max_bytes())
                    );
                }
                line
            }
            Ok((Some((Saved::AlreadyThere, _)), _)) => format!(
                "{label}: not saved: another task saved key {} meanwhile",
                short(&planned.key)
            ),
            Ok((Some((Saved::TooBig { max }, bytes)), _)) => format!(
                "{label}: not saved: {} is more than SLIPWAY_CACHE_MAX_BYTES ({})",
                human_bytes(bytes),
                human_bytes(max)
            ),
            Err(ref e) => {
                tracing::warn!(error = %e, "cannot save a cache");
                format!("{label}: not saved: {e}")
            }
        };
        if let Ok((_, packed)) = &saved {
            for (path, why) in &packed.skipped {
                let _ = write!(line, "\n{label}: {path} left out: {why}");
            }
        }
        line
    }
}

/// How the log names a cache entry: by its paths.
pub fn label(spec: &CacheSpec) -> String {
    format!("cache {}", spec.paths.join(", "))
}

/// The start of a key, as logs show it.
pub fn short(key: &str) -> &str {
    key.get(..16).unwrap_or(key)
}

/// Which workflow and paths a cache is for.
fn scope(workflow: &str, spec: &CacheSpec) -> String {
    let mut hash = Sha256::new();
    hash.update(b"slipway cache scope 1\0");
    hash.update(workflow.as_bytes());
    for path in &spec.paths {
        hash.update(b"\0path\0");
        hash.update(path.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The key of `spec` for a task of `workflow` on `task_ref` (the branch's
/// full ref, else the ref checked out) whose checkout is `workspace`: the
/// contents of its `key_files`, or the task's ref without them. A key file
/// that is missing (or not a file inside the workspace) counts as such.
pub fn key(
    workflow: &str,
    spec: &CacheSpec,
    workspace: &Path,
    task_ref: &str,
) -> io::Result<String> {
    let mut hash = Sha256::new();
    hash.update(b"slipway cache key 1\0");
    hash.update(scope(workflow, spec).as_bytes());
    if spec.key_files.is_empty() {
        hash.update(b"\0ref\0");
        hash.update(task_ref.as_bytes());
    }
    let root = workspace.canonicalize()?;
    for name in &spec.key_files {
        hash.update(b"\0file\0");
        hash.update(name.as_bytes());
        hash.update(b"\0");
        let inside = workspace
            .join(name)
            .canonicalize()
            .ok()
            .filter(|p| p.starts_with(&root) && p.is_file());
        match inside {
            Some(path) => {
                let mut file = std::fs::File::open(path)?;
                let mut contents = Sha256::new();
                let mut buffer = vec![0; 64 * 1024];
                loop {
                    let n = file.read(&mut buffer)?;
                    if n == 0 {
                        break;
                    }
                    contents.update(buffer.get(..n).unwrap_or_default());
                }
                hash.update(contents.finalize());
            }
            None => hash.update(b"missing"),
        }
    }
    Ok(hex::encode(hash.finalize()))
}

/// `bytes` for people: `512 B`, `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A stage's time as the task's log shows it, e.g. `1.25s`.
pub(crate) fn seconds(elapsed: Duration) -> String {
    format!("{:.2}s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(paths: &[&str], key_files: &[&str]) -> CacheSpec {
        CacheSpec {
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            key_files: key_files.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_key_follows_the_key_files_or_the_branch() {
        let ws = tempfile::tempdir().unwrap();
        let w = ws.path();
        std::fs::write(w.join("go.sum"), "a v1\n").unwrap();
        let go = spec(&[".cache/go"], &["go.sum"]);
        let main = "refs/heads/main";
        let k1 = key("build", &go, w, main).unwrap();
        // Not the branch, when key files are given.
        assert_eq!(k1, key("build", &go, w, "refs/heads/other").unwrap());
        // The workflow, the paths and the contents all count.
        assert_ne!(k1, key("other", &go, w, main).unwrap());
        assert_ne!(
            k1,
            key("build", &spec(&[".cache/x"], &["go.sum"]), w, main).unwrap()
        );
        std::fs::write(w.join("go.sum"), "a v2\n").unwrap();
        let k2 = key("build", &go, w, main).unwrap();
        assert_ne!(k1, k2);
        std::fs::remove_file(w.join("go.sum")).unwrap();
        assert_ne!(k2, key("build", &go, w, main).unwrap());
        // A key file outside the workspace reads as missing.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("go.sum"), "a v2\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("go.sum"), w.join("go.sum")).unwrap();
        assert_ne!(k2, key("build", &go, w, main).unwrap());

        // Without key files: one per branch.
        let plain = spec(&["node_modules"], &[]);
        assert_ne!(
            key("build", &plain, w, main).unwrap(),
            key("build", &plain, w, "refs/heads/other").unwrap()
        );
        assert_eq!(scope("build", &go).len(), 64);
        assert_eq!(short(&k1).len(), 16);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
    }
}
