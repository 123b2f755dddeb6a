//! Checks a repository out at an exact commit into a task's fresh
//! workspace, through the runner host's mirror of the repository
//! ([`mirror`]): the mirror fetches only what is new (branches, tags, and
//! the one ref a pull request's head lives on), then the workspace is made
//! from it ([`workspace`]) with `origin` set to the repository's URL, as a
//! clone would leave it. The only place that talks to git remotes.
//!
//! One fetch at a time per mirror, across every runner process sharing the
//! data directory, while checkouts from it run side by side (an exclusive
//! and a shared lock on a file beside the mirror). A mirror that turns out
//! unusable is discarded and cloned again; only what the remote refuses
//! fails the clone.
//!
//! The host's git configuration applies as it does to `git clone`: its
//! system and global files, and `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_<n>` /
//! `GIT_CONFIG_VALUE_<n>` from the environment, so `url.<base>.insteadOf`
//! rewrites (mirrors, proxies) and credential helpers work.

mod mirror;
mod workspace;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::credentials::helper::{Action, NextAction};
use gix::credentials::protocol::Outcome;
use gix::remote::AuthenticateFn;

use crate::lock::{FileLock, Kind};

/// A username and password for the repository's `https://` remote (a
/// forge's token), handed to the remote when it asks for credentials. They
/// are never put into a URL, so they reach no git config, log or step.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Errors of [`Mirrors::checkout`]. Messages already contain the whole gix
/// cause chain on one line (`a: b: c`), so causes are kept as text, not as
/// `source()`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid commit id {0:?}: expected 40 hex digits")]
    InvalidCommit(String),
    #[error("invalid url {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("invalid git ref {git_ref:?}: {message}")]
    InvalidRef { git_ref: String, message: String },
    #[error("cannot prepare the checkout into {dir}: {message}")]
    Prepare { dir: String, message: String },
    /// The remote could not be reached, or refused.
    #[error("fetch from {url} failed: {message}")]
    Fetch { url: String, message: String },
    #[error("{git_ref} not found in {url}")]
    RefNotFound { git_ref: String, url: String },
    #[error("commit {sha} not found in {url} (its branches, tags and {git_ref})")]
    CommitNotFound {
        sha: String,
        url: String,
        git_ref: String,
    },
    #[error("object {sha} from {url} is not a commit: {message}")]
    NotACommit {
        sha: String,
        url: String,
        message: String,
    },
    /// The pack came, but could not be stored: the mirror is suspect.
    #[error("fetch from {url} into the mirror failed: {message}")]
    Receive { url: String, message: String },
    /// The mirror could not be opened, read or written.
    #[error("the mirror {dir} is unusable: {message}")]
    Mirror { dir: String, message: String },
    #[error("checkout into {dir} failed: {message}")]
    Checkout { dir: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Whether the mirror may be to blame, so that a fresh one may do
    /// better; the remote's answers and the task's own input are not.
    fn blames_the_mirror(&self) -> bool {
        matches!(
            self,
            Self::Receive { .. } | Self::Mirror { .. } | Self::Checkout { .. }
        )
    }
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

/// What to check out.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The repository's URL, as the workflow names it; `origin` of the
    /// workspace.
    pub url: &'a str,
    /// Given to an `https://` `url` when its own host asks for them, and to
    /// no other URL.
    pub credentials: Option<&'a Credentials>,
    /// A branch `refs/heads/..`, a tag `refs/tags/..`, another full ref such
    /// as a pull request's `refs/pull/7/head`, or `HEAD`.
    pub git_ref: &'a str,
    /// The commit (40 hex digits); `None`: the head of `git_ref`.
    pub commit: Option<&'a str>,
}

