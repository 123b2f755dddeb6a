//! A step in a container. `run_step` runs `sh -e -c SCRIPT` in the step's
//! image with the workspace bind-mounted at /workspace, under the engine's
//! init (tini) so that a stop's SIGTERM reaches the script. Its combined
//! output is streamed as it comes; a stop or a timeout is a `docker stop`
//! with the grace period (SIGTERM, then SIGKILL); the container is always
//! removed afterwards, also when the step's future is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerWaitResponse, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
    KillContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use super::images::ensure_image;
use super::{DRAIN_LIMIT, Docker, Ending, REQUEST_TIMEOUT_SECS, Stop, engine_message, grace_secs};
use crate::process::Output;

/// What a step runs with.
#[derive(Debug, Clone)]
pub struct StepSpec<'a> {
    /// The image the script runs in; pulled if the engine lacks it.
    pub image: &'a str,
    /// The step's `run`, given to `sh -e -c`.
    pub script: &'a str,
    /// Host directory (as the engine's host sees it) mounted at /workspace.
    pub workspace: &'a Path,
    /// The step's environment (workflow env, secrets, `SLIPWAY_*`).
    pub env: &'a [(String, String)],
    /// Put on the container, so that a task's containers can be found.
    pub labels: &'a [(String, String)],
    /// Container name; a unique one is made up when `None`.
    pub name: Option<&'a str>,
    /// `user[:group]` to run the script as; the image's user when `None`.
    pub user: Option<&'a str>,
    /// Counted from the call, so that a slow pull is part of the step.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL when the step is stopped or times out.
    pub grace: Duration,
}

impl Docker {
    /// Runs `sh -e -c SCRIPT` in the step's image; see the module's doc.
    pub async fn run_step(
        &self,
        spec: StepSpec<'_>,
        mut stop: watch::Receiver<Stop>,
        mut output: impl Output,
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
                chunk = next(&mut logs, &output), if reading => match chunk {
                    Some(Ok(chunk)) => output.write(&chunk.into_bytes()),
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
    output: &mut impl Output,
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
            chunk = next(logs, output), if reading => match chunk {
                Some(Ok(chunk)) => output.write(&chunk.into_bytes()),
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
/// Without waiting for room: the container is gone, and none of what it
/// printed may be lost to a slow orchestrator.
async fn drain(logs: &mut LogStream, output: &mut impl Output) {
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(Ok(chunk)) = logs.next().await {
            output.write(&chunk.into_bytes());
        }
    })
    .await;
}

/// The next piece of output, once `output` has room.
async fn next(
    logs: &mut LogStream,
    output: &impl Output,
) -> Option<Result<bollard::container::LogOutput, BollardError>> {
    output.room().await;
    logs.next().await
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
