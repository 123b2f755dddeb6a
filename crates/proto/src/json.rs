//! The REST API's JSON shapes (api.md), converted from proto messages. Only
//! this module decides field names and formats on the HTTP side; the CLI's
//! `--output json` prints the same shapes.

mod insights;

use chrono::SecondsFormat;
use serde::Serialize;

pub use insights::{
    DayDeploys, DayStats, EnvironmentOverview, EnvironmentStats, LastTask, PendingApproval,
    TaskStats, WorkflowOverview, WorkflowStats, percent, span,
};

fn time(ts: Option<crate::Timestamp>) -> Option<String> {
    ts.as_ref()
        .and_then(crate::datetime)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Debug, Serialize)]
pub struct Workflow {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub version: i32,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Only on `GET /api/workflows/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// The retention in force and the last pruning (workflow.md).
#[derive(Debug, Serialize)]
pub struct Retention {
    pub days: u32,
    pub keep_last: u32,
    pub last_pruned_at: Option<String>,
    pub last_pruned: PruneFigures,
}

#[derive(Debug, Serialize)]
pub struct PruneFigures {
    pub tasks: i64,
    pub log_bytes: i64,
    pub images: i64,
}

impl From<crate::Retention> for Retention {
    fn from(r: crate::Retention) -> Self {
        let last = r.last_pruned.unwrap_or_default();
        Self {
            days: r.days,
            keep_last: r.keep_last,
            last_pruned_at: time(r.last_pruned_at),
            last_pruned: PruneFigures {
                tasks: last.tasks,
                log_bytes: last.log_bytes,
                images: last.images,
            },
        }
    }
}

impl From<crate::Workflow> for Workflow {
    fn from(w: crate::Workflow) -> Self {
        Self {
            id: w.id,
            name: w.name,
            repo: w.repo,
            version: w.version,
            created_at: time(w.created_at),
            updated_at: time(w.updated_at),
            definition: w.definition,
            retention: w.retention.map(Retention::from),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub name: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Task {
    pub id: i64,
    pub workflow_id: i64,
    pub workflow: String,
    pub workflow_version: i32,
    pub status: String,
    pub trigger: String,
    pub attempt: i32,
    pub retry_of: Option<i64>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub delivery_id: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// The packaged image, once the image stage exists for this task.
    pub image: Option<serde_json::Value>,
    pub deployments: Vec<Deployment>,
    /// The pull or merge request a `pull_request` task runs for.
    pub pull_request: Option<PullRequest>,
    /// Each context and state sent to the forge, oldest first.
    pub commit_statuses: Vec<CommitStatus>,
}

#[derive(Debug, Serialize)]
pub struct PullRequest {
    pub number: i64,
    pub title: String,
    pub url: String,
    pub source_branch: String,
    pub target_branch: String,
    pub fork: bool,
}

/// A commit status and how its delivery to the forge went.
#[derive(Debug, Serialize)]
pub struct CommitStatus {
    pub context: String,
    pub state: String,
    pub description: String,
    /// pending | delivered | failed | superseded
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rollback {
    pub id: i64,
    pub workflow_id: i64,
    pub environment: String,
    pub deployment_id: Option<i64>,
    pub from_deployment_id: Option<i64>,
    pub to_deployment_id: Option<i64>,
    pub reason: String,
    pub status: String,
    pub error: Option<String>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<crate::Rollback> for Rollback {
    fn from(r: crate::Rollback) -> Self {
        Self {
            id: r.id,
            workflow_id: r.workflow_id,
            environment: r.environment,
            deployment_id: r.deployment_id,
            from_deployment_id: r.from_deployment_id,
            to_deployment_id: r.to_deployment_id,
            reason: r.reason,
            status: r.status,
            error: r.error,
            created_at: time(r.created_at),
            finished_at: time(r.finished_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub workflow_id: i64,
    pub task_id: Option<i64>,
    pub environment: String,
    pub status: String,
    pub image: String,
    pub trigger: String,
    pub previous_deployment_id: Option<i64>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub rollback: Option<Rollback>,
    /// The runner host it was made on.
    pub host: Option<String>,
    /// When a routed environment's traffic last moved to it.
    pub switched_at: Option<String>,
    /// When its container stopped after a newer version took over.
    pub retired_at: Option<String>,
    /// The commit of the task whose image it deploys.
    pub commit: Option<String>,
}

impl From<crate::Deployment> for Deployment {
    fn from(d: crate::Deployment) -> Self {
        Self {
            id: d.id,
            workflow_id: d.workflow_id,
            task_id: d.task_id,
            environment: d.environment,
            status: d.status,
            image: d.image,
            trigger: d.trigger,
            previous_deployment_id: d.previous_deployment_id,
            created_at: time(d.created_at),
            started_at: time(d.started_at),
            finished_at: time(d.finished_at),
            error: d.error,
            rollback: d.rollback.map(Rollback::from),
            host: d.host,
            switched_at: time(d.switched_at),
            retired_at: time(d.retired_at),
            commit: d.commit,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Environment {
    pub name: String,
    pub current: Option<Deployment>,
    pub previous: Option<Deployment>,
    /// Its newest deployment not skipped, whatever came of it.
    pub latest: Option<Deployment>,
    /// Where it is served; `null` for an environment without `route`.
    pub route: Option<EnvironmentRoute>,
    /// The deployment the edge proxy sends its traffic to now.
    pub serving_deployment_id: Option<i64>,
}

/// Where a routed environment is served (edge.md).
#[derive(Debug, Serialize)]
pub struct EnvironmentRoute {
    pub domains: Vec<String>,
    pub listen: Option<u32>,
    pub url: String,
}

impl From<crate::Environment> for Environment {
    fn from(e: crate::Environment) -> Self {
        Self {
            name: e.name,
            current: e.current.map(Deployment::from),
            previous: e.previous.map(Deployment::from),
            latest: e.latest.map(Deployment::from),
            route: e.route.map(|r| EnvironmentRoute {
                domains: r.domains,
                listen: r.listen,
                url: r.url,
            }),
            serving_deployment_id: e.serving_deployment_id,
        }
    }
}

impl From<crate::Task> for Task {
    fn from(t: crate::Task) -> Self {
        Self {
            id: t.id,
            workflow_id: t.workflow_id,
            workflow: t.workflow,
            workflow_version: t.workflow_version,
            status: t.status,
            trigger: t.trigger,
            attempt: t.attempt,
            retry_of: t.retry_of,
            branch: t.branch,
            tag: t.tag,
            commit: t.commit,
            message: t.message,
            author: t.author,
            delivery_id: t.delivery_id,
            created_at: time(t.created_at),
            started_at: time(t.started_at),
            finished_at: time(t.finished_at),
            error: t.error,
            steps: t
                .steps
                .into_iter()
                .map(|s| Step {
                    name: s.name,
                    status: s.status,
                    exit_code: s.exit_code,
                    started_at: time(s.started_at),
                    finished_at: time(s.finished_at),
                    error: s.error,
                })
                .collect(),
            image: t.image_digest.map(
                |digest| serde_json::json!({"reference": t.image_reference, "digest": digest}),
            ),
            deployments: t.deployments.into_iter().map(Deployment::from).collect(),
            pull_request: t.pull_request.map(|p| PullRequest {
                number: p.number,
                title: p.title,
                url: p.url,
                source_branch: p.source_branch,
                target_branch: p.target_branch,
                fork: p.fork,
            }),
            commit_statuses: t
                .commit_statuses
                .into_iter()
                .map(|c| CommitStatus {
                    context: c.context,
                    state: c.state,
                    description: c.description,
                    status: c.status,
                    attempts: c.attempts,
                    last_error: c.last_error,
                    delivered_at: time(c.delivered_at),
                })
                .collect(),
        }
    }
}

/// One channel of an alert, and how its delivery went.
#[derive(Debug, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    /// Where it goes, without secrets.
    pub target: String,
    /// `pending` (retries left), `delivered` or `failed` (gave up).
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

impl From<crate::Delivery> for Delivery {
    fn from(d: crate::Delivery) -> Self {
        Self {
            id: d.id,
            channel: d.channel,
            target: d.target,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            next_attempt_at: time(d.next_attempt_at),
            delivered_at: time(d.delivered_at),
        }
    }
}

/// An alert: the event that fired, and each channel's delivery status.
#[derive(Debug, Serialize)]
pub struct Alert {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: Option<String>,
    pub workflow_id: i64,
    pub workflow: String,
    pub task_id: Option<i64>,
    pub deployment_id: Option<i64>,
    pub environment: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub summary: String,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub recovery: bool,
    /// `throttled` (a repeat, not sent), `pending`, `delivered` (every
    /// channel), or `failed` (some channel gave up).
    pub status: &'static str,
    pub created_at: Option<String>,
    pub deliveries: Vec<Delivery>,
}

impl From<crate::Alert> for Alert {
    fn from(a: crate::Alert) -> Self {
        let e = a.event.unwrap_or_default();
        let status = if a.throttled {
            "throttled"
        } else if a.deliveries.iter().any(|d| d.status == "failed") {
            "failed"
        } else if a.deliveries.iter().any(|d| d.status == "pending") {
            "pending"
        } else {
            "delivered"
        };
        Self {
            id: a.id,
            event_id: e.id,
            kind: e.r#type,
            at: time(e.at),
            workflow_id: e.workflow_id,
            workflow: e.workflow,
            task_id: e.task_id,
            deployment_id: e.deployment_id,
            environment: e.environment,
            branch: e.branch,
            commit: e.commit,
            summary: e.summary,
            error: e.error,
            reason: e.reason,
            outcome: e.outcome,
            recovery: e.recovery,
            status,
            created_at: time(a.created_at),
            deliveries: a.deliveries.into_iter().map(Delivery::from).collect(),
        }
    }
}
