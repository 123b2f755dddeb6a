//! The walk through a claimed task's plan ([`domain::plan`]): each step in
//! turn, the clone (with the workflow's caches restored), the workflow's
//! steps, the image, the deploys, with what earlier steps left for later
//! ones (the commit, the pushed image, an environment waiting for
//! approval), and the caches saved once the task succeeded. The first
//! failure ends the walk; the orchestrator marks the steps never reached as
//! skipped.
//!
//! A pull request task walks the plan of a build, but its image is built
//! without being pushed and its deploys are skipped: a pull request never
//! changes a registry or an environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use domain::image::Digest;
use domain::mask::{Masker, MaskingStream, redact_url};
use domain::plan::{Plan, Step, Trigger};
use domain::workflow::{self, EventKind, Workflow, format_duration};
use tokio::sync::watch;

use super::env::{Place, base_env};
use super::image::{self, Output};
use super::{End, stopped};
use crate::cache;
use crate::client::{Claim, Lease};
use crate::context::Context;
use crate::deploy::{Deploys, Halt};
use crate::docker::StepSpec;
use crate::git;
use crate::process::{self, Ending, Script, Stop};
use crate::report::{Steps, persist};
use crate::ship::{LogSink, StepReport};

/// Runs the task's plan to its end.
pub(super) async fn run(
    ctx: &Context,
    claim: &Claim,
    sink: &LogSink,
    workspace: &Path,
    stop: watch::Receiver<Stop>,
) -> End {
    let spec = match workflow::parse_stored(&claim.definition) {
        Ok(spec) => spec,
        Err(e) => return End::Failed(format!("invalid workflow definition: {e}")),
    };
    let Some(trigger) = Trigger::parse(&claim.trigger) else {
        return End::Failed(format!("unknown trigger {:?}", claim.trigger));
    };
    let environment = claim.deployment.as_ref().map(|d| d.environment.as_str());
    let plan = Plan::for_task(&spec, trigger, environment);
    let masker = masker(claim);
    // Deploys alone (a rollback, an approval) build nothing: no caches.
    let builds = plan.steps().iter().any(|p| matches!(p.step, Step::Run(_)));
    let mut walk = Walk {
        ctx,
        claim,
        lease: &claim.lease,
        spec: &spec,
        trigger,
        event: trigger.event(claim.tag.is_some()),
        workspace,
        sink,
        masker: &masker,
        stop,
        deadline: Instant::now(),
        commit: String::new(),
        image: None,
        waiting: false,
        clone_position: None,
        builds,
        caches: Vec::new(),
        cache_task: None,
    };
    let mut ended = Ok(());
    for planned in plan.steps() {
        let position = planned.position;
        let deploy = matches!(planned.step, Step::Deploy(_));
        let step = match &planned.step {
            Step::Clone => walk.clone_repo(position).await,
            Step::Run(index) => walk.user_step(*index, position).await,
            Step::Image => walk.image(position).await,
            Step::Deploy(env) => walk.deploy(env, position).await,
        };
        if let Err(end) = step {
            ended = Err(Halted { end, deploy });
            break;
        }
    }
    let stop = *walk.stop.borrow();
    let end = settle(ended, stop);
    if end == End::Success {
        walk.save_caches().await;
    }
    end
}

/// The end a step brought to the walk before the plan ran out.
#[derive(Debug)]
struct Halted {
    end: End,
    /// The step was a deploy, which a cancel does not interrupt.
    deploy: bool,
}

/// How the walk ends: `ended` is the end a step brought, or `Ok` when the
/// plan ran out. A cancel stops a build step at once, which then ends the
/// task `cancelled` itself; a deploy that has started is not interrupted
/// (forges.md, "Cancel in progress"): it runs to its end, health check and
/// rollback included, and the task then ends `cancelled`, as it does when
/// the cancel comes after the last step. The steps never reached are
/// skipped by the orchestrator.
fn settle(ended: Result<(), Halted>, stop: Stop) -> End {
    let cancelled = stop == Stop::Cancel;
    match ended {
        Ok(()) if cancelled => End::Cancelled,
        Ok(()) => End::Success,
        Err(halted) => match halted.end {
            End::Abandoned => End::Abandoned,
            _ if halted.deploy && cancelled => End::Cancelled,
            end => end,
        },
    }
}

