//! The task pages: the list (with each task's deploys per environment), a
//! task (its facts, steps, deployments and the forms that act on it), and
//! its log, followed live per step or downloaded whole.

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{Bytes, Data, Path, Query};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::image::ImageView;
use super::logview::LogView;
use super::time::Stamp;
use super::view::{Approval, CommitLink, DeployRow, StepRow, TaskRow, deploy_confirm, is_active};
use super::{Layout, PageError, Session, fragment, render};
use crate::State;
use crate::api::id;
use crate::api::tasks::{event_stream, sse_event};
use crate::json::{Environment, Task, Workflow};

/// How many tasks the list shows.
const TASK_PAGE: i64 = 50;

/// The task states a user can filter by.
const STATUSES: [&str; 5] = ["pending", "running", "success", "failed", "cancelled"];

/// One `<option>` of a filter.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<TaskRow>,
    workflows: Vec<Choice>,
    statuses: Vec<Choice>,
    /// Where the script fetches fresh rows (the same filters and page).
    src: String,
    /// The next page of older tasks, when there is one.
    older: String,
}

#[derive(Template)]
#[template(path = "task_rows.html")]
struct Rows {
    rows: Vec<TaskRow>,
}

#[derive(Deserialize)]
pub struct TasksQuery {
    workflow_id: Option<String>,
    status: Option<String>,
    /// Tasks older than this id (the next page).
    before: Option<String>,
}

impl TasksQuery {
    /// The filters; an empty field (the form's "all") is no filter.
    fn filters(&self) -> (Option<i64>, Option<String>) {
        let workflow = self
            .workflow_id
            .as_deref()
            .and_then(|w| w.parse::<i64>().ok());
        let status = self
            .status
            .clone()
            .filter(|s| STATUSES.contains(&s.as_str()));
        (workflow, status)
    }

    fn before(&self) -> Option<i64> {
        self.before.as_deref().and_then(|b| b.parse::<i64>().ok())
    }

    /// The query string of these filters, with `before` when given.
    fn query(&self, before: Option<i64>) -> String {
        let (workflow_id, status) = self.filters();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(w) = workflow_id {
            q.append_pair("workflow_id", &w.to_string());
        }
        if let Some(s) = &status {
            q.append_pair("status", s);
        }
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        q.finish()
    }
}

pub async fn workflows(state: &State) -> Result<Vec<Workflow>, PageError> {
    Ok(state
        .client()
        .list_workflows(proto::ListWorkflowsRequest::default())
        .await?
        .into_inner()
        .workflows
        .into_iter()
        .map(Workflow::from)
        .collect())
}

/// The repository of a workflow among these: where its commits link to.
fn repo_of(workflows: &[Workflow], id: i64) -> &str {
    workflows
        .iter()
        .find(|w| w.id == id)
        .map_or("", |w| w.repo.as_str())
}

async fn list(
    state: &State,
    q: &TasksQuery,
    workflows: &[Workflow],
) -> Result<Vec<TaskRow>, PageError> {
    let (workflow_id, status) = q.filters();
    let tasks = state
        .client()
        .list_tasks(proto::ListTasksRequest {
            workflow_id,
            status,
            limit: Some(TASK_PAGE),
            before: q.before(),
        })
        .await?
        .into_inner()
        .tasks;
    Ok(tasks
        .into_iter()
        .map(|t| {
            let t = Task::from(t);
            TaskRow::new(&t, repo_of(workflows, t.workflow_id))
        })
        .collect())
}

pub async fn list_page(
    state: Data<State>,
    session: Session,
    query: Query<TasksQuery>,
) -> Result<HttpResponse, PageError> {
    let workflows = workflows(&state).await?;
    let rows = list(&state, &query, &workflows).await?;
    let (workflow_id, status) = query.filters();
    // A full page may have more behind it.
    let older = match rows.last() {
        Some(last) if rows.len() as i64 == TASK_PAGE => {
            format!("/tasks?{}", query.query(Some(last.id)))
        }
        _ => String::new(),
    };
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(
        &ListPage {
            rows,
            workflows: workflows
                .iter()
                .map(|w| Choice {
                    value: w.id.to_string(),
                    selected: workflow_id == Some(w.id),
                    label: w.name.clone(),
                })
                .collect(),
            statuses: STATUSES
                .iter()
                .map(|s| Choice {
                    value: (*s).to_owned(),
                    label: (*s).to_owned(),
                    selected: status.as_deref() == Some(*s),
                })
                .collect(),
            src: format!("/ui/tasks?{}", query.query(query.before())),
            older,
            layout,
        },
        flash,
    )
}

