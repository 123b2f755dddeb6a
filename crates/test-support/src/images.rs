//! Test images: no image can be pulled here, so the base image is built
//! `FROM scratch` around the static busybox of Debian's busybox-static.

use runner::docker::{BuildSpec, Docker};

/// The base image steps and test apps run on.
pub const BUSYBOX: &str = "slipway-test-busybox:latest";

/// Builds [`BUSYBOX`] (cheap when the engine has the layers cached).
pub async fn busybox(docker: &Docker) -> &'static str {
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::copy("/bin/busybox", context.path().join("busybox"))
        .expect("/bin/busybox (Debian package busybox-static)");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("write Dockerfile");
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
        .expect("the busybox base image builds");
    BUSYBOX
}

/// A connection to the local engine.
pub fn docker() -> Docker {
    Docker::connect(None).expect("docker connection")
}

/// The digest the registry serves for `name:tag`, from its HTTP API.
pub async fn registry_digest(registry: &str, name: &str, tag: &str) -> Option<String> {
    let resp = reqwest::Client::new()
        .get(format!("http://{registry}/v2/{name}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .ok()?;
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
