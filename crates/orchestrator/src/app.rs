//! The orchestrator's operations, independent of the wire: both gRPC
//! services call into [`App`]. Database work runs on the blocking pool; every
//! error leaves here as an [`ApiError`] with the code the caller will see.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use domain::labels::Labels;
use domain::plan::{Plan, Trigger};
use domain::push::{GitRef, PushEvent};
use domain::state::DeploymentEvent;
use domain::state::{StepEvent, TaskEvent, TaskStatus};
use domain::workflow::{self, Workflow};
use proto::{ApiError, ErrorCode};
use store::PgConnection;
use store::alerts::{AlertFilter, AlertView, Attempt, OpenAlert};
use store::deployments::{DeploymentRow, EnvironmentView, NewDeployment, RollbackRow, Start};
use store::tasks::{NewTask, Source, StepChange, TaskDetail, TaskFilter};
use store::webhooks::{DeliveryRow, NewDelivery};
use store::workflows::WorkflowRow;
use tokio::sync::{Notify, broadcast};

use crate::crypto::{Reseal, SecretBox};
use crate::metrics::Metrics;

/// Largest secret value accepted.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Shared state of the orchestrator.
pub struct App {
    pool: store::Pool,
    secrets: SecretBox,
    /// Wakes the relay when a task was queued or an event written.
    pub(crate) outbox: Arc<Notify>,
    /// Carries the id of a task whose log or status changed, for log streams.
    changes: broadcast::Sender<i64>,
    /// Parsed definitions by (workflow id, version): versions never change,
    /// so a webhook need not parse every workflow again.
    specs: Mutex<HashMap<(i64, i32), Arc<Workflow>>>,
    pub(crate) lease: Duration,
    pub(crate) max_requeues: i32,
    /// Whether the outbox relay holds a working broker connection.
    pub(crate) broker_up: AtomicBool,
    /// The relay's broker connection while it works: scrapes look at the
    /// queues through it.
    pub(crate) broker: Mutex<Option<Arc<queue::lapin::Connection>>>,
    /// Counted here, after each transition committed.
    pub(crate) metrics: Metrics,
    /// The runners heard from lately.
    pub(crate) runners: crate::runners::Runners,
}

/// What a webhook delivery came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: String,
    pub task_ids: Vec<i64>,
    pub ignored: Option<String>,
    pub duplicate: bool,
}

/// A webhook the gateway verified.
pub struct Webhook {
    pub provider: String,
    pub delivery_id: String,
    pub event: String,
    pub body_sha256: String,
    pub push: Option<PushEvent>,
    pub workflow_run: Option<WorkflowRun>,
    pub ignored: Option<String>,
}

/// A successful run of an external CI workflow (GitHub `workflow_run`).
pub struct WorkflowRun {
    pub repo_urls: Vec<String>,
    pub workflow: String,
    pub head_sha: domain::push::CommitSha,
    pub head_branch: Option<String>,
}

/// What a runner receives when it claims a task.
pub struct Claim {
    pub token: String,
    pub detail: TaskDetail,
    pub definition: String,
    pub repo: String,
    pub secrets: HashMap<String, String>,
    pub registry_username: Option<String>,
    pub registry_password: Option<String>,
    /// The deployment a deploy-only task carries out.
    pub deployment: Option<DeploymentRow>,
}

pub(crate) fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "internal error");
    ApiError::new(ErrorCode::Internal, "internal error")
}

/// Maps a store error; `what` names the thing for a "not found".
fn db_error(err: store::Error, what: &str) -> ApiError {
    match err {
        store::Error::NotFound => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
        store::Error::Conflict(msg) => ApiError::new(ErrorCode::Conflict, msg),
        store::Error::Transition(t) => ApiError::new(ErrorCode::Conflict, t.to_string()),
        store::Error::LeaseLost => {
            ApiError::new(ErrorCode::Conflict, "the task's lease is no longer held")
        }
        store::Error::Pool(e) => {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::new(ErrorCode::Unavailable, "database unavailable")
        }
        store::Error::Database(diesel_err) if diesel_err.to_string().contains("connection") => {
            tracing::warn!(error = %diesel_err, "database connection lost");
            ApiError::new(ErrorCode::Unavailable, "database unavailable")
        }
        other => internal(other),
    }
}

