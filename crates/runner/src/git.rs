//! Checks out a repository at an exact commit with gix: a full fetch of
//! branches and tags, then HEAD detached at the commit (or the ref head when
//! no commit is known). The only place that talks to git remotes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gix::refs::transaction::{LogChange, PreviousValue, RefEdit, RefLog};

/// Errors of [`checkout`]. Messages already contain the whole gix cause chain on one line
/// (`a: b: c`), so the gix error is kept as a plain field, not as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid commit id {0:?}: expected 40 hex digits")]
    InvalidCommit(String),
    #[error("invalid url {url:?}: {}", chain(.err))]
    InvalidUrl { url: String, err: gix::Error },
    #[error("invalid git ref {git_ref:?}: {}", chain(.err))]
    InvalidRef { git_ref: String, err: gix::Error },
    #[error("cannot prepare clone into {dir}: {}", chain(.err))]
    Prepare { dir: String, err: gix::Error },
    #[error("fetch from {url} failed: {}", chain(.err))]
    Fetch { url: String, err: gix::Error },
    #[error("commit {sha} not found in {url}")]
    CommitNotFound { sha: String, url: String },
    #[error("object {sha} from {url} is not a commit: {}", chain(.err))]
    NotACommit {
        sha: String,
        url: String,
        err: gix::Error,
    },
    #[error("checkout into {dir} failed: {}", chain(.err))]
    Checkout { dir: String, err: gix::Error },
    #[error("cancelled")]
    Cancelled,
}

/// `err` and its `source()` chain on one line, without gix's classification markers and
/// without repeating a message that the next source repeats verbatim.
fn chain(err: &gix::Error) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut next = std::error::Error::source(err);
    while let Some(source) = next {
        next = source.source();
        if source.is::<gix::error::ClassificationMarker>() {
            continue;
        }
        let text = source.to_string();
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
            last = text;
        }
    }
    out
}

