//! Webhook payloads as GitHub and GitLab send them (the fields Slipway
//! reads, plus a few it ignores), and GitHub's signature.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// `sha256=<hex HMAC-SHA256>` of `body`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub `push` payload.
pub fn github_push(
    repo_url: &str,
    git_ref: &str,
    after: &str,
    message: &str,
    files: &[&str],
) -> Value {
    let commits = if after == ZERO_SHA {
        json!([])
    } else {
        json!([{
            "id": after,
            "message": message,
            "author": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
            "added": files,
            "removed": [],
            "modified": [],
        }])
    };
    json!({
        "ref": git_ref,
        "before": ZERO_SHA,
        "after": after,
        "created": false,
        "deleted": after == ZERO_SHA,
        "repository": {
            "id": 1,
            "name": "repo",
            "full_name": "acme/repo",
            "clone_url": repo_url,
            "html_url": "https://github.example/acme/repo",
            "ssh_url": "git@github.example:acme/repo.git",
        },
        "pusher": {"name": "octocat", "email": "octo@example.com"},
        "sender": {"login": "octocat"},
        "head_commit": if after == ZERO_SHA { Value::Null } else { commits[0].clone() },
        "commits": commits,
    })
}

/// A GitLab `Push Hook` payload.
pub fn gitlab_push(repo_url: &str, git_ref: &str, after: &str, message: &str) -> Value {
    json!({
        "object_kind": "push",
        "event_name": "push",
        "before": ZERO_SHA,
        "after": after,
        "ref": git_ref,
        "checkout_sha": after,
        "user_name": "Jane Doe",
        "user_username": "jdoe",
        "project": {
            "name": "repo",
            "web_url": "https://gitlab.example/acme/repo",
            "git_http_url": repo_url,
            "git_ssh_url": "git@gitlab.example:acme/repo.git",
        },
        "commits": [{"id": after, "message": message, "added": ["README.md"], "modified": [], "removed": []}],
        "total_commits_count": 1,
    })
}

/// What a pull (merge) request payload says, for [`github_pull_request`]
/// and [`gitlab_merge_request`].
#[derive(Debug, Clone)]
pub struct PullRequest<'a> {
    /// The base repository's clone URL.
    pub repo_url: &'a str,
    /// GitHub's action (`opened`, `synchronize`, ...) or GitLab's (`open`,
    /// `update`, ...).
    pub action: &'a str,
    pub number: i64,
    pub head_sha: &'a str,
    pub source_branch: &'a str,
    pub target_branch: &'a str,
    pub draft: bool,
    /// The head is in another repository (a fork owned by `forker`).
    pub fork: bool,
}

impl<'a> PullRequest<'a> {
    pub fn new(repo_url: &'a str, action: &'a str, number: i64, head_sha: &'a str) -> Self {
        Self {
            repo_url,
            action,
            number,
            head_sha,
            source_branch: "feature",
            target_branch: "main",
            draft: false,
            fork: false,
        }
    }
}

/// A GitHub `pull_request` payload, shaped as GitHub sends it (the fields
/// Slipway reads, and the usual neighbours).
pub fn github_pull_request(pr: &PullRequest<'_>) -> Value {
    let base_repo = json!({
        "id": 1,
        "name": "repo",
        "full_name": "acme/repo",
        "owner": {"login": "acme", "type": "Organization"},
        "private": false,
        "html_url": "https://github.example/acme/repo",
        "clone_url": pr.repo_url,
        "ssh_url": "git@github.example:acme/repo.git",
    });
    let head_repo = if pr.fork {
        json!({
            "id": 2,
            "name": "repo",
            "full_name": "forker/repo",
            "owner": {"login": "forker", "type": "User"},
            "private": false,
            "html_url": "https://github.example/forker/repo",
            "clone_url": "https://github.example/forker/repo.git",
        })
    } else {
        base_repo.clone()
    };
    let head_owner = if pr.fork { "forker" } else { "acme" };
    json!({
        "action": pr.action,
        "number": pr.number,
        "pull_request": {
            "url": format!("https://api.github.example/repos/acme/repo/pulls/{}", pr.number),
            "id": 1000 + pr.number,
            "html_url": format!("https://github.example/acme/repo/pull/{}", pr.number),
            "number": pr.number,
            "state": if pr.action == "closed" { "closed" } else { "open" },
            "locked": false,
            "title": "Add a feature",
            "user": {"login": head_owner},
            "body": null,
            "draft": pr.draft,
            "merged": false,
            "head": {
                "label": format!("{head_owner}:{}", pr.source_branch),
                "ref": pr.source_branch,
                "sha": pr.head_sha,
                "user": {"login": head_owner},
                "repo": head_repo,
            },
            "base": {
                "label": format!("acme:{}", pr.target_branch),
                "ref": pr.target_branch,
                "sha": ZERO_SHA.replace('0', "1"),
                "user": {"login": "acme"},
                "repo": base_repo.clone(),
            },
        },
        "repository": base_repo,
        "installation": {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg=="},
        "sender": {"login": head_owner},
    })
}

/// A GitLab `Merge Request Hook` payload, shaped as GitLab sends it.
pub fn gitlab_merge_request(pr: &PullRequest<'_>, oldrev: Option<&str>) -> Value {
    let (source_project_id, source_path) = if pr.fork {
        (2, "forker/repo")
    } else {
        (1, "acme/repo")
    };
    let mut attributes = json!({
        "id": 5000 + pr.number,
        "iid": pr.number,
        "target_branch": pr.target_branch,
        "source_branch": pr.source_branch,
        "source_project_id": source_project_id,
        "target_project_id": 1,
        "title": "Add a feature",
        "state": "opened",
        "merge_status": "unchecked",
        "url": format!("https://gitlab.example/acme/repo/-/merge_requests/{}", pr.number),
        "draft": pr.draft,
        "work_in_progress": pr.draft,
        "last_commit": {
            "id": pr.head_sha,
            "message": "Add a feature\n",
            "title": "Add a feature",
            "author": {"name": "Jane Doe", "email": "jane@example.com"},
        },
        "action": pr.action,
    });
    if let Some(oldrev) = oldrev {
        attributes["oldrev"] = json!(oldrev);
    }
    json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Jane Doe", "username": "jdoe"},
        "project": {
            "id": 1,
            "name": "repo",
            "web_url": "https://gitlab.example/acme/repo",
            "git_ssh_url": "git@gitlab.example:acme/repo.git",
            "git_http_url": pr.repo_url,
            "namespace": "acme",
            "path_with_namespace": "acme/repo",
            "default_branch": "main",
        },
        "object_attributes": attributes,
        "source": {
            "name": "repo",
            "web_url": format!("https://gitlab.example/{source_path}"),
            "path_with_namespace": source_path,
            "namespace": source_path.split('/').next(),
        },
        "target": {
            "name": "repo",
            "web_url": "https://gitlab.example/acme/repo",
            "path_with_namespace": "acme/repo",
            "namespace": "acme",
        },
        "repository": {
            "name": "repo",
            "url": "git@gitlab.example:acme/repo.git",
            "homepage": "https://gitlab.example/acme/repo",
        },
    })
}
