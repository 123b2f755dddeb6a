//! Deploys of a task's image to its environments, in promotion order, by
//! the runner that holds the task: the orchestrator decides when an
//! environment is free and records every change; this module waits for the
//! environment, runs the target's driver, probes its health, watches it,
//! and rolls back by itself when a deploy goes wrong (`rollback: auto`).
//!
//! A driver is a file: [`container`] (one container, the previous one kept
//! stopped for a quick rollback), [`compose`] (a service of a compose
//! project) and [`routed`] (an environment behind the edge proxy, whose
//! candidate starts beside the running version); [`health`] is the probing
//! they share.

mod compose;
mod container;
mod health;
mod monitor;
mod routed;

pub use monitor::keep_probing;
pub use routed::keep_routes;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use domain::image::ImageRef;
use domain::workflow::{DeploySpec, RollbackMode, Target, format_duration};
use tokio::sync::watch;

use crate::client::{Lease, Start, Version};
use crate::context::Context;
use crate::docker::{Docker, ImageRemoval};
use crate::lock::{FileLock, Kind};
use crate::process::Stop;
use crate::report::Steps;
use crate::ship::LogSink;

/// Why a chain of deploys stops before its end.
#[derive(Debug)]
pub enum Halt {
    /// A deploy failed: the task fails with this error.
    Failed(String),
    Cancelled,
    /// The lease is gone or the runner stops: say nothing more.
    Abandoned,
}

/// Why a deploy failed, which event tells of it, and what is left to do.
struct Failure {
    alert: &'static str,
    error: String,
    after: After,
}

/// What a failed deploy leaves to do.
enum After {
    /// The environment runs the failed version, or nothing: the driver's
    /// rollback puts the previous one back (`rollback: auto`).
    RollBack,
    /// The running version never stopped serving (a routed candidate failed
    /// before the switch): nothing to roll back.
    Kept,
    /// A routed deploy switched the traffic back to `to` (`None`: there was
    /// no earlier version, the route was withdrawn), with how that went.
    SwitchedBack {
        to: Option<i64>,
        result: Result<(), String>,
    },
}

impl Failure {
    fn deploy(error: String) -> Self {
        Self {
            alert: "deploy_failed",
            error,
            after: After::RollBack,
        }
    }

    fn health(error: String) -> Self {
        Self {
            alert: "health_check_failed",
            error,
            after: After::RollBack,
        }
    }

    /// The failure of a routed candidate before the switch.
    fn kept(self) -> Self {
        Self {
            after: After::Kept,
            ..self
        }
    }
}

/// How one deploy went, when it did not fail.
enum Deployed {
    /// The new version is healthy and recorded as current.
    Healthy,
    /// A newer version was already deployed: nothing to do.
    Outdated,
}

/// What the deploys need from the task.
pub struct Deploys<'a> {
    /// The runner's client, Docker Engine and settings.
    pub ctx: &'a Context,
    /// The task's lease, which every deploy report presents.
    pub lease: &'a Lease,
    /// The task's log.
    pub sink: &'a LogSink,
    /// The branch built, for each environment's `branches` filter.
    pub branch: Option<&'a str>,
    /// The secrets deploy targets name (`${{ secrets.NAME }}`).
    pub secrets: &'a HashMap<String, String>,
    /// The workflow's name, put on every container it deploys.
    pub workflow: &'a str,
    /// The registry login, for pulling an image this engine does not have
    /// (a deploy-only task on another runner than the build's).
    pub registry: Option<(&'a str, &'a str)>,
    /// A cancel or a lost lease, which stops the waiting and the chain.
    pub stop: watch::Receiver<Stop>,
    /// The checkout, for compose files.
    pub workspace: &'a Path,
}