/// What a checkout left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The 40-hex sha checked out.
    pub sha: String,
    /// The repository's default branch (its `HEAD`), when the remote says.
    pub default_branch: Option<String>,
    /// The commit's message, author name and committer time, when its
    /// object reads.
    pub message: Option<String>,
    pub author: Option<String>,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Checkout {
    /// The checkout of `sha` in `dir`, with what its commit object says.
    fn read(dir: &Path, sha: gix::ObjectId, default_branch: Option<String>) -> Checkout {
        let mut checkout = Checkout {
            sha: sha.to_string(),
            default_branch,
            message: None,
            author: None,
            committed_at: None,
        };
        let read = gix::open_opts(dir, workspace::open_options())
            .ok()
            .and_then(|repo| {
                let commit = repo.find_commit(sha).ok()?;
                let message = commit.message_raw_sloppy().to_string();
                let author = commit
                    .author()
                    .ok()
                    .map(|a| a.name.to_string().trim().to_owned());
                let at = commit
                    .committer()
                    .ok()
                    .and_then(|c| c.time().ok())
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0));
                Some((message, author, at))
            });
        if let Some((message, author, at)) = read {
            checkout.message = Some(message.trim_end().to_owned()).filter(|m| !m.is_empty());
            checkout.author = author.filter(|a| !a.is_empty());
            checkout.committed_at = at;
        }
        checkout
    }
}

/// The mirrors of one runner host, under `<data_dir>/mirrors`.
#[derive(Debug, Clone)]
pub struct Mirrors {
    root: PathBuf,
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where they live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file whose lock guards the mirror of `url`: exclusive while it
    /// fetches, shared while workspaces are made from it.
    pub fn lock_path(&self, url: &str) -> PathBuf {
        mirror::Mirror::of(&self.root, url).lock
    }

