//! Drives the Docker Engine (through `bollard`) for steps that run in a
//! container, image builds, pushes and deploys.
//!
//! A step runs `sh -e -c SCRIPT` in its image with the workspace bind-mounted
//! at /workspace, under the engine's init (tini) so that a stop's SIGTERM
//! reaches the script. Its combined output is streamed as it comes; a stop or a
//! timeout is a `docker stop` with the grace period (SIGTERM, then SIGKILL);
//! the container is always removed afterwards, also when the step's future is
//! dropped.
//!
//! The API version is negotiated on first use: bollard 0.21 speaks 1.53 by
//! default, which an older engine (20.10 speaks 1.41) refuses.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerWaitResponse, HostConfig, Mount,
    MountType, NetworkCreateRequest, PortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, InspectContainerOptions, InspectNetworkOptions,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    LogsOptionsBuilder, PushImageOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RenameContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder, TagImageOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, ClientVersion};
use futures_util::{Stream, StreamExt};
use tokio::sync::{OnceCell, mpsc, watch};

pub use crate::process::{Ending, Stop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid docker host {host:?}: {reason}")]
    Host { host: String, reason: String },
    #[error("docker engine: {}", engine_message(.0))]
    Engine(#[source] BollardError),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("image {image} not found locally and cannot be pulled: {reason}")]
    ImageUnavailable { image: String, reason: String },
    #[error("cannot read the build context {}: {source}", .path.display())]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("build failed: {message}{}", last_lines(.output))]
    Build { message: String, output: String },
    #[error("push of {reference} failed: {message}")]
    Push { reference: String, message: String },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

fn last_lines(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\nlast build output:\n{output}")
    }
}

/// The engine's own words for an error, without bollard's wrapping.
fn engine_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{} (http {status_code})", message.trim()),
        BollardError::DockerStreamError { error } => error.trim().to_owned(),
        other => other.to_string(),
    }
}

fn engine(e: BollardError) -> Error {
    Error::Engine(e)
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What a step runs with.
#[derive(Debug, Clone)]
pub struct StepSpec<'a> {
    pub image: &'a str,
    pub script: &'a str,
    /// Host directory (as the engine's host sees it) mounted at /workspace.
    pub workspace: &'a Path,
    pub env: &'a [(String, String)],
    pub labels: &'a [(String, String)],
    /// Container name; a unique one is made up when `None`.
    pub name: Option<&'a str>,
    /// `user[:group]` to run the script as; the image's user when `None`.
    pub user: Option<&'a str>,
    pub timeout: Duration,
    pub grace: Duration,
}

/// What an image is built from.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    /// Host directory sent as the build context (a `.dockerignore` is NOT honoured).
    pub context: &'a Path,
    /// Path of the Dockerfile relative to the context.
    pub dockerfile: &'a str,
    pub build_args: &'a [(String, String)],
    pub labels: &'a [(String, String)],
    /// Full references, e.g. "127.0.0.1:5000/app:abc123".
    pub tags: &'a [String],
}

/// A long-running container for a deploy.
#[derive(Debug, Clone, Default)]
pub struct ServiceSpec {
    pub name: String,
    /// A tag or digest reference ("host:port/app@sha256:...").
    pub image: String,
    /// Overrides the image's CMD when not empty.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `docker -p` syntax: `[ip:][hostPort:]containerPort[/proto]`.
    pub ports: Vec<String>,
    /// `docker -v` syntax: "volume:/path" or "/host/path:/path[:ro]".
    pub volumes: Vec<String>,
    /// Created (bridge driver) if missing.
    pub network: Option<String>,
    /// "no" | "always" | "unless-stopped" | "on-failure[:N]".
    pub restart: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Registry credentials (username, password) for pulling the image.
    pub credentials: Option<(String, String)>,
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    /// The image reference the container was created with.
    pub image: String,
    pub image_id: String,
    pub running: bool,
    /// "created", "running", "restarting", "exited", "dead", ...
    pub status: String,
    /// Set once the container has run and stopped.
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub restart_count: i64,
    /// The engine's error for a container that could not start.
    pub error: Option<String>,
    pub labels: HashMap<String, String>,
}

/// What `remove_image` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRemoval {
    /// Untagged, and deleted if nothing else referred to it.
    Removed,
    Missing,
    /// A container uses it; the engine's message.
    InUse(String),
}

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// bollard's default per-request timeout (for the response headers).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Builds may upload a large context before the engine answers at all.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
const BUILD_OUTPUT_TAIL: usize = 30;
const TAR_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
enum Target {
    Unix(String),
    Http(String),
}

impl Target {
    fn connect(&self, version: &ClientVersion) -> Result<bollard::Docker, BollardError> {
        match self {
            Target::Unix(path) => {
                bollard::Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
            }
            Target::Http(addr) => {
                bollard::Docker::connect_with_http(addr, REQUEST_TIMEOUT_SECS, version)
            }
        }
    }

    fn describe(&self) -> &str {
        match self {
            Target::Unix(s) | Target::Http(s) => s,
        }
    }
}

/// A connection to one Docker Engine.
#[derive(Debug)]
pub struct Docker {
    target: Target,
    client: bollard::Docker,
    negotiated: OnceCell<bollard::Docker>,
}

