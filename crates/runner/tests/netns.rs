//! A runner on a second host: the runner binary in its own network
//! namespace, with its own address, configured with nothing but the broker's
//! and the orchestrator's URLs, a runner token and its labels. It joins over
//! the network, takes the labelled task that the host's runner never gets,
//! and finishes it; a runner with a wrong token is refused and says which
//! setting to fix. Needs root (`ip netns`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};

use test_support::netns::{Forward, NetNs};
use test_support::{DEADLINE, GitRepo, Options, Stack};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");

/// `host:port` of a URL such as `amqp://user:pass@127.0.0.1:5672/%2f`.
fn socket_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.parse().expect("host:port")
}

/// The runner's environment on the second host: the settings runtime.md
/// names for it, and the test's queue prefix.
fn runner_env(
    stack: &Stack,
    amqp: SocketAddr,
    grpc: SocketAddr,
    token: &str,
    data: &Path,
) -> Vec<(String, String)> {
    let settings = stack.runner_settings();
    vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        (
            "SLIPWAY_AMQP_URL".into(),
            format!("amqp://guest:guest@{amqp}/%2f"),
        ),
        ("SLIPWAY_ORCHESTRATOR_URL".into(), format!("http://{grpc}")),
        ("SLIPWAY_RUNNER_TOKEN".into(), token.into()),
        ("SLIPWAY_RUNNER_LABELS".into(), "remote".into()),
        ("SLIPWAY_DATA_DIR".into(), data.display().to_string()),
        ("SLIPWAY_QUEUE_PREFIX".into(), settings.queue_prefix),
        (
            "SLIPWAY_QUEUE_EXPIRES_MS".into(),
            settings.queue_expires_ms.to_string(),
        ),
        ("SLIPWAY_LOG".into(), "warn".into()),
    ]
}

/// Kills the runner when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_on_another_host_joins_and_takes_its_labelled_task() {
    let token = format!("runner-{}", uuid::Uuid::new_v4().simple());
    // One runner on the host, without labels.
    let stack = Stack::with(Options {
        runner_token: token.clone(),
        ..Options::default()
    })
    .await;
    let ns = NetNs::create();
    let grpc = Forward::start(ns.host_ip, socket_addr(&stack.grpc_url)).await;
    let amqp = Forward::start(ns.host_ip, socket_addr(&stack.amqp_url)).await;
    let data = tempfile::tempdir().expect("dir");

    // A wrong token: the runner stops at start and names the setting.
    let wrong = runner_env(&stack, amqp.addr, grpc.addr, "not-the-token", data.path());
    let mut cmd = ns.command(Path::new(RUNNER));
    cmd.env_clear()
        .envs(wrong)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let refused = tokio::time::timeout(DEADLINE, tokio::process::Command::from(cmd).output())
        .await
        .expect("the refused runner exits")
        .expect("runner ran");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("refuses this runner's token") && stderr.contains("SLIPWAY_RUNNER_TOKEN"),
        "{stderr}"
    );

    // The right token: the runner joins over the veth.
    let mut cmd = ns.command(Path::new(RUNNER));
    cmd.env_clear()
        .envs(runner_env(
            &stack,
            amqp.addr,
            grpc.addr,
            &token,
            data.path(),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _remote = Process(cmd.spawn().expect("runner starts"));

    let repo = GitRepo::new();
    repo.commit("main", &[("a.txt", "a")], "first");
    // /proc/net shows the network namespace of the process reading it.
    let id = stack
        .create_workflow(&format!(
            "name: remote-only\nrepo: {}\nruns_on: remote\nsteps:\n  - name: where\n    run: cat /proc/net/fib_trie\n",
            repo.url
        ))
        .await;
    for _ in 0..3 {
        let task_id = stack.run_workflow(id).await;
        let task = stack.wait_finished(task_id).await;
        assert_eq!(task["status"], "success", "{task:#}");
        let log = stack.logs(task_id).await;
        assert!(
            log.contains(&ns.ns_ip.to_string()),
            "task {task_id} did not run in the namespace ({}): {log}",
            ns.ns_ip
        );
    }
}
