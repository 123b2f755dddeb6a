//! Commit statuses (forges.md): which status an event sets on which
//! context, how a state reads on GitHub and GitLab, and where a repository
//! URL points on its forge. Pure: the notifier maps events with it, the
//! orchestrator names repositories with it.

use std::fmt;

use crate::workflow::AlertEvent;

/// The forges Slipway reports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    GitHub,
    GitLab,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
        }
    }

    pub fn parse(s: &str) -> Option<Forge> {
        [Forge::GitHub, Forge::GitLab]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// The ref a pull (merge) request's head is fetched from.
    pub fn pull_request_ref(self, number: i64) -> String {
        match self {
            Forge::GitHub => format!("refs/pull/{number}/head"),
            Forge::GitLab => format!("refs/merge-requests/{number}/head"),
        }
    }

    /// The user name a token clones with over https.
    pub fn clone_user(self) -> &'static str {
        match self {
            Forge::GitHub => "x-access-token",
            Forge::GitLab => "oauth2",
        }
    }
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A commit status state, in GitHub's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Success,
    Failure,
    Error,
}

impl State {
    pub const ALL: [State; 4] = [State::Pending, State::Success, State::Failure, State::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// GitLab's state for this one: a pending status that says `running`
    /// is GitLab's `running`.
    pub fn gitlab(self, description: &str) -> &'static str {
        match self {
            State::Pending if description == RUNNING => "running",
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failed",
            State::Error => "canceled",
        }
    }
}

/// The description of a task's status while it runs.
pub const RUNNING: &str = "running";

/// One status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub context: String,
    pub state: State,
    pub description: String,
}

/// What the status mapping reads from an event.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    pub kind: AlertEvent,
    pub workflow: &'a str,
    pub environment: Option<&'a str>,
    /// The task's trigger: deploy-only tasks (`deploy`, `rollback`) set only
    /// their deploy's context, so an approval never turns a finished build
    /// back to pending.
    pub trigger: Option<&'a str>,
    /// `build_failed`: the failed step; `rolled_back`: why.
    pub reason: Option<&'a str>,
    /// `runner_lost`: `requeued` when the task runs again.
    pub outcome: Option<&'a str>,
}

/// The context of a workflow's task status.
pub fn task_context(workflow: &str) -> String {
    format!("slipway/{workflow}")
}

/// The context of a workflow's deploy to `environment`.
pub fn deploy_context(workflow: &str, environment: &str) -> String {
    format!("slipway/{workflow}/deploy/{environment}")
}

/// The status an event sets, if any (forges.md, Commit statuses).
pub fn status_for(e: &EventFacts<'_>) -> Option<Status> {
    let deploy_only = matches!(e.trigger, Some("deploy" | "rollback"));
    let task = |state: State, description: String| {
        (!deploy_only).then(|| Status {
            context: task_context(e.workflow),
            state,
            description,
        })
    };
    let deploy = |state: State, description: &str| {
        e.environment.map(|env| Status {
            context: deploy_context(e.workflow, env),
            state,
            description: description.to_owned(),
        })
    };
    match e.kind {
        AlertEvent::TaskCreated => task(State::Pending, "queued".to_owned()),
        AlertEvent::TaskStarted => task(State::Pending, RUNNING.to_owned()),
        AlertEvent::TaskSucceeded => task(State::Success, "succeeded".to_owned()),
        AlertEvent::BuildFailed => task(
            State::Failure,
            match e.reason {
                Some(step) => format!("failed at step {step}"),
                None => "failed".to_owned(),
            },
        ),
        AlertEvent::TaskCancelled => task(State::Error, "cancelled".to_owned()),
        AlertEvent::RunnerLost if e.outcome == Some("requeued") => {
            task(State::Pending, "queued again: runner lost".to_owned())
        }
        AlertEvent::RunnerLost => task(State::Error, "runner lost".to_owned()),
        AlertEvent::DeployStarted => deploy(State::Pending, "deploying"),
        AlertEvent::DeploySucceeded => deploy(State::Success, "healthy"),
        AlertEvent::DeployFailed => deploy(State::Failure, "deploy failed"),
        AlertEvent::HealthCheckFailed => deploy(State::Failure, "health check failed"),
        AlertEvent::RolledBack => deploy(State::Failure, "rolled back"),
        AlertEvent::DeployTimeout => deploy(State::Failure, "deploy timed out"),
        AlertEvent::AwaitingApproval => deploy(State::Pending, "awaiting approval"),
        // What happens to a running version later is not the commit's check.
        AlertEvent::TaskStuck
        | AlertEvent::WebhookDelayed
        | AlertEvent::HealthDown
        | AlertEvent::HealthRecovered => None,
    }
}

