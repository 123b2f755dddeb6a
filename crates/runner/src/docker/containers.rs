//! The long-running containers of a deploy: a service started from its spec
//! (ports, volumes, restart policy and network in `docker run` syntax,
//! checked before anything is made), a container's state and last log
//! lines, and the start, stop, rename, remove and list that rollouts and
//! rollbacks are made of.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, NetworkCreateRequest, PortBinding,
    PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::images::ensure_image;
use super::{Docker, Error, REQUEST_TIMEOUT_SECS, engine, grace_secs, status_of};

/// A long-running container for a deploy.
#[derive(Debug, Clone, Default)]
pub struct ServiceSpec {
    /// The container's name, by which the deploy finds, renames and removes it.
    pub name: String,
    /// A tag or digest reference ("host:port/app@sha256:...").
    pub image: String,
    /// Overrides the image's CMD when not empty.
    pub command: Vec<String>,
    /// The service's environment, as `KEY=value`.
    pub env: Vec<(String, String)>,
    /// `docker -p` syntax: `[ip:][hostPort:]containerPort[/proto]`.
    pub ports: Vec<String>,
    /// `docker -v` syntax: "volume:/path" or "/host/path:/path[:ro]".
    pub volumes: Vec<String>,
    /// Created (bridge driver) if missing.
    pub network: Option<String>,
    /// "no" | "always" | "unless-stopped" | "on-failure[:N]".
    pub restart: Option<String>,
    /// Put on the container, so that a deploy's containers can be listed.
    pub labels: Vec<(String, String)>,
    /// Registry credentials (username, password) for pulling the image.
    pub credentials: Option<(String, String)>,
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// The engine's id, stable across renames.
    pub id: String,
    /// The current name, without the engine's leading `/`.
    pub name: String,
    /// The image reference the container was created with.
    pub image: String,
    /// The image's id ("sha256:..."), which the container keeps in use
    /// whatever its tags become.
    pub image_id: String,
    /// Whether it runs now; a service that does not has failed to start.
    pub running: bool,
    /// "created", "running", "restarting", "exited", "dead", ...
    pub status: String,
    /// Set once the container has run and stopped.
    pub exit_code: Option<i32>,
    /// The kernel killed it for lack of memory: a reason worth telling.
    pub oom_killed: bool,
    /// Restarts by its restart policy: a service that crash-loops.
    pub restart_count: i64,
    /// The engine's error for a container that could not start.
    pub error: Option<String>,
    /// Its labels, the image's included: whose container it is.
    pub labels: HashMap<String, String>,
    /// Host ports its ports are published on, by `port/proto` (`8080/tcp`).
    pub published: HashMap<String, u16>,
}

