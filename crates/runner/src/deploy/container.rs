//! The `container` driver: one container per environment. The running
//! version is kept, stopped and renamed `<name>.previous-<deployment id>`,
//! so a rollback is a `docker start` of it; `SLIPWAY_KEEP_CONTAINERS`
//! stopped versions are kept per environment.

use std::time::Duration;

use domain::workflow::{ContainerTarget, DeploySpec};

use super::{Deploys, Failure};
use crate::client::Version;
use crate::docker::{Docker, ServiceSpec};

/// How long a stopped container gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Deploys<'_> {
    /// The `container` driver: park the old container, start the new one,
    /// probe, watch.
    pub(super) async fn container_deploy(
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

    /// Stops the target's container: a deploy past its budget is left for
    /// a person.
    pub(super) async fn container_stop(&self, docker: &Docker, target: &ContainerTarget) {
        let _ = docker.stop_container(&target.name, STOP_GRACE).await;
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

    /// The container spec of a deployment: the target's settings, its
    /// secrets resolved, and the labels that tie it to its environment.
    pub(super) fn service(
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
            credentials: self
                .registry
                .map(|(user, password)| (user.to_owned(), password.to_owned())),
            ..ServiceSpec::default()
        })
    }

    /// Puts the previous healthy version back: the parked container when
    /// there is one, else a new container from the previous digest.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn container_roll_back(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ContainerTarget,
        failed: i64,
        previous: Option<Version>,
        reason: &str,
        position: i32,
    ) {
        // The failed version gets no graceful drain: the previous one must
        // answer again as soon as possible.
        let _ = docker.remove_container(&target.name).await;
        let Some(previous) = self
            .rolling_back_to(previous, failed, reason, position)
            .await
        else {
            return;
        };
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
