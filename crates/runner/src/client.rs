//! The runner's side of the runner API: typed calls with the lease attached,
//! and errors sorted into transient (retry) and final (the lease is gone or
//! the request is wrong).

use std::time::Duration;

use proto::auth::Bearer;
use proto::runner_api_client::RunnerApiClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub task_id: i64,
    pub token: String,
}

impl Lease {
    fn proto(&self) -> proto::LeaseRef {
        proto::LeaseRef {
            task_id: self.task_id,
            lease_token: self.token.clone(),
        }
    }
}

pub use proto::CallError;

#[derive(Clone)]
pub struct RunnerClient {
    inner: RunnerApiClient<InterceptedService<Channel, Bearer>>,
}

impl RunnerClient {
    pub fn new(url: &str, ca: Option<&std::path::Path>, token: &str) -> Result<Self, String> {
        let bearer = Bearer::new(token)
            .ok_or("SLIPWAY_RUNNER_TOKEN (or SLIPWAY_API_TOKEN) must be printable ASCII")?;
        let channel = proto::orchestrator_channel(url, ca, Duration::from_secs(30))?;
        Ok(Self {
            inner: RunnerApiClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(64 * 1024 * 1024),
        })
    }

    pub async fn claim(
        &mut self,
        task_id: i64,
        runner_id: &str,
        labels: &domain::labels::Labels,
    ) -> Result<proto::ClaimTaskResponse, CallError> {
        Ok(self
            .inner
            .claim_task(proto::ClaimTaskRequest {
                task_id,
                runner_id: runner_id.to_owned(),
                labels: labels.iter().map(str::to_owned).collect(),
            })
            .await?
            .into_inner())
    }

    /// Says the runner is alive (or, with `leaving`, that it stops).
    pub async fn announce(
        &mut self,
        runner_id: &str,
        slots: usize,
        busy: usize,
        leaving: bool,
    ) -> Result<(), CallError> {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.inner
            .announce(proto::AnnounceRequest {
                runner_id: runner_id.to_owned(),
                slots: count(slots),
                busy: count(busy),
                leaving,
            })
            .await?;
        Ok(())
    }

    /// Renews the lease; true when a cancel was requested.
    pub async fn heartbeat(&mut self, lease: &Lease) -> Result<bool, CallError> {
        Ok(self
            .inner
            .heartbeat(lease.proto())
            .await?
            .into_inner()
            .cancel_requested)
    }

    pub async fn report_commit(&mut self, lease: &Lease, commit: &str) -> Result<(), CallError> {
        self.inner
            .report_commit(proto::ReportCommitRequest {
                lease: Some(lease.proto()),
                commit: commit.to_owned(),
            })
            .await?;
        Ok(())
    }

    pub async fn report_image(
        &mut self,
        lease: &Lease,
        reference: &str,
        digest: &str,
    ) -> Result<(), CallError> {
        self.inner
            .report_image(proto::ReportImageRequest {
                lease: Some(lease.proto()),
                reference: reference.to_owned(),
                digest: digest.to_owned(),
            })
            .await?;
        Ok(())
    }

    pub async fn create_deployment(
        &mut self,
        lease: &Lease,
        environment: &str,
        image: &str,
        auto: bool,
    ) -> Result<proto::Deployment, CallError> {
        Ok(self
            .inner
            .create_deployment(proto::CreateDeploymentRequest {
                lease: Some(lease.proto()),
                environment: environment.to_owned(),
                image: image.to_owned(),
                auto,
            })
            .await?
            .into_inner())
    }

    pub async fn start_deployment(
        &mut self,
        lease: &Lease,
        id: i64,
    ) -> Result<proto::StartDeploymentResponse, CallError> {
        Ok(self
            .inner
            .start_deployment(proto::DeploymentRef {
                lease: Some(lease.proto()),
                deployment_id: id,
            })
            .await?
            .into_inner())
    }

    pub async fn advance_deployment(
        &mut self,
        lease: &Lease,
        id: i64,
        event: &str,
        error: Option<String>,
        alert: Option<&str>,
    ) -> Result<(), CallError> {
        self.inner
            .advance_deployment(proto::AdvanceDeploymentRequest {
                lease: Some(lease.proto()),
                deployment_id: id,
                event: event.to_owned(),
                error,
                alert: alert.map(str::to_owned),
            })
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_rollback(
        &mut self,
        lease: &Lease,
        id: i64,
        to: Option<i64>,
        reason: &str,
        succeeded: bool,
        error: Option<String>,
    ) -> Result<(), CallError> {
        self.inner
            .record_rollback(proto::RecordRollbackRequest {
                lease: Some(lease.proto()),
                deployment_id: id,
                to_deployment_id: to,
                reason: reason.to_owned(),
                succeeded,
                error,
            })
            .await?;
        Ok(())
    }

    pub async fn update_step(
        &mut self,
        lease: &Lease,
        position: i32,
        status: &str,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Result<(), CallError> {
        self.inner
            .update_step(proto::UpdateStepRequest {
                lease: Some(lease.proto()),
                position,
                status: status.to_owned(),
                exit_code,
                error,
            })
            .await?;
        Ok(())
    }

    pub async fn append_log(
        &mut self,
        lease: &Lease,
        position: i32,
        data: Vec<u8>,
    ) -> Result<(), CallError> {
        self.inner
            .append_log(proto::AppendLogRequest {
                lease: Some(lease.proto()),
                position,
                data,
            })
            .await?;
        Ok(())
    }

    pub async fn finish(
        &mut self,
        lease: &Lease,
        status: &str,
        error: Option<String>,
    ) -> Result<(), CallError> {
        self.inner
            .finish_task(proto::FinishTaskRequest {
                lease: Some(lease.proto()),
                status: status.to_owned(),
                error,
            })
            .await?;
        Ok(())
    }
}
