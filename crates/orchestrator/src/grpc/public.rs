//! The public API (`slipway.v1.Slipway`): what the gateway and the CLI call.

use std::sync::Arc;

use domain::state::{DeploymentStatus, TaskStatus};
use futures_util::StreamExt;
use proto::slipway_server::Slipway;
use proto::{ApiError, ErrorCode};
use store::deployments::DeploymentFilter;
use store::tasks::TaskFilter;
use tonic::{Request, Response, Status};

use super::convert;
use crate::app::{App, Webhook};
use crate::logs::{self, Piece};

/// Default and largest page of the task list.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub struct PublicApi {
    app: Arc<App>,
}

impl PublicApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

/// The page size a list asks for, `DEFAULT_LIMIT` when it does not say.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

#[tonic::async_trait]
impl Slipway for PublicApi {
    async fn create_workflow(
        &self,
        req: Request<proto::CreateWorkflowRequest>,
    ) -> Answer<proto::Workflow> {
        let row = self
            .app
            .create_workflow(req.into_inner().definition)
            .await?;
        ok(convert::workflow(row, None))
    }

    async fn list_workflows(
        &self,
        _: Request<proto::ListWorkflowsRequest>,
    ) -> Answer<proto::ListWorkflowsResponse> {
        let rows = self.app.list_workflows().await?;
        ok(proto::ListWorkflowsResponse {
            workflows: rows
                .into_iter()
                .map(|r| convert::workflow(r, None))
                .collect(),
        })
    }

    async fn get_workflow(
        &self,
        req: Request<proto::GetWorkflowRequest>,
    ) -> Answer<proto::Workflow> {
        let (row, definition) = self.app.get_workflow(req.into_inner().id).await?;
        let retention = self.app.retention(row.id, row.version, &definition).await?;
        let mut workflow = convert::workflow(row, Some(definition));
        workflow.retention = Some(convert::retention(retention));
        ok(workflow)
    }

    async fn update_workflow(
        &self,
        req: Request<proto::UpdateWorkflowRequest>,
    ) -> Answer<proto::Workflow> {
        let req = req.into_inner();
        let row = self.app.update_workflow(req.id, req.definition).await?;
        ok(convert::workflow(row, None))
    }

    async fn delete_workflow(
        &self,
        req: Request<proto::DeleteWorkflowRequest>,
    ) -> Answer<proto::Empty> {
        self.app.delete_workflow(req.into_inner().id).await?;
        ok(proto::Empty {})
    }

    async fn run_workflow(
        &self,
        req: Request<proto::RunWorkflowRequest>,
    ) -> Answer<proto::TaskIdResponse> {
        let req = req.into_inner();
        let task_id = self
            .app
            .run_workflow(req.workflow_id, req.branch, req.commit)
            .await?;
        ok(proto::TaskIdResponse { task_id })
    }

    async fn set_secret(&self, req: Request<proto::SetSecretRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        self.app
            .set_secret(req.workflow_id, req.name, req.value)
            .await?;
        ok(proto::Empty {})
    }

    async fn list_secrets(
        &self,
        req: Request<proto::ListSecretsRequest>,
    ) -> Answer<proto::ListSecretsResponse> {
        let names = self.app.list_secrets(req.into_inner().workflow_id).await?;
        ok(proto::ListSecretsResponse { names })
    }

    async fn ingest_webhook(
        &self,
        req: Request<proto::IngestWebhookRequest>,
    ) -> Answer<proto::WebhookOutcome> {
        let req = req.into_inner();
        if req.delivery_id.is_empty() {
            return Err(ApiError::new(ErrorCode::BadRequest, "missing delivery id").into());
        }
        let push = req.push.map(convert::push_event).transpose()?;
        let workflow_run = req.workflow_run.map(convert::workflow_run).transpose()?;
        let pull_request = req
            .pull_request
            .map(convert::pull_request_event)
            .transpose()?;
        let forge = req.forge.and_then(convert::forge_ref);
        let outcome = self
            .app
            .ingest_webhook(Webhook {
                provider: req.provider,
                delivery_id: req.delivery_id,
                event: req.event,
                body_sha256: req.body_sha256,
                push,
                workflow_run,
                pull_request,
                forge,
                ignored: req.ignored,
                received_at: req.received_at.as_ref().and_then(proto::datetime),
            })
            .await?;
        ok(proto::WebhookOutcome {
            delivery_id: outcome.delivery_id,
            task_ids: outcome.task_ids,
            ignored: outcome.ignored,
            duplicate: outcome.duplicate,
        })
    }

