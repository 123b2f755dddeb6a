//! Runs one step's script with `sh -e` in its own process group, streaming
//! its combined output. Stopping (cancel, timeout, shutdown) sends SIGTERM to
//! the whole group, then SIGKILL after a grace period; when the script ends,
//! whatever it left running in its group is killed too, so no step outlives
//! itself.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

/// Why a step should stop before its script ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    No,
    /// A user cancelled the task.
    Cancel,
    /// The runner lost the lease or is shutting down: stop without a word.
    Abort,
}

/// How a step's script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// Killed by a signal it did not send itself.
    Signaled(i32),
    TimedOut,
    Stopped(Stop),
    /// The shell could not be started.
    SpawnFailed(String),
}

/// What a step runs with.
pub struct Script<'a> {
    /// The step's `run` text, given to `sh -e` as it is.
    pub script: &'a str,
    /// The workspace: where the step starts.
    pub cwd: &'a Path,
    /// The step's whole environment: nothing else is inherited.
    pub env: &'a [(String, String)],
    /// When the step is stopped as timed out.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the step is stopped.
    pub grace: Duration,
}

const READ_BUF: usize = 64 * 1024;

/// Where a step's output goes.
pub trait Output {
    /// Takes a chunk of output.
    fn write(&mut self, chunk: &[u8]);

    /// Resolves when more output may be read: readers wait here, so that a
    /// step printing faster than its output is shipped blocks on its full
    /// pipe rather than filling the runner's memory.
    fn room(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

impl<F: FnMut(&[u8])> Output for F {
    fn write(&mut self, chunk: &[u8]) {
        self(chunk);
    }
}

/// Runs the script; `output` gets every chunk of combined stdout/stderr.
pub async fn run(
    s: Script<'_>,
    mut stop: watch::Receiver<Stop>,
    mut output: impl Output,
) -> Ending {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return Ending::SpawnFailed(format!("cannot create a pipe: {e}")),
    };
    let stderr = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return Ending::SpawnFailed(format!("cannot create a pipe: {e}")),
    };
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-e")
        .arg("-c")
        .arg(s.script)
        .current_dir(s.cwd)
        .env_clear()
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    // The parent's copies of the write end must close, or the pipe never
    // reaches end-of-file.
    drop(command);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Ending::SpawnFailed(format!("cannot start sh: {e}")),
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut reader = match pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(r) => r,
        Err(e) => {
            signal_group(pgid, Signal::SIGKILL);
            return Ending::SpawnFailed(format!("cannot read the step's output: {e}"));
        }
    };

    let deadline = tokio::time::sleep(s.timeout);
    tokio::pin!(deadline);
    let mut buf = vec![0u8; READ_BUF];
    let mut reading = true;
    let mut ending: Option<Ending> = None;

    // Read output until the script exits or must be stopped.
    let status = loop {
        tokio::select! {
            read = read(&mut reader, &mut buf, &output), if reading => match read {
                Ok(0) | Err(_) => reading = false,
                Ok(n) => output.write(&buf[..n]),
            },
            status = child.wait() => break status,
            () = &mut deadline, if ending.is_none() => {
                ending = Some(Ending::TimedOut);
                break terminate(&mut child, pgid, s.grace, &mut reader, &mut buf, &mut output).await;
            }
            changed = stop.changed(), if ending.is_none() => {
                let why = if changed.is_err() { Stop::Abort } else { *stop.borrow() };
                if why != Stop::No {
                    ending = Some(Ending::Stopped(why));
                    break terminate(&mut child, pgid, s.grace, &mut reader, &mut buf, &mut output).await;
                }
            }
        }
    };
    // Whatever the script left running in its group goes with it.
    signal_group(pgid, Signal::SIGKILL);
    drain(&mut reader, &mut buf, &mut output).await;

    if let Some(ending) = ending {
        return ending;
    }
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(sig)) => Ending::Signaled(sig),
                (None, None) => Ending::Exited(-1),
            }
        }
        Err(e) => Ending::SpawnFailed(format!("cannot wait for sh: {e}")),
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (the group is gone already) is the expected outcome.
        let _ = killpg(pgid, signal);
    }
}

