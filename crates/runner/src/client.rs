//! The runner's side of the runner API: typed calls with the lease attached,
//! and errors sorted into transient (retry) and final (the lease is gone or
//! the request is wrong).

use std::collections::HashMap;
use std::time::Duration;

use proto::auth::Bearer;
use proto::runner_api_client::RunnerApiClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::git;

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

/// An environment's current deployment on this host whose probe is due.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub workflow_id: i64,
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
    /// Set for a pull request task, which builds without pushing or
    /// deploying; its steps see the number and the target branch.
    pub pull_request: Option<PullRequest>,
    /// The ref the commit is fetched from when no branch or tag has it
    /// (`refs/pull/<n>/head`, `refs/merge-requests/<iid>/head`).
    pub fetch_ref: Option<String>,
    /// The workflow's secrets kept from this task (a pull request from a
    /// fork), which its log names before the first step.
    pub withheld_secrets: Vec<String>,
    /// What the clone presents to an `https://` remote that asks; never
    /// written anywhere.
    pub clone_credentials: Option<git::Credentials>,
    /// The workflow's newest pushed image (`repository@digest`), whose
    /// layers the image build may reuse.
    pub previous_image: Option<String>,
}

/// The pull request a task builds, as far as its steps see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub's number, GitLab's iid: `SLIPWAY_PR_NUMBER`.
    pub number: i64,
    /// The branch it would merge into: `SLIPWAY_PR_TARGET_BRANCH`.
    pub target_branch: String,
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
            pull_request: c.pull_request.map(|p| PullRequest {
                number: p.number,
                target_branch: p.target_branch,
            }),
            fetch_ref: c.fetch_ref.filter(|r| !r.is_empty()),
            withheld_secrets: c.withheld_secrets,
            clone_credentials: c.clone_credentials.map(|c| git::Credentials {
                username: c.username,
                password: c.password,
            }),
            previous_image: c.previous_image.filter(|i| !i.is_empty()),
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

    /// The commit checked out, with what was read from it.
    pub async fn report_commit(
        &mut self,
        lease: &Lease,
        commit: &crate::git::Checkout,
    ) -> Result<(), CallError> {
        self.inner
            .report_commit(proto::ReportCommitRequest {
                lease: Some(lease.proto()),
                commit: commit.sha.clone(),
                message: commit.message.clone(),
                author: commit.author.clone(),
                committed_at: commit.committed_at.map(proto::timestamp),
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

    /// The health checks due on `host`, handed to this runner for `every`.
    pub async fn claim_health_checks(
        &mut self,
        host: &str,
        every: Duration,
        limit: i32,
    ) -> Result<Vec<HealthCheck>, CallError> {
        Ok(self
            .inner
            .claim_health_checks(proto::ClaimHealthChecksRequest {
                host: host.to_owned(),
                interval_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
                limit,
            })
            .await?
            .into_inner()
            .checks
            .into_iter()
            .map(|c| HealthCheck {
                workflow_id: c.workflow_id,
                workflow: c.workflow,
                environment: c.environment,
                deployment_id: c.deployment_id,
                definition: c.definition,
            })
            .collect())
    }

    /// A probe's result.
    pub async fn report_health(
        &mut self,
        check: &HealthCheck,
        healthy: bool,
        error: Option<&str>,
    ) -> Result<(), CallError> {
        self.inner
            .report_health(proto::ReportHealthRequest {
                workflow_id: check.workflow_id,
                environment: check.environment.clone(),
                deployment_id: check.deployment_id,
                healthy,
                error: error.map(str::to_owned),
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
                at: None,
            })
            .await?;
        Ok(())
    }

    /// Step changes in the order they happened, in one call.
    pub async fn update_steps(
        &mut self,
        lease: &Lease,
        steps: Vec<proto::UpdateStepRequest>,
    ) -> Result<(), CallError> {
        self.inner
            .update_steps(proto::UpdateStepsRequest {
                lease: Some(lease.proto()),
                steps,
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
        steps: Vec<proto::UpdateStepRequest>,
    ) -> Result<(), CallError> {
        self.inner
            .finish_task(proto::FinishTaskRequest {
                lease: Some(lease.proto()),
                status: status.to_owned(),
                error,
                steps,
            })
            .await?;
        Ok(())
    }

    /// Of the workspaces found on disk, those whose task is gone, finished
    /// or runs under another lease.
    pub async fn check_workspaces(
        &mut self,
        found: &[Workspace],
    ) -> Result<Vec<Workspace>, CallError> {
        Ok(self
            .inner
            .check_workspaces(proto::CheckWorkspacesRequest {
                workspaces: found
                    .iter()
                    .map(|w| proto::WorkspaceRef {
                        task_id: w.task_id,
                        lease_prefix: w.lease_prefix.clone(),
                    })
                    .collect(),
            })
            .await?
            .into_inner()
            .stale
            .into_iter()
            .map(|w| Workspace {
                task_id: w.task_id,
                lease_prefix: w.lease_prefix,
            })
            .collect())
    }

    /// Claims up to `limit` registry manifests to delete, for `claim`.
    pub async fn claim_image_deletions(
        &mut self,
        runner_id: &str,
        limit: u32,
        claim: Duration,
    ) -> Result<Vec<ImageDeletion>, CallError> {
        Ok(self
            .inner
            .claim_image_deletions(proto::ClaimImageDeletionsRequest {
                runner_id: runner_id.to_owned(),
                limit: i32::try_from(limit).unwrap_or(i32::MAX),
                claim_ms: i64::try_from(claim.as_millis()).unwrap_or(i64::MAX),
            })
            .await?
            .into_inner()
            .deletions
            .into_iter()
            .map(ImageDeletion::from)
            .collect())
    }

    /// How a claimed deletion went: `Ok` deleted (or already gone).
    pub async fn report_image_deletion(
        &mut self,
        id: i64,
        runner_id: &str,
        outcome: Result<(), String>,
    ) -> Result<(), CallError> {
        self.inner
            .report_image_deletion(proto::ReportImageDeletionRequest {
                id,
                runner_id: runner_id.to_owned(),
                deleted: outcome.is_ok(),
                error: outcome.err(),
            })
            .await?;
        Ok(())
    }
}

/// A task workspace on disk, `task-<task_id>-<lease_prefix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub task_id: i64,
    /// The first characters of the lease token the task ran under.
    pub lease_prefix: String,
}

/// A registry manifest of a pruned image, to delete.
#[derive(Clone)]
pub struct ImageDeletion {
    /// Its queue entry, for the report.
    pub id: i64,
    /// `registry/name`.
    pub repository: String,
    pub digest: String,
    /// The login of the workflow that pushed it (a password alone logs in
    /// as `slipway`, as for pushes).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ImageDeletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDeletion")
            .field("id", &self.id)
            .field("repository", &self.repository)
            .field("digest", &self.digest)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "***")),
            )
            .finish()
    }
}

