//! Conversions between proto messages and the orchestrator's types.

use domain::push::{CommitSha, GitRef, PushEvent};
use domain::state::{DeploymentEvent, StepEvent, TaskEvent};
use proto::{ApiError, ErrorCode};
use store::alerts::{AlertView, Claimed, DeliveryRow};
use store::deployments::{DeploymentRecord, DeploymentRow, RollbackRow, ServedRoute};
use store::events::EventRecord;
use store::tasks::TaskDetail;
use store::workflows::WorkflowRow;

use crate::app::{DeletionClaim, Environment, RetentionView};

pub fn workflow(row: WorkflowRow, definition: Option<String>) -> proto::Workflow {
    proto::Workflow {
        id: row.id,
        name: row.name,
        repo: row.repo,
        version: row.version,
        created_at: Some(proto::timestamp(row.created_at)),
        updated_at: Some(proto::timestamp(row.updated_at)),
        definition,
        retention: None,
    }
}

pub fn retention(r: RetentionView) -> proto::Retention {
    proto::Retention {
        days: r.limits.days,
        keep_last: r.limits.keep_last,
        last_pruned_at: r.last.at.map(proto::timestamp),
        last_pruned: Some(proto::PruneFigures {
            tasks: r.last.tasks,
            log_bytes: r.last.log_bytes,
            images: r.last.images,
        }),
    }
}

pub fn image_deletion(c: DeletionClaim) -> proto::ImageDeletion {
    proto::ImageDeletion {
        id: c.row.id,
        repository: c.row.repository,
        digest: c.row.digest,
        registry_username: c.username,
        registry_password: c.password,
    }
}

pub fn workspace(w: proto::WorkspaceRef) -> store::workspaces::Workspace {
    store::workspaces::Workspace {
        task_id: w.task_id,
        lease_prefix: w.lease_prefix,
    }
}

pub fn workspace_ref(w: store::workspaces::Workspace) -> proto::WorkspaceRef {
    proto::WorkspaceRef {
        task_id: w.task_id,
        lease_prefix: w.lease_prefix,
    }
}

pub fn rollback(r: RollbackRow) -> proto::Rollback {
    proto::Rollback {
        id: r.id,
        workflow_id: r.workflow_id,
        environment: r.environment,
        deployment_id: r.deployment_id,
        from_deployment_id: r.from_deployment_id,
        to_deployment_id: r.to_deployment_id,
        reason: r.reason,
        status: r.status,
        error: r.error,
        created_at: Some(proto::timestamp(r.created_at)),
        finished_at: r.finished_at.map(proto::timestamp),
    }
}

/// A deployment as users read it, with its rollback and commit.
pub fn deployment(record: DeploymentRecord) -> proto::Deployment {
    proto::Deployment {
        rollback: record.rollback.map(rollback),
        commit: record.commit,
        ..deployment_row(record.row)
    }
}

/// A deployment's row alone: what the runner API answers.
pub fn deployment_row(d: DeploymentRow) -> proto::Deployment {
    proto::Deployment {
        id: d.id,
        workflow_id: d.workflow_id,
        task_id: d.task_id,
        environment: d.environment,
        image: d.image,
        status: d.status,
        trigger: d.trigger,
        previous_deployment_id: d.previous_deployment_id,
        error: d.error,
        created_at: Some(proto::timestamp(d.created_at)),
        started_at: d.started_at.map(proto::timestamp),
        finished_at: d.finished_at.map(proto::timestamp),
        rollback: None,
        host: d.host,
        switched_at: d.switched_at.map(proto::timestamp),
        retired_at: d.retired_at.map(proto::timestamp),
        commit: None,
    }
}

pub fn environment(e: Environment) -> proto::Environment {
    let records = e.records;
    proto::Environment {
        name: records.name,
        current: records.current.map(deployment),
        previous: records.previous.map(deployment),
        latest: records.latest.map(deployment),
        route: e.route.map(|r| proto::EnvironmentRoute {
            domains: r.domains,
            listen: r.listen.map(u32::from),
            url: r.url,
        }),
        serving_deployment_id: records.environment.and_then(|e| e.serving_deployment_id),
    }
}

pub fn served_route(r: ServedRoute) -> proto::ServedRoute {
    proto::ServedRoute {
        workflow_id: r.workflow_id,
        workflow: r.workflow,
        environment: r.environment,
        deployment_id: r.deployment.id,
        image: r.deployment.image,
        definition: r.definition,
    }
}