/// One task's walk, and what its steps leave for the next ones.
struct Walk<'a> {
    ctx: &'a Context,
    claim: &'a Claim,
    lease: &'a Lease,
    spec: &'a Workflow,
    trigger: Trigger,
    /// What `when.event` and `SLIPWAY_EVENT` see for the task.
    event: EventKind,
    workspace: &'a Path,
    sink: &'a LogSink,
    masker: &'a Masker,
    stop: watch::Receiver<Stop>,
    /// When the task's budget (`timeout`) runs out; it starts with the clone.
    deadline: Instant,
    /// The commit checked out, once the clone is done.
    commit: String,
    /// `repository@sha256:...` to deploy, once pushed or found.
    image: Option<String>,
    /// An earlier environment waits for approval: later ones are skipped.
    waiting: bool,
    /// Where the clone step's log goes, once it ran: the caches' lines.
    clone_position: Option<i32>,
    /// The plan runs the workflow's steps, which the caches are for.
    builds: bool,
    /// The workflow's caches as restored, to save after a success.
    caches: Vec<cache::Planned>,
    /// What the caches are found and saved by, once the clone is done.
    cache_task: Option<cache::Task>,
}

/// What a step leaves: go on, or the task's end.
type Next = Result<(), End>;

impl Walk<'_> {
    /// Where the step reports and log lines go.
    fn steps(&self) -> Steps<'_> {
        Steps {
            ctx: self.ctx,
            lease: self.lease,
            sink: self.sink,
        }
    }

    /// Reports a step's status; the task is abandoned when the lease is gone.
    async fn reported(&self, position: i32, status: &'static str, code: Option<i32>) -> Next {
        if self.steps().report(position, status, code, None).await {
            Ok(())
        } else {
            Err(End::Abandoned)
        }
    }

    /// Queues a step's change behind its output, with the time it
    /// happened, and goes on at once; the task is abandoned when the lease
    /// is gone. What is queued is stored before any other report.
    fn queue(
        &self,
        position: i32,
        status: &'static str,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Next {
        let report = StepReport {
            position,
            status,
            exit_code,
            error,
            at: SystemTime::now(),
        };
        if self.sink.step(report) {
            Ok(())
        } else {
            Err(End::Abandoned)
        }
    }

    /// Logs and reports a failed step, which ends the task.
    async fn fail(&self, position: i32, error: String) -> Next {
        if self.steps().fail(position, &error).await {
            Err(End::Failed(error))
        } else {
            Err(End::Abandoned)
        }
    }

    /// Logs and reports a step skipped for `why`.
    async fn skip(&self, position: i32, why: &str) -> Next {
        if self.steps().skip(position, why).await {
            Ok(())
        } else {
            Err(End::Abandoned)
        }
    }

    /// Ends the walk before the next step when a stop was asked for.
    fn check_stop(&self) -> Next {
        match *self.stop.borrow() {
            Stop::Abort => Err(End::Abandoned),
            Stop::Cancel => Err(End::Cancelled),
            Stop::No => Ok(()),
        }
    }

    /// Ends a step that a cancel stopped while it ran.
    async fn cancelled(&self, position: i32) -> Next {
        self.sink.line(position, "cancelled");
        self.sink.flush().await;
        self.steps().report(position, "cancelled", None, None).await;
        Err(End::Cancelled)
    }

    /// An error text as it may be shown: the repository URL without
    /// credentials, secrets masked.
    fn scrub(&self, text: &str) -> String {
        let repo = &self.claim.repo;
        let text = text.replace(repo.as_str(), &redact_url(repo));
        String::from_utf8_lossy(&self.masker.mask(text.as_bytes())).into_owned()
    }

    /// `clone`: the task's commit, checked out into a fresh workspace from
    /// the host's mirror of the repository, then the caches restored. The
    /// task's budget starts here.
    async fn clone_repo(&mut self, position: i32) -> Next {
        self.queue(position, "running", None, None)?;
        let c = self.claim;
        if !c.withheld_secrets.is_empty() {
            self.sink.line(
                position,
                &format!(
                    "secrets are not available to pull requests from forks: {}",
                    c.withheld_secrets.join(", ")
                ),
            );
        }
        let git_ref = clone_ref(c);
        self.sink.line(
            position,
            &format!("cloning {} ({git_ref})", redact_url(&c.repo)),
        );
        if let Some(parent) = self.workspace.parent()
            && let Err(e) = tokio::fs::create_dir_all(parent).await
        {
            let e = format!("cannot create the workspace: {e}");
            return self.fail(position, e).await;
        }
        let _ = tokio::fs::remove_dir_all(self.workspace).await;
        self.deadline = Instant::now()
            .checked_add(self.spec.timeout)
            .unwrap_or_else(|| Instant::now() + workflow::MAX_DURATION);
        let interrupt = Arc::new(AtomicBool::new(false));
        let cloning = {
            let (mirrors, url, credentials, dir, r, commit, flag) = (
                self.ctx.mirrors.clone(),
                c.repo.clone(),
                c.clone_credentials.clone(),
                self.workspace.to_path_buf(),
                git_ref.clone(),
                c.commit.clone(),
                interrupt.clone(),
            );
            let (sink, masker, redacted) = (
                self.sink.clone(),
                self.masker.clone(),
                redact_url(&c.repo).into_owned(),
            );
            tokio::task::spawn_blocking(move || {
                let source = git::Source {
                    url: &url,
                    credentials: credentials.as_ref(),
                    git_ref: &r,
                    commit: commit.as_deref(),
                };
                // Notes may quote the URL, or an error with the password.
                let mut note = |text: &str| {
                    let text = text.replace(url.as_str(), &redacted);
                    sink.write(position, masker.mask(format!("{text}\n").as_bytes()));
                };
                mirrors.checkout(&source, &dir, &flag, &mut note)
            })
        };
        let cloned = tokio::select! {
            joined = cloning => Some(joined),
            () = tokio::time::sleep_until(self.deadline.into()) => None,
            // The stop itself is read below.
            () = stopped(self.stop.clone()) => None,
        };
        // Whatever ended the wait, a fetch still going must stop.
        interrupt.store(true, Ordering::Relaxed);
        let stop_now = *self.stop.borrow();
        let checkout = match (stop_now, cloned) {
            (Stop::Abort, _) => return Err(End::Abandoned),
            (Stop::Cancel, _) => return self.cancelled(position).await,
            (Stop::No, None) => {
                let e = format!(
                    "task timed out after {} while cloning",
                    format_duration(self.spec.timeout)
                );
                return self.fail(position, e).await;
            }
            (Stop::No, Some(Ok(Ok(checkout)))) => checkout,
            (Stop::No, Some(Ok(Err(e)))) => {
                let e = self.scrub(&format!("clone failed: {e}"));
                return self.fail(position, e).await;
            }
            (Stop::No, Some(Err(e))) => {
                return self.fail(position, format!("clone failed: {e}")).await;
            }
        };
        self.commit = checkout.sha.clone();
        // Always: the commit's time (and a manual run's message and author)
        // comes from the clone. Queued, as the step's changes are: stored
        // before any later report, and before the task's end.
        let default_branch = checkout.default_branch.clone();
        if !self.sink.commit(checkout) {
            return Err(End::Abandoned);
        }
        self.sink
            .line(position, &format!("checked out {}", self.commit));
        self.clone_position = Some(position);
        let task_ref = match &c.branch {
            Some(branch) => format!("refs/heads/{branch}"),
            None => clone_ref(c),
        };
        self.cache_task = Some(cache::Task {
            workflow: c.workflow.clone(),
            branch: c.branch.clone(),
            task_ref,
            default_branch,
        });
        self.restore_caches(position).await?;
        self.queue(position, "success", Some(0), None)
    }

    /// Restores the workflow's caches into the fresh checkout, saying in
    /// the clone step's log which (key, size, time) or that none was.
    async fn restore_caches(&mut self, position: i32) -> Next {
        let Some(task) = self.cache_task.clone().filter(|_| self.builds) else {
            return Ok(());
        };
        for spec in &self.spec.cache {
            let interrupt = Arc::new(AtomicBool::new(false));
            let restoring = self
                .ctx
                .caches
                .restore(&task, spec, self.workspace, interrupt.clone());
            tokio::pin!(restoring);
            let restored = tokio::select! {
                restored = &mut restoring => Some(restored),
                () = stopped(self.stop.clone()) => None,
            };
            let Some((planned, lines)) = restored else {
                interrupt.store(true, Ordering::Relaxed);
                // Done with the workspace before the task goes on to end.
                let _ = restoring.await;
                let stop_now = *self.stop.borrow();
                return match stop_now {
                    Stop::Cancel => self.cancelled(position).await,
                    _ => Err(End::Abandoned),
                };
            };
            for line in lines {
                self.sink.line(position, &self.scrub(&line));
            }
            self.caches.push(planned);
        }
        Ok(())
    }

    /// After a success, saves the caches whose key was not found as it is;
    /// a pull request saves none. Each save is a line in the clone step's
    /// log; none fails the task.
    async fn save_caches(&mut self) {
        let (Some(position), Some(task)) = (self.clone_position, self.cache_task.clone()) else {
            return;
        };
        let unsaved: Vec<cache::Planned> =
            self.caches.iter().filter(|p| !p.exact).cloned().collect();
        if unsaved.is_empty() {
            return;
        }
        if self.trigger == Trigger::PullRequest {
            self.sink
                .line(position, "caches are not saved for pull requests");
            return;
        }
        for planned in &unsaved {
            let line = self.ctx.caches.save(planned, self.workspace, &task).await;
            self.sink.line(position, &self.scrub(&line));
        }
    }

    /// One of the workflow's steps, on the host or in its container.
    async fn user_step(&mut self, index: usize, position: i32) -> Next {
        self.check_stop()?;
        let Some(s) = self.spec.steps.get(index) else {
            return Err(End::Failed(format!("the workflow has no step {index}")));
        };
        let c = self.claim;
        if let Some(when) = &s.when
            && !when.allows(c.branch.as_deref(), self.event)
        {
            return self
                .skip(position, "skipped: its `when` does not match this task")
                .await;
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let task_timeout = || {
            format!(
                "task timed out after {}",
                format_duration(self.spec.timeout)
            )
        };
        if remaining.is_zero() {
            return Err(End::Failed(task_timeout()));
        }
        let (timeout, timeout_msg) = match s.timeout {
            Some(t) if t <= remaining => (
                t,
                format!("step {} timed out after {}", s.name, format_duration(t)),
            ),
            _ => (remaining, task_timeout()),
        };
        self.queue(position, "running", None, None)?;
        let place = match s.image {
            Some(_) => Place::Container,
            None => Place::Host,
        };
        let mut step_env: BTreeMap<String, String> = base_env(
            c,
            self.spec,
            self.event,
            &self.commit,
            self.workspace,
            place,
        );
        step_env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        step_env.extend(c.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        let step_env: Vec<(String, String)> = step_env.into_iter().collect();
        let mut masking = MaskingStream::new(self.masker.clone());
        let sink = self.sink;
        let output = StepOutput {
            sink,
            position,
            masking: &mut masking,
        };
        let ending = match (&s.image, &self.ctx.docker) {
            (None, _) => {
                let script = Script {
                    script: &s.run,
                    cwd: self.workspace,
                    env: &step_env,
                    timeout,
                    grace: self.ctx.grace,
                };
                process::run(script, self.stop.clone(), output).await
            }
            (Some(image), Some(docker)) => {
                let labels = vec![
                    ("slipway.workflow".to_owned(), c.workflow.clone()),
                    ("slipway.task".to_owned(), self.lease.task_id.to_string()),
                ];
                let container = StepSpec {
                    image,
                    script: &s.run,
                    workspace: self.workspace,
                    env: &step_env,
                    labels: &labels,
                    name: None,
                    user: None,
                    timeout,
                    grace: self.ctx.grace,
                };
                docker.run_step(container, self.stop.clone(), output).await
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
            Ending::Stopped(Stop::Cancel) => return self.cancelled(position).await,
            Ending::Stopped(_) => return Err(End::Abandoned),
        };
        if let Some(e) = &error {
            sink.line(position, e);
        }
        self.queue(position, status, exit_code, error.clone())?;
        match error {
            Some(_) if s.continue_on_error => {
                sink.line(position, "continuing: continue_on_error is set");
                Ok(())
            }
            Some(e) => Err(End::Failed(e)),
            None => Ok(()),
        }
    }

    /// `image`: the workflow's image, built and pushed; what the deploys use.
    /// A pull request's is built alone, so its Dockerfile is tested.
    async fn image(&mut self, position: i32) -> Next {
        self.check_stop()?;
        let Some(image) = &self.spec.image else {
            return Err(End::Failed("the workflow builds no image".to_owned()));
        };
        self.reported(position, "running", None).await?;
        let out = Output {
            sink: self.sink,
            masker: self.masker,
            position,
        };
        let (ctx, claim, workspace, commit) = (self.ctx, self.claim, self.workspace, &self.commit);
        let pull_request = self.trigger == Trigger::PullRequest;
        let building = async move {
            if pull_request {
                image::build_unpushed(ctx, claim, image, workspace, commit, out)
                    .await
                    .map(|()| None)
            } else {
                image::build_and_push(ctx, claim, image, workspace, commit, out)
                    .await
                    .map(Some)
            }
        };
        let built = tokio::select! {
            built = building => Some(built),
            () = stopped(self.stop.clone()) => None,
        };
        match built {
            Some(Ok(None)) => {
                self.sink
                    .line(position, "built; pull requests do not push images");
                self.sink.flush().await;
                self.reported(position, "success", Some(0)).await
            }
            Some(Ok(Some(pushed))) => {
                let (reference, digest) = (&pushed.reference, pushed.digest.as_str());
                self.sink
                    .line(position, &format!("pushed {reference}@{digest}"));
                self.image = Some(pushed.pinned.to_string());
                self.sink.flush().await;
                self.report_image(reference, digest).await?;
                self.reported(position, "success", Some(0)).await
            }
            Some(Err(e)) => {
                let e = self.scrub(&e);
                self.fail(position, e).await
            }
            None if *self.stop.borrow() == Stop::Cancel => self.cancelled(position).await,
            None => Err(End::Abandoned),
        }
    }

    /// Tells the orchestrator which image the task deploys.
    async fn report_image(&self, reference: &str, digest: &str) -> Next {
        let reported = persist(&self.ctx.client, |mut cl| {
            let (lease, reference, digest) =
                (self.lease.clone(), reference.to_owned(), digest.to_owned());
            async move { cl.report_image(&lease, &reference, &digest).await }
        })
        .await;
        reported.map_err(|_| End::Abandoned)
    }

    /// `deploy:<env>`: the deployment a deploy-only task carries out, or the
    /// next environment of the chain for the task's image.
    async fn deploy(&mut self, env: &str, position: i32) -> Next {
        if self.trigger == Trigger::PullRequest {
            self.check_stop()?;
            return self
                .skip(position, "skipped: pull requests do not deploy")
                .await;
        }
        let deploys = Deploys {
            ctx: self.ctx,
            lease: self.lease,
            sink: self.sink,
            branch: self.claim.branch.as_deref(),
            secrets: &self.claim.secrets,
            workflow: &self.claim.workflow,
            registry: image::credentials(self.claim),
            stop: self.stop.clone(),
            workspace: self.workspace,
        };
        let spec = self
            .spec
            .deploy
            .iter()
            .find(|d| d.environment.as_str() == env);
        if let Some(order) = &self.claim.deployment {
            let Some(spec) = spec else {
                let e = format!("the workflow has no environment {env}");
                return self.fail(position, e).await;
            };
            return deploys
                .existing(spec, order.id, &order.image, position)
                .await
                .map_err(End::from);
        }
        self.check_stop()?;
        if self.trigger == Trigger::WorkflowRun && self.image.is_none() {
            self.find_pushed(position).await?;
        }
        let Some(image) = &self.image else {
            return self
                .skip(position, "skipped: the workflow builds no image to deploy")
                .await;
        };
        let Some(spec) = spec else {
            let e = format!("the workflow has no environment {env}");
            return self.fail(position, e).await;
        };
        deploys
            .next(spec, image, position, &mut self.waiting)
            .await
            .map_err(End::from)
    }

    /// A `workflow_run` task deploys what external CI pushed for its commit,
    /// tagged with the short sha, without building.
    async fn find_pushed(&mut self, position: i32) -> Next {
        let Some(image) = &self.spec.image else {
            let e = "the workflow names no image to deploy".to_owned();
            return self.fail(position, e).await;
        };
        let Some(docker) = &self.ctx.docker else {
            let e = "this runner has no Docker Engine".to_owned();
            return self.fail(position, e).await;
        };
        let repository = match image::repository(self.ctx, image) {
            Ok(r) => r,
            Err(e) => return self.fail(position, e).await,
        };
        let commit = &self.commit;
        let reference = repository
            .tagged(commit.get(..12).unwrap_or(commit))
            .to_string();
        self.sink.line(
            position,
            &format!("deploying the image CI pushed: {reference}"),
        );
        let credentials = super::image::credentials(self.claim);
        let found = docker
            .digest_of(&reference, credentials)
            .await
            .map_err(|e| e.to_string())
            .and_then(|d| Digest::parse(&d).map_err(|e| e.to_string()));
        let digest = match found {
            Ok(d) => d,
            Err(e) => {
                return self
                    .fail(position, format!("no image to deploy: {e}"))
                    .await;
            }
        };
        self.report_image(&reference, digest.as_str()).await?;
        self.image = Some(repository.pinned(&digest).to_string());
        Ok(())
    }
}

/// A step's output on its way to the log: masked, then queued; read only
/// while the queue has room.
struct StepOutput<'a> {
    sink: &'a LogSink,
    position: i32,
    masking: &'a mut MaskingStream,
}

impl process::Output for StepOutput<'_> {
    fn write(&mut self, chunk: &[u8]) {
        self.sink.write(self.position, self.masking.push(chunk));
    }

    fn room(&self) -> impl Future<Output = ()> + Send {
        self.sink.room()
    }
}