impl Docker {
    /// Creates and starts a long-running container; returns its id.
    pub async fn start_service(&self, spec: &ServiceSpec) -> Result<String, Error> {
        let api = self.api().await?;
        let mut port_bindings: PortMap = HashMap::new();
        let mut exposed = Vec::new();
        for port in &spec.ports {
            let (key, binding) = parse_port(port)?;
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
        for volume in &spec.volumes {
            check_volume(volume)?;
        }
        let restart = spec.restart.as_deref().map(parse_restart).transpose()?;
        let credentials = spec
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        ensure_image(api, &spec.image, credentials).await?;
        if let Some(network) = &spec.network {
            ensure_network(api, network).await?;
        }

        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.iter().cloned().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
                network_mode: spec.network.clone(),
                restart_policy: restart,
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = api
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&spec.name)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(engine)?;
        if let Err(e) = api
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // A half-made service (say, its port is taken) would hold the name.
            let _ = api
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Err(engine(e));
        }
        Ok(created.id)
    }

    /// None if there is no such container.
    pub async fn container_state(&self, name_or_id: &str) -> Result<Option<ContainerState>, Error> {
        let api = self.api().await?;
        match api
            .inspect_container(name_or_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => Ok(Some(state_of(inspect))),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    /// `docker start` of an existing (stopped) container.
    pub async fn start_container(&self, name_or_id: &str) -> Result<(), Error> {
        let api = self.api().await?;
        api.start_container(
            name_or_id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| about_container(name_or_id, e))
    }

    /// `docker stop`: the container's stop signal, SIGKILL after `grace`. Ok if
    /// it was not running.
    pub async fn stop_container(&self, name_or_id: &str, grace: Duration) -> Result<(), Error> {
        // The engine answers once the container is gone: allow for the grace.
        let api = self
            .api()
            .await?
            .clone()
            .with_timeout(grace + Duration::from_secs(REQUEST_TIMEOUT_SECS));
        let options = StopContainerOptionsBuilder::default()
            .t(grace_secs(grace))
            .build();
        // 304 (already stopped) counts as a success in bollard.
        api.stop_container(name_or_id, Some(options))
            .await
            .map_err(|e| about_container(name_or_id, e))
    }

    /// `docker rm -f` (keeps anonymous volumes); ok if there is no such container.
    pub async fn remove_container(&self, name_or_id: &str) -> Result<(), Error> {
        let api = self.api().await?;
        match api
            .remove_container(
                name_or_id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    pub async fn rename_container(&self, name_or_id: &str, new_name: &str) -> Result<(), Error> {
        let api = self.api().await?;
        api.rename_container(
            name_or_id,
            RenameContainerOptionsBuilder::default()
                .name(new_name)
                .build(),
        )
        .await
        .map_err(|e| about_container(name_or_id, e))
    }

    /// All containers (running or not) that carry every one of these labels.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerState>, Error> {
        let api = self.api().await?;
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        if !labels.is_empty() {
            filters.insert(
                "label",
                labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            );
        }
        let summaries = api
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(engine)?;
        // The list has no exit codes: inspect each (one may go meanwhile).
        let mut states = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            if let Some(state) = self.container_state(&id).await? {
                states.push(state);
            }
        }
        Ok(states)
    }

    /// The last `lines` lines of the container's stdout and stderr, interleaved.
    pub async fn container_logs_tail(
        &self,
        name_or_id: &str,
        lines: usize,
    ) -> Result<String, Error> {
        let api = self.api().await?;
        let tail = lines.to_string();
        let stream = api.logs(
            name_or_id,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build(),
            ),
        );
        tokio::pin!(stream);
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => text.extend_from_slice(&chunk.into_bytes()),
                Err(e) => return Err(about_container(name_or_id, e)),
            }
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

async fn ensure_network(api: &bollard::Docker, network: &str) -> Result<(), Error> {
    // "host", "bridge", "none" exist; "container:<id>" is no network to create.
    if network.contains(':') {
        return Ok(());
    }
    match api
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if status_of(&e) == Some(404) => {}
        Err(e) => return Err(engine(e)),
    }
    match api
        .create_network(NetworkCreateRequest {
            name: network.to_owned(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
    {
        Ok(_) => Ok(()),
        // Made meanwhile by someone else.
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(engine(e)),
    }
}

fn state_of(inspect: ContainerInspectResponse) -> ContainerState {
    let state = inspect.state.unwrap_or_default();
    let config = inspect.config.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let has_run = !running && (status == "exited" || status == "dead");
    ContainerState {
        id: inspect.id.unwrap_or_default(),
        name: inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        image_id: inspect.image.unwrap_or_default(),
        running,
        status,
        exit_code: state
            .exit_code
            .filter(|_| has_run)
            .map(|c| i32::try_from(c).unwrap_or(-1)),
        oom_killed: state.oom_killed.unwrap_or(false),
        restart_count: inspect.restart_count.unwrap_or(0),
        error: state.error.filter(|e| !e.is_empty()),
        labels: config.labels.unwrap_or_default(),
        published: inspect
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(port, bindings)| {
                let host_port = bindings?
                    .into_iter()
                    .find_map(|b| b.host_port?.parse::<u16>().ok())?;
                Some((port, host_port))
            })
            .collect(),
    }
}

/// `[ip:][hostPort:]containerPort[/proto]` -> ("port/proto", binding).
fn parse_port(spec: &str) -> Result<(String, PortBinding), Error> {
    let invalid = |reason| Error::Invalid {
        what: "port mapping",
        value: spec.to_owned(),
        reason,
    };
    let (addr, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(invalid("the protocol must be tcp, udp or sctp"));
    }
    let (rest, container) = match addr.rsplit_once(':') {
        Some((rest, container)) => (Some(rest), container),
        None => (None, addr),
    };
    let (ip, host_port) = match rest {
        None => ("", ""),
        Some(rest) => match rest.rsplit_once(':') {
            Some((ip, host)) => (ip, host),
            None => ("", rest),
        },
    };
    let ip = ip
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .unwrap_or(ip);
    if container.contains('-') || host_port.contains('-') {
        return Err(invalid("port ranges are not supported"));
    }
    match container.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(invalid(
                "the container port must be a number from 1 to 65535",
            ));
        }
    }
    if !host_port.is_empty() && host_port.parse::<u16>().is_err() {
        return Err(invalid("the host port must be a number from 0 to 65535"));
    }
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid("the host address must be an IP address"));
    }
    Ok((
        format!("{container}/{proto}"),
        PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(host_port.to_owned()),
        },
    ))
}

