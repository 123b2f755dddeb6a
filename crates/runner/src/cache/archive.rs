//! A cache's archive: the cached paths of a workspace as a gzipped tar,
//! with paths relative to the workspace and symbolic links kept as links.
//!
//! Restoring unpacks into a directory of its own inside the workspace
//! first and moves the paths into place only once the whole archive read
//! well (its gzip checksum included), so a corrupt or truncated archive
//! leaves the workspace as the checkout made it. Neither side follows a
//! symbolic link on the way to a cached path: a repository whose checkout
//! puts a link there cannot make a save read, or a restore write, outside
//! the workspace.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Why a path of a cache is left out.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{0} is not a path inside the workspace")]
    Outside(String),
    #[error("{0} passes through a symbolic link")]
    ThroughLink(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// `rel` (a cache path from the workflow) as plain components, or why not.
fn components(rel: &str) -> Result<Vec<&str>, PathError> {
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => {
                parts.push(
                    part.to_str()
                        .ok_or_else(|| PathError::Outside(rel.to_owned()))?,
                );
            }
            Component::CurDir => {}
            _ => return Err(PathError::Outside(rel.to_owned())),
        }
    }
    if parts.is_empty() {
        // The workspace itself: a restore would overwrite the checkout.
        return Err(PathError::Outside(rel.to_owned()));
    }
    Ok(parts)
}

