//! Runs one claimed task: heartbeats the lease, clones the commit into a
//! fresh workspace, runs the steps in order with their environment, masks
//! secrets in the output, and reports every step and the end. Stops a
//! running step at once on cancel; abandons the task silently when the lease
//! is lost or the runner shuts down (the orchestrator re-queues it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use domain::mask::{Masker, MaskingStream};
use domain::push::CommitSha;
use domain::workflow::{self, EventKind, TemplateVars, Workflow};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::client::{CallError, Lease, RunnerClient};
use crate::deploy::{Chain, Deploys};
use crate::docker::{BuildSpec, Docker, StepSpec};
use crate::git;
use crate::process::{self, Ending, Script, Stop};
use crate::ship::LogSink;

/// What the executor needs from its runner.
pub struct Context {
    pub client: RunnerClient,
    pub workspaces: PathBuf,
    pub heartbeat: Duration,
    pub grace: Duration,
    /// The Docker Engine, for container steps and images; `None` when the
    /// runner could not set up a connection (those steps then fail).
    pub docker: Option<Docker>,
    /// `host:port[/prefix]` images are pushed under.
    pub registry: String,
    /// Local images kept per deployed repository.
    pub keep_images: usize,
    /// Stopped versions kept per environment (at least one).
    pub keep_containers: usize,
}

/// How a task ended, as far as the runner reports it.
#[derive(Debug)]
enum End {
    Success,
    Failed(String),
    Cancelled,
    /// The lease is gone or the runner stops: say nothing.
    Abandoned,
}

/// A claimed task.
pub struct Job {
    pub lease: Lease,
    pub claim: proto::ClaimTaskResponse,
}

pub async fn execute(ctx: Arc<Context>, job: Job, mut shutdown: watch::Receiver<bool>) {
    let lease = job.lease.clone();
    let task_id = lease.task_id;
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let stop_tx = Arc::new(stop_tx);

    let lease_time = Duration::from_secs(u64::try_from(job.claim.lease_seconds).unwrap_or(0));
    let heartbeat = AbortOnDrop(tokio::spawn(
        heartbeat(
            ctx.client.clone(),
            lease.clone(),
            ctx.heartbeat,
            lease_time,
            stop_tx.clone(),
        )
        .in_current_span(),
    ));
    let stopper = AbortOnDrop({
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while shutdown.changed().await.is_ok() {
                if *shutdown.borrow() {
                    break;
                }
            }
            stop_tx.send_replace(Stop::Abort);
        })
    });

    let workspace = ctx.workspaces.join(format!(
        "task-{task_id}-{}",
        lease.token.get(..8).unwrap_or(&lease.token)
    ));
    tracing::info!(task_id, workflow = %job.claim.workflow, "running task");
    let end = run(&ctx, &job, &workspace, stop_rx).await;
    drop(heartbeat);
    drop(stopper);

    let report = match &end {
        End::Success => Some(("success", None)),
        End::Failed(e) => Some(("failed", Some(e.clone()))),
        End::Cancelled => Some(("cancelled", None)),
        End::Abandoned => None,
    };
    if let Some((status, error)) = report {
        let result = persist(&ctx.client, |mut c| {
            let (lease, error) = (lease.clone(), error.clone());
            async move { c.finish(&lease, status, error).await }
        })
        .await;
        match result {
            Ok(()) => tracing::info!(task_id, status, "task finished"),
            Err(e) => tracing::warn!(task_id, error = %e, "could not report the end of the task"),
        }
    } else {
        tracing::warn!(task_id, "task abandoned");
    }
    if let Err(e) = tokio::fs::remove_dir_all(&workspace).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(task_id, error = %e, "cannot remove the workspace");
    }
}

