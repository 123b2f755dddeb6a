//! Deployments and environments: what users read and request (a deploy of a
//! task's image, a rollback), what the runner carrying them out reports
//! under its task's lease (traffic moves of routed environments too), and
//! the routes a runner's edge proxy serves.

use domain::state::DeploymentEvent;
use proto::{ApiError, ErrorCode};
use store::deployments::{
    DeploymentFilter, DeploymentRecord, DeploymentRow, EnvironmentView, NewDeployment, RollbackRow,
    ServedRoute, Start, Traffic,
};

use super::{App, bad_request};

/// The host in a routed environment's `listen` URL while no deployment of
/// it recorded where it runs.
pub(super) const LOCAL_HOST: &str = "127.0.0.1";

/// An environment as users see it.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Its row and the deployments the row points at.
    pub records: EnvironmentView,
    /// Where it is served, when the workflow's current definition routes it.
    pub route: Option<ServedAt>,
}

/// Where a routed environment is served (edge.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedAt {
    pub domains: Vec<String>,
    pub listen: Option<u16>,
    /// The first domain's address, else the `listen` port on the host of
    /// the serving (else current) deployment.
    pub url: String,
}

impl App {
    pub async fn task_deployments(&self, task_id: i64) -> Result<Vec<DeploymentRecord>, ApiError> {
        self.db("task", move |conn| {
            store::deployments::for_task(conn, task_id)
        })
        .await
    }

