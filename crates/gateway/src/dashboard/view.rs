//! What the dashboard's templates show, built from the gateway's JSON types:
//! times, durations and short names are worked out here so the templates
//! only lay them out.

use chrono::{DateTime, Utc};

use crate::json::{Alert, Deployment, Environment, Rollback, Step, Task, Workflow};

/// `2026-12-01T18:22:05.123Z` as `2026-12-01 18:22:05`.
pub fn when(ts: &Option<String>) -> String {
    parse(ts)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn parse(ts: &Option<String>) -> Option<DateTime<Utc>> {
    ts.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// From `start` to `end` (or to now while running), as `1m 05s`.
pub fn duration(start: &Option<String>, end: &Option<String>) -> String {
    let Some(start) = parse(start) else {
        return String::new();
    };
    let end = parse(end).unwrap_or_else(Utc::now);
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

fn short(commit: &Option<String>) -> String {
    commit
        .as_deref()
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_default()
}

/// The first line of a commit message.
fn subject(message: &Option<String>) -> String {
    message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or_default()
        .to_owned()
}

/// Whether a task is still going (its page keeps following it).
pub fn is_active(status: &str) -> bool {
    matches!(status, "pending" | "running")
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
    /// The commit, short, as in image tags.
    pub commit: String,
    /// The commit message's first line, to tell commits apart.
    pub subject: String,
    /// When the task was queued.
    pub created: String,
    /// How long it ran, or has run so far.
    pub duration: String,
}

impl From<&Task> for TaskRow {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            workflow: t.workflow.clone(),
            workflow_id: t.workflow_id,
            status: t.status.clone(),
            trigger: t.trigger.clone(),
            git_ref: git_ref(t),
            commit: short(&t.commit),
            subject: subject(&t.message),
            created: when(&t.created_at),
            duration: duration(&t.started_at, &t.finished_at),
        }
    }
}

fn git_ref(t: &Task) -> String {
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
    /// The image's tag: the version a user recognises.
    pub version: String,
    /// The task whose image it deploys, linked, and the task its approve form goes to.
    pub task_id: Option<i64>,
    /// Where it went, and the value of its approve form.
    pub environment: String,
    /// Shown, and the class that colours it.
    pub status: String,
    /// The image without its digest, where `version` is read from.
    pub image: String,
    /// The digest, short: what actually runs.
    pub digest: String,
    /// What started it (`auto`, `approval`, `manual`, `rollback`).
    pub trigger: String,
    /// When it last changed: finished, else started, else created.
    pub when: String,
    /// Why it failed; empty when it did not.
    pub error: String,
    /// The rollback it led to, in words; empty when none.
    pub rollback: String,
}

impl From<&Deployment> for DeployRow {
    fn from(d: &Deployment) -> Self {
        let (image, digest) = match d.image.split_once('@') {
            Some((name, digest)) => (name.to_owned(), digest.to_owned()),
            None => (d.image.clone(), String::new()),
        };
        let digest = digest
            .strip_prefix("sha256:")
            .map(|h| format!("sha256:{}", &h[..h.len().min(12)]))
            .unwrap_or(digest);
        // `registry:5000/name:tag`: the tag follows the last `:` after the
        // last `/` (a registry's port comes before it).
        let version = image
            .rsplit_once('/')
            .map_or(image.as_str(), |(_, last)| last)
            .rsplit_once(':')
            .map(|(_, tag)| tag.to_owned())
            .unwrap_or_default();
        Self {
            id: d.id,
            version,
            task_id: d.task_id,
            environment: d.environment.clone(),
            status: d.status.clone(),
            image,
            digest,
            trigger: d.trigger.clone(),
            when: when(
                &d.finished_at
                    .clone()
                    .or_else(|| d.started_at.clone())
                    .or_else(|| d.created_at.clone()),
            ),
            error: d.error.clone().unwrap_or_default(),
            rollback: d.rollback.as_ref().map(rollback_text).unwrap_or_default(),
        }
    }
}

fn rollback_text(r: &Rollback) -> String {
    match r.to_deployment_id {
        Some(to) => format!("rolled back to #{to} ({}, {})", r.reason, r.status),
        None => format!("rollback {} ({})", r.reason, r.status),
    }
}

/// An environment on the workflow page, with what a rollback would restore.
pub struct EnvRow {
    /// The environment's name, and the path of its rollback form.
    pub name: String,
    /// What runs there now.
    pub current: Option<DeployRow>,
    /// What ran before: the target of a rollback, which is disabled without it.
    pub previous: Option<DeployRow>,
    /// Where a routed environment is served, linked; `None` when unrouted.
    pub url: Option<String>,
    /// The deployment the edge proxy sends the traffic to.
    pub serving: Option<i64>,
}

impl From<&Environment> for EnvRow {
    fn from(e: &Environment) -> Self {
        Self {
            name: e.name.clone(),
            current: e.current.as_ref().map(DeployRow::from),
            previous: e.previous.as_ref().map(DeployRow::from),
            url: e.route.as_ref().map(|r| r.url.clone()),
            serving: e.serving_deployment_id,
        }
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
    pub when: String,
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
            when: when(&r.created_at),
            error: r.error.clone().unwrap_or_default(),
        }
    }
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
    pub updated: String,
}

impl From<&Workflow> for WorkflowRow {
    fn from(w: &Workflow) -> Self {
        Self {
            id: w.id,
            name: w.name.clone(),
            repo: w.repo.clone(),
            version: w.version,
            updated: when(&w.updated_at),
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
    /// The event in a line.
    pub summary: String,
    /// `throttled`, or how its deliveries went; also the class that colours it.
    pub status: String,
    /// When the event happened.
    pub when: String,
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
            summary: a.summary.clone(),
            status: a.status.to_owned(),
            when: when(&a.at),
            deliveries: a
                .deliveries
                .iter()
                .map(|d| DeliveryRow {
                    channel: d.channel.clone(),
                    target: d.target.clone(),
                    status: d.status.clone(),
                    attempts: d.attempts,
                    last_error: d.last_error.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(when(&t("2026-12-01T10:00:00.123Z")), "2026-12-01 10:00:00");
    }

    #[test]
    fn a_deployment_shows_its_tag_and_short_digest() {
        let d = Deployment {
            id: 3,
            workflow_id: 1,
            task_id: Some(7),
            environment: "dev".to_owned(),
            status: "succeeded".to_owned(),
            image: "127.0.0.1:5000/shop:4f1c2a9b3d5e@sha256:0123456789abcdef0123".to_owned(),
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
            commit: None,
        };
        let row = DeployRow::from(&d);
        assert_eq!(row.version, "4f1c2a9b3d5e");
        assert_eq!(row.image, "127.0.0.1:5000/shop:4f1c2a9b3d5e");
        assert_eq!(row.digest, "sha256:0123456789ab");
    }
}