/// Where a repository URL points: its host (lowercase, with a non-default
/// port) and its path without the leading `/` and a trailing `.git`.
/// `https://`, `http://`, `ssh://` and scp-like `git@host:path` URLs.
pub fn repo_location(url: &str) -> Option<(String, String)> {
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git") {
            return None;
        }
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match (scheme, host.rsplit_once(':')) {
            ("https", Some((h, "443"))) | ("http", Some((h, "80"))) | ("ssh", Some((h, "22"))) => h,
            _ => host,
        };
        (host, path)
    } else {
        let (user_host, path) = url.split_once(':')?;
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        (host, path)
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

/// The host of an http(s) URL, lowercase, with a non-default port.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `scheme://host[:port]` of an http(s) URL.
pub fn url_origin(url: &str) -> Option<String> {
    let scheme = url.split_once("://")?.0;
    Some(format!("{scheme}://{}", url_host(url)?))
}

/// The forge a repository URL's host names: GitHub for `github.com`,
/// GitLab for `gitlab.com` and for a self-hosted GitLab named so (a host
/// whose first label is `gitlab`, e.g. `gitlab.example.com`).
pub fn forge_of(repo: &str) -> Option<Forge> {
    let (host, _) = repo_location(repo)?;
    let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    if name == "github.com" {
        Some(Forge::GitHub)
    } else if name == "gitlab.com" || name.starts_with("gitlab.") {
        Some(Forge::GitLab)
    } else {
        None
    }
}

/// The web page of a commit of `repo` on its forge, when [`forge_of`]
/// knows it: `https://github.com/o/r/commit/<sha>`,
/// `https://gitlab.com/g/p/-/commit/<sha>`. The page is on the repository's
/// own origin for an `http(s)://` URL, else on `https://` at its host (an
/// SSH port is not the web's). Only a hex commit makes a link.
pub fn commit_url(repo: &str, sha: &str) -> Option<String> {
    if sha.is_empty() || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let forge = forge_of(repo)?;
    let (host, path) = repo_location(repo)?;
    let origin = match repo.split_once("://") {
        Some((scheme @ ("https" | "http"), _)) => format!("{scheme}://{host}"),
        _ => format!(
            "https://{}",
            host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h)
        ),
    };
    Some(match forge {
        Forge::GitHub => format!("{origin}/{path}/commit/{sha}"),
        Forge::GitLab => format!("{origin}/{path}/-/commit/{sha}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_link_to_their_forge() {
        let sha = "4f1c2a9b3d5e4f1c2a9b3d5e4f1c2a9b3d5e4f1c";
        let cases = [
            (
                "https://github.com/acme/hello.git",
                Some(format!("https://github.com/acme/hello/commit/{sha}")),
            ),
            (
                "git@github.com:acme/hello.git",
                Some(format!("https://github.com/acme/hello/commit/{sha}")),
            ),
            (
                "https://gitlab.com/group/sub/project",
                Some(format!(
                    "https://gitlab.com/group/sub/project/-/commit/{sha}"
                )),
            ),
            (
                "ssh://git@gitlab.example.com:2222/g/p.git",
                Some(format!("https://gitlab.example.com/g/p/-/commit/{sha}")),
            ),
            (
                "http://gitlab.internal:8929/g/p.git",
                Some(format!("http://gitlab.internal:8929/g/p/-/commit/{sha}")),
            ),
            ("https://git.example.com/acme/hello.git", None),
            ("file:///srv/git/hello.git", None),
            ("/srv/git/hello.git", None),
        ];
        for (repo, want) in cases {
            assert_eq!(commit_url(repo, sha), want, "{repo}");
        }
        assert_eq!(
            commit_url("https://github.com/acme/hello", "not-a-sha"),
            None
        );
        assert_eq!(commit_url("https://github.com/acme/hello", ""), None);
    }

    fn facts(kind: AlertEvent) -> EventFacts<'static> {
        EventFacts {
            kind,
            workflow: "hello",
            environment: None,
            trigger: Some("push"),
            reason: None,
            outcome: None,
        }
    }

    /// Context, state and description.
    type Expected<'a> = (&'a str, State, &'a str);

    #[test]
    fn statuses_of_events() {
        let t = "slipway/hello";
        let d = "slipway/hello/deploy/prod";
        let with_env = |kind| EventFacts {
            environment: Some("prod"),
            ..facts(kind)
        };
        let cases: Vec<(EventFacts<'_>, Option<Expected<'_>>)> = vec![
            (
                facts(AlertEvent::TaskCreated),
                Some((t, State::Pending, "queued")),
            ),
            (
                facts(AlertEvent::TaskStarted),
                Some((t, State::Pending, "running")),
            ),
            (
                facts(AlertEvent::TaskSucceeded),
                Some((t, State::Success, "succeeded")),
            ),
            (
                EventFacts {
                    reason: Some("test"),
                    ..facts(AlertEvent::BuildFailed)
                },
                Some((t, State::Failure, "failed at step test")),
            ),
            (
                facts(AlertEvent::BuildFailed),
                Some((t, State::Failure, "failed")),
            ),
            (
                facts(AlertEvent::TaskCancelled),
                Some((t, State::Error, "cancelled")),
            ),
            (
                facts(AlertEvent::RunnerLost),
                Some((t, State::Error, "runner lost")),
            ),
            (
                EventFacts {
                    outcome: Some("requeued"),
                    ..facts(AlertEvent::RunnerLost)
                },
                Some((t, State::Pending, "queued again: runner lost")),
            ),
            (
                with_env(AlertEvent::DeployStarted),
                Some((d, State::Pending, "deploying")),
            ),
            (
                with_env(AlertEvent::DeploySucceeded),
                Some((d, State::Success, "healthy")),
            ),
            (
                with_env(AlertEvent::DeployFailed),
                Some((d, State::Failure, "deploy failed")),
            ),
            (
                with_env(AlertEvent::HealthCheckFailed),
                Some((d, State::Failure, "health check failed")),
            ),
            (
                with_env(AlertEvent::RolledBack),
                Some((d, State::Failure, "rolled back")),
            ),
            (
                with_env(AlertEvent::DeployTimeout),
                Some((d, State::Failure, "deploy timed out")),
            ),
            (
                with_env(AlertEvent::AwaitingApproval),
                Some((d, State::Pending, "awaiting approval")),
            ),
            (facts(AlertEvent::TaskStuck), None),
            (facts(AlertEvent::DeployStarted), None),
            // A deploy-only task reports its deploy only.
            (
                EventFacts {
                    trigger: Some("deploy"),
                    ..facts(AlertEvent::TaskCreated)
                },
                None,
            ),
            (
                EventFacts {
                    trigger: Some("rollback"),
                    ..with_env(AlertEvent::DeploySucceeded)
                },
                Some((d, State::Success, "healthy")),
            ),
        ];
        for (e, want) in cases {
            let got = status_for(&e);
            let got = got
                .as_ref()
                .map(|s| (s.context.as_str(), s.state, s.description.as_str()));
            assert_eq!(got, want, "{:?}", e.kind);
        }
    }

    #[test]
    fn gitlab_states() {
        assert_eq!(State::Pending.gitlab("queued"), "pending");
        assert_eq!(State::Pending.gitlab(RUNNING), "running");
        assert_eq!(State::Success.gitlab(""), "success");
        assert_eq!(State::Failure.gitlab(""), "failed");
        assert_eq!(State::Error.gitlab(""), "canceled");
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn repository_locations() {
        let cases = [
            (
                "https://github.com/acme/hello.git",
                Some(("github.com", "acme/hello")),
            ),
            (
                "https://GitHub.com/Acme/Hello/",
                Some(("github.com", "Acme/Hello")),
            ),
            (
                "https://token@github.com:443/acme/hello",
                Some(("github.com", "acme/hello")),
            ),
            (
                "git@github.com:acme/hello.git",
                Some(("github.com", "acme/hello")),
            ),
            (
                "ssh://git@gitlab.example.com:2222/g/sub/p.git",
                Some(("gitlab.example.com:2222", "g/sub/p")),
            ),
            (
                "http://127.0.0.1:8929/group/project",
                Some(("127.0.0.1:8929", "group/project")),
            ),
            ("file:///srv/git/hello.git", None),
            ("https://github.com/", None),
        ];
        for (url, want) in cases {
            let got = repo_location(url);
            assert_eq!(
                got.as_ref().map(|(h, p)| (h.as_str(), p.as_str())),
                want,
                "{url}"
            );
        }
        assert_eq!(
            url_host("https://api.github.com/x").as_deref(),
            Some("api.github.com")
        );
        assert_eq!(
            url_origin("http://127.0.0.1:9/api/v3").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(url_host("ftp://x"), None);
    }
}
