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