    async fn list_tasks(
        &self,
        req: Request<proto::ListTasksRequest>,
    ) -> Answer<proto::ListTasksResponse> {
        let req = req.into_inner();
        let status = match req.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<TaskStatus>()
                    .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?,
            ),
        };
        let limit = page_limit(req.limit)?;
        let tasks = self
            .app
            .list_tasks(TaskFilter {
                workflow_id: req.workflow_id,
                status,
                before: req.before,
                limit,
            })
            .await?;
        let mut out = Vec::with_capacity(tasks.len());
        for detail in tasks {
            let id = detail.task.id;
            let deployments = self.app.task_deployments(id).await?;
            let statuses = self
                .app
                .db("task", move |conn| store::forges::for_task(conn, id))
                .await?;
            out.push(convert::task(detail, deployments, statuses));
        }
        ok(proto::ListTasksResponse { tasks: out })
    }

    async fn get_task(&self, req: Request<proto::GetTaskRequest>) -> Answer<proto::Task> {
        let id = req.into_inner().id;
        let detail = self.app.get_task(id).await?;
        let deployments = self.app.task_deployments(id).await?;
        let statuses = self
            .app
            .db("task", move |conn| store::forges::for_task(conn, id))
            .await?;
        ok(convert::task(detail, deployments, statuses))
    }

    async fn get_logs(
        &self,
        req: Request<proto::GetLogsRequest>,
    ) -> Answer<proto::GetLogsResponse> {
        let req = req.into_inner();
        let text = logs::read(&self.app, req.task_id, req.step).await?;
        ok(proto::GetLogsResponse { text })
    }

    type StreamLogsStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<proto::LogPiece, Status>> + Send>>;

    async fn stream_logs(
        &self,
        req: Request<proto::StreamLogsRequest>,
    ) -> Answer<Self::StreamLogsStream> {
        let req = req.into_inner();
        let pieces = logs::follow(self.app.clone(), req.task_id, req.chunks).await?;
        let stream = pieces.map(|piece| match piece {
            Ok(Piece::Text(text)) => Ok(proto::LogPiece {
                text,
                ..Default::default()
            }),
            Ok(Piece::Chunk { position, data, at }) => Ok(proto::LogPiece {
                text: data,
                position: Some(position),
                at: Some(proto::timestamp(at)),
                ..Default::default()
            }),
            Ok(Piece::Finished(status)) => Ok(proto::LogPiece {
                finished: Some(status),
                ..Default::default()
            }),
            Err(e) => Err(Status::from(e)),
        });
        ok(Box::pin(stream))
    }

    async fn retry_task(
        &self,
        req: Request<proto::RetryTaskRequest>,
    ) -> Answer<proto::TaskIdResponse> {
        let task_id = self.app.retry_task(req.into_inner().id).await?;
        ok(proto::TaskIdResponse { task_id })
    }

    async fn cancel_task(&self, req: Request<proto::CancelTaskRequest>) -> Answer<proto::Empty> {
        self.app.cancel_task(req.into_inner().id).await?;
        ok(proto::Empty {})
    }

    async fn list_deployments(
        &self,
        req: Request<proto::ListDeploymentsRequest>,
    ) -> Answer<proto::ListDeploymentsResponse> {
        let req = req.into_inner();
        let limit = page_limit(req.limit)?;
        let status = match req.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<DeploymentStatus>()
                    .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?,
            ),
        };
        let filter = DeploymentFilter {
            workflow_id: req.workflow_id,
            environment: req.environment,
            status,
        };
        let rows = self.app.list_deployments(filter, limit).await?;
        ok(proto::ListDeploymentsResponse {
            deployments: rows.into_iter().map(convert::deployment).collect(),
        })
    }

    async fn get_deployment(
        &self,
        req: Request<proto::GetDeploymentRequest>,
    ) -> Answer<proto::Deployment> {
        let record = self.app.get_deployment(req.into_inner().id).await?;
        ok(convert::deployment(record))
    }

    async fn list_rollbacks(
        &self,
        req: Request<proto::ListRollbacksRequest>,
    ) -> Answer<proto::ListRollbacksResponse> {
        let req = req.into_inner();
        let rows = self
            .app
            .list_rollbacks(req.workflow_id, req.environment)
            .await?;
        ok(proto::ListRollbacksResponse {
            rollbacks: rows.into_iter().map(convert::rollback).collect(),
        })
    }

    async fn list_alerts(
        &self,
        req: Request<proto::ListAlertsRequest>,
    ) -> Answer<proto::ListAlertsResponse> {
        let req = req.into_inner();
        let filter = store::alerts::AlertFilter {
            limit: page_limit(req.limit)?,
            workflow_id: req.workflow_id,
            task_id: req.task_id,
            kind: req.r#type.filter(|t| !t.is_empty()),
        };
        let alerts = self.app.list_alerts(filter).await?;
        ok(proto::ListAlertsResponse {
            alerts: alerts.into_iter().map(convert::alert).collect(),
        })
    }

    async fn get_overview(&self, _req: Request<proto::Empty>) -> Answer<proto::Overview> {
        ok(super::insights::overview(self.app.overview().await?))
    }

    async fn get_workflow_stats(
        &self,
        req: Request<proto::GetWorkflowStatsRequest>,
    ) -> Answer<proto::WorkflowStats> {
        let req = req.into_inner();
        let stats = self.app.workflow_stats(req.workflow_id, req.days).await?;
        ok(super::insights::stats(stats))
    }

    async fn list_environments(
        &self,
        req: Request<proto::ListEnvironmentsRequest>,
    ) -> Answer<proto::ListEnvironmentsResponse> {
        let rows = self
            .app
            .list_environments(req.into_inner().workflow_id)
            .await?;
        ok(proto::ListEnvironmentsResponse {
            environments: rows.into_iter().map(convert::environment).collect(),
        })
    }

    async fn deploy_task(
        &self,
        req: Request<proto::DeployTaskRequest>,
    ) -> Answer<proto::DeployTaskResponse> {
        let req = req.into_inner();
        let (deployment_id, task_id) = self.app.deploy_task(req.task_id, req.environment).await?;
        ok(proto::DeployTaskResponse {
            deployment_id,
            task_id,
        })
    }

    async fn rollback_environment(
        &self,
        req: Request<proto::RollbackEnvironmentRequest>,
    ) -> Answer<proto::RollbackEnvironmentResponse> {
        let req = req.into_inner();
        let (rollback_id, deployment_id, task_id) = self
            .app
            .rollback_environment(req.workflow_id, req.environment, req.deployment_id)
            .await?;
        ok(proto::RollbackEnvironmentResponse {
            rollback_id,
            deployment_id,
            task_id,
        })
    }

    async fn ready(&self, _: Request<proto::Empty>) -> Answer<proto::ReadyResponse> {
        ok(proto::ReadyResponse {
            database: self.app.database_up().await,
            broker: self.app.broker_up(),
        })
    }
}
