//! Locks on files that hold across every runner process sharing a data
//! directory on one host, and between the tasks of one process alike: one
//! holder of an exclusive lock at a time, or any number of shared ones
//! (`flock` through std's `File::lock`; the kernel drops a lock when its
//! holder dies, so a killed runner never leaves one behind).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a waiting task tries a lock again. A lock cannot be waited on
/// and given up at once (a blocked `flock` only ends with the lock), so a
/// task that may be cancelled tries again on this beat instead.
const RETRY: Duration = Duration::from_millis(50);

/// A held lock; dropping it (closing the file) lets go.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

/// Which lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One holder at a time, and no shared holder meanwhile.
    Exclusive,
    /// Any number of holders together, but no exclusive one.
    Shared,
}

impl FileLock {
    /// Waits for the lock on `path` (created if missing). `waiting` is
    /// called once when the lock is busy at first. Returns `None` when
    /// `cancel` was set before the lock came.
    ///
    /// Blocking: call it from a blocking thread.
    pub fn wait(
        path: &Path,
        kind: Kind,
        cancel: &AtomicBool,
        waiting: impl FnOnce(),
    ) -> io::Result<Option<Self>> {
        let file = open(path)?;
        let mut waiting = Some(waiting);
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let tried = match kind {
                Kind::Exclusive => file.try_lock(),
                Kind::Shared => file.try_lock_shared(),
            };
            match tried {
                Ok(()) => return Ok(Some(Self { file })),
                Err(TryLockError::WouldBlock) => {
                    if let Some(waiting) = waiting.take() {
                        waiting();
                    }
                    std::thread::sleep(RETRY);
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// Takes the exclusive lock on `path`, waiting as long as it takes: for
    /// locks only ever held for a moment.
    ///
    /// Blocking: call it from a blocking thread.
    pub fn exclusive(path: &Path) -> io::Result<Self> {
        let file = open(path)?;
        file.lock()?;
        Ok(Self { file })
    }

    /// The lock on `path` (created if missing) if it can be had now.
    pub fn try_now(path: &Path, kind: Kind) -> io::Result<Option<Self>> {
        let file = open(path)?;
        let tried = match kind {
            Kind::Exclusive => file.try_lock(),
            Kind::Shared => file.try_lock_shared(),
        };
        match tried {
            Ok(()) => Ok(Some(Self { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The exclusive lock on the existing file `path` if nobody holds any
    /// lock on it now.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Locks an open file exclusively, without waiting: for a file this
    /// process just created, so that others can tell it is in use.
    pub fn hold(file: File) -> io::Result<Self> {
        match file.try_lock() {
            Ok(()) => Ok(Self { file }),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the file is locked by another holder",
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The locked file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let never = AtomicBool::new(false);
        let a = FileLock::wait(&path, Kind::Shared, &never, || {}).unwrap();
        let b = FileLock::wait(&path, Kind::Shared, &never, || {}).unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop((a, b));
        let held = FileLock::try_exclusive(&path).unwrap().expect("free");
        // A waiter that is cancelled while the lock is held gives up.
        let cancel = AtomicBool::new(false);
        let mut waited = false;
        let got = FileLock::wait(&path, Kind::Shared, &cancel, || {
            waited = true;
            cancel.store(true, Ordering::Relaxed);
        })
        .unwrap();
        assert!(got.is_none());
        assert!(waited);
        drop(held);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
    }
}
