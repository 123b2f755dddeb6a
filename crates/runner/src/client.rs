//! The runner's side of the runner API: typed calls with the lease attached,
//! and errors sorted into transient (retry) and final (the lease is gone or
//! the request is wrong).

use std::collections::HashMap;
use std::time::Duration;

use proto::auth::Bearer;
use proto::runner_api_client::RunnerApiClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The task it is a lease on.
    pub task_id: i64,
    /// What proves the lease is still this runner's.
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

/// A routed environment's recorded traffic: which deployment serves it, and
/// the workflow definition that made it.
#[derive(Debug, Clone)]
pub struct ServedRoute {
    pub workflow: String,
    pub environment: String,
    pub deployment_id: i64,
    /// The YAML of the workflow version that deployed it.
    pub definition: String,
}

/// A claimed task as the runner works with it: the orchestrator's answer
/// with its wire types left here.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The lease every report about the task presents.
    pub lease: Lease,
    /// How long the lease lasts without a heartbeat.
    pub lease_time: Duration,
    /// The YAML of the task's workflow version.
    pub definition: String,
    /// The workflow's name, for the log and the labels of what it makes.
    pub workflow: String,
    /// The repository URL to clone (it may carry credentials).
    pub repo: String,
    /// What started the task (`push`, `manual`, ...): it decides the plan.
    pub trigger: String,
    /// The branch pushed, or run by hand; `None` for a tag.
    pub branch: Option<String>,
    /// The tag pushed, for a task of a tag.
    pub tag: Option<String>,
    /// The commit to check out; `None`: the branch's head.
    pub commit: Option<String>,
    /// The secrets the workflow's steps and deploy targets name.
    pub secrets: HashMap<String, String>,
    /// The registry login, from the workflow's REGISTRY_USERNAME and
    /// REGISTRY_PASSWORD secrets (a password alone logs in as `slipway`).
    pub registry: Option<(String, String)>,
    /// Set for a deploy-only task: the deployment it carries out.
    pub deployment: Option<Order>,
}

/// The deployment a deploy-only task carries out.
#[derive(Debug, Clone)]
pub struct Order {
    /// The deployment's id, for its reports.
    pub id: i64,
    /// `repository@sha256:...`, what to deploy.
    pub image: String,
    /// Where it goes.
    pub environment: String,
}

impl TryFrom<proto::ClaimTaskResponse> for Claim {
    type Error = CallError;

    fn try_from(c: proto::ClaimTaskResponse) -> Result<Self, CallError> {
        let lease = c.lease.ok_or_else(|| {
            // The claim is stored; the message is moot either way.
            CallError(proto::ApiError::new(
                proto::ErrorCode::Conflict,
                "the claim came without a lease",
            ))
        })?;
        let registry = match (c.registry_username, c.registry_password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, Some(password)) => Some(("slipway".to_owned(), password)),
            _ => None,
        };
        let deployment = match (
            c.deployment_id,
            c.deployment_image,
            c.deployment_environment,
        ) {
            (Some(id), Some(image), Some(environment)) => Some(Order {
                id,
                image,
                environment,
            }),
            _ => None,
        };
        Ok(Claim {
            lease: Lease {
                task_id: lease.task_id,
                token: lease.lease_token,
            },
            lease_time: Duration::from_secs(u64::try_from(c.lease_seconds).unwrap_or(0)),
            definition: c.definition,
            workflow: c.workflow,
            repo: c.repo,
            trigger: c.trigger,
            branch: c.branch,
            tag: c.tag,
            commit: c.commit,
            secrets: c.secrets.into_iter().collect(),
            registry,
            deployment,
        })
    }
}

/// What asking to start a deployment came to.
#[derive(Debug, Clone)]
pub enum Start {
    /// It is deploying; `previous` is the environment's current version.
    Started { previous: Option<Version> },
    /// Another deploy of the environment runs, or an older one waits.
    Busy,
    /// A newer version is already deployed.
    Skipped,
}

/// A deployed version, to roll back to.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its deployment's id, for the rollback record and the parked container.
    pub id: i64,
    /// `repository@sha256:...`.
    pub image: String,
    /// The runner host it was deployed on, when recorded.
    pub host: Option<String>,
}

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
    ) -> Result<Claim, CallError> {
        self.inner
            .claim_task(proto::ClaimTaskRequest {
                task_id,
                runner_id: runner_id.to_owned(),
                labels: labels.iter().map(str::to_owned).collect(),
            })
            .await?
            .into_inner()
            .try_into()
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
    ) -> Result<i64, CallError> {
        Ok(self
            .inner
            .create_deployment(proto::CreateDeploymentRequest {
                lease: Some(lease.proto()),
                environment: environment.to_owned(),
                image: image.to_owned(),
                auto,
            })
            .await?
            .into_inner()
            .id)
    }

    /// Asks to start the deployment `id` on `host` (the runner's
    /// `SLIPWAY_RUNNER_HOST`, recorded on it).
    pub async fn start_deployment(
        &mut self,
        lease: &Lease,
        id: i64,
        host: &str,
    ) -> Result<Start, CallError> {
        let answer = self
            .inner
            .start_deployment(proto::StartDeploymentRequest {
                lease: Some(lease.proto()),
                deployment_id: id,
                host: host.to_owned(),
            })
            .await?
            .into_inner();
        Ok(match answer.outcome.as_str() {
            "started" => Start::Started {
                previous: answer.previous.map(|p| Version {
                    id: p.id,
                    image: p.image,
                    host: p.host,
                }),
            },
            "skipped" => Start::Skipped,
            _ => Start::Busy,
        })
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

    /// Records that the proxy sends the traffic of `id`'s environment to
    /// `serving` now, and that the containers of `retired` stopped.
    pub async fn record_traffic(
        &mut self,
        lease: &Lease,
        id: i64,
        serving: Option<i64>,
        retired: Vec<i64>,
    ) -> Result<(), CallError> {
        self.inner
            .record_traffic(proto::RecordTrafficRequest {
                lease: Some(lease.proto()),
                deployment_id: id,
                serving_deployment_id: serving,
                retired_deployment_ids: retired,
            })
            .await?;
        Ok(())
    }

    /// The routed environments served from `host`, as recorded.
    pub async fn list_routes(&mut self, host: &str) -> Result<Vec<ServedRoute>, CallError> {
        Ok(self
            .inner
            .list_routes(proto::ListRoutesRequest {
                host: host.to_owned(),
            })
            .await?
            .into_inner()
            .routes
            .into_iter()
            .map(|r| ServedRoute {
                workflow: r.workflow,
                environment: r.environment,
                deployment_id: r.deployment_id,
                definition: r.definition,
            })
            .collect())
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