/// Aborts a background task when dropped, so a panicking executor does not
/// leave its heartbeat renewing the lease forever.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease until aborted; turns a requested cancel or a lost lease
/// into a stop. When no heartbeat got through for almost a whole lease, the
/// orchestrator may already have given the task to another runner: stop.
async fn heartbeat(
    mut client: RunnerClient,
    lease: Lease,
    every: Duration,
    lease_time: Duration,
    stop: Arc<watch::Sender<Stop>>,
) {
    let margin = (lease_time / 4).max(Duration::from_millis(500));
    let fence = lease_time.saturating_sub(margin);
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let answer = client.heartbeat(&lease).await;
        if answer.is_ok() {
            last_ok = Instant::now();
        }
        match answer {
            Ok(true) => {
                stop.send_if_modified(|s| {
                    let changed = *s == Stop::No;
                    if changed {
                        *s = Stop::Cancel;
                    }
                    changed
                });
            }
            Ok(false) => {}
            Err(e) if e.is_transient() => {
                if !fence.is_zero() && last_ok.elapsed() >= fence {
                    tracing::warn!(task_id = lease.task_id, error = %e, "no heartbeat for most of the lease; stopping");
                    stop.send_replace(Stop::Abort);
                    return;
                }
                tracing::warn!(task_id = lease.task_id, error = %e, "heartbeat failed; retrying");
            }
            Err(e) => {
                tracing::warn!(task_id = lease.task_id, error = %e, "lease lost");
                stop.send_replace(Stop::Abort);
                return;
            }
        }
    }
}

