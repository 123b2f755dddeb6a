//! A task's lease, from the runner's side: the claim (with the secrets the
//! task needs), heartbeats, the step, log, commit and image reports, the
//! finish; and from the watchdog's: extending, expiring and republishing.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use domain::image::{Digest, ImageRef};
use domain::labels::Labels;
use domain::state::{TaskEvent, TaskStatus};
use domain::workflow;
use proto::{ApiError, ErrorCode};
use store::deployments::DeploymentRow;
use store::tasks::{StepChange, TaskDetail};

use super::{App, bad_request, internal};

/// What a runner receives when it claims a task.
pub struct Claim {
    /// The lease token every later call of the runner for this task names.
    pub token: String,
    /// The task as claimed, with its steps and workflow name.
    pub detail: TaskDetail,
    /// The workflow version the task runs, as written.
    pub definition: String,
    /// Where the runner clones from.
    pub repo: String,
    /// The secrets the steps and deploy targets use, opened.
    pub secrets: HashMap<String, String>,
    /// From the `REGISTRY_USERNAME` secret: pushes and pulls of the image log in with it.
    pub registry_username: Option<String>,
    /// From the `REGISTRY_PASSWORD` secret, with `registry_username`.
    pub registry_password: Option<String>,
    /// The deployment a deploy-only task carries out.
    pub deployment: Option<DeploymentRow>,
    /// Secrets not given to the task (a pull request from a fork).
    pub withheld_secrets: Vec<String>,
    /// User and token for an https clone from the task's forge.
    pub clone_credentials: Option<(String, String)>,
    /// The workflow's newest pushed image (`repository@digest`), whose
    /// layers the task's image build may reuse.
    pub previous_image: Option<String>,
}

impl App {
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
        // A pull request from a fork runs a stranger's code: no secrets.
        let from_fork = detail
            .task
            .pull_request()
            .map_err(internal)?
            .is_some_and(|p| p.fork);
        let mut withheld_secrets = Vec::new();
        if from_fork {
            withheld_secrets = spec.secrets.iter().map(ToString::to_string).collect();
            wanted_names.clear();
            registry = [None, None];
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
        let [registry_username, registry_password] = registry;
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
            Some(id) => Some(self.get_deployment(id).await?.row),
            None => None,
        };
        let clone_credentials = self.clone_credentials(&detail.task, &repo).await;
        let previous_image = match (&spec.image, detail.task.deployment_id) {
            (Some(_), None) => self.previous_image(task_id, wf_id).await,
            _ => None,
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
            withheld_secrets,
            clone_credentials,
            previous_image,
        })
    }

    /// The workflow's newest pushed image, for a build to reuse its layers:
    /// only a help, so a failure to find it is a log line, never a failed claim.
    async fn previous_image(&self, task_id: i64, workflow_id: i64) -> Option<String> {
        match self
            .db("workflow", move |conn| {
                store::tasks::latest_image(conn, workflow_id)
            })
            .await
        {
            Ok(image) => image,
            Err(e) => {
                tracing::warn!(task_id, error = %e.message, "no previous image for the layer cache");
                None
            }
        }
    }

    /// The forge's credentials for an https clone of `repo`, when Slipway
    /// has them; without, the clone goes ahead anonymously (a public
    /// repository needs none).
    async fn clone_credentials(
        &self,
        task: &store::tasks::TaskRow,
        repo: &str,
    ) -> Option<(String, String)> {
        if !repo.starts_with("https://") {
            return None;
        }
        let target = task.forge().ok().flatten()?;
        let forge = domain::forge::Forge::parse(&target.forge)?;
        match self
            .forges
            .token(&target, crate::forges::Access::Contents)
            .await
        {
            Ok(token) => token.map(|t| (forge.clone_user().to_owned(), t)),
            Err(e) => {
                tracing::warn!(task_id = task.id, error = %e, "no clone credentials: cloning without");
                None
            }
        }
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
        mut commit: store::tasks::ClonedCommit,
    ) -> Result<(), ApiError> {
        let sha = domain::push::CommitSha::parse(&commit.sha)
            .map_err(|_| bad_request(format!("invalid commit {:?}", commit.sha)))?;
        commit.sha = sha.as_str().to_owned();
        // Shown in lists: one line, and not a page of it.
        commit.message = commit.message.map(|m| clip(m.trim_end(), 4096));
        commit.author = commit.author.map(|a| clip(a.trim(), 256));
        self.db("task", move |conn| {
            store::tasks::set_commit(conn, task_id, &token, &commit)
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
        // Deploys pin this reference to this digest: both must parse.
        let valid = ImageRef::parse(&reference).is_ok() && Digest::parse(&digest).is_ok();
        if !valid {
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

    /// Applies a runner's step changes, in order, in one transaction.
    pub async fn update_steps(
        &self,
        task_id: i64,
        token: String,
        changes: Vec<StepChange>,
    ) -> Result<(), ApiError> {
        let changed = self
            .db("step", move |conn| {
                store::tasks::update_steps(conn, task_id, &token, &changes)
            })
            .await?;
        for step in &changed {
            self.metrics.step_changed(step);
        }
        self.progressed(task_id);
        Ok(())
    }

    pub async fn append_log(
        &self,
        task_id: i64,
        token: String,
        position: i32,
        data: Vec<u8>,
    ) -> Result<(), ApiError> {
        let max = self.bounds.log_chunk_max_bytes;
        if data.len() > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "log chunk of {} bytes is larger than the limit of {max} bytes",
                    data.len()
                ),
            ));
        }
        self.db("task", move |conn| {
            store::tasks::append_log(conn, task_id, &token, position, &data)
        })
        .await?;
        self.progressed(task_id);
        Ok(())
    }

    /// A task's end, after the step changes the runner had not reported
    /// yet (`steps`), in one transaction.
    pub async fn finish(
        &self,
        task_id: i64,
        token: String,
        steps: Vec<StepChange>,
        event: TaskEvent,
        error: Option<String>,
    ) -> Result<(), ApiError> {
        let ended = self
            .db("task", move |conn| {
                store::task_deploys::finish(conn, task_id, &token, &steps, event, error.as_deref())
            })
            .await?;
        for step in &ended.steps {
            self.metrics.step_changed(step);
        }
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
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
