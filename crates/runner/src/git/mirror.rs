//! A repository's mirror on the runner host: a bare repository under
//! `<mirrors>/<hash of the URL>` whose branches and tags follow the
//! remote's (added, moved and removed at each fetch), plus the pull request
//! refs tasks asked for, and whose `HEAD` follows the remote's default
//! branch. A fetch asks the remote only for what the mirror lacks.
//!
//! The caller holds the mirror's lock: exclusive around [`Mirror::fetch`]
//! and [`Mirror::discard`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::{BStr, BString, ByteSlice};
use gix::protocol::handshake::Ref;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};
use gix::remote::Direction;
use sha2::{Digest, Sha256};

use super::{Error, Identity, chain};

/// Where a repository's mirror and its lock live.
#[derive(Debug, Clone)]
pub(super) struct Mirror {
    /// The bare repository.
    pub dir: PathBuf,
    /// Beside it, so that discarding the mirror leaves the lock alone.
    pub lock: PathBuf,
}

/// What a fetch is for.
pub(super) struct Fetch<'a> {
    /// The URL as given, for messages.
    pub url: &'a str,
    pub parsed_url: &'a gix::Url,
    pub identity: Option<&'a Identity>,
    /// The task's ref; it must exist on the remote.
    pub git_ref: &'a FullName,
    /// The commit the task wants, when it names one.
    pub wanted: Option<gix::ObjectId>,
}

/// What a fetch found.
#[derive(Debug, Clone)]
pub(super) struct Fetched {
    /// The commit to check out.
    pub commit: gix::ObjectId,
    /// What the task's ref points to on the remote (a tag object for an
    /// annotated tag), so that the workspace gets it as it was fetched even
    /// if another task moves it in the mirror meanwhile.
    pub ref_target: gix::ObjectId,
    /// The remote's default branch, when it says (`main`).
    pub default_branch: Option<String>,
    /// The task named no commit: it runs its ref's head.
    pub head_run: bool,
}

/// The refs every fetch brings: the remote's branches and tags, as they are.
const MIRRORED: [&str; 2] = ["refs/heads/", "refs/tags/"];

impl Mirror {
    /// The mirror of `url` under `root`.
    pub fn of(root: &Path, url: &str) -> Self {
        let hash = Sha256::digest(url.as_bytes());
        // 128 bits name a mirror well enough, and keep paths short.
        let name = hex::encode(hash.get(..16).unwrap_or(&hash));
        Self {
            dir: root.join(&name),
            lock: root.join(format!("{name}.lock")),
        }
    }

