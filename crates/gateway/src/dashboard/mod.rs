//! The dashboard: server-rendered pages (askama templates compiled into the
//! gateway, so nothing beyond `cargo build` builds it) behind a login with
//! the API token. A little JavaScript (`static/app.js`) refreshes lists and
//! task summaries in place and follows a task's log over server-sent events;
//! every page works without it, short of the live parts.
//!
//! The session is a signed cookie (`HttpOnly`, `SameSite=Strict`); every
//! form that changes state carries the session's CSRF token.

pub mod ansi;
pub mod session;
pub mod view;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::web::{self, Bytes, Data, Form, Path, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use chrono::Utc;
use futures_util::StreamExt;
use proto::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::api::id;
use crate::api::tasks::{event_stream, sse_event};
use crate::json::{Alert, Deployment, Environment, Rollback, Task, Workflow};
use view::{AlertRow, DeployRow, EnvRow, RollbackRow, StepRow, TaskRow, WorkflowRow};

/// How many tasks the list shows.
const TASK_PAGE: i64 = 50;

/// The task states a user can filter by.
const STATUSES: [&str; 5] = ["pending", "running", "success", "failed", "cancelled"];

/// Every route of the dashboard.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(tasks_page))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/static/app.css", web::get().to(css))
        .route("/static/app.js", web::get().to(js))
        .route("/tasks/{id}", web::get().to(task_page))
        .route("/tasks/{id}/retry", web::post().to(retry))
        .route("/tasks/{id}/cancel", web::post().to(cancel))
        .route("/tasks/{id}/deploy", web::post().to(deploy))
        .route("/workflows", web::get().to(workflows_page))
        .route("/workflows/{id}", web::get().to(workflow_page))
        .route(
            "/workflows/{id}/environments/{env}/rollback",
            web::post().to(rollback),
        )
        .route("/alerts", web::get().to(alerts_page))
        .route("/ui/tasks", web::get().to(task_rows))
        .route("/ui/tasks/{id}", web::get().to(task_summary))
        .route("/ui/tasks/{id}/log", web::get().to(task_log));
}

// ---------------------------------------------------------------- session

/// A logged-in user: handlers that take one are behind the login.
pub struct Session {
    cookie: String,
    token: String,
}

impl Session {
    fn csrf(&self) -> String {
        session::csrf(&self.token, &self.cookie)
    }

    /// Refuses a state-changing form without this session's CSRF token.
    fn check(&self, presented: &str) -> Result<(), PageError> {
        if session::csrf_matches(&self.token, &self.cookie, presented) {
            Ok(())
        } else {
            Err(PageError {
                status: StatusCode::FORBIDDEN,
                message: "the form is stale or from another site; reload the page and try again"
                    .to_owned(),
            })
        }
    }
}

impl FromRequest for Session {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(session_of(req))
    }
}

fn session_of(req: &HttpRequest) -> Result<Session, actix_web::Error> {
    let token = req
        .app_data::<Data<State>>()
        .map(|s| s.settings.api_token.clone())
        .unwrap_or_default();
    if let Some(cookie) = cookie_value(req, session::COOKIE)
        && session::valid(&token, &cookie, Utc::now().timestamp())
    {
        return Ok(Session { cookie, token });
    }
    // Pages send the user to the login; what scripts fetch gets a 401.
    if req.method() == actix_web::http::Method::GET && !req.path().starts_with("/ui/") {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Err(LoginRedirect(next.to_owned()).into())
    } else {
        Err(crate::error::unauthorized("log in to the dashboard first").into())
    }
}

/// The value of one cookie of the request.
fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// `next` if it is a path on this site (never `//host` or a full URL).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        session::COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// Sends a user who is not logged in to the login page.
#[derive(Debug)]
struct LoginRedirect(String);

impl std::fmt::Display for LoginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log in first")
    }
}

impl ResponseError for LoginRedirect {
    fn status_code(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }

    fn error_response(&self) -> HttpResponse {
        let next: String = url::form_urlencoded::byte_serialize(self.0.as_bytes()).collect();
        redirect(&format!("/login?next={next}"))
    }
}

// ---------------------------------------------------------------- answers

