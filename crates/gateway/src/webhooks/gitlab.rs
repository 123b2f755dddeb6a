//! GitLab's `Push Hook` / `Tag Push Hook` payload, read into the fields
//! Slipway needs. Only this module knows GitLab's wire format.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    project: Project,
    #[serde(default)]
    repository: Project,
    #[serde(default)]
    commits: Vec<Commit>,
    total_commits_count: Option<usize>,
    user_username: Option<String>,
    user_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Project {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
    homepage: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

impl Push {
    pub fn into_event(self) -> proto::PushEvent {
        let mut repo_urls = Vec::new();
        for p in [self.project, self.repository] {
            repo_urls.extend(
                [p.git_http_url, p.git_ssh_url, p.web_url, p.homepage, p.url]
                    .into_iter()
                    .flatten()
                    .filter(|u| !u.is_empty()),
            );
        }
        repo_urls.dedup();
        // GitLab lists at most 20 commits; beyond that the file list is partial.
        let listed_all = self
            .total_commits_count
            .is_none_or(|total| total <= self.commits.len());
        let paths_known = !self.commits.is_empty() && listed_all;
        let changed_paths = super::changed_paths(
            self.commits
                .iter()
                .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified)),
        );
        let after = self.after;
        let message = self
            .commits
            .iter()
            .find(|c| c.id.as_deref() == Some(after.as_str()))
            .or(self.commits.last())
            .and_then(|c| c.message.clone());
        proto::PushEvent {
            repo_urls,
            git_ref: self.git_ref,
            after,
            changed_paths,
            paths_known,
            message,
            author: self.user_username.or(self.user_name),
        }
    }
}
