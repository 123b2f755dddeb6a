//! GitLab's webhook payloads (`Push Hook`, `Tag Push Hook`, `Merge Request
//! Hook`), read into the provider-neutral messages the orchestrator takes.
//! Only this module knows GitLab's wire format.

use serde::Deserialize;

use super::payload::{self, Malformed, Parsed, commit_sha, required, text};

/// The delivery of `event` (`X-Gitlab-Event`), read.
pub fn read(event: &str, body: &[u8]) -> Result<Parsed, Malformed> {
    match event {
        "Push Hook" | "Tag Push Hook" => payload::read(body, "push", Push::into_parsed),
        "Merge Request Hook" => payload::read(body, "merge request", MergeRequest::into_parsed),
        other => payload::not_handled(body, other),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Project {
    /// Where commit statuses go (`/projects/{id}/statuses`).
    id: Option<i64>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    /// Also the API base (scheme and host) when `SLIPWAY_GITLAB_URL` is unset.
    web_url: Option<String>,
    homepage: Option<String>,
    url: Option<String>,
    /// `group/subgroup/name`: a fork's owner is all before the last `/`.
    path_with_namespace: Option<String>,
    /// The owner's display name: a fork's owner when the path is absent.
    namespace: Option<String>,
}

impl Project {
    /// Every URL a workflow's `repo` may be written as.
    fn urls(&self) -> impl Iterator<Item = Option<String>> {
        [
            &self.git_http_url,
            &self.git_ssh_url,
            &self.web_url,
            &self.homepage,
            &self.url,
        ]
        .map(Clone::clone)
        .into_iter()
    }

    /// The project on GitLab.
    fn forge(&self) -> Option<proto::ForgeRef> {
        Some(proto::ForgeRef {
            forge: "gitlab".to_owned(),
            repo: self.id?.to_string(),
            web_url: self.web_url.clone().filter(|u| !u.is_empty()),
            installation_id: None,
        })
    }

    /// Who owns the project, as a fork's source branch names them.
    fn owner(&self) -> Option<String> {
        let from_path = self
            .path_with_namespace
            .as_deref()
            .and_then(|p| p.rsplit_once('/'))
            .map(|(owner, _)| owner);
        from_path
            .or(self.namespace.as_deref())
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
    }
}

/// The URLs of the hook's project, which GitLab sends in two objects.
fn repo_urls(project: &Project, repository: &Project) -> Vec<String> {
    payload::distinct_urls(project.urls().chain(repository.urls()))
}

/// GitLab's `Push Hook` and `Tag Push Hook` payload.
#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    project: Project,
    /// The project's id in hooks older than the `project` object.
    project_id: Option<i64>,
    /// The same project again, in GitLab's older shape.
    #[serde(default)]
    repository: Project,
    #[serde(default)]
    commits: Vec<Commit>,
    /// How many commits the push had; GitLab lists at most 20.
    total_commits_count: Option<usize>,
    user_username: Option<String>,
    user_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    /// When it was made, RFC 3339.
    timestamp: Option<String>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

impl Push {
    fn into_parsed(mut self) -> Result<Parsed, String> {
        self.project.id = self.project.id.or(self.project_id);
        let listed_all = self
            .total_commits_count
            .is_none_or(|total| total <= self.commits.len());
        let paths_known = !self.commits.is_empty() && listed_all;
        let changed_paths = payload::changed_paths(
            self.commits
                .iter()
                .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified)),
        );
        let after = self.after;
        let head = self
            .commits
            .iter()
            .find(|c| c.id.as_deref() == Some(after.as_str()))
            .or(self.commits.last());
        let message = head.and_then(|c| c.message.clone());
        let committed_at = payload::commit_time(head.and_then(|c| c.timestamp.as_deref()));
        let push = proto::PushEvent {
            repo_urls: repo_urls(&self.project, &self.repository),
            git_ref: self.git_ref,
            after,
            changed_paths,
            paths_known,
            message,
            author: self.user_username.or(self.user_name),
            committed_at,
        };
        Ok(Parsed {
            push: Some(push),
            forge: self.project.forge(),
            ..Parsed::default()
        })
    }
}

