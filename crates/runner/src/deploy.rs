//! Deploys of a task's image to its environments, in promotion order, by
//! the runner that holds the task: the orchestrator decides when an
//! environment is free and records every change; this module starts the new
//! container, probes its health, watches it, and rolls back by itself when
//! a deploy goes wrong (`rollback: auto`).
//!
//! The `container` driver keeps the previous container, stopped and renamed
//! `<name>.previous-<deployment id>`, so a rollback is a `docker start` of
//! it; `SLIPWAY_KEEP_CONTAINERS` stopped versions are kept per environment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::workflow::{
    ComposeTarget, ContainerTarget, DeploySpec, HealthCheck, RollbackMode, Target,
};
use tokio::sync::watch;

use crate::client::Lease;
use crate::docker::{Docker, ServiceSpec};
use crate::executor::{Context, human};
use crate::process::Stop;
use crate::ship::LogSink;

/// How long a stopped container gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a deploy chain ended, for the task.
pub enum Chain {
    /// Every environment that had to be deployed is healthy (or waits for
    /// approval, or was skipped).
    Done,
    /// A deploy failed: the task fails with this error.
    Failed(String),
    Cancelled,
    Abandoned,
}

/// Why a deploy failed, and which event tells of it.
struct Failure {
    alert: &'static str,
    error: String,
}

impl Failure {
    fn deploy(error: String) -> Self {
        Self {
            alert: "deploy_failed",
            error,
        }
    }

    fn health(error: String) -> Self {
        Self {
            alert: "health_check_failed",
            error,
        }
    }
}

/// What the chain needs from the task.
pub struct Deploys<'a> {
    pub ctx: &'a Context,
    pub lease: &'a Lease,
    pub sink: &'a LogSink,
    pub branch: Option<&'a str>,
    pub secrets: &'a HashMap<String, String>,
    pub workflow: &'a str,
    pub stop: watch::Receiver<Stop>,
    /// The checkout, for compose files; `None` for deploy-only tasks.
    pub workspace: Option<&'a std::path::Path>,
}