fn invalid_workflow(err: &workflow::SpecError) -> ApiError {
    ApiError::new(ErrorCode::InvalidWorkflow, err.to_string())
        .with_field("path", err.path.clone())
        .with_field("line", err.line)
        .with_field("column", err.column)
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

impl App {
    pub fn new(
        pool: store::Pool,
        secrets: SecretBox,
        lease: Duration,
        max_requeues: i32,
        metrics: Metrics,
    ) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Self {
            pool,
            secrets,
            outbox: Arc::new(Notify::new()),
            changes,
            specs: Mutex::new(HashMap::new()),
            lease,
            max_requeues,
            broker_up: AtomicBool::new(false),
            broker: Mutex::new(None),
            metrics,
            runners: crate::runners::Runners::default(),
        }
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub(crate) async fn db<T, F>(&self, what: &str, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> store::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(internal)?;
        result.map_err(|e| db_error(e, what))
    }

    /// Subscribes to task changes (log chunks, status).
    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.changes.subscribe()
    }

    /// A task changed: its log followers look again, and the relay
    /// publishes the events the change wrote.
    fn changed(&self, task_id: i64) {
        // No subscriber is fine.
        let _ = self.changes.send(task_id);
        self.queued();
    }

    /// Wakes the relay: a task was queued, or an event written.
    fn queued(&self) {
        self.outbox.notify_one();
    }

    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    pub async fn database_up(&self) -> bool {
        self.db("database", store::ping).await.is_ok()
    }

    fn spec(
        &self,
        workflow_id: i64,
        version: i32,
        definition: &str,
    ) -> Result<Arc<Workflow>, ApiError> {
        let key = (workflow_id, version);
        if let Some(spec) = self.specs.lock().map_err(internal)?.get(&key) {
            return Ok(spec.clone());
        }
        let spec = Arc::new(workflow::parse(definition).map_err(|e| invalid_workflow(&e))?);
        self.specs
            .lock()
            .map_err(internal)?
            .insert(key, spec.clone());
        Ok(spec)
    }

    // ---- workflows ----

    pub async fn create_workflow(&self, definition: String) -> Result<WorkflowRow, ApiError> {
        let spec = workflow::parse(&definition).map_err(|e| invalid_workflow(&e))?;
        let name = spec.name.to_string();
        let repo = spec.repo.to_string();
        self.db("workflow", move |conn| {
            store::workflows::create(conn, &name, &repo, &definition)
        })
        .await
    }

    pub async fn update_workflow(
        &self,
        id: i64,
        definition: String,
    ) -> Result<WorkflowRow, ApiError> {
        let spec = workflow::parse(&definition).map_err(|e| invalid_workflow(&e))?;
        let name = spec.name.to_string();
        let repo = spec.repo.to_string();
        self.db(&format!("workflow {id}"), move |conn| {
            store::workflows::update(conn, id, &name, &repo, &definition)
        })
        .await
    }

    pub async fn get_workflow(&self, id: i64) -> Result<(WorkflowRow, String), ApiError> {
        self.db(&format!("workflow {id}"), move |conn| {
            let row = store::workflows::live(conn, id)?;
            let definition = store::workflows::definition(conn, id, row.version)?;
            Ok((row, definition))
        })
        .await
    }

    pub async fn list_workflows(&self) -> Result<Vec<WorkflowRow>, ApiError> {
        self.db("workflows", store::workflows::list).await
    }

    pub async fn delete_workflow(&self, id: i64) -> Result<(), ApiError> {
        self.db(&format!("workflow {id}"), move |conn| {
            store::workflows::delete(conn, id)
        })
        .await
    }

    pub async fn set_secret(
        &self,
        workflow_id: i64,
        name: String,
        value: String,
    ) -> Result<(), ApiError> {
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(bad_request(format!(
                "invalid secret name {name:?}: letters, digits and _, not starting with a digit"
            )));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(bad_request("secret value is larger than 64 KiB"));
        }
        let (nonce, sealed) = self.secrets.seal(workflow_id, &name, &value);
        self.db(&format!("workflow {workflow_id}"), move |conn| {
            store::workflows::live(conn, workflow_id)?;
            store::secrets::put(conn, workflow_id, &name, &nonce, &sealed)
        })
        .await
    }

    /// While the secret key rotates, seals every stored secret that the
    /// previous key sealed with the current one; logs those neither opens.
    pub async fn reseal_secrets(&self) -> Result<(), ApiError> {
        if !self.secrets.rotating() {
            return Ok(());
        }
        let secrets = self.secrets.clone();
        let (replaced, unreadable) = self
            .db("secrets", move |conn| {
                let mut unreadable = Vec::new();
                let replaced = store::secrets::reseal_all(conn, |s| {
                    match secrets.reseal(s.workflow_id, &s.name, &s.nonce, &s.ciphertext) {
                        Reseal::Current => None,
                        Reseal::Resealed(nonce, sealed) => Some((nonce, sealed)),
                        Reseal::Unreadable => {
                            unreadable.push(format!("{}/{}", s.workflow_id, s.name));
                            None
                        }
                    }
                })?;
                Ok((replaced, unreadable))
            })
            .await?;
        tracing::info!(
            resealed = replaced,
            "stored secrets are sealed with the current SLIPWAY_SECRET_KEY; SLIPWAY_SECRET_KEY_PREVIOUS can be removed"
        );
        if !unreadable.is_empty() {
            tracing::warn!(
                secrets = ?unreadable,
                "neither SLIPWAY_SECRET_KEY nor SLIPWAY_SECRET_KEY_PREVIOUS opens these secrets (workflow id/name): set them again"
            );
        }
        Ok(())
    }

    pub async fn list_secrets(&self, workflow_id: i64) -> Result<Vec<String>, ApiError> {
        self.db(&format!("workflow {workflow_id}"), move |conn| {
            store::workflows::live(conn, workflow_id)?;
            store::secrets::names(conn, workflow_id)
        })
        .await
    }

    // ---- triggering ----

    /// A task of `row` from `source`, with the steps of its plan; it joins
    /// the trace of the call creating it.
    fn new_task(row: &WorkflowRow, spec: &Workflow, source: Source) -> (NewTask, Vec<String>) {
        let steps = Plan::for_task(spec, source.trigger, None).names();
        let new = NewTask::new(
            row.id,
            row.version,
            spec.runs_on.key(),
            source,
            telemetry::propagation::current_traceparent(),
        );
        (new, steps)
    }

    pub async fn run_workflow(
        &self,
        workflow_id: i64,
        branch: String,
        commit: Option<String>,
    ) -> Result<i64, ApiError> {
        if branch.trim().is_empty() {
            return Err(bad_request("branch is required"));
        }
        let commit = match commit {
            Some(c) => Some(
                domain::push::CommitSha::parse(&c)
                    .map_err(|_| {
                        bad_request(format!("invalid commit {c:?}: expected 40 hex digits"))
                    })?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        let (row, definition) = self.get_workflow(workflow_id).await?;
        let spec = self.spec(row.id, row.version, &definition)?;
        let source = Source {
            commit_sha: commit,
            ..Source::new(Trigger::Manual, Some(GitRef::Branch(branch)))
        };
        let (new, steps) = Self::new_task(&row, &spec, source);
        let id = self
            .db("workflow", move |conn| {
                store::tasks::create(conn, &new, &steps)
            })
            .await?;
        self.queued();
        Ok(id)
    }

    fn outcome(row: DeliveryRow, duplicate: bool) -> Outcome {
        Outcome {
            delivery_id: row.delivery_id,
            task_ids: row.task_ids,
            ignored: row.ignored,
            duplicate,
        }
    }

    /// Records a verified webhook and creates the tasks it triggers, in one
    /// transaction; a delivery seen before gets its first outcome back.
    pub async fn ingest_webhook(&self, hook: Webhook) -> Result<Outcome, ApiError> {
        let (provider, delivery_id) = (hook.provider.clone(), hook.delivery_id.clone());
        let (p, d) = (provider.clone(), delivery_id.clone());
        if let Some(seen) = self
            .db("delivery", move |conn| store::webhooks::find(conn, &p, &d))
            .await?
        {
            return Ok(Self::outcome(seen, true));
        }

        let mut planned: Vec<(NewTask, Vec<String>)> = Vec::new();
        let mut ignored = hook.ignored.clone();
        if let Some(push) = &hook.push {
            let workflows = self
                .db("workflows", store::workflows::live_with_definitions)
                .await?;
            let mut reasons = Vec::new();
            for (row, definition) in workflows {
                let spec = match self.spec(row.id, row.version, &definition) {
                    Ok(spec) => spec,
                    Err(e) => {
                        tracing::warn!(workflow = %row.name, error = %e, "stored definition no longer parses");
                        continue;
                    }
                };
                match spec.match_push(push) {
                    Ok(()) => {
                        let source = Source {
                            commit_sha: Some(push.after.as_str().to_owned()),
                            message: push.message.clone(),
                            author: push.author.clone(),
                            delivery_id: Some(delivery_id.clone()),
                            ..Source::new(Trigger::Push, Some(push.git_ref.clone()))
                        };
                        planned.push(Self::new_task(&row, &spec, source));
                    }
                    Err(domain::push::Ignored::RepositoryMismatch) => {}
                    Err(reason) => reasons.push(format!("{}: {reason}", row.name)),
                }
            }
            if planned.is_empty() && ignored.is_none() {
                ignored = Some(if reasons.is_empty() {
                    let repo = push.repo_urls.first().map(String::as_str).unwrap_or("?");
                    format!("no workflow for repository {repo}")
                } else {
                    reasons.join("; ")
                });
            }
        }

        if let Some(run) = &hook.workflow_run {
            let workflows = self
                .db("workflows", store::workflows::live_with_definitions)
                .await?;
            for (row, definition) in workflows {
                let Ok(spec) = self.spec(row.id, row.version, &definition) else {
                    continue;
                };
                let listed = spec
                    .on
                    .workflow_run
                    .as_ref()
                    .is_some_and(|t| t.workflows.contains(&run.workflow));
                let same_repo = run.repo_urls.iter().any(|u| spec.repo.matches(u));
                if !listed || !same_repo || spec.image.is_none() || spec.deploy.is_empty() {
                    continue;
                }
                // Deploy-only: the deploys of the image CI pushed for this commit.
                let source = Source {
                    commit_sha: Some(run.head_sha.as_str().to_owned()),
                    message: Some(format!("{} succeeded", run.workflow)),
                    delivery_id: Some(delivery_id.clone()),
                    ..Source::new(
                        Trigger::WorkflowRun,
                        run.head_branch.clone().map(GitRef::Branch),
                    )
                };
                planned.push(Self::new_task(&row, &spec, source));
            }
            if planned.is_empty() && ignored.is_none() {
                ignored = Some(format!("no workflow deploys after {}", run.workflow));
            }
        }

        let (p, d) = (provider.clone(), delivery_id.clone());
        let stored = self
            .db("delivery", move |conn| {
                store::transaction(conn, |conn| {
                    let mut task_ids = Vec::with_capacity(planned.len());
                    for (new, steps) in &planned {
                        task_ids.push(store::tasks::create(conn, new, steps)?);
                    }
                    store::webhooks::insert(
                        conn,
                        &NewDelivery {
                            provider: &p,
                            delivery_id: &d,
                            event: &hook.event,
                            body_sha256: &hook.body_sha256,
                            task_ids,
                            ignored: ignored.as_deref(),
                        },
                    )
                })
            })
            .await;
        match stored {
            Ok(row) => {
                if !row.task_ids.is_empty() {
                    self.queued();
                }
                Ok(Self::outcome(row, false))
            }
            // The same delivery was recorded concurrently: answer as a duplicate.
            Err(e) if e.code == ErrorCode::Conflict => {
                let seen = self
                    .db("delivery", move |conn| {
                        store::webhooks::find(conn, &provider, &delivery_id)
                    })
                    .await?
                    .ok_or_else(|| internal("delivery vanished after a conflict"))?;
                Ok(Self::outcome(seen, true))
            }
            Err(e) => Err(e),
        }
    }

    // ---- tasks ----

    pub async fn get_task(&self, id: i64) -> Result<TaskDetail, ApiError> {
        self.db(&format!("task {id}"), move |conn| {
            store::tasks::get(conn, id)
        })
        .await
    }

    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskDetail>, ApiError> {
        self.db("tasks", move |conn| store::tasks::list(conn, &filter))
            .await
    }

    pub async fn retry_task(&self, id: i64) -> Result<i64, ApiError> {
        let trace = telemetry::propagation::current_traceparent();
        let new_id = self
            .db(&format!("task {id}"), move |conn| {
                store::tasks::retry(conn, id, trace.as_deref())
            })
            .await?;
        self.queued();
        Ok(new_id)
    }

    pub async fn cancel_task(&self, id: i64) -> Result<(), ApiError> {
        let outcome = self
            .db(&format!("task {id}"), move |conn| {
                store::tasks::cancel(conn, id)
            })
            .await?;
        if outcome == store::tasks::Cancelled::Now {
            self.metrics.task_ended_unstarted(TaskStatus::Cancelled);
            self.changed(id);
        }
        Ok(())
    }

    // ---- deploys ----

    pub async fn task_deployments(
        &self,
        task_id: i64,
    ) -> Result<Vec<(DeploymentRow, Option<RollbackRow>)>, ApiError> {
        self.db("task", move |conn| {
            store::deployments::for_task(conn, task_id)
        })
        .await
    }

    pub async fn list_deployments(
        &self,
        workflow_id: Option<i64>,
        environment: Option<String>,
        limit: i64,
    ) -> Result<Vec<(DeploymentRow, Option<RollbackRow>)>, ApiError> {
        self.db("deployments", move |conn| {
            store::deployments::list(conn, workflow_id, environment.as_deref(), limit)
        })
        .await
    }

    pub async fn get_deployment(
        &self,
        id: i64,
    ) -> Result<(DeploymentRow, Option<RollbackRow>), ApiError> {
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

    pub async fn list_environments(
        &self,
        workflow_id: i64,
    ) -> Result<Vec<EnvironmentView>, ApiError> {
        self.db(&format!("workflow {workflow_id}"), move |conn| {
            store::workflows::live(conn, workflow_id)?;
            store::deployments::environments(conn, workflow_id)
        })
        .await
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

    pub async fn start_deployment(
        &self,
        task_id: i64,
        token: String,
        id: i64,
    ) -> Result<Start, ApiError> {
        self.db(&format!("deployment {id}"), move |conn| {
            store::tasks::check_lease(conn, task_id, &token)?;
            store::deployments::start(conn, id)
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
        self.db(&format!("deployment {id}"), move |conn| {
            store::tasks::check_lease(conn, task_id, &token)?;
            store::deployments::advance(conn, id, event, error.as_deref(), alert.as_deref())
        })
        .await
        .inspect(|d| {
            self.metrics.deployment_changed(d);
            self.queued();
        })
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

    // ---- runners ----

    pub async fn claim(
        &self,
        task_id: i64,
        runner_id: String,
        labels: Labels,
    ) -> Result<Claim, ApiError> {
        let detail = self.get_task(task_id).await?;
        let status = detail.task.status().map_err(internal)?;
        if status != TaskStatus::Pending {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("task {task_id} is {status}, not pending"),
            ));
        }
        let (wf_id, version) = (detail.task.workflow_id, detail.task.workflow_version);
        let (definition, sealed) = self
            .db("workflow", move |conn| {
                Ok((
                    store::workflows::definition(conn, wf_id, version)?,
                    store::secrets::sealed(conn, wf_id)?,
                ))
            })
            .await?;
        let spec = match self.spec(wf_id, version, &definition) {
            Ok(spec) => spec,
            Err(e) => return Err(self.fail_before_start(task_id, e.message).await),
        };
        let mut secrets = HashMap::new();
        // Registry credentials come from these secrets whether or not the
        // workflow lists them for its steps.
        let mut registry = [None, None];
        for (slot, name) in registry
            .iter_mut()
            .zip(["REGISTRY_USERNAME", "REGISTRY_PASSWORD"])
        {
            if let Some(s) = sealed.iter().find(|s| s.name == name) {
                match self.secrets.open(wf_id, &s.name, &s.nonce, &s.ciphertext) {
                    Ok(value) => *slot = Some(value),
                    Err(e) => return Err(self.fail_before_start(task_id, e.to_string()).await),
                }
            }
        }
        let [registry_username, registry_password] = registry;
        // Secrets that deploy targets refer to (`${{ secrets.NAME }}`).
        let mut wanted_names: Vec<String> = spec.secrets.iter().map(ToString::to_string).collect();
        for deploy in &spec.deploy {
            if let domain::workflow::Target::Container(target) = &deploy.target {
                for value in target.env.values() {
                    for name in workflow::secret_refs(value) {
                        if !wanted_names.contains(&name) && sealed.iter().any(|s| s.name == name) {
                            wanted_names.push(name);
                        }
                    }
                }
            }
        }
        for wanted in &wanted_names {
            let name = wanted.to_string();
            let Some(s) = sealed.iter().find(|s| s.name == name) else {
                let msg = format!("secret {name} is not set for workflow {}", spec.name);
                return Err(self.fail_before_start(task_id, msg).await);
            };
            match self.secrets.open(wf_id, &s.name, &s.nonce, &s.ciphertext) {
                Ok(value) => {
                    secrets.insert(name, value);
                }
                Err(e) => return Err(self.fail_before_start(task_id, e.to_string()).await),
            }
        }
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = Utc::now() + self.lease;
        let t = token.clone();
        let claimed = self
            .db(&format!("task {task_id}"), move |conn| {
                store::tasks::claim(conn, task_id, &runner_id, &labels, &t, lease_until)
            })
            .await?;
        self.metrics.claimed(&claimed);
        let detail = self.get_task(task_id).await?;
        self.changed(task_id);
        let repo = spec.repo.to_string();
        let deployment = match detail.task.deployment_id {
            Some(id) => Some(self.get_deployment(id).await?.0),
            None => None,
        };
        Ok(Claim {
            token,
            detail,
            definition,
            repo,
            secrets,
            registry_username,
            registry_password,
            deployment,
        })
    }

    /// Fails a task that cannot start, and returns the error for the runner.
    async fn fail_before_start(&self, task_id: i64, error: String) -> ApiError {
        let e = error.clone();
        match self
            .db("task", move |conn| {
                store::tasks::fail_pending(conn, task_id, &e)
            })
            .await
        {
            Ok(()) => self.metrics.task_ended_unstarted(TaskStatus::Failed),
            Err(db) => tracing::warn!(task_id, error = %db, "could not fail the task"),
        }
        self.changed(task_id);
        ApiError::new(
            ErrorCode::Conflict,
            format!("task {task_id} cannot start: {error}"),
        )
    }

    pub async fn heartbeat(&self, task_id: i64, token: String) -> Result<bool, ApiError> {
        let lease_until = Utc::now() + self.lease;
        self.db("task", move |conn| {
            store::tasks::heartbeat(conn, task_id, &token, lease_until)
        })
        .await
    }

    pub async fn report_commit(
        &self,
        task_id: i64,
        token: String,
        commit: String,
    ) -> Result<(), ApiError> {
        let sha = domain::push::CommitSha::parse(&commit)
            .map_err(|_| bad_request(format!("invalid commit {commit:?}")))?;
        self.db("task", move |conn| {
            store::tasks::set_commit(conn, task_id, &token, sha.as_str())
        })
        .await
    }

    pub async fn report_image(
        &self,
        task_id: i64,
        token: String,
        reference: String,
        digest: String,
    ) -> Result<(), ApiError> {
        let valid = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid || reference.is_empty() {
            return Err(bad_request(format!(
                "invalid image {reference:?} with digest {digest:?}"
            )));
        }
        self.db("task", move |conn| {
            store::tasks::set_image(conn, task_id, &token, &reference, &digest)
        })
        .await?;
        self.changed(task_id);
        Ok(())
    }

    pub async fn update_step(
        &self,
        task_id: i64,
        token: String,
        change: StepChange,
    ) -> Result<(), ApiError> {
        let step = self
            .db("step", move |conn| {
                store::tasks::update_step(conn, task_id, &token, &change)
            })
            .await?;
        if let Some(step) = step {
            self.metrics.step_changed(&step);
        }
        self.changed(task_id);
        Ok(())
    }

    pub async fn append_log(
        &self,
        task_id: i64,
        token: String,
        position: i32,
        data: Vec<u8>,
    ) -> Result<(), ApiError> {
        self.db("task", move |conn| {
            store::tasks::append_log(conn, task_id, &token, position, &data)
        })
        .await?;
        self.changed(task_id);
        Ok(())
    }

    pub async fn finish(
        &self,
        task_id: i64,
        token: String,
        event: TaskEvent,
        error: Option<String>,
    ) -> Result<(), ApiError> {
        let ended = self
            .db("task", move |conn| {
                store::task_deploys::finish(conn, task_id, &token, event, error.as_deref())
            })
            .await?;
        self.task_ended(&ended);
        self.changed(task_id);
        Ok(())
    }

    /// A full lease for every running task (see the watchdog).
    pub async fn extend_running_leases(&self) -> Result<(), ApiError> {
        let until = Utc::now() + self.lease;
        let n = self
            .db("tasks", move |conn| {
                store::tasks::extend_running_leases(conn, until)
            })
            .await?;
        if n > 0 {
            tracing::info!(tasks = n, "extended the leases of running tasks");
        }
        Ok(())
    }

    /// Publishes again the tasks pending since before `since` whose message
    /// is not in the outbox.
    pub async fn republish_stale(&self, since: chrono::DateTime<Utc>) -> Result<(), ApiError> {
        let ids = self
            .db("tasks", move |conn| {
                store::tasks::republish_stale(conn, since)
            })
            .await?;
        if !ids.is_empty() {
            tracing::warn!(?ids, "publishing long-pending tasks again");
            self.queued();
        }
        Ok(())
    }

    /// Re-queues or fails the tasks whose runner stopped heartbeating.
    pub async fn expire_leases(&self) -> Result<(), ApiError> {
        let max = self.max_requeues;
        let expired = self
            .db("tasks", move |conn| {
                store::task_deploys::expire_leases(conn, Utc::now(), max)
            })
            .await?;
        for (ended, outcome) in expired {
            let task_id = ended.task.id;
            tracing::warn!(task_id, ?outcome, "runner lost");
            if outcome == store::task_deploys::Expired::Requeued {
                self.metrics.task_requeued();
                for d in &ended.deploys_failed {
                    self.metrics.deployment_changed(d);
                }
                self.queued();
            } else {
                self.task_ended(&ended);
            }
            self.changed(task_id);
        }
        Ok(())
    }

    /// Counts a task's committed end and the deploys it cut short.
    fn task_ended(&self, ended: &store::task_deploys::Ended) {
        self.metrics.task_ended(&ended.task);
        for d in &ended.deploys_failed {
            self.metrics.deployment_changed(d);
        }
    }

    /// The metrics in the text format, with the gauges read now from the
    /// database and the broker.
    pub async fn render_metrics(&self, topology: &queue::Topology) -> String {
        let now = Utc::now();
        let counts = self
            .db("tasks", move |conn| {
                Ok((
                    store::tasks::count_unfinished(conn)?,
                    store::tasks::busy_runners(conn, now)?,
                    store::tasks::pending_label_sets(conn)?,
                ))
            })
            .await;
        let (unfinished, busy, label_sets) = match counts {
            Ok((unfinished, busy, sets)) => (Some(unfinished), Some(busy), sets),
            Err(e) => {
                tracing::debug!(error = %e, "metrics without the database's counts");
                (None, None, Vec::new())
            }
        };
        let connection = self.broker.lock().ok().and_then(|b| b.clone());
        let depths = match connection {
            Some(c) => queue::depths(&c, topology, &label_sets)
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "metrics without queue depths"))
                .ok(),
            None => None,
        };
        self.metrics.set_gauges(unfinished, busy, depths);
        self.metrics
            .set_runners(self.runners.online(std::time::Instant::now()));
        telemetry::metrics::render(&self.metrics.registry)
    }

    /// Raises `task_stuck` for tasks pending longer than `after`.
    pub async fn flag_stuck(&self, after: Duration) -> Result<(), ApiError> {
        let since = Utc::now() - after;
        let ids = self
            .db("tasks", move |conn| store::tasks::flag_stuck(conn, since))
            .await?;
        if !ids.is_empty() {
            tracing::warn!(?ids, "tasks stuck in pending");
            self.queued();
        }
        Ok(())
    }

    // ---- alerts ----

    pub async fn list_alerts(&self, filter: AlertFilter) -> Result<Vec<AlertView>, ApiError> {
        self.db("alerts", move |conn| store::alerts::list(conn, &filter))
            .await
    }

    /// A workflow version's definition (the live one when `version` is
    /// `None`) with the secrets its notify values name, and any in `extra`.
    pub async fn notify_config(
        &self,
        workflow_id: i64,
        version: Option<i32>,
        extra: Vec<String>,
    ) -> Result<(String, i32, HashMap<String, String>), ApiError> {
        let (definition, version, sealed) = self
            .db(&format!("workflow {workflow_id}"), move |conn| {
                let version = match version {
                    Some(v) => v,
                    None => store::workflows::live(conn, workflow_id)?.version,
                };
                Ok((
                    store::workflows::definition(conn, workflow_id, version)?,
                    version,
                    store::secrets::sealed(conn, workflow_id)?,
                ))
            })
            .await?;
        let spec = self.spec(workflow_id, version, &definition)?;
        let mut wanted = extra;
        for channel in spec.notify.iter().flat_map(domain::alert::channels) {
            wanted.extend(channel.values().into_iter().flat_map(workflow::secret_refs));
        }
        let mut secrets = HashMap::new();
        for name in wanted {
            if secrets.contains_key(&name) {
                continue;
            }
            // A missing secret fails that delivery, with its name, later.
            if let Some(s) = sealed.iter().find(|s| s.name == name) {
                let value = self
                    .secrets
                    .open(workflow_id, &s.name, &s.nonce, &s.ciphertext)
                    .map_err(internal)?;
                secrets.insert(name, value);
            }
        }
        Ok((definition, version, secrets))
    }

    pub async fn open_alert(
        &self,
        req: OpenAlert,
        claim: Duration,
    ) -> Result<store::alerts::Opened, ApiError> {
        let until = Utc::now() + claim;
        let id = req.event_id.clone();
        self.db(&format!("event {id}"), move |conn| {
            store::alerts::open(conn, &req, until)
        })
        .await
    }

    pub async fn claim_deliveries(
        &self,
        limit: i64,
        claim: Duration,
    ) -> Result<Vec<store::alerts::Claimed>, ApiError> {
        let until = Utc::now() + claim;
        self.db("deliveries", move |conn| {
            store::alerts::claim_due(conn, limit, until)
        })
        .await
    }

    pub async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: Attempt,
    ) -> Result<store::alerts::DeliveryRow, ApiError> {
        self.db(&format!("delivery {delivery_id}"), move |conn| {
            store::alerts::record_attempt(conn, delivery_id, &attempt)
        })
        .await
    }
}

/// Parses a step status a runner reports into the event that leads there.
pub fn step_event(status: &str) -> Result<StepEvent, ApiError> {
    Ok(match status {
        "running" => StepEvent::Started,
        "success" => StepEvent::Succeeded,
        "failed" => StepEvent::Failed,
        "skipped" => StepEvent::Skipped,
        "cancelled" => StepEvent::Cancelled,
        other => return Err(bad_request(format!("unknown step status {other:?}"))),
    })
}

/// Parses a deployment event a runner reports.
pub fn deployment_event(event: &str) -> Result<DeploymentEvent, ApiError> {
    Ok(match event {
        "verify" => DeploymentEvent::Verify,
        "succeed" => DeploymentEvent::Succeed,
        "fail" => DeploymentEvent::Fail,
        "time_out" => DeploymentEvent::TimeOut,
        other => return Err(bad_request(format!("unknown deployment event {other:?}"))),
    })
}

/// Parses a task's final status a runner reports.
pub fn task_event(status: &str) -> Result<TaskEvent, ApiError> {
    Ok(match status {
        "success" => TaskEvent::Succeeded,
        "failed" => TaskEvent::Failed,
        "cancelled" => TaskEvent::Cancelled,
        other => return Err(bad_request(format!("unknown final status {other:?}"))),
    })
}
