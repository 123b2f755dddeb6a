//! Push events as the gateway hands them over (provider-neutral), and the
//! decision whether a push triggers a workflow, with the reason when not.

use std::fmt;

use crate::workflow::Workflow;

/// The ref a push updated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GitRef {
    Branch(String),
    Tag(String),
}

impl GitRef {
    /// From `refs/heads/<branch>` or `refs/tags/<tag>`; other refs (notes,
    /// pull request heads) are not pushes a workflow reacts to.
    pub fn parse(full: &str) -> Option<GitRef> {
        if let Some(branch) = full.strip_prefix("refs/heads/") {
            (!branch.is_empty()).then(|| GitRef::Branch(branch.to_owned()))
        } else if let Some(tag) = full.strip_prefix("refs/tags/") {
            (!tag.is_empty()).then(|| GitRef::Tag(tag.to_owned()))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid commit sha {0:?}: expected 40 hex characters")]
pub struct InvalidSha(String);

/// A full SHA-1 commit id, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<CommitSha, InvalidSha> {
        if s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(CommitSha(s.to_ascii_lowercase()))
        } else {
            Err(InvalidSha(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character form used in image tags and `SLIPWAY_COMMIT_SHORT`.
    pub fn short(&self) -> &str {
        // Always 40 ASCII characters, so the slice cannot fail.
        self.0.get(..12).unwrap_or(&self.0)
    }

    /// All zeros: the push deleted the ref.
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// Every URL the provider gave for the repository (GitHub's `clone_url`,
    /// `ssh_url`, `git_url`, `html_url`; GitLab's `git_http_url`, ...).
    pub repo_urls: Vec<String>,
    pub git_ref: GitRef,
    /// All zeros when the push deleted the ref.
    pub after: CommitSha,
    /// `None` when the provider did not say (e.g. a new branch, whose
    /// changes GitHub does not list); path filters then let the push through.
    pub changed_paths: Option<Vec<String>>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// When the head commit was made, when the provider said.
    pub committed_at: Option<std::time::SystemTime>,
}

/// Why a push does not trigger a workflow; shown to users in the delivery
/// log of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("repository does not match")]
    RepositoryMismatch,
    #[error("branch deleted")]
    BranchDeleted,
    #[error("tag deleted")]
    TagDeleted,
    #[error("no push trigger")]
    NoPushTrigger,
    #[error("branch {0} does not match on.push.branches")]
    BranchNotMatched(String),
    #[error("branch pushes do not trigger this workflow")]
    BranchPushesIgnored,
    #[error("tag {0} does not match on.push.tags")]
    TagNotMatched(String),
    #[error("tag pushes do not trigger this workflow")]
    TagPushesIgnored,
    #[error("no changed path matches on.push.paths")]
    NoPathMatched,
}

impl Workflow {
    /// Whether `event` triggers this workflow, following GitHub Actions:
    /// without `branches` and `tags` every branch push triggers and no tag
    /// push does; with only one of them, only that kind of push triggers;
    /// `paths` applies to branch pushes only (GitHub ignores it for tags).
    pub fn match_push(&self, event: &PushEvent) -> Result<(), Ignored> {
        if !event.repo_urls.iter().any(|url| self.repo.matches(url)) {
            return Err(Ignored::RepositoryMismatch);
        }
        if event.after.is_zero() {
            return Err(match event.git_ref {
                GitRef::Branch(_) => Ignored::BranchDeleted,
                GitRef::Tag(_) => Ignored::TagDeleted,
            });
        }
        let Some(push) = &self.on.push else {
            return Err(Ignored::NoPushTrigger);
        };
        match &event.git_ref {
            GitRef::Branch(branch) => {
                match (&push.branches, &push.tags) {
                    (Some(branches), _) if !branches.matches(branch) => {
                        return Err(Ignored::BranchNotMatched(branch.clone()));
                    }
                    (None, Some(_)) => return Err(Ignored::BranchPushesIgnored),
                    _ => {}
                }
                if let (Some(paths), Some(changed)) = (&push.paths, &event.changed_paths)
                    && !changed.iter().any(|path| paths.matches(path))
                {
                    return Err(Ignored::NoPathMatched);
                }
                Ok(())
            }
            GitRef::Tag(tag) => match &push.tags {
                None => Err(Ignored::TagPushesIgnored),
                Some(tags) if !tags.matches(tag) => Err(Ignored::TagNotMatched(tag.clone())),
                Some(_) => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse;

    const SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn workflow(on: &str) -> Workflow {
        let yaml = format!(
            "name: w\nrepo: https://github.com/acme/hello.git\n{on}\nsteps:\n  - name: t\n    run: make\n"
        );
        parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn push(git_ref: &str, after: &str, changed: Option<&[&str]>) -> PushEvent {
        PushEvent {
            repo_urls: vec![
                "https://github.com/acme/hello.git".to_owned(),
                "git@github.com:acme/hello.git".to_owned(),
                "git://github.com/acme/hello.git".to_owned(),
                "https://github.com/acme/hello".to_owned(),
            ],
            git_ref: GitRef::parse(git_ref).unwrap(),
            after: CommitSha::parse(after).unwrap(),
            changed_paths: changed.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            message: None,
            author: None,
            committed_at: None,
        }
    }

    #[test]
    fn git_refs() {
        assert_eq!(
            GitRef::parse("refs/heads/feature/x"),
            Some(GitRef::Branch("feature/x".to_owned()))
        );
        assert_eq!(
            GitRef::parse("refs/tags/v1"),
            Some(GitRef::Tag("v1".to_owned()))
        );
        for other in [
            "refs/heads/",
            "refs/pull/1/head",
            "main",
            "",
            "refs/notes/x",
        ] {
            assert_eq!(GitRef::parse(other), None, "{other}");
        }
    }

    #[test]
    fn commit_shas() {
        let sha = CommitSha::parse("89ABCDEF0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(sha.as_str(), "89abcdef0123456789abcdef0123456789abcdef");
        assert_eq!(sha.short(), "89abcdef0123");
        assert!(!sha.is_zero());
        assert!(CommitSha::parse(ZERO).unwrap().is_zero());
        for bad in [
            "",
            "89abcdef",
            &format!("{SHA}0"),
            &SHA.replace('a', "g"),
            "é".repeat(20).as_str(),
        ] {
            assert!(CommitSha::parse(bad).is_err(), "{bad}");
        }
    }

    /// `on` section, ref, `after`, changed paths, outcome.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a [&'a str]>,
        Result<(), Ignored>,
    );

    #[test]
    fn trigger_matching() {
        let all_branches = "";
        let filtered = "on:\n  push:\n    branches: [main, \"release/*\"]\n    tags: [\"v*\"]\n    paths: [\"src/**\", go.mod]";
        let only_tags = "on:\n  push:\n    tags: [\"v*\"]";
        let only_branches = "on:\n  push:\n    branches: [main]";
        let bare_push = "on:\n  push:";
        let no_push = "on:\n  workflow_run:\n    workflows: [CI]";
        let paths_only = "on:\n  push:\n    paths: [\"src/**\"]";

        let ok = Ok(());
        let src: Option<&[&str]> = Some(&["src/main.go"]);
        let docs: Option<&[&str]> = Some(&["docs/readme.md", "README.md"]);
        let cases: Vec<Case> = vec![
            (all_branches, "refs/heads/main", SHA, None, ok.clone()),
            (all_branches, "refs/heads/feature/x", SHA, docs, ok.clone()),
            (
                all_branches,
                "refs/tags/v1",
                SHA,
                None,
                Err(Ignored::TagPushesIgnored),
            ),
            (
                all_branches,
                "refs/heads/main",
                ZERO,
                None,
                Err(Ignored::BranchDeleted),
            ),
            (
                all_branches,
                "refs/tags/v1",
                ZERO,
                None,
                Err(Ignored::TagDeleted),
            ),
            (filtered, "refs/heads/main", SHA, src, ok.clone()),
            (
                filtered,
                "refs/heads/release/1.0",
                SHA,
                Some(&["go.mod"]),
                ok.clone(),
            ),
            (
                filtered,
                "refs/heads/release/1.0/x",
                SHA,
                src,
                Err(Ignored::BranchNotMatched("release/1.0/x".to_owned())),
            ),
            (
                filtered,
                "refs/heads/feature/x",
                SHA,
                src,
                Err(Ignored::BranchNotMatched("feature/x".to_owned())),
            ),
            (
                filtered,
                "refs/heads/main",
                SHA,
                docs,
                Err(Ignored::NoPathMatched),
            ),
            (
                filtered,
                "refs/heads/main",
                SHA,
                Some(&[]),
                Err(Ignored::NoPathMatched),
            ),
            // Unknown changes: GitHub Actions runs the workflow.
            (filtered, "refs/heads/main", SHA, None, ok.clone()),
            (filtered, "refs/tags/v1.2", SHA, docs, ok.clone()),
            (
                filtered,
                "refs/tags/1.2",
                SHA,
                None,
                Err(Ignored::TagNotMatched("1.2".to_owned())),
            ),
            (only_tags, "refs/tags/v1", SHA, None, ok.clone()),
            (
                only_tags,
                "refs/heads/main",
                SHA,
                None,
                Err(Ignored::BranchPushesIgnored),
            ),
            (only_branches, "refs/heads/main", SHA, None, ok.clone()),
            (
                only_branches,
                "refs/heads/dev",
                SHA,
                None,
                Err(Ignored::BranchNotMatched("dev".to_owned())),
            ),
            (
                only_branches,
                "refs/tags/v1",
                SHA,
                None,
                Err(Ignored::TagPushesIgnored),
            ),
            (bare_push, "refs/heads/dev", SHA, None, ok.clone()),
            (
                bare_push,
                "refs/tags/v1",
                SHA,
                None,
                Err(Ignored::TagPushesIgnored),
            ),
            (
                no_push,
                "refs/heads/main",
                SHA,
                None,
                Err(Ignored::NoPushTrigger),
            ),
            // Deletion is decided before the trigger.
            (
                no_push,
                "refs/heads/main",
                ZERO,
                None,
                Err(Ignored::BranchDeleted),
            ),
            (paths_only, "refs/heads/x", SHA, src, ok.clone()),
            (
                paths_only,
                "refs/heads/x",
                SHA,
                docs,
                Err(Ignored::NoPathMatched),
            ),
        ];
        for (on, git_ref, after, changed, want) in cases {
            let w = workflow(on);
            assert_eq!(
                w.match_push(&push(git_ref, after, changed)),
                want,
                "{on:?} {git_ref} {changed:?}"
            );
        }
    }

    #[test]
    fn repository_is_checked_first() {
        let w = workflow("");
        let mut event = push("refs/heads/main", ZERO, None);
        event.repo_urls = vec!["https://github.com/acme/other.git".to_owned()];
        assert_eq!(w.match_push(&event), Err(Ignored::RepositoryMismatch));
        event.repo_urls.clear();
        assert_eq!(w.match_push(&event), Err(Ignored::RepositoryMismatch));

        // Any one of the offered URLs will do, whatever its scheme.
        let ssh =
            parse("name: w\nrepo: git@github.com:Acme/Hello\nsteps: [{name: t, run: make}]\n")
                .unwrap();
        assert_eq!(ssh.match_push(&push("refs/heads/main", SHA, None)), Ok(()));
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            Ignored::BranchNotMatched("feature/x".to_owned()).to_string(),
            "branch feature/x does not match on.push.branches"
        );
        assert_eq!(
            Ignored::TagNotMatched("v1".to_owned()).to_string(),
            "tag v1 does not match on.push.tags"
        );
        assert_eq!(
            Ignored::TagPushesIgnored.to_string(),
            "tag pushes do not trigger this workflow"
        );
    }
}