/// Retries a report while the orchestrator is unreachable, for up to a minute.
async fn persist<T, F, Fut>(client: &RunnerClient, mut call: F) -> Result<T, CallError>
where
    F: FnMut(RunnerClient) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(100);
    loop {
        match call(client.clone()).await {
            Err(e) if e.is_transient() && Instant::now() < give_up => {
                tracing::warn!(error = %e, "orchestrator unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Reports a step's status; false when the lease is gone.
async fn step(
    ctx: &Context,
    lease: &Lease,
    position: i32,
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<String>,
) -> bool {
    let result = persist(&ctx.client, |mut c| {
        let (lease, error) = (lease.clone(), error.clone());
        async move {
            c.update_step(&lease, position, status, exit_code, error)
                .await
        }
    })
    .await;
    if let Err(e) = &result {
        tracing::warn!(task_id = lease.task_id, position, error = %e, "step report refused");
    }
    result.is_ok()
}

/// `10m`, `90s`, `300ms`: durations as workflows write them.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A URL without credentials, for the log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// An error text as it may be shown: the repository URL without
/// credentials, secrets masked.
fn scrub(text: &str, repo: &str, masker: &Masker) -> String {
    let text = text.replace(repo, &redact(repo));
    String::from_utf8_lossy(&masker.mask(text.as_bytes())).into_owned()
}

fn event_kind(trigger: &str, tag: Option<&str>) -> EventKind {
    match trigger {
        "manual" => EventKind::Manual,
        "workflow_run" => EventKind::WorkflowRun,
        _ if tag.is_some() => EventKind::Tag,
        _ => EventKind::Push,
    }
}

/// The variables every step sees (workflow.md), then the workflow's `env`.
/// Where a step runs: on the runner's host, or in a container with the
/// workspace at /workspace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Host,
    Container,
}

fn base_env(
    job: &Job,
    spec: &Workflow,
    commit: &str,
    workspace: &std::path::Path,
    place: Place,
) -> BTreeMap<String, String> {
    // On the host the runner's own environment passes through, except its
    // settings: a step must never see the runner's token. A container gets
    // only what the workflow says.
    let mut env: BTreeMap<String, String> = match place {
        Place::Host => std::env::vars()
            .filter(|(k, _)| !k.starts_with("SLIPWAY_") && !k.starts_with("OTEL_"))
            .collect(),
        Place::Container => BTreeMap::new(),
    };
    let workspace = match place {
        Place::Host => workspace.display().to_string(),
        Place::Container => "/workspace".to_owned(),
    };
    let c = &job.claim;
    let fixed = [
        ("CI", "true".to_owned()),
        ("SLIPWAY", "true".to_owned()),
        ("SLIPWAY_TASK_ID", job.lease.task_id.to_string()),
        ("SLIPWAY_WORKFLOW", c.workflow.clone()),
        ("SLIPWAY_REPO", c.repo.clone()),
        ("SLIPWAY_BRANCH", c.branch.clone().unwrap_or_default()),
        ("SLIPWAY_COMMIT", commit.to_owned()),
        (
            "SLIPWAY_COMMIT_SHORT",
            commit.get(..12).unwrap_or(commit).to_owned(),
        ),
        ("SLIPWAY_WORKSPACE", workspace),
    ];
    for (k, v) in fixed {
        env.insert(k.to_owned(), v);
    }
    if let Some(tag) = &c.tag {
        env.insert("SLIPWAY_TAG".to_owned(), tag.clone());
    }
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

async fn run(
    ctx: &Context,
    job: &Job,
    workspace: &std::path::Path,
    stop: watch::Receiver<Stop>,
) -> End {
    let lease = &job.lease;
    let c = &job.claim;
    let spec = match workflow::parse(&c.definition) {
        Ok(spec) => spec,
        Err(e) => return End::Failed(format!("invalid workflow definition: {e}")),
    };
    let sink = LogSink::start(ctx.client.clone(), lease.clone());
    let masker = Masker::new(c.secrets.values());

    // ---- clone ----
    if !step(ctx, lease, 0, "running", None, None).await {
        return End::Abandoned;
    }
    let git_ref = match (&c.tag, &c.branch) {
        (Some(tag), _) => format!("refs/tags/{tag}"),
        (None, Some(branch)) => format!("refs/heads/{branch}"),
        (None, None) => "HEAD".to_owned(),
    };
    sink.line(0, &format!("cloning {} ({git_ref})", redact(&c.repo)));
    if let Some(parent) = workspace.parent()
        && let Err(e) = tokio::fs::create_dir_all(parent).await
    {
        return fail_step(
            ctx,
            &sink,
            lease,
            0,
            format!("cannot create the workspace: {e}"),
        )
        .await;
    }
    let _ = tokio::fs::remove_dir_all(workspace).await;
    // The task's budget starts now and covers the clone too.
    let deadline = Instant::now()
        .checked_add(spec.timeout)
        .unwrap_or_else(|| Instant::now() + workflow::MAX_DURATION);
    let interrupt = Arc::new(AtomicBool::new(false));
    let cloning = {
        let (url, dir, r, commit, flag) = (
            c.repo.clone(),
            workspace.to_path_buf(),
            git_ref.clone(),
            c.commit.clone(),
            interrupt.clone(),
        );
        tokio::task::spawn_blocking(move || git::checkout(&url, &dir, &r, commit.as_deref(), &flag))
    };
    let cloned = tokio::select! {
        joined = cloning => Some(joined),
        () = tokio::time::sleep_until(deadline.into()) => None,
        // The stop itself is read below.
        () = stopped(stop.clone()) => None,
    };
    // Whatever ended the wait, a fetch still going must stop.
    interrupt.store(true, Ordering::Relaxed);
    let stop_now = *stop.borrow();
    let commit = match (stop_now, cloned) {
        (Stop::Abort, _) => return End::Abandoned,
        (Stop::Cancel, _) => {
            sink.line(0, "cancelled");
            sink.flush().await;
            step(ctx, lease, 0, "cancelled", None, None).await;
            return End::Cancelled;
        }
        (Stop::No, None) => {
            let e = format!("task timed out after {} while cloning", human(spec.timeout));
            return fail_step(ctx, &sink, lease, 0, e).await;
        }
        (Stop::No, Some(Ok(Ok(sha)))) => sha,
        (Stop::No, Some(Ok(Err(e)))) => {
            let e = scrub(&format!("clone failed: {e}"), &c.repo, &masker);
            return fail_step(ctx, &sink, lease, 0, e).await;
        }
        (Stop::No, Some(Err(e))) => {
            return fail_step(ctx, &sink, lease, 0, format!("clone failed: {e}")).await;
        }
    };
    if c.commit.is_none() {
        let reported = persist(&ctx.client, |mut cl| {
            let (lease, commit) = (lease.clone(), commit.clone());
            async move { cl.report_commit(&lease, &commit).await }
        })
        .await;
        if reported.is_err() {
            return End::Abandoned;
        }
    }
    sink.line(0, &format!("checked out {commit}"));
    sink.flush().await;
    if !step(ctx, lease, 0, "success", Some(0), None).await {
        return End::Abandoned;
    }

    // Every deploy of this task goes through one chain, whichever way it
    // was triggered.
    let deploys = Deploys {
        ctx,
        lease,
        sink: &sink,
        branch: c.branch.as_deref(),
        secrets: &c.secrets,
        workflow: &c.workflow,
        stop: stop.clone(),
        workspace: Some(workspace),
    };

    // ---- a deploy-only task: an approval, a re-deploy, a manual rollback;
    // its steps are the clone (for compose files) and the deploy ----
    if let (Some(id), Some(image), Some(env)) = (
        c.deployment_id,
        &c.deployment_image,
        &c.deployment_environment,
    ) {
        let Some(deploy) = spec.deploy.iter().find(|d| d.environment.as_str() == env) else {
            let e = format!("the workflow has no environment {env}");
            return fail_step(ctx, &sink, lease, 1, e).await;
        };
        let end = deploys.run_existing(deploy, id, image, 1).await;
        sink.flush().await;
        return End::from(end);
    }

    // ---- a workflow_run task: deploy what external CI pushed for this
    // commit (tagged with its short sha), without building ----
    if c.trigger == "workflow_run" {
        let Some(image) = &spec.image else {
            let e = "the workflow names no image to deploy".to_owned();
            return fail_step(ctx, &sink, lease, 1, e).await;
        };
        let Some(docker) = &ctx.docker else {
            let e = "this runner has no Docker Engine".to_owned();
            return fail_step(ctx, &sink, lease, 1, e).await;
        };
        let registry = ctx.registry.trim_end_matches('/');
        let reference = format!(
            "{registry}/{}:{}",
            image.name,
            commit.get(..12).unwrap_or(&commit)
        );
        sink.line(1, &format!("deploying the image CI pushed: {reference}"));
        let credentials = registry_credentials(c);
        let digest = match docker.digest_of(&reference, credentials).await {
            Ok(d) => d,
            Err(e) => {
                return fail_step(ctx, &sink, lease, 1, format!("no image to deploy: {e}")).await;
            }
        };
        let reported = persist(&ctx.client, |mut cl| {
            let (lease, reference, digest) = (lease.clone(), reference.clone(), digest.clone());
            async move { cl.report_image(&lease, &reference, &digest).await }
        })
        .await;
        if reported.is_err() {
            return End::Abandoned;
        }
        let by_digest = format!("{registry}/{}@{digest}", image.name);
        let end = deploys.run(&spec.deploy, &by_digest, 1).await;
        sink.flush().await;
        return End::from(end);
    }

    // ---- steps ----
    let host_env = base_env(job, &spec, &commit, workspace, Place::Host);
    let container_env = base_env(job, &spec, &commit, workspace, Place::Container);
    let labels = vec![
        ("slipway.workflow".to_owned(), c.workflow.clone()),
        ("slipway.task".to_owned(), lease.task_id.to_string()),
    ];
    let event = event_kind(&c.trigger, c.tag.as_deref());
    let mut failure: Option<String> = None;
    for (i, s) in spec.steps.iter().enumerate() {
        let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
        match *stop.borrow() {
            Stop::Abort => return End::Abandoned,
            Stop::Cancel => return End::Cancelled,
            Stop::No => {}
        }
        if let Some(when) = &s.when
            && !when.allows(c.branch.as_deref(), event)
        {
            sink.line(position, "skipped: its `when` does not match this task");
            sink.flush().await;
            if !step(ctx, lease, position, "skipped", None, None).await {
                return End::Abandoned;
            }
            continue;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            failure = Some(format!("task timed out after {}", human(spec.timeout)));
            break;
        }
        let (timeout, timeout_msg) = match s.timeout {
            Some(t) if t <= remaining => {
                (t, format!("step {} timed out after {}", s.name, human(t)))
            }
            _ => (
                remaining,
                format!("task timed out after {}", human(spec.timeout)),
            ),
        };
        if !step(ctx, lease, position, "running", None, None).await {
            return End::Abandoned;
        }
        let mut step_env = match s.image {
            Some(_) => container_env.clone(),
            None => host_env.clone(),
        };
        step_env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        step_env.extend(c.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        let step_env: Vec<(String, String)> = step_env.into_iter().collect();
        let mut masking = MaskingStream::new(masker.clone());
        let output = |chunk: &[u8]| sink.write(position, masking.push(chunk));
        let ending = match (&s.image, &ctx.docker) {
            (None, _) => {
                let script = Script {
                    script: &s.run,
                    cwd: workspace,
                    env: &step_env,
                    timeout,
                    grace: ctx.grace,
                };
                process::run(script, stop.clone(), output).await
            }
            (Some(image), Some(docker)) => {
                let container = StepSpec {
                    image,
                    script: &s.run,
                    workspace,
                    env: &step_env,
                    labels: &labels,
                    name: None,
                    user: None,
                    timeout,
                    grace: ctx.grace,
                };
                docker.run_step(container, stop.clone(), output).await
            }
            (Some(_), None) => Ending::SpawnFailed("this runner has no Docker Engine".to_owned()),
        };
        sink.write(position, masking.finish());
        let (status, exit_code, error) = match ending {
            Ending::Exited(0) => ("success", Some(0), None),
            Ending::Exited(code) => (
                "failed",
                Some(code),
                Some(format!("step {} exited with status {code}", s.name)),
            ),
            Ending::Signaled(sig) => (
                "failed",
                None,
                Some(format!("step {} was killed by signal {sig}", s.name)),
            ),
            Ending::TimedOut => ("failed", None, Some(timeout_msg)),
            Ending::SpawnFailed(e) => (
                "failed",
                None,
                Some(format!("step {} could not start: {e}", s.name)),
            ),
            Ending::Stopped(Stop::Cancel) => {
                sink.line(position, "cancelled");
                sink.flush().await;
                step(ctx, lease, position, "cancelled", None, None).await;
                return End::Cancelled;
            }
            Ending::Stopped(_) => return End::Abandoned,
        };
        if let Some(e) = &error {
            sink.line(position, e);
        }
        sink.flush().await;
        if !step(ctx, lease, position, status, exit_code, error.clone()).await {
            return End::Abandoned;
        }
        if let Some(e) = error {
            if s.continue_on_error {
                sink.line(position, "continuing: continue_on_error is set");
            } else {
                failure = Some(e);
                break;
            }
        }
    }

    // ---- image ----
    let mut position = i32::try_from(spec.steps.len() + 1).unwrap_or(i32::MAX);
    let mut deployable: Option<String> = None;
    if let (None, Some(image)) = (&failure, &spec.image) {
        match *stop.borrow() {
            Stop::Abort => return End::Abandoned,
            Stop::Cancel => return End::Cancelled,
            Stop::No => {}
        }
        if !step(ctx, lease, position, "running", None, None).await {
            return End::Abandoned;
        }
        let built = tokio::select! {
            built = build_and_push(ctx, job, image, workspace, &commit, position, &sink, &masker) => Some(built),
            () = stopped(stop.clone()) => None,
        };
        match built {
            Some(Ok((reference, digest))) => {
                sink.line(position, &format!("pushed {reference}@{digest}"));
                deployable = Some(format!(
                    "{}/{}@{digest}",
                    ctx.registry.trim_end_matches('/'),
                    image.name
                ));
                sink.flush().await;
                let reported = persist(&ctx.client, |mut cl| {
                    let (lease, reference, digest) =
                        (lease.clone(), reference.clone(), digest.clone());
                    async move { cl.report_image(&lease, &reference, &digest).await }
                })
                .await;
                if reported.is_err() || !step(ctx, lease, position, "success", Some(0), None).await
                {
                    return End::Abandoned;
                }
            }
            Some(Err(e)) => {
                let e = scrub(&e, &c.repo, &masker);
                sink.line(position, &e);
                sink.flush().await;
                if !step(ctx, lease, position, "failed", None, Some(e.clone())).await {
                    return End::Abandoned;
                }
                failure = Some(e);
            }
            None => {
                if *stop.borrow() == Stop::Cancel {
                    sink.line(position, "cancelled");
                    sink.flush().await;
                    step(ctx, lease, position, "cancelled", None, None).await;
                    return End::Cancelled;
                }
                return End::Abandoned;
            }
        }
        position += 1;
    }

    // ---- deploys ----
    if failure.is_none() && !spec.deploy.is_empty() {
        match deployable {
            Some(image) => match deploys.run(&spec.deploy, &image, position).await {
                Chain::Done => {}
                Chain::Failed(e) => failure = Some(e),
                Chain::Cancelled => return End::Cancelled,
                Chain::Abandoned => return End::Abandoned,
            },
            None => {
                for offset in 0..spec.deploy.len() {
                    let position = position + i32::try_from(offset).unwrap_or(0);
                    sink.line(position, "skipped: the workflow builds no image to deploy");
                    sink.flush().await;
                    if !step(ctx, lease, position, "skipped", None, None).await {
                        return End::Abandoned;
                    }
                }
            }
        }
    }
    sink.flush().await;
    match failure {
        Some(e) => End::Failed(e),
        None => End::Success,
    }
}

/// The registry login from the claim: the workflow's REGISTRY_USERNAME and
/// REGISTRY_PASSWORD secrets (a password alone logs in as `slipway`).
fn registry_credentials(c: &proto::ClaimTaskResponse) -> Option<(&str, &str)> {
    match (&c.registry_username, &c.registry_password) {
        (Some(user), Some(password)) => Some((user.as_str(), password.as_str())),
        (None, Some(password)) => Some(("slipway", password.as_str())),
        _ => None,
    }
}

impl From<Chain> for End {
    fn from(chain: Chain) -> Self {
        match chain {
            Chain::Done => End::Success,
            Chain::Failed(e) => End::Failed(e),
            Chain::Cancelled => End::Cancelled,
            Chain::Abandoned => End::Abandoned,
        }
    }
}

/// Resolves once `stop` asks for a stop.
async fn stopped(mut stop: watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::No {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// A rendered tag as Docker accepts it: `[A-Za-z0-9_.-]`, at most 128
/// characters, not starting with `.` or `-`; `None` when nothing is left.
fn docker_tag(rendered: &str) -> Option<String> {
    let tag: String = rendered
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| matches!(c, '.' | '-'))
        .take(128)
        .collect();
    (!tag.is_empty()).then_some(tag)
}

/// Builds the workflow's image and pushes every tag; returns the first
/// reference and the pushed digest.
#[allow(clippy::too_many_arguments)]
async fn build_and_push(
    ctx: &Context,
    job: &Job,
    image: &workflow::ImageSpec,
    workspace: &std::path::Path,
    commit: &str,
    position: i32,
    sink: &LogSink,
    masker: &Masker,
) -> Result<(String, String), String> {
    let docker = ctx
        .docker
        .as_ref()
        .ok_or("this runner has no Docker Engine")?;
    let c = &job.claim;
    let vars = TemplateVars {
        sha: CommitSha::parse(commit).map_err(|e| format!("invalid commit {commit}: {e}"))?,
        branch: c.branch.clone(),
        tag: c.tag.clone(),
        task_id: job.lease.task_id,
    };
    let mut references: Vec<String> = Vec::new();
    for template in &image.tags {
        if let Some(tag) = docker_tag(&template.render(&vars)) {
            let reference = format!(
                "{}/{}:{tag}",
                ctx.registry.trim_end_matches('/'),
                image.name
            );
            if !references.contains(&reference) {
                references.push(reference);
            }
        }
    }
    let Some(first) = references.first().cloned() else {
        return Err("image failed: no tag left after rendering image.tags".to_owned());
    };
    let build_args: Vec<(String, String)> = image
        .build_args
        .iter()
        .map(|(k, v)| (k.clone(), v.render(&vars)))
        .collect();
    // Not the deploy labels: containers inherit their image's labels.
    let labels = vec![
        ("slipway.image.workflow".to_owned(), c.workflow.clone()),
        (
            "slipway.image.task".to_owned(),
            job.lease.task_id.to_string(),
        ),
        ("slipway.image.commit".to_owned(), commit.to_owned()),
    ];
    let log = |line: &str| sink.write(position, masker.mask(format!("{line}\n").as_bytes()));
    sink.line(position, &format!("building {first}"));
    let spec = BuildSpec {
        context: &workspace.join(&image.context),
        dockerfile: &image.dockerfile,
        build_args: &build_args,
        labels: &labels,
        tags: &references,
    };
    docker
        .build(spec, log)
        .await
        .map_err(|e| format!("image build failed: {e}"))?;
    let credentials = registry_credentials(c);
    let mut digest = String::new();
    for reference in &references {
        sink.line(position, &format!("pushing {reference}"));
        let pushed = docker
            .push(reference, credentials, log)
            .await
            .map_err(|e| format!("image push failed: {e}"))?;
        if digest.is_empty() {
            digest = pushed;
        }
    }
    Ok((first, digest))
}

/// Logs and reports a failed system step (clone, set-up).
async fn fail_step(
    ctx: &Context,
    sink: &LogSink,
    lease: &Lease,
    position: i32,
    error: String,
) -> End {
    sink.line(position, &error);
    sink.flush().await;
    if !step(ctx, lease, position, "failed", None, Some(error.clone())).await {
        return End::Abandoned;
    }
    End::Failed(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_tags_become_docker_tags() {
        assert_eq!(docker_tag("4f1c2a9b3d5e").as_deref(), Some("4f1c2a9b3d5e"));
        assert_eq!(docker_tag("release-1.2").as_deref(), Some("release-1.2"));
        assert_eq!(docker_tag("feat/x@y").as_deref(), Some("feat-x-y"));
        assert_eq!(docker_tag("-.x").as_deref(), Some("x"));
        assert_eq!(docker_tag(""), None);
        assert_eq!(docker_tag(&"a".repeat(200)).map(|t| t.len()), Some(128));
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn credentials_stay_out_of_the_log() {
        assert_eq!(redact("https://u:p@host/x.git"), "https://host/x.git");
        assert_eq!(redact("file:///srv/x.git"), "file:///srv/x.git");
    }
}
