//! A task's workspace made from the repository's mirror, as a clone would
//! leave it: the mirror's objects copied (never linked, so a step that
//! writes into `.git` cannot reach the mirror other tasks read), the
//! remote's branches as `origin/<branch>`, its tags, `origin` pointing at
//! the repository's URL, and the work tree checked out at the commit.
//!
//! The caller holds the mirror's shared lock, so no fetch changes the
//! mirror meanwhile.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::{BString, ByteSlice};
use gix::refs::file::transaction::PackedRefs;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use super::mirror::Fetched;
use super::{Error, chain};

/// How the mirror and the workspace are opened: trusted fully, with the
/// git installation's configuration read as `git clone` does (so
/// credential helpers, `insteadOf` and checkout settings apply).
pub(super) fn open_options() -> gix::open::Options {
    use gix::sec::trust::DefaultForLevel as _;
    let mut options = gix::open::Options::default_for_level(gix::sec::Trust::Full);
    options.permissions.config.git_binary = true;
    options
}

/// Fails unless `dir` is missing or empty, leaving it as it is.
pub(super) fn ensure_empty(dir: &Path) -> Result<(), Error> {
    let prepare = |message: String| Error::Prepare {
        dir: dir.display().to_string(),
        message,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(prepare("the directory is not empty".to_owned())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(prepare(e.to_string())),
    }
}

/// Removes a workspace that could not be finished.
pub(super) fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Makes the workspace in `dir` (missing or empty) from the mirror in
/// `mirror`; on error `dir` is removed again.
pub(super) fn create(
    mirror: &Path,
    url: &str,
    dir: &Path,
    git_ref: &FullName,
    fetched: &Fetched,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let made = make(mirror, url, dir, git_ref, fetched, cancel);
    if made.is_err() {
        remove(dir);
    }
    made
}

fn make(
    mirror_dir: &Path,
    url: &str,
    dir: &Path,
    git_ref: &FullName,
    fetched: &Fetched,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let checkout_error = |message: String| Error::Checkout {
        dir: dir.display().to_string(),
        message,
    };
    let mirror_error = |message: String| Error::Mirror {
        dir: mirror_dir.display().to_string(),
        message,
    };
    gix::ThreadSafeRepository::init_opts(
        dir,
        gix::create::Kind::WithWorktree,
        gix::create::Options::default(),
        open_options(),
    )
    .map_err(|e| Error::Prepare {
        dir: dir.display().to_string(),
        message: chain(&e),
    })?;
    let git_dir = dir.join(".git");
    copy_objects(
        &mirror_dir.join("objects"),
        &git_dir.join("objects"),
        cancel,
    )
    .map_err(|e| mirror_error(format!("cannot copy its objects: {e}")))?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let mirror = gix::open_opts(mirror_dir, open_options()).map_err(|e| mirror_error(chain(&e)))?;
    // Opened after the copy, so that it sees the objects.
    let mut repo = gix::open_opts(dir, open_options()).map_err(|e| checkout_error(chain(&e)))?;
    // As `git clone` writes its first refs: no reflogs.
    repo.refs.write_reflog = gix::refs::store::WriteReflog::Disable;

    // A branch run at its head is checked out as a local branch; a commit
    // or any other ref leaves HEAD detached.
    let local = match (
        fetched.head_run,
        git_ref.as_bstr().strip_prefix(b"refs/heads/"),
    ) {
        (true, Some(branch)) => Some(BString::from(branch)),
        _ => None,
    };
    write_refs(&mirror, &repo, git_ref, fetched, local.as_ref())
        .map_err(|e| checkout_error(chain(&e)))?;
    write_config(&git_dir, url, local.as_ref())
        .map_err(|e| checkout_error(format!("cannot write .git/config: {e}")))?;
    // Read again: `origin` is configured now.
    let repo = gix::open_opts(dir, open_options()).map_err(|e| checkout_error(chain(&e)))?;
    check_out(&repo, fetched.commit, cancel).map_err(|e| checkout_error(chain(&e)))?;
    drop(mirror);
    Ok(())
}

/// Copies the mirror's packs and loose objects into the workspace. Only
/// objects: `info/alternates` would tie the workspace to the mirror.
fn copy_objects(from: &Path, to: &Path, cancel: &AtomicBool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_loose_dir = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !(is_loose_dir || name == "pack") || !entry.file_type()?.is_dir() {
            continue;
        }
        let target = to.join(name);
        std::fs::create_dir_all(&target)?;
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let file_name = file.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let wanted = if name == "pack" {
                file_name.starts_with("pack-")
                    && [".pack", ".idx", ".rev"]
                        .iter()
                        .any(|ext| file_name.ends_with(ext))
            } else {
                file_name.bytes().all(|b| b.is_ascii_hexdigit())
            };
            if wanted && file.file_type()?.is_file() {
                std::fs::copy(file.path(), target.join(file_name))?;
            }
        }
    }
    Ok(())
}

