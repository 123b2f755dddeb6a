//! What creates tasks: a manual run, and a webhook delivery (a push, a pull
//! or merge request, or a successful run of an external CI workflow)
//! recorded once with the tasks it triggers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::plan::{Plan, Trigger};
use domain::pull::PullRequestEvent;
use domain::push::{GitRef, PushEvent};
use domain::workflow::{AlertEvent, Workflow};
use proto::{ApiError, ErrorCode};
use store::tasks::{ForgeTarget, NewTask, PullRequestInfo, Source};
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
    /// The pull or merge request, when the event is one.
    pub pull_request: Option<PullRequestEvent>,
    /// Where the event came from on its forge: its tasks' commit statuses
    /// go there when Slipway has credentials for it.
    pub forge: Option<ForgeTarget>,
    /// Why the gateway will not act on the event, recorded as the outcome.
    pub ignored: Option<String>,
    /// When the gateway received it, for a delivery it kept in its spool
    /// while the orchestrator was away: one that waited longer than
    /// [`DELAYED_AFTER`] raises `webhook_delayed` on each task it creates.
    pub received_at: Option<DateTime<Utc>>,
}

/// How long a spooled delivery may wait before its tasks say so.
pub const DELAYED_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How long a delivery waited in the gateway's spool, when that is longer
/// than [`DELAYED_AFTER`].
fn delayed(received_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let waited = now - received_at?;
    (waited > DELAYED_AFTER).then_some(waited)
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

/// A task to create: the row, its steps, and whether it cancels the older
/// tasks of its branch or pull request (`concurrency.cancel_in_progress`).
struct Planned {
    workflow_id: i64,
    new: NewTask,
    steps: Vec<String>,
    cancels_older: bool,
}

impl App {
    /// A task of `row` from `source`, with the steps of its plan; it joins
    /// the trace of the call creating it.
    fn new_task(
        row: &WorkflowRow,
        spec: &Workflow,
        source: Source,
        trace: Option<String>,
    ) -> (NewTask, Vec<String>) {
        let steps = Plan::for_task(spec, source.trigger, None).names();
        let new = NewTask::new(row.id, row.version, spec.runs_on.key(), source, trace);
        (new, steps)
    }

    /// A webhook's task, which cancels older ones when its workflow says so.
    fn planned(
        row: &WorkflowRow,
        spec: &Workflow,
        source: Source,
        trace: &Option<String>,
    ) -> Planned {
        let (new, steps) = Self::new_task(row, spec, source, trace.clone());
        Planned {
            workflow_id: row.id,
            new,
            steps,
            cancels_older: spec.concurrency.cancel_in_progress,
        }
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
        let installation = self
            .db("workflow", move |conn| {
                store::workflows::installation(conn, workflow_id)
            })
            .await?;
        let source = Source {
            commit_sha: commit,
            forge: self.forges.for_repo(spec.repo.as_str(), installation),
            ..Source::new(Trigger::Manual, Some(GitRef::Branch(branch)))
        };
        let trace = telemetry::propagation::current_traceparent();
        let (new, steps) = Self::new_task(&row, &spec, source, trace);
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
    /// transaction shared with the deliveries that arrive meanwhile (see
    /// [`super::ingest`]); a delivery seen before gets its first outcome
    /// back. The answer waits for the commit.
    pub async fn ingest_webhook(&self, hook: Webhook) -> Result<Outcome, ApiError> {
        let (provider, delivery_id) = (hook.provider.clone(), hook.delivery_id.clone());
        let delivery = Delivery {
            forge: hook.forge.clone().and_then(|f| self.forges.for_event(f)),
            late: delayed(hook.received_at, Utc::now()),
            trace: telemetry::propagation::current_traceparent(),
            hook,
        };
        match self.ingest.store(&self.pool, &self.specs, delivery).await {
            Ok((row, seen)) => {
                if !seen && !row.task_ids.is_empty() {
                    self.queued();
                }
                Ok(Self::outcome(row, seen))
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

/// A verified webhook on its way to the database.
pub(super) struct Delivery {
    pub hook: Webhook,
    /// Where its tasks' commit statuses go, when Slipway has credentials.
    pub forge: Option<ForgeTarget>,
    /// How long it waited in the gateway's spool, when that was too long.
    pub late: Option<chrono::TimeDelta>,
    /// The trace of the call that brought it: its tasks join it, though a
    /// group stores them elsewhere.
    pub trace: Option<String>,
}

/// What a webhook brings about: the tasks to create, why none, and the
/// GitHub App installation its workflows came through.
struct Outcomes {
    planned: Vec<Planned>,
    ignored: Option<String>,
    installation: Option<(Vec<i64>, i64)>,
}

/// The live workflows with their parsed definitions, as a group of
/// deliveries loads them once, at the first that needs them.
pub(super) type Live = Option<Vec<(WorkflowRow, Arc<Workflow>)>>;

/// Parses a stored definition (`None`, said in the log, when it no longer
/// parses).
pub(super) type SpecOf<'a> = &'a dyn Fn(&WorkflowRow, &str) -> Option<Arc<Workflow>>;

/// Records `delivery` (inside the caller's transaction), statement by
/// statement: its outcome as stored and whether it was seen before.
pub(super) fn record(
    conn: &mut diesel::PgConnection,
    delivery: &Delivery,
    workflows: &mut Live,
    spec: SpecOf<'_>,
) -> store::Result<(DeliveryRow, bool)> {
    let hook = &delivery.hook;
    if let Some(seen) = store::webhooks::find(conn, &hook.provider, &hook.delivery_id)? {
        return Ok((seen, true));
    }
    let outcomes = outcomes_of(conn, delivery, workflows, spec)?;
    let row = store_outcomes(conn, hook, outcomes, delivery.late)?;
    Ok((row, false))
}

/// Records a group of deliveries (inside the caller's transaction) in a
/// few statements for them all: one to find those seen before, one per
/// table for the tasks, their steps, outbox entries and events, one for the
/// deliveries, one per GitHub App installation they carry. Those whose
/// tasks cancel older ones or that waited too long are stored on their
/// own, in the same transaction. A delivery twice in the group is the same as its first.
/// Each one's outcome and whether it was seen before, in order; an error
/// fails the group.
pub(super) fn record_group(
    conn: &mut diesel::PgConnection,
    group: &[&Delivery],
    spec: SpecOf<'_>,
) -> store::Result<Vec<(DeliveryRow, bool)>> {
    enum Slot {
        Seen(DeliveryRow),
        SameAs(usize),
        Stored(DeliveryRow),
        /// The place of its row among those inserted together.
        Together(usize),
    }
    let keys: Vec<(&str, &str)> = group
        .iter()
        .map(|d| (d.hook.provider.as_str(), d.hook.delivery_id.as_str()))
        .collect();
    let seen = store::webhooks::find_many(conn, &keys)?;
    let mut workflows: Live = None;
    let mut slots = Vec::with_capacity(group.len());
    let mut together: Vec<(&Webhook, Outcomes)> = Vec::new();
    for (i, delivery) in group.iter().enumerate() {
        let (provider, id) = keys[i];
        if let Some(row) = seen
            .iter()
            .find(|r| r.provider == provider && r.delivery_id == id)
        {
            slots.push(Slot::Seen(row.clone()));
        } else if let Some(first) = keys[..i].iter().position(|k| *k == keys[i]) {
            slots.push(Slot::SameAs(first));
        } else {
            let outcomes = outcomes_of(conn, delivery, &mut workflows, spec)?;
            let alone = delivery.late.is_some() || outcomes.planned.iter().any(|p| p.cancels_older);
            if alone {
                let row = store_outcomes(conn, &delivery.hook, outcomes, delivery.late)?;
                slots.push(Slot::Stored(row));
            } else {
                slots.push(Slot::Together(together.len()));
                together.push((&delivery.hook, outcomes));
            }
        }
    }
    let tasks: Vec<(NewTask, Vec<String>)> = together
        .iter()
        .flat_map(|(_, o)| o.planned.iter().map(|p| (p.new.clone(), p.steps.clone())))
        .collect();
    let mut ids = store::tasks::create_many(conn, &tasks)?.into_iter();
    let news: Vec<NewDelivery<'_>> = together
        .iter()
        .map(|(hook, o)| NewDelivery {
            provider: &hook.provider,
            delivery_id: &hook.delivery_id,
            event: &hook.event,
            body_sha256: &hook.body_sha256,
            task_ids: ids.by_ref().take(o.planned.len()).collect(),
            ignored: o.ignored.as_deref(),
        })
        .collect();
    let rows = store::webhooks::insert_many(conn, &news)?;
    let mut installations: Vec<(i64, Vec<i64>)> = Vec::new();
    for (ids, installation) in together.iter().filter_map(|(_, o)| o.installation.as_ref()) {
        match installations.iter_mut().find(|(i, _)| i == installation) {
            Some((_, all)) => all.extend(ids),
            None => installations.push((*installation, ids.clone())),
        }
    }
    for (installation, ids) in installations.iter().filter(|(_, ids)| !ids.is_empty()) {
        store::workflows::set_installation(conn, ids, *installation)?;
    }
    let mut outcomes: Vec<(DeliveryRow, bool)> = Vec::with_capacity(slots.len());
    for slot in slots {
        let outcome = match slot {
            Slot::Seen(row) => (row, true),
            Slot::SameAs(first) => (outcomes[first].0.clone(), true),
            Slot::Stored(row) => (row, false),
            Slot::Together(n) => {
                let row = rows.get(n).cloned().ok_or_else(|| {
                    store::Error::Corrupt("a delivery inserted without its row".to_owned())
                })?;
                (row, false)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// What `delivery` brings about among the live workflows (loaded into
/// `workflows` at the first delivery that needs them).
fn outcomes_of(
    conn: &mut diesel::PgConnection,
    delivery: &Delivery,
    workflows: &mut Live,
    spec: SpecOf<'_>,
) -> store::Result<Outcomes> {
    let hook = &delivery.hook;
    let needs_workflows =
        hook.push.is_some() || hook.workflow_run.is_some() || hook.pull_request.is_some();
    if needs_workflows && workflows.is_none() {
        let live = store::workflows::live_with_definitions(conn)?;
        *workflows = Some(
            live.into_iter()
                .filter_map(|(row, definition)| {
                    let spec = spec(&row, &definition)?;
                    Some((row, spec))
                })
                .collect(),
        );
    }
    let specs: &[(WorkflowRow, Arc<Workflow>)] = match workflows {
        Some(list) if needs_workflows => list,
        _ => &[],
    };
    Ok(plan(delivery, specs))
}

/// The tasks `hook` triggers among `specs`, or why none.
fn plan(delivery: &Delivery, specs: &[(WorkflowRow, Arc<Workflow>)]) -> Outcomes {
    let hook = &delivery.hook;
    let delivery_id = hook.delivery_id.clone();
    let forge = delivery.forge.clone();
    let mut planned: Vec<Planned> = Vec::new();
    let mut ignored = hook.ignored.clone();
    if let Some(push) = &hook.push {
        if push.message.as_deref().is_some_and(domain::pull::skips_ci) {
            ignored.get_or_insert_with(|| "skip ci".to_owned());
        } else {
            let mut reasons = Vec::new();
            for (row, spec) in specs {
                match spec.match_push(push) {
                    Ok(()) => {
                        let source = Source {
                            commit_sha: Some(push.after.as_str().to_owned()),
                            message: push.message.clone(),
                            author: push.author.clone(),
                            committed_at: push.committed_at.map(DateTime::<Utc>::from),
                            delivery_id: Some(delivery_id.clone()),
                            forge: forge.clone(),
                            ..Source::new(Trigger::Push, Some(push.git_ref.clone()))
                        };
                        planned.push(App::planned(row, spec, source, &delivery.trace));
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
    }

    if let Some(pr) = &hook.pull_request {
        let pull_forge = match hook.provider.as_str() {
            "gitlab" => domain::forge::Forge::GitLab,
            _ => domain::forge::Forge::GitHub,
        };
        let mut reasons = Vec::new();
        for (row, spec) in specs {
            match spec.match_pull_request(pr) {
                Ok(()) => {
                    let source = Source {
                        commit_sha: Some(pr.head_sha.as_str().to_owned()),
                        committed_at: pr.committed_at.map(DateTime::<Utc>::from),
                        delivery_id: Some(delivery_id.clone()),
                        pull_request: Some(PullRequestInfo {
                            number: pr.number,
                            title: pr.title.clone(),
                            url: pr.url.clone(),
                            source_branch: pr.source_branch.clone(),
                            target_branch: pr.target_branch.clone(),
                            fork: pr.fork,
                            fetch_ref: pull_forge.pull_request_ref(pr.number),
                        }),
                        forge: forge.clone(),
                        ..Source::new(
                            Trigger::PullRequest,
                            Some(GitRef::Branch(pr.source_branch.clone())),
                        )
                    };
                    planned.push(App::planned(row, spec, source, &delivery.trace));
                }
                Err(domain::pull::Ignored::RepositoryMismatch) => {}
                Err(reason) => reasons.push((row.name.clone(), reason)),
            }
        }
        if planned.is_empty() && ignored.is_none() {
            ignored = Some(if reasons.is_empty() {
                let repo = pr.repo_urls.first().map(String::as_str).unwrap_or("?");
                format!("no workflow for repository {repo}")
            } else if reasons
                .iter()
                .all(|(_, r)| *r == domain::pull::Ignored::Fork)
            {
                domain::pull::Ignored::Fork.to_string()
            } else {
                reasons
                    .iter()
                    .map(|(name, reason)| format!("{name}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        }
    }

    if let Some(run) = &hook.workflow_run {
        for (row, spec) in specs {
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
                forge: forge.clone(),
                ..Source::new(
                    Trigger::WorkflowRun,
                    run.head_branch.clone().map(GitRef::Branch),
                )
            };
            planned.push(App::planned(row, spec, source, &delivery.trace));
        }
        if planned.is_empty() && ignored.is_none() {
            ignored = Some(format!("no workflow deploys after {}", run.workflow));
        }
    }
    // Manual runs of these workflows use the installation of their last
    // GitHub webhook.
    let installation = hook
        .forge
        .as_ref()
        .filter(|f| f.forge == "github")
        .and_then(|f| f.installation_id)
        .map(|installation| {
            let ids: Vec<i64> = specs
                .iter()
                .filter(|(_, spec)| {
                    let urls = [
                        hook.push.as_ref().map(|p| &p.repo_urls),
                        hook.pull_request.as_ref().map(|p| &p.repo_urls),
                        hook.workflow_run.as_ref().map(|r| &r.repo_urls),
                    ];
                    urls.into_iter()
                        .flatten()
                        .flatten()
                        .any(|u| spec.repo.matches(u))
                })
                .map(|(row, _)| row.id)
                .collect();
            (ids, installation)
        });

    Outcomes {
        planned,
        ignored,
        installation,
    }
}

/// Creates the planned tasks and records the delivery with its outcome.
fn store_outcomes(
    conn: &mut diesel::PgConnection,
    hook: &Webhook,
    outcomes: Outcomes,
    late: Option<chrono::TimeDelta>,
) -> store::Result<DeliveryRow> {
    let Outcomes {
        planned,
        ignored,
        installation,
    } = outcomes;
    let (p, d) = (&hook.provider, &hook.delivery_id);
    let mut task_ids = Vec::with_capacity(planned.len());
    for p in &planned {
        let id = store::tasks::create_within(conn, &p.new, &p.steps)?;
        if p.cancels_older {
            let cancelled = store::tasks::supersede_older(conn, id)?;
            if !cancelled.is_empty() {
                tracing::info!(task = id, ?cancelled, "superseded older tasks");
            }
        }
        if let Some(waited) = late {
            store::events::emit(
                conn,
                &store::events::Event {
                    kind: AlertEvent::WebhookDelayed.as_str(),
                    workflow_id: p.workflow_id,
                    task_id: Some(id),
                    summary: format!(
                        "task {id} created {} minutes late: its webhook waited in the gateway's spool while the orchestrator could not take it",
                        waited.num_minutes()
                    ),
                    ..store::events::Event::default()
                },
            )?;
        }
        task_ids.push(id);
    }
    if let Some((ids, installation)) = &installation
        && !ids.is_empty()
    {
        store::workflows::set_installation(conn, ids, *installation)?;
    }
    store::webhooks::insert(
        conn,
        &NewDelivery {
            provider: p,
            delivery_id: d,
            event: &hook.event,
            body_sha256: &hook.body_sha256,
            task_ids,
            ignored: ignored.as_deref(),
        },
    )
}
