//! The build context as the engine receives it: a tar of the context
//! directory without what its `.dockerignore` leaves out, walked as Docker's
//! CLI walks it, and streamed in chunks on a blocking thread so that a large
//! context is never whole in memory.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use futures_util::Stream;
use tokio::sync::mpsc;

use super::ignore::{self, Ignore, IgnoreError, Matched};

/// The size of the pieces the context is streamed in.
const TAR_CHUNK: usize = 64 * 1024;
/// More than any sane `.dockerignore`; a bigger one is refused unread.
const IGNORE_FILE_LIMIT: u64 = 1024 * 1024;

/// Why the context's `.dockerignore` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Pattern(#[from] IgnoreError),
    #[error("cannot read {}: {source}", ignore::FILE)]
    Io {
        #[source]
        source: io::Error,
    },
    #[error("{} resolves outside the build context", ignore::FILE)]
    Outside,
    #[error("{} is larger than {IGNORE_FILE_LIMIT} bytes", ignore::FILE)]
    TooLarge,
}

/// The rules of `context`'s `.dockerignore` (none without one), with the
/// Dockerfile and the `.dockerignore` kept: Docker sends them whatever the
/// patterns say. A `.dockerignore` that is a link must stay in the context.
pub fn read_ignore(context: &Path, dockerfile: &str) -> Result<Ignore, ReadError> {
    let path = context.join(ignore::FILE);
    let io = |source| ReadError::Io { source };
    // Missing, or a link to nothing: no rules, as for Docker.
    let mut rules = match fs::canonicalize(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::none(),
        Err(e) => return Err(io(e)),
        Ok(resolved) => {
            let root = fs::canonicalize(context).map_err(io)?;
            if !resolved.starts_with(&root) {
                return Err(ReadError::Outside);
            }
            let meta = fs::metadata(&resolved).map_err(io)?;
            if meta.len() > IGNORE_FILE_LIMIT {
                return Err(ReadError::TooLarge);
            }
            Ignore::parse(&fs::read(&resolved).map_err(io)?)?
        }
    };
    rules.keep(dockerfile);
    rules.keep(ignore::FILE);
    Ok(rules)
}

/// Tars `context` on a blocking thread without what `rules` leave out,
/// streaming it out in chunks. Symlinks are kept as such, never followed.
pub fn tar_stream(
    context: PathBuf,
    rules: Ignore,
) -> (
    tokio::task::JoinHandle<io::Result<()>>,
    impl Stream<Item = io::Result<Vec<u8>>> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(8);
    let task = tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let written = write_tar(
            &context,
            &rules,
            ChunkWriter {
                tx,
                buf: Vec::with_capacity(TAR_CHUNK),
            },
        )
        .and_then(|mut w| w.flush());
        if let Err(e) = &written {
            // Breaks the upload, so the engine stops waiting for the rest.
            let _ = failed.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        written
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (task, body)
}

/// Writes the tar of `context` to `out`, walking it as Docker's CLI does:
/// each entry matched with what its directory matched; an excluded
/// directory skipped whole unless [`Ignore::enters`] says something in it
/// may be sent, and then walked without its own entry; sockets skipped.
/// Entries are named relative to the context, in name order.
pub fn write_tar<W: Write>(context: &Path, rules: &Ignore, out: W) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    // Root-owned, fixed mtimes: the layer does not depend on who checked out.
    tar.mode(tar::HeaderMode::Deterministic);
    // Directories still to read, with what each matched. A stack rather
    // than recursion: a deep tree cannot exhaust the thread's stack.
    let mut pending: Vec<(PathBuf, Matched)> = vec![(PathBuf::new(), Vec::new())];
    while let Some((dir, matched)) = pending.pop() {
        let mut entries = fs::read_dir(context.join(&dir))?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        let mut below = Vec::new();
        for entry in entries {
            let name = dir.join(entry.file_name());
            let kind = entry.file_type()?;
            let (excluded, own) = rules.excludes(name.as_os_str().as_bytes(), &matched);
            if excluded {
                if kind.is_dir() && rules.enters(name.as_os_str().as_bytes()) {
                    below.push((name, own));
                }
                continue;
            }
            if kind.is_socket() {
                continue;
            }
            tar.append_path_with_name(context.join(&name), &name)?;
            if kind.is_dir() {
                below.push((name, own));
            }
        }
        // Popped in name order.
        pending.extend(below.into_iter().rev());
    }
    tar.into_inner()
}

/// Sends what is written in chunks down a channel.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= TAR_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAR_CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries of the tar of `context` with its `.dockerignore`.
    fn entries(context: &Path, dockerfile: &str) -> Vec<String> {
        let rules = read_ignore(context, dockerfile).unwrap_or_else(|e| panic!("{e}"));
        let tar = write_tar(context, &rules, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                e.path()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    fn files(root: &Path, files: &[&str]) {
        for f in files {
            let path = root.join(f);
            fs::create_dir_all(path.parent().unwrap_or(root)).unwrap_or_else(|e| panic!("{e}"));
            fs::write(path, f).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn without_a_dockerignore_everything_is_sent() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        files(dir.path(), &["Dockerfile", "a/b/c.txt"]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            entries(dir.path(), "Dockerfile"),
            ["Dockerfile", "a", "a/b", "a/b/c.txt", "link"]
        );
    }

    #[test]
    fn links_out_of_the_context_are_sent_as_links_never_followed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        files(dir.path(), &["Dockerfile"]);
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap_or_else(|e| panic!("{e}"));
        let rules = read_ignore(dir.path(), "Dockerfile").unwrap_or_else(|e| panic!("{e}"));
        let tar = write_tar(dir.path(), &rules, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let mut archive = tar::Archive::new(tar.as_slice());
        let kinds: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                let name = e
                    .path()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .display()
                    .to_string();
                (name, e.header().entry_type())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Dockerfile".to_owned(), tar::EntryType::Regular),
                ("root".to_owned(), tar::EntryType::Symlink)
            ]
        );
    }

    #[test]
    fn the_walk_leaves_out_what_the_dockerignore_says() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        files(
            dir.path(),
            &[
                "build/Dockerfile",
                "build/notes.txt",
                "docs/README.md",
                "docs/guide.md",
                "node_modules/x/index.js",
                "src/main.go",
                "secret.env",
                "README.md",
                "CHANGES.md",
            ],
        );
        fs::write(
            dir.path().join(".dockerignore"),
            "# everything the image does not need\n.dockerignore\nbuild\ndocs\n!docs/README.md\nnode_modules\n*.md\n!README.md\nsecret.env\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            entries(dir.path(), "build/Dockerfile"),
            [
                ".dockerignore",
                "README.md",
                "build/Dockerfile",
                "docs/README.md",
                "src",
                "src/main.go"
            ]
        );
    }

    #[test]
    fn a_dockerignore_outside_the_context_or_malformed_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let context = dir.path().join("ctx");
        files(&context, &["Dockerfile"]);
        fs::write(dir.path().join("outside"), "x\n").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("../outside", context.join(".dockerignore"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_ignore(&context, "Dockerfile"),
            Err(ReadError::Outside)
        ));
        fs::remove_file(context.join(".dockerignore")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("nowhere", context.join(".dockerignore"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            read_ignore(&context, "Dockerfile").is_ok(),
            "a dangling link is no rules"
        );
        fs::remove_file(context.join(".dockerignore")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(context.join(".dockerignore"), "ok\n[z-a]\n").unwrap_or_else(|e| panic!("{e}"));
        let e = read_ignore(&context, "Dockerfile").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(".dockerignore line 2: the range z-a of a class runs backwards: \"[z-a]\"")
        );
    }
}
