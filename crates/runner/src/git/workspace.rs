//! A task's workspace made from the repository's mirror, as a clone would
//! leave it: the mirror's objects copied (never linked, so a step that
//! writes into `.git` cannot reach the mirror other tasks read), the
//! remote's branches as `origin/<branch>`, its tags, `origin` pointing at
//! the repository's URL, and the work tree checked out at the commit.
//! Its files are written straight to their places, with no templates,
//! probes or lock files: nothing else uses the directory yet, and every
//! file made costs the file system an inode, for every task.
//!
//! The caller holds the mirror's shared lock, so no fetch changes the
//! mirror meanwhile.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use std::collections::BTreeMap;

use gix::bstr::{BString, ByteSlice};
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
    // A branch run at its head is checked out as a local branch; a commit
    // or any other ref leaves HEAD detached.
    let local = match (
        fetched.head_run,
        git_ref.as_bstr().strip_prefix(b"refs/heads/"),
    ) {
        (true, Some(branch)) => Some(BString::from(branch)),
        _ => None,
    };
    let git_dir = dir.join(".git");
    skeleton(&git_dir, url, local.as_ref()).map_err(|e| Error::Prepare {
        dir: dir.display().to_string(),
        message: e.to_string(),
    })?;
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
    write_refs(&mirror, &git_dir, git_ref, fetched, local.as_ref())
        .map_err(|e| checkout_error(chain(&e)))?;
    drop(mirror);
    // Opened once everything is written, so that it sees it all.
    let repo = gix::open_opts(dir, open_options()).map_err(|e| checkout_error(chain(&e)))?;
    check_out(&repo, &git_dir, fetched.commit, cancel).map_err(|e| checkout_error(chain(&e)))
}

/// The repository's own files, as few as a working repository needs (no
/// sample hooks, no probes of the file system, no lock files: nothing else
/// uses the directory yet): `objects/pack`, `refs/heads`, `refs/tags`, and
/// the configuration `git clone` writes, with `origin` and the local
/// branch's upstream. Every file and directory made costs the file system
/// an inode to find, and a workspace is made for every task.
fn skeleton(git_dir: &Path, url: &str, local: Option<&BString>) -> std::io::Result<()> {
    for sub in ["objects/pack", "refs/heads", "refs/tags"] {
        std::fs::create_dir_all(git_dir.join(sub))?;
    }
    let mut config = gix::config::File::new(gix::config::file::Metadata::from(
        gix::config::Source::Local,
    ));
    let io = std::io::Error::other;
    {
        let mut core = config.new_section("core", None).map_err(io)?;
        for (key, value) in [
            ("repositoryformatversion", "0"),
            ("filemode", "true"),
            ("bare", "false"),
            ("logallrefupdates", "true"),
        ] {
            core.push(key, Some(value.into())).map_err(io)?;
        }
    }
    {
        let mut remote = config
            .new_section("remote", Some(BString::from("origin")))
            .map_err(io)?;
        remote
            .push("url", Some(url.as_bytes().as_bstr()))
            .map_err(io)?;
        remote
            .push("fetch", Some("+refs/heads/*:refs/remotes/origin/*".into()))
            .map_err(io)?;
    }
    if let Some(branch) = local {
        let mut merge = BString::from("refs/heads/");
        merge.extend_from_slice(branch);
        let mut section = config
            .new_section("branch", Some(branch.clone()))
            .map_err(io)?;
        section.push("remote", Some("origin".into())).map_err(io)?;
        section.push("merge", Some(merge.as_bstr())).map_err(io)?;
    }
    let mut out = Vec::new();
    config.write_to(&mut out)?;
    std::fs::write(git_dir.join("config"), out)
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

/// The workspace's refs, as `git clone` leaves them: the mirror's branches
/// as `origin/<branch>` (and `origin/HEAD`), its tags, the task's own ref
/// when it is neither, and `HEAD`, on the local branch `local` or detached
/// at the commit. All but the symbolic ones in one `packed-refs` file, with
/// annotated tags peeled.
fn write_refs(
    mirror: &gix::Repository,
    git_dir: &Path,
    git_ref: &FullName,
    fetched: &Fetched,
    local: Option<&BString>,
) -> Result<(), gix::Error> {
    let mut refs: BTreeMap<BString, gix::ObjectId> = BTreeMap::new();
    let platform = mirror.references()?;
    for r in platform.prefixed("refs/heads/")? {
        let r = r.map_err(gix::Error::from_error)?;
        let (Target::Object(id), Some(short)) = (
            r.target().into_owned(),
            r.name().as_bstr().strip_prefix(b"refs/heads/"),
        ) else {
            continue;
        };
        refs.insert(remote_name(short), id);
    }
    for r in platform.prefixed("refs/tags/")? {
        let r = r.map_err(gix::Error::from_error)?;
        if let Target::Object(id) = r.target().into_owned() {
            refs.insert(r.name().as_bstr().to_owned(), id);
        }
    }
    let own = git_ref.as_bstr();
    if let Some(short) = own.strip_prefix(b"refs/heads/") {
        // As fetched, even if the mirror's moved since.
        refs.insert(remote_name(short), fetched.ref_target);
    } else if own != "HEAD" {
        refs.insert(own.to_owned(), fetched.ref_target);
    }
    if let Some(branch) = local {
        let mut full = BString::from("refs/heads/");
        full.extend_from_slice(branch);
        refs.insert(full, fetched.commit);
    }
    let mut packed = BString::from("# pack-refs with: peeled fully-peeled sorted \n");
    for (name, id) in &refs {
        packed.extend_from_slice(format!("{id} ").as_bytes());
        packed.extend_from_slice(name);
        packed.push(b'\n');
        if mirror.find_header(*id)?.kind() == gix::object::Kind::Tag {
            let peeled = mirror.find_object(*id)?.peel_tags_to_end()?.id;
            packed.extend_from_slice(format!("^{peeled}\n").as_bytes());
        }
    }
    std::fs::write(git_dir.join("packed-refs"), packed).map_err(gix::Error::from_error)?;

    if let Some(default) = &fetched.default_branch {
        let origin = git_dir.join("refs/remotes/origin");
        std::fs::create_dir_all(&origin).map_err(gix::Error::from_error)?;
        let head = format!("ref: refs/remotes/origin/{default}\n");
        std::fs::write(origin.join("HEAD"), head).map_err(gix::Error::from_error)?;
    }
    let head = match local {
        Some(branch) => format!("ref: refs/heads/{branch}\n"),
        None => format!("{}\n", fetched.commit),
    };
    std::fs::write(git_dir.join("HEAD"), head).map_err(gix::Error::from_error)
}

/// `refs/remotes/origin/<branch>`.
fn remote_name(branch: &[u8]) -> BString {
    let mut name = BString::from("refs/remotes/origin/");
    name.extend_from_slice(branch);
    name
}

/// The work tree and index at `commit`.
fn check_out(
    repo: &gix::Repository,
    git_dir: &Path,
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
    // Straight to its place: no lock, nothing else reads it yet.
    let file = std::fs::File::create(git_dir.join("index")).map_err(gix::Error::from_error)?;
    let mut out = std::io::BufWriter::new(file);
    index
        .write_to(&mut out, Default::default())
        .map_err(gix::Error::from_error)?;
    std::io::Write::flush(&mut out).map_err(gix::Error::from_error)?;
    Ok(())
}