impl Docker {
    /// `host`: None = the local socket (or `DOCKER_HOST` if it is a unix:// one);
    /// "unix:///path" or "tcp://host:port" / "http://host:port". Nothing is
    /// sent until the first call.
    pub fn connect(host: Option<&str>) -> Result<Self, Error> {
        let target = match host {
            None => Target::Unix(
                std::env::var("DOCKER_HOST")
                    .ok()
                    .filter(|h| h.starts_with("unix://"))
                    .unwrap_or_else(|| DEFAULT_SOCKET.to_owned()),
            ),
            Some(h) if h.starts_with("unix://") => Target::Unix(h.to_owned()),
            Some(h) if h.starts_with('/') => Target::Unix(format!("unix://{h}")),
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                Target::Http(h.to_owned())
            }
            Some(h) => {
                return Err(Error::Host {
                    host: h.to_owned(),
                    reason: "expected unix:///path, tcp://host:port or http://host:port".into(),
                });
            }
        };
        let client = target
            .connect(API_DEFAULT_VERSION)
            .map_err(|e| Error::Host {
                host: target.describe().to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            target,
            client,
            negotiated: OnceCell::new(),
        })
    }

    /// The client, speaking an API version the engine accepts.
    async fn api(&self) -> Result<&bollard::Docker, Error> {
        self.negotiated
            .get_or_try_init(|| async {
                match self.client.clone().negotiate_version().await {
                    Ok(client) => Ok(client),
                    // bollard negotiates through a versioned /version call,
                    // which an engine older than bollard's default version
                    // refuses, naming its own maximum.
                    Err(e) => match max_version_in(&e) {
                        Some(version) => self.target.connect(&version).map_err(engine),
                        None => Err(engine(e)),
                    },
                }
            })
            .await
    }

    pub async fn ping(&self) -> Result<(), Error> {
        self.api().await?.ping().await.map_err(engine)?;
        Ok(())
    }

    /// Runs `sh -e -c SCRIPT` in the step's image; see the module's doc.
    pub async fn run_step(
        &self,
        spec: StepSpec<'_>,
        mut stop: watch::Receiver<Stop>,
        mut output: impl FnMut(&[u8]),
    ) -> Ending {
        // A stop that came before the step did: `changed` would not see it.
        let already = *stop.borrow_and_update();
        if already != Stop::No {
            return Ending::Stopped(already);
        }
        // The timeout and stops count from here: a slow pull is part of the step.
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let api = match self.api().await {
            Ok(api) => api,
            Err(e) => return Ending::SpawnFailed(e.to_string()),
        };
        let name = spec
            .name
            .map_or_else(|| unique_name("step"), ToOwned::to_owned);
        // Armed before the container exists, so that it goes even if this
        // future is dropped while it is being created.
        let mut guard = RemoveOnDrop {
            api: Some(api.clone()),
            name: name.clone(),
        };

        let prepared = {
            let prepare = prepare_step(api, &spec, &name);
            tokio::pin!(prepare);
            loop {
                tokio::select! {
                    prepared = &mut prepare => break prepared.map_err(Ending::SpawnFailed),
                    () = &mut deadline => break Err(Ending::TimedOut),
                    changed = stop.changed() => {
                        if let Some(why) = stop_reason(changed.is_err(), &stop) {
                            break Err(Ending::Stopped(why));
                        }
                    }
                }
            }
        };
        let mut logs = match prepared {
            Ok(logs) => logs,
            Err(ending) => {
                guard.remove().await;
                return ending;
            }
        };

        let wait = api.wait_container(
            &name,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        );
        tokio::pin!(wait);
        let mut reading = true;
        let mut ending: Option<Ending> = None;
        let status = loop {
            tokio::select! {
                chunk = logs.next(), if reading => match chunk {
                    Some(Ok(chunk)) => output(&chunk.into_bytes()),
                    Some(Err(_)) | None => reading = false,
                },
                waited = wait.next() => break exit_status(waited),
                () = &mut deadline => {
                    ending = Some(Ending::TimedOut);
                    break Ok(-1);
                }
                changed = stop.changed() => {
                    if let Some(why) = stop_reason(changed.is_err(), &stop) {
                        ending = Some(Ending::Stopped(why));
                        break Ok(-1);
                    }
                }
            }
        };
        if ending.is_some() {
            terminate(api, &name, spec.grace, &mut logs, &mut output).await;
        }
        if reading {
            drain(&mut logs, &mut output).await;
        }
        let oom_killed = match (&ending, &status) {
            (None, Ok(code)) if *code != 0 => api
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.oom_killed)
                .unwrap_or(false),
            _ => false,
        };
        guard.remove().await;

        if let Some(ending) = ending {
            return ending;
        }
        match status {
            Ok(_) if oom_killed => Ending::Signaled(9),
            Ok(code) => Ending::Exited(i32::try_from(code).unwrap_or(-1)),
            Err(e) => Ending::SpawnFailed(format!("lost the step's container: {e}")),
        }
    }

    /// Builds `spec.context` with the classic builder and tags it with every
    /// tag; returns the image id ("sha256:...").
    pub async fn build(
        &self,
        spec: BuildSpec<'_>,
        mut output: impl FnMut(&str),
    ) -> Result<String, Error> {
        let api = self.api().await?.clone().with_timeout(BUILD_TIMEOUT);
        let build_args: HashMap<&str, &str> = spec
            .build_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let labels: HashMap<&str, &str> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(spec.dockerfile)
            .rm(true)
            // Intermediate containers go also when a step fails.
            .forcerm(true)
            .buildargs(&build_args)
            .labels(&labels);
        if let Some(first) = spec.tags.first() {
            options = options.t(first);
        }

        let (tar_task, chunks) = tar_context(spec.context.to_path_buf());
        let body = bollard::body_try_stream(chunks.map(|chunk| chunk.map(Into::into)));
        // Boxed, not pinned on the stack, so that it can be dropped below.
        let mut stream = Box::pin(api.build_image(options.build(), None, Some(body)));
        let mut lines = Lines::default();
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut emit = |line: &str| {
            if tail.len() == BUILD_OUTPUT_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
            output(line);
        };
        let mut image_id: Option<String> = None;
        let mut failure: Option<BollardError> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(id) = info.aux.and_then(|aux| aux.id) {
                        image_id = Some(id);
                    }
                    if let Some(text) = info.stream {
                        lines.feed(&text, &mut emit);
                    }
                    if let Some(status) = info.status {
                        lines.flush(&mut emit);
                        match info.id {
                            Some(id) => emit(&format!("{id}: {status}")),
                            None => emit(&status),
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        lines.flush(&mut emit);
        // Dropping the request lets a tar thread still sending give up.
        drop(stream);
        // A context that could not be read explains the failure better than
        // the engine's "unexpected EOF".
        match tokio::time::timeout(DRAIN_LIMIT, tar_task).await {
            Ok(Ok(Err(e))) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(Error::Context {
                    path: spec.context.to_path_buf(),
                    source: e,
                });
            }
            _ => {}
        }
        let output_tail = Vec::from(tail).join("\n");
        if let Some(e) = failure {
            return Err(Error::Build {
                message: engine_message(&e),
                output: output_tail,
            });
        }
        let image_id = match image_id {
            Some(id) => id,
            // Engines that send no aux message still say "Successfully built <short id>".
            None => output_tail
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("Successfully built "))
                .map(|s| s.trim().to_owned())
                .ok_or_else(|| Error::Build {
                    message: "the engine did not report the image id".into(),
                    output: output_tail.clone(),
                })?,
        };
        // The full id, also when all we have is the short one.
        let image_id = api
            .inspect_image(&image_id)
            .await
            .map_err(engine)?
            .id
            .unwrap_or(image_id);
        for tag in spec.tags.iter().skip(1) {
            let (repo, tag_part, digest) = split_reference(tag);
            if digest.is_some() {
                return Err(Error::Invalid {
                    what: "tag",
                    value: tag.clone(),
                    reason: "a tag cannot be a digest reference",
                });
            }
            api.tag_image(
                &image_id,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(repo)
                        .tag(tag_part.unwrap_or("latest"))
                        .build(),
                ),
            )
            .await
            .map_err(engine)?;
        }
        Ok(image_id)
    }

    /// Pushes "host:port/name:tag"; returns the manifest digest the registry got.
    pub async fn push(
        &self,
        reference: &str,
        credentials: Option<(&str, &str)>,
        mut output: impl FnMut(&str),
    ) -> Result<String, Error> {
        let api = self.api().await?;
        let (name, tag, digest) = split_reference(reference);
        if digest.is_some() {
            return Err(Error::Invalid {
                what: "reference to push",
                value: reference.to_owned(),
                reason: "push a tag, not a digest",
            });
        }
        let tag = tag.unwrap_or("latest");
        let credentials = credentials.map(|(username, password)| DockerCredentials {
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            serveraddress: Some(registry_of(name).to_owned()),
            ..Default::default()
        });
        let stream = api.push_image(
            name,
            Some(PushImageOptionsBuilder::default().tag(tag).build()),
            credentials,
        );
        tokio::pin!(stream);
        let mut pushed: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status {
                        // The digest comes as "TAG: digest: sha256:... size: N"
                        // (bollard's PushImageInfo has no `aux` field).
                        if let Some(d) = digest_in(&status) {
                            pushed = Some(d.to_owned());
                        }
                        output(&status);
                    }
                }
                Err(e) => {
                    return Err(Error::Push {
                        reference: reference.to_owned(),
                        message: engine_message(&e),
                    });
                }
            }
        }
        pushed.ok_or_else(|| Error::Push {
            reference: reference.to_owned(),
            message: "the engine did not report the pushed digest".into(),
        })
    }

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

    /// The registry digest of `reference` (`host:port/name:tag`), pulling it
    /// when the engine does not have it.
    pub async fn digest_of(
        &self,
        reference: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<String, Error> {
        let api = self.api().await?;
        ensure_image(api, reference, credentials).await?;
        let image = api.inspect_image(reference).await.map_err(engine)?;
        let (name, _, _) = split_reference(reference);
        let prefix = format!("{name}@");
        image
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find_map(|d| d.strip_prefix(&prefix).map(str::to_owned))
            .ok_or_else(|| Error::ImageUnavailable {
                image: reference.to_owned(),
                reason: "the engine knows no registry digest for it".to_owned(),
            })
    }

    /// `docker start` of an existing (stopped) container.
    pub async fn start_container(&self, name_or_id: &str) -> Result<(), Error> {
        let api = self.api().await?;
        match api
            .start_container(
                name_or_id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => {
                Err(Error::NoSuchContainer(name_or_id.to_owned()))
            }
            Err(e) => Err(engine(e)),
        }
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
        match api
            .stop_container(
                name_or_id,
                Some(
                    StopContainerOptionsBuilder::default()
                        .t(grace_secs(grace))
                        .build(),
                ),
            )
            .await
        {
            // 304 (already stopped) counts as a success in bollard.
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => {
                Err(Error::NoSuchContainer(name_or_id.to_owned()))
            }
            Err(e) => Err(engine(e)),
        }
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
        match api
            .rename_container(
                name_or_id,
                RenameContainerOptionsBuilder::default()
                    .name(new_name)
                    .build(),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => {
                Err(Error::NoSuchContainer(name_or_id.to_owned()))
            }
            Err(e) => Err(engine(e)),
        }
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
                Err(e) if status_of(&e) == Some(404) => {
                    return Err(Error::NoSuchContainer(name_or_id.to_owned()));
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// The local images of `repository` (`host:port/name`), newest first,
    /// each with every reference (tags and digests) it has there.
    pub async fn images_of(&self, repository: &str) -> Result<Vec<Vec<String>>, Error> {
        let api = self.api().await?;
        let mut images = api
            .list_images(Some(ListImagesOptionsBuilder::default().all(false).build()))
            .await
            .map_err(engine)?;
        // Newest first; images built in the same second are told apart by
        // the task that built them (Slipway labels its images).
        let task = |labels: &HashMap<String, String>| {
            labels
                .get("slipway.image.task")
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0)
        };
        images.sort_by_key(|i| std::cmp::Reverse((i.created, task(&i.labels))));
        let tag_prefix = format!("{repository}:");
        let digest_prefix = format!("{repository}@");
        Ok(images
            .into_iter()
            .map(|image| {
                image
                    .repo_tags
                    .into_iter()
                    .chain(image.repo_digests)
                    .filter(|r| r.starts_with(&tag_prefix) || r.starts_with(&digest_prefix))
                    .collect::<Vec<String>>()
            })
            .filter(|refs| !refs.is_empty())
            .collect())
    }

    /// Removes a tag (the image too once nothing refers to it). Never forces.
    pub async fn remove_image(&self, reference: &str) -> Result<ImageRemoval, Error> {
        let api = self.api().await?;
        match api
            .remove_image(
                reference,
                Some(RemoveImageOptionsBuilder::default().build()),
                None,
            )
            .await
        {
            Ok(_) => Ok(ImageRemoval::Removed),
            Err(e) if status_of(&e) == Some(404) => Ok(ImageRemoval::Missing),
            Err(e) if status_of(&e) == Some(409) => Ok(ImageRemoval::InUse(engine_message(&e))),
            Err(e) => Err(engine(e)),
        }
    }
}

type LogStream = std::pin::Pin<
    Box<dyn Stream<Item = Result<bollard::container::LogOutput, BollardError>> + Send>,
>;

/// Pulls the image if needed, creates the container, attaches, starts it.
async fn prepare_step(
    api: &bollard::Docker,
    spec: &StepSpec<'_>,
    name: &str,
) -> Result<LogStream, String> {
    ensure_image(api, spec.image, None)
        .await
        .map_err(|e| e.to_string())?;
    let workspace = std::path::absolute(spec.workspace)
        .map_err(|e| format!("bad workspace {}: {e}", spec.workspace.display()))?;
    let body = ContainerCreateBody {
        image: Some(spec.image.to_owned()),
        // Both replace the image's: a CI image's ENTRYPOINT must not wrap the script.
        entrypoint: Some(vec!["sh".into(), "-e".into(), "-c".into()]),
        cmd: Some(vec![spec.script.to_owned()]),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.iter().cloned().collect()),
        working_dir: Some("/workspace".into()),
        user: spec.user.map(ToOwned::to_owned),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            // A mount, unlike a bind string, takes any path (colons, commas)
            // and fails instead of creating a missing directory.
            mounts: Some(vec![Mount {
                typ: Some(MountType::BIND),
                source: Some(workspace.to_string_lossy().into_owned()),
                target: Some("/workspace".into()),
                read_only: Some(false),
                ..Default::default()
            }]),
            // tini as PID 1 passes SIGTERM on to sh (which, as PID 1, would
            // ignore it) and reaps what the script leaves behind.
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.create_container(
        Some(CreateContainerOptionsBuilder::default().name(name).build()),
        body,
    )
    .await
    .map_err(|e| format!("cannot create the step's container: {}", engine_message(&e)))?;
    // Attached before the start, so no early output is lost: the engine hooks
    // the streams up before it answers. Not `logs`: it replays the log file
    // after hooking up, so what the script wrote meanwhile would come twice.
    let attached = api
        .attach_container(
            name,
            Some(
                AttachContainerOptionsBuilder::default()
                    .stream(true)
                    .stdout(true)
                    .stderr(true)
                    .logs(false)
                    .build(),
            ),
        )
        .await
        .map_err(|e| {
            format!(
                "cannot attach to the step's container: {}",
                engine_message(&e)
            )
        })?;
    api.start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|e| format!("cannot start the step's container: {}", engine_message(&e)))?;
    Ok(attached.output)
}

