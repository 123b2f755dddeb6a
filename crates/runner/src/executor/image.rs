//! The `image` step: the workflow's image built from the checkout with every
//! rendered tag, and pushed to the runner's registry.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use domain::image::{Digest, ImageRef};
use domain::mask::Masker;
use domain::push::CommitSha;
use domain::workflow::{ImageSpec, TemplateVars};

use crate::cache::seconds;
use crate::client::Claim;
use crate::confine;
use crate::context::Context;
use crate::docker::{BuildSpec, Docker, LayerSource};
use crate::lock::{FileLock, Kind};
use crate::ship::LogSink;

/// A rendered tag as Docker accepts it: `[A-Za-z0-9_.-]`, at most 128
/// characters, not starting with `.` or `-`; `None` when nothing is left.
fn docker_tag(rendered: &str) -> Option<String> {
    let tag: String = rendered
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| matches!(c, '.' | '-'))
        .take(128)
        .collect();
    (!tag.is_empty()).then_some(tag)
}

/// Where the image step writes its log, and what it must mask there.
#[derive(Clone, Copy)]
pub(super) struct Output<'a> {
    /// The task's log.
    pub sink: &'a LogSink,
    /// Build output may print secrets passed as build args.
    pub masker: &'a Masker,
    /// The image step's position, which its lines belong to.
    pub position: i32,
}

impl Output<'_> {
    /// One line of build or push output, masked.
    fn log(&self, line: &str) {
        self.sink.write(
            self.position,
            self.masker.mask(format!("{line}\n").as_bytes()),
        );
    }
}

/// What the image step pushed.
pub(super) struct Pushed {
    /// The first tag pushed, `registry/name:tag`.
    pub reference: String,
    /// The digest the registry gave the image.
    pub digest: Digest,
    /// `registry/name@digest`: what the deploys run.
    pub pinned: ImageRef,
}

/// Builds the workflow's image and pushes every tag.
pub(super) async fn build_and_push(
    ctx: &Context,
    claim: &Claim,
    image: &ImageSpec,
    workspace: &Path,
    commit: &str,
    out: Output<'_>,
) -> Result<Pushed, String> {
    let docker = ctx
        .docker
        .as_ref()
        .ok_or("this runner has no Docker Engine")?;
    let vars = template_vars(claim, commit)?;
    let repository = repository(ctx, image)?;
    let mut references: Vec<String> = Vec::new();
    for template in &image.tags {
        if let Some(tag) = docker_tag(&template.render(&vars)) {
            let reference = repository.tagged(&tag).to_string();
            if !references.contains(&reference) {
                references.push(reference);
            }
        }
    }
    let Some(first) = references.first().cloned() else {
        return Err("image failed: no tag left after rendering image.tags".to_owned());
    };
    let started = Instant::now();
    // Old images of the repository are not removed while it builds.
    let building = images_lock(ctx, &repository.repository()).await;
    build(docker, claim, image, workspace, &vars, &references, out).await?;
    drop(building);
    out.sink.line(
        out.position,
        &format!("built in {}", seconds(started.elapsed())),
    );
    let credentials = credentials(claim);
    let mut digest = String::new();
    let started = Instant::now();
    for reference in &references {
        out.sink.line(out.position, &format!("pushing {reference}"));
        let pushed = docker
            .push(reference, credentials, |line| out.log(line))
            .await
            .map_err(|e| format!("image push failed: {e}"))?;
        if digest.is_empty() {
            digest = pushed;
        }
    }
    let digest = Digest::parse(&digest).map_err(|e| format!("image push failed: {e}"))?;
    out.sink.line(
        out.position,
        &format!("pushed in {}", seconds(started.elapsed())),
    );
    Ok(Pushed {
        reference: first,
        pinned: repository.pinned(&digest),
        digest,
    })
}

/// Builds a pull request's image, which is never pushed, under one local
/// tag of its own that is removed again afterwards: the workflow's tags on
/// this engine (`latest`, a branch's) keep naming what the repository's own
/// branches built, never a pull request's code.
pub(super) async fn build_unpushed(
    ctx: &Context,
    claim: &Claim,
    image: &ImageSpec,
    workspace: &Path,
    commit: &str,
    out: Output<'_>,
) -> Result<(), String> {
    let docker = ctx
        .docker
        .as_ref()
        .ok_or("this runner has no Docker Engine")?;
    let vars = template_vars(claim, commit)?;
    let reference = repository(ctx, image)?
        .tagged(&pull_request_tag(claim.lease.task_id))
        .to_string();
    let built = build(
        docker,
        claim,
        image,
        workspace,
        &vars,
        std::slice::from_ref(&reference),
        out,
    )
    .await;
    // The layers stay in the engine's build cache.
    if let Err(e) = docker.remove_image(&reference).await {
        tracing::debug!(error = %e, reference, "cannot remove a pull request's image");
    }
    built
}

/// What `image.tags` and `build_args` placeholders stand for in this task.
fn template_vars(claim: &Claim, commit: &str) -> Result<TemplateVars, String> {
    Ok(TemplateVars {
        sha: CommitSha::parse(commit).map_err(|e| format!("invalid commit {commit}: {e}"))?,
        branch: claim.branch.clone(),
        tag: claim.tag.clone(),
        task_id: claim.lease.task_id,
    })
}

