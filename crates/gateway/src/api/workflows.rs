//! `/api/workflows`: create, list, read, update, delete, run, secrets.

use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{id, path_id};
use crate::error::{HttpError, bad_request};
use crate::json::Workflow;
use crate::{State, body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefinitionBody {
    definition: String,
}

/// A definition from a YAML body, or from JSON `{"definition": "..."}`.
async fn definition(
    state: &State,
    req: &HttpRequest,
    payload: Payload,
) -> Result<String, HttpError> {
    let raw = body::read(req, payload, state.settings.api_max_bytes).await?;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") {
        let body: DefinitionBody = body::json(&raw)?;
        return Ok(body.definition);
    }
    String::from_utf8(raw.to_vec()).map_err(|_| bad_request("the definition is not valid UTF-8"))
}

#[tracing::instrument(name = "create workflow", skip_all)]
pub async fn create(
    state: Data<State>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let definition = definition(&state, &req, payload).await?;
    let w = state
        .client()
        .create_workflow(proto::CreateWorkflowRequest { definition })
        .await?
        .into_inner();
    Ok(HttpResponse::Created().json(Workflow::from(w)))
}

pub async fn list(state: Data<State>) -> Result<HttpResponse, HttpError> {
    let list = state
        .client()
        .list_workflows(proto::ListWorkflowsRequest {})
        .await?
        .into_inner();
    let out: Vec<Workflow> = list.workflows.into_iter().map(Workflow::from).collect();
    Ok(HttpResponse::Ok().json(out))
}

pub async fn get(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "workflow")?;
    let w = state
        .client()
        .get_workflow(proto::GetWorkflowRequest { id })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(Workflow::from(w)))
}

#[tracing::instrument(name = "update workflow", skip_all)]
pub async fn update(
    state: Data<State>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "workflow")?;
    let definition = definition(&state, &req, payload).await?;
    let w = state
        .client()
        .update_workflow(proto::UpdateWorkflowRequest { id, definition })
        .await?
        .into_inner();
    Ok(HttpResponse::Ok().json(Workflow::from(w)))
}

pub async fn delete(state: Data<State>, path: Path<String>) -> Result<HttpResponse, HttpError> {
    let id = path_id(path, "workflow")?;
    state
        .client()
        .delete_workflow(proto::DeleteWorkflowRequest { id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    branch: Option<String>,
    commit: Option<String>,
}

/// The root span of the task it creates.
#[tracing::instrument(
    name = "run workflow",
    parent = None,
    skip_all,
    fields(otel.kind = "server", workflow_id = tracing::field::Empty, task_id = tracing::field::Empty)
)]
pub async fn run(
    state: Data<State>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let workflow_id = path_id(path, "workflow")?;
    tracing::Span::current().record("workflow_id", workflow_id);
    let raw = body::read(&req, payload, state.settings.api_max_bytes).await?;
    let body: RunBody = body::json(&raw)?;
    let branch = body
        .branch
        .ok_or_else(|| bad_request("branch is required"))?;
    let answer = state
        .client()
        .run_workflow(proto::RunWorkflowRequest {
            workflow_id,
            branch,
            commit: body.commit,
        })
        .await?
        .into_inner();
    tracing::Span::current().record("task_id", answer.task_id);
    Ok(HttpResponse::Accepted().json(json!({"task_id": answer.task_id})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

pub async fn put_secret(
    state: Data<State>,
    path: Path<(String, String)>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let (workflow, name) = path.into_inner();
    let workflow_id = id(&workflow, "workflow")?;
    let raw = body::read(&req, payload, state.settings.api_max_bytes).await?;
    let body: SecretBody = body::json(&raw)?;
    state
        .client()
        .set_secret(proto::SetSecretRequest {
            workflow_id,
            name,
            value: body.value,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list_secrets(
    state: Data<State>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let workflow_id = path_id(path, "workflow")?;
    let names = state
        .client()
        .list_secrets(proto::ListSecretsRequest { workflow_id })
        .await?
        .into_inner()
        .names;
    Ok(HttpResponse::Ok().json(names))
}
