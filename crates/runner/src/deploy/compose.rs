//! The `compose` driver: a service of a compose project from the
//! repository, run by the host's compose CLI with the service's image
//! replaced through an override file; a rollback is `up -d` again with the
//! previous digest.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use domain::workflow::{ComposeTarget, DeploySpec, Route, fixed_host_port};
use serde_json::Value;

use super::routed::published;
use super::{Deploys, Failure};
use crate::client::Version;
use crate::confine;
use crate::docker::Docker;

/// Where the compose CLI's override for the service's image is written,
/// beside the compose file.
const OVERRIDE: &str = ".slipway-compose-override.yml";

impl Deploys<'_> {
    /// The target's compose file, which must be in the workspace once its
    /// links are followed.
    fn compose_file(&self, target: &ComposeTarget) -> Result<PathBuf, String> {
        let key = "target.compose.file";
        confine::resolve(self.workspace, Path::new(&target.file), key)?
            .filter(|p| p.is_file())
            .ok_or_else(|| format!("{key} \"{}\" is not a file in the repository", target.file))
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
        let file = self.compose_file(target)?;
        let dir = file.parent().unwrap_or(self.workspace).to_path_buf();
        let mut files = vec![file.display().to_string()];
        let override_file = dir.join(OVERRIDE);
        // Ours only: a link of that name from the repository is not followed.
        if std::fs::symlink_metadata(&override_file).is_ok_and(|m| m.is_file()) {
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
        routed_port: Option<u16>,
    ) -> Result<(), String> {
        let file = self.compose_file(target)?;
        let main = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", target.file))?;
        let version = main
            .lines()
            .find(|l| l.starts_with("version:"))
            .map(|l| format!("{l}\n"))
            .unwrap_or_default();
        let mut text = format!(
            "{version}services:\n  {service}:\n    image: \"{image}\"\n    labels:\n      slipway.workflow: \"{workflow}\"\n      slipway.environment: \"{env}\"\n      slipway.deployment: \"{id}\"\n",
            service = target.service,
            workflow = self.workflow,
        );
        if let Some(port) = routed_port {
            // Where the proxy reaches each replica: an ephemeral loopback port.
            text.push_str(&format!("    ports:\n      - \"127.0.0.1::{port}\"\n"));
        }
        let dir = file.parent().unwrap_or(self.workspace);
        write_new(&dir.join(OVERRIDE), text.as_bytes())
            .map_err(|e| format!("cannot write the compose override: {e}"))
    }

    /// The `compose` driver: `up -d` with the service's image replaced, then
    /// probe and watch.
    pub(super) async fn compose_deploy(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ComposeTarget,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(), Failure> {
        self.compose_override(target, spec.environment.as_str(), id, image, None)
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

    /// The candidate of a routed compose service: one more replica of the
    /// service from the new image (`up -d --no-recreate --scale`), the
    /// running one left as it is; returns its name and address.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn compose_candidate(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ComposeTarget,
        route: &Route,
        id: i64,
        image: &str,
        position: i32,
    ) -> Result<(String, String), Failure> {
        self.routable(target)
            .map_err(|e| Failure::deploy(e).kept())?;
        self.compose_override(
            target,
            spec.environment.as_str(),
            id,
            image,
            Some(route.port),
        )
        .map_err(|e| Failure::deploy(e).kept())?;
        let service_labels = [
            ("com.docker.compose.project", target.project.as_str()),
            ("com.docker.compose.service", target.service.as_str()),
        ];
        let replicas = docker
            .list_containers(&service_labels)
            .await
            .map_err(|e| Failure::deploy(e.to_string()).kept())?
            .iter()
            .filter(|c| c.running)
            .count();
        let scale = format!("{}={}", target.service, replicas + 1);
        let output = self
            .compose(
                target,
                &["up", "-d", "--no-recreate", "--scale", &scale],
                Some(image),
            )
            .await
            .map_err(|e| Failure::deploy(e).kept())?;
        for line in output.lines() {
            self.sink.line(position, line);
        }
        let id = id.to_string();
        let mut labels = service_labels.to_vec();
        labels.push(("slipway.deployment", id.as_str()));
        let candidate = docker
            .list_containers(&labels)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.running);
        let Some(candidate) = candidate else {
            return Err(Failure::deploy(format!(
                "compose started no replica of {} from the new image",
                target.service
            ))
            .kept());
        };
        published(docker, &candidate.name, route.port).await
    }

    /// A routed service runs two replicas during a deploy: it may not set a
    /// fixed container name or host port.
    fn routable(&self, target: &ComposeTarget) -> Result<(), String> {
        let text = std::fs::read_to_string(self.workspace.join(&target.file))
            .map_err(|e| format!("cannot read {}: {e}", target.file))?;
        let file: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("cannot read {}: {e}", target.file))?;
        let service = &file["services"][&target.service];
        let at = format!("{}: services.{}", target.file, target.service);
        if !service["container_name"].is_null() {
            return Err(format!(
                "{at}.container_name: a routed service runs two replicas during a deploy, so it cannot have a fixed container name"
            ));
        }
        for (i, port) in service["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let fixed = match port {
                Value::String(spec) => fixed_host_port(spec),
                Value::Object(long) => long.get("published").is_some_and(|p| !p.is_null()),
                _ => false,
            };
            if fixed {
                return Err(format!(
                    "{at}.ports[{i}]: a routed service runs two replicas during a deploy, so it cannot take a fixed host port (the proxy reaches it on route.port)"
                ));
            }
        }
        Ok(())
    }

    /// Compose rollback: `up -d` again with the previous digest.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn compose_roll_back(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ComposeTarget,
        failed: i64,
        previous: Option<Version>,
        reason: &str,
        position: i32,
    ) {
        if previous.is_none() {
            let _ = self.compose(target, &["stop"], None).await;
        }
        let Some(previous) = self
            .rolling_back_to(previous, failed, reason, position)
            .await
        else {
            return;
        };
        let env = spec.environment.as_str();
        let result = match self.compose_override(target, env, previous.id, &previous.image, None) {
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

    /// Stops the project's containers: a deploy past its budget is left for
    /// a person.
    pub(super) async fn compose_stop(&self, target: &ComposeTarget) {
        let _ = self.compose(target, &["stop"], None).await;
    }
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

/// Writes `path` afresh: whatever is there (a link the repository planted
/// included) is removed first, and the file is created only if nothing took
/// its place meanwhile, so the write never goes through a link.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(data)
}
