//! GitHub's `push` payload, read into the fields Slipway needs. Only this
//! module knows GitHub's wire format.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    repository: Repository,
    #[serde(default)]
    commits: Vec<Commit>,
    head_commit: Option<Commit>,
    pusher: Option<Person>,
    sender: Option<Login>,
}

#[derive(Debug, Default, Deserialize)]
struct Repository {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
    html_url: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    author: Option<Person>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Person {
    name: Option<String>,
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Login {
    login: Option<String>,
}

/// GitHub lists at most this many commits in a push; past it the list of
/// changed files is incomplete.
const MAX_LISTED_COMMITS: usize = 2048;

impl Push {
    pub fn into_event(self) -> proto::PushEvent {
        let r = self.repository;
        let repo_urls = [r.clone_url, r.ssh_url, r.git_url, r.html_url, r.url]
            .into_iter()
            .flatten()
            .filter(|u| !u.is_empty())
            .collect();
        let paths_known = !self.commits.is_empty() && self.commits.len() < MAX_LISTED_COMMITS;
        let changed_paths = super::changed_paths(
            self.commits
                .iter()
                .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified)),
        );
        let head = self.head_commit.or_else(|| self.commits.into_iter().last());
        let author = head
            .as_ref()
            .and_then(|c| c.author.as_ref())
            .and_then(|a| a.username.clone().or_else(|| a.name.clone()))
            .or_else(|| self.sender.and_then(|s| s.login))
            .or_else(|| self.pusher.and_then(|p| p.name));
        proto::PushEvent {
            repo_urls,
            git_ref: self.git_ref,
            after: self.after,
            changed_paths,
            paths_known,
            message: head.and_then(|c| c.message),
            author,
        }
    }
}

/// GitHub's `workflow_run` payload: an external CI run that finished.
#[derive(Debug, Deserialize)]
pub struct WorkflowRun {
    action: String,
    workflow_run: Run,
    #[serde(default)]
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Run {
    name: Option<String>,
    conclusion: Option<String>,
    head_sha: String,
    head_branch: Option<String>,
}

impl WorkflowRun {
    /// The event when the run completed successfully; otherwise why not.
    pub fn into_event(self) -> Result<proto::WorkflowRunEvent, String> {
        let conclusion = self.workflow_run.conclusion.unwrap_or_default();
        if self.action != "completed" || conclusion != "success" {
            return Err(format!(
                "workflow_run {} {conclusion} does not deploy",
                self.action
            ));
        }
        let r = self.repository;
        Ok(proto::WorkflowRunEvent {
            repo_urls: [r.clone_url, r.ssh_url, r.git_url, r.html_url, r.url]
                .into_iter()
                .flatten()
                .filter(|u| !u.is_empty())
                .collect(),
            workflow: self.workflow_run.name.unwrap_or_default(),
            head_sha: self.workflow_run.head_sha,
            head_branch: self.workflow_run.head_branch,
        })
    }
}
