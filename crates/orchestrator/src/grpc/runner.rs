//! The runner API (`slipway.v1.RunnerApi`): what a runner calls while it
//! holds a task's lease. Every call but the claim names the lease token; a
//! runner whose lease was lost is refused and stops the task.

use std::sync::Arc;
use std::time::Duration;

use proto::runner_api_server::RunnerApi;
use proto::{ApiError, ErrorCode};
use store::tasks::StepChange;
use tonic::{Request, Response, Status};

use store::deployments::{Start, Traffic};

use super::convert;
use crate::app::App;

pub struct RunnerService {
    app: Arc<App>,
}

impl RunnerService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn lease(lease: Option<proto::LeaseRef>) -> Result<(i64, String), ApiError> {
    let lease = lease.ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "missing lease"))?;
    Ok((lease.task_id, lease.lease_token))
}

#[tonic::async_trait]
impl RunnerApi for RunnerService {
    async fn claim_task(
        &self,
        req: Request<proto::ClaimTaskRequest>,
    ) -> Answer<proto::ClaimTaskResponse> {
        let req = req.into_inner();
        let labels = domain::labels::Labels::offered(&req.labels)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("runner labels: {e}")))?;
        let claim = self.app.claim(req.task_id, req.runner_id, labels).await?;
        let t = claim.detail.task;
        let pull_request = t.pull_request().ok().flatten();
        let fetch_ref = pull_request
            .as_ref()
            .map(|p| p.fetch_ref.clone())
            .filter(|r| !r.is_empty());
        Ok(Response::new(proto::ClaimTaskResponse {
            lease: Some(proto::LeaseRef {
                task_id: t.id,
                lease_token: claim.token,
            }),
            definition: claim.definition,
            workflow: claim.detail.workflow,
            repo: claim.repo,
            trigger: t.trigger,
            branch: t.branch,
            tag: t.tag,
            commit: t.commit_sha,
            secrets: claim.secrets.into_iter().collect(),
            registry_username: claim.registry_username,
            registry_password: claim.registry_password,
            deployment_id: claim.deployment.as_ref().map(|d| d.id),
            deployment_image: claim.deployment.as_ref().map(|d| d.image.clone()),
            deployment_environment: claim.deployment.map(|d| d.environment),
            attempt: t.attempt,
            lease_seconds: i64::try_from(self.app.lease.as_secs()).unwrap_or(i64::MAX),
            pull_request: pull_request.map(convert::pull_request),
            fetch_ref,
            withheld_secrets: claim.withheld_secrets,
            clone_credentials: claim
                .clone_credentials
                .map(|(username, password)| proto::GitCredentials { username, password }),
            previous_image: claim.previous_image,
        }))
    }

    async fn heartbeat(&self, req: Request<proto::LeaseRef>) -> Answer<proto::HeartbeatResponse> {
        let req = req.into_inner();
        let cancel_requested = self.app.heartbeat(req.task_id, req.lease_token).await?;
        Ok(Response::new(proto::HeartbeatResponse { cancel_requested }))
    }

    async fn announce(&self, req: Request<proto::AnnounceRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        if req.runner_id.is_empty() {
            return Err(ApiError::new(ErrorCode::BadRequest, "runner_id is required").into());
        }
        self.app.runners.announce(
            req.runner_id,
            crate::runners::Presence {
                slots: req.slots,
                busy: req.busy,
            },
            req.leaving,
        );
        Ok(Response::new(proto::Empty {}))
    }

    async fn report_commit(
        &self,
        req: Request<proto::ReportCommitRequest>,
    ) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let commit = store::tasks::ClonedCommit {
            sha: req.commit,
            message: req.message,
            author: req.author,
            committed_at: req.committed_at.as_ref().and_then(proto::datetime),
        };
        self.app.report_commit(task_id, token, commit).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn claim_health_checks(
        &self,
        req: Request<proto::ClaimHealthChecksRequest>,
    ) -> Answer<proto::ClaimHealthChecksResponse> {
        let req = req.into_inner();
        let interval = Duration::from_millis(u64::try_from(req.interval_ms).unwrap_or(0));
        let due = self
            .app
            .claim_health_checks(req.host, interval, req.limit)
            .await?;
        Ok(Response::new(proto::ClaimHealthChecksResponse {
            checks: due
                .into_iter()
                .map(|d| proto::HealthCheck {
                    workflow_id: d.workflow_id,
                    workflow: d.workflow,
                    environment: d.environment,
                    deployment_id: d.deployment_id,
                    definition: d.definition,
                })
                .collect(),
        }))
    }

    async fn report_health(
        &self,
        req: Request<proto::ReportHealthRequest>,
    ) -> Answer<proto::Empty> {
        let r = req.into_inner();
        self.app
            .report_health(
                r.workflow_id,
                r.environment,
                r.deployment_id,
                r.healthy,
                r.error,
            )
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn report_image(&self, req: Request<proto::ReportImageRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        self.app
            .report_image(task_id, token, req.reference, req.digest)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn update_step(&self, req: Request<proto::UpdateStepRequest>) -> Answer<proto::Empty> {
        let mut req = req.into_inner();
        let (task_id, token) = lease(req.lease.take())?;
        self.app
            .update_steps(task_id, token, vec![step_change(req)?])
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn update_steps(&self, req: Request<proto::UpdateStepsRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let changes = req
            .steps
            .into_iter()
            .map(step_change)
            .collect::<Result<Vec<_>, Status>>()?;
        self.app.update_steps(task_id, token, changes).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn append_log(&self, req: Request<proto::AppendLogRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        self.app
            .append_log(task_id, token, req.position, req.data)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn create_deployment(
        &self,
        req: Request<proto::CreateDeploymentRequest>,
    ) -> Answer<proto::Deployment> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let row = self
            .app
            .create_deployment(task_id, token, req.environment, req.image, req.auto)
            .await?;
        Ok(Response::new(convert::deployment_row(row)))
    }

    async fn start_deployment(
        &self,
        req: Request<proto::StartDeploymentRequest>,
    ) -> Answer<proto::StartDeploymentResponse> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let answer = match self
            .app
            .start_deployment(task_id, token, req.deployment_id, req.host)
            .await?
        {
            Start::Started {
                deployment,
                previous,
            } => proto::StartDeploymentResponse {
                outcome: "started".to_owned(),
                deployment: Some(convert::deployment_row(*deployment)),
                previous: previous.map(|d| convert::deployment_row(*d)),
            },
            Start::Busy => proto::StartDeploymentResponse {
                outcome: "busy".to_owned(),
                deployment: None,
                previous: None,
            },
            Start::Skipped(d) => proto::StartDeploymentResponse {
                outcome: "skipped".to_owned(),
                deployment: Some(convert::deployment_row(*d)),
                previous: None,
            },
        };
        Ok(Response::new(answer))
    }

    async fn advance_deployment(
        &self,
        req: Request<proto::AdvanceDeploymentRequest>,
    ) -> Answer<proto::Deployment> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let event = convert::deployment_event(&req.event)?;
        let row = self
            .app
            .advance_deployment(
                task_id,
                token,
                req.deployment_id,
                event,
                req.error,
                req.alert,
            )
            .await?;
        Ok(Response::new(convert::deployment_row(row)))
    }

    async fn record_rollback(
        &self,
        req: Request<proto::RecordRollbackRequest>,
    ) -> Answer<proto::Rollback> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let row = self
            .app
            .record_rollback(
                task_id,
                token,
                req.deployment_id,
                req.to_deployment_id,
                req.reason,
                req.succeeded,
                req.error,
            )
            .await?;
        Ok(Response::new(convert::rollback(row)))
    }

    async fn finish_task(&self, req: Request<proto::FinishTaskRequest>) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let event = convert::task_event(&req.status)?;
        let steps = req
            .steps
            .into_iter()
            .map(step_change)
            .collect::<Result<Vec<_>, Status>>()?;
        self.app
            .finish(task_id, token, steps, event, req.error)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn record_traffic(
        &self,
        req: Request<proto::RecordTrafficRequest>,
    ) -> Answer<proto::Empty> {
        let req = req.into_inner();
        let (task_id, token) = lease(req.lease)?;
        let traffic = Traffic {
            serving: req.serving_deployment_id,
            retired: req.retired_deployment_ids,
        };
        self.app
            .record_traffic(task_id, token, req.deployment_id, traffic)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn list_routes(
        &self,
        req: Request<proto::ListRoutesRequest>,
    ) -> Answer<proto::ListRoutesResponse> {
        let routes = self.app.list_routes(req.into_inner().host).await?;
        Ok(Response::new(proto::ListRoutesResponse {
            routes: routes.into_iter().map(convert::served_route).collect(),
        }))
    }

    async fn check_workspaces(
        &self,
        req: Request<proto::CheckWorkspacesRequest>,
    ) -> Answer<proto::CheckWorkspacesResponse> {
        let found = req
            .into_inner()
            .workspaces
            .into_iter()
            .map(convert::workspace)
            .collect();
        let stale = self.app.check_workspaces(found).await?;
        Ok(Response::new(proto::CheckWorkspacesResponse {
            stale: stale.into_iter().map(convert::workspace_ref).collect(),
        }))
    }

    async fn claim_image_deletions(
        &self,
        req: Request<proto::ClaimImageDeletionsRequest>,
    ) -> Answer<proto::ClaimImageDeletionsResponse> {
        let req = req.into_inner();
        let limit = i64::from(req.limit.clamp(1, 100));
        // A claim must outlive a deletion's request, and not hold one for
        // long when its runner died.
        let claim = Duration::from_millis(u64::try_from(req.claim_ms).unwrap_or(0))
            .clamp(Duration::from_secs(10), Duration::from_secs(3600));
        let claimed = self
            .app
            .claim_image_deletions(req.runner_id, limit, claim)
            .await?;
        Ok(Response::new(proto::ClaimImageDeletionsResponse {
            deletions: claimed.into_iter().map(convert::image_deletion).collect(),
        }))
    }

    async fn report_image_deletion(
        &self,
        req: Request<proto::ReportImageDeletionRequest>,
    ) -> Answer<proto::Empty> {
        let req = req.into_inner();
        self.app
            .report_image_deletion(req.id, req.runner_id, req.deleted, req.error)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }
}

/// A step change as the runner reported it.
fn step_change(req: proto::UpdateStepRequest) -> Result<StepChange, Status> {
    Ok(StepChange {
        position: req.position,
        event: convert::step_event(&req.status)?,
        exit_code: req.exit_code,
        error: req.error,
        at: req.at.as_ref().and_then(proto::datetime),
    })
}