/// SIGTERM to the group, SIGKILL after `grace`; keeps reading output meanwhile.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    grace: Duration,
    reader: &mut pipe::Receiver,
    buf: &mut [u8],
    output: &mut impl Output,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(pgid, Signal::SIGTERM);
    let waited = tokio::time::timeout(grace, async {
        loop {
            tokio::select! {
                read = read(reader, buf, output) => match read {
                    Ok(0) | Err(_) => return child.wait().await,
                    Ok(n) => output.write(&buf[..n]),
                },
                status = child.wait() => return status,
            }
        }
    })
    .await;
    match waited {
        Ok(status) => status,
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// Reads what is left in the pipe; bounded, in case a process outside the
/// group still holds the write end. Without waiting for room: the step is
/// over, so this is what its pipe held, and none of it may be lost to a
/// slow orchestrator.
async fn drain(reader: &mut pipe::Receiver, buf: &mut [u8], output: &mut impl Output) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match reader.read(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => output.write(&buf[..n]),
            }
        }
    })
    .await;
}

/// Reads the pipe once `output` has room.
async fn read(
    reader: &mut pipe::Receiver,
    buf: &mut [u8],
    output: &impl Output,
) -> std::io::Result<usize> {
    output.room().await;
    reader.read(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn env() -> Vec<(String, String)> {
        vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())]
    }

    async fn run_script(script: &str, timeout: Duration) -> (Ending, String) {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(Stop::No);
        let mut out = Vec::new();
        let env = env();
        let ending = run(
            Script {
                script,
                cwd: dir.path(),
                env: &env,
                timeout,
                grace: Duration::from_millis(500),
            },
            rx,
            |b: &[u8]| out.extend_from_slice(b),
        )
        .await;
        (ending, String::from_utf8_lossy(&out).into_owned())
    }

    /// Counts what it is given; has no room past `limit` until `open`.
    struct Held {
        got: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        limit: usize,
        open: watch::Receiver<bool>,
    }

    impl Output for Held {
        fn write(&mut self, chunk: &[u8]) {
            self.got
                .fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }

        fn room(&self) -> impl Future<Output = ()> + Send {
            let full = self.got.load(std::sync::atomic::Ordering::SeqCst) >= self.limit;
            let mut open = self.open.clone();
            async move {
                if full {
                    let _ = open.wait_for(|o| *o).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn output_is_read_only_while_there_is_room() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let (_stop, rx) = watch::channel(Stop::No);
        let (open, opened) = watch::channel(false);
        let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let limit = 1024 * 1024;
        let env = env();
        let output = Held {
            got: got.clone(),
            limit,
            open: opened,
        };
        let step = tokio::spawn({
            let (cwd, env) = (dir.path().to_owned(), env.clone());
            async move {
                run(
                    Script {
                        script: "head -c 20000000 /dev/zero",
                        cwd: &cwd,
                        env: &env,
                        timeout: Duration::from_secs(60),
                        grace: Duration::from_millis(500),
                    },
                    rx,
                    output,
                )
                .await
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.load(SeqCst) < limit {
            assert!(
                Instant::now() < deadline,
                "the output never reached the limit"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Held at the limit: at most one more read got through.
        assert!(got.load(SeqCst) <= limit + READ_BUF, "{}", got.load(SeqCst));
        assert!(!step.is_finished());
        open.send(true).unwrap();
        assert!(matches!(step.await.unwrap(), Ending::Exited(0)));
        assert_eq!(got.load(SeqCst), 20_000_000);
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_and_the_exit_code() {
        let (ending, out) =
            run_script("echo out; echo err >&2; exit 3", Duration::from_secs(10)).await;
        assert_eq!(ending, Ending::Exited(3));
        assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
    }

    #[tokio::test]
    async fn sh_e_stops_at_the_first_failure() {
        let (ending, out) = run_script("echo one\nfalse\necho two", Duration::from_secs(10)).await;
        assert_eq!(ending, Ending::Exited(1));
        assert_eq!(out, "one\n");
    }

    #[tokio::test]
    async fn times_out_and_kills_the_group() {
        let started = Instant::now();
        let (ending, _) = run_script("sleep 30 & sleep 30", Duration::from_millis(300)).await;
        assert_eq!(ending, Ending::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn background_children_do_not_hold_the_step_open() {
        let started = Instant::now();
        let (ending, _) = run_script("sleep 30 &\necho started", Duration::from_secs(20)).await;
        assert_eq!(ending, Ending::Exited(0));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_stop_reaches_the_running_step() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Stop::No);
        let env = env();
        let started = Instant::now();
        let task = async {
            run(
                Script {
                    script: "trap 'echo got term; exit 143' TERM; sleep 30 & wait",
                    cwd: dir.path(),
                    env: &env,
                    timeout: Duration::from_secs(60),
                    grace: Duration::from_secs(5),
                },
                rx,
                |_: &[u8]| {},
            )
            .await
        };
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send(Stop::Cancel).unwrap();
        };
        let (ending, ()) = tokio::join!(task, stopper);
        assert_eq!(ending, Ending::Stopped(Stop::Cancel));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
