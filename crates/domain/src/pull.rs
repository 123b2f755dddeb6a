//! Pull and merge requests as the gateway hands them over (provider-neutral),
//! and whether one triggers a workflow, with the reason when not
//! (forges.md, Triggers).

use crate::push::CommitSha;
use crate::workflow::{ForkPolicy, PullRequestAction, Workflow};

/// A GitHub `pull_request` or GitLab `Merge Request Hook` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// The base repository's URLs.
    pub repo_urls: Vec<String>,
    /// `Err`: an action no workflow can ask for (GitHub's `assigned`, ...),
    /// kept by name for the answer.
    pub action: Result<PullRequestAction, String>,
    /// GitHub's number, GitLab's iid.
    pub number: i64,
    pub title: String,
    /// The pull request's page.
    pub url: String,
    pub head_sha: CommitSha,
    /// `<owner>:<branch>` for a fork.
    pub source_branch: String,
    pub target_branch: String,
    pub draft: bool,
    pub fork: bool,
    /// When the head commit was made, when the provider said.
    pub committed_at: Option<std::time::SystemTime>,
}

/// Why a pull request does not trigger a workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("repository does not match")]
    RepositoryMismatch,
    #[error("no pull_request trigger")]
    NoPullRequestTrigger,
    #[error("pull request action {0} does not match on.pull_request.types")]
    ActionNotMatched(String),
    #[error("target branch {0} does not match on.pull_request.branches")]
    BranchNotMatched(String),
    #[error("draft pull requests do not run")]
    Draft,
    #[error("pull request from a fork")]
    Fork,
}

impl Workflow {
    /// Whether `event` triggers this workflow.
    pub fn match_pull_request(&self, event: &PullRequestEvent) -> Result<(), Ignored> {
        if !event.repo_urls.iter().any(|url| self.repo.matches(url)) {
            return Err(Ignored::RepositoryMismatch);
        }
        let Some(trigger) = &self.on.pull_request else {
            return Err(Ignored::NoPullRequestTrigger);
        };
        match &event.action {
            Ok(action) if trigger.types.contains(action) => {}
            Ok(action) => return Err(Ignored::ActionNotMatched(action.as_str().to_owned())),
            Err(other) => return Err(Ignored::ActionNotMatched(other.clone())),
        }
        if let Some(branches) = &trigger.branches
            && !branches.matches(&event.target_branch)
        {
            return Err(Ignored::BranchNotMatched(event.target_branch.clone()));
        }
        if event.draft && !trigger.drafts {
            return Err(Ignored::Draft);
        }
        if event.fork && trigger.forks == ForkPolicy::Ignore {
            return Err(Ignored::Fork);
        }
        Ok(())
    }
}

/// Whether a push's head commit message asks for no build (`[skip ci]` or
/// `[ci skip]`, as GitHub Actions and GitLab read it).
pub fn skips_ci(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("[skip ci]") || lower.contains("[ci skip]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::parse;

    const SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn workflow(on: &str) -> Workflow {
        let yaml = format!(
            "name: w\nrepo: https://github.com/acme/hello.git\n{on}\nsteps:\n  - name: t\n    run: make\n    image: busybox\n"
        );
        parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn event(action: &str, target: &str, draft: bool, fork: bool) -> PullRequestEvent {
        PullRequestEvent {
            repo_urls: vec!["https://github.com/acme/hello.git".to_owned()],
            action: PullRequestAction::parse(action).ok_or_else(|| action.to_owned()),
            number: 7,
            title: "Add x".to_owned(),
            url: "https://github.com/acme/hello/pull/7".to_owned(),
            head_sha: CommitSha::parse(SHA).unwrap(),
            source_branch: "feature".to_owned(),
            target_branch: target.to_owned(),
            draft,
            fork,
            committed_at: None,
        }
    }

    #[test]
    fn pull_request_matching() {
        let default = "on:\n  pull_request:";
        let filtered = "on:\n  pull_request:\n    branches: [main]\n    types: [opened, closed]\n    drafts: true\n    forks: run";
        let push_only = "on:\n  push:";
        let cases = [
            (default, event("opened", "main", false, false), Ok(())),
            (default, event("synchronize", "dev", false, false), Ok(())),
            (default, event("reopened", "dev", false, false), Ok(())),
            (
                default,
                event("closed", "main", false, false),
                Err(Ignored::ActionNotMatched("closed".into())),
            ),
            (
                default,
                event("assigned", "main", false, false),
                Err(Ignored::ActionNotMatched("assigned".into())),
            ),
            (
                default,
                event("opened", "main", true, false),
                Err(Ignored::Draft),
            ),
            (
                default,
                event("opened", "main", false, true),
                Err(Ignored::Fork),
            ),
            (filtered, event("closed", "main", true, true), Ok(())),
            (
                filtered,
                event("opened", "dev", false, false),
                Err(Ignored::BranchNotMatched("dev".into())),
            ),
            (
                filtered,
                event("synchronize", "main", false, false),
                Err(Ignored::ActionNotMatched("synchronize".into())),
            ),
            (
                push_only,
                event("opened", "main", false, false),
                Err(Ignored::NoPullRequestTrigger),
            ),
        ];
        for (on, e, want) in cases {
            assert_eq!(workflow(on).match_pull_request(&e), want, "{on} {e:?}");
        }
        let mut other = event("opened", "main", false, false);
        other.repo_urls = vec!["https://github.com/acme/other.git".into()];
        assert_eq!(
            workflow(default).match_pull_request(&other),
            Err(Ignored::RepositoryMismatch)
        );
    }

    #[test]
    fn skip_ci_markers() {
        for (message, skip) in [
            ("fix typo [skip ci]", true),
            ("[CI SKIP] docs", true),
            ("docs\n\n[skip ci]", true),
            ("skip ci", false),
            ("[skip-ci]", false),
            ("", false),
        ] {
            assert_eq!(skips_ci(message), skip, "{message}");
        }
    }
}