fn stop_reason(closed: bool, stop: &watch::Receiver<Stop>) -> Option<Stop> {
    let why = if closed { Stop::Abort } else { *stop.borrow() };
    (why != Stop::No).then_some(why)
}

fn exit_status(waited: Option<Result<ContainerWaitResponse, BollardError>>) -> Result<i64, String> {
    match waited {
        Some(Ok(ContainerWaitResponse {
            error: Some(err), ..
        })) if err.message.as_deref().is_some_and(|m| !m.is_empty()) => {
            Err(err.message.unwrap_or_default())
        }
        Some(Ok(response)) => Ok(response.status_code),
        // bollard turns every non-zero exit into an error.
        Some(Err(BollardError::DockerContainerWaitError { error, code })) if error.is_empty() => {
            Ok(code)
        }
        Some(Err(e)) => Err(engine_message(&e)),
        None => Err("the engine ended the wait without an exit status".into()),
    }
}

/// `docker stop` with the grace (which kills after it), reading output meanwhile;
/// a plain kill if the stop fails.
async fn terminate(
    api: &bollard::Docker,
    name: &str,
    grace: Duration,
    logs: &mut LogStream,
    output: &mut impl FnMut(&[u8]),
) {
    let api_for_stop = api
        .clone()
        .with_timeout(grace + Duration::from_secs(REQUEST_TIMEOUT_SECS));
    let stopping = api_for_stop.stop_container(
        name,
        Some(
            StopContainerOptionsBuilder::default()
                .t(grace_secs(grace))
                .build(),
        ),
    );
    tokio::pin!(stopping);
    let mut reading = true;
    let stopped = loop {
        tokio::select! {
            stopped = &mut stopping => break stopped,
            chunk = logs.next(), if reading => match chunk {
                Some(Ok(chunk)) => output(&chunk.into_bytes()),
                Some(Err(_)) | None => reading = false,
            },
        }
    };
    if stopped.is_err() {
        let _ = api
            .kill_container(
                name,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build(),
                ),
            )
            .await;
    }
}

