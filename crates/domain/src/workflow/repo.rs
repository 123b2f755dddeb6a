//! A workflow's repository URL, and whether a URL from a push event names
//! the same repository (workflow.md: scheme, host and path compared
//! case-insensitively, a trailing `.git` and `/` ignored).

use std::fmt;

use super::ValueError;

#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// As the user wrote it: this is what the runner clones.
    original: String,
    key: UrlKey,
}

/// The parts that decide whether two URLs name the same repository.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlKey {
    scheme: String,
    /// Host and non-default port, lowercase; empty for local `file://` paths.
    host: String,
    /// Lowercase, starting with `/`, without trailing `/` and `.git`.
    path: String,
}

impl RepoUrl {
    /// Accepts `http(s)://`, `ssh://`, `git://` and `file://` URLs and the
    /// scp-like `user@host:path` that git and GitHub's `ssh_url` use.
    pub fn parse(s: &str) -> Result<RepoUrl, ValueError> {
        let key = normalise(s).map_err(ValueError::RepoUrl)?;
        Ok(RepoUrl {
            original: s.to_owned(),
            key,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Whether `other` names this repository. URLs of a different scheme do
    /// not match (the contract compares schemes); a push event offers its
    /// repository under several URLs, so a caller tries each of them.
    pub fn matches(&self, other: &str) -> bool {
        normalise(other).is_ok_and(|key| key == self.key)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// Hides a password in the URL: debug output ends up in logs.
impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RepoUrl")
            .field(&crate::mask::redact_url(&self.original))
            .finish()
    }
}

fn default_port(scheme: &str) -> &'static str {
    match scheme {
        "http" => "80",
        "https" => "443",
        "ssh" => "22",
        "git" => "9418",
        _ => "",
    }
}

fn normalise(s: &str) -> Result<UrlKey, &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    let (scheme, host, path) = if let Some((scheme, rest)) = s.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git" | "file") {
            return Err(
                "unsupported scheme: use https://, http://, ssh://, git://, file:// or user@host:path",
            );
        }
        let (authority, mut path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if scheme.starts_with("http") {
            // html_url and friends never carry these, but a pasted browser URL might.
            path = path.split(['?', '#']).next().unwrap_or_default();
        }
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let host = host.to_ascii_lowercase();
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                if port.is_empty() || port == default_port(&scheme) {
                    name.to_owned()
                } else {
                    host.clone()
                }
            }
            _ => host,
        };
        let host = if scheme == "file" {
            if !host.is_empty() && host != "localhost" {
                return Err("file:// URLs must name a local path (file:///path)");
            }
            String::new()
        } else if host.is_empty() {
            return Err("missing host");
        } else {
            host
        };
        (scheme, host, path)
    } else {
        // scp-like: user@host:path, with no slash before the colon.
        let Some((user_host, path)) = s.split_once(':') else {
            return Err("expected https://, http://, ssh://, git://, file:// or user@host:path");
        };
        let Some((user, host)) = user_host.rsplit_once('@') else {
            return Err("expected https://, http://, ssh://, git://, file:// or user@host:path");
        };
        if user.is_empty() || host.is_empty() || user_host.contains('/') {
            return Err("expected https://, http://, ssh://, git://, file:// or user@host:path");
        }
        ("ssh".to_owned(), host.to_ascii_lowercase(), path)
    };
    let path = path.to_lowercase();
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Err("missing repository path");
    }
    Ok(UrlKey {
        scheme,
        host,
        path: format!("/{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let cases = [
            // GitHub's clone_url, html_url, ssh_url and git_url.
            (
                "https://github.com/acme/x.git",
                "https://github.com/acme/x.git",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com/acme/x",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com/Acme/X/",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "HTTPS://GitHub.com/acme/x.git",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "git@github.com:acme/x.git",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "git://github.com/acme/x.git",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "http://github.com/acme/x.git",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com/acme/y.git",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "https://gitlab.com/acme/x.git",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com/acme/x.github",
                false,
            ),
            (
                "https://github.com/acme/x.git",
                "https://token:secret@github.com/acme/x",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com:443/acme/x",
                true,
            ),
            (
                "https://github.com/acme/x.git",
                "https://github.com:8443/acme/x",
                false,
            ),
            ("https://github.com/acme/x.git", "not a url", false),
            (
                "git@github.com:acme/x.git",
                "git@github.com:acme/x.git",
                true,
            ),
            (
                "git@github.com:acme/x.git",
                "ssh://git@github.com/acme/x",
                true,
            ),
            (
                "git@github.com:acme/x.git",
                "ssh://git@github.com:22/acme/x.git",
                true,
            ),
            (
                "git@github.com:acme/x.git",
                "https://github.com/acme/x.git",
                false,
            ),
            (
                "ssh://git@gitlab.example:2222/g/x.git",
                "ssh://git@gitlab.example:2222/g/x",
                true,
            ),
            (
                "ssh://git@gitlab.example:2222/g/x.git",
                "ssh://git@gitlab.example/g/x",
                false,
            ),
            ("file:///srv/git/x.git", "file:///srv/git/x", true),
            ("file:///srv/git/x.git", "file://localhost/srv/git/x/", true),
            ("file:///srv/git/x.git", "file:///srv/git/y", false),
            (
                "https://gitlab.example/group/sub/x.git",
                "https://gitlab.example/group/sub/x",
                true,
            ),
        ];
        for (repo, other, want) in cases {
            let url = RepoUrl::parse(repo).unwrap();
            assert_eq!(url.matches(other), want, "{repo} vs {other}");
        }
    }

    #[test]
    fn validation() {
        for ok in [
            "https://github.com/acme/x.git",
            "http://127.0.0.1:3000/acme/x",
            "ssh://git@host/x",
            "git://host/x.git",
            "file:///srv/git/x.git",
            "git@github.com:acme/x.git",
        ] {
            assert!(RepoUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "github.com/acme/x",
            "ftp://host/x",
            "https://",
            "https:///x",
            "https://github.com/",
            "https://github.com/.git",
            "file://remote/x",
            "git@github.com:",
            "host:path",
            "a/b@host:path",
            "https://github.com/acme/x y",
        ] {
            assert!(RepoUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RepoUrl::parse("ftp://h/x").unwrap_err().to_string(),
            "invalid repository URL: unsupported scheme: use https://, http://, ssh://, git://, file:// or user@host:path"
        );
    }

    #[test]
    fn keeps_original_and_hides_password() {
        let url = RepoUrl::parse("https://bot:hunter2@github.com/acme/x.git").unwrap();
        assert_eq!(url.as_str(), "https://bot:hunter2@github.com/acme/x.git");
        let debug = format!("{url:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("bot:***@github.com/acme/x.git"), "{debug}");
    }
}