    /// Removes the mirror, so that the next fetch clones anew.
    pub fn discard(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(format!("cannot remove it: {e}"))),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Mirror {
            dir: self.dir.display().to_string(),
            message,
        }
    }

    /// Opens the mirror, or makes it; one that does not open is discarded
    /// first (with a note).
    fn open_or_init(&self, note: &mut dyn FnMut(&str)) -> Result<gix::Repository, Error> {
        if self.dir.exists() {
            match gix::open_opts(&self.dir, super::workspace::open_options()) {
                Ok(repo) if repo.is_bare() => return Ok(repo),
                Ok(_) => super::discarding(note, &self.error("not a bare repository".to_owned())),
                Err(e) => super::discarding(note, &self.error(chain(&e))),
            }
            self.discard()?;
        }
        gix::ThreadSafeRepository::init_opts(
            &self.dir,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            super::workspace::open_options(),
        )
        .map(Into::into)
        .map_err(|e| self.error(format!("cannot create it: {}", chain(&e))))
    }

    /// Fetches what the mirror lacks of the remote's branches and tags and
    /// of the task's ref, then finds the task's commit in it.
    ///
    /// Blocking; the caller holds the exclusive lock.
    pub fn fetch(
        &self,
        f: &Fetch<'_>,
        cancel: &AtomicBool,
        note: &mut dyn FnMut(&str),
    ) -> Result<Fetched, Error> {
        let mut repo = self.open_or_init(note)?;
        // Reflogs of a bare repository need a name, which a runner host
        // need not have configured.
        let _ = repo
            .committer_or_set_generic_fallback()
            .map_err(|e| self.error(chain(&e)))?;
        let fetch_error = |e: gix::Error| {
            if cancel.load(Ordering::Relaxed) || e.is_cancelled() {
                Error::Cancelled
            } else {
                Error::Fetch {
                    url: f.url.to_owned(),
                    message: chain(&e),
                }
            }
        };

        let own = f.git_ref.as_bstr();
        let mut specs: Vec<String> = MIRRORED.iter().map(|p| format!("+{p}*:{p}*")).collect();
        if own != "HEAD" && !MIRRORED.iter().any(|p| own.starts_with(p.as_bytes())) {
            specs.push(format!("+{own}:{own}"));
        }
        // `remote_at` applies the host's `insteadOf` rewrites.
        let remote = repo
            .remote_at(f.parsed_url.clone())
            .and_then(|r| r.with_refspecs(specs.iter().map(String::as_str), Direction::Fetch))
            .map_err(|e| Error::InvalidUrl {
                url: f.url.to_owned(),
                message: chain(&e),
            })?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let mut connection = remote.connect(Direction::Fetch).map_err(fetch_error)?;
        if let Some(identity) = f.identity {
            let fallback = connection.configured_credentials_for_current_url();
            connection.set_credentials(identity.clone().answering(fallback));
        }
        // `HEAD` too, to learn the default branch; it updates no ref.
        let head_spec = gix::refspec::parse("HEAD".into(), gix::refspec::parse::Operation::Fetch)
            .map(|s| s.to_owned())
            .map_err(|e| self.error(e.to_string()))?;
        let options = gix::remote::ref_map::Options {
            extra_refspecs: vec![head_spec],
            ..Default::default()
        };
        let prepared = connection
            .prepare_fetch(gix::progress::Discard, options)
            .map_err(fetch_error)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let advertised = &prepared.ref_map().remote_refs;
        let not_found = || Error::RefNotFound {
            git_ref: own.to_string(),
            url: f.url.to_owned(),
        };
        let (ref_target, ref_peeled) = advertised
            .iter()
            .find_map(|r| tip_of(r, own))
            .ok_or_else(not_found)?;
        let remote_head = advertised.iter().find_map(|r| match r {
            Ref::Symbolic {
                full_ref_name,
                target,
                ..
            } if full_ref_name == "HEAD" => Some(target.clone()),
            _ => None,
        });
        let keep: HashSet<BString> = advertised
            .iter()
            .map(|r| name_of(r).to_owned())
            .filter(|name| MIRRORED.iter().any(|p| name.starts_with(p.as_bytes())))
            .collect();

        if self.is_current(&repo, prepared.ref_map(), f.wanted)? {
            // Nothing to ask for and no ref to move: the connection ends
            // here, and the mirror is left as it is.
            drop(prepared);
            note("the mirror has every object already");
        } else {
            let outcome = prepared
                .with_write_packed_refs_only(true)
                .receive(gix::progress::Discard, cancel)
                .map_err(|e| match fetch_error(e) {
                    Error::Fetch { url, message } => Error::Receive { url, message },
                    other => other,
                })?;
            match outcome.status {
                gix::remote::fetch::Status::Change {
                    write_pack_bundle, ..
                } => note(&format!(
                    "fetched {} new objects into the mirror",
                    write_pack_bundle.index.num_objects
                )),
                gix::remote::fetch::Status::NoPackReceived { .. } => {
                    note("the mirror has every object already");
                }
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        self.prune(&repo, &keep)?;
        if let Some(target) = remote_head {
            self.follow_head(&repo, target.as_bstr())?;
        }

        let commit = match f.wanted {
            Some(id) => {
                let object = repo
                    .try_find_object(id)
                    .map_err(|e| self.error(chain(&e)))?
                    .ok_or_else(|| Error::CommitNotFound {
                        sha: id.to_string(),
                        url: f.url.to_owned(),
                        git_ref: own.to_string(),
                    })?;
                object
                    .peel_to_commit()
                    .map_err(|e| Error::NotACommit {
                        sha: id.to_string(),
                        url: f.url.to_owned(),
                        message: chain(&e),
                    })?
                    .id
            }
            None => {
                let object = repo
                    .try_find_object(ref_peeled)
                    .map_err(|e| self.error(chain(&e)))?
                    .ok_or_else(|| {
                        self.error(format!("the fetched {own} ({ref_peeled}) is missing"))
                    })?;
                object
                    .peel_to_commit()
                    .map_err(|e| Error::NotACommit {
                        sha: ref_peeled.to_string(),
                        url: f.url.to_owned(),
                        message: chain(&e),
                    })?
                    .id
            }
        };
        Ok(Fetched {
            commit,
            ref_target,
            default_branch: default_branch(&repo),
            head_run: f.wanted.is_none(),
        })
    }

    /// Whether every ref the fetch would write already points where the
    /// remote says, and the wanted commit is there: then there is nothing
    /// to receive, and no ref to rewrite.
    fn is_current(
        &self,
        repo: &gix::Repository,
        ref_map: &gix::remote::fetch::RefMap,
        wanted: Option<gix::ObjectId>,
    ) -> Result<bool, Error> {
        if wanted.is_some_and(|id| !repo.has_object(id)) {
            return Ok(false);
        }
        let mut local = HashMap::new();
        let platform = repo.references().map_err(|e| self.error(chain(&e)))?;
        for r in platform.all().map_err(|e| self.error(chain(&e)))? {
            let r = r.map_err(|e| self.error(e.to_string()))?;
            if let Target::Object(id) = r.target().into_owned() {
                local.insert(r.name().as_bstr().to_owned(), id);
            }
        }
        Ok(ref_map.mappings.iter().all(|m| match &m.local {
            None => true,
            Some(name) => m
                .remote
                .as_id()
                .is_some_and(|id| local.get(name).is_some_and(|have| have.as_ref() == id)),
        }))
    }

    /// Deletes the mirror's branches and tags the remote no longer has.
    fn prune(&self, repo: &gix::Repository, keep: &HashSet<BString>) -> Result<(), Error> {
        let mut gone = Vec::new();
        let platform = repo.references().map_err(|e| self.error(chain(&e)))?;
        for prefix in MIRRORED {
            let refs = platform
                .prefixed(prefix)
                .map_err(|e| self.error(chain(&e)))?;
            for r in refs {
                let r = r.map_err(|e| self.error(e.to_string()))?;
                if !keep.contains(r.name().as_bstr()) {
                    gone.push(RefEdit {
                        change: Change::Delete {
                            expected: PreviousValue::Any,
                            log: RefLog::AndReference,
                        },
                        name: r.name().to_owned(),
                        deref: false,
                    });
                }
            }
        }
        if !gone.is_empty() {
            repo.edit_references(gone)
                .map_err(|e| self.error(chain(&e)))?;
        }
        Ok(())
    }

    /// Points the mirror's `HEAD` at the remote's default branch, once the
    /// mirror has it.
    fn follow_head(&self, repo: &gix::Repository, target: &BStr) -> Result<(), Error> {
        if !target.starts_with(b"refs/heads/") {
            return Ok(());
        }
        let Ok(target) = FullName::try_from(target.to_owned()) else {
            return Ok(());
        };
        let current = repo.head_name().map_err(|e| self.error(chain(&e)))?;
        if current.as_ref() == Some(&target) {
            return Ok(());
        }
        let head: FullName = "HEAD"
            .try_into()
            .map_err(|e: gix::validate::reference::name::Error| self.error(e.to_string()))?;
        repo.edit_reference(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "remote HEAD".into(),
                },
                expected: PreviousValue::Any,
                new: Target::Symbolic(target),
            },
            name: head,
            deref: false,
        })
        .map_err(|e| self.error(chain(&e)))?;
        Ok(())
    }
}