pub async fn rows(
    state: Data<State>,
    _: Session,
    query: Query<TasksQuery>,
) -> Result<HttpResponse, PageError> {
    let workflows = workflows(&state).await?;
    fragment(&Rows {
        rows: list(&state, &query, &workflows).await?,
    })
}

/// A "Deploy this" form of the task page.
pub struct DeployOption {
    pub environment: String,
    /// What its confirmation asks.
    pub confirm: String,
    /// Whether it would deploy an older version than the environment has.
    pub older: bool,
}

/// A commit status as the task page lists it.
pub struct StatusRow {
    context: String,
    state: String,
    description: String,
    /// How its delivery to the forge went, with the attempts and last error.
    delivery: String,
}

impl From<&proto::json::CommitStatus> for StatusRow {
    fn from(c: &proto::json::CommitStatus) -> Self {
        let mut delivery = format!("{} after {} attempt(s)", c.status, c.attempts);
        if let Some(e) = &c.last_error {
            delivery.push_str(": ");
            delivery.push_str(e);
        }
        Self {
            context: c.context.clone(),
            state: c.state.clone(),
            description: c.description.clone(),
            delivery,
        }
    }
}

/// Everything the task page shows that changes while the task runs.
pub struct TaskSummary {
    id: i64,
    workflow: String,
    workflow_id: i64,
    status: String,
    trigger: String,
    attempt: i32,
    retry_of: Option<i64>,
    git_ref: String,
    commit: CommitLink,
    subject: String,
    author: String,
    created: Stamp,
    duration: String,
    error: String,
    /// The pushed image; `None` before the image stage.
    image: Option<ImageView>,
    /// The image's tag, else the commit, short.
    version: String,
    steps: Vec<StepRow>,
    deployments: Vec<DeployRow>,
    /// Environments waiting for an approval of this task's image.
    awaiting: Vec<Approval>,
    /// Environments this task's image can be deployed to by hand.
    deploys: Vec<DeployOption>,
    /// The pull request it runs for, in words with its link; empty: none.
    pull_request: Option<(String, String)>,
    /// The commit statuses sent to the forge, oldest first.
    statuses: Vec<StatusRow>,
    csrf: String,
}

