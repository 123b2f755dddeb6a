use super::*;
use std::path::PathBuf;
use std::process::Command;

/// A checkout through the mirrors beside `dir`, as the tests before
/// the mirrors called it.
fn checkout(
    url: &str,
    credentials: Option<&Credentials>,
    dir: &Path,
    git_ref: &str,
    commit: Option<&str>,
    cancel: &AtomicBool,
) -> Result<String, Error> {
    let mirrors = Mirrors::new(dir.parent().unwrap().join("mirrors"));
    let source = Source {
        url,
        credentials,
        git_ref,
        commit,
    };
    mirrors
        .checkout(&source, dir, cancel, &mut |_| {})
        .map(|c| c.sha)
}

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
    /// Commit reachable only from `refs/pull/7/head`, as a pull request's head.
    c5: String,
}

/// A bare repo with main = c1 <- c2 (file.txt "one", then "two"), annotated tag v1 and
/// lightweight tag v1-light at c1, branch `other` = c1 <- c3 (file.txt "three"), and
/// c3 <- c4 (file.txt "four") reachable only from tag `detached-tag`, and c2 <- c5
/// (file.txt "five") reachable only from `refs/pull/7/head`.
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

    git(&work, &["checkout", "-q", "--detach", &c2]);
    std::fs::write(work.join("file.txt"), "five\n").unwrap();
    git(&work, &["commit", "-q", "-am", "five"]);
    let c5 = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/pull/7/head"]);

    let url = format!("file://{}", bare.display());
    Fixture {
        _tmp: tmp,
        root,
        url,
        c1,
        c2,
        c3,
        c4,
        c5,
    }
}

impl Fixture {
    /// Checks `git_ref` (at `commit`) out into `co` under the fixture's root.
    fn checkout(&self, git_ref: &str, commit: Option<&str>) -> (PathBuf, Result<String, Error>) {
        let dir = self.root.join("co");
        let got = checkout(
            &self.url,
            None,
            &dir,
            git_ref,
            commit,
            &AtomicBool::new(false),
        );
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
        let got = checkout(
            &self.url,
            None,
            &dir,
            git_ref,
            commit,
            &AtomicBool::new(false),
        );
        assert_eq!(got.unwrap(), sha, "{git_ref} {commit:?}");
        assert_eq!(read(&dir), text);
        assert_clean_at(&dir, sha);
        dir
    }