    /// Checks `source` out into `dir` (which must not exist or be empty):
    /// HEAD detached at the commit if one is given; else a branch as a
    /// local branch and any other ref as a detached HEAD at its head. Every
    /// branch of the remote is there as `origin/<branch>`, and every tag.
    /// `dir/.git/config` keeps `source.url` as it is; the credentials are
    /// written nowhere.
    ///
    /// `note` hears what the task's log should say: a wait for another
    /// task's fetch, a mirror discarded.
    ///
    /// Blocking: run it in `spawn_blocking`. Setting `cancel` aborts with
    /// [`Error::Cancelled`]. On any error, `dir` is removed again unless it
    /// held files before.
    pub fn checkout(
        &self,
        source: &Source<'_>,
        dir: &Path,
        cancel: &AtomicBool,
        note: &mut dyn FnMut(&str),
    ) -> Result<Checkout, Error> {
        let wanted = source
            .commit
            .map(|sha| {
                if sha.len() != 40 {
                    return Err(Error::InvalidCommit(sha.to_owned()));
                }
                gix::ObjectId::from_hex(sha.as_bytes())
                    .map_err(|_| Error::InvalidCommit(sha.to_owned()))
            })
            .transpose()?;
        let git_ref: gix::refs::FullName =
            source
                .git_ref
                .try_into()
                .map_err(
                    |e: gix::validate::reference::name::Error| Error::InvalidRef {
                        git_ref: source.git_ref.to_owned(),
                        message: e.to_string(),
                    },
                )?;
        let parsed_url =
            gix::url::parse(gix::bstr::BStr::new(source.url)).map_err(|e| Error::InvalidUrl {
                url: source.url.to_owned(),
                message: e.to_string(),
            })?;
        let identity = source
            .credentials
            .and_then(|c| Identity::for_remote(&parsed_url, c));
        workspace::ensure_empty(dir)?;
        std::fs::create_dir_all(&self.root).map_err(|e| Error::Mirror {
            dir: self.root.display().to_string(),
            message: e.to_string(),
        })?;
        let mirror = mirror::Mirror::of(&self.root, source.url);
        let fetch = mirror::Fetch {
            url: source.url,
            parsed_url: &parsed_url,
            identity: identity.as_ref(),
            git_ref: &git_ref,
            wanted,
        };
        let mut fresh = false;
        loop {
            let fetched = {
                let _fetching = lock(&mirror, Kind::Exclusive, cancel, note)?;
                if fresh {
                    mirror.discard()?;
                }
                mirror.fetch(&fetch, cancel, note)
            };
            let fetched = match fetched {
                Err(e) if e.blames_the_mirror() && !fresh => {
                    discarding(note, &e);
                    fresh = true;
                    continue;
                }
                other => other?,
            };
            let made = {
                let _reading = lock(&mirror, Kind::Shared, cancel, note)?;
                workspace::create(&mirror.dir, source.url, dir, &git_ref, &fetched, cancel)
            };
            match made {
                Ok(()) => {}
                Err(e) if e.blames_the_mirror() && !fresh => {
                    discarding(note, &e);
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if cancel.load(Ordering::Relaxed) {
                workspace::remove(dir);
                return Err(Error::Cancelled);
            }
            return Ok(Checkout::read(dir, fetched.commit, fetched.default_branch));
        }
    }
}

/// Waits for the mirror's lock, saying so when another task holds it.
fn lock(
    mirror: &mirror::Mirror,
    kind: Kind,
    cancel: &AtomicBool,
    note: &mut dyn FnMut(&str),
) -> Result<FileLock, Error> {
    FileLock::wait(&mirror.lock, kind, cancel, || {
        note("waiting for another task's fetch of this repository");
    })
    .map_err(|e| Error::Mirror {
        dir: mirror.dir.display().to_string(),
        message: format!("cannot lock {}: {e}", mirror.lock.display()),
    })?
    .ok_or(Error::Cancelled)
}

/// Says that the mirror goes, and why.
fn discarding(note: &mut dyn FnMut(&str), e: &Error) {
    tracing::warn!(error = %e, "discarding the mirror of a repository and cloning it again");
    note(&format!(
        "discarding the mirror of this repository and cloning it again: {e}"
    ));
}

/// The credentials of a clone and the remote they are for: the scheme
/// (`https` only, so they never travel in clear), host and port of the
/// repository's URL. Asked by any other URL (an `insteadOf` rewrite to a
/// mirror, a redirect to another host), the host's own git configuration
/// answers, as it would without them.
#[derive(Clone)]
struct Identity {
    credentials: Credentials,
    host: String,
    port: Option<u16>,
}

impl Identity {
    /// The identity for `remote`, or `None` when it is not an `https://` URL with a host.
    fn for_remote(remote: &gix::Url, credentials: &Credentials) -> Option<Self> {
        if remote.scheme != gix::url::Scheme::Https {
            return None;
        }
        Some(Self {
            credentials: credentials.clone(),
            host: remote.host()?.to_ascii_lowercase(),
            port: remote.port_or_default(),
        })
    }

    /// Whether `url`, which asks for credentials, is the remote's.
    fn is_for(&self, url: &[u8]) -> bool {
        gix::url::parse(gix::bstr::BStr::new(url)).is_ok_and(|asking| {
            asking.scheme == gix::url::Scheme::Https
                && asking
                    .host()
                    .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
                && asking.port_or_default() == self.port
        })
    }

    /// A credential helper for gix: the identity when the remote asks,
    /// `fallback` (the host's configured helpers) for any other URL. What the
    /// handshake reports afterwards (accepted or rejected) about the
    /// identity is not passed on, so no helper stores it.
    fn answering(self, mut fallback: AuthenticateFn<'static>) -> AuthenticateFn<'static> {
        let mut answered = false;
        Box::new(move |action| match action {
            Action::Get(context) => {
                let asking = context.url.clone().or_else(|| context.to_url());
                answered = asking.is_some_and(|url| self.is_for(&url));
                if !answered {
                    return fallback(Action::Get(context));
                }
                let identity = gix::sec::identity::Account {
                    username: self.credentials.username.clone(),
                    password: self.credentials.password.clone(),
                    oauth_refresh_token: None,
                };
                Ok(Some(Outcome {
                    identity,
                    next: NextAction::from(context),
                }))
            }
            Action::Store(_) | Action::Erase(_) if answered => Ok(None),
            other => fallback(other),
        })
    }
}

#[cfg(test)]
mod tests;
