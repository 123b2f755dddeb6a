//! The spool on disk: one file per delivery under `<data_dir>/spool/webhooks`,
//! named by its arrival number, holding the encoded `IngestWebhookRequest`.
//! A file is written under `tmp/`, synced, renamed into place and the
//! directory synced, so after a crash a delivery is either whole or absent.
//! Deliveries the orchestrator refused for good are moved to `failed/`,
//! never deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the spool lives under the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool").join("webhooks")
}

const SUFFIX: &str = ".delivery";

/// The file name of the delivery that arrived `seq`th: zero-padded so that
/// names sort in arrival order.
pub fn name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// The arrival number in a spooled file's name.
pub fn seq(name: &str) -> Option<u64> {
    name.strip_suffix(SUFFIX)?.parse().ok()
}

/// The spool's directories, created if missing; what an interrupted write
/// left in `tmp/` is removed.
pub fn prepare(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir.join("failed"))?;
    let tmp = dir.join("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    sync_dir(dir)
}

/// Takes the spool's lock: one gateway per spool. The kernel drops it when
/// the gateway dies.
pub fn lock(dir: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The spooled deliveries' names, in arrival order.
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<(u64, String)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(seq) = seq(&name) {
            names.push((seq, name));
        }
    }
    names.sort();
    Ok(names.into_iter().map(|(_, name)| name).collect())
}

/// Writes a delivery durably; it is in the spool once this returns.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join("tmp").join(name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub fn read(dir: &Path, name: &str) -> io::Result<Vec<u8>> {
    fs::read(dir.join(name))
}

/// Removes a delivery the orchestrator has stored. The directory is not
/// synced: a removal lost in a crash hands the delivery over again, which
/// the orchestrator answers as a duplicate.
pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves a delivery the orchestrator refused for good to `failed/`, for an
/// operator to look at.
pub fn set_aside(dir: &Path, name: &str) -> io::Result<()> {
    fs::rename(dir.join(name), dir.join("failed").join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_arrival_order_and_read_back() {
        assert!(name(9) < name(10));
        assert_eq!(seq(&name(42)), Some(42));
        assert_eq!(seq("lock"), None);
        assert_eq!(seq("x.delivery"), None);
    }

    #[test]
    fn a_written_delivery_is_listed_until_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = dir(root.path());
        prepare(&dir).expect("prepare");
        // What a write cut short leaves is swept at the next start.
        fs::write(dir.join("tmp").join(name(1)), b"half").expect("write");
        write(&dir, &name(2), b"two").expect("write");
        write(&dir, &name(10), b"ten").expect("write");
        prepare(&dir).expect("prepare again");
        assert!(!dir.join("tmp").join(name(1)).exists());
        assert_eq!(list(&dir).expect("list"), vec![name(2), name(10)]);
        assert_eq!(read(&dir, &name(10)).expect("read"), b"ten");
        remove(&dir, &name(2)).expect("remove");
        set_aside(&dir, &name(10)).expect("set aside");
        assert!(list(&dir).expect("list").is_empty());
        assert!(dir.join("failed").join(name(10)).exists());
    }

    #[test]
    fn one_gateway_per_spool() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = dir(root.path());
        prepare(&dir).expect("prepare");
        let held = lock(&dir).expect("lock").expect("free");
        assert!(lock(&dir).expect("lock").is_none());
        drop(held);
        assert!(lock(&dir).expect("lock").is_some());
    }
}