    /// Expects a checkout to fail, leaving no directory behind.
    fn refused(&self, url: &str, git_ref: &str, commit: Option<&str>) -> Error {
        let dir = self.root.join("co");
        let err = checkout(url, None, &dir, git_ref, commit, &AtomicBool::new(false)).unwrap_err();
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
        format!(
            "commit {missing} not found in {} (its branches, tags and refs/heads/main)",
            f.url
        )
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
    assert!(matches!(err, Error::RefNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("refs/heads/nope not found in {}", f.url)
    );
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
        None,
        &dir,
        "refs/heads/main",
        None,
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(!dir.exists());
}

fn assert_detached(dir: &Path) {
    let sym = Command::new("git")
        .args(["symbolic-ref", "-q", "HEAD"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(!sym.success(), "HEAD is detached in {}", dir.display());
}

#[test]
fn commit_only_on_a_pull_request_ref() {
    let f = fixture();
    // Branches and tags alone do not have it (while the mirror never
    // fetched the pull request's ref).
    let err = f.refused(&f.url, "refs/heads/main", Some(&f.c5));
    assert!(matches!(err, Error::CommitNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "commit {} not found in {} (its branches, tags and refs/heads/main)",
            f.c5, f.url
        )
    );

    let dir = f.expect("pr", "refs/pull/7/head", Some(&f.c5), &f.c5, "five\n");
    assert_detached(&dir);
    assert_eq!(git(&dir, &["rev-parse", "refs/pull/7/head"]), f.c5);
    // Branches are fetched as well.
    f.expect("pr1", "refs/pull/7/head", Some(&f.c3), &f.c3, "three\n");
    // The ref's head when no commit is given.
    let dir = f.expect("pr2", "refs/pull/7/head", None, &f.c5, "five\n");
    assert_detached(&dir);

    // A pull request the remote does not have.
    let err = f.refused(&f.url, "refs/pull/8/head", Some(&f.c5));
    assert!(matches!(err, Error::RefNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("refs/pull/8/head"), "{err}");
}

/// A checkout through `mirrors`, with the notes it made.
fn noted(
    mirrors: &Mirrors,
    url: &str,
    dir: &Path,
    git_ref: &str,
) -> (Result<Checkout, Error>, Vec<String>) {
    let mut notes = Vec::new();
    let source = Source {
        url,
        credentials: None,
        git_ref,
        commit: None,
    };
    let got = mirrors.checkout(&source, dir, &AtomicBool::new(false), &mut |n| {
        notes.push(n.to_owned());
    });
    (got, notes)
}

#[test]
fn the_mirror_fetches_only_what_is_new_and_the_workspace_is_a_clone() {
    let f = fixture();
    let mirrors = Mirrors::new(f.root.join("mirrors"));
    let (got, notes) = noted(&mirrors, &f.url, &f.root.join("a"), "refs/heads/main");
    let got = got.unwrap();
    assert_eq!(got.sha, f.c2);
    assert_eq!(got.default_branch.as_deref(), Some("main"));
    assert!(notes.iter().any(|n| n.starts_with("fetched ")), "{notes:?}");
    let (got, notes) = noted(&mirrors, &f.url, &f.root.join("b"), "refs/heads/main");
    assert_eq!(got.unwrap().sha, f.c2);
    assert_eq!(notes, ["the mirror has every object already"]);

    // One new commit: its commit, tree and blob come, nothing else.
    let work = f.root.join("work");
    git(&work, &["checkout", "-q", "main"]);
    std::fs::write(work.join("file.txt"), "six\n").unwrap();
    git(&work, &["commit", "-q", "-am", "six"]);
    git(&work, &["push", "-q", "origin", "main", ":other"]);
    let c6 = git(&work, &["rev-parse", "HEAD"]);
    let dir = f.root.join("c");
    let (got, notes) = noted(&mirrors, &f.url, &dir, "refs/heads/main");
    assert_eq!(got.unwrap().sha, c6);
    assert_eq!(notes, ["fetched 3 new objects into the mirror"]);

    // As a clone leaves it: origin, its branches (`other` is gone from
    // the remote, so from the mirror too), the tags, a local branch.
    assert_eq!(read(&dir), "six\n");
    assert_clean_at(&dir, &c6);
    assert_eq!(remote_url(&dir), f.url);
    assert_eq!(git(&dir, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(
        git(
            &dir,
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/remotes",
                "refs/tags"
            ]
        ),
        "refs/remotes/origin/HEAD\nrefs/remotes/origin/main\nrefs/tags/detached-tag\nrefs/tags/v1\nrefs/tags/v1-light"
    );
    assert_eq!(
        git(&dir, &["rev-parse", "--abbrev-ref", "main@{upstream}"]),
        "origin/main"
    );
    assert_eq!(
        git(&dir, &["describe", "--tags", "--abbrev=0", "HEAD~1"]),
        "v1"
    );
    assert_eq!(git(&dir, &["log", "--format=%s"]), "six\ntwo\none");
    assert_eq!(
        git(&dir, &["rev-parse", "v1^{}"]),
        f.c1,
        "an annotated tag peels"
    );
    assert!(
        std::fs::read_to_string(dir.join(".git/packed-refs"))
            .unwrap()
            .contains(&format!("refs/tags/v1\n^{}\n", f.c1)),
        "packed with its peeled commit"
    );
    git(&dir, &["fsck", "--no-dangling"]);
    // Copies, not links: nothing a step does in .git reaches the mirror.
    for pack in std::fs::read_dir(dir.join(".git/objects/pack")).unwrap() {
        use std::os::unix::fs::MetadataExt as _;
        let meta = pack.unwrap().metadata().unwrap();
        assert_eq!(meta.nlink(), 1);
    }
}

#[test]
fn a_ref_moved_to_objects_the_mirror_has_moves_in_the_mirror_too() {
    let f = fixture();
    let mirrors = Mirrors::new(f.root.join("mirrors"));
    let (got, _) = noted(&mirrors, &f.url, &f.root.join("a"), "refs/heads/main");
    assert_eq!(got.unwrap().sha, f.c2);
    // No new object: a new branch at c1, `other` moved back to c1.
    let work = f.root.join("work");
    git(
        &work,
        &["push", "-q", "origin", &format!("{}:refs/heads/old", f.c1)],
    );
    git(
        &work,
        &[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("{}:refs/heads/other", f.c1),
        ],
    );
    let dir = f.root.join("b");
    let (got, notes) = noted(&mirrors, &f.url, &dir, "refs/heads/main");
    assert_eq!(got.unwrap().sha, f.c2);
    assert_eq!(notes, ["the mirror has every object already"]);
    assert_eq!(git(&dir, &["rev-parse", "origin/old"]), f.c1);
    assert_eq!(git(&dir, &["rev-parse", "origin/other"]), f.c1);
}

#[test]
fn a_corrupt_mirror_is_discarded_and_cloned_again() {
    let f = fixture();
    let mirrors = Mirrors::new(f.root.join("mirrors"));
    let (got, _) = noted(&mirrors, &f.url, &f.root.join("a"), "refs/heads/main");
    got.unwrap();
    let mirror = mirror::Mirror::of(mirrors.root(), &f.url).dir;
    // Its packs mangled: the objects are unreadable.
    for pack in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
        let path = pack.unwrap().path();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
    }
    let (got, notes) = noted(&mirrors, &f.url, &f.root.join("b"), "refs/heads/main");
    assert_eq!(got.unwrap().sha, f.c2, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("discarding the mirror")),
        "{notes:?}"
    );
    assert_eq!(read(&f.root.join("b")), "two\n");
    // Not a repository at all any more.
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    std::fs::write(mirror.join("HEAD"), b"nonsense").unwrap();
    let (got, notes) = noted(&mirrors, &f.url, &f.root.join("c"), "refs/heads/main");
    assert_eq!(got.unwrap().sha, f.c2, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("discarding the mirror")),
        "{notes:?}"
    );
    // What the remote refuses is not the mirror's fault: it stays.
    let (got, notes) = noted(&mirrors, &f.url, &f.root.join("d"), "refs/heads/nope");
    assert!(matches!(got, Err(Error::RefNotFound { .. })), "{got:?}");
    assert!(
        notes.iter().all(|n| !n.starts_with("discarding")),
        "{notes:?}"
    );
}

#[test]
fn one_fetch_at_a_time_and_checkouts_side_by_side() {
    let f = fixture();
    let mirrors = Mirrors::new(f.root.join("mirrors"));
    std::fs::create_dir_all(mirrors.root()).unwrap();
    // Another process's fetch holds the lock: every checkout waits.
    let held = FileLock::exclusive(&mirrors.lock_path(&f.url)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let (tx, mirrors, url) = (tx.clone(), &mirrors, &f.url);
                let dir = f.root.join(format!("w{i}"));
                s.spawn(move || {
                    let source = Source {
                        url,
                        credentials: None,
                        git_ref: "refs/heads/main",
                        commit: None,
                    };
                    mirrors.checkout(&source, &dir, &AtomicBool::new(false), &mut |n| {
                        let _ = tx.send(n.to_owned());
                    })
                })
            })
            .collect();
        for _ in 0..3 {
            let note = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
            assert_eq!(note, "waiting for another task's fetch of this repository");
        }
        assert!(!mirror::Mirror::of(mirrors.root(), &f.url).dir.exists());
        drop(held);
        for run in runs {
            assert_eq!(run.join().unwrap().unwrap().sha, f.c2);
        }
    });
    // One of them cloned the mirror; the others found it whole.
    let notes: Vec<String> = rx.try_iter().collect();
    let fetched = notes.iter().filter(|n| n.starts_with("fetched ")).count();
    assert_eq!(fetched, 1, "{notes:?}");
}