pub fn task(
    detail: TaskDetail,
    deployments: Vec<DeploymentRecord>,
    statuses: Vec<store::forges::StatusRow>,
) -> proto::Task {
    let t = detail.task;
    let pull_request = t.pull_request().ok().flatten().map(pull_request);
    proto::Task {
        id: t.id,
        workflow_id: t.workflow_id,
        workflow: detail.workflow,
        workflow_version: t.workflow_version,
        status: t.status,
        trigger: t.trigger,
        attempt: t.attempt,
        retry_of: t.retry_of,
        branch: t.branch,
        tag: t.tag,
        commit: t.commit_sha,
        message: t.message,
        author: t.author,
        delivery_id: t.delivery_id,
        created_at: Some(proto::timestamp(t.created_at)),
        started_at: t.started_at.map(proto::timestamp),
        finished_at: t.finished_at.map(proto::timestamp),
        error: t.error,
        image_reference: t.image_reference,
        image_digest: t.image_digest,
        deployments: deployments.into_iter().map(deployment).collect(),
        steps: detail
            .steps
            .into_iter()
            .map(|s| proto::Step {
                name: s.name,
                status: s.status,
                exit_code: s.exit_code,
                started_at: s.started_at.map(proto::timestamp),
                finished_at: s.finished_at.map(proto::timestamp),
                error: s.error,
            })
            .collect(),
        pull_request,
        commit_statuses: statuses.into_iter().map(commit_status).collect(),
    }
}

pub fn pull_request(p: store::tasks::PullRequestInfo) -> proto::PullRequest {
    proto::PullRequest {
        number: p.number,
        title: p.title,
        url: p.url,
        source_branch: p.source_branch,
        target_branch: p.target_branch,
        fork: p.fork,
    }
}

