//! The health of each environment's current deployment after its deploy:
//! which probes are due for a runner host, and what their results change.

use std::time::Duration;

use chrono::Utc;
use proto::ApiError;
use store::deployments::DeploymentRow;
use store::health::{Change, Due};

use super::{App, bad_request};

/// The most checks one claim hands out.
const MAX_CLAIM: i32 = 100;

impl App {
    /// The checks due on `host`, each handed to this caller for `interval`;
    /// only environments whose definition gives a health check.
    pub async fn claim_health_checks(
        &self,
        host: String,
        interval: Duration,
        limit: i32,
    ) -> Result<Vec<Due>, ApiError> {
        if host.trim().is_empty() {
            return Err(bad_request("host is required"));
        }
        let limit = limit.clamp(1, MAX_CLAIM);
        let interval = interval.max(Duration::from_millis(100));
        let due = self
            .db("health checks", move |conn| {
                store::health::claim_due(conn, &host, interval, limit)
            })
            .await?;
        Ok(due
            .into_iter()
            .filter(|d| {
                self.spec(d.workflow_id, d.version, &d.definition)
                    .is_ok_and(|spec| {
                        spec.deploy
                            .iter()
                            .any(|e| e.environment.as_str() == d.environment && e.health.is_some())
                    })
            })
            .collect())
    }

    /// A deploy that became current passed its environment's health check
    /// just now: that is its first probe, when the environment has one.
    /// A failure here only leaves the health `unknown` until the next probe.
    pub(super) async fn healthy_after_deploy(&self, d: &DeploymentRow) {
        let Some(task_id) = d.task_id else { return };
        let workflow_id = d.workflow_id;
        let read = self
            .db("deployment", move |conn| {
                let task = store::tasks::get(conn, task_id)?.task;
                let definition =
                    store::workflows::definition(conn, workflow_id, task.workflow_version)?;
                Ok((task.workflow_version, definition))
            })
            .await;
        let checked = read.ok().is_some_and(|(version, definition)| {
            self.spec(workflow_id, version, &definition)
                .is_ok_and(|spec| {
                    spec.deploy
                        .iter()
                        .any(|e| e.environment.as_str() == d.environment && e.health.is_some())
                })
        });
        if checked {
            let recorded = self
                .report_health(workflow_id, d.environment.clone(), d.id, true, None)
                .await;
            if let Err(e) = recorded {
                tracing::warn!(deployment = d.id, error = %e.message, "cannot record a deploy's health");
            }
        }
    }

    /// Records a probe of `deployment_id`; raises `health_down` or
    /// `health_recovered` when it changes the environment's health.
    pub async fn report_health(
        &self,
        workflow_id: i64,
        environment: String,
        deployment_id: i64,
        healthy: bool,
        error: Option<String>,
    ) -> Result<Change, ApiError> {
        let error = error.map(|e| e.chars().take(500).collect::<String>());
        let change = self
            .db("environment", move |conn| {
                store::health::record(
                    conn,
                    workflow_id,
                    &environment,
                    deployment_id,
                    healthy,
                    error.as_deref(),
                    Utc::now(),
                )
            })
            .await?;
        if change != Change::None {
            self.outbox.notify_one();
        }
        Ok(change)
    }
}