/// Checks that the directories leading to `rel` under `root` are real
/// directories (creating the missing ones when `create`); returns the full
/// path, or `None` when a directory on the way is missing.
fn reach(root: &Path, rel: &str, create: bool) -> Result<Option<PathBuf>, PathError> {
    let parts = components(rel)?;
    let io_error = |source| PathError::Io {
        path: rel.to_owned(),
        source,
    };
    let mut at = root.to_path_buf();
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        if i == last {
            break;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PathError::ThroughLink(rel.to_owned()));
            }
            Ok(_) => return Err(io_error(io::Error::other("not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&at).map_err(io_error)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(Some(at))
}

/// What a pack put into the archive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Packed {
    /// The cached paths that existed, as the workflow names them.
    pub paths: Vec<String>,
    /// The cached paths left out, and why.
    pub skipped: Vec<(String, String)>,
}

/// Writes the `paths` of `workspace` that exist into `out` as a gzipped
/// tar. Returns which went in; with none, `out` holds an empty archive.
pub fn pack(workspace: &Path, paths: &[String], out: &File) -> io::Result<Packed> {
    // Fast over small: a cache is written after many tasks and read once
    // per task, and the fastest level keeps most of the size gain.
    let encoder = GzEncoder::new(BufWriter::new(out), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let mut packed = Packed::default();
    for rel in paths {
        let full = match reach(workspace, rel, false) {
            Ok(Some(full)) => full,
            Ok(None) => continue,
            Err(e) => {
                packed.skipped.push((rel.clone(), e.to_string()));
                continue;
            }
        };
        let name = components(rel).map_err(io::Error::other)?.join("/");
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => builder.append_dir_all(&name, &full)?,
            Ok(_) => builder.append_path_with_name(&full, &name)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        packed.paths.push(rel.clone());
    }
    let encoder = builder.into_inner()?;
    let mut writer = encoder.finish()?;
    writer.flush()?;
    Ok(packed)
}

/// Why an archive could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is unreadable: drop it.
    #[error("the archive is corrupt: {0}")]
    Corrupt(io::Error),
    /// The workspace could not take it (disk, permissions).
    #[error("{0}")]
    Workspace(io::Error),
    #[error("cancelled")]
    Cancelled,
}

/// Unpacks `archive` into `workspace`, replacing what the cached `paths`
/// hold there; the archive's other entries are ignored. Returns the paths
/// restored and those left out with why.
pub fn unpack(
    archive: File,
    workspace: &Path,
    paths: &[String],
    cancel: &AtomicBool,
) -> Result<Packed, UnpackError> {
    let staging = workspace.join(format!(".slipway-cache-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&staging).map_err(UnpackError::Workspace)?;
    let result = unpack_staged(archive, workspace, &staging, paths, cancel);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn unpack_staged(
    archive: File,
    workspace: &Path,
    staging: &Path,
    paths: &[String],
    cancel: &AtomicBool,
) -> Result<Packed, UnpackError> {
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(archive)));
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    // `unpack` refuses `..` and absolute names and writing through links,
    // and makes directories last so that read-only ones (Go's module cache)
    // do not stop their contents.
    tar.unpack(staging).map_err(|e| match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied => UnpackError::Workspace(e),
        _ => UnpackError::Corrupt(e),
    })?;
    if cancel.load(Ordering::Relaxed) {
        return Err(UnpackError::Cancelled);
    }
    // The whole stream, gzip trailer and all, must have been read well:
    // `entries` stops at the tar's end marker, so drain what follows.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Corrupt)?;

    let mut restored = Packed::default();
    for rel in paths {
        let Ok(parts) = components(rel) else {
            restored
                .skipped
                .push((rel.clone(), PathError::Outside(rel.clone()).to_string()));
            continue;
        };
        let staged = staging.join(parts.join("/"));
        if std::fs::symlink_metadata(&staged).is_err() {
            continue;
        }
        let target = match reach(workspace, rel, true) {
            Ok(Some(target)) => target,
            Ok(None) => continue,
            Err(e) => {
                restored.skipped.push((rel.clone(), e.to_string()));
                continue;
            }
        };
        place(&staged, &target).map_err(UnpackError::Workspace)?;
        restored.paths.push(rel.clone());
    }
    Ok(restored)
}

/// Moves `staged` to `target`: into a missing target as a whole, into a
/// directory entry by entry, over anything else.
fn place(staged: &Path, target: &Path) -> io::Result<()> {
    let staged_is_dir = std::fs::symlink_metadata(staged)?.is_dir();
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(staged, target),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() && staged_is_dir => {
            for entry in std::fs::read_dir(staged)? {
                let entry = entry?;
                place(&entry.path(), &target.join(entry.file_name()))?;
            }
            Ok(())
        }
        Ok(m) => {
            if m.is_dir() {
                std::fs::remove_dir_all(target)?;
            } else {
                std::fs::remove_file(target)?;
            }
            std::fs::rename(staged, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Seek as _};

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn packed(from: &Path, list: &[&str]) -> (tempfile::NamedTempFile, Packed) {
        let out = tempfile::NamedTempFile::new().unwrap();
        let packed = pack(from, &paths(list), out.as_file()).unwrap();
        (out, packed)
    }

    #[test]
    fn a_round_trip_restores_the_paths_over_the_checkout() {
        let from = tempfile::tempdir().unwrap();
        write(from.path(), ".cache/go/a", "a");
        write(from.path(), ".cache/go/sub/b", "b");
        write(from.path(), "single.txt", "one file");
        write(from.path(), "not-cached", "x");
        std::os::unix::fs::symlink("a", from.path().join(".cache/go/link")).unwrap();
        let (archive, got) = packed(from.path(), &["./.cache/go", "single.txt", "absent"]);
        assert_eq!(got.paths, ["./.cache/go", "single.txt"]);

        let to = tempfile::tempdir().unwrap();
        // What the checkout has there is replaced or merged into.
        write(to.path(), ".cache/go/a", "old");
        write(to.path(), ".cache/go/kept", "kept");
        let list = paths(&["./.cache/go", "single.txt", "absent"]);
        let restored = unpack(
            archive.reopen().unwrap(),
            to.path(),
            &list,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(restored.paths, ["./.cache/go", "single.txt"]);
        assert_eq!(read(to.path(), ".cache/go/a"), "a");
        assert_eq!(read(to.path(), ".cache/go/sub/b"), "b");
        assert_eq!(read(to.path(), ".cache/go/kept"), "kept");
        assert_eq!(read(to.path(), "single.txt"), "one file");
        assert_eq!(
            std::fs::read_link(to.path().join(".cache/go/link")).unwrap(),
            Path::new("a")
        );
        assert!(!to.path().join("not-cached").exists());
        let left: Vec<_> = std::fs::read_dir(to.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".slipway-cache"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_corrupt_or_truncated_archive_changes_nothing() {
        let from = tempfile::tempdir().unwrap();
        for i in 0..50 {
            write(from.path(), &format!("c/{i}"), &format!("{i}").repeat(1000));
        }
        let (archive, _) = packed(from.path(), &["c"]);
        let mut bytes = Vec::new();
        archive.reopen().unwrap().read_to_end(&mut bytes).unwrap();
        let damaged = [
            bytes[..bytes.len() / 2].to_vec(),
            bytes[..bytes.len() - 4].to_vec(),
            {
                let mut b = bytes.clone();
                let middle = b.len() / 2;
                b[middle] ^= 0xff;
                b
            },
            b"not an archive at all".to_vec(),
        ];
        for (i, broken) in damaged.iter().enumerate() {
            let to = tempfile::tempdir().unwrap();
            write(to.path(), "c/checked-out", "x");
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(broken).unwrap();
            file.rewind().unwrap();
            let err = unpack(file, to.path(), &paths(&["c"]), &AtomicBool::new(false)).unwrap_err();
            assert!(matches!(err, UnpackError::Corrupt(_)), "case {i}: {err:?}");
            let names: Vec<_> = std::fs::read_dir(to.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["c"], "case {i}");
            assert_eq!(
                std::fs::read_dir(to.path().join("c")).unwrap().count(),
                1,
                "case {i}"
            );
        }
    }

    #[test]
    fn links_on_the_way_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret/key", "do not read");
        let from = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), from.path().join(".cache")).unwrap();
        let (_, got) = packed(from.path(), &[".cache/secret"]);
        assert!(got.paths.is_empty());
        assert_eq!(got.skipped.len(), 1, "{got:?}");

        // A checkout with a link where the cache goes: nothing lands outside.
        let real = tempfile::tempdir().unwrap();
        write(real.path(), ".cache/secret/new", "cached");
        let (archive, _) = packed(real.path(), &[".cache/secret"]);
        let to = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), to.path().join(".cache")).unwrap();
        let restored = unpack(
            archive.reopen().unwrap(),
            to.path(),
            &paths(&[".cache/secret"]),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(restored.paths.is_empty());
        assert!(!outside.path().join("secret/new").exists());
        assert!(
            components("..").is_err() && components(".").is_err() && components("/etc").is_err()
        );
    }
}