/// The local tag of a pull request task's image.
fn pull_request_tag(task_id: i64) -> String {
    format!("pr-task-{task_id}")
}

/// `docker build` of the workflow's image with the given references as its
/// tags and the build args rendered with `vars`.
async fn build(
    docker: &Docker,
    claim: &Claim,
    image: &ImageSpec,
    workspace: &Path,
    vars: &TemplateVars,
    references: &[String],
    out: Output<'_>,
) -> Result<(), String> {
    let build_args: Vec<(String, String)> = image
        .build_args
        .iter()
        .map(|(k, v)| (k.clone(), v.render(vars)))
        .collect();
    // Not the deploy labels: containers inherit their image's labels.
    let labels = vec![
        ("slipway.image.workflow".to_owned(), claim.workflow.clone()),
        (
            "slipway.image.task".to_owned(),
            claim.lease.task_id.to_string(),
        ),
        ("slipway.image.commit".to_owned(), vars.sha.to_string()),
    ];
    let failed = |e: String| format!("image build failed: {e}");
    let context = confine::resolve(workspace, Path::new(&image.context), "image.context")
        .map_err(failed)?
        .ok_or_else(|| {
            failed(format!(
                "image.context \"{}\" does not exist",
                image.context
            ))
        })?;
    // A missing Dockerfile is the engine's to report.
    let dockerfile = Path::new(&image.context).join(&image.dockerfile);
    confine::resolve(workspace, &dockerfile, "image.dockerfile").map_err(failed)?;
    let cache_from = layer_cache(docker, claim, out).await;
    if let Some(first) = references.first() {
        out.sink.line(out.position, &format!("building {first}"));
    }
    let spec = BuildSpec {
        context: &context,
        dockerfile: &image.dockerfile,
        build_args: &build_args,
        labels: &labels,
        tags: references,
        cache_from: &cache_from,
    };
    docker
        .build(spec, |line| out.log(line))
        .await
        .map(|_| ())
        .map_err(|e| format!("image build failed: {e}"))
}

/// The image the build names as its layer cache (`cache_from`): the
/// workflow's previous image, pulled if the engine lacks it. None when the
/// engine built that image itself (its own cache has the layers, and naming
/// an image would leave out those of a multi-stage build's other stages), or
/// when it cannot be had, which costs only time.
async fn layer_cache(docker: &Docker, claim: &Claim, out: Output<'_>) -> Vec<String> {
    let Some(previous) = &claim.previous_image else {
        return Vec::new();
    };
    match docker.layer_source(previous, credentials(claim)).await {
        Ok(LayerSource::Pulled) => {
            out.log(&format!("layer cache: reusing the layers of {previous}"));
            vec![previous.clone()]
        }
        Ok(LayerSource::Built) => {
            out.log(&format!(
                "layer cache: {previous} was built here, the engine's cache has its layers"
            ));
            Vec::new()
        }
        Err(e) => {
            out.log(&format!(
                "layer cache: cannot use {previous} ({e}); building without it"
            ));
            Vec::new()
        }
    }
}

/// A shared lock on the repository's local images while one is built
/// ([`Context::image_lock`]); `None` when the lock file cannot be used,
/// which leaves the build as it was without one.
async fn images_lock(ctx: &Context, repository: &str) -> Option<FileLock> {
    let path = ctx.image_lock(repository);
    let waited = tokio::task::spawn_blocking(move || {
        FileLock::wait(&path, Kind::Shared, &AtomicBool::new(false), || {})
    })
    .await;
    match waited {
        Ok(Ok(lock)) => lock,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, repository, "cannot lock the repository's images");
            None
        }
        Err(_) => None,
    }
}

/// Where the workflow's image lives: its name under the runner's registry.
pub(super) fn repository(ctx: &Context, image: &ImageSpec) -> Result<ImageRef, String> {
    let registry = ctx.registry.trim_end_matches('/');
    ImageRef::parse(&format!("{registry}/{}", image.name))
        .map_err(|e| format!("SLIPWAY_REGISTRY and image.name make no image reference: {e}"))
}

/// The claim's registry login, as the engine takes it.
pub(super) fn credentials(claim: &Claim) -> Option<(&str, &str)> {
    claim
        .registry
        .as_ref()
        .map(|(user, password)| (user.as_str(), password.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_tags_become_docker_tags() {
        assert_eq!(docker_tag("4f1c2a9b3d5e").as_deref(), Some("4f1c2a9b3d5e"));
        assert_eq!(docker_tag("release-1.2").as_deref(), Some("release-1.2"));
        assert_eq!(docker_tag("feat/x@y").as_deref(), Some("feat-x-y"));
        assert_eq!(docker_tag("-.x").as_deref(), Some("x"));
        assert_eq!(docker_tag(""), None);
        assert_eq!(docker_tag(&"a".repeat(200)).map(|t| t.len()), Some(128));
        // A pull request's own tag is a valid one, never a workflow's.
        assert_eq!(
            docker_tag(&pull_request_tag(42)).as_deref(),
            Some("pr-task-42")
        );
    }
}
