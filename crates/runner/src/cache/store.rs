//! The caches of one runner host, under `<data_dir>/caches`: one archive
//! per key (`<key>.tar.gz`) and an index (`index.json`) of what each is
//! for, how big it is, and when it was made and last used, shared by every
//! runner process on the host. Each change to the index happens under the
//! host's lock (`.lock`, held for moments) and is written to a temporary
//! file and renamed, so a killed runner leaves the old index or the new.
//!
//! An archive is written under `tmp/` first, with a lock on it while it is
//! written, and renamed into place only when whole: a half-written archive
//! is never found, and one whose writer died (its lock gone) is removed by
//! the next sweep. The total size is bounded: the least recently used
//! archives go first.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::lock::FileLock;

/// One cache as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is found by first (hex).
    pub key: String,
    /// Which workflow and paths it is for (hex): what the fallbacks match.
    pub scope: String,
    /// The branch of the task that saved it; `None` for a tag's.
    pub branch: Option<String>,
    /// The archive's size.
    pub bytes: u64,
    /// When it was saved (milliseconds since the epoch): the newest of a
    /// branch is the fallback.
    pub created_ms: u64,
    /// When it was last saved or restored: the least recent goes first.
    pub used_ms: u64,
}

/// How a cache was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// By its key: nothing to save afterwards.
    Exact,
    /// The newest of the task's own branch.
    Branch(String),
    /// The newest of the repository's default branch.
    DefaultBranch(String),
}

/// A cache found, with its archive open (it stays readable even if it is
/// evicted meanwhile).
#[derive(Debug)]
pub struct Found {
    pub entry: Entry,
    pub matched: Match,
    pub archive: File,
}

/// What became of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// In place; `evicted` older caches went to keep the bound.
    Stored { evicted: usize },
    /// Another task saved the same key meanwhile; this one was dropped.
    AlreadyThere,
    /// Bigger than the whole bound on its own: dropped.
    TooBig { max: u64 },
}

/// An archive being written: a locked file under `tmp/`.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    lock: FileLock,
}

impl Pending {
    /// The file to write the archive into.
    pub fn file(&self) -> &File {
        self.lock.file()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Gone once renamed; otherwise it was dropped on purpose.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<Entry>,
}

/// The host's caches.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
}

const INDEX: &str = "index.json";
const LOCK: &str = ".lock";
const TMP: &str = "tmp";
const SUFFIX: &str = ".tar.gz";

impl Store {
    /// Opens (making them if needed) the caches under `dir`, bounded by
    /// `max_bytes`, and sweeps what earlier runners left.
    ///
    /// Blocking.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join(TMP))?;
        let store = Self { dir, max_bytes };
        store.sweep()?;
        Ok(store)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Takes the host's lock.
    fn lock(&self) -> io::Result<FileLock> {
        FileLock::exclusive(&self.dir.join(LOCK))
    }

