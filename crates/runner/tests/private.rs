//! A private repository on a forge builds without a token in `repo`: the
//! orchestrator hands the forge's credentials over with the task's lease,
//! and the runner (a process of its own, trusting the test CA) answers the
//! git server's challenge with them, over HTTPS, leaving them out of the
//! workspace's git config and the steps' environment.

use std::process::Stdio;

use test_support::forge::FakeForge;
use test_support::git::GitHttp;
use test_support::hooks::github_push;
use test_support::tls::{TestCa, tls_proxy};
use test_support::{ForgeCredentials, GitRepo, Options, Stack};

const RUNNER: &str = env!("CARGO_BIN_EXE_slipway-runner");
const TOKEN: &str = "ghp_privateclonetoken4242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_repository_clones_with_the_forge_credentials() {
    let forge = FakeForge::start().await;
    forge.github_token(TOKEN);
    let mut stack = Stack::with(Options {
        runners: 0,
        forges: ForgeCredentials {
            github_token: TOKEN.to_owned(),
            github_api_url: forge.base(),
            ..ForgeCredentials::default()
        },
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let sha = repo.commit("main", &[("a.txt", "from the private repo\n")], "m");
    let root = repo.bare.parent().expect("the bare repository's directory");
    let server = GitHttp::start(root, Some(("x-access-token", TOKEN))).await;
    let ca = TestCa::new();
    let tls = tls_proxy(&ca, server.addr).await;
    let url = format!("https://127.0.0.1:{}/remote.git", tls.port());
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().display();
    stack
        .create_workflow(&format!(
            "name: private\nrepo: {url}\nsteps:\n  - name: look\n    run: |\n      cat a.txt\n      git config --get remote.origin.url > {out_dir}/url\n      cat .git/config > {out_dir}/config\n      env > {out_dir}/env\n"
        ))
        .await;
    let ca_file = ca.ca.display().to_string();
    stack.spawn_runner_process_with(
        RUNNER.as_ref(),
        &[("SSL_CERT_FILE", ca_file.as_str())],
        Stdio::inherit(),
    );

    let (status, body) = stack
        .github(
            "push",
            "private-push",
            &github_push(&url, "refs/heads/main", &sha, "m", &["a.txt"]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    let task = stack.wait_finished(task_id).await;
    let log = stack.logs(task_id).await;
    assert_eq!(task["status"], "success", "{task:#}\n{log}");
    assert!(log.contains("from the private repo"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");

    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).expect("written");
    assert_eq!(read("url").trim(), url, "the remote URL stays plain");
    assert!(!read("config").contains(TOKEN), "{}", read("config"));
    assert!(!read("config").contains("x-access-token"));
    assert!(!read("env").contains(TOKEN), "the steps never see it");
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.authorized),
        "the clone authenticated: {requests:?}"
    );
}