fn token() -> Credentials {
    Credentials {
        username: "x-access-token".to_owned(),
        password: "s3cr3t-clone-token".to_owned(),
    }
}

fn identity_for(url: &str) -> Option<Identity> {
    let url = gix::url::parse(gix::bstr::BStr::new(url)).expect("a url");
    Identity::for_remote(&url, &token())
}

#[test]
fn credentials_are_for_the_https_host_of_the_repository() {
    for url in [
        "http://github.com/acme/x.git",
        "file:///srv/acme/x.git",
        "git@github.com:acme/x.git",
        "ssh://git@github.com/acme/x.git",
    ] {
        assert!(identity_for(url).is_none(), "{url}");
    }
    let identity = identity_for("https://github.com/acme/x.git").expect("https");
    let cases = [
        ("https://github.com/acme/x.git", true),
        ("https://GitHub.com/acme/other.git", true),
        ("https://github.com:443/acme/x.git", true),
        ("http://github.com/acme/x.git", false),
        ("https://github.com:8443/acme/x.git", false),
        ("https://mirror.example/acme/x.git", false),
        ("https://github.com.example/acme/x.git", false),
        ("file:///github.com/acme/x.git", false),
    ];
    for (asking, want) in cases {
        assert_eq!(identity.is_for(asking.as_bytes()), want, "{asking}");
    }
    assert!(!format!("{:?}", token()).contains("s3cr3t"));
}

