//! What creates tasks: a manual run, and a webhook delivery (a push, or a
//! successful run of an external CI workflow) recorded once with the tasks it
//! triggers.

use domain::plan::{Plan, Trigger};
use domain::push::{GitRef, PushEvent};
use domain::workflow::Workflow;
use proto::{ApiError, ErrorCode};
use store::tasks::{NewTask, Source};
use store::webhooks::{DeliveryRow, NewDelivery};
use store::workflows::WorkflowRow;

use super::{App, bad_request, internal};

/// What a webhook delivery came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The provider's id of the delivery, echoed so the caller can log it.
    pub delivery_id: String,
    /// The tasks the delivery created, for the sender to follow.
    pub task_ids: Vec<i64>,
    /// Why nothing was created, when nothing was.
    pub ignored: Option<String>,
    /// The delivery was seen before: this is its first outcome again.
    pub duplicate: bool,
}

/// A webhook the gateway verified.
pub struct Webhook {
    /// `github` or `gitlab`: with `delivery_id`, what makes a redelivery a duplicate.
    pub provider: String,
    /// The provider's id of this delivery, the same on every redelivery.
    pub delivery_id: String,
    /// The provider's event name, recorded with the delivery.
    pub event: String,
    /// Hex digest of the raw body, recorded to tell deliveries apart later.
    pub body_sha256: String,
    /// The push, when the event is one the gateway could parse.
    pub push: Option<PushEvent>,
    /// The external CI run, when the event is a successful `workflow_run`.
    pub workflow_run: Option<WorkflowRun>,
    /// Why the gateway will not act on the event, recorded as the outcome.
    pub ignored: Option<String>,
}

/// A successful run of an external CI workflow (GitHub `workflow_run`).
pub struct WorkflowRun {
    /// The repository's URLs, matched against each workflow's `repo`.
    pub repo_urls: Vec<String>,
    /// The external workflow's name, matched against `on.workflow_run`.
    pub workflow: String,
    /// The commit the run built: its image is the one deployed.
    pub head_sha: domain::push::CommitSha,
    /// The branch the run built, recorded on the task when known.
    pub head_branch: Option<String>,
}

impl App {
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
}