fn parse_restart(spec: &str) -> Result<RestartPolicy, Error> {
    let invalid = || Error::Invalid {
        what: "restart policy",
        value: spec.to_owned(),
        reason: "expected no, always, unless-stopped or on-failure[:N]",
    };
    let (name, retries) = match spec {
        "no" => (RestartPolicyNameEnum::NO, None),
        "always" => (RestartPolicyNameEnum::ALWAYS, None),
        "unless-stopped" => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        "on-failure" => (RestartPolicyNameEnum::ON_FAILURE, None),
        other => match other.strip_prefix("on-failure:") {
            Some(n) => (
                RestartPolicyNameEnum::ON_FAILURE,
                Some(n.parse::<i64>().map_err(|_| invalid())?),
            ),
            None => return Err(invalid()),
        },
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    })
}

fn check_volume(spec: &str) -> Result<(), Error> {
    let mut parts = spec.split(':');
    let source = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    if source.is_empty() || !target.starts_with('/') {
        return Err(Error::Invalid {
            what: "volume",
            value: spec.to_owned(),
            reason: "expected name:/path or /host/path:/path[:options]",
        });
    }
    Ok(())
}

/// An engine error about the container `name_or_id`: a 404 means there is
/// no such container.
fn about_container(name_or_id: &str, e: bollard::errors::Error) -> Error {
    if status_of(&e) == Some(404) {
        Error::NoSuchContainer(name_or_id.to_owned())
    } else {
        engine(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_port_syntax() {
        let p = |s| parse_port(s).unwrap();
        let b = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        assert_eq!(p("18081:8080"), ("8080/tcp".into(), b("", "18081")));
        assert_eq!(
            p("127.0.0.1:18081:8080"),
            ("8080/tcp".into(), b("127.0.0.1", "18081"))
        );
        assert_eq!(p("8080/udp"), ("8080/udp".into(), b("", "")));
        assert_eq!(
            p("127.0.0.1::53/udp"),
            ("53/udp".into(), b("127.0.0.1", ""))
        );
        assert_eq!(p("[::1]:8443:443"), ("443/tcp".into(), b("::1", "8443")));
        for bad in [
            "",
            "x:80",
            "80:0",
            "8080/icmp",
            "70000:80",
            "8000-8010:8000-8010",
            "nohost:1:2",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_restart_policies() {
        let r = |s| parse_restart(s).unwrap();
        assert_eq!(r("always").name, Some(RestartPolicyNameEnum::ALWAYS));
        assert_eq!(r("no").name, Some(RestartPolicyNameEnum::NO));
        assert_eq!(
            r("unless-stopped").name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(r("on-failure").maximum_retry_count, None);
        let on_failure = r("on-failure:5");
        assert_eq!(on_failure.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(on_failure.maximum_retry_count, Some(5));
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }
}
