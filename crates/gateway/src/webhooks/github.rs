//! GitHub's webhook payloads (`push`, `workflow_run`, `pull_request`,
//! `ping`), read into the provider-neutral messages the orchestrator takes.
//! Only this module knows GitHub's wire format.

use serde::Deserialize;

use super::payload::{self, Malformed, Parsed, commit_sha, required, text};

/// The delivery of `event` (`X-GitHub-Event`), read.
pub fn read(event: &str, body: &[u8]) -> Result<Parsed, Malformed> {
    match event {
        "ping" => {
            payload::json(body)?;
            Ok(Parsed {
                pong: true,
                ..Parsed::ignored("ping")
            })
        }
        "push" => payload::read(body, "push", Push::into_parsed),
        "workflow_run" => payload::read(body, "workflow_run", WorkflowRun::into_parsed),
        "pull_request" => payload::read(body, "pull_request", PullRequest::into_parsed),
        other => payload::not_handled(body, other),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Repository {
    /// `owner/name`: where commit statuses go, and how a fork is told from
    /// its base repository.
    full_name: Option<String>,
    /// Owner of a pull request's head repository, who names a fork's branch.
    owner: Option<Login>,
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
    html_url: Option<String>,
    url: Option<String>,
}

impl Repository {
    /// Every URL a workflow's `repo` may be written as.
    fn urls(&self) -> Vec<String> {
        payload::distinct_urls(
            [
                &self.clone_url,
                &self.ssh_url,
                &self.git_url,
                &self.html_url,
                &self.url,
            ]
            .map(Clone::clone),
        )
    }

    /// The repository on GitHub, reached through `installation` when the
    /// delivery came from a GitHub App.
    fn forge(&self, installation: Option<Installation>) -> Option<proto::ForgeRef> {
        Some(proto::ForgeRef {
            forge: "github".to_owned(),
            repo: self.full_name.clone().filter(|n| !n.is_empty())?,
            web_url: None,
            installation_id: installation.and_then(|i| i.id),
        })
    }
}

/// The GitHub App installation a delivery came through: statuses and
/// clones use its tokens.
#[derive(Debug, Deserialize)]
struct Installation {
    id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Login {
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Person {
    name: Option<String>,
    username: Option<String>,
}

/// GitHub's `push` payload, branches and tags alike.
#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    repository: Repository,
    #[serde(default)]
    commits: Vec<Commit>,
    /// The commit the ref points to now; the last listed one when absent.
    head_commit: Option<Commit>,
    installation: Option<Installation>,
    /// Who pushed, when no commit names its author.
    pusher: Option<Person>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    #[serde(default)]
    message: Option<String>,
    /// When it was made, RFC 3339.
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    author: Option<Person>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

/// GitHub lists at most this many commits in a push; past it the list of
/// changed files is incomplete.
const MAX_LISTED_COMMITS: usize = 2048;

impl Push {
    fn into_parsed(self) -> Result<Parsed, String> {
        let forge = self.repository.forge(self.installation);
        let paths_known = !self.commits.is_empty() && self.commits.len() < MAX_LISTED_COMMITS;
        let changed_paths = payload::changed_paths(
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
        let push = proto::PushEvent {
            repo_urls: self.repository.urls(),
            git_ref: self.git_ref,
            after: self.after,
            changed_paths,
            paths_known,
            committed_at: payload::commit_time(head.as_ref().and_then(|c| c.timestamp.as_deref())),
            message: head.and_then(|c| c.message),
            author,
        };
        Ok(Parsed {
            push: Some(push),
            forge,
            ..Parsed::default()
        })
    }
}

/// GitHub's `workflow_run` payload: an external CI run changed state.
#[derive(Debug, Deserialize)]
struct WorkflowRun {
    action: String,
    workflow_run: Run,
    /// The Actions workflow the run belongs to. Its `name` is the one
    /// `on.workflow_run` lists: `workflow_run.name` is the run's display
    /// name, empty in GitHub's own examples.
    workflow: Option<Workflow>,
    #[serde(default)]
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
struct Run {
    name: Option<String>,
    conclusion: Option<String>,
    head_sha: Option<String>,
    head_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Workflow {
    name: Option<String>,
}

impl WorkflowRun {
    /// The event when the run completed successfully; otherwise why it is
    /// ignored.
    fn into_parsed(self) -> Result<Parsed, String> {
        let head_sha = required(self.workflow_run.head_sha, "workflow_run.head_sha")?;
        let forge = self.repository.forge(self.installation);
        let conclusion = self.workflow_run.conclusion.unwrap_or_default();
        if self.action != "completed" || conclusion != "success" {
            return Ok(Parsed {
                forge,
                ..Parsed::ignored(format!(
                    "workflow_run {} {conclusion} does not deploy",
                    self.action
                ))
            });
        }
        let workflow = self
            .workflow
            .and_then(|w| w.name)
            .filter(|n| !n.is_empty())
            .or(self.workflow_run.name)
            .unwrap_or_default();
        let run = proto::WorkflowRunEvent {
            repo_urls: self.repository.urls(),
            workflow,
            head_sha,
            head_branch: self.workflow_run.head_branch,
        };
        Ok(Parsed {
            workflow_run: Some(run),
            forge,
            ..Parsed::default()
        })
    }
}

/// GitHub's `pull_request` payload. Fields are optional here so that a
/// missing one is answered by its path rather than by serde's message.
#[derive(Debug, Deserialize)]
struct PullRequest {
    /// Passed on as GitHub names it: `opened`, `synchronize`, `assigned`, ...
    action: Option<String>,
    number: Option<i64>,
    pull_request: Option<Pull>,
    /// The base repository: workflows match its URLs, statuses go there.
    /// `pull_request.base.repo` when absent.
    repository: Option<Repository>,
    installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
struct Pull {
    /// The payload's `number` again; either will do.
    number: Option<i64>,
    title: Option<String>,
    html_url: Option<String>,
    draft: Option<bool>,
    head: Option<Side>,
    base: Option<Side>,
}

/// One side of a pull request: a branch of a repository.
#[derive(Debug, Deserialize)]
struct Side {
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: Option<String>,
    /// `null` on the head side when the fork it came from was deleted.
    repo: Option<Repository>,
    /// The branch's owner, still named when its repository is gone.
    user: Option<Login>,
}

impl Side {
    /// The head's branch as a task records it, `<owner>:<branch>` for a
    /// fork, and whether it is one: its repository is not `base`, or is gone.
    fn source_branch(&self, base: &str) -> Result<(String, bool), String> {
        let branch = text(self.branch.clone(), "pull_request.head.ref")?;
        let fork = match &self.repo {
            Some(repo) => repo.full_name.as_deref() != Some(base),
            None => true,
        };
        if !fork {
            return Ok((branch, false));
        }
        let owner = self
            .repo
            .as_ref()
            .and_then(|r| r.owner.as_ref())
            .and_then(|o| o.login.clone())
            .or_else(|| self.user.as_ref().and_then(|u| u.login.clone()));
        let owner = text(owner, "pull_request.head.user.login")?;
        Ok((format!("{owner}:{branch}"), true))
    }
}

impl PullRequest {
    fn into_parsed(self) -> Result<Parsed, String> {
        let action = text(self.action, "action")?;
        let pull = required(self.pull_request, "pull_request")?;
        let number = required(self.number.or(pull.number), "number")?;
        let head = required(pull.head, "pull_request.head")?;
        let base = required(pull.base, "pull_request.base")?;
        let target_branch = text(base.branch, "pull_request.base.ref")?;
        let repository = self.repository.or(base.repo).unwrap_or_default();
        let base_name = text(repository.full_name.clone(), "repository.full_name")?;
        let (source_branch, fork) = head.source_branch(&base_name)?;
        let head_sha = commit_sha(head.sha, "pull_request.head.sha")?;
        let repo_urls = repository.urls();
        if repo_urls.is_empty() {
            return Err("missing repository.clone_url".to_owned());
        }
        let event = proto::PullRequestEvent {
            repo_urls,
            action,
            number,
            title: text(pull.title, "pull_request.title")?,
            url: text(pull.html_url, "pull_request.html_url")?,
            head_sha,
            source_branch,
            target_branch,
            draft: pull.draft.unwrap_or(false),
            fork,
            // GitHub's pull request payload gives no commit time: the clone does.
            committed_at: None,
        };
        Ok(Parsed {
            pull_request: Some(event),
            forge: repository.forge(self.installation),
            ..Parsed::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::webhooks::payload::testing::{Patch, patched};

    const OPENED: &str = include_str!("fixtures/github/pull_request.opened.json");
    const OPENED_INSTALLED: &str =
        include_str!("fixtures/github/pull_request.opened.with-installation.json");
    const OPENED_FORK: &str = include_str!("fixtures/github/pull_request.opened.fork.json");
    const SYNCHRONIZE: &str =
        include_str!("fixtures/github/pull_request.synchronize.with-installation.json");
    const CLOSED: &str = include_str!("fixtures/github/pull_request.closed.with-installation.json");
    const TO_DRAFT: &str = include_str!("fixtures/github/pull_request.converted_to_draft.json");
    const READY: &str = include_str!("fixtures/github/pull_request.ready_for_review.json");
    const PUSH: &str = include_str!("fixtures/github/push.with-installation.json");
    const PUSH_TAG: &str = include_str!("fixtures/github/push.tag.json");
    const WORKFLOW_RUN: &str = include_str!("fixtures/github/workflow_run.completed.json");

    /// The head of pull request 2 in every example.
    const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn parsed(event: &str, body: &str) -> Parsed {
        read(event, body.as_bytes()).unwrap_or_else(|e| panic!("{event}: {e}"))
    }

    fn hello_world_urls() -> Vec<String> {
        [
            "https://github.com/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
            "git://github.com/Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
            "https://api.github.com/repos/Codertocat/Hello-World",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Pull request 2 of the examples, as the orchestrator gets it.
    fn pull_request_2(action: &str) -> proto::PullRequestEvent {
        proto::PullRequestEvent {
            repo_urls: hello_world_urls(),
            action: action.to_owned(),
            number: 2,
            title: "Update the README with new information.".to_owned(),
            url: "https://github.com/Codertocat/Hello-World/pull/2".to_owned(),
            head_sha: HEAD.to_owned(),
            source_branch: "changes".to_owned(),
            target_branch: "master".to_owned(),
            draft: false,
            fork: false,
            committed_at: None,
        }
    }

    fn hello_world(installation_id: Option<i64>) -> Option<proto::ForgeRef> {
        Some(proto::ForgeRef {
            forge: "github".to_owned(),
            repo: "Codertocat/Hello-World".to_owned(),
            web_url: None,
            installation_id,
        })
    }

    #[test]
    fn pull_requests_of_the_examples() {
        let fork = proto::PullRequestEvent {
            source_branch: "Forkercat:changes".to_owned(),
            fork: true,
            ..pull_request_2("opened")
        };
        let cases: [(&str, &[Patch], proto::PullRequestEvent, Option<i64>); 11] = [
            (OPENED, &[], pull_request_2("opened"), None),
            (OPENED_INSTALLED, &[], pull_request_2("opened"), Some(1)),
            (SYNCHRONIZE, &[], pull_request_2("synchronize"), Some(1)),
            (CLOSED, &[], pull_request_2("closed"), Some(1)),
            (
                TO_DRAFT,
                &[],
                proto::PullRequestEvent {
                    draft: true,
                    ..pull_request_2("converted_to_draft")
                },
                None,
            ),
            (READY, &[], pull_request_2("ready_for_review"), None),
            (OPENED_FORK, &[], fork.clone(), None),
            // A fork deleted since: its owner is still the head's user.
            (
                OPENED,
                &[("/pull_request/head/repo", Value::Null)],
                proto::PullRequestEvent {
                    source_branch: "Codertocat:changes".to_owned(),
                    fork: true,
                    ..pull_request_2("opened")
                },
                None,
            ),
            (
                OPENED_FORK,
                &[("/pull_request/head/repo", Value::Null)],
                fork,
                None,
            ),
            // The base repository is named twice; either will do.
            (
                OPENED,
                &[("/repository", Value::Null)],
                pull_request_2("opened"),
                None,
            ),
            // An action no workflow asks for is passed on, not refused.
            (
                OPENED,
                &[
                    ("/action", json!("assigned")),
                    ("/pull_request/draft", Value::Null),
                ],
                pull_request_2("assigned"),
                None,
            ),
        ];
        for (body, patches, want, installation_id) in cases {
            let got = parsed("pull_request", &patched(body, patches));
            assert_eq!(
                got,
                Parsed {
                    forge: hello_world(installation_id),
                    pull_request: Some(want),
                    ..Parsed::default()
                },
                "{patches:?}"
            );
        }
    }

    #[test]
    fn a_pull_request_without_what_it_needs_is_refused_by_name() {
        let cases: [(&[Patch], &str); 10] = [
            (
                &[("/pull_request/head/sha", Value::Null)],
                "missing pull_request.head.sha",
            ),
            (
                &[("/pull_request/head/sha", json!("ec26c3e"))],
                r#"invalid pull_request.head.sha "ec26c3e": expected 40 hex digits"#,
            ),
            (
                &[
                    ("/number", Value::Null),
                    ("/pull_request/number", Value::Null),
                ],
                "missing number",
            ),
            (&[("/pull_request", Value::Null)], "missing pull_request"),
            (&[("/action", json!(""))], "missing action"),
            (
                &[("/pull_request/head/ref", Value::Null)],
                "missing pull_request.head.ref",
            ),
            (
                &[("/pull_request/base/ref", Value::Null)],
                "missing pull_request.base.ref",
            ),
            (
                &[
                    ("/pull_request/head/repo", Value::Null),
                    ("/pull_request/head/user", Value::Null),
                ],
                "missing pull_request.head.user.login",
            ),
            (
                &[
                    ("/repository", Value::Null),
                    ("/pull_request/base/repo", Value::Null),
                ],
                "missing repository.full_name",
            ),
            (
                &[
                    ("/repository/clone_url", Value::Null),
                    ("/repository/ssh_url", Value::Null),
                    ("/repository/git_url", Value::Null),
                    ("/repository/html_url", Value::Null),
                    ("/repository/url", Value::Null),
                ],
                "missing repository.clone_url",
            ),
        ];
        for (patches, why) in cases {
            let err = read("pull_request", patched(OPENED, patches).as_bytes())
                .expect_err(why)
                .to_string();
            assert_eq!(err, format!("malformed pull_request event: {why}"));
        }
        let err = read("pull_request", br#"{"number": "two"}"#).expect_err("a string number");
        assert!(
            err.to_string()
                .starts_with("malformed pull_request event: invalid type"),
            "{err}"
        );
        let err = read("pull_request", b"{not json").expect_err("not json");
        assert!(err.to_string().starts_with("malformed json: "), "{err}");
    }

    #[test]
    fn pushes_of_the_examples() {
        // A push's `repository.url` is the web page, as `html_url`.
        let mut urls = hello_world_urls();
        urls.pop();
        let branch = proto::PushEvent {
            repo_urls: urls.clone(),
            git_ref: "refs/heads/master".to_owned(),
            after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_owned(),
            changed_paths: vec!["README.md".to_owned()],
            paths_known: true,
            message: Some("Initial commit".to_owned()),
            author: Some("Codertocat".to_owned()),
            // 2019-05-15T15:19:25Z
            committed_at: Some(proto::Timestamp {
                seconds: 1_557_933_565,
                nanos: 0,
            }),
        };
        let tag = proto::PushEvent {
            repo_urls: urls,
            git_ref: "refs/tags/simple-tag".to_owned(),
            after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_owned(),
            changed_paths: Vec::new(),
            paths_known: false,
            message: Some("Adding a .gitignore file".to_owned()),
            author: Some("Codertocat".to_owned()),
            // 2019-05-15T15:20:41Z
            committed_at: Some(proto::Timestamp {
                seconds: 1_557_933_641,
                nanos: 0,
            }),
        };
        for (body, push, installation_id) in [(PUSH, branch, Some(1)), (PUSH_TAG, tag, None)] {
            assert_eq!(
                parsed("push", body),
                Parsed {
                    push: Some(push),
                    forge: hello_world(installation_id),
                    ..Parsed::default()
                }
            );
        }
        let anonymous = patched(PUSH, &[("/repository/full_name", Value::Null)]);
        assert_eq!(parsed("push", &anonymous).forge, None);
    }

    #[test]
    fn workflow_runs_are_named_by_their_workflow() {
        let octo_repo = Some(proto::ForgeRef {
            forge: "github".to_owned(),
            repo: "octo-org/octo-repo".to_owned(),
            web_url: None,
            installation_id: None,
        });
        let run = |workflow: &str| proto::WorkflowRunEvent {
            repo_urls: [
                "https://github.com/octo-org/octo-repo.git",
                "git@github.com:octo-org/octo-repo.git",
                "git://github.com/octo-org/octo-repo.git",
                "https://github.com/octo-org/octo-repo",
                "https://api.github.com/repos/octo-org/octo-repo",
            ]
            .map(str::to_owned)
            .to_vec(),
            workflow: workflow.to_owned(),
            head_sha: "3484a3fb816e0859fd6e1cea078d76385ff50625".to_owned(),
            head_branch: Some("master".to_owned()),
        };
        let cases: [(&[Patch], Parsed); 4] = [
            // GitHub's example: an empty run name, the workflow's in `workflow`.
            (
                &[],
                Parsed {
                    workflow_run: Some(run("test")),
                    ..Parsed::default()
                },
            ),
            (
                &[
                    ("/workflow", Value::Null),
                    ("/workflow_run/name", json!("CI")),
                ],
                Parsed {
                    workflow_run: Some(run("CI")),
                    ..Parsed::default()
                },
            ),
            (
                &[
                    ("/workflow/name", json!("")),
                    ("/workflow_run/name", json!("CI")),
                ],
                Parsed {
                    workflow_run: Some(run("CI")),
                    ..Parsed::default()
                },
            ),
            (
                &[("/workflow_run/conclusion", json!("failure"))],
                Parsed::ignored("workflow_run completed failure does not deploy"),
            ),
        ];
        for (patches, want) in cases {
            let got = parsed("workflow_run", &patched(WORKFLOW_RUN, patches));
            let want = Parsed {
                forge: octo_repo.clone(),
                ..want
            };
            assert_eq!(got, want, "{patches:?}");
        }
    }

    #[test]
    fn other_events_are_not_handled() {
        assert_eq!(
            parsed("issues", r#"{"action": "opened"}"#),
            Parsed::ignored("event issues not handled")
        );
        assert_eq!(
            parsed("ping", r#"{"zen": "Keep it logically awesome."}"#),
            Parsed {
                pong: true,
                ..Parsed::ignored("ping")
            }
        );
        assert!(read("issues", b"[").is_err());
    }
}