#[test]
fn the_helper_answers_the_repository_and_leaves_other_urls_to_the_host() {
    let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let fallback: AuthenticateFn<'static> = {
        let asked = asked.clone();
        Box::new(move |action| {
            let what = match &action {
                Action::Get(c) => format!("get {}", c.url.clone().unwrap_or_default()),
                Action::Store(_) => "store".to_owned(),
                Action::Erase(_) => "erase".to_owned(),
            };
            asked.lock().unwrap().push(what);
            Ok(None)
        })
    };
    let identity = identity_for("https://github.com/acme/x.git").expect("https");
    let mut helper = identity.answering(fallback);

    let answer = helper(Action::get_for_url("https://github.com/acme/x.git"))
        .unwrap()
        .expect("an identity");
    assert_eq!(answer.identity.username, "x-access-token");
    assert_eq!(answer.identity.password, "s3cr3t-clone-token");
    // Accepted: nothing is stored anywhere.
    assert!(helper(answer.next.store()).unwrap().is_none());
    assert!(asked.lock().unwrap().is_empty());

    // Another host asks: the host's configuration answers, and hears back.
    assert!(
        helper(Action::get_for_url("https://mirror.example/acme/x.git"))
            .unwrap()
            .is_none()
    );
    let _ = helper(Action::Erase(
        "url=https://mirror.example/acme/x.git\n".into(),
    ));
    assert_eq!(
        *asked.lock().unwrap(),
        ["get https://mirror.example/acme/x.git", "erase"]
    );
}

/// Set in a child process that runs one test of this module for its
/// parent: what gix reads from the process environment (`GIT_CONFIG_*`,
/// `SSL_CERT_FILE`) is set there, never in this shared process.
const CHILD: &str = "SLIPWAY_GIT_TEST_CHILD";

/// Runs the test `name` of this module in a child process with `env`;
/// the child does its part (it sees [`CHILD`]) and must pass.
fn in_child(name: &str, env: &[(&str, &str)]) {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let test = format!("{module}::{name}");
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        // No prompt, and no host configuration beyond what the test gives.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a child process: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child's part of a test: a checkout as the variables `GIT_TEST_*`
/// say, expected to check out `GIT_TEST_EXPECT` (a sha) or to fail
/// (`fail`).
fn child_checkout() {
    let var = |name: &str| std::env::var(format!("GIT_TEST_{name}")).ok();
    let credentials = var("USERNAME").map(|username| Credentials {
        username,
        password: var("PASSWORD").unwrap_or_default(),
    });
    let (url, dir, git_ref) = (
        var("URL").unwrap(),
        var("DIR").unwrap(),
        var("REF").unwrap(),
    );
    let got = checkout(
        &url,
        credentials.as_ref(),
        Path::new(&dir),
        &git_ref,
        None,
        &AtomicBool::new(false),
    );
    match var("EXPECT").as_deref() {
        Some("fail") => {
            let err = got.unwrap_err().to_string();
            let want = var("ERROR").unwrap_or_default();
            assert!(err.contains(&want), "{err}");
        }
        want => assert_eq!(got.unwrap(), want.unwrap_or_default()),
    }
}

/// Every file under `dir`, read as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&all_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn remote_url(dir: &Path) -> String {
    git(dir, &["config", "--get", "remote.origin.url"])
}

