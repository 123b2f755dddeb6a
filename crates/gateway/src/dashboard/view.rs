//! What the dashboard's templates show, built from the gateway's JSON types:
//! times, durations, versions, links and short names are worked out here so
//! the templates only lay them out.

use chrono::Utc;

use super::image::{ImageView, compact_references};
use super::logview::section_id;
use super::time::{Stamp, parse};
use crate::json::{Alert, Deployment, Environment, Rollback, Step, Task, Workflow};

/// From `start` to `end` (or to now while running), as `1m 05s`.
pub fn duration(start: &Option<String>, end: &Option<String>) -> String {
    let Some(start) = parse(start.as_deref()) else {
        return String::new();
    };
    let end = parse(end.as_deref()).unwrap_or_else(Utc::now);
    let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 60.0 {
        format!("{}s", secs as u64)
    } else {
        let s = secs as u64;
        if s < 3600 {
            format!("{}m {:02}s", s / 60, s % 60)
        } else {
            format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

/// A commit's first 12 hex digits, as in image tags.
pub fn short(commit: &Option<String>) -> String {
    commit
        .as_deref()
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_default()
}

/// The first line of a commit message.
pub fn subject(message: &Option<String>) -> String {
    message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or_default()
        .to_owned()
}

/// A status in words: `awaiting_approval` as `awaiting approval`.
pub fn words(status: &str) -> String {
    status.replace('_', " ")
}

/// Whether a task is still going (its page keeps following it).
pub fn is_active(status: &str) -> bool {
    matches!(status, "pending" | "running")
}

/// A commit as pages show it: short, linked to its forge when known.
#[derive(Debug, Clone, Default)]
pub struct CommitLink {
    /// The commit, short, as in image tags.
    pub short: String,
    /// The whole commit, for the title.
    pub full: String,
    /// Its page on GitHub or GitLab; empty when the repository is elsewhere.
    pub url: String,
}

impl CommitLink {
    /// `commit` of a workflow whose repository is `repo`.
    pub fn new(repo: &str, commit: &Option<String>) -> Self {
        let full = commit.clone().unwrap_or_default();
        Self {
            short: short(commit),
            url: domain::forge::commit_url(repo, &full).unwrap_or_default(),
            full,
        }
    }
}

/// How one environment fared with a task's image: a badge in the task list.
pub struct EnvBadge {
    pub environment: String,
    /// The newest deployment's status: the badge's class.
    pub status: String,
    /// The status in words, with the rollback when one followed.
    pub text: String,
}

/// Each environment's newest deployment of these, in the order of the
/// environments' first deployments.
pub fn env_badges(deployments: &[Deployment]) -> Vec<EnvBadge> {
    let mut out: Vec<(i64, EnvBadge)> = Vec::new();
    for d in deployments {
        let mut text = words(&d.status);
        if let Some(r) = &d.rollback {
            text.push_str(&format!(", rollback {}", words(&r.status)));
        }
        let badge = EnvBadge {
            environment: d.environment.clone(),
            status: d.status.clone(),
            text,
        };
        match out.iter_mut().find(|(_, b)| b.environment == d.environment) {
            Some((id, b)) if d.id > *id => {
                *id = d.id;
                *b = badge;
            }
            Some(_) => {}
            None => out.push((d.id, badge)),
        }
    }
    out.into_iter().map(|(_, b)| b).collect()
}

/// One line of the task list.
pub struct TaskRow {
    /// The task's number and the link to its page.
    pub id: i64,
    /// The workflow's name, as the link text.
    pub workflow: String,
    /// The link to the workflow's page.
    pub workflow_id: i64,
    /// Shown, and the class that colours it.
    pub status: String,
    /// What started the task (`push`, `manual`, ...).
    pub trigger: String,
    /// The branch, or `tag NAME`, that was built.
    pub git_ref: String,
    /// The commit, linked to its forge when known.
    pub commit: CommitLink,
    /// The commit message's first line, to tell commits apart.
    pub subject: String,
    /// Who made the commit, when the push said.
    pub author: String,
    /// When the task was queued.
    pub created: Stamp,
    /// How long it ran, or has run so far.
    pub duration: String,
    /// How each environment fared with its image: a build's `success`
    /// says nothing of a prod that waits for approval.
    pub envs: Vec<EnvBadge>,
}

impl TaskRow {
    /// A task of a workflow whose repository is `repo` (for commit links).
    pub fn new(t: &Task, repo: &str) -> Self {
        Self {
            id: t.id,
            workflow: t.workflow.clone(),
            workflow_id: t.workflow_id,
            status: t.status.clone(),
            trigger: t.trigger.clone(),
            git_ref: git_ref(t),
            commit: CommitLink::new(repo, &t.commit),
            subject: subject(&t.message),
            author: t.author.clone().unwrap_or_default(),
            created: Stamp::of(&t.created_at),
            duration: duration(&t.started_at, &t.finished_at),
            envs: env_badges(&t.deployments),
        }
    }
}

pub fn git_ref(t: &Task) -> String {
    match (&t.tag, &t.branch) {
        (Some(tag), _) => format!("tag {tag}"),
        (None, Some(branch)) => branch.clone(),
        (None, None) => String::new(),
    }
}

/// One step of a task, as the task page lists them.
pub struct StepRow {
    /// The step's name, and the key of its log section.
    pub name: String,
    /// The anchor of its section of the log.
    pub anchor: String,
    /// Shown, and the class that colours it.
    pub status: String,
    /// The command's exit code; empty until it exits.
    pub exit_code: String,
    /// How long it ran, or has run so far.
    pub duration: String,
    /// Why it failed; empty when it did not.
    pub error: String,
}

impl From<&Step> for StepRow {
    fn from(s: &Step) -> Self {
        Self {
            name: s.name.clone(),
            anchor: section_id(&s.name),
            status: s.status.clone(),
            exit_code: s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            duration: duration(&s.started_at, &s.finished_at),
            error: s.error.clone().unwrap_or_default(),
        }
    }
}

/// A deployment as the task and workflow pages show it.
pub struct DeployRow {
    /// The deployment's number, and the key of its row.
    pub id: i64,
    /// The version a user recognises: the image's tag, else its commit.
    pub version: String,
    /// The task whose image it deploys, linked, and the task its approve form goes to.
    pub task_id: Option<i64>,
    /// Where it went, and the value of its approve form.
    pub environment: String,
    /// The class that colours it.
    pub status: String,
    /// The status in words.
    pub status_text: String,
    /// The image: the digest, short, is what actually runs.
    pub image: ImageView,
    /// What started it (`auto`, `approval`, `manual`, `rollback`).
    pub trigger: String,
    /// When it last changed: finished, else started, else created.
    pub when: Stamp,
    /// Why it failed; empty when it did not.
    pub error: String,
    /// The rollback it led to, in words; empty when none.
    pub rollback: String,
    /// How that rollback went: its class; empty when none.
    pub rollback_status: String,
}

impl From<&Deployment> for DeployRow {
    fn from(d: &Deployment) -> Self {
        let image = ImageView::parse(&d.image);
        Self {
            id: d.id,
            version: image.version(d.commit.as_deref()),
            task_id: d.task_id,
            environment: d.environment.clone(),
            status: d.status.clone(),
            status_text: words(&d.status),
            image,
            trigger: d.trigger.clone(),
            when: Stamp::of(
                &d.finished_at
                    .clone()
                    .or_else(|| d.started_at.clone())
                    .or_else(|| d.created_at.clone()),
            ),
            error: d.error.clone().unwrap_or_default(),
            rollback: d.rollback.as_ref().map(rollback_text).unwrap_or_default(),
            rollback_status: d
                .rollback
                .as_ref()
                .map(|r| r.status.clone())
                .unwrap_or_default(),
        }
    }
}

fn rollback_text(r: &Rollback) -> String {
    match r.to_deployment_id {
        Some(to) => format!("rollback to #{to} {} ({})", r.status, words(&r.reason)),
        None => format!("rollback {} ({})", r.status, words(&r.reason)),
    }
}

/// The digest part of an image reference, whole: two deployments with the
/// same one run the same image.
fn digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(_, d)| d)
}

/// An environment on the workflow page: what runs there, how the latest
/// deploy went, and what a rollback would restore.
pub struct EnvRow {
    /// The environment's name, and the path of its rollback form.
    pub name: String,
    /// What runs there now.
    pub current: Option<DeployRow>,
    /// What ran before: the target of a rollback.
    pub previous: Option<DeployRow>,
    /// The newest deploy when it is not the current one: a failed deploy
    /// (and its failed rollback) shows here while `current` stays green.
    pub latest: Option<DeployRow>,
    /// Where a routed environment is served, linked; `None` when unrouted.
    pub url: Option<String>,
    /// The deployment the edge proxy sends the traffic to.
    pub serving: Option<i64>,
    /// Why rolling back is not offered; empty when it is.
    pub no_rollback: String,
    /// What the rollback's confirmation asks.
    pub confirm: String,
}

impl From<&Environment> for EnvRow {
    fn from(e: &Environment) -> Self {
        let current = e.current.as_ref().map(DeployRow::from);
        let previous = e.previous.as_ref().map(DeployRow::from);
        let no_rollback = match (&e.current, &e.previous) {
            (None, _) => "nothing runs there".to_owned(),
            (Some(_), None) => "no earlier deployment to go back to".to_owned(),
            (Some(c), Some(p)) if digest(&c.image) == digest(&p.image) => {
                "the previous deployment runs the same image".to_owned()
            }
            _ => String::new(),
        };
        let confirm = match (&current, &previous) {
            (Some(c), Some(p)) => format!(
                "Roll {} back from #{} ({}) to #{} ({})?",
                e.name, c.id, c.version, p.id, p.version
            ),
            _ => String::new(),
        };
        Self {
            name: e.name.clone(),
            latest: e
                .latest
                .as_ref()
                .filter(|l| e.current.as_ref().is_none_or(|c| c.id != l.id))
                .map(DeployRow::from),
            current,
            previous,
            url: e.route.as_ref().map(|r| r.url.clone()),
            serving: e.serving_deployment_id,
            no_rollback,
            confirm,
        }
    }
}

/// A deployment waiting for approval, with what approving it would do.
pub struct Approval {
    pub deployment: DeployRow,
    /// What the approval's confirmation asks: with a warning when the
    /// environment has a newer version, running or waiting.
    pub confirm: String,
    /// Whether it deploys an older version than the environment has or
    /// waits for.
    pub older: bool,
}

/// The confirmation of deploying `task_id`'s image (`version`) to an
/// environment, warning when the environment runs or waits for a newer
/// task's image; and whether it does.
pub fn deploy_confirm(
    task_id: i64,
    version: &str,
    environment: &str,
    envs: &[Environment],
) -> (String, bool) {
    let newer = envs.iter().find(|e| e.name == environment).and_then(|e| {
        [e.latest.as_ref(), e.current.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|d| d.task_id.map(|t| (t, d.status.as_str())))
            .find(|(t, _)| *t > task_id)
    });
    let version = if version.is_empty() {
        String::new()
    } else {
        format!(" ({version})")
    };
    let ask = format!("Deploy task #{task_id}{version} to {environment}?");
    match newer {
        Some((t, "awaiting_approval")) => (
            format!(
                "Task #{t}, newer, waits for {environment} too: this deploys an older version. {ask}"
            ),
            true,
        ),
        Some((t, _)) => (
            format!(
                "{environment} has task #{t}'s newer version: this deploys an older one. {ask}"
            ),
            true,
        ),
        None => (ask, false),
    }
}

/// A rollback on the workflow page.
pub struct RollbackRow {
    /// The rollback's number, and the key of its row.
    pub id: i64,
    /// The environment rolled back.
    pub environment: String,
    /// The deployment rolled back from, as `#N`.
    pub from: String,
    /// The deployment rolled back to, as `#N`; empty when there was none.
    pub to: String,
    /// Why it ran (`deploy_failed`, `health_check_failed`, `manual`).
    pub reason: String,
    /// Shown, and the class that colours it.
    pub status: String,
    /// When it was recorded.
    pub when: Stamp,
    /// Why it failed; empty when it did not.
    pub error: String,
}

impl From<&Rollback> for RollbackRow {
    fn from(r: &Rollback) -> Self {
        let id = |d: Option<i64>| d.map(|d| format!("#{d}")).unwrap_or_default();
        Self {
            id: r.id,
            environment: r.environment.clone(),
            from: id(r.from_deployment_id),
            to: id(r.to_deployment_id),
            reason: r.reason.clone(),
            status: r.status.clone(),
            when: Stamp::of(&r.created_at),
            error: r.error.clone().unwrap_or_default(),
        }
    }
}

/// The last task of a workflow, on the workflows page.
pub struct LastRun {
    pub id: i64,
    pub status: String,
    pub git_ref: String,
    pub created: Stamp,
}

/// A workflow as its list and its page show it.
pub struct WorkflowRow {
    /// The link to its page, and the path of its forms.
    pub id: i64,
    /// The workflow's name, as the title and link text.
    pub name: String,
    /// The repository it builds.
    pub repo: String,
    /// The live definition's version, to tell an edit took.
    pub version: i32,
    /// When the definition last changed.
    pub updated: Stamp,
    /// Its newest task; `None` before the first run.
    pub last: Option<LastRun>,
}

impl WorkflowRow {
    pub fn new(w: &Workflow, last: Option<&Task>) -> Self {
        Self {
            id: w.id,
            name: w.name.clone(),
            repo: w.repo.clone(),
            version: w.version,
            updated: Stamp::of(&w.updated_at),
            last: last.map(|t| LastRun {
                id: t.id,
                status: t.status.clone(),
                git_ref: git_ref(t),
                created: Stamp::of(&t.created_at),
            }),
        }
    }
}

/// One channel of an alert on the alerts page.
pub struct DeliveryRow {
    /// The kind of channel (`slack`, `email`, `dingtalk`, `webhook`).
    pub channel: String,
    /// Where it went, without secrets, to tell two of a kind apart.
    pub target: String,
    /// Shown, and the class that colours it.
    pub status: String,
    /// Attempts so far: a retried delivery shows more than one.
    pub attempts: i32,
    /// Why the last attempt failed; empty when it did not.
    pub last_error: String,
    /// When a pending delivery is tried again; empty otherwise.
    pub next_attempt: Stamp,
}

/// An alert on the alerts page, with its deliveries.
pub struct AlertRow {
    /// The key of its row.
    pub id: i64,
    /// The event's type (`build_failed`, ...).
    pub kind: String,
    /// The workflow's name, as the link text.
    pub workflow: String,
    /// The link to the workflow's page.
    pub workflow_id: i64,
    /// The task it is about, linked, when it is about one.
    pub task_id: Option<i64>,
    /// The environment of a deploy event; empty for others.
    pub environment: String,
    /// The event in a line, its image references short.
    pub summary: String,
    /// The event in a line as recorded, for the title.
    pub summary_full: String,
    /// `throttled`, or how its deliveries went; also the class that colours it.
    pub status: String,
    /// When the event happened.
    pub when: Stamp,
    /// Each channel it went to and how that went.
    pub deliveries: Vec<DeliveryRow>,
}

impl From<&Alert> for AlertRow {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id,
            kind: a.kind.clone(),
            workflow: a.workflow.clone(),
            workflow_id: a.workflow_id,
            task_id: a.task_id,
            environment: a.environment.clone().unwrap_or_default(),
            summary: compact_references(&a.summary),
            summary_full: a.summary.clone(),
            status: a.status.to_owned(),
            when: Stamp::of(&a.at),
            deliveries: a
                .deliveries
                .iter()
                .map(|d| DeliveryRow {
                    channel: d.channel.clone(),
                    target: d.target.clone(),
                    status: d.status.clone(),
                    attempts: d.attempts,
                    last_error: d.last_error.clone().unwrap_or_default(),
                    next_attempt: if d.status == "pending" {
                        Stamp::of(&d.next_attempt_at)
                    } else {
                        Stamp::default()
                    },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: i64, environment: &str, status: &str, image: &str) -> Deployment {
        Deployment {
            id,
            workflow_id: 1,
            task_id: Some(id + 10),
            environment: environment.to_owned(),
            status: status.to_owned(),
            image: image.to_owned(),
            trigger: "auto".to_owned(),
            previous_deployment_id: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            error: None,
            rollback: None,
            host: None,
            switched_at: None,
            retired_at: None,
            commit: Some("4f1c2a9b3d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a".to_owned()),
        }
    }

    const IMAGE: &str = "127.0.0.1:5000/shop@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn durations_read_naturally() {
        let t = |s: &str| Some(s.to_owned());
        assert_eq!(
            duration(&t("2026-12-01T10:00:00Z"), &t("2026-12-01T10:00:01.5Z")),
            "1.5s"
        );
        assert_eq!(
            duration(&t("2026-12-01T10:00:00Z"), &t("2026-12-01T10:01:05Z")),
            "1m 05s"
        );
        assert_eq!(duration(&None, &t("2026-12-01T10:01:05Z")), "");
    }

    #[test]
    fn a_deployment_by_digest_shows_its_commit_and_short_digest() {
        let row = DeployRow::from(&deployment(3, "dev", "succeeded", IMAGE));
        assert_eq!(row.version, "4f1c2a9b3d5e");
        assert_eq!(row.image.digest, "sha256:0123456789ab");
        assert_eq!(row.image.full, IMAGE);
    }

    #[test]
    fn badges_show_each_environments_newest_deployment() {
        let mut prod = deployment(5, "prod", "failed", IMAGE);
        prod.rollback = Some(Rollback {
            id: 1,
            workflow_id: 1,
            environment: "prod".to_owned(),
            deployment_id: Some(5),
            from_deployment_id: Some(5),
            to_deployment_id: Some(2),
            reason: "deploy_failed".to_owned(),
            status: "failed".to_owned(),
            error: None,
            created_at: None,
            finished_at: None,
        });
        let badges = env_badges(&[
            deployment(3, "dev", "succeeded", IMAGE),
            deployment(4, "prod", "awaiting_approval", IMAGE),
            prod,
        ]);
        let got: Vec<(&str, &str, &str)> = badges
            .iter()
            .map(|b| (b.environment.as_str(), b.status.as_str(), b.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("dev", "succeeded", "succeeded"),
                ("prod", "failed", "failed, rollback failed")
            ]
        );
    }

    #[test]
    fn rolling_back_to_the_same_image_is_not_offered() {
        let env = |previous: &str| Environment {
            name: "dev".to_owned(),
            current: Some(deployment(4, "dev", "succeeded", IMAGE)),
            previous: Some(deployment(3, "dev", "succeeded", previous)),
            latest: Some(deployment(5, "dev", "failed", IMAGE)),
            route: None,
            serving_deployment_id: None,
        };
        let same = EnvRow::from(&env(IMAGE));
        assert_eq!(
            same.no_rollback,
            "the previous deployment runs the same image"
        );
        assert_eq!(same.latest.as_ref().map(|l| l.id), Some(5));
        let other = EnvRow::from(&env("127.0.0.1:5000/shop@sha256:ffff"));
        assert_eq!(other.no_rollback, "");
        assert!(
            other.confirm.starts_with("Roll dev back from #4"),
            "{}",
            other.confirm
        );
    }

    #[test]
    fn approving_an_older_task_warns() {
        let mut waiting = deployment(6, "prod", "awaiting_approval", IMAGE);
        waiting.task_id = Some(20);
        let envs = [Environment {
            name: "prod".to_owned(),
            current: Some(deployment(2, "prod", "succeeded", IMAGE)),
            previous: None,
            latest: Some(waiting),
            route: None,
            serving_deployment_id: None,
        }];
        let (text, older) = deploy_confirm(15, "abc", "prod", &envs);
        assert!(older);
        assert!(
            text.contains("Task #20, newer, waits for prod too"),
            "{text}"
        );
        let (text, older) = deploy_confirm(20, "", "prod", &envs);
        assert!(!older);
        assert_eq!(text, "Deploy task #20 to prod?");
        let (_, older) = deploy_confirm(15, "", "dev", &envs);
        assert!(!older);
    }
}
