//! `/api/deployments`, `/api/rollbacks`, `/api/workflows/{id}/environments`.

use actix_web::HttpResponse;
use actix_web::web::{Data, Path, Query};
use serde::Deserialize;

use super::path_id;
use crate::State;
use crate::error::HttpError;
use crate::json::{Deployment, Environment, Rollback};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow_id: Option<i64>,
    environment: Option<String>,
    limit: Option<i64>,
    status: Option<String>,
}

pub async fn list(state: Data<State>, query: Query<ListQuery>) -> Result<HttpResponse, HttpError> {
    let q = query.into_inner();
    let rows = state
        .client()
        .list_deployments(proto::ListDeploymentsRequest {
            workflow_id: q.workflow_id,
            environment: q.environment,
            limit: q.limit,
            status: q.status,
        })
        .await?
        .into_inner()
        .deployments;
    let out: Vec<Deployment> = rows.into_iter().map(Deployment::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

pub async fn get(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "deployment")?;
    let d = state
        .client()
        .get_deployment(proto::GetDeploymentRequest { id })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(Deployment::from(d)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackQuery {
    workflow_id: Option<i64>,
    environment: Option<String>,
}

pub async fn rollbacks(
    state: Data<State>,
    query: Query<RollbackQuery>,
) -> Result<HttpResponse, HttpError> {
    let q = query.into_inner();
    let rows = state
        .client()
        .list_rollbacks(proto::ListRollbacksRequest {
            workflow_id: q.workflow_id,
            environment: q.environment,
        })
        .await?
        .into_inner()
        .rollbacks;
    let out: Vec<Rollback> = rows.into_iter().map(Rollback::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

pub async fn environments(
    state: Data<State>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let workflow_id = path_id(path, "workflow")?;
    let rows = state
        .client()
        .list_environments(proto::ListEnvironmentsRequest { workflow_id })
        .await?
        .into_inner()
        .environments;
    let out: Vec<Environment> = rows.into_iter().map(Environment::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    environment: Option<String>,
}

/// `POST /api/tasks/{id}/deploy`: approve or repeat a deploy. The root span
/// of the deploy task it creates.
#[tracing::instrument(
    name = "deploy task",
    parent = None,
    skip_all,
    fields(otel.kind = "server", task_id = tracing::field::Empty)
)]
pub async fn deploy_task(
    state: Data<State>,
    path: Path<String>,
    req: actix_web::HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<HttpResponse, HttpError> {
    let task_id = path_id(path, "task")?;
    let raw = crate::body::read(&req, payload, state.settings.api_max_bytes).await?;
    let body: DeployBody = crate::body::json(&raw)?;
    let environment = body
        .environment
        .ok_or_else(|| crate::error::bad_request("environment is required"))?;
    let answer = state
        .client()
        .deploy_task(proto::DeployTaskRequest {
            task_id,
            environment,
        })
        .await?
        .into_inner();
    tracing::Span::current().record("task_id", answer.task_id);
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "deployment_id": answer.deployment_id,
        "task_id": answer.task_id,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    deployment_id: Option<i64>,
}

/// `POST /api/workflows/{id}/environments/{env}/rollback`. The root span of
/// the rollback task it creates.
#[tracing::instrument(
    name = "roll back",
    parent = None,
    skip_all,
    fields(otel.kind = "server", task_id = tracing::field::Empty)
)]
pub async fn rollback(
    state: Data<State>,
    path: Path<(String, String)>,
    req: actix_web::HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<HttpResponse, HttpError> {
    let (workflow, environment) = path.into_inner();
    let workflow_id = super::id(&workflow, "workflow")?;
    let raw = crate::body::read(&req, payload, state.settings.api_max_bytes).await?;
    let body: RollbackBody = crate::body::json(&raw)?;
    let answer = state
        .client()
        .rollback_environment(proto::RollbackEnvironmentRequest {
            workflow_id,
            environment,
            deployment_id: body.deployment_id,
        })
        .await?
        .into_inner();
    tracing::Span::current().record("task_id", answer.task_id);
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "rollback_id": answer.rollback_id,
        "deployment_id": answer.deployment_id,
        "task_id": answer.task_id,
    })))
}