impl Deploys<'_> {
    /// Deploys `image` (`ref@digest`) to each environment in order; `first`
    /// is the step position of the first `deploy:` step.
    pub async fn run(&self, specs: &[DeploySpec], image: &str, first: i32) -> Chain {
        let mut waiting = false;
        for (i, spec) in specs.iter().enumerate() {
            let position = first + i32::try_from(i).unwrap_or(0);
            match *self.stop.borrow() {
                Stop::Abort => return Chain::Abandoned,
                Stop::Cancel => return Chain::Cancelled,
                Stop::No => {}
            }
            let env = spec.environment.as_str();
            if waiting || !spec.allows_branch(self.branch) {
                let why = if waiting {
                    "skipped: an earlier environment waits for approval".to_owned()
                } else {
                    format!("skipped: this branch does not deploy to {env}")
                };
                if !self.skip(position, &why).await {
                    return Chain::Abandoned;
                }
                continue;
            }
            let created = self
                .ctx
                .client
                .clone()
                .create_deployment(self.lease, env, image, spec.auto)
                .await;
            let deployment = match created {
                Ok(d) => d,
                Err(e) if e.is_transient() => {
                    return Chain::Failed(format!("cannot record the deploy to {env}: {e}"));
                }
                Err(_) => return Chain::Abandoned,
            };
            if !spec.auto {
                let msg = format!(
                    "{env} waits for approval: POST /api/tasks/{}/deploy {{\"environment\": \"{env}\"}}",
                    self.lease.task_id
                );
                if !self.skip(position, &msg).await {
                    return Chain::Abandoned;
                }
                waiting = true;
                continue;
            }
            if let Some(end) = self.one(spec, deployment.id, image, position).await {
                return end;
            }
        }
        Chain::Done
    }

    /// Carries out an existing deployment (a deploy-only task: an approval,
    /// a re-deploy, a manual rollback) as the step at `position`.
    pub async fn run_existing(
        &self,
        spec: &DeploySpec,
        id: i64,
        image: &str,
        position: i32,
    ) -> Chain {
        self.one(spec, id, image, position)
            .await
            .unwrap_or(Chain::Done)
    }

    /// One environment as one step; `Some` when the chain must stop.
    async fn one(&self, spec: &DeploySpec, id: i64, image: &str, position: i32) -> Option<Chain> {
        if !self.step(position, "running", None, None).await {
            return Some(Chain::Abandoned);
        }
        match self.deploy(spec, id, image, position).await {
            Ok(()) => {
                (!self.step(position, "success", Some(0), None).await).then_some(Chain::Abandoned)
            }
            Err(Chain::Failed(error)) => {
                self.sink.line(position, &error);
                self.sink.flush().await;
                if !self
                    .step(position, "failed", None, Some(error.clone()))
                    .await
                {
                    return Some(Chain::Abandoned);
                }
                Some(Chain::Failed(error))
            }
            // Skipped as outdated: the step ran (it waited for the
            // environment) and had nothing to do; the deployment says skipped.
            Err(Chain::Done) => {
                (!self.step(position, "success", Some(0), None).await).then_some(Chain::Abandoned)
            }
            Err(other) => Some(other),
        }
    }

    async fn step(
        &self,
        position: i32,
        status: &'static str,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> bool {
        self.ctx
            .client
            .clone()
            .update_step(self.lease, position, status, exit_code, error)
            .await
            .is_ok()
    }

    async fn skip(&self, position: i32, why: &str) -> bool {
        self.sink.line(position, why);
        self.sink.flush().await;
        self.step(position, "skipped", None, None).await
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

    /// One environment: wait for it, deploy, verify, roll back on failure.
    /// `Err(Chain::Done)` means skipped as outdated.
    async fn deploy(
        &self,
        spec: &DeploySpec,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(), Chain> {
        let env = spec.environment.as_str();
        let mut said_waiting = false;
        let previous = loop {
            let answer = self
                .ctx
                .client
                .clone()
                .start_deployment(self.lease, id)
                .await;
            match answer {
                Ok(a) if a.outcome == "started" => break a.previous,
                Ok(a) if a.outcome == "skipped" => {
                    self.sink
                        .line(position, "skipped: a newer version is already deployed");
                    self.sink.flush().await;
                    return Err(Chain::Done);
                }
                Ok(_) => {
                    if !said_waiting {
                        self.sink.line(
                            position,
                            &format!("waiting for the deploy running on {env} to end"),
                        );
                        said_waiting = true;
                    }
                }
                Err(e) if e.is_transient() => {}
                Err(_) => return Err(Chain::Abandoned),
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            match *self.stop.borrow() {
                Stop::Abort => return Err(Chain::Abandoned),
                Stop::Cancel => return Err(Chain::Cancelled),
                Stop::No => {}
            }
        };
        let Some(docker) = &self.ctx.docker else {
            let error = "this runner has no Docker Engine".to_owned();
            self.advance(id, "fail", Some(error.clone()), Some("deploy_failed"))
                .await;
            return Err(Chain::Failed(format!("deploy to {env} failed: {error}")));
        };
        self.sink.line(
            position,
            &format!("deploying {image} to {env} (deployment {id})"),
        );
        let outcome = match &spec.target {
            Target::Container(t) => {
                let attempt = self.container_deploy(docker, spec, t, id, image, position);
                tokio::time::timeout(spec.timeout, attempt).await
            }
            Target::Compose(t) => {
                let attempt = self.compose_deploy(docker, spec, t, id, image, position);
                tokio::time::timeout(spec.timeout, attempt).await
            }
        };
        let failure = match outcome {
            Err(_) => {
                // Past its budget: stopped and left for a person, no rollback.
                match &spec.target {
                    Target::Container(t) => {
                        let _ = docker.stop_container(&t.name, STOP_GRACE).await;
                    }
                    Target::Compose(t) => {
                        let _ = self.compose(t, &["stop"], None).await;
                    }
                }
                let error = format!("deploy ran past its timeout of {}", human(spec.timeout));
                self.advance(id, "time_out", Some(error.clone()), None)
                    .await;
                return Err(Chain::Failed(format!("deploy to {env} timed out: {error}")));
            }
            Ok(Ok(())) => {
                if !self.advance(id, "succeed", None, None).await {
                    return Err(Chain::Abandoned);
                }
                self.sink.line(position, &format!("{env} is healthy"));
                self.prune(docker, image, position).await;
                self.sink.flush().await;
                return Ok(());
            }
            Ok(Err(failure)) => failure,
        };
        self.sink.line(position, &failure.error);
        if !self
            .advance(id, "fail", Some(failure.error.clone()), Some(failure.alert))
            .await
        {
            return Err(Chain::Abandoned);
        }
        if spec.rollback == RollbackMode::Auto {
            match &spec.target {
                Target::Container(t) => {
                    self.roll_back(docker, spec, t, id, previous, failure.alert, position)
                        .await;
                }
                Target::Compose(t) => {
                    self.compose_roll_back(docker, spec, t, id, previous, failure.alert, position)
                        .await;
                }
            }
        } else {
            self.sink.line(
                position,
                "rollback: manual; the environment is left as it is",
            );
        }
        self.sink.flush().await;
        Err(Chain::Failed(format!(
            "deploy to {env} failed: {}",
            failure.error
        )))
    }

    /// Removes the stopped versions of this environment beyond the newest
    /// `SLIPWAY_KEEP_CONTAINERS - 1`, making room for the one about to be
    /// parked (at least one is always kept, for the rollback).
    async fn prune_parked(&self, docker: &Docker, target: &ContainerTarget) {
        let prefix = format!("{}.previous-", target.name);
        let Ok(all) = docker
            .list_containers(&[("slipway.workflow", self.workflow)])
            .await
        else {
            return;
        };
        let mut parked: Vec<(i64, String)> = all
            .into_iter()
            .filter_map(|c| {
                let name = c.name.trim_start_matches('/').to_owned();
                let id = name.strip_prefix(&prefix)?.parse::<i64>().ok()?;
                Some((id, name))
            })
            .collect();
        parked.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        let keep = self.ctx.keep_containers.max(1) - 1;
        // keep_containers stopped versions after parking one more.
        for (_, name) in parked.into_iter().skip(keep) {
            let _ = docker.remove_container(&name).await;
        }
    }

    /// Removes this repository's local images beyond the newest
    /// `SLIPWAY_KEEP_IMAGES`; an image a container still uses (the running
    /// or the parked version) stays.
    async fn prune(&self, docker: &Docker, image: &str, position: i32) {
        let repository = image.split('@').next().unwrap_or(image);
        let Ok(images) = docker.images_of(repository).await else {
            return;
        };
        let mut removed = 0;
        for references in images.iter().skip(self.ctx.keep_images.max(1)) {
            for reference in references {
                if matches!(
                    docker.remove_image(reference).await,
                    Ok(crate::docker::ImageRemoval::Removed)
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

    /// The `container` driver: park the old container, start the new one,
    /// probe, watch.
    async fn container_deploy(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ContainerTarget,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(), Failure> {
        if let Ok(Some(running)) = docker.container_state(&target.name).await {
            // Kept stopped under the name of its deployment, for a quick
            // rollback; older parked versions beyond the newest
            // SLIPWAY_KEEP_CONTAINERS are removed.
            let old_id = running
                .labels
                .get("slipway.deployment")
                .cloned()
                .unwrap_or_else(|| "0".to_owned());
            let parked = parked_name(&target.name, &old_id);
            let _ = docker.remove_container(&parked).await;
            self.prune_parked(docker, target).await;
            docker
                .rename_container(&target.name, &parked)
                .await
                .map_err(|e| {
                    Failure::deploy(format!("cannot set the running version aside: {e}"))
                })?;
            docker
                .stop_container(&parked, STOP_GRACE)
                .await
                .map_err(|e| Failure::deploy(format!("cannot stop the running version: {e}")))?;
            self.sink.line(
                position,
                &format!("stopped the running version (kept as {parked})"),
            );
        }
        let service = self.service(spec, target, id, image)?;
        docker
            .start_service(&service)
            .await
            .map_err(|e| Failure::deploy(format!("container would not start: {e}")))?;
        self.sink
            .line(position, &format!("started {}", target.name));
        if !self.advance(id, "verify", None, None).await {
            return Err(Failure::deploy("the deploy's lease was lost".to_owned()));
        }
        self.verify(docker, Some(&target.name), spec.health.as_ref(), position)
            .await
    }

    /// Runs the compose CLI of the host (`docker compose` or
    /// `docker-compose`) on the target's file in the workspace; returns its
    /// output, or the error with its last lines.
    async fn compose(
        &self,
        target: &ComposeTarget,
        args: &[&str],
        image: Option<&str>,
    ) -> Result<String, String> {
        let workspace = self
            .workspace
            .ok_or_else(|| "a compose deploy needs the repository's workspace".to_owned())?;
        let file = workspace.join(&target.file);
        let dir = file.parent().unwrap_or(workspace).to_path_buf();
        let mut files = vec![file.display().to_string()];
        let override_file = dir.join(".slipway-compose-override.yml");
        if override_file.is_file() {
            files.push(override_file.display().to_string());
        }
        let (program, mut full): (&str, Vec<String>) = if compose_plugin().await {
            ("docker", vec!["compose".to_owned()])
        } else {
            ("docker-compose", Vec::new())
        };
        full.extend(["-p".to_owned(), target.project.clone()]);
        for f in files {
            full.extend(["-f".to_owned(), f]);
        }
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&full)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null());
        if let Some(image) = image {
            cmd.env("SLIPWAY_IMAGE", image);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            let mut tail: Vec<&str> = text.lines().rev().take(5).collect();
            tail.reverse();
            Err(format!(
                "{program} {} failed: {}",
                args.join(" "),
                tail.join(" | ")
            ))
        }
    }

    /// Writes the override that puts `image` and the slipway labels on the
    /// target's service, in the compose file's own format version.
    fn compose_override(
        &self,
        target: &ComposeTarget,
        env: &str,
        id: i64,
        image: &str,
    ) -> Result<(), String> {
        let workspace = self
            .workspace
            .ok_or_else(|| "a compose deploy needs the repository's workspace".to_owned())?;
        let file = workspace.join(&target.file);
        let main = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", target.file))?;
        let version = main
            .lines()
            .find(|l| l.starts_with("version:"))
            .map(|l| format!("{l}\n"))
            .unwrap_or_default();
        let text = format!(
            "{version}services:\n  {service}:\n    image: \"{image}\"\n    labels:\n      slipway.workflow: \"{workflow}\"\n      slipway.environment: \"{env}\"\n      slipway.deployment: \"{id}\"\n",
            service = target.service,
            workflow = self.workflow,
        );
        let dir = file.parent().unwrap_or(workspace);
        std::fs::write(dir.join(".slipway-compose-override.yml"), text)
            .map_err(|e| format!("cannot write the compose override: {e}"))
    }

    /// The `compose` driver: `up -d` with the service's image replaced, then
    /// probe and watch.
    async fn compose_deploy(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ComposeTarget,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(), Failure> {
        self.compose_override(target, spec.environment.as_str(), id, image)
            .map_err(Failure::deploy)?;
        let output = self
            .compose(target, &["up", "-d", "--remove-orphans"], Some(image))
            .await
            .map_err(Failure::deploy)?;
        for line in output.lines() {
            self.sink.line(position, line);
        }
        if !self.advance(id, "verify", None, None).await {
            return Err(Failure::deploy("the deploy's lease was lost".to_owned()));
        }
        self.verify(docker, None, spec.health.as_ref(), position)
            .await
    }

    /// Compose rollback: `up -d` again with the previous digest.
    #[allow(clippy::too_many_arguments)]
    async fn compose_roll_back(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ComposeTarget,
        failed: i64,
        previous: Option<proto::Deployment>,
        reason: &str,
        position: i32,
    ) {
        let Some(previous) = previous else {
            let _ = self.compose(target, &["stop"], None).await;
            self.no_previous(failed, reason, position).await;
            return;
        };
        self.sink.line(
            position,
            &format!(
                "rolling back to deployment {} ({})",
                previous.id, previous.image
            ),
        );
        let env = spec.environment.as_str();
        let result = match self.compose_override(target, env, previous.id, &previous.image) {
            Err(e) => Err(e),
            Ok(()) => match self
                .compose(
                    target,
                    &["up", "-d", "--remove-orphans"],
                    Some(&previous.image),
                )
                .await
            {
                Err(e) => Err(e),
                Ok(_) => self
                    .verify(docker, None, spec.health.as_ref(), position)
                    .await
                    .map_err(|f| f.error),
            },
        };
        self.rolled_back(failed, previous.id, reason, result, position)
            .await;
    }

    fn service(
        &self,
        spec: &DeploySpec,
        target: &ContainerTarget,
        id: i64,
        image: &str,
    ) -> Result<ServiceSpec, Failure> {
        let mut env = Vec::with_capacity(target.env.len() + 1);
        for (k, v) in &target.env {
            env.push((
                k.clone(),
                domain::workflow::resolve_secrets(v, self.secrets).map_err(Failure::deploy)?,
            ));
        }
        env.push(("SLIPWAY_IMAGE".to_owned(), image.to_owned()));
        Ok(ServiceSpec {
            name: target.name.clone(),
            image: image.to_owned(),
            env,
            ports: target.ports.clone(),
            volumes: target.volumes.clone(),
            network: target.network.clone(),
            restart: target.restart.clone(),
            labels: vec![
                ("slipway.workflow".to_owned(), self.workflow.to_owned()),
                (
                    "slipway.environment".to_owned(),
                    spec.environment.to_string(),
                ),
                ("slipway.deployment".to_owned(), id.to_string()),
            ],
            ..ServiceSpec::default()
        })
    }

    /// Probes until healthy or `timeout`, then keeps probing for `watch`.
    /// A container that stops running fails at once.
    async fn verify(
        &self,
        docker: &Docker,
        name: Option<&str>,
        health: Option<&HealthCheck>,
        position: i32,
    ) -> Result<(), Failure> {
        let Some(health) = health else {
            return match name {
                Some(name) => running(docker, name).await,
                None => Ok(()),
            };
        };
        let client = reqwest::Client::builder()
            .timeout(health.interval.max(Duration::from_secs(1)))
            .build()
            .map_err(|e| Failure::deploy(format!("cannot probe health: {e}")))?;
        let started = Instant::now();
        let mut last: String;
        loop {
            if let Some(name) = name {
                running(docker, name).await?;
            }
            match probe(&client, &health.url).await {
                Ok(status) if status == health.expect_status => break,
                Ok(status) => last = format!("{status}"),
                Err(e) => last = e,
            }
            if started.elapsed() >= health.timeout {
                return Err(Failure::health(format!(
                    "health check failed: {last} after {}",
                    human(health.timeout)
                )));
            }
            tokio::time::sleep(health.interval).await;
        }
        self.sink.line(
            position,
            &format!("healthy: {} answered {}", health.url, health.expect_status),
        );
        if health.watch.is_zero() {
            return Ok(());
        }
        self.sink
            .line(position, &format!("watching for {}", human(health.watch)));
        let watched = Instant::now();
        while watched.elapsed() < health.watch {
            tokio::time::sleep(health.interval.min(health.watch)).await;
            if let Some(name) = name {
                running(docker, name).await?;
            }
            match probe(&client, &health.url).await {
                Ok(status) if status == health.expect_status => {}
                Ok(status) => {
                    return Err(Failure::health(format!(
                        "health check failed during watch: {status}"
                    )));
                }
                Err(e) => {
                    return Err(Failure::health(format!(
                        "health check failed during watch: {e}"
                    )));
                }
            }
        }
        Ok(())
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

    /// Puts the previous healthy version back: the parked container when
    /// there is one, else a new container from the previous digest.
    #[allow(clippy::too_many_arguments)]
    async fn roll_back(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ContainerTarget,
        failed: i64,
        previous: Option<proto::Deployment>,
        reason: &str,
        position: i32,
    ) {
        // The failed version gets no graceful drain: the previous one must
        // answer again as soon as possible.
        let _ = docker.remove_container(&target.name).await;
        let Some(previous) = previous else {
            self.no_previous(failed, reason, position).await;
            return;
        };
        self.sink.line(
            position,
            &format!(
                "rolling back to deployment {} ({})",
                previous.id, previous.image
            ),
        );
        let parked = parked_name(&target.name, &previous.id.to_string());
        let restored = match docker.container_state(&parked).await {
            Ok(Some(_)) => match docker.rename_container(&parked, &target.name).await {
                Ok(()) => docker
                    .start_container(&target.name)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            _ => match self.service(spec, target, previous.id, &previous.image) {
                Ok(service) => docker
                    .start_service(&service)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(f) => Err(f.error),
            },
        };
        let result = match restored {
            Ok(()) => self
                .verify(docker, Some(&target.name), spec.health.as_ref(), position)
                .await
                .map_err(|f| f.error),
            Err(e) => Err(format!("cannot start the previous version: {e}")),
        };
        self.rolled_back(failed, previous.id, reason, result, position)
            .await;
    }
}

/// The name a stopped version of `name` is kept under.
fn parked_name(name: &str, deployment: &str) -> String {
    format!("{name}.previous-{deployment}")
}

/// Whether the host's docker CLI has the compose plugin.
async fn compose_plugin() -> bool {
    tokio::process::Command::new("docker")
        .args(["compose", "version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Fails when the container is not running (it exited or vanished), with its
/// exit code and last lines.
async fn running(docker: &Docker, name: &str) -> Result<(), Failure> {
    match docker.container_state(name).await {
        Ok(Some(state)) if state.running => Ok(()),
        Ok(Some(state)) => {
            let tail = docker
                .container_logs_tail(name, 5)
                .await
                .unwrap_or_default();
            let code = state
                .exit_code
                .map_or_else(|| state.status.clone(), |c| format!("code {c}"));
            Err(Failure::deploy(format!(
                "container exited with {code}: {}",
                tail.trim().replace('\n', " | ")
            )))
        }
        Ok(None) => Err(Failure::deploy("the container is gone".to_owned())),
        Err(e) => Err(Failure::deploy(format!(
            "cannot inspect the container: {e}"
        ))),
    }
}

async fn probe(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "connection refused or reset".to_owned()
            }
        })
}