impl Deploys<'_> {
    /// Deploys `image` (`ref@digest`) to the environment of `spec`, the next
    /// of the chain, as the step at `position`. `waiting` says that an
    /// earlier environment waits for approval, and is set when this one does.
    pub async fn next(
        &self,
        spec: &DeploySpec,
        image: &str,
        position: i32,
        waiting: &mut bool,
    ) -> Result<(), Halt> {
        let env = spec.environment.as_str();
        if *waiting {
            return self
                .skip(
                    position,
                    "skipped: an earlier environment waits for approval",
                )
                .await;
        }
        if !spec.allows_branch(self.branch) {
            let why = format!("skipped: this branch does not deploy to {env}");
            return self.skip(position, &why).await;
        }
        let created = self
            .ctx
            .client
            .clone()
            .create_deployment(self.lease, env, image, spec.auto)
            .await;
        let id = match created {
            Ok(id) => id,
            Err(e) if e.is_transient() => {
                return Err(Halt::Failed(format!(
                    "cannot record the deploy to {env}: {e}"
                )));
            }
            Err(_) => return Err(Halt::Abandoned),
        };
        if !spec.auto {
            let msg = format!(
                "{env} waits for approval: POST /api/tasks/{}/deploy {{\"environment\": \"{env}\"}}",
                self.lease.task_id
            );
            *waiting = true;
            return self.skip(position, &msg).await;
        }
        self.existing(spec, id, image, position).await
    }

    /// Carries out the deployment `id` as the step at `position`: one of the
    /// chain, or the one of a deploy-only task (an approval, a re-deploy, a
    /// manual rollback).
    pub async fn existing(
        &self,
        spec: &DeploySpec,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(), Halt> {
        self.step(position, "running").await?;
        match self.deploy(spec, id, image, position).await {
            // Skipped as outdated, the step still ran (it waited for the
            // environment) and had nothing to do; the deployment says skipped.
            Ok(Deployed::Healthy | Deployed::Outdated) => self.step(position, "success").await,
            Err(Halt::Failed(error)) => {
                if self.steps().fail(position, &error).await {
                    Err(Halt::Failed(error))
                } else {
                    Err(Halt::Abandoned)
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Where the step reports and log lines go.
    fn steps(&self) -> Steps<'_> {
        Steps {
            ctx: self.ctx,
            lease: self.lease,
            sink: self.sink,
        }
    }

    /// Reports the step at `position` running or done.
    async fn step(&self, position: i32, status: &'static str) -> Result<(), Halt> {
        let code = (status == "success").then_some(0);
        if self.steps().report(position, status, code, None).await {
            Ok(())
        } else {
            Err(Halt::Abandoned)
        }
    }

    async fn skip(&self, position: i32, why: &str) -> Result<(), Halt> {
        if self.steps().skip(position, why).await {
            Ok(())
        } else {
            Err(Halt::Abandoned)
        }
    }

    async fn advance(
        &self,
        id: i64,
        event: &str,
        error: Option<String>,
        alert: Option<&str>,
    ) -> bool {
        self.ctx
            .client
            .clone()
            .advance_deployment(self.lease, id, event, error, alert)
            .await
            .is_ok()
    }

    /// Waits until the orchestrator lets the deployment start; returns the
    /// environment's current version, or how the wait ended otherwise.
    async fn wait_for_environment(
        &self,
        env: &str,
        id: i64,
        position: i32,
    ) -> Result<Option<Version>, Result<Deployed, Halt>> {
        let mut said_waiting = false;
        loop {
            let answer = self
                .ctx
                .client
                .clone()
                .start_deployment(self.lease, id, &self.ctx.host)
                .await;
            match answer {
                Ok(Start::Started { previous }) => return Ok(previous),
                Ok(Start::Skipped) => {
                    self.sink
                        .line(position, "skipped: a newer version is already deployed");
                    self.sink.flush().await;
                    return Err(Ok(Deployed::Outdated));
                }
                Ok(Start::Busy) => {
                    if !said_waiting {
                        self.sink.line(
                            position,
                            &format!("waiting for the deploy running on {env} to end"),
                        );
                        said_waiting = true;
                    }
                }
                Err(e) if e.is_transient() => {}
                Err(_) => return Err(Err(Halt::Abandoned)),
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            match *self.stop.borrow() {
                Stop::Abort => return Err(Err(Halt::Abandoned)),
                Stop::Cancel => return Err(Err(Halt::Cancelled)),
                Stop::No => {}
            }
        }
    }

    /// One environment: wait for it, deploy, verify, roll back on failure.
    async fn deploy(
        &self,
        spec: &DeploySpec,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<Deployed, Halt> {
        let env = spec.environment.as_str();
        let previous = match self.wait_for_environment(env, id, position).await {
            Ok(previous) => previous,
            Err(ended) => return ended,
        };
        let Some(docker) = &self.ctx.docker else {
            let error = "this runner has no Docker Engine".to_owned();
            self.advance(id, "fail", Some(error.clone()), Some("deploy_failed"))
                .await;
            return Err(Halt::Failed(format!("deploy to {env} failed: {error}")));
        };
        self.sink.line(
            position,
            &format!("deploying {image} to {env} (deployment {id})"),
        );
        let attempt = async {
            if let Some((side, route)) = routed::routed(spec) {
                return self
                    .routed_deploy(
                        docker,
                        spec,
                        side,
                        route,
                        id,
                        image,
                        previous.as_ref(),
                        position,
                    )
                    .await;
            }
            match &spec.target {
                Target::Container(t) => {
                    self.container_deploy(docker, spec, t, id, image, position)
                        .await
                }
                Target::Compose(t) => {
                    self.compose_deploy(docker, spec, t, id, image, position)
                        .await
                }
            }
        };
        let failure = match tokio::time::timeout(spec.timeout, attempt).await {
            Err(_) => {
                // Past its budget: stopped and left for a person, no rollback
                // (a routed environment goes back to the version it ran).
                match (&spec.target, routed::routed(spec)) {
                    (_, Some((_, route))) => {
                        self.routed_abandon(docker, spec, route, id, previous.as_ref())
                            .await;
                    }
                    (Target::Container(t), None) => self.container_stop(docker, t).await,
                    (Target::Compose(t), None) => self.compose_stop(t).await,
                }
                let error = format!(
                    "deploy ran past its timeout of {}",
                    format_duration(spec.timeout)
                );
                self.advance(id, "time_out", Some(error.clone()), None)
                    .await;
                return Err(Halt::Failed(format!("deploy to {env} timed out: {error}")));
            }
            Ok(Ok(())) => {
                if !self.advance(id, "succeed", None, None).await {
                    return Err(Halt::Abandoned);
                }
                self.sink.line(position, &format!("{env} is healthy"));
                self.prune(docker, image, position).await;
                self.sink.flush().await;
                return Ok(Deployed::Healthy);
            }
            Ok(Err(failure)) => failure,
        };
        self.sink.line(position, &failure.error);
        if !self
            .advance(id, "fail", Some(failure.error.clone()), Some(failure.alert))
            .await
        {
            return Err(Halt::Abandoned);
        }
        let reason = failure.alert;
        match failure.after {
            After::Kept => {
                self.sink.line(
                    position,
                    "nothing to roll back: the running version kept serving",
                );
            }
            After::SwitchedBack {
                to: Some(to),
                result,
            } => {
                self.rolled_back(id, to, reason, result, position).await;
            }
            After::SwitchedBack { to: None, .. } => {
                self.no_previous(id, reason, position).await;
            }
            After::RollBack => {
                self.roll_back(docker, spec, id, previous, reason, position)
                    .await
            }
        }
        self.sink.flush().await;
        Err(Halt::Failed(format!(
            "deploy to {env} failed: {}",
            failure.error
        )))
    }

    /// The driver's rollback of a failed deploy, or none (`rollback: manual`).
    async fn roll_back(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        failed: i64,
        previous: Option<Version>,
        reason: &'static str,
        position: i32,
    ) {
        if spec.rollback == RollbackMode::Auto {
            match &spec.target {
                Target::Container(t) => {
                    self.container_roll_back(docker, spec, t, failed, previous, reason, position)
                        .await;
                }
                Target::Compose(t) => {
                    self.compose_roll_back(docker, spec, t, failed, previous, reason, position)
                        .await;
                }
            }
        } else {
            self.sink.line(
                position,
                "rollback: manual; the environment is left as it is",
            );
        }
    }

    /// Removes this repository's local images beyond the newest
    /// `SLIPWAY_KEEP_IMAGES`; an image a container still uses (the running
    /// or the parked version) stays.
    async fn prune(&self, docker: &Docker, image: &str, position: i32) {
        let Ok(repository) = ImageRef::parse(image).map(|i| i.repository()) else {
            return;
        };
        // Never while one of its images builds, which may be reusing the
        // layers of those that would go: they go after a later deploy.
        let Ok(Some(_pruning)) =
            FileLock::try_now(&self.ctx.image_lock(&repository), Kind::Exclusive)
        else {
            return;
        };
        let Ok(images) = docker.images_of(&repository).await else {
            return;
        };
        let mut removed = 0;
        for references in images.iter().skip(self.ctx.keep_images.max(1)) {
            for reference in references {
                if matches!(
                    docker.remove_image(reference).await,
                    Ok(ImageRemoval::Removed)
                ) {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.sink.line(
                position,
                &format!("pruned {removed} old image reference(s) of {repository}"),
            );
        }
    }

    /// The version a rollback goes back to, announced in the log; `None`
    /// when there is none, which is recorded as a rollback that could not
    /// happen.
    async fn rolling_back_to(
        &self,
        previous: Option<Version>,
        failed: i64,
        reason: &str,
        position: i32,
    ) -> Option<Version> {
        let Some(previous) = previous else {
            self.no_previous(failed, reason, position).await;
            return None;
        };
        self.sink.line(
            position,
            &format!(
                "rolling back to deployment {} ({})",
                previous.id, previous.image
            ),
        );
        Some(previous)
    }

    /// Records a rollback that could not happen: nothing to go back to.
    async fn no_previous(&self, failed: i64, reason: &str, position: i32) {
        self.sink.line(
            position,
            "rollback: no previous version; the environment is left stopped",
        );
        let error = Some("no previous version".to_owned());
        let _ = self
            .ctx
            .client
            .clone()
            .record_rollback(self.lease, failed, None, reason, false, error)
            .await;
    }

    /// Logs and records how a rollback to `to` went.
    async fn rolled_back(
        &self,
        failed: i64,
        to: i64,
        reason: &str,
        result: Result<(), String>,
        position: i32,
    ) {
        let (succeeded, error) = match result {
            Ok(()) => {
                self.sink
                    .line(position, "rolled back: the previous version is healthy");
                (true, None)
            }
            Err(e) => {
                self.sink.line(position, &format!("rollback failed: {e}"));
                (false, Some(e))
            }
        };
        let _ = self
            .ctx
            .client
            .clone()
            .record_rollback(self.lease, failed, Some(to), reason, succeeded, error)
            .await;
    }
}