/// An error shown as a page, with the status the API would give.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self {
            status: StatusCode::from_u16(err.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: err.message,
        }
    }
}

impl From<tonic::Status> for PageError {
    fn from(status: tonic::Status) -> Self {
        Self::from(ApiError::from(status))
    }
}

impl From<crate::error::HttpError> for PageError {
    fn from(err: crate::error::HttpError) -> Self {
        Self::from(err.0)
    }
}

fn internal_page(err: impl std::fmt::Display) -> PageError {
    tracing::error!(error = %err, "template failed");
    PageError::from(ApiError::new(ErrorCode::Internal, "internal error"))
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let page = ErrorPage {
            csrf: String::new(),
            status: self.status.as_u16(),
            message: self.message.clone(),
        };
        match page.render() {
            Ok(body) => with_headers(HttpResponse::build(self.status), body),
            Err(_) => HttpResponse::build(self.status).body(self.message.clone()),
        }
    }
}

/// A rendered page with the headers every dashboard page carries: no
/// framing by other sites, no inline scripts, nothing cached.
fn with_headers(mut builder: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn page(template: &impl Template) -> Result<HttpResponse, PageError> {
    let body = template.render().map_err(internal_page)?;
    Ok(with_headers(HttpResponse::Ok(), body))
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

// ---------------------------------------------------------------- templates

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    csrf: String,
    status: u16,
    message: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    csrf: String,
    rows: Vec<TaskRow>,
    workflows: Vec<Choice>,
    statuses: Vec<Choice>,
    /// Where the script fetches fresh rows (the same filters and page).
    src: String,
    /// The next page of older tasks, when there is one.
    older: String,
}

/// One `<option>` of a filter.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "task_rows.html")]
struct TaskRows {
    rows: Vec<TaskRow>,
}

/// Everything the task page shows that changes while the task runs.
struct TaskSummary {
    id: i64,
    workflow: String,
    workflow_id: i64,
    status: String,
    trigger: String,
    attempt: i32,
    retry_of: Option<i64>,
    git_ref: String,
    commit: String,
    subject: String,
    author: String,
    created: String,
    duration: String,
    error: String,
    image: String,
    steps: Vec<StepRow>,
    deployments: Vec<DeployRow>,
    /// Environments waiting for an approval of this task's image.
    awaiting: Vec<String>,
    /// The pull request it runs for, in words with its link; empty: none.
    pull_request: Option<(String, String)>,
    /// The commit statuses sent to the forge, oldest first.
    statuses: Vec<StatusRow>,
    csrf: String,
}

/// A commit status as the task page lists it.
struct StatusRow {
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

impl TaskSummary {
    fn new(task: &Task, csrf: String) -> Self {
        let row = TaskRow::from(task);
        Self {
            id: task.id,
            workflow: task.workflow.clone(),
            workflow_id: task.workflow_id,
            status: task.status.clone(),
            trigger: task.trigger.clone(),
            attempt: task.attempt,
            retry_of: task.retry_of,
            git_ref: row.git_ref,
            commit: task.commit.clone().unwrap_or_default(),
            subject: row.subject,
            author: task.author.clone().unwrap_or_default(),
            created: row.created,
            duration: row.duration,
            error: task.error.clone().unwrap_or_default(),
            image: task
                .image
                .as_ref()
                .and_then(|i| i["reference"].as_str())
                .unwrap_or_default()
                .to_owned(),
            steps: task.steps.iter().map(StepRow::from).collect(),
            deployments: task.deployments.iter().map(DeployRow::from).collect(),
            awaiting: task
                .deployments
                .iter()
                .filter(|d| d.status == "awaiting_approval")
                .map(|d| d.environment.clone())
                .collect(),
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
        view::is_active(&self.status)
    }
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    csrf: String,
    s: TaskSummary,
}

#[derive(Template)]
#[template(path = "task_summary.html")]
struct TaskSummaryFragment {
    s: TaskSummary,
}

#[derive(Template)]
#[template(path = "workflows.html")]
struct WorkflowsPage {
    csrf: String,
    rows: Vec<WorkflowRow>,
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    csrf: String,
    workflow: WorkflowRow,
    definition: String,
    environments: Vec<EnvRow>,
    awaiting: Vec<DeployRow>,
    history: Vec<DeployRow>,
    rollbacks: Vec<RollbackRow>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    csrf: String,
    rows: Vec<AlertRow>,
}

// ---------------------------------------------------------------- handlers

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(include_str!("../../static/app.css"))
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(include_str!("../../static/app.js"))
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(query: Query<NextQuery>) -> Result<HttpResponse, PageError> {
    page(&LoginPage {
        csrf: String::new(),
        next: local_path(query.next.as_deref()),
        error: String::new(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(state: Data<State>, form: Form<LoginForm>) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let next = local_path(form.next.as_deref());
    let token = &state.settings.api_token;
    if !session::token_matches(token, form.token.trim()) {
        tracing::warn!("dashboard login with a wrong token");
        let body = LoginPage {
            csrf: String::new(),
            next,
            error: "that is not the API token".to_owned(),
        }
        .render()
        .map_err(internal_page)?;
        return Ok(with_headers(HttpResponse::Unauthorized(), body));
    }
    let cookie = session::issue(token, Utc::now().timestamp());
    let secure = state.settings.public_url.starts_with("https://");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .insert_header((
            header::SET_COOKIE,
            session_cookie(&cookie, session::LIFETIME_SECS, secure),
        ))
        .finish())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(session: Session, form: Form<CsrfForm>) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .insert_header((header::SET_COOKIE, session_cookie("", 0, false)))
        .finish())
}

#[derive(Deserialize)]
struct TasksQuery {
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

async fn list_tasks(state: &State, q: &TasksQuery) -> Result<Vec<TaskRow>, PageError> {
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
        .map(|t| TaskRow::from(&Task::from(t)))
        .collect())
}

async fn tasks_page(
    state: Data<State>,
    session: Session,
    query: Query<TasksQuery>,
) -> Result<HttpResponse, PageError> {
    let rows = list_tasks(&state, &query).await?;
    let workflows = state
        .client()
        .list_workflows(proto::ListWorkflowsRequest::default())
        .await?
        .into_inner()
        .workflows;
    let (workflow_id, status) = query.filters();
    // A full page may have more behind it.
    let older = match rows.last() {
        Some(last) if rows.len() as i64 == TASK_PAGE => {
            format!("/?{}", query.query(Some(last.id)))
        }
        _ => String::new(),
    };
    page(&TasksPage {
        csrf: session.csrf(),
        rows,
        workflows: workflows
            .into_iter()
            .map(|w| Choice {
                value: w.id.to_string(),
                selected: workflow_id == Some(w.id),
                label: w.name,
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
    })
}

async fn task_rows(
    state: Data<State>,
    _: Session,
    query: Query<TasksQuery>,
) -> Result<HttpResponse, PageError> {
    page(&TaskRows {
        rows: list_tasks(&state, &query).await?,
    })
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

async fn task_page(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let task = get_task(&state, path).await?;
    let csrf = session.csrf();
    page(&TaskPage {
        s: TaskSummary::new(&task, csrf.clone()),
        csrf,
    })
}

async fn task_summary(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let task = get_task(&state, path).await?;
    page(&TaskSummaryFragment {
        s: TaskSummary::new(&task, session.csrf()),
    })
}

/// The live log as server-sent events of HTML: `log` events carry rendered
/// text (colours as spans, secrets masked before the log was stored), one
/// `end` event carries `{"status"}`, a `failure` event an error.
async fn task_log(
    state: Data<State>,
    _: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let task_id = id(&path.into_inner(), "task")?;
    let pieces = state
        .client()
        .stream_logs(proto::StreamLogsRequest {
            task_id,
            chunks: false,
        })
        .await?
        .into_inner();
    let mut renderer = ansi::Renderer::new();
    let events = pieces.filter_map(move |piece| {
        let event: Option<Bytes> = match piece {
            Ok(p) => match p.finished {
                Some(status) => Some(sse_event("end", &json!({"status": status}).to_string())),
                None => {
                    let html = renderer.render(&p.text);
                    (!html.is_empty()).then(|| sse_event("log", &html))
                }
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

async fn retry(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    let id = id(&path.into_inner(), "task")?;
    let answer = state
        .client()
        .retry_task(proto::RetryTaskRequest { id })
        .await?
        .into_inner();
    Ok(redirect(&format!("/tasks/{}", answer.task_id)))
}

async fn cancel(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    let id = id(&path.into_inner(), "task")?;
    state
        .client()
        .cancel_task(proto::CancelTaskRequest { id })
        .await?;
    Ok(redirect(&format!("/tasks/{id}")))
}

#[derive(Deserialize)]
struct DeployForm {
    csrf: String,
    environment: String,
    /// The page to go back to (the task's, or its workflow's).
    back: Option<String>,
}

async fn deploy(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<DeployForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    session.check(&form.csrf)?;
    let task_id = id(&path.into_inner(), "task")?;
    state
        .client()
        .deploy_task(proto::DeployTaskRequest {
            task_id,
            environment: form.environment,
        })
        .await?;
    let back = match form.back {
        Some(b) => local_path(Some(&b)),
        None => format!("/tasks/{task_id}"),
    };
    Ok(redirect(&back))
}

async fn rollback(
    state: Data<State>,
    session: Session,
    path: Path<(String, String)>,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    let (workflow, environment) = path.into_inner();
    let workflow_id = id(&workflow, "workflow")?;
    state
        .client()
        .rollback_environment(proto::RollbackEnvironmentRequest {
            workflow_id,
            environment,
            deployment_id: None,
        })
        .await?;
    Ok(redirect(&format!("/workflows/{workflow_id}")))
}

async fn workflows_page(state: Data<State>, session: Session) -> Result<HttpResponse, PageError> {
    let workflows = state
        .client()
        .list_workflows(proto::ListWorkflowsRequest::default())
        .await?
        .into_inner()
        .workflows;
    page(&WorkflowsPage {
        csrf: session.csrf(),
        rows: workflows
            .into_iter()
            .map(|w| WorkflowRow::from(&Workflow::from(w)))
            .collect(),
    })
}

async fn workflow_page(
    state: Data<State>,
    session: Session,
    path: Path<String>,
) -> Result<HttpResponse, PageError> {
    let workflow_id = id(&path.into_inner(), "workflow")?;
    let mut client = state.client();
    let workflow = Workflow::from(
        client
            .get_workflow(proto::GetWorkflowRequest { id: workflow_id })
            .await?
            .into_inner(),
    );
    let environments: Vec<Environment> = client
        .list_environments(proto::ListEnvironmentsRequest { workflow_id })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .map(Environment::from)
        .collect();
    let history: Vec<Deployment> = client
        .list_deployments(proto::ListDeploymentsRequest {
            workflow_id: Some(workflow_id),
            limit: Some(50),
            ..Default::default()
        })
        .await?
        .into_inner()
        .deployments
        .into_iter()
        .map(Deployment::from)
        .collect();
    let rollbacks: Vec<Rollback> = client
        .list_rollbacks(proto::ListRollbacksRequest {
            workflow_id: Some(workflow_id),
            ..Default::default()
        })
        .await?
        .into_inner()
        .rollbacks
        .into_iter()
        .map(Rollback::from)
        .collect();
    page(&WorkflowPage {
        csrf: session.csrf(),
        definition: workflow.definition.clone().unwrap_or_default(),
        workflow: WorkflowRow::from(&workflow),
        environments: environments.iter().map(EnvRow::from).collect(),
        awaiting: history
            .iter()
            .filter(|d| d.status == "awaiting_approval")
            .map(DeployRow::from)
            .collect(),
        history: history.iter().map(DeployRow::from).collect(),
        rollbacks: rollbacks.iter().map(RollbackRow::from).collect(),
    })
}

async fn alerts_page(state: Data<State>, session: Session) -> Result<HttpResponse, PageError> {
    let alerts = state
        .client()
        .list_alerts(proto::ListAlertsRequest {
            limit: Some(100),
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts;
    page(&AlertsPage {
        csrf: session.csrf(),
        rows: alerts
            .into_iter()
            .map(|a| AlertRow::from(&Alert::from(a)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/tasks/3?x=1")), "/tasks/3?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