/// Clones `url` into `dir` (which must not exist or be empty) and checks out the working tree at
/// `commit` (40-hex) if given, else at the head of `git_ref` (a branch `refs/heads/..` or a tag
/// `refs/tags/..`). Returns the 40-hex sha checked out.
///
/// All branches and tags of the remote are fetched, so `commit` may be anywhere reachable from
/// them, not only on `git_ref`. With `commit` given, `HEAD` ends up detached at it; without it,
/// a branch is checked out as a local branch and a tag as a detached `HEAD`.
///
/// Blocking: run it in `spawn_blocking`. Setting `cancel` aborts the fetch or the checkout with
/// [`Error::Cancelled`]. On any error, `dir` is removed again (gix removes it when it was empty
/// or missing at the start; files that were in it before are left alone).
pub fn checkout(
    url: &str,
    dir: &Path,
    git_ref: &str,
    commit: Option<&str>,
    cancel: &AtomicBool,
) -> Result<String, Error> {
    let wanted = commit
        .map(|sha| {
            if sha.len() != 40 {
                return Err(Error::InvalidCommit(sha.to_owned()));
            }
            gix::ObjectId::from_hex(sha.as_bytes())
                .map_err(|_| Error::InvalidCommit(sha.to_owned()))
        })
        .transpose()?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }

    let parsed_url = gix::url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        err: gix::Error::from_error(e),
    })?;
    let dir_str = dir.display().to_string();
    // `prepare_clone` also reads the git installation's config (it runs `git config -l` once,
    // if a `git` binary is found) so credential helpers etc. work like for `git clone`.
    let prepare = gix::prepare_clone(parsed_url, dir).map_err(|err| Error::Prepare {
        dir: dir_str.clone(),
        err,
    })?;
    // Checks that the ref exists on the remote before the pack is received, and makes it the
    // checked-out ref. The default clone refspecs still fetch all branches and all tags.
    let mut prepare = prepare
        .with_ref_name(Some(git_ref))
        .map_err(|err| Error::InvalidRef {
            git_ref: git_ref.to_owned(),
            err,
        })?;

    let (mut prepare_checkout, _outcome) = prepare
        .fetch_then_checkout(gix::progress::Discard, cancel)
        .map_err(|err| {
            if cancel.load(Ordering::Relaxed) || err.is_cancelled() {
                Error::Cancelled
            } else {
                Error::Fetch {
                    url: url.to_owned(),
                    err,
                }
            }
        })?;
    // From here on, dropping `prepare_checkout` without a finished checkout deletes `dir` again.
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }

    if let Some(id) = wanted {
        let repo = prepare_checkout.repo();
        let not_found = || Error::CommitNotFound {
            sha: id.to_string(),
            url: url.to_owned(),
        };
        let object = repo
            .try_find_object(id)
            .map_err(|err| Error::Checkout {
                dir: dir_str.clone(),
                err,
            })?
            .ok_or_else(not_found)?;
        let commit_id = object
            .peel_to_commit()
            .map_err(|err| Error::NotACommit {
                sha: id.to_string(),
                url: url.to_owned(),
                err,
            })?
            .id;
        // Detach HEAD at the commit (deref is off, so a symbolic HEAD is replaced, the branch
        // it pointed to is left as fetched). `main_worktree()` checks out whatever HEAD is.
        let head: gix::refs::FullName = "HEAD".try_into().map_err(|e| Error::Checkout {
            dir: dir_str.clone(),
            err: gix::Error::from_error(e),
        })?;
        repo.edit_reference(RefEdit::update_with_log(
            head,
            commit_id,
            PreviousValue::Any,
            LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: format!("checkout: moving to {commit_id}").into(),
            },
        ))
        .map_err(|err| Error::Checkout {
            dir: dir_str.clone(),
            err,
        })?;
    }

    let checkout_result = prepare_checkout.main_worktree(gix::progress::Discard, cancel);
    let (repo, _outcome) = checkout_result.map_err(|err| Error::Checkout {
        dir: dir_str.clone(),
        err,
    })?;
    // An interrupted checkout returns Ok with a partial work tree and hands the repository over,
    // so gix no longer cleans up: do it here.
    if cancel.load(Ordering::Relaxed) {
        drop(repo);
        let _ = std::fs::remove_dir_all(dir);
        return Err(Error::Cancelled);
    }
    let head_id = repo.head_id().map_err(|err| Error::Checkout {
        dir: dir_str.clone(),
        err,
    })?;
    Ok(head_id.detach().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// Runs the git CLI isolated from the user's and system config; returns trimmed stdout.
    fn git(cwd: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        url: String,
        c1: String,
        c2: String,
        /// Commit only on branch `other`, not reachable from `main`.
        c3: String,
        /// Commit reachable only from tag `detached-tag`, on no branch.
        c4: String,
    }

    /// A bare repo with main = c1 <- c2 (file.txt "one", then "two"), annotated tag v1 and
    /// lightweight tag v1-light at c1, branch `other` = c1 <- c3 (file.txt "three"), and
    /// c3 <- c4 (file.txt "four") reachable only from tag `detached-tag`.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let bare = root.join("remote.git");
        let work = root.join("work");
        git(
            &root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(&root, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);

        std::fs::write(work.join("file.txt"), "one\n").unwrap();
        git(&work, &["add", "file.txt"]);
        git(&work, &["commit", "-q", "-m", "one"]);
        let c1 = git(&work, &["rev-parse", "HEAD"]);
        git(&work, &["tag", "-a", "v1", "-m", "version 1"]);
        git(&work, &["tag", "v1-light"]);

        std::fs::write(work.join("file.txt"), "two\n").unwrap();
        git(&work, &["commit", "-q", "-am", "two"]);
        let c2 = git(&work, &["rev-parse", "HEAD"]);

        git(&work, &["checkout", "-q", "-b", "other", &c1]);
        std::fs::write(work.join("file.txt"), "three\n").unwrap();
        git(&work, &["commit", "-q", "-am", "three"]);
        let c3 = git(&work, &["rev-parse", "HEAD"]);

        git(&work, &["checkout", "-q", "--detach"]);
        std::fs::write(work.join("file.txt"), "four\n").unwrap();
        git(&work, &["commit", "-q", "-am", "four"]);
        let c4 = git(&work, &["rev-parse", "HEAD"]);
        git(&work, &["tag", "detached-tag"]);

        git(&work, &["push", "-q", "origin", "main", "other", "--tags"]);
        let url = format!("file://{}", bare.display());
        Fixture {
            _tmp: tmp,
            root,
            url,
            c1,
            c2,
            c3,
            c4,
        }
    }

    impl Fixture {
        /// Checks `git_ref` (at `commit`) out into `co` under the fixture's root.
        fn checkout(
            &self,
            git_ref: &str,
            commit: Option<&str>,
        ) -> (PathBuf, Result<String, Error>) {
            let dir = self.root.join("co");
            let got = checkout(&self.url, &dir, git_ref, commit, &AtomicBool::new(false));
            (dir, got)
        }

        /// Checks `git_ref` (at `commit`) out into `name` and expects a clean
        /// tree at `sha` whose file.txt holds `text`; returns the checkout.
        fn expect(
            &self,
            name: &str,
            git_ref: &str,
            commit: Option<&str>,
            sha: &str,
            text: &str,
        ) -> PathBuf {
            let dir = self.root.join(name);
            let got = checkout(&self.url, &dir, git_ref, commit, &AtomicBool::new(false));
            assert_eq!(got.unwrap(), sha, "{git_ref} {commit:?}");
            assert_eq!(read(&dir), text);
            assert_clean_at(&dir, sha);
            dir
        }

        /// Expects a checkout to fail, leaving no directory behind.
        fn refused(&self, url: &str, git_ref: &str, commit: Option<&str>) -> Error {
            let dir = self.root.join("co");
            let err = checkout(url, &dir, git_ref, commit, &AtomicBool::new(false)).unwrap_err();
            assert!(!dir.exists(), "a failed clone is cleaned up: {err}");
            err
        }
    }

    fn assert_clean_at(dir: &Path, sha: &str) {
        assert_eq!(git(dir, &["rev-parse", "HEAD"]), sha);
        assert_eq!(git(dir, &["status", "--porcelain"]), "");
    }

    fn read(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("file.txt")).unwrap()
    }

    #[test]
    fn older_commit_on_branch() {
        let f = fixture();
        let dir = f.expect("co", "refs/heads/main", Some(&f.c1), &f.c1, "one\n");
        // HEAD is detached.
        let sym = Command::new("git")
            .args(["symbolic-ref", "-q", "HEAD"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(!sym.success());
    }

    #[test]
    fn branch_head_without_commit() {
        let f = fixture();
        let dir = f.expect("co", "refs/heads/main", None, &f.c2, "two\n");
        assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    }

    #[test]
    fn head_of_current_commit_given() {
        let f = fixture();
        f.expect("co", "refs/heads/main", Some(&f.c2), &f.c2, "two\n");
    }

    #[test]
    fn annotated_and_lightweight_tags() {
        let f = fixture();
        for (i, tag) in ["refs/tags/v1", "refs/tags/v1-light"]
            .into_iter()
            .enumerate()
        {
            f.expect(&format!("co{i}"), tag, None, &f.c1, "one\n");
        }
    }

    #[test]
    fn commit_on_another_branch() {
        let f = fixture();
        f.expect("co", "refs/heads/main", Some(&f.c3), &f.c3, "three\n");
    }

    #[test]
    fn commit_only_reachable_from_a_tag() {
        let f = fixture();
        f.expect("co", "refs/heads/main", Some(&f.c4), &f.c4, "four\n");
    }

    #[test]
    fn uppercase_commit_is_accepted() {
        let f = fixture();
        let upper = f.c1.to_uppercase();
        let (_, got) = f.checkout("refs/heads/main", Some(&upper));
        assert_eq!(got.unwrap(), f.c1);
    }

    #[test]
    fn missing_commit() {
        let f = fixture();
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let err = f.refused(&f.url, "refs/heads/main", Some(missing));
        assert!(matches!(err, Error::CommitNotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("commit {missing} not found in {}", f.url)
        );
    }

    #[test]
    fn existing_empty_dir_is_fine() {
        let f = fixture();
        std::fs::create_dir(f.root.join("co")).unwrap();
        f.expect("co", "refs/heads/main", Some(&f.c1), &f.c1, "one\n");
    }

    #[test]
    fn non_empty_dir_is_rejected() {
        let f = fixture();
        let dir = f.root.join("co");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep"), "x").unwrap();
        let (_, got) = f.checkout("refs/heads/main", None);
        let err = got.unwrap_err();
        assert!(matches!(err, Error::Prepare { .. }), "{err:?}");
        assert!(dir.join("keep").exists());
    }

    #[test]
    fn missing_branch() {
        let f = fixture();
        let err = f.refused(&f.url, "refs/heads/nope", None);
        assert!(matches!(err, Error::Fetch { .. }), "{err:?}");
        assert!(err.to_string().contains("refs/heads/nope"), "{err}");
    }

    #[test]
    fn missing_remote() {
        let f = fixture();
        let url = format!("file://{}", f.root.join("nope.git").display());
        let err = f.refused(&url, "refs/heads/main", None);
        assert!(matches!(err, Error::Fetch { .. }), "{err:?}");
    }

    #[test]
    fn invalid_ref_and_url() {
        let f = fixture();
        let err = f.refused(&f.url, "refs/heads/a..b", None);
        assert!(matches!(err, Error::InvalidRef { .. }), "{err:?}");
        let err = f.refused("not a url ::", "refs/heads/main", None);
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    }

    #[test]
    fn invalid_commit() {
        let f = fixture();
        for bad in ["abc", "zz23456789abcdef0123456789abcdef01234567"] {
            let err = f.refused(&f.url, "refs/heads/main", Some(bad));
            assert!(matches!(err, Error::InvalidCommit(_)), "{err:?}");
        }
    }

    #[test]
    fn cancelled() {
        let f = fixture();
        let dir = f.root.join("co");
        let err = checkout(
            &f.url,
            &dir,
            "refs/heads/main",
            None,
            &AtomicBool::new(true),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err:?}");
        assert!(!dir.exists());
    }
}