/// The name a ref is advertised under.
fn name_of(r: &Ref) -> &BStr {
    match r {
        Ref::Peeled { full_ref_name, .. }
        | Ref::Direct { full_ref_name, .. }
        | Ref::Symbolic { full_ref_name, .. }
        | Ref::Unborn { full_ref_name, .. } => full_ref_name.as_bstr(),
    }
}

/// What `r` points to and the object beneath, when it is `name`.
fn tip_of(r: &Ref, name: &BStr) -> Option<(gix::ObjectId, gix::ObjectId)> {
    if name_of(r) != name {
        return None;
    }
    match r {
        Ref::Peeled { tag, object, .. } => Some((*tag, *object)),
        Ref::Direct { object, .. } => Some((*object, *object)),
        Ref::Symbolic { tag, object, .. } => Some((tag.unwrap_or(*object), *object)),
        Ref::Unborn { .. } => None,
    }
}

/// The branch the mirror's `HEAD` names, when the mirror has it.
fn default_branch(repo: &gix::Repository) -> Option<String> {
    let head = repo.head().ok()?;
    if head.is_unborn() {
        return None;
    }
    let name = head.referent_name()?;
    let branch = name.as_bstr().strip_prefix(b"refs/heads/")?;
    branch.to_str().ok().map(str::to_owned)
}
