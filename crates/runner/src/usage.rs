//! How much of the data directory each kind of data takes
//! (`slipway_runner_data_bytes`): the workspaces, caches and mirrors
//! directories walked (file sizes added up, links not followed) at start,
//! every minute, and after each task, one walk at a time, on a blocking
//! thread so that a large tree never holds up the runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::metrics::{DATA_KINDS, Metrics};

/// How often the sizes are measured when no task ends.
const EVERY: Duration = Duration::from_secs(60);

/// Measures until `stop`; `wake` asks for a measure now (a task ended).
pub async fn keep_measuring(
    data_dir: PathBuf,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let dir = data_dir.clone();
        let measured = tokio::task::spawn_blocking(move || {
            DATA_KINDS.map(|kind| (kind, size_of(&dir.join(kind))))
        })
        .await;
        if let Ok(sizes) = measured {
            for (kind, bytes) in sizes {
                metrics.data_bytes(kind, bytes);
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// The bytes of the files under `path`; what vanishes meanwhile (a
/// workspace removed) counts as nothing.
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| size_of(&e.path()))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up_files_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one"), [0; 100]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), [0; 50]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), [0; 1000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/link")).unwrap();
        let link = std::fs::symlink_metadata(dir.path().join("a/link"))
            .unwrap()
            .len();
        assert_eq!(size_of(&dir.path().join("a")), 150 + link);
        assert_eq!(size_of(&dir.path().join("missing")), 0);
    }
}