/// Reads what is left of the output; bounded, in case the stream lingers.
async fn drain(logs: &mut LogStream, output: &mut impl FnMut(&[u8])) {
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(Ok(chunk)) = logs.next().await {
            output(&chunk.into_bytes());
        }
    })
    .await;
}

/// Engine stop timeouts are whole seconds; round up.
fn grace_secs(grace: Duration) -> i32 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Removes the container (forced, with its anonymous volumes) when dropped
/// without `remove` having run: a dropped step future leaves nothing behind.
struct RemoveOnDrop {
    api: Option<bollard::Docker>,
    name: String,
}

impl RemoveOnDrop {
    async fn remove(&mut self) {
        if let Some(api) = self.api.take() {
            remove_step_container(&api, &self.name).await;
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(api) = self.api.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move { remove_step_container(&api, &name).await });
        }
    }
}

async fn remove_step_container(api: &bollard::Docker, name: &str) {
    // 404: never created, or gone already.
    let _ = api
        .remove_container(
            name,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
}

/// Pulls `image` unless the engine has it.
async fn ensure_image(
    api: &bollard::Docker,
    image: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(), Error> {
    match api.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if status_of(&e) == Some(404) => {}
        Err(e) => return Err(engine(e)),
    }
    let unavailable = |reason: String| Error::ImageUnavailable {
        image: image.to_owned(),
        reason,
    };
    let (name, tag, digest) = split_reference(image);
    // Without a tag the engine would pull every tag of the repository.
    let options = match digest {
        Some(_) => CreateImageOptionsBuilder::default()
            .from_image(image)
            .build(),
        None => CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag.unwrap_or("latest"))
            .build(),
    };
    let credentials = credentials.map(|(username, password)| DockerCredentials {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        serveraddress: Some(registry_of(name).to_owned()),
        ..Default::default()
    });
    let stream = api.create_image(Some(options), None, credentials);
    tokio::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            return Err(unavailable(engine_message(&e)));
        }
    }
    // A pull that "succeeds" without the image (it happens with odd references)
    // still must not reach container creation as a confusing error.
    match api.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) => Err(unavailable(engine_message(&e))),
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
    }
}

/// Splits "host:port/name:tag@sha256:..." into (name, tag, digest).
fn split_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    let last_part = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_part..].rfind(':') {
        Some(i) => (
            &rest[..last_part + i],
            Some(&rest[last_part + i + 1..]),
            digest,
        ),
        None => (rest, None, digest),
    }
}

/// The registry a repository name lives on, as the engine keys credentials.
fn registry_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "https://index.docker.io/v1/",
    }
}

/// "abc: digest: sha256:... size: 528" -> "sha256:...".
fn digest_in(status: &str) -> Option<&str> {
    let (_, after) = status.split_once("digest: ")?;
    let digest = after.split_whitespace().next()?;
    digest.starts_with("sha256:").then_some(digest)
}

/// The engine's maximum API version from its "client version X is too new" refusal.
fn max_version_in(e: &BollardError) -> Option<ClientVersion> {
    let BollardError::DockerResponseServerError {
        status_code: 400,
        message,
    } = e
    else {
        return None;
    };
    let (_, version) = message.split_once("Maximum supported API version is ")?;
    let (major, minor) = version.trim().trim_end_matches('.').split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
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

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos:08x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Splits streamed text into lines; a partial line waits for the rest.
#[derive(Default)]
struct Lines {
    partial: String,
}

impl Lines {
    fn feed(&mut self, text: &str, emit: &mut impl FnMut(&str)) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            emit(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            emit(line.trim_end_matches(['\n', '\r']));
        }
    }
}

