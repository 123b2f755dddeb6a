//! The forms that change things: run a workflow, retry, cancel, deploy (or
//! approve) a task's image, roll an environment back. Each checks the
//! session's CSRF token, makes its one gRPC call, and sends the user on to
//! the page that shows the outcome with a flash saying what happened.
//! (Pages ask for a confirmation first; `static/app.js` reads it from the
//! form's `data-confirm`.)

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{Data, Form, Path};
use serde::Deserialize;

use super::auth::{CsrfForm, local_path};
use super::{PageError, Session, redirect};
use crate::State;
use crate::api::id;

/// A redirect to `to` whose page says `message`.
fn done(session: &Session, to: &str, message: &str) -> HttpResponse {
    let mut response = redirect(to);
    if let Ok(value) = header::HeaderValue::from_str(&session.flash_cookie(message)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct RunForm {
    csrf: String,
    branch: String,
    /// Empty: the branch's head.
    commit: Option<String>,
}

pub async fn run(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<RunForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    session.check(&form.csrf)?;
    let workflow_id = id(&path.into_inner(), "workflow")?;
    let branch = form.branch.trim().to_owned();
    let commit = form
        .commit
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let what = match &commit {
        Some(c) => format!("{branch} at {}", c.chars().take(12).collect::<String>()),
        None => branch.clone(),
    };
    let answer = state
        .client()
        .run_workflow(proto::RunWorkflowRequest {
            workflow_id,
            branch,
            commit,
        })
        .await?
        .into_inner();
    Ok(done(
        &session,
        &format!("/tasks/{}", answer.task_id),
        &format!("Task #{} started: {what}.", answer.task_id),
    ))
}

pub async fn retry(
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
    Ok(done(
        &session,
        &format!("/tasks/{}", answer.task_id),
        &format!("Task #{} retries task #{id}.", answer.task_id),
    ))
}

pub async fn cancel(
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
    Ok(done(
        &session,
        &format!("/tasks/{id}"),
        &format!("Task #{id}: cancel requested; its running step is being stopped."),
    ))
}

#[derive(Deserialize)]
pub struct DeployForm {
    csrf: String,
    environment: String,
    /// The page to go back to (the task's, its workflow's, the approvals).
    back: Option<String>,
}

/// Deploys a task's image: an approval of a waiting environment, or a
/// deploy by hand.
pub async fn deploy(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<DeployForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    session.check(&form.csrf)?;
    let task_id = id(&path.into_inner(), "task")?;
    let answer = state
        .client()
        .deploy_task(proto::DeployTaskRequest {
            task_id,
            environment: form.environment.clone(),
        })
        .await?
        .into_inner();
    let back = match form.back {
        Some(b) => local_path(Some(&b)),
        None => format!("/tasks/{task_id}"),
    };
    Ok(done(
        &session,
        &back,
        &format!(
            "Deploying task #{task_id} to {} (deployment #{}).",
            form.environment, answer.deployment_id
        ),
    ))
}

pub async fn rollback(
    state: Data<State>,
    session: Session,
    path: Path<(String, String)>,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    session.check(&form.csrf)?;
    let (workflow, environment) = path.into_inner();
    let workflow_id = id(&workflow, "workflow")?;
    let answer = state
        .client()
        .rollback_environment(proto::RollbackEnvironmentRequest {
            workflow_id,
            environment: environment.clone(),
            deployment_id: None,
        })
        .await?
        .into_inner();
    Ok(done(
        &session,
        &format!("/workflows/{workflow_id}"),
        &format!(
            "Rolling {environment} back (rollback #{}, deployment #{}).",
            answer.rollback_id, answer.deployment_id
        ),
    ))
}
