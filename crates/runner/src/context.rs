//! What running a task needs from its runner: the orchestrator client, the
//! workspace root, the repositories' mirrors and the caches, the Docker
//! Engine and the settings that shape a task.
//! The executor and the deploys both read it, so it lives apart from both.

use std::path::PathBuf;
use std::time::Duration;

use sha2::Digest as _;

use crate::cache::Caches;
use crate::client::RunnerClient;
use crate::docker::Docker;
use crate::git::Mirrors;
use crate::route::Proxy;

/// Shared by every task the runner runs.
pub struct Context {
    /// The runner API, for the lease, the reports and the log.
    pub client: RunnerClient,
    /// Where each task gets a fresh checkout of its own.
    pub workspaces: PathBuf,
    /// The host's mirror of each repository, which checkouts come from.
    pub mirrors: Mirrors,
    /// The host's workflow caches.
    pub caches: Caches,
    /// How often a held lease is renewed.
    pub heartbeat: Duration,
    /// How long a stopped step gets between SIGTERM and SIGKILL.
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
    /// The edge proxy of this host, for routed environments.
    pub proxy: Proxy,
    /// `SLIPWAY_RUNNER_HOST`: recorded on every deployment.
    pub host: String,
    /// `SLIPWAY_LOG_LINE_MAX_BYTES`: where long lines of a task's log are cut.
    pub log_line_max: usize,
    /// Where the locks of the host's local images live.
    pub locks: PathBuf,
}

impl Context {
    /// The file whose lock guards a repository's local images on this host:
    /// shared while one of its images is built (the build reuses the layers
    /// of the earlier ones), exclusive while old ones are removed, which
    /// would take those layers from under a build.
    pub fn image_lock(&self, repository: &str) -> PathBuf {
        let hash = sha2::Sha256::digest(repository.as_bytes());
        let name = hex::encode(hash.get(..16).unwrap_or(&hash));
        self.locks.join(format!("images-{name}.lock"))
    }
}