#[test]
fn clone_credentials_answer_an_https_forge_and_stay_out_of_the_checkout() {
    if std::env::var_os(CHILD).is_some() {
        return child_checkout();
    }
    let f = fixture();
    let ca = test_support::tls::TestCa::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = token();
    let (server, tls) = runtime.block_on(async {
        let server =
            test_support::git::GitHttp::start(&f.root, Some((&token.username, &token.password)))
                .await;
        let tls = test_support::tls::tls_proxy(&ca, server.addr).await;
        (server, tls)
    });
    let url = format!("https://127.0.0.1:{}/remote.git", tls.port());
    let dir = f.root.join("private");
    let (dir_s, ca_s) = (dir.display().to_string(), ca.ca.display().to_string());
    let common = [
        ("GIT_TEST_URL", url.as_str()),
        ("GIT_TEST_DIR", dir_s.as_str()),
        ("GIT_TEST_REF", "refs/heads/main"),
        ("SSL_CERT_FILE", ca_s.as_str()),
    ];

    // Without credentials, a private repository is refused.
    in_child(
        "clone_credentials_answer_an_https_forge_and_stay_out_of_the_checkout",
        &[
            &common[..],
            &[
                ("GIT_TEST_EXPECT", "fail"),
                ("GIT_TEST_ERROR", "Failed to obtain credentials"),
            ],
        ]
        .concat(),
    );
    assert!(!dir.exists());
    let requests = server.requests();
    assert!(!requests.is_empty() && requests.iter().all(|r| !r.authorized));

    in_child(
        "clone_credentials_answer_an_https_forge_and_stay_out_of_the_checkout",
        &[
            &common[..],
            &[
                ("GIT_TEST_USERNAME", &token.username),
                ("GIT_TEST_PASSWORD", &token.password),
                ("GIT_TEST_EXPECT", &f.c2),
            ],
        ]
        .concat(),
    );
    assert_eq!(read(&dir), "two\n");
    assert_eq!(remote_url(&dir), url);
    let kept = all_text(&dir.join(".git"));
    assert!(!kept.contains(&token.password), "the token is in .git");
    assert!(!kept.contains(&token.username), "the username is in .git");
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.authorized), "{requests:?}");
    assert!(
        requests.iter().all(|r| !r.target.contains(&token.password)),
        "{requests:?}"
    );
}

#[test]
fn host_git_config_from_the_environment_rewrites_urls() {
    if std::env::var_os(CHILD).is_some() {
        return child_checkout();
    }
    let f = fixture();
    let forge = f.root.join("forge");
    std::fs::create_dir_all(forge.join("acme")).unwrap();
    std::fs::rename(f.root.join("remote.git"), forge.join("acme/hello.git")).unwrap();
    let dir = f.root.join("co");
    let url = "https://github.com/acme/hello.git";
    let base = format!("url.file://{}/.insteadOf", forge.display());
    let dir_s = dir.display().to_string();
    let token = token();
    in_child(
        "host_git_config_from_the_environment_rewrites_urls",
        &[
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", &base),
            ("GIT_CONFIG_VALUE_0", "https://github.com/"),
            ("GIT_TEST_URL", url),
            ("GIT_TEST_DIR", &dir_s),
            ("GIT_TEST_REF", "refs/heads/main"),
            ("GIT_TEST_USERNAME", &token.username),
            ("GIT_TEST_PASSWORD", &token.password),
            ("GIT_TEST_EXPECT", &f.c2),
        ],
    );
    assert_eq!(read(&dir), "two\n");
    // The URL as given, as `git clone` keeps it.
    assert_eq!(remote_url(&dir), url);
}