/// The workspace's refs: the mirror's branches as `origin/<branch>` (and
/// `origin/HEAD`), its tags, the task's own ref when it is neither, and
/// `HEAD`, on the local branch `local` or detached at the commit.
fn write_refs(
    mirror: &gix::Repository,
    repo: &gix::Repository,
    git_ref: &FullName,
    fetched: &Fetched,
    local: Option<&BString>,
) -> Result<(), gix::Error> {
    let update = |name: FullName, new: Target| RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "clone".into(),
            },
            expected: PreviousValue::Any,
            new,
        },
        name,
        deref: false,
    };
    let name =
        |text: &[u8]| FullName::try_from(BString::from(text)).map_err(gix::Error::from_error);
    let mut edits = Vec::new();
    let platform = mirror.references()?;
    for r in platform.prefixed("refs/heads/")? {
        let r = r.map_err(gix::Error::from_error)?;
        let Target::Object(id) = r.target().into_owned() else {
            continue;
        };
        let Some(short) = r.name().as_bstr().strip_prefix(b"refs/heads/") else {
            continue;
        };
        let mut remote = b"refs/remotes/origin/".to_vec();
        remote.extend_from_slice(short);
        edits.push(update(name(&remote)?, Target::Object(id)));
    }
    for r in platform.prefixed("refs/tags/")? {
        let r = r.map_err(gix::Error::from_error)?;
        if let Target::Object(id) = r.target().into_owned() {
            edits.push(update(r.name().to_owned(), Target::Object(id)));
        }
    }
    let own = git_ref.as_bstr();
    if own.starts_with(b"refs/heads/") {
        // As fetched, even if the mirror's moved since.
        let mut remote = b"refs/remotes/origin/".to_vec();
        remote.extend_from_slice(&own[b"refs/heads/".len()..]);
        let remote = name(&remote)?;
        edits.retain(|e| e.name != remote);
        edits.push(update(remote, Target::Object(fetched.ref_target)));
    } else if own != "HEAD" {
        edits.retain(|e| e.name != *git_ref);
        edits.push(update(git_ref.clone(), Target::Object(fetched.ref_target)));
    }
    if let Some(branch) = local {
        let mut full = b"refs/heads/".to_vec();
        full.extend_from_slice(branch);
        edits.push(update(name(&full)?, Target::Object(fetched.commit)));
    }
    repo.refs
        .transaction()
        .packed_refs(
            PackedRefs::DeletionsAndNonSymbolicUpdatesRemoveLooseSourceReference(Box::new(
                repo.objects.clone(),
            )),
        )
        .prepare(
            edits,
            gix::lock::acquire::Fail::Immediately,
            gix::lock::acquire::Fail::Immediately,
        )
        .map_err(gix::Error::from_error)?
        .commit(None)
        .map_err(gix::Error::from_error)?;

    // Symbolic refs stay loose, apart from the packed ones.
    let mut symbolic = Vec::new();
    if let Some(default) = &fetched.default_branch {
        let mut target = b"refs/remotes/origin/".to_vec();
        target.extend_from_slice(default.as_bytes());
        symbolic.push(update(
            name(b"refs/remotes/origin/HEAD")?,
            Target::Symbolic(name(&target)?),
        ));
    }
    let head = match local {
        Some(branch) => {
            let mut full = b"refs/heads/".to_vec();
            full.extend_from_slice(branch);
            Target::Symbolic(name(&full)?)
        }
        None => Target::Object(fetched.commit),
    };
    symbolic.push(update(name(b"HEAD")?, head));
    repo.refs
        .transaction()
        .prepare(
            symbolic,
            gix::lock::acquire::Fail::Immediately,
            gix::lock::acquire::Fail::Immediately,
        )
        .map_err(gix::Error::from_error)?
        .commit(None)
        .map_err(gix::Error::from_error)?;
    Ok(())
}

/// `origin` as `git clone` configures it, and the local branch's upstream.
fn write_config(git_dir: &Path, url: &str, local: Option<&BString>) -> std::io::Result<()> {
    let path = git_dir.join("config");
    let mut config =
        gix::config::File::from_path_no_includes(path.clone(), gix::config::Source::Local)
            .map_err(std::io::Error::other)?;
    {
        let mut remote = config
            .new_section("remote", Some(BString::from("origin")))
            .map_err(std::io::Error::other)?;
        remote
            .push("url", Some(url.as_bytes().as_bstr()))
            .map_err(std::io::Error::other)?;
        remote
            .push("fetch", Some("+refs/heads/*:refs/remotes/origin/*".into()))
            .map_err(std::io::Error::other)?;
    }
    if let Some(branch) = local {
        let mut merge = BString::from("refs/heads/");
        merge.extend_from_slice(branch);
        let mut section = config
            .new_section("branch", Some(branch.clone()))
            .map_err(std::io::Error::other)?;
        section
            .push("remote", Some("origin".into()))
            .map_err(std::io::Error::other)?;
        section
            .push("merge", Some(merge.as_bstr()))
            .map_err(std::io::Error::other)?;
    }
    let mut out = Vec::new();
    config.write_to(&mut out)?;
    let temporary = git_dir.join("config.slipway");
    std::fs::write(&temporary, out)?;
    std::fs::rename(&temporary, &path)
}

/// The work tree and index at `commit`.
fn check_out(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    cancel: &AtomicBool,
) -> Result<(), gix::Error> {
    let Some(workdir) = repo.workdir() else {
        return Err(gix::Error::from_error(std::io::Error::other(
            "the workspace has no work tree",
        )));
    };
    let tree = repo.find_object(commit)?.peel_to_tree()?.id;
    let mut index = repo.index_from_tree(&tree)?;
    let mut options =
        repo.checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?;
    options.destination_is_initially_empty = true;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(gix::Error::from_error)?;
    gix::worktree::state::checkout(
        &mut index,
        workdir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        cancel,
        options,
    )
    .map_err(gix::Error::from_error)?;
    if cancel.load(Ordering::Relaxed) {
        return Ok(());
    }
    index
        .write(Default::default())
        .map_err(gix::Error::from_error)?;
    Ok(())
}