impl TaskSummary {
    fn new(task: &Task, repo: &str, envs: &[Environment], csrf: String) -> Self {
        let row = TaskRow::new(task, repo);
        let image = task.image.as_ref().and_then(|i| {
            let reference = i["reference"].as_str()?;
            Some(match i["digest"].as_str() {
                Some(digest) => ImageView::parse(&format!("{reference}@{digest}")),
                None => ImageView::parse(reference),
            })
        });
        let version = image
            .as_ref()
            .map(|i| i.version(task.commit.as_deref()))
            .unwrap_or_default();
        let awaiting: Vec<Approval> = task
            .deployments
            .iter()
            .filter(|d| d.status == "awaiting_approval")
            .map(|d| {
                let (confirm, older) = deploy_confirm(task.id, &version, &d.environment, envs);
                Approval {
                    deployment: DeployRow::from(d),
                    confirm,
                    older,
                }
            })
            .collect();
        let deployable = image.as_ref().is_some_and(|i| !i.digest.is_empty())
            && task.trigger != "pull_request"
            && !is_active(&task.status);
        // The environments of the task's own definition are its deploy
        // steps; an environment added since is not one it can go to.
        let planned = |env: &str| {
            task.steps
                .iter()
                .any(|s| s.name.strip_prefix("deploy:") == Some(env))
        };
        let deploys = if deployable {
            envs.iter()
                .filter(|e| planned(&e.name))
                .filter(|e| !awaiting.iter().any(|a| a.deployment.environment == e.name))
                .map(|e| {
                    let (confirm, older) = deploy_confirm(task.id, &version, &e.name, envs);
                    DeployOption {
                        environment: e.name.clone(),
                        confirm,
                        older,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            id: task.id,
            workflow: task.workflow.clone(),
            workflow_id: task.workflow_id,
            status: task.status.clone(),
            trigger: task.trigger.clone(),
            attempt: task.attempt,
            retry_of: task.retry_of,
            git_ref: row.git_ref,
            commit: row.commit,
            subject: row.subject,
            author: row.author,
            created: row.created,
            duration: row.duration,
            error: task.error.clone().unwrap_or_default(),
            image,
            version,
            steps: task.steps.iter().map(StepRow::from).collect(),
            deployments: task.deployments.iter().map(DeployRow::from).collect(),
            awaiting,
            deploys,
            pull_request: task.pull_request.as_ref().map(|p| {
                let fork = if p.fork { ", from a fork" } else { "" };
                (
                    format!(
                        "#{} {} ({} into {}{fork})",
                        p.number, p.title, p.source_branch, p.target_branch
                    ),
                    p.url.clone(),
                )
            }),
            statuses: task.commit_statuses.iter().map(StatusRow::from).collect(),
            csrf,
        }
    }

    fn can_retry(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "cancelled")
    }

    fn can_cancel(&self) -> bool {
        is_active(&self.status)
    }
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    layout: Layout,
    s: TaskSummary,
}

#[derive(Template)]
#[template(path = "task_summary.html")]
struct SummaryFragment {
    s: TaskSummary,
}

async fn get_task(state: &State, path: Path<String>) -> Result<Task, PageError> {
    let id = id(&path.into_inner(), "task")?;
    let task = state
        .client()
        .get_task(proto::GetTaskRequest { id })
        .await?
        .into_inner();
    Ok(Task::from(task))
}

/// A task with what its summary needs besides: its workflow's repository
/// and environments (a workflow deleted since answers neither).
async fn summary_of(
    state: &State,
    path: Path<String>,
    csrf: String,
) -> Result<TaskSummary, PageError> {
    let task = get_task(state, path).await?;
    let mut client = state.client();
    let repo = client
        .get_workflow(proto::GetWorkflowRequest {
            id: task.workflow_id,
        })
        .await
        .map(|w| w.into_inner().repo)
        .unwrap_or_default();
    let envs = super::environments_or_none(&mut client, task.workflow_id).await;
    Ok(TaskSummary::new(&task, &repo, &envs, csrf))
}

pub async fn page(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let s = summary_of(&state, path, session.csrf()).await?;
    let layout = Layout::load(&state, &session).await;
    let flash = !layout.flash.is_empty();
    render(&TaskPage { layout, s }, flash)
}

pub async fn summary(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    fragment(&SummaryFragment {
        s: summary_of(&state, path, session.csrf()).await?,
    })
}

/// The whole log as stored (secrets were masked before it was), for a
/// download.
pub async fn raw_log(
    state: Data<State>,
    _: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let task_id = id(&path.into_inner(), "task")?;
    let text = state
        .client()
        .get_logs(proto::GetLogsRequest {
            task_id,
            step: None,
        })
        .await?
        .into_inner()
        .text;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"task-{task_id}.log\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(text))
}

/// The live log as server-sent events: `log` events carry JSON
/// `{"step", "cont", "html"}` (see `logview`: lines with colours as spans,
/// secrets masked before the log was stored), one `end` event carries
/// `{"status"}`, a `failure` event an error.
pub async fn live_log(
    state: Data<State>,
    _: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let task = get_task(&state, path).await?;
    let pieces = state
        .client()
        .stream_logs(proto::StreamLogsRequest {
            task_id: task.id,
            chunks: true,
        })
        .await?
        .into_inner();
    let mut log = LogView::new(task.steps.iter().map(|s| s.name.clone()).collect());
    let events = pieces.filter_map(move |piece| {
        let event: Option<Bytes> = match piece {
            Ok(p) => match (p.finished, p.position) {
                (Some(status), _) => Some(sse_event("end", &json!({"status": status}).to_string())),
                (None, Some(position)) => {
                    let at =
                        p.at.and_then(|t| {
                            chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                        })
                        .unwrap_or_else(chrono::Utc::now);
                    let added = log.push(position, &p.text, at);
                    (!added.html.is_empty() || !added.cont.is_empty())
                        .then(|| sse_event("log", &json!(added).to_string()))
                }
                (None, None) => None,
            },
            Err(status) => Some(sse_event(
                "failure",
                &json!({"error": status.message()}).to_string(),
            )),
        };
        std::future::ready(event.map(Ok::<_, actix_web::Error>))
    });
    Ok(event_stream(events))
}
