//! The runner's handle on the Docker Engine, through `bollard`: where the
//! engine is, which API version to speak with it, and the error every engine
//! call returns. What the engine is asked to do lives in the submodules:
//! `steps` (a step in a container), `images` (build, push, pull, remove),
//! `context` (the build context's tar, without what `.dockerignore`, read by
//! `ignore`, leaves out) and `containers` (the long-running containers of a
//! deploy).
//!
//! The API version is negotiated on first use: bollard 0.21 speaks 1.53 by
//! default, which an older engine (20.10 speaks 1.41) refuses.

mod containers;
mod context;
mod ignore;
mod images;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{API_DEFAULT_VERSION, ClientVersion};
use tokio::sync::OnceCell;

pub use crate::process::{Ending, Stop};
pub use containers::{ContainerState, ServiceSpec};
pub use images::{BuildSpec, ImageRemoval, LayerSource};
pub use steps::StepSpec;

/// What can go wrong with an engine call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Docker::connect` was given an address it cannot use.
    #[error("invalid docker host {host:?}: {reason}")]
    Host { host: String, reason: String },
    /// The engine refused a call or could not be reached.
    #[error("docker engine: {}", engine_message(.0))]
    Engine(#[source] BollardError),
    /// A call that acts on one container named one the engine does not have.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// Neither the engine nor the registry had the image.
    #[error("image {image} not found locally and cannot be pulled: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// The build context could not be read (and tarred) from the host.
    #[error("cannot read the build context {}: {source}", .path.display())]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The context's `.dockerignore` cannot be read, or Docker would refuse it.
    #[error(transparent)]
    Ignore(#[from] context::ReadError),
    /// The build failed; `output` is its last lines, to show the user why.
    #[error("build failed: {message}{}", last_lines(.output))]
    Build { message: String, output: String },
    /// The registry did not take the push.
    #[error("push of {reference} failed: {message}")]
    Push { reference: String, message: String },
    /// A spec the engine would reject (or misread), refused before any call.
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

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// bollard's default per-request timeout (for the response headers).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long what is left of a finished stream (a step's output, a build's
/// tar thread) may take before it is given up.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

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
    /// Where the engine is: reconnected to at the version it names.
    target: Target,
    /// At bollard's default version; used to negotiate, nothing else.
    client: bollard::Docker,
    /// At a version the engine accepts, made by the first call.
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

    /// The API version this handle speaks, negotiated with the engine on
    /// first use: bollard's default or the engine's maximum, whichever is
    /// lower.
    pub async fn api_version(&self) -> Result<ClientVersion, Error> {
        Ok(self.api().await?.client_version())
    }
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

/// Engine stop timeouts are whole seconds; round up.
fn grace_secs(grace: Duration) -> i32 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_maximum_version_from_the_engine_refusal() {
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
    }

    #[test]
    fn rejects_unknown_hosts() {
        assert!(Docker::connect(Some("ftp://x")).is_err());
        assert!(Docker::connect(Some("tcp://127.0.0.1:1")).is_ok());
    }
}