pub fn commit_status(s: store::forges::StatusRow) -> proto::CommitStatus {
    proto::CommitStatus {
        id: s.id,
        context: s.context,
        state: s.state,
        description: s.description,
        status: s.status,
        attempts: s.attempts,
        last_error: s.last_error,
        delivered_at: s.delivered_at.map(proto::timestamp),
        created_at: Some(proto::timestamp(s.created_at)),
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

/// A commit sha the gateway read from a payload's `field`.
fn commit(field: &str, value: &str) -> Result<CommitSha, ApiError> {
    CommitSha::parse(value)
        .map_err(|_| bad(format!("invalid {field} {value:?}: expected 40 hex digits")))
}

/// Fails when `what` names no repository to match workflows against.
fn named_repos(urls: &[String], what: &str) -> Result<(), ApiError> {
    if urls.is_empty() {
        return Err(bad(format!("{what} names no repository")));
    }
    Ok(())
}

/// The push event the gateway parsed, checked field by field.
pub fn push_event(p: proto::PushEvent) -> Result<PushEvent, ApiError> {
    let git_ref = GitRef::parse(&p.git_ref)
        .ok_or_else(|| bad(format!("ref {:?} is neither a branch nor a tag", p.git_ref)))?;
    let after = commit("commit", &p.after)?;
    named_repos(&p.repo_urls, "the push")?;
    Ok(PushEvent {
        repo_urls: p.repo_urls,
        git_ref,
        after,
        changed_paths: p.paths_known.then_some(p.changed_paths),
        message: p.message,
        author: p.author,
        committed_at: p.committed_at.as_ref().and_then(system_time),
    })
}

/// The pull request the gateway parsed, checked field by field.
pub fn pull_request_event(
    p: proto::PullRequestEvent,
) -> Result<domain::pull::PullRequestEvent, ApiError> {
    let head_sha = commit("head sha", &p.head_sha)?;
    named_repos(&p.repo_urls, "the pull request")?;
    if p.number <= 0 {
        return Err(bad(format!("invalid pull request number {}", p.number)));
    }
    for (field, value) in [
        ("source branch", &p.source_branch),
        ("target branch", &p.target_branch),
    ] {
        if value.trim().is_empty() {
            return Err(bad(format!("the pull request has no {field}")));
        }
    }
    Ok(domain::pull::PullRequestEvent {
        repo_urls: p.repo_urls,
        action: domain::workflow::PullRequestAction::parse(&p.action).ok_or(p.action),
        number: p.number,
        title: p.title,
        url: p.url,
        head_sha,
        source_branch: p.source_branch,
        target_branch: p.target_branch,
        draft: p.draft,
        fork: p.fork,
        committed_at: p.committed_at.as_ref().and_then(system_time),
    })
}

/// A protobuf timestamp as a system time; `None` when out of range.
fn system_time(ts: &proto::Timestamp) -> Option<std::time::SystemTime> {
    proto::datetime(ts).map(std::time::SystemTime::from)
}

/// Where an event came from on its forge; `None` when it does not say.
pub fn forge_ref(f: proto::ForgeRef) -> Option<store::tasks::ForgeTarget> {
    domain::forge::Forge::parse(&f.forge)?;
    if f.repo.trim().is_empty() {
        return None;
    }
    Some(store::tasks::ForgeTarget {
        forge: f.forge,
        repo: f.repo,
        web_url: f.web_url.filter(|u| !u.is_empty()),
        installation_id: f.installation_id,
    })
}

/// A completed external CI run, checked field by field.
pub fn workflow_run(r: proto::WorkflowRunEvent) -> Result<crate::app::WorkflowRun, ApiError> {
    let head_sha = commit("head_sha", &r.head_sha)?;
    named_repos(&r.repo_urls, "the workflow_run")?;
    Ok(crate::app::WorkflowRun {
        repo_urls: r.repo_urls,
        workflow: r.workflow,
        head_sha,
        head_branch: r.head_branch.filter(|b| !b.is_empty()),
    })
}

pub fn alert_event(e: EventRecord) -> proto::AlertEvent {
    proto::AlertEvent {
        id: e.id,
        r#type: e.kind,
        at: Some(proto::timestamp(e.at)),
        workflow_id: e.workflow_id,
        workflow: e.workflow,
        workflow_version: e.workflow_version,
        task_id: e.task_id,
        deployment_id: e.deployment_id,
        environment: e.environment,
        branch: e.branch,
        tag: e.tag,
        commit: e.commit,
        message: e.message,
        summary: e.summary,
        error: e.error,
        reason: e.reason,
        outcome: e.outcome,
        recovery: e.recovery,
        seq: e.seq,
        trigger: e.trigger,
        forge_statuses: e.forge_statuses,
    }
}

pub fn delivery(d: DeliveryRow) -> proto::Delivery {
    let pending = d.status == store::alerts::PENDING;
    proto::Delivery {
        id: d.id,
        rule: d.rule,
        channel: d.channel,
        target: d.target,
        status: d.status,
        attempts: d.attempts,
        last_error: d.last_error,
        next_attempt_at: pending.then(|| proto::timestamp(d.next_attempt_at)),
        delivered_at: d.delivered_at.map(proto::timestamp),
        created_at: Some(proto::timestamp(d.created_at)),
    }
}

pub fn claimed(c: Claimed) -> proto::ClaimedDelivery {
    proto::ClaimedDelivery {
        delivery: Some(delivery(c.delivery)),
        event: Some(alert_event(c.event)),
    }
}

pub fn alert(a: AlertView) -> proto::Alert {
    proto::Alert {
        id: a.alert.id,
        event: Some(alert_event(a.event)),
        throttled: a.alert.throttled,
        created_at: Some(proto::timestamp(a.alert.created_at)),
        deliveries: a.deliveries.into_iter().map(delivery).collect(),
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
        other => return Err(bad(format!("unknown step status {other:?}"))),
    })
}

/// Parses a deployment event a runner reports.
pub fn deployment_event(event: &str) -> Result<DeploymentEvent, ApiError> {
    Ok(match event {
        "verify" => DeploymentEvent::Verify,
        "succeed" => DeploymentEvent::Succeed,
        "fail" => DeploymentEvent::Fail,
        "time_out" => DeploymentEvent::TimeOut,
        other => return Err(bad(format!("unknown deployment event {other:?}"))),
    })
}

/// Parses a task's final status a runner reports.
pub fn task_event(status: &str) -> Result<TaskEvent, ApiError> {
    Ok(match status {
        "success" => TaskEvent::Succeeded,
        "failed" => TaskEvent::Failed,
        "cancelled" => TaskEvent::Cancelled,
        other => return Err(bad(format!("unknown final status {other:?}"))),
    })
}

pub fn claimed_status(s: crate::app::Sendable) -> proto::ClaimedStatus {
    let c = s.claimed;
    proto::ClaimedStatus {
        task_id: c.status.task_id,
        forge: c.forge.forge,
        api_url: s.api_url,
        repo: c.forge.repo,
        sha: c.sha,
        token: s.token,
        status: Some(commit_status(c.status)),
    }
}
