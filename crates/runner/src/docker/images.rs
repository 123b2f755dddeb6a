//! Images: builds (the context streamed to the engine by `context`), which
//! may reuse the layers of an earlier image, pushes that report the digest
//! the registry got, pulls of an image the engine lacks, and the listing and
//! removal that a deploy's retention needs; with the splitting of references
//! all of these rely on.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use domain::image::ImageRef;
use futures_util::StreamExt;

use super::context::{read_ignore, tar_stream};
use super::{DRAIN_LIMIT, Docker, Error, engine, engine_message, status_of};

/// What an image is built from.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    /// Host directory sent as the build context, without what its
    /// `.dockerignore` leaves out.
    pub context: &'a Path,
    /// Path of the Dockerfile relative to the context.
    pub dockerfile: &'a str,
    /// `--build-arg`s, for the Dockerfile's `ARG`s.
    pub build_args: &'a [(String, String)],
    /// Put on the image, so that retention can tell which task built it.
    pub labels: &'a [(String, String)],
    /// Full references, e.g. "127.0.0.1:5000/app:abc123".
    pub tags: &'a [String],
    /// Images whose layers the build may reuse (`--cache-from`), which the
    /// engine must have. With any, the engine's other cached layers count
    /// only when these images descend from them.
    pub cache_from: &'a [String],
}

/// What `remove_image` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRemoval {
    /// Untagged, and deleted if nothing else referred to it.
    Removed,
    /// There was no such reference: nothing to do.
    Missing,
    /// A container uses it; the engine's message.
    InUse(String),
}

/// Where a build gets the layers of an earlier image from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSource {
    /// This engine built the image: its own build cache has the layers.
    Built,
    /// The engine has the image from a registry (pulled now or before): a
    /// build reuses its layers only when it names it in `cache_from`.
    Pulled,
}

/// Builds may upload a large context before the engine answers at all.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Lines of build output kept to explain a failed build.
const BUILD_OUTPUT_TAIL: usize = 30;

impl Docker {
    /// Builds `spec.context` with the classic builder and tags it with every
    /// tag; returns the image id ("sha256:..."). A malformed `.dockerignore`
    /// fails the build before the engine is asked.
    pub async fn build(
        &self,
        spec: BuildSpec<'_>,
        mut output: impl FnMut(&str),
    ) -> Result<String, Error> {
        let rules = read_ignore(spec.context, spec.dockerfile)?;
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
        if !spec.cache_from.is_empty() {
            options = options.cachefrom(&spec.cache_from.to_vec());
        }

        let (tar_task, chunks) = tar_stream(spec.context.to_path_buf(), rules);
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
            let image = tag_reference("tag", tag)?;
            api.tag_image(
                &image_id,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(&image.repository())
                        .tag(image.tag.as_deref().unwrap_or("latest"))
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
        let image = tag_reference("reference to push", reference)?;
        let tag = image.tag.as_deref().unwrap_or("latest");
        let stream = api.push_image(
            &image.repository(),
            Some(PushImageOptionsBuilder::default().tag(tag).build()),
            login(&image, credentials),
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
        let prefix = format!("{}@", parse_reference("image", reference)?.repository());
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

    /// Readies `reference` to lend its layers to a build: pulled (with the
    /// registry login) when the engine lacks it; and how the build reaches
    /// them.
    pub async fn layer_source(
        &self,
        reference: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<LayerSource, Error> {
        let api = self.api().await?;
        ensure_image(api, reference, credentials).await?;
        // A local build keeps an image per step, which the history names;
        // an image from a registry has only its own, the rest "<missing>".
        let history = api.image_history(reference).await.map_err(engine)?;
        Ok(match history.get(1) {
            Some(step) if !step.id.is_empty() && step.id != "<missing>" => LayerSource::Built,
            _ => LayerSource::Pulled,
        })
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

/// Pulls `image` unless the engine has it.
pub(super) async fn ensure_image(
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
    let parsed = parse_reference("image", image)?;
    // Without a tag the engine would pull every tag of the repository.
    let options = match &parsed.digest {
        Some(_) => CreateImageOptionsBuilder::default()
            .from_image(image)
            .build(),
        None => CreateImageOptionsBuilder::default()
            .from_image(&parsed.repository())
            .tag(parsed.tag.as_deref().unwrap_or("latest"))
            .build(),
    };
    let stream = api.create_image(Some(options), None, login(&parsed, credentials));
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

/// `value` as an image reference, or the error that names it as `what`.
fn parse_reference(what: &'static str, value: &str) -> Result<ImageRef, Error> {
    ImageRef::parse(value).map_err(|_| Error::Invalid {
        what,
        value: value.to_owned(),
        reason: "not an image reference ([registry/]name[:tag][@digest])",
    })
}

/// `value` as a tag reference (`[registry/]name[:tag]`): a digest names
/// what is already pushed, it cannot be tagged or pushed to.
fn tag_reference(what: &'static str, value: &str) -> Result<ImageRef, Error> {
    let image = parse_reference(what, value)?;
    if image.digest.is_some() {
        return Err(Error::Invalid {
            what,
            value: value.to_owned(),
            reason: "a tag, not a digest reference",
        });
    }
    Ok(image)
}

/// The registry login for `image`, keyed as the engine keys credentials: by
/// the image's registry, Docker Hub's address when it has none.
fn login(image: &ImageRef, credentials: Option<(&str, &str)>) -> Option<DockerCredentials> {
    credentials.map(|(username, password)| DockerCredentials {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        serveraddress: Some(
            image
                .registry
                .as_deref()
                .unwrap_or("https://index.docker.io/v1/")
                .to_owned(),
        ),
        ..Default::default()
    })
}

/// "abc: digest: sha256:... size: 528" -> "sha256:...".
fn digest_in(status: &str) -> Option<&str> {
    let (_, after) = status.split_once("digest: ")?;
    let digest = after.split_whitespace().next()?;
    digest.starts_with("sha256:").then_some(digest)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_in_where_the_image_lives() {
        let cases = [
            ("127.0.0.1:5000/app:abc", "127.0.0.1:5000"),
            ("localhost/a/b", "localhost"),
            ("library/busybox", "https://index.docker.io/v1/"),
            ("busybox", "https://index.docker.io/v1/"),
        ];
        for (image, server) in cases {
            let parsed = parse_reference("image", image).unwrap_or_else(|e| panic!("{e}"));
            let login = login(&parsed, Some(("u", "p"))).unwrap_or_default();
            assert_eq!(login.serveraddress.as_deref(), Some(server), "{image}");
            assert_eq!(login.username.as_deref(), Some("u"));
        }
        assert!(
            login(
                &parse_reference("image", "busybox").unwrap_or_else(|e| panic!("{e}")),
                None
            )
            .is_none()
        );
        assert!(matches!(
            parse_reference("tag", "app:"),
            Err(Error::Invalid { what: "tag", .. })
        ));
    }

    #[test]
    fn reads_the_pushed_digest_from_the_engine_status() {
        assert_eq!(
            digest_in("abc: digest: sha256:0123 size: 528"),
            Some("sha256:0123")
        );
        assert_eq!(digest_in("Pushed"), None);
    }

    #[test]
    fn splits_build_output_into_lines() {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        lines.feed("Step 1/2 : FROM", &mut |l: &str| got.push(l.to_owned()));
        lines.feed(" scratch\nStep 2/2\r\n", &mut |l: &str| {
            got.push(l.to_owned())
        });
        assert_eq!(got, ["Step 1/2 : FROM scratch", "Step 2/2"]);
    }
}