/// Tars the context on a blocking thread, streaming it out in chunks, so
/// that a large context is never whole in memory. Symlinks are kept as such.
fn tar_context(
    context: PathBuf,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let task = tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let written = (|| {
            let mut tar = tar::Builder::new(ChunkWriter {
                tx,
                buf: Vec::with_capacity(TAR_CHUNK),
            });
            tar.follow_symlinks(false);
            // Root-owned, fixed mtimes: the layer does not depend on who checked out.
            tar.mode(tar::HeaderMode::Deterministic);
            tar.append_dir_all(".", &context)?;
            tar.into_inner()?.flush()
        })();
        if let Err(e) = &written {
            // Breaks the upload, so the engine stops waiting for the rest.
            let _ = failed.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        written
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (task, body)
}

/// Sends what is written in chunks down a channel.
struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= TAR_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAR_CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    //! Against the real engine on /var/run/docker.sock. The push test runs a
    //! registry on 127.0.0.1:5000 (`/usr/bin/docker-registry`) unless one
    //! already answers there. Images are built FROM scratch around the host's
    //! static busybox: nothing is pulled from the internet.

    use super::*;
    use std::cell::Cell;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BUSYBOX: &str = "slipway-test-busybox:test";
    const LABEL: &str = "slipway-test.test";
    const REGISTRY: &str = "127.0.0.1:5000";

    fn docker() -> Docker {
        Docker::connect(None).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A build context with the static busybox and a Dockerfile that installs it.
    fn busybox_context(extra: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!(
                "FROM scratch\nCOPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}"
            ),
        )
        .unwrap();
        dir
    }

    /// The shared base image, built once per test run.
    async fn busybox(docker: &Docker) -> &'static str {
        static BUILT: OnceCell<()> = OnceCell::const_new();
        BUILT
            .get_or_init(|| async {
                let context = busybox_context("");
                docker
                    .build(
                        BuildSpec {
                            context: context.path(),
                            dockerfile: "Dockerfile",
                            build_args: &[],
                            labels: &[],
                            tags: &[BUSYBOX.to_owned()],
                        },
                        |_| {},
                    )
                    .await
                    .unwrap();
            })
            .await;
        BUSYBOX
    }

    async fn run(
        docker: &Docker,
        image: &str,
        script: &str,
        workspace: &Path,
        labels: &[(String, String)],
        timeout: Duration,
    ) -> (Ending, String) {
        let (_tx, rx) = watch::channel(Stop::No);
        let mut out = Vec::new();
        let ending = docker
            .run_step(
                StepSpec {
                    image,
                    script,
                    workspace,
                    env: &[],
                    labels,
                    name: None,
                    user: None,
                    timeout,
                    grace: Duration::from_secs(1),
                },
                rx,
                |b| out.extend_from_slice(b),
            )
            .await;
        (ending, String::from_utf8_lossy(&out).into_owned())
    }

    async fn leftovers(docker: &Docker, label: &str) -> Vec<ContainerState> {
        docker.list_containers(&[(LABEL, label)]).await.unwrap()
    }

    /// A minimal HTTP/1.0 GET: (status, headers, body).
    async fn http_get(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, Vec<(String, String)>, String)> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .map_err(|_| std::io::Error::other("http read timed out"))??;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other(format!("bad http answer: {text:?}")))?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok((status, headers, body.to_owned()))
    }

    /// A `docker-registry` child, killed when dropped.
    struct Registry {
        child: Option<std::process::Child>,
        _dir: Option<tempfile::TempDir>,
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The registry on 127.0.0.1:5000: the one already there, or one run for
    /// this test's duration.
    async fn registry() -> Registry {
        if matches!(http_get(REGISTRY, "/v2/", &[]).await, Ok((200, _, _))) {
            return Registry {
                child: None,
                _dir: None,
            };
        }
        start_registry(REGISTRY, None).await
    }

    /// Starts `docker-registry` on `addr`, with htpasswd auth for `user` if given
    /// (bcrypt through perl's crypt(3), which is libxcrypt on Debian).
    async fn start_registry(addr: &str, user: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((name, password)) = user {
            let hash = std::process::Command::new("perl")
                .args([
                    "-e",
                    "print crypt($ARGV[0], q($2b$05$) . q(slipwaysaltsaltsaltsalt))",
                    password,
                ])
                .output()
                .unwrap();
            let hash = String::from_utf8(hash.stdout).unwrap();
            assert!(hash.starts_with("$2b$05$"), "no bcrypt from perl: {hash:?}");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{name}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut child = std::process::Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let ready = if user.is_some() { 401 } else { 200 };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(http_get(addr, "/v2/", &[]).await, Ok((status, _, _)) if status == ready) {
                return Registry {
                    child: Some(child),
                    _dir: Some(dir),
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap();
                panic!("the registry exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "the registry on {addr} did not answer in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    // ---- pure helpers ----

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

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("busybox"), ("busybox", None, None));
        assert_eq!(
            split_reference("127.0.0.1:5000/app:abc"),
            ("127.0.0.1:5000/app", Some("abc"), None)
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app@sha256:00ff"),
            ("127.0.0.1:5000/app", None, Some("sha256:00ff"))
        );
        assert_eq!(
            split_reference("localhost:5000/a/b"),
            ("localhost:5000/a/b", None, None)
        );
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("library/busybox"),
            "https://index.docker.io/v1/"
        );
    }

    #[test]
    fn reads_digests_and_versions_from_engine_words() {
        assert_eq!(
            digest_in("abc: digest: sha256:0123 size: 528"),
            Some("sha256:0123")
        );
        assert_eq!(digest_in("Pushed"), None);
        let refused = BollardError::DockerResponseServerError {
            status_code: 400,
            message: "client version 1.53 is too new. Maximum supported API version is 1.41".into(),
        };
        assert_eq!(
            max_version_in(&refused),
            Some(ClientVersion {
                major_version: 1,
                minor_version: 41
            })
        );
        let mut lines = Lines::default();
        let mut got = Vec::new();
        lines.feed("Step 1/2 : FROM", &mut |l: &str| got.push(l.to_owned()));
        lines.feed(" scratch\nStep 2/2\r\n", &mut |l: &str| {
            got.push(l.to_owned())
        });
        assert_eq!(got, ["Step 1/2 : FROM scratch", "Step 2/2"]);
    }

    #[test]
    fn rejects_unknown_hosts() {
        assert!(Docker::connect(Some("ftp://x")).is_err());
        assert!(Docker::connect(Some("tcp://127.0.0.1:1")).is_ok());
    }

    // ---- against the engine ----

    #[tokio::test]
    async fn negotiates_the_api_version() {
        let docker = docker();
        docker.ping().await.unwrap();
        let api = docker.api().await.unwrap();
        // bollard's default (1.53) or the engine's maximum, whichever is lower.
        let server = api.version().await.unwrap().api_version.unwrap();
        let negotiated = api.client_version();
        let server: Vec<usize> = server.split('.').map(|n| n.parse().unwrap()).collect();
        let expected = std::cmp::min(
            (server[0], server[1]),
            (
                API_DEFAULT_VERSION.major_version,
                API_DEFAULT_VERSION.minor_version,
            ),
        );
        assert_eq!(
            (negotiated.major_version, negotiated.minor_version),
            expected
        );
        // An engine that is not there is an error, not a hang.
        let nowhere = Docker::connect(Some("tcp://127.0.0.1:1")).unwrap();
        assert!(nowhere.ping().await.is_err());
    }

    #[tokio::test]
    async fn a_step_sees_env_and_workspace_and_its_exit_code() {
        let docker = docker();
        let image = busybox(&docker).await;
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("hello.txt"), "hello from the workspace\n").unwrap();
        let label = unique_name("exit");
        let labels = pairs(&[(LABEL, &label)]);
        let env = pairs(&[("GREETING", "hi there"), ("OTHER", "a=b")]);
        let (_tx, rx) = watch::channel(Stop::No);
        let mut out = Vec::new();
        let ending = docker
            .run_step(
                StepSpec {
                    image,
                    script: "echo \"greeting=$GREETING other=$OTHER\"\ncat hello.txt\npwd\n\
                             echo to-stderr >&2\necho made > made.txt\nexit 3",
                    workspace: ws.path(),
                    env: &env,
                    labels: &labels,
                    name: None,
                    user: None,
                    timeout: Duration::from_secs(60),
                    grace: Duration::from_secs(1),
                },
                rx,
                |b| out.extend_from_slice(b),
            )
            .await;
        let out = String::from_utf8_lossy(&out);
        assert_eq!(ending, Ending::Exited(3), "{out}");
        for expected in [
            "greeting=hi there other=a=b\n",
            "hello from the workspace\n",
            "/workspace\n",
            "to-stderr\n",
        ] {
            assert!(out.contains(expected), "{expected:?} not in {out:?}");
        }
        assert_eq!(
            std::fs::read_to_string(ws.path().join("made.txt")).unwrap(),
            "made\n"
        );
        assert!(leftovers(&docker, &label).await.is_empty());
    }

    #[tokio::test]
    async fn sh_e_stops_at_the_first_failure() {
        let docker = docker();
        let image = busybox(&docker).await;
        let ws = tempfile::tempdir().unwrap();
        let (ending, out) = run(
            &docker,
            image,
            "echo one\nfalse\necho two",
            ws.path(),
            &[],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(ending, Ending::Exited(1));
        assert_eq!(out, "one\n");
    }

    async fn stop_mid_step(script: &str, grace: Duration) -> Duration {
        let docker = docker();
        let image = busybox(&docker).await;
        let ws = tempfile::tempdir().unwrap();
        let label = unique_name("stop");
        let labels = pairs(&[(LABEL, &label)]);
        let (tx, rx) = watch::channel(Stop::No);
        let stopped_at: Cell<Option<Instant>> = Cell::new(None);
        let ending = docker
            .run_step(
                StepSpec {
                    image,
                    script,
                    workspace: ws.path(),
                    env: &[],
                    labels: &labels,
                    name: None,
                    user: None,
                    timeout: Duration::from_secs(120),
                    grace,
                },
                rx,
                |b| {
                    if String::from_utf8_lossy(b).contains("sleeping") && stopped_at.get().is_none()
                    {
                        stopped_at.set(Some(Instant::now()));
                        tx.send(Stop::Cancel).unwrap();
                    }
                },
            )
            .await;
        let took = stopped_at
            .get()
            .expect("the step never said it was sleeping")
            .elapsed();
        assert_eq!(ending, Ending::Stopped(Stop::Cancel));
        assert!(took < grace + Duration::from_secs(2), "took {took:?}");
        assert!(leftovers(&docker, &label).await.is_empty());
        took
    }

    #[tokio::test]
    async fn a_stop_reaches_the_running_step() {
        // tini passes SIGTERM on to sh, which dies at once.
        let took = stop_mid_step("echo sleeping; sleep 300", Duration::from_secs(3)).await;
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[tokio::test]
    async fn a_step_that_ignores_sigterm_is_killed_after_the_grace() {
        let took = stop_mid_step(
            "trap '' TERM; echo sleeping; sleep 300",
            Duration::from_secs(2),
        )
        .await;
        assert!(took >= Duration::from_millis(1900), "took {took:?}");
    }

    #[tokio::test]
    async fn a_step_times_out() {
        let docker = docker();
        let image = busybox(&docker).await;
        let ws = tempfile::tempdir().unwrap();
        let label = unique_name("timeout");
        let labels = pairs(&[(LABEL, &label)]);
        let started = Instant::now();
        let (ending, out) = run(
            &docker,
            image,
            "echo before; sleep 300",
            ws.path(),
            &labels,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(ending, Ending::TimedOut);
        assert_eq!(out, "before\n");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        assert!(leftovers(&docker, &label).await.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_step_leaves_no_container() {
        let docker = docker();
        let image = busybox(&docker).await;
        let ws = tempfile::tempdir().unwrap();
        let label = unique_name("dropped");
        let labels = pairs(&[(LABEL, &label)]);
        let (_tx, rx) = watch::channel(Stop::No);
        let step = docker.run_step(
            StepSpec {
                image,
                script: "sleep 300",
                workspace: ws.path(),
                env: &[],
                labels: &labels,
                name: None,
                user: None,
                timeout: Duration::from_secs(120),
                grace: Duration::from_secs(1),
            },
            rx,
            |_| {},
        );
        // Dropped while running: the removal is spawned on the runtime.
        assert!(
            tokio::time::timeout(Duration::from_secs(3), step)
                .await
                .is_err()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !leftovers(&docker, &label).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the dropped step's container stayed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_image_is_a_clear_error() {
        let docker = docker();
        let ws = tempfile::tempdir().unwrap();
        let label = unique_name("missing");
        let labels = pairs(&[(LABEL, &label)]);
        // A registry that is not there: fails fast, no internet needed.
        let image = "127.0.0.1:5999/slipway-test/nope:1";
        let (ending, _) = run(
            &docker,
            image,
            "true",
            ws.path(),
            &labels,
            Duration::from_secs(60),
        )
        .await;
        let Ending::SpawnFailed(message) = ending else {
            panic!("{ending:?}");
        };
        assert!(
            message.contains(&format!(
                "image {image} not found locally and cannot be pulled: "
            )),
            "{message}"
        );
        assert!(leftovers(&docker, &label).await.is_empty());
    }

    #[tokio::test]
    async fn builds_with_args_labels_and_every_tag() {
        let docker = docker();
        let context = busybox_context(
            "ARG GREETING\nRUN echo \"greeting: $GREETING\" > /greeting.txt && echo \"built with $GREETING\"\n",
        );
        let suffix = unique_name("b");
        let tags = vec![
            format!("{REGISTRY}/slipway-test-build:{suffix}"),
            format!("slipway-test-build:{suffix}-second"),
        ];
        let mut lines = Vec::new();
        let id = docker
            .build(
                BuildSpec {
                    context: context.path(),
                    dockerfile: "Dockerfile",
                    build_args: &pairs(&[("GREETING", "hello-arg")]),
                    labels: &pairs(&[("org.example.commit", "abc123")]),
                    tags: &tags,
                },
                |l| lines.push(l.to_owned()),
            )
            .await
            .unwrap();
        assert!(id.starts_with("sha256:"), "{id}");
        assert!(
            lines.iter().any(|l| l == "built with hello-arg"),
            "{lines:#?}"
        );
        let api = docker.api().await.unwrap();
        for tag in &tags {
            let image = api.inspect_image(tag).await.unwrap();
            assert_eq!(image.id.as_deref(), Some(id.as_str()));
            let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
            assert_eq!(
                labels.get("org.example.commit").map(String::as_str),
                Some("abc123")
            );
        }
        let ws = tempfile::tempdir().unwrap();
        let (ending, out) = run(
            &docker,
            &tags[1],
            "cat /greeting.txt",
            ws.path(),
            &[],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            (ending, out.as_str()),
            (Ending::Exited(0), "greeting: hello-arg\n")
        );
        for tag in &tags {
            assert_eq!(
                docker.remove_image(tag).await.unwrap(),
                ImageRemoval::Removed
            );
            assert_eq!(
                docker.remove_image(tag).await.unwrap(),
                ImageRemoval::Missing
            );
        }
    }

    #[tokio::test]
    async fn a_failing_build_is_an_error_with_its_output() {
        let docker = docker();
        let context = busybox_context("RUN echo about-to-fail && exit 7\n");
        let err = docker
            .build(
                BuildSpec {
                    context: context.path(),
                    dockerfile: "Dockerfile",
                    build_args: &[],
                    labels: &[],
                    tags: &[format!("slipway-test-failing:{}", unique_name("f"))],
                },
                |_| {},
            )
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Build { .. }), "{err:?}");
        assert!(message.contains("about-to-fail"), "{message}");
        assert!(message.contains("non-zero code: 7"), "{message}");

        let err = docker
            .build(
                BuildSpec {
                    context: context.path(),
                    dockerfile: "nowhere/Dockerfile",
                    build_args: &[],
                    labels: &[],
                    tags: &[],
                },
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Dockerfile"), "{err}");
    }

    #[tokio::test]
    async fn an_unreadable_context_is_named() {
        let docker = docker();
        let missing = Path::new("/nonexistent/slipway-test-context");
        let err = docker
            .build(
                BuildSpec {
                    context: missing,
                    dockerfile: "Dockerfile",
                    build_args: &[],
                    labels: &[],
                    tags: &[],
                },
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Context { path, .. } if path == missing),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_stop_sent_before_the_step_starts_counts() {
        let docker = docker();
        let ws = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Stop::No);
        tx.send(Stop::Abort).unwrap();
        let ending = docker
            .run_step(
                StepSpec {
                    image: BUSYBOX,
                    script: "true",
                    workspace: ws.path(),
                    env: &[],
                    labels: &[],
                    name: None,
                    user: None,
                    timeout: Duration::from_secs(10),
                    grace: Duration::from_secs(1),
                },
                rx,
                |_| {},
            )
            .await;
        assert_eq!(ending, Ending::Stopped(Stop::Abort));
    }

    #[tokio::test]
    async fn a_dropped_image_that_is_in_use_is_reported() {
        let docker = docker();
        let image = busybox(&docker).await;
        let tag = format!("slipway-test-inuse:{}", unique_name("u"));
        docker
            .api()
            .await
            .unwrap()
            .tag_image(
                image,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo("slipway-test-inuse")
                        .tag(tag.rsplit_once(':').unwrap().1)
                        .build(),
                ),
            )
            .await
            .unwrap();
        let name = unique_name("inuse");
        docker
            .start_service(&ServiceSpec {
                name: name.clone(),
                image: tag.clone(),
                command: vec!["sleep".into(), "300".into()],
                labels: pairs(&[(LABEL, "inuse")]),
                ..Default::default()
            })
            .await
            .unwrap();
        // The container refers to the image by id, so the id is what is in use.
        let id = docker
            .container_state(&name)
            .await
            .unwrap()
            .unwrap()
            .image_id;
        let removal = docker.remove_image(&id).await.unwrap();
        assert!(
            matches!(&removal, ImageRemoval::InUse(m) if m.contains("conflict")),
            "{removal:?}"
        );
        docker.remove_container(&name).await.unwrap();
        assert_eq!(
            docker.remove_image(&tag).await.unwrap(),
            ImageRemoval::Removed
        );
    }

    #[tokio::test]
    async fn pushes_and_deploys_by_digest() {
        let docker = docker();
        let base = busybox(&docker).await;
        let _registry = registry().await;
        let api = docker.api().await.unwrap();
        let suffix = unique_name("app");
        let repo = format!("{REGISTRY}/slipway-test-app");
        let tag = format!("{repo}:{suffix}");
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {base}\nRUN mkdir /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"),
        )
        .unwrap();
        docker
            .build(
                BuildSpec {
                    context: context.path(),
                    dockerfile: "Dockerfile",
                    build_args: &[],
                    labels: &[],
                    tags: std::slice::from_ref(&tag),
                },
                |_| {},
            )
            .await
            .unwrap();

        let mut progress = Vec::new();
        let digest = docker
            .push(&tag, None, |l| progress.push(l.to_owned()))
            .await
            .unwrap();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest} {progress:#?}"
        );
        let (status, headers, _) = http_get(
            REGISTRY,
            &format!("/v2/slipway-test-app/manifests/{suffix}"),
            &[(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let served = headers
            .iter()
            .find(|(k, _)| k == "docker-content-digest")
            .map(|(_, v)| v.as_str());
        assert_eq!(served, Some(digest.as_str()));

        // Gone locally, so that the deploy has to pull it by digest.
        assert_eq!(
            docker.remove_image(&tag).await.unwrap(),
            ImageRemoval::Removed
        );
        let by_digest = format!("{repo}@{digest}");
        assert_eq!(
            status_of(&api.inspect_image(&by_digest).await.unwrap_err()),
            Some(404)
        );

        let www = tempfile::tempdir().unwrap();
        std::fs::write(
            www.path().join("index.html"),
            "hello from the host volume\n",
        )
        .unwrap();
        let port = free_port();
        let label = unique_name("svc");
        let name = format!("slipway-test-{label}");
        let network = format!("slipway-test-net-{label}");
        let volume = format!("slipway-test-vol-{label}");
        let id = docker
            .start_service(&ServiceSpec {
                name: name.clone(),
                image: by_digest.clone(),
                env: pairs(&[("MODE", "test")]),
                ports: vec![format!("127.0.0.1:{port}:8080")],
                volumes: vec![
                    format!("{}:/www:ro", www.path().display()),
                    format!("{volume}:/data"),
                ],
                network: Some(network.clone()),
                restart: Some("unless-stopped".into()),
                labels: pairs(&[(LABEL, &label)]),
                ..Default::default()
            })
            .await
            .unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            match http_get(&format!("127.0.0.1:{port}"), "/index.html", &[]).await {
                Ok((200, _, body)) => break body,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "no answer from the service: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(body, "hello from the host volume\n");

        let state = docker.container_state(&name).await.unwrap().unwrap();
        assert!(state.running);
        assert_eq!(state.id, id);
        assert_eq!(state.image, by_digest);
        assert_eq!(state.exit_code, None);
        assert_eq!(state.labels.get(LABEL), Some(&label));
        assert_eq!(leftovers(&docker, &label).await.len(), 1);

        let old = format!("{name}-old");
        docker.rename_container(&name, &old).await.unwrap();
        assert!(docker.container_state(&name).await.unwrap().is_none());
        assert_eq!(
            docker.container_state(&old).await.unwrap().unwrap().name,
            old
        );
        docker
            .stop_container(&old, Duration::from_secs(2))
            .await
            .unwrap();
        let stopped = docker.container_state(&old).await.unwrap().unwrap();
        assert!(
            !stopped.running && stopped.status == "exited",
            "{stopped:?}"
        );
        docker
            .stop_container(&old, Duration::from_secs(2))
            .await
            .unwrap();
        docker.remove_container(&old).await.unwrap();
        docker.remove_container(&old).await.unwrap();
        assert!(docker.container_state(&old).await.unwrap().is_none());
        assert!(leftovers(&docker, &label).await.is_empty());
        assert!(matches!(
            docker.stop_container(&old, Duration::from_secs(1)).await,
            Err(Error::NoSuchContainer(_))
        ));

        api.remove_network(&network).await.unwrap();
        api.remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();
        assert_eq!(
            docker.remove_image(&by_digest).await.unwrap(),
            ImageRemoval::Removed
        );
    }

    #[tokio::test]
    async fn push_errors_are_errors_and_credentials_work() {
        let docker = docker();
        let base = busybox(&docker).await;
        let api = docker.api().await.unwrap();
        let secured = format!("127.0.0.1:{}", free_port());
        let _auth_registry = start_registry(&secured, Some(("ci", "s3cret"))).await;
        let cases = [
            ("127.0.0.1:5999", None, Err("connection refused")),
            (&secured, Some(("ci", "wrong")), Err("unauthorized")),
            (&secured, None, Err("no basic auth credentials")),
            (&secured, Some(("ci", "s3cret")), Ok::<(), &str>(())),
        ];
        for (registry, credentials, expected) in cases {
            let repo = format!("{registry}/slipway-test-push");
            let tag = unique_name("p");
            api.tag_image(
                base,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(&repo)
                        .tag(&tag)
                        .build(),
                ),
            )
            .await
            .unwrap();
            let reference = format!("{repo}:{tag}");
            let started = Instant::now();
            let pushed = docker.push(&reference, credentials, |_| {}).await;
            match (pushed, expected) {
                (Ok(digest), Ok(())) => assert!(digest.starts_with("sha256:"), "{digest}"),
                (Err(err @ Error::Push { .. }), Err(words)) => {
                    assert!(err.to_string().contains(words), "{err}");
                }
                (pushed, expected) => {
                    panic!("{reference} {credentials:?}: {pushed:?}, expected {expected:?}")
                }
            }
            // A refusing registry must not keep the runner in the engine's retries.
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(
                docker.remove_image(&reference).await.unwrap(),
                ImageRemoval::Removed
            );
        }
    }

    #[tokio::test]
    async fn a_service_that_exits_shows_its_code_and_last_words() {
        let docker = docker();
        let image = busybox(&docker).await;
        let name = unique_name("exits");
        docker
            .start_service(&ServiceSpec {
                name: name.clone(),
                image: image.to_owned(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    // One stream: stdout and stderr reach the log through
                    // separate pipes, in no guaranteed order.
                    "echo starting >&2; echo config missing >&2; exit 4".into(),
                ],
                restart: Some("no".into()),
                labels: pairs(&[(LABEL, "exits")]),
                ..Default::default()
            })
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = loop {
            let state = docker.container_state(&name).await.unwrap().unwrap();
            if !state.running {
                break state;
            }
            assert!(Instant::now() < deadline, "still running: {state:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(state.exit_code, Some(4), "{state:?}");
        assert_eq!(state.status, "exited");
        assert_eq!(
            docker.container_logs_tail(&name, 1).await.unwrap(),
            "config missing\n"
        );
        assert_eq!(
            docker.container_logs_tail(&name, 10).await.unwrap(),
            "starting\nconfig missing\n"
        );
        docker.remove_container(&name).await.unwrap();
        assert!(matches!(
            docker.container_logs_tail(&name, 1).await,
            Err(Error::NoSuchContainer(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_service_spec_is_refused_before_anything_is_made() {
        let docker = docker();
        let bad = ServiceSpec {
            name: unique_name("bad"),
            image: BUSYBOX.into(),
            ports: vec!["80:http".into()],
            ..Default::default()
        };
        assert!(matches!(
            docker.start_service(&bad).await,
            Err(Error::Invalid { .. })
        ));
        assert!(docker.container_state(&bad.name).await.unwrap().is_none());
    }
}