    pub async fn list_deployments(
        &self,
        filter: DeploymentFilter,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>, ApiError> {
        self.db("deployments", move |conn| {
            store::deployments::list(conn, &filter, limit)
        })
        .await
    }

    pub async fn get_deployment(&self, id: i64) -> Result<DeploymentRecord, ApiError> {
        self.db(&format!("deployment {id}"), move |conn| {
            store::deployments::get(conn, id)
        })
        .await
    }

    pub async fn list_rollbacks(
        &self,
        workflow_id: Option<i64>,
        environment: Option<String>,
    ) -> Result<Vec<RollbackRow>, ApiError> {
        self.db("rollbacks", move |conn| {
            store::deployments::rollbacks(conn, workflow_id, environment.as_deref())
        })
        .await
    }

    /// A workflow's environments: every one of its current definition,
    /// deployed to or not, then those deployed to before and no longer
    /// defined; each with where it is served when the definition routes it.
    pub async fn list_environments(&self, workflow_id: i64) -> Result<Vec<Environment>, ApiError> {
        let (workflow, definition) = self
            .db(&format!("workflow {workflow_id}"), move |conn| {
                let workflow = store::workflows::live(conn, workflow_id)?;
                let definition = store::workflows::definition(conn, workflow_id, workflow.version)?;
                Ok((workflow, definition))
            })
            .await?;
        let spec = self.spec(workflow_id, workflow.version, &definition)?;
        let defined: Vec<String> = spec
            .deploy
            .iter()
            .map(|d| d.environment.as_str().to_owned())
            .collect();
        let views = self
            .db(&format!("workflow {workflow_id}"), move |conn| {
                store::deployments::environments(conn, workflow_id, &defined)
            })
            .await?;
        Ok(views
            .into_iter()
            .map(|records| {
                let route = spec
                    .deploy
                    .iter()
                    .find(|d| d.environment.as_str() == records.name)
                    .and_then(|d| d.route.as_ref())
                    .map(|route| {
                        let current = records.current.as_ref().map(|c| &c.row);
                        let host = [records.serving.as_ref(), current]
                            .into_iter()
                            .find_map(|d| d.and_then(|d| d.host.as_deref()))
                            .unwrap_or(LOCAL_HOST);
                        ServedAt {
                            domains: route.domains.clone(),
                            listen: route.listen,
                            url: route.url(host),
                        }
                    });
                Environment { records, route }
            })
            .collect())
    }

    /// The routed environments whose traffic goes to a deployment made on
    /// `host`: what a runner there restores in its edge proxy.
    pub async fn list_routes(&self, host: String) -> Result<Vec<ServedRoute>, ApiError> {
        if host.is_empty() {
            return Err(bad_request("host is required"));
        }
        self.db("routes", move |conn| {
            store::deployments::served_from(conn, &host)
        })
        .await
    }

    /// A routed environment's traffic moved, or old versions of it stopped,
    /// as the runner deploying `id` under its task's lease reports.
    pub async fn record_traffic(
        &self,
        task_id: i64,
        token: String,
        id: i64,
        traffic: Traffic,
    ) -> Result<(), ApiError> {
        self.db(&format!("deployment {id}"), move |conn| {
            store::task_deploys::record_traffic(conn, task_id, &token, id, &traffic)
        })
        .await
        .map(|_| ())
    }

    pub async fn deploy_task(
        &self,
        task_id: i64,
        environment: String,
    ) -> Result<(i64, i64), ApiError> {
        let detail = self.get_task(task_id).await?;
        let definition = {
            let (w, v) = (detail.task.workflow_id, detail.task.workflow_version);
            self.db("workflow", move |conn| {
                store::workflows::definition(conn, w, v)
            })
            .await?
        };
        let spec = self.spec(
            detail.task.workflow_id,
            detail.task.workflow_version,
            &definition,
        )?;
        if !spec
            .deploy
            .iter()
            .any(|d| d.environment.as_str() == environment)
        {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("workflow {} has no environment {environment}", spec.name),
            ));
        }
        let trace = telemetry::propagation::current_traceparent();
        let (deployment, carrier) = self
            .db(&format!("task {task_id}"), move |conn| {
                store::task_deploys::request_deploy(conn, task_id, &environment, trace.as_deref())
            })
            .await?;
        self.queued();
        Ok((deployment.id, carrier))
    }

    pub async fn rollback_environment(
        &self,
        workflow_id: i64,
        environment: String,
        to: Option<i64>,
    ) -> Result<(i64, i64, i64), ApiError> {
        let trace = telemetry::propagation::current_traceparent();
        let (rollback, deployment, carrier) = self
            .db(&format!("workflow {workflow_id}"), move |conn| {
                store::workflows::live(conn, workflow_id)?;
                store::task_deploys::request_rollback(
                    conn,
                    workflow_id,
                    &environment,
                    to,
                    trace.as_deref(),
                )
            })
            .await?;
        self.queued();
        Ok((rollback.id, deployment.id, carrier))
    }

    pub async fn create_deployment(
        &self,
        task_id: i64,
        token: String,
        environment: String,
        image: String,
        auto: bool,
    ) -> Result<DeploymentRow, ApiError> {
        self.db("task", move |conn| {
            store::tasks::check_lease(conn, task_id, &token)?;
            let workflow_id = store::tasks::workflow_of(conn, task_id)?;
            store::deployments::create(
                conn,
                &NewDeployment {
                    workflow_id,
                    task_id: Some(task_id),
                    environment,
                    image,
                    trigger: "auto".to_owned(),
                    auto,
                },
            )
        })
        .await
        .inspect(|_| self.queued())
    }

    /// Starts a deployment on the runner host `host` (not recorded when
    /// empty).
    pub async fn start_deployment(
        &self,
        task_id: i64,
        token: String,
        id: i64,
        host: String,
    ) -> Result<Start, ApiError> {
        self.db(&format!("deployment {id}"), move |conn| {
            store::tasks::check_lease(conn, task_id, &token)?;
            let host = Some(host.as_str()).filter(|h| !h.is_empty());
            store::deployments::start(conn, id, host)
        })
        .await
        .inspect(|start| {
            if let Start::Skipped(d) = start {
                self.metrics.deployment_changed(d);
            }
            self.queued();
        })
    }

    pub async fn advance_deployment(
        &self,
        task_id: i64,
        token: String,
        id: i64,
        event: DeploymentEvent,
        error: Option<String>,
        alert: Option<String>,
    ) -> Result<DeploymentRow, ApiError> {
        if let Some(a) = alert.as_deref()
            && !matches!(a, "deploy_failed" | "health_check_failed")
        {
            return Err(bad_request(format!("unknown deploy alert {a:?}")));
        }
        let row = self
            .db(&format!("deployment {id}"), move |conn| {
                store::tasks::check_lease(conn, task_id, &token)?;
                store::deployments::advance(conn, id, event, error.as_deref(), alert.as_deref())
            })
            .await
            .inspect(|d| {
                self.metrics.deployment_changed(d);
                self.queued();
            })?;
        if row.status == "succeeded" {
            self.healthy_after_deploy(&row).await;
        }
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_rollback(
        &self,
        task_id: i64,
        token: String,
        id: i64,
        to: Option<i64>,
        reason: String,
        succeeded: bool,
        error: Option<String>,
    ) -> Result<RollbackRow, ApiError> {
        if !matches!(
            reason.as_str(),
            "deploy_failed" | "health_check_failed" | "manual"
        ) {
            return Err(bad_request(format!("unknown rollback reason {reason:?}")));
        }
        self.db(&format!("deployment {id}"), move |conn| {
            store::tasks::check_lease(conn, task_id, &token)?;
            store::deployments::record_rollback(conn, id, to, &reason, succeeded, error.as_deref())
        })
        .await
        .inspect(|r| {
            self.metrics.rollback_recorded(r);
            self.queued();
        })
    }
}
