//! Test images: no image can be pulled here, so the base image is built
//! `FROM scratch` around the static busybox of Debian's busybox-static.
//! With what tests of steps, images and deploys share around them: unique
//! names, free ports, and what the registry serves.

use runner::docker::{BuildSpec, Docker};

/// The base image steps and test apps run on.
pub const BUSYBOX: &str = "slipway-test-busybox:latest";

/// A build context with the static busybox and a Dockerfile that installs
/// it, followed by the instructions in `extra`.
pub fn busybox_context(extra: &str) -> tempfile::TempDir {
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::copy("/bin/busybox", context.path().join("busybox"))
        .expect("/bin/busybox (Debian package busybox-static)");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}"
        ),
    )
    .expect("write Dockerfile");
    context
}

/// A build of the `Dockerfile` at the root of `context`, with no build
/// args or labels: what most tests need.
pub fn plain_build<'a>(context: &'a std::path::Path, tags: &'a [String]) -> BuildSpec<'a> {
    BuildSpec {
        context,
        dockerfile: "Dockerfile",
        build_args: &[],
        labels: &[],
        tags,
        cache_from: &[],
    }
}

/// Builds [`BUSYBOX`] (cheap when the engine has the layers cached).
pub async fn busybox(docker: &Docker) -> &'static str {
    let context = busybox_context("");
    docker
        .build(plain_build(context.path(), &[BUSYBOX.to_owned()]), |_| {})
        .await
        .expect("the busybox base image builds");
    BUSYBOX
}

/// A connection to the local engine.
pub fn docker() -> Docker {
    Docker::connect(None).expect("docker connection")
}

/// A name no other test, nor another run, uses: for containers, networks,
/// volumes, tags and label values.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The digest the registry serves for `name:tag`, from its HTTP API.
pub async fn registry_digest(registry: &str, name: &str, tag: &str) -> Option<String> {
    registry_manifest(registry, name, tag).await.ok()?.1
}

/// How the registry answers a request for the manifest of `name:tag`: the
/// HTTP status, and the digest it serves (`Docker-Content-Digest`).
pub async fn registry_manifest(
    registry: &str,
    name: &str,
    tag: &str,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let resp = reqwest::Client::new()
        .get(format!("http://{registry}/v2/{name}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await?;
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((resp.status().as_u16(), digest))
}

/// A port nothing listens on now, for a deployed app. It is drawn at
/// random below Linux's ephemeral range (32768 and up): a port the kernel
/// handed out for `bind(0)` can be handed out again, to another test's
/// listener or outgoing connection, before Docker binds it for the app.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    const LOW: u16 = 20000;
    const HIGH: u16 = 32000;
    let seed = RandomState::new();
    for attempt in 0u32..1000 {
        let port = LOW + (seed.hash_one(attempt) % u64::from(HIGH - LOW)) as u16;
        // The wildcard address conflicts with a listener on any address.
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {LOW} to {HIGH}")
}

/// A test app's repository files: busybox httpd serving /www; `health` is
/// the body of /health (absent: the image has no /health, a 404), `cmd`
/// replaces the server.
pub fn app(health: Option<&str>, cmd: Option<&str>) -> Vec<(&'static str, String)> {
    let remove = if health.is_none() {
        "RUN rm /www/health\n"
    } else {
        ""
    };
    vec![
        (
            "Dockerfile",
            format!(
                "FROM {BUSYBOX}\nCOPY www /www\n{remove}CMD {}\n",
                cmd.unwrap_or(
                    "[\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]"
                )
            ),
        ),
        ("www/index.html", "hello\n".to_owned()),
        ("www/health", health.unwrap_or("gone\n").to_owned()),
    ]
}

/// Removes the named containers when dropped, whatever the test did.
pub struct Cleanup(
    /// The containers' names, as the test made them.
    pub Vec<String>,
);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", name])
                .output();
        }
    }
}
