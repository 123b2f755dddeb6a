//! The runner's Docker module against the real engine: container steps
//! (output, exit codes, stops, timeouts, clean-up), builds, pushes (to the
//! registry `cargo xtask test` runs, and to one that wants credentials) and
//! the service containers of a deploy. Images are built FROM scratch around
//! the host's static busybox: nothing is pulled from the internet.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::API_DEFAULT_VERSION;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::TagImageOptionsBuilder;
use runner::docker::{
    BuildSpec, ContainerState, Docker, Ending, Error, ImageRemoval, ServiceSpec, StepSpec, Stop,
};
use test_support::auth_registry::AuthRegistry;
use test_support::images::{self, busybox_context};
use test_support::registry;
use tokio::sync::watch;

/// Put on every container made here, with a value per test, to find leftovers.
const LABEL: &str = "slipway-test.test";

/// A second client on the engine, at the version the runner negotiated, for
/// what the runner never asks of it (inspecting and tagging images, removing
/// networks and volumes): the tests check the runner's work through it.
async fn engine(docker: &Docker) -> bollard::Docker {
    let version = docker.api_version().await.expect("the engine answers");
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| h.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    // 120 s: bollard's default request timeout, as the runner uses it.
    bollard::Docker::connect_with_unix(&socket, 120, &version).expect("a client")
}

/// The owned pairs the specs take, from literals.
fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `script` as a step nobody stops: how it ended, and its output.
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
            |b: &[u8]| out.extend_from_slice(b),
        )
        .await;
    (ending, String::from_utf8_lossy(&out).into_owned())
}

/// The containers with this test's label value: none once its step is over.
async fn leftovers(docker: &Docker, label: &str) -> Vec<ContainerState> {
    docker
        .list_containers(&[(LABEL, label)])
        .await
        .expect("list containers")
}

#[tokio::test]
async fn negotiates_the_api_version() {
    let docker = images::docker();
    docker.ping().await.unwrap();
    let negotiated = docker.api_version().await.unwrap();
    // bollard's default (1.53) or the engine's maximum, whichever is lower.
    let server = engine(&docker)
        .await
        .version()
        .await
        .unwrap()
        .api_version
        .unwrap();
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("hello.txt"), "hello from the workspace\n").unwrap();
    let label = images::unique_name("exit");
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
            |b: &[u8]| out.extend_from_slice(b),
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let ws = tempfile::tempdir().expect("tempdir");
    let label = images::unique_name("stop");
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
            |b: &[u8]| {
                if String::from_utf8_lossy(b).contains("sleeping") && stopped_at.get().is_none() {
                    stopped_at.set(Some(Instant::now()));
                    tx.send(Stop::Cancel).expect("the step listens");
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let ws = tempfile::tempdir().unwrap();
    let label = images::unique_name("timeout");
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let ws = tempfile::tempdir().unwrap();
    let label = images::unique_name("dropped");
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
        |_: &[u8]| {},
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
    let docker = images::docker();
    let ws = tempfile::tempdir().unwrap();
    let label = images::unique_name("missing");
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
    let docker = images::docker();
    let context = busybox_context(
        "ARG GREETING\nRUN echo \"greeting: $GREETING\" > /greeting.txt && echo \"built with $GREETING\"\n",
    );
    let suffix = images::unique_name("b");
    let tags = vec![
        format!("{}/slipway-test-build:{suffix}", registry()),
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
                cache_from: &[],
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
    let api = engine(&docker).await;
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
    let docker = images::docker();
    let context = busybox_context("RUN echo about-to-fail && exit 7\n");
    let err = docker
        .build(
            images::plain_build(
                context.path(),
                &[format!("slipway-test-failing:{}", images::unique_name("f"))],
            ),
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
                dockerfile: "nowhere/Dockerfile",
                ..images::plain_build(context.path(), &[])
            },
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Dockerfile"), "{err}");
}

#[tokio::test]
async fn an_unreadable_context_is_named() {
    let docker = images::docker();
    let missing = Path::new("/nonexistent/slipway-test-context");
    let err = docker
        .build(images::plain_build(missing, &[]), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Context { path, .. } if path == missing),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stop_sent_before_the_step_starts_counts() {
    let docker = images::docker();
    let ws = tempfile::tempdir().unwrap();
    let (tx, rx) = watch::channel(Stop::No);
    tx.send(Stop::Abort).unwrap();
    let ending = docker
        .run_step(
            StepSpec {
                image: images::BUSYBOX,
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
            |_: &[u8]| {},
        )
        .await;
    assert_eq!(ending, Ending::Stopped(Stop::Abort));
}

#[tokio::test]
async fn a_dropped_image_that_is_in_use_is_reported() {
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let tag = format!("slipway-test-inuse:{}", images::unique_name("u"));
    engine(&docker)
        .await
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
    let name = images::unique_name("inuse");
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
    let docker = images::docker();
    let base = images::busybox(&docker).await;
    let registry = registry();
    let api = engine(&docker).await;
    let suffix = images::unique_name("app");
    let repo = format!("{registry}/slipway-test-app");
    let tag = format!("{repo}:{suffix}");
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {base}\nRUN mkdir /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"),
    )
    .unwrap();
    docker
        .build(
            images::plain_build(context.path(), std::slice::from_ref(&tag)),
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
    let (status, served) = images::registry_manifest(&registry, "slipway-test-app", &suffix)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(served.as_deref(), Some(digest.as_str()));

    // Gone locally, so that the deploy has to pull it by digest.
    assert_eq!(
        docker.remove_image(&tag).await.unwrap(),
        ImageRemoval::Removed
    );
    let by_digest = format!("{repo}@{digest}");
    let inspected = api.inspect_image(&by_digest).await;
    assert!(
        matches!(
            inspected,
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                ..
            })
        ),
        "{inspected:?}"
    );

    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "hello from the host volume\n",
    )
    .unwrap();
    let port = images::free_port();
    let label = images::unique_name("svc");
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

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/index.html");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http.get(&url).send().await {
            Ok(answer) if answer.status() == 200 => break answer.text().await.unwrap(),
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
    let docker = images::docker();
    let base = images::busybox(&docker).await;
    let api = engine(&docker).await;
    let auth_registry = AuthRegistry::start("ci", "s3cret").await;
    let secured = auth_registry.addr.clone();
    let cases = [
        ("127.0.0.1:5999", None, Err("connection refused")),
        (&secured, Some(("ci", "wrong")), Err("unauthorized")),
        (&secured, None, Err("no basic auth credentials")),
        (&secured, Some(("ci", "s3cret")), Ok::<(), &str>(())),
    ];
    for (registry, credentials, expected) in cases {
        let repo = format!("{registry}/slipway-test-push");
        let tag = images::unique_name("p");
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
    let docker = images::docker();
    let image = images::busybox(&docker).await;
    let name = images::unique_name("exits");
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
    let docker = images::docker();
    let bad = ServiceSpec {
        name: images::unique_name("bad"),
        image: images::BUSYBOX.into(),
        ports: vec!["80:http".into()],
        ..Default::default()
    };
    assert!(matches!(
        docker.start_service(&bad).await,
        Err(Error::Invalid { .. })
    ));
    assert!(docker.container_state(&bad.name).await.unwrap().is_none());
}