impl From<proto::ImageDeletion> for ImageDeletion {
    fn from(d: proto::ImageDeletion) -> Self {
        let credentials = match (d.registry_username, d.registry_password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, Some(password)) => Some(("slipway".to_owned(), password)),
            _ => None,
        };
        Self {
            id: d.id,
            repository: d.repository,
            digest: d.digest,
            credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_claim_keeps_what_the_runner_needs() {
        let wire = proto::ClaimTaskResponse {
            lease: Some(proto::LeaseRef {
                task_id: 9,
                lease_token: "t".to_owned(),
            }),
            trigger: "pull_request".to_owned(),
            pull_request: Some(proto::PullRequest {
                number: 7,
                title: "Fix".to_owned(),
                url: "https://github.com/acme/x/pull/7".to_owned(),
                source_branch: "someone:fix".to_owned(),
                target_branch: "main".to_owned(),
                fork: true,
            }),
            fetch_ref: Some("refs/pull/7/head".to_owned()),
            withheld_secrets: vec!["B".to_owned(), "A".to_owned()],
            clone_credentials: Some(proto::GitCredentials {
                username: "x-access-token".to_owned(),
                password: "s3cr3t".to_owned(),
            }),
            ..Default::default()
        };
        let claim = Claim::try_from(wire).expect("a claim");
        assert_eq!(
            claim.pull_request,
            Some(PullRequest {
                number: 7,
                target_branch: "main".to_owned()
            })
        );
        assert_eq!(claim.fetch_ref.as_deref(), Some("refs/pull/7/head"));
        assert_eq!(claim.withheld_secrets, ["B", "A"]);
        let credentials = claim.clone_credentials.as_ref().expect("credentials");
        assert_eq!(credentials.password, "s3cr3t");
        assert!(!format!("{claim:?}").contains("s3cr3t"));

        let push = Claim::try_from(proto::ClaimTaskResponse {
            lease: Some(proto::LeaseRef::default()),
            fetch_ref: Some(String::new()),
            ..Default::default()
        })
        .expect("a claim");
        assert_eq!(push.fetch_ref, None);
        assert!(push.pull_request.is_none() && push.clone_credentials.is_none());
    }
}