/// GitLab's `Merge Request Hook` payload. Fields are optional here so that
/// a missing one is answered by its path rather than by serde's message.
#[derive(Debug, Deserialize)]
struct MergeRequest {
    object_attributes: Option<Attributes>,
    /// The target project, the one the hook belongs to.
    #[serde(default)]
    project: Project,
    #[serde(default)]
    repository: Project,
}

#[derive(Debug, Deserialize)]
struct Attributes {
    /// The number within the project, as GitLab's pages show it.
    iid: Option<i64>,
    title: Option<String>,
    url: Option<String>,
    action: Option<String>,
    /// The previous head, present only when the update brought new commits.
    oldrev: Option<String>,
    source_branch: Option<String>,
    target_branch: Option<String>,
    /// Differs from the target's for a merge request from a fork.
    source_project_id: Option<i64>,
    target_project_id: Option<i64>,
    /// The source project, which names a fork's owner.
    source: Option<Project>,
    last_commit: Option<LastCommit>,
    draft: Option<bool>,
    /// `draft` as GitLab called it before 14.0.
    work_in_progress: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct LastCommit {
    id: Option<String>,
    /// When it was made, RFC 3339.
    timestamp: Option<String>,
}

/// GitLab's merge request action in GitHub's words (forges.md); another is
/// passed on as GitLab names it, and matches no `types`.
fn action(gitlab: &str, new_commits: bool) -> &str {
    match gitlab {
        "open" => "opened",
        "update" if new_commits => "synchronize",
        "reopen" => "reopened",
        "close" | "merge" => "closed",
        other => other,
    }
}

impl Attributes {
    /// The source branch as a task records it, `<owner>:<branch>` for a
    /// fork, and whether it is one: its project is not the target.
    fn source_branch(&self) -> Result<(String, bool), String> {
        let branch = text(
            self.source_branch.clone(),
            "object_attributes.source_branch",
        )?;
        // Without both ids a fork cannot be told from a branch, and a fork's
        // code must not run by mistake.
        let source = required(
            self.source_project_id,
            "object_attributes.source_project_id",
        )?;
        let target = required(
            self.target_project_id,
            "object_attributes.target_project_id",
        )?;
        if source == target {
            return Ok((branch, false));
        }
        let owner = self.source.as_ref().and_then(Project::owner);
        let owner = text(owner, "object_attributes.source.path_with_namespace")?;
        Ok((format!("{owner}:{branch}"), true))
    }
}

impl MergeRequest {
    fn into_parsed(self) -> Result<Parsed, String> {
        let mr = required(self.object_attributes, "object_attributes")?;
        let (source_branch, fork) = mr.source_branch()?;
        let gitlab_action = text(mr.action, "object_attributes.action")?;
        let new_commits = mr.oldrev.is_some_and(|r| !r.is_empty());
        let last_commit = required(mr.last_commit, "object_attributes.last_commit")?;
        let repo_urls = repo_urls(&self.project, &self.repository);
        if repo_urls.is_empty() {
            return Err("missing project.git_http_url".to_owned());
        }
        let event = proto::PullRequestEvent {
            repo_urls,
            action: action(&gitlab_action, new_commits).to_owned(),
            number: required(mr.iid, "object_attributes.iid")?,
            title: text(mr.title, "object_attributes.title")?,
            url: text(mr.url, "object_attributes.url")?,
            committed_at: payload::commit_time(last_commit.timestamp.as_deref()),
            head_sha: commit_sha(last_commit.id, "object_attributes.last_commit.id")?,
            source_branch,
            target_branch: text(mr.target_branch, "object_attributes.target_branch")?,
            draft: mr.draft.or(mr.work_in_progress).unwrap_or(false),
            fork,
        };
        Ok(Parsed {
            pull_request: Some(event),
            forge: self.project.forge(),
            ..Parsed::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::webhooks::payload::testing::{Patch, patched};

    const MERGE_REQUEST: &str = include_str!("fixtures/gitlab/merge_request.json");
    const PUSH: &str = include_str!("fixtures/gitlab/push.json");
    const TAG_PUSH: &str = include_str!("fixtures/gitlab/tag_push.json");

    const OLDREV: &str = "95790bf891e76fee5e1747ab589903a6a1f80f22";

    fn parsed(event: &str, body: &str) -> Parsed {
        read(event, body.as_bytes()).unwrap_or_else(|e| panic!("{event}: {e}"))
    }

    /// The documented merge request, as the orchestrator gets it.
    fn ms_viewport(action: &str) -> proto::PullRequestEvent {
        proto::PullRequestEvent {
            repo_urls: [
                "http://example.com/gitlabhq/gitlab-test.git",
                "git@example.com:gitlabhq/gitlab-test.git",
                "http://example.com/gitlabhq/gitlab-test",
            ]
            .map(str::to_owned)
            .to_vec(),
            action: action.to_owned(),
            number: 1,
            title: "MS-Viewport".to_owned(),
            url: "http://example.com/diaspora/merge_requests/1".to_owned(),
            head_sha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_owned(),
            source_branch: "ms-viewport".to_owned(),
            target_branch: "master".to_owned(),
            draft: false,
            fork: false,
            // 2012-01-03T23:36:29+02:00
            committed_at: Some(proto::Timestamp {
                seconds: 1_325_626_589,
                nanos: 0,
            }),
        }
    }

    fn gitlab_test() -> Option<proto::ForgeRef> {
        Some(proto::ForgeRef {
            forge: "gitlab".to_owned(),
            repo: "1".to_owned(),
            web_url: Some("http://example.com/gitlabhq/gitlab-test".to_owned()),
            installation_id: None,
        })
    }

    #[test]
    fn actions_in_github_words() {
        let cases = [
            ("open", false, "opened"),
            ("update", true, "synchronize"),
            ("update", false, "update"),
            ("reopen", false, "reopened"),
            ("close", false, "closed"),
            ("merge", false, "closed"),
            ("approved", false, "approved"),
            ("unapproval", false, "unapproval"),
        ];
        for (gitlab, new_commits, want) in cases {
            assert_eq!(action(gitlab, new_commits), want, "{gitlab} {new_commits}");
        }
    }

    #[test]
    fn merge_requests_of_the_example() {
        let from_fork = [
            ("/object_attributes/source_project_id", json!(15)),
            (
                "/object_attributes/source/path_with_namespace",
                json!("forker/team/awesome_project"),
            ),
        ];
        let cases: [(&[Patch], proto::PullRequestEvent); 9] = [
            (&[], ms_viewport("opened")),
            (
                &[
                    ("/object_attributes/action", json!("update")),
                    ("/object_attributes/oldrev", json!(OLDREV)),
                ],
                ms_viewport("synchronize"),
            ),
            (
                &[("/object_attributes/action", json!("update"))],
                ms_viewport("update"),
            ),
            (
                &[
                    ("/object_attributes/action", json!("update")),
                    ("/object_attributes/oldrev", Value::Null),
                ],
                ms_viewport("update"),
            ),
            (
                &[("/object_attributes/action", json!("merge"))],
                ms_viewport("closed"),
            ),
            (
                &[("/object_attributes/action", json!("approved"))],
                ms_viewport("approved"),
            ),
            (
                &from_fork,
                proto::PullRequestEvent {
                    source_branch: "forker/team:ms-viewport".to_owned(),
                    fork: true,
                    ..ms_viewport("opened")
                },
            ),
            (
                &[("/object_attributes/draft", json!(true))],
                proto::PullRequestEvent {
                    draft: true,
                    ..ms_viewport("opened")
                },
            ),
            // Before `draft` there was `work_in_progress`.
            (
                &[
                    ("/object_attributes/draft", Value::Null),
                    ("/object_attributes/work_in_progress", json!(true)),
                ],
                proto::PullRequestEvent {
                    draft: true,
                    ..ms_viewport("opened")
                },
            ),
        ];
        for (patches, want) in cases {
            let got = parsed("Merge Request Hook", &patched(MERGE_REQUEST, patches));
            assert_eq!(
                got,
                Parsed {
                    pull_request: Some(want),
                    forge: gitlab_test(),
                    ..Parsed::default()
                },
                "{patches:?}"
            );
        }
    }

    #[test]
    fn a_merge_request_without_what_it_needs_is_refused_by_name() {
        let cases: [(&[Patch], &str); 8] = [
            (
                &[("/object_attributes/last_commit/id", Value::Null)],
                "missing object_attributes.last_commit.id",
            ),
            (
                &[("/object_attributes/last_commit/id", json!("da15608"))],
                r#"invalid object_attributes.last_commit.id "da15608": expected 40 hex digits"#,
            ),
            (
                &[("/object_attributes/iid", Value::Null)],
                "missing object_attributes.iid",
            ),
            (
                &[("/object_attributes", Value::Null)],
                "missing object_attributes",
            ),
            (
                &[("/object_attributes/action", Value::Null)],
                "missing object_attributes.action",
            ),
            (
                &[("/object_attributes/source_project_id", Value::Null)],
                "missing object_attributes.source_project_id",
            ),
            (
                &[
                    ("/object_attributes/source_project_id", json!(15)),
                    ("/object_attributes/source", Value::Null),
                ],
                "missing object_attributes.source.path_with_namespace",
            ),
            (
                &[
                    ("/project/git_http_url", Value::Null),
                    ("/project/git_ssh_url", Value::Null),
                    ("/project/web_url", Value::Null),
                    ("/project/homepage", Value::Null),
                    ("/project/url", Value::Null),
                    ("/repository/url", Value::Null),
                    ("/repository/homepage", Value::Null),
                ],
                "missing project.git_http_url",
            ),
        ];
        for (patches, why) in cases {
            let err = read(
                "Merge Request Hook",
                patched(MERGE_REQUEST, patches).as_bytes(),
            )
            .expect_err(why)
            .to_string();
            assert_eq!(err, format!("malformed merge request event: {why}"));
        }
        let err = read("Merge Request Hook", b"{not json").expect_err("not json");
        assert!(err.to_string().starts_with("malformed json: "), "{err}");
    }

    #[test]
    fn pushes_of_the_examples() {
        let diaspora = [
            "http://example.com/mike/diaspora.git",
            "git@example.com:mike/diaspora.git",
            "http://example.com/mike/diaspora",
        ];
        let example = [
            "http://example.com/jsmith/example.git",
            "git@example.com:jsmith/example.git",
            "http://example.com/jsmith/example",
            "ssh://git@example.com/jsmith/example.git",
        ];
        let forge = |id: &str, web_url: &str| {
            Some(proto::ForgeRef {
                forge: "gitlab".to_owned(),
                repo: id.to_owned(),
                web_url: Some(web_url.to_owned()),
                installation_id: None,
            })
        };
        let cases = [
            (
                "Push Hook",
                PUSH,
                proto::PushEvent {
                    repo_urls: diaspora.map(str::to_owned).to_vec(),
                    git_ref: "refs/heads/master".to_owned(),
                    after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_owned(),
                    changed_paths: ["CHANGELOG", "app/controller/application.rb"]
                        .map(str::to_owned)
                        .to_vec(),
                    // 4 commits, 2 listed.
                    paths_known: false,
                    message: Some("fixed readme".to_owned()),
                    author: Some("jsmith".to_owned()),
                    // 2012-01-03T23:36:29+02:00
                    committed_at: Some(proto::Timestamp {
                        seconds: 1_325_626_589,
                        nanos: 0,
                    }),
                },
                forge("15", "http://example.com/mike/diaspora"),
            ),
            (
                "Tag Push Hook",
                TAG_PUSH,
                proto::PushEvent {
                    repo_urls: example.map(str::to_owned).to_vec(),
                    git_ref: "refs/tags/v1.0.0".to_owned(),
                    after: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7".to_owned(),
                    changed_paths: Vec::new(),
                    paths_known: false,
                    message: None,
                    author: Some("John Smith".to_owned()),
                    committed_at: None,
                },
                forge("1", "http://example.com/jsmith/example"),
            ),
        ];
        for (event, body, push, forge) in cases {
            assert_eq!(
                parsed(event, body),
                Parsed {
                    push: Some(push),
                    forge,
                    ..Parsed::default()
                },
                "{event}"
            );
        }
        // Older hooks name the project by `project_id` alone.
        let older = patched(PUSH, &[("/project/id", Value::Null)]);
        assert_eq!(
            parsed("Push Hook", &older).forge,
            forge("15", "http://example.com/mike/diaspora")
        );
        let nameless = patched(
            PUSH,
            &[("/project/id", Value::Null), ("/project_id", Value::Null)],
        );
        assert_eq!(parsed("Push Hook", &nameless).forge, None);
    }

    #[test]
    fn other_events_are_not_handled() {
        assert_eq!(
            parsed("Note Hook", r#"{"object_kind": "note"}"#),
            Parsed::ignored("event Note Hook not handled")
        );
    }
}