impl From<Halt> for End {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::Failed(e) => End::Failed(e),
            Halt::Cancelled => End::Cancelled,
            Halt::Abandoned => End::Abandoned,
        }
    }
}

/// What the task's log must never show: its secrets, and the clone's
/// password should any output or error carry it.
fn masker(claim: &Claim) -> Masker {
    Masker::new(
        claim
            .secrets
            .values()
            .chain(claim.clone_credentials.as_ref().map(|c| &c.password)),
    )
}

/// The ref the clone fetches and checks: a pull request's own ref, which
/// has its head when no branch of the repository does (a fork's); else the
/// tag or branch pushed or run; else the remote's `HEAD`.
fn clone_ref(claim: &Claim) -> String {
    match (&claim.fetch_ref, &claim.tag, &claim.branch) {
        (Some(fetch_ref), _, _) => fetch_ref.clone(),
        (None, Some(tag), _) => format!("refs/tags/{tag}"),
        (None, None, Some(branch)) => format!("refs/heads/{branch}"),
        (None, None, None) => "HEAD".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn claim(branch: Option<&str>, tag: Option<&str>, fetch_ref: Option<&str>) -> Claim {
        Claim {
            lease: Lease {
                task_id: 1,
                token: "t".to_owned(),
            },
            lease_time: Duration::from_secs(30),
            definition: String::new(),
            workflow: "w".to_owned(),
            repo: "https://github.com/acme/w.git".to_owned(),
            trigger: "push".to_owned(),
            branch: branch.map(str::to_owned),
            tag: tag.map(str::to_owned),
            commit: None,
            secrets: HashMap::new(),
            registry: None,
            deployment: None,
            pull_request: None,
            fetch_ref: fetch_ref.map(str::to_owned),
            withheld_secrets: Vec::new(),
            clone_credentials: None,
            previous_image: None,
        }
    }

    #[test]
    fn the_clone_fetches_the_ref_that_has_the_commit() {
        let cases = [
            (Some("main"), None, None, "refs/heads/main"),
            (Some("main"), Some("v1"), None, "refs/tags/v1"),
            (None, None, None, "HEAD"),
            // A fork's branch is not the base repository's.
            (
                Some("someone:fix"),
                None,
                Some("refs/pull/7/head"),
                "refs/pull/7/head",
            ),
            (
                Some("fix"),
                None,
                Some("refs/merge-requests/7/head"),
                "refs/merge-requests/7/head",
            ),
        ];
        for (branch, tag, fetch_ref, want) in cases {
            assert_eq!(clone_ref(&claim(branch, tag, fetch_ref)), want);
        }
    }

    #[test]
    fn the_clone_password_is_masked_like_a_secret() {
        let mut c = claim(Some("main"), None, None);
        c.secrets
            .insert("API_KEY".to_owned(), "api-value".to_owned());
        c.clone_credentials = Some(crate::git::Credentials {
            username: "x-access-token".to_owned(),
            password: "ghs_token123".to_owned(),
        });
        let masked = masker(&c).mask(b"fetch https://x-access-token:ghs_token123@h/x api-value");
        assert_eq!(
            String::from_utf8_lossy(&masked),
            "fetch https://x-access-token:***@h/x ***"
        );
    }

    #[test]
    fn a_cancel_lets_a_started_deploy_end_then_cancels_the_task() {
        let failed = || End::Failed("deploy to dev failed: unhealthy".to_owned());
        let step_failed = || End::Failed("step t exited with status 1".to_owned());
        let deploy = |end| Err(Halted { end, deploy: true });
        let build = |end| Err(Halted { end, deploy: false });
        let cases = [
            (Ok(()), Stop::No, End::Success),
            // The cancel came during the last deploy, or after the last step.
            (Ok(()), Stop::Cancel, End::Cancelled),
            (Ok(()), Stop::Abort, End::Success),
            // A deploy failed (and rolled back) while a cancel waited.
            (deploy(failed()), Stop::Cancel, End::Cancelled),
            (deploy(failed()), Stop::No, failed()),
            (deploy(failed()), Stop::Abort, failed()),
            // A build step that failed on its own before the cancel reached it.
            (build(step_failed()), Stop::Cancel, step_failed()),
            (build(End::Cancelled), Stop::Cancel, End::Cancelled),
            // The next deploy, not started, ends the walk.
            (deploy(End::Cancelled), Stop::Cancel, End::Cancelled),
            (deploy(End::Abandoned), Stop::Cancel, End::Abandoned),
            (build(End::Abandoned), Stop::Abort, End::Abandoned),
        ];
        for (i, (ended, stop, want)) in cases.into_iter().enumerate() {
            assert_eq!(settle(ended, stop), want, "case {i}");
        }
    }
}