    /// Takes the host's lock and reads the index; an unreadable index is
    /// started afresh (the sweep then drops the archives it no longer
    /// names).
    fn locked(&self) -> io::Result<(FileLock, Index)> {
        let lock = self.lock()?;
        let index = match std::fs::read(self.dir.join(INDEX)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the cache index is unreadable; starting a new one");
                Index::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e),
        };
        Ok((lock, index))
    }

    /// Writes the index; the caller holds the lock.
    fn write(&self, index: &Index) -> io::Result<()> {
        let temporary = self.dir.join(format!("{INDEX}.tmp"));
        let bytes = serde_json::to_vec(index).map_err(io::Error::other)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, self.dir.join(INDEX))
    }

    fn archive(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}{SUFFIX}"))
    }

    /// The cache for `key`, else the newest of `scope` saved on each of
    /// `branches` in turn, with its use recorded.
    ///
    /// Blocking.
    pub fn find(
        &self,
        key: &str,
        scope: &str,
        branch: Option<&str>,
        default_branch: Option<&str>,
    ) -> io::Result<Option<Found>> {
        let (_lock, mut index) = self.locked()?;
        let newest_of = |index: &Index, branch: &str| {
            index
                .entries
                .iter()
                .filter(|e| e.scope == scope && e.branch.as_deref() == Some(branch))
                .max_by_key(|e| e.created_ms)
                .map(|e| e.key.clone())
        };
        let mut candidates = vec![(key.to_owned(), Match::Exact)];
        if let Some(b) = branch
            && let Some(k) = newest_of(&index, b)
        {
            candidates.push((k, Match::Branch(b.to_owned())));
        }
        if let Some(d) = default_branch.filter(|d| Some(*d) != branch)
            && let Some(k) = newest_of(&index, d)
        {
            candidates.push((k, Match::DefaultBranch(d.to_owned())));
        }
        let mut changed = false;
        let mut found = None;
        for (key, matched) in candidates {
            let Some(at) = index.entries.iter().position(|e| e.key == key) else {
                continue;
            };
            match File::open(self.archive(&key)) {
                Ok(archive) => {
                    let entry = &mut index.entries[at];
                    entry.used_ms = now_ms();
                    changed = true;
                    found = Some(Found {
                        entry: entry.clone(),
                        matched,
                        archive,
                    });
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    index.entries.remove(at);
                    changed = true;
                }
                Err(e) => return Err(e),
            }
        }
        if changed {
            self.write(&index)?;
        }
        Ok(found)
    }

    /// Drops the cache of `key` (its archive turned out corrupt).
    ///
    /// Blocking.
    pub fn discard(&self, key: &str) -> io::Result<()> {
        let (_lock, mut index) = self.locked()?;
        index.entries.retain(|e| e.key != key);
        remove(&self.archive(key))?;
        self.write(&index)
    }

    /// A new file under `tmp/` to write an archive into, locked as long as
    /// it is held.
    ///
    /// Blocking.
    pub fn begin(&self) -> io::Result<Pending> {
        // Made and locked under the host's lock, so that no sweep sees it
        // before it is locked.
        let _lock = self.lock()?;
        let path = self
            .dir
            .join(TMP)
            .join(format!("{}{SUFFIX}.part", uuid::Uuid::new_v4().simple()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let lock = FileLock::hold(file)?;
        Ok(Pending { path, lock })
    }

    /// Puts a written archive in place as the cache of `key`, then evicts
    /// the least recently used caches past the bound.
    ///
    /// Blocking.
    pub fn commit(
        &self,
        pending: Pending,
        key: &str,
        scope: &str,
        branch: Option<&str>,
    ) -> io::Result<(Saved, u64)> {
        let mut file = pending.file();
        file.flush()?;
        // On disk before it is renamed, so that a crash of the host cannot
        // leave a named archive with missing blocks.
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        if bytes > self.max_bytes {
            return Ok((
                Saved::TooBig {
                    max: self.max_bytes,
                },
                bytes,
            ));
        }
        let (_lock, mut index) = self.locked()?;
        if index.entries.iter().any(|e| e.key == key) && self.archive(key).exists() {
            return Ok((Saved::AlreadyThere, bytes));
        }
        std::fs::rename(&pending.path, self.archive(key))?;
        let now = now_ms();
        index.entries.retain(|e| e.key != key);
        index.entries.push(Entry {
            key: key.to_owned(),
            scope: scope.to_owned(),
            branch: branch.map(str::to_owned),
            bytes,
            created_ms: now,
            used_ms: now,
        });
        let evicted = self.evict(&mut index)?;
        self.write(&index)?;
        Ok((Saved::Stored { evicted }, bytes))
    }

    /// Removes the least recently used caches until the rest fit the bound;
    /// the caller holds the lock and writes the index.
    fn evict(&self, index: &mut Index) -> io::Result<usize> {
        let mut total: u64 = index.entries.iter().map(|e| e.bytes).sum();
        let mut evicted = 0;
        while total > self.max_bytes {
            let Some((at, _)) = index
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.used_ms, e.created_ms))
            else {
                break;
            };
            let entry = index.entries.remove(at);
            remove(&self.archive(&entry.key))?;
            total = total.saturating_sub(entry.bytes);
            evicted += 1;
        }
        Ok(evicted)
    }

    /// Makes the directory agree with the index and the bound: removes the
    /// archives of writers that died, archives the index does not name,
    /// entries whose archive is gone, and what is past the bound.
    ///
    /// Blocking.
    pub fn sweep(&self) -> io::Result<()> {
        let (_lock, mut index) = self.locked()?;
        for entry in std::fs::read_dir(self.dir.join(TMP))? {
            let path = entry?.path();
            // A writer holds its file's lock until it is done; the kernel
            // lets go of it when the writer dies.
            match FileLock::try_exclusive(&path) {
                Ok(Some(free)) => {
                    drop(free);
                    tracing::info!(path = %path.display(), "removing a cache archive its runner never finished");
                    remove(&path)?;
                }
                Ok(None) => {}
                // Renamed into place meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let named: HashSet<String> = index.entries.iter().map(|e| e.key.clone()).collect();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(key) = name.strip_suffix(SUFFIX)
                && !named.contains(key)
            {
                remove(&path)?;
            }
        }
        index.entries.retain(|e| self.archive(&e.key).exists());
        self.evict(&mut index)?;
        self.write(&index)
    }

    /// The caches the index holds, least recently used first.
    ///
    /// Blocking.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let (_lock, mut index) = self.locked()?;
        index.entries.sort_by_key(|e| (e.used_ms, e.created_ms));
        Ok(index.entries)
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(store: &Store, key: &str, scope: &str, branch: &str, bytes: usize) -> Saved {
        let pending = store.begin().unwrap();
        pending.file().write_all(&vec![7; bytes]).unwrap();
        store.commit(pending, key, scope, Some(branch)).unwrap().0
    }

    fn keys(store: &Store) -> Vec<String> {
        store
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect()
    }

    #[test]
    fn exact_key_then_the_branch_then_the_default_branch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("caches"), 1 << 20).unwrap();
        assert!(store.find("k1", "s", Some("main"), None).unwrap().is_none());
        assert_eq!(
            save(&store, "k1", "s", "main", 10),
            Saved::Stored { evicted: 0 }
        );
        assert_eq!(
            save(&store, "k2", "s", "feature", 10),
            Saved::Stored { evicted: 0 }
        );
        assert_eq!(
            save(&store, "o1", "other", "feature", 10),
            Saved::Stored { evicted: 0 }
        );

        let found = store
            .find("k1", "s", Some("x"), Some("main"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.entry.key.as_str(), found.matched),
            ("k1", Match::Exact)
        );
        let found = store
            .find("new", "s", Some("feature"), Some("main"))
            .unwrap()
            .unwrap();
        assert_eq!(found.entry.key, "k2");
        assert_eq!(found.matched, Match::Branch("feature".to_owned()));
        let found = store
            .find("new", "s", Some("fix"), Some("main"))
            .unwrap()
            .unwrap();
        assert_eq!(found.entry.key, "k1");
        assert_eq!(found.matched, Match::DefaultBranch("main".to_owned()));
        // Another scope's caches never match but by key.
        assert!(
            store
                .find("new", "t", Some("feature"), Some("main"))
                .unwrap()
                .is_none()
        );
        assert!(store.find("new", "s", None, None).unwrap().is_none());

        // The same key twice: the first stays.
        assert_eq!(save(&store, "k1", "s", "main", 10), Saved::AlreadyThere);
        assert_eq!(
            save(&store, "big", "s", "main", (1 << 20) + 1),
            Saved::TooBig { max: 1 << 20 }
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("caches/tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("caches"), 100).unwrap();
        save(&store, "a", "s", "main", 40);
        std::thread::sleep(std::time::Duration::from_millis(5));
        save(&store, "b", "s", "main", 40);
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Using `a` makes `b` the least recently used.
        assert!(store.find("a", "s", None, None).unwrap().is_some());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(
            save(&store, "c", "s", "main", 40),
            Saved::Stored { evicted: 1 }
        );
        assert_eq!(keys(&store), ["a", "c"]);
        assert!(!dir.path().join("caches/b.tar.gz").exists());
        // A smaller bound at the next start evicts at once.
        drop(store);
        let store = Store::open(dir.path().join("caches"), 50).unwrap();
        assert_eq!(keys(&store), ["c"]);
    }

    #[test]
    fn the_sweep_removes_what_dead_writers_and_lost_indexes_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("caches");
        let store = Store::open(root.clone(), 1000).unwrap();
        save(&store, "kept", "s", "main", 10);
        // A writer at work keeps its file; one that died does not.
        let working = store.begin().unwrap();
        std::fs::write(root.join("tmp/dead.tar.gz.part"), b"half").unwrap();
        // An archive the index does not name, and an entry without archive.
        std::fs::write(root.join("stray.tar.gz"), b"x").unwrap();
        save(&store, "lost", "s", "main", 10);
        std::fs::remove_file(root.join("lost.tar.gz")).unwrap();
        store.sweep().unwrap();
        assert!(working.path().exists());
        assert!(!root.join("tmp/dead.tar.gz.part").exists());
        assert!(!root.join("stray.tar.gz").exists());
        assert_eq!(keys(&store), ["kept"]);
        // A broken index is started again, and its archives go.
        std::fs::write(root.join(INDEX), b"{not json").unwrap();
        store.sweep().unwrap();
        assert!(keys(&store).is_empty());
        assert!(!root.join("kept.tar.gz").exists());
        drop(working);
    }
}
