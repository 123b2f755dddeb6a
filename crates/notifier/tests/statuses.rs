//! Commit statuses end to end (forges.md): the orchestrator records which
//! task reports where, the notifier sends each state to a local server
//! playing the GitHub and GitLab APIs, which checks method, path, headers,
//! auth and body (a GitHub App's JWT verified with the test app's public
//! key). Faults of the forge and of the notifier lose nothing and never
//! let an older state overwrite a newer one.

use std::time::Duration;

use serde_json::Value;
use test_support::forge::{Auth, FakeForge, Fault, Forge, ForgeStatus, Route};
use test_support::hooks::{PullRequest, github_pull_request, github_push, gitlab_merge_request};
use test_support::images::{self, Cleanup, app, free_port};
use test_support::{DEADLINE, ForgeCredentials, GitRepo, Options, Stack, step};

const GITHUB_TOKEN: &str = "ghp_statustoken0123456789";
const GITLAB_TOKEN: &str = "glpat-statustoken98765";

/// A stack whose orchestrator holds credentials for `forge`, and a notifier
/// with short status backoffs.
async fn stack_with(forge: &FakeForge, credentials: ForgeCredentials) -> Stack {
    let mut stack = Stack::with(Options {
        forges: ForgeCredentials {
            github_api_url: forge.base(),
            ..credentials
        },
        ..Options::default()
    })
    .await;
    stack.start_notifier(fast_notifier(&stack)).await;
    stack
}

fn fast_notifier(stack: &Stack) -> notifier::Settings {
    notifier::Settings {
        status_retry_base: "100ms".to_owned(),
        status_retry_for: "30s".to_owned(),
        ..stack.notifier_settings()
    }
}

async fn token_stack(forge: &FakeForge) -> Stack {
    forge.github_token(GITHUB_TOKEN);
    stack_with(
        forge,
        ForgeCredentials {
            github_token: GITHUB_TOKEN.to_owned(),
            ..ForgeCredentials::default()
        },
    )
    .await
}

/// Pushes `files` to main of `repo` as GitHub would announce it; returns
/// the commit and the task.
async fn push(
    stack: &Stack,
    repo: &GitRepo,
    files: &[(&str, &str)],
    delivery: &str,
) -> (String, i64) {
    let sha = repo.commit("main", files, delivery);
    let (status, body) = stack
        .github(
            "push",
            delivery,
            &github_push(&repo.url, "refs/heads/main", &sha, delivery, &["x"]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    (sha, body["task_ids"][0].as_i64().expect("a task"))
}

/// (context, state, description) of each status, in arrival order.
fn states(statuses: &[ForgeStatus]) -> Vec<(String, String, String)> {
    statuses
        .iter()
        .map(|s| {
            (
                s.context.clone(),
                s.state.clone(),
                s.description.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn owned(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(c, s, d)| ((*c).to_owned(), (*s).to_owned(), (*d).to_owned()))
        .collect()
}

/// Waits until the task's recorded statuses are all done (none pending).
async fn settled(stack: &Stack, task_id: i64, n: usize) -> Value {
    stack
        .wait_task(task_id, DEADLINE, |t| {
            let list = t["commit_statuses"].as_array();
            list.is_some_and(|l| l.len() >= n && l.iter().all(|s| s["status"] != "pending"))
        })
        .await
}

const GREEN: &str = "  - name: test\n    run: test \"$(cat result)\" = ok\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_failed_and_cancelled_tasks_report_in_order() {
    let forge = FakeForge::start().await;
    let stack = token_stack(&forge).await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: checks\nrepo: {}\nsteps:\n{GREEN}  - name: slow\n    run: if [ -f slow ]; then sleep 60; fi\n",
            repo.url
        ))
        .await;

    let (green_sha, green) = push(&stack, &repo, &[("result", "ok")], "green").await;
    let task = stack.wait_finished(green).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let got = forge.wait_for(3, DEADLINE).await;
    assert_eq!(
        states(&got),
        owned(&[
            ("slipway/checks", "pending", "queued"),
            ("slipway/checks", "pending", "running"),
            ("slipway/checks", "success", "succeeded"),
        ])
    );
    for s in &got {
        assert_eq!(s.forge, Forge::GitHub);
        assert_eq!(s.repo, "acme/repo");
        assert_eq!(s.sha, green_sha);
        assert_eq!(s.auth, Auth::Token(GITHUB_TOKEN.to_owned()));
        assert_eq!(
            s.target_url.as_deref(),
            Some(format!("http://slipway.test/tasks/{green}").as_str())
        );
    }
    let request = &forge.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/repos/acme/repo/statuses/{green_sha}")
    );
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    let task = settled(&stack, green, 3).await;
    let recorded: Vec<(&str, &str, &str)> = task["commit_statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| {
            (
                s["state"].as_str().unwrap_or(""),
                s["description"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("pending", "queued", "delivered"),
            ("pending", "running", "delivered"),
            ("success", "succeeded", "delivered"),
        ],
        "{task:#}"
    );
    assert_eq!(task["commit_statuses"][0]["context"], "slipway/checks");
    assert_eq!(task["commit_statuses"][0]["attempts"], 1);
    assert!(task["commit_statuses"][0]["delivered_at"].is_string());

    let (_, failed) = push(&stack, &repo, &[("result", "no")], "red").await;
    stack.wait_finished(failed).await;
    let got = forge.wait_for(6, DEADLINE).await;
    assert_eq!(
        states(&got[3..]),
        owned(&[
            ("slipway/checks", "pending", "queued"),
            ("slipway/checks", "pending", "running"),
            ("slipway/checks", "failure", "failed at step test"),
        ])
    );

    let (_, slow) = push(&stack, &repo, &[("result", "ok"), ("slow", "1")], "slow").await;
    stack
        .wait_task(slow, DEADLINE, |t| step(t, "slow")["status"] == "running")
        .await;
    let (status, body) = stack
        .post(&format!("/api/tasks/{slow}/cancel"), serde_json::json!({}))
        .await;
    assert!(status.is_success(), "{body}");
    stack.wait_finished(slow).await;
    let got = forge.wait_for(9, DEADLINE).await;
    assert_eq!(
        states(&got[6..]),
        owned(&[
            ("slipway/checks", "pending", "queued"),
            ("slipway/checks", "pending", "running"),
            ("slipway/checks", "error", "cancelled"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_that_fails_is_retried_in_order_and_nothing_is_lost() {
    let forge = FakeForge::start().await;
    let mut stack = token_stack(&forge).await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: retried\nrepo: {}\nsteps:\n{GREEN}",
            repo.url
        ))
        .await;

    // 500 then 201, and a 429 that asks for a second.
    forge.fail_next(Route::Statuses, 1, Fault::ServerError);
    forge.fail_next(
        Route::Statuses,
        1,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let (_, task_id) = push(&stack, &repo, &[("result", "ok")], "flaky").await;
    stack.wait_finished(task_id).await;
    let got = forge.wait_for(3, DEADLINE).await;
    assert_eq!(
        states(&got)
            .into_iter()
            .map(|(_, s, d)| (s, d))
            .collect::<Vec<_>>(),
        [
            ("pending".to_owned(), "queued".to_owned()),
            ("pending".to_owned(), "running".to_owned()),
            ("success".to_owned(), "succeeded".to_owned()),
        ]
    );
    let answered: Vec<u16> = forge.requests().iter().map(|r| r.answered).collect();
    assert_eq!(&answered[..2], [500, 429], "{answered:?}");
    let task = settled(&stack, task_id, 3).await;
    assert_eq!(task["commit_statuses"][0]["attempts"], 3, "{task:#}");

    // The forge is down for a while: every state arrives once it is back,
    // in order.
    forge.down().await;
    let before = forge.statuses().len();
    let (_, task_id) = push(&stack, &repo, &[("result", "ok"), ("n", "2")], "outage").await;
    stack.wait_finished(task_id).await;
    stack
        .wait_task(task_id, DEADLINE, |t| {
            t["commit_statuses"][0]["attempts"].as_i64() >= Some(2)
        })
        .await;
    forge.up().await;
    let got = forge.wait_for(before + 3, DEADLINE).await;
    assert_eq!(
        states(&got[before..])
            .into_iter()
            .map(|(_, s, d)| (s, d))
            .collect::<Vec<_>>(),
        [
            ("pending".to_owned(), "queued".to_owned()),
            ("pending".to_owned(), "running".to_owned()),
            ("success".to_owned(), "succeeded".to_owned()),
        ]
    );

    // The notifier is away while a task runs, then restarted while the
    // forge is down and the statuses wait: they go out after both are back,
    // the final state last, none twice.
    stack.stop_notifier().await;
    let before = forge.statuses().len();
    let (_, task_id) = push(&stack, &repo, &[("result", "ok"), ("n", "3")], "away").await;
    stack.wait_finished(task_id).await;
    forge.down().await;
    stack.start_notifier(fast_notifier(&stack)).await;
    stack
        .wait_task(task_id, DEADLINE, |t| {
            t["commit_statuses"][0]["attempts"].as_i64() >= Some(1)
        })
        .await;
    stack.stop_notifier().await;
    forge.up().await;
    stack.start_notifier(fast_notifier(&stack)).await;
    let task = settled(&stack, task_id, 3).await;
    let got = forge.statuses();
    let mine: Vec<(String, String)> = got[before..]
        .iter()
        .map(|s| (s.state.clone(), s.description.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        mine,
        [
            ("pending".to_owned(), "queued".to_owned()),
            ("pending".to_owned(), "running".to_owned()),
            ("success".to_owned(), "succeeded".to_owned()),
        ],
        "{task:#}"
    );
    for s in task["commit_statuses"].as_array().expect("statuses") {
        assert_eq!(s["status"], "delivered", "{task:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_sends_pull_request_statuses_with_installation_tokens() {
    let forge = FakeForge::start().await;
    forge.install_app(4242, "acme");
    let key = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key.path(), FakeForge::app_key_pem()).expect("key written");
    let stack = stack_with(
        &forge,
        ForgeCredentials {
            github_app_id: FakeForge::APP_ID.to_string(),
            github_app_key_file: key.path().display().to_string(),
            ..ForgeCredentials::default()
        },
    )
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: app\nrepo: {}\non:\n  pull_request:\nsteps:\n{GREEN}",
            repo.url
        ))
        .await;
    repo.commit("main", &[("result", "ok")], "base");
    let head = repo.commit_to_ref("main", "refs/pull/2/head", &[("result", "ok")], "pr");
    let (status, body) = stack
        .github(
            "pull_request",
            "app-pr",
            &github_pull_request(&PullRequest::new(&repo.url, "opened", 2, &head)),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    stack.wait_finished(task_id).await;
    let got = forge.wait_for(3, DEADLINE).await;
    assert_eq!(got[2].state, "success");
    for s in &got {
        assert_eq!(s.sha, head);
        assert!(
            matches!(&s.auth, Auth::Installation { id: 4242, .. }),
            "{:?}",
            s.auth
        );
    }
    let minted = forge.token_requests();
    assert_eq!(minted.len(), 1, "one token, cached: {minted:#?}");
    assert_eq!(minted[0].repositories, ["repo"]);
    assert_eq!(
        minted[0].permissions,
        serde_json::json!({"statuses": "write"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_merge_requests_get_statuses_with_the_private_token() {
    let forge = FakeForge::start().await;
    forge.gitlab_token(GITLAB_TOKEN);
    let stack = stack_with(
        &forge,
        ForgeCredentials {
            gitlab_api_token: GITLAB_TOKEN.to_owned(),
            gitlab_url: forge.base(),
            ..ForgeCredentials::default()
        },
    )
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: lab\nrepo: {}\non:\n  pull_request:\nsteps:\n{GREEN}",
            repo.url
        ))
        .await;
    repo.commit("main", &[("result", "ok")], "base");
    let head = repo.commit_to_ref(
        "main",
        "refs/merge-requests/6/head",
        &[("result", "no")],
        "mr",
    );
    let (status, body) = stack
        .gitlab(
            "Merge Request Hook",
            "lab-mr",
            &gitlab_merge_request(&PullRequest::new(&repo.url, "open", 6, &head), None),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let task_id = body["task_ids"][0].as_i64().expect("a task");
    stack.wait_finished(task_id).await;
    let got = forge.wait_for(3, DEADLINE).await;
    assert_eq!(
        states(&got),
        owned(&[
            ("slipway/lab", "pending", "queued"),
            ("slipway/lab", "running", "running"),
            ("slipway/lab", "failed", "failed at step test"),
        ])
    );
    for s in &got {
        assert_eq!(s.forge, Forge::GitLab);
        assert_eq!(s.repo, "1");
        assert_eq!(s.auth, Auth::Token(GITLAB_TOKEN.to_owned()));
    }
    let request = &forge.requests()[0];
    assert_eq!(request.path, format!("/api/v4/projects/1/statuses/{head}"));
    assert_eq!(request.header("private-token"), Some(GITLAB_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_report_their_own_context_through_rollback_and_approval() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let forge = FakeForge::start().await;
    let stack = token_stack(&forge).await;
    let repo = GitRepo::new();
    let (dev_port, prod_port) = (free_port(), free_port());
    let dev = format!("slipway-e2e-st-dev-{dev_port}");
    let prod = format!("slipway-e2e-st-prod-{prod_port}");
    let _cleanup = Cleanup(vec![dev.clone(), format!("{dev}.previous"), prod.clone()]);
    stack
        .create_workflow(&format!(
            "name: shipped\nrepo: {repo}\nimage:\n  name: slipway-e2e/statuses-{dev_port}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {dev}, ports: [\"127.0.0.1:{dev_port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{dev_port}/health\", interval: 200ms, timeout: 3s }}\n  - environment: prod\n    auto: false\n    target: {{ container: {{ name: {prod}, ports: [\"127.0.0.1:{prod_port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{prod_port}/health\", interval: 200ms, timeout: 3s }}\n",
            repo = repo.url
        ))
        .await;
    let files = app(Some("v1\n"), None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let (_, v1) = push(&stack, &repo, &files, "v1").await;
    let task = stack.wait_finished(v1).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let dev_context = "slipway/shipped/deploy/dev";
    let prod_context = "slipway/shipped/deploy/prod";
    let task = settled(&stack, v1, 6).await;
    let of = |task: &Value, context: &str| -> Vec<(String, String)> {
        task["commit_statuses"]
            .as_array()
            .expect("statuses")
            .iter()
            .filter(|s| s["context"] == context)
            .map(|s| {
                (
                    s["state"].as_str().unwrap_or("").to_owned(),
                    s["description"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let pair = |s: &str, d: &str| (s.to_owned(), d.to_owned());
    assert_eq!(
        of(&task, dev_context),
        [pair("pending", "deploying"), pair("success", "healthy")],
        "{task:#}"
    );
    assert_eq!(
        of(&task, prod_context),
        [pair("pending", "awaiting approval")],
        "{task:#}"
    );

    // v2 loses its health: dev fails and is rolled back.
    let files = app(None, None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let (_, v2) = push(&stack, &repo, &files, "v2").await;
    stack.wait_finished(v2).await;
    let task = stack
        .wait_task(v2, DEADLINE, |t| {
            t["commit_statuses"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|s| s["description"] == "rolled back" && s["status"] == "delivered")
            })
        })
        .await;
    let dev_states = of(&task, dev_context);
    assert_eq!(dev_states[0], pair("pending", "deploying"), "{task:#}");
    assert_eq!(
        dev_states.last(),
        Some(&pair("failure", "rolled back")),
        "{task:#}"
    );
    let delivered: Vec<ForgeStatus> = forge
        .statuses()
        .into_iter()
        .filter(|s| s.context == dev_context)
        .collect();
    assert_eq!(
        delivered
            .last()
            .map(|s| s.description.clone().unwrap_or_default()),
        Some("rolled back".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_older_than_one_delivered_is_superseded_never_sent() {
    use diesel::prelude::*;
    use store::forges::{Attempt, NewStatus};
    use store::schema::events;

    let forge = FakeForge::start().await;
    forge.github_token(GITHUB_TOKEN);
    // No notifier: this test plays it, handling the events out of order.
    let stack = Stack::with(Options {
        forges: ForgeCredentials {
            github_token: GITHUB_TOKEN.to_owned(),
            github_api_url: forge.base(),
            ..ForgeCredentials::default()
        },
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!("name: order\nrepo: {}\nsteps:\n{GREEN}", repo.url))
        .await;
    let (_, task_id) = push(&stack, &repo, &[("result", "ok")], "order").await;
    stack.wait_finished(task_id).await;

    let mut conn = PgConnection::establish(&stack.db.url).expect("database");
    let ids: Vec<(String, String)> = events::table
        .filter(events::task_id.eq(task_id))
        .order(events::seq.asc())
        .select((events::id, events::kind))
        .load(&mut conn)
        .expect("events");
    let id_of = |kind: &str| {
        ids.iter()
            .find(|(_, k)| k == kind)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no {kind} event in {ids:?}"))
    };
    let mut open = |kind: &str, state: &str, description: &str| {
        let statuses = [NewStatus {
            context: "slipway/order".to_owned(),
            state: state.to_owned(),
            description: description.to_owned(),
        }];
        store::forges::open(&mut conn, &id_of(kind), &statuses, Duration::from_secs(30))
            .expect("opened")
    };
    // The final state arrives first and is delivered...
    let done = open("task_succeeded", "success", "succeeded");
    assert_eq!(done.len(), 1);
    let delivered = done[0].status.id;
    // ...then the delayed pending ones: recorded superseded, never handed
    // out; and the same event again changes nothing.
    let mut conn2 = PgConnection::establish(&stack.db.url).expect("database");
    store::forges::record_attempt(&mut conn2, delivered, &Attempt::Delivered).expect("recorded");
    for (kind, state, description) in [
        ("task_created", "pending", "queued"),
        ("task_started", "pending", "running"),
        ("task_succeeded", "success", "succeeded"),
    ] {
        let late = open(kind, state, description);
        assert!(late.is_empty(), "{kind}: {late:?}");
    }
    let rows = store::forges::for_task(&mut conn, task_id).expect("statuses");
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.description.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("queued", "superseded"),
            ("running", "superseded"),
            ("succeeded", "delivered")
        ]
    );
    assert!(forge.requests().is_empty(), "this test sent nothing itself");
}

/// Kills its notifier process when dropped, whatever the test did.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_pending_in_a_killed_notifier_go_out_after_its_restart() {
    let forge = FakeForge::start().await;
    forge.github_token(GITHUB_TOKEN);
    let mut stack = Stack::with(Options {
        forges: ForgeCredentials {
            github_token: GITHUB_TOKEN.to_owned(),
            github_api_url: forge.base(),
            ..ForgeCredentials::default()
        },
        ..Options::default()
    })
    .await;
    let repo = GitRepo::new();
    stack
        .create_workflow(&format!(
            "name: killed\nrepo: {}\nsteps:\n{GREEN}",
            repo.url
        ))
        .await;
    forge.down().await;
    let s = fast_notifier(&stack);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-notifier"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLIPWAY_NOTIFIER_ADDR", "127.0.0.1:0")
        .env("SLIPWAY_METRICS_ADDR", "")
        .env("SLIPWAY_ORCHESTRATOR_URL", &s.orchestrator_url)
        .env("SLIPWAY_AMQP_URL", &s.amqp_url)
        .env("SLIPWAY_API_TOKEN", &s.api_token)
        .env("SLIPWAY_NOTIFIER_TOKEN", &s.notifier_token)
        .env("SLIPWAY_QUEUE_PREFIX", &s.queue_prefix)
        .env("SLIPWAY_QUEUE_EXPIRES_MS", s.queue_expires_ms.to_string())
        .env("SLIPWAY_PUBLIC_URL", &s.public_url)
        .env("SLIPWAY_STATUS_RETRY_BASE", "100ms")
        .env("SLIPWAY_STATUS_RETRY_FOR", "30s")
        .env("SLIPWAY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("notifier process starts");
    let mut child = KillOnDrop(child);

    let (sha, task_id) = push(&stack, &repo, &[("result", "ok")], "killed").await;
    stack.wait_finished(task_id).await;
    // The notifier tried while the forge was down, then dies.
    stack
        .wait_task(task_id, DEADLINE, |t| {
            t["commit_statuses"]
                .as_array()
                .is_some_and(|l| l.len() == 3 && l[0]["attempts"].as_i64() >= Some(2))
        })
        .await;
    child.0.kill().expect("kill -9");
    let _ = child.0.wait();
    forge.up().await;
    stack.start_notifier(fast_notifier(&stack)).await;

    // A status the killed notifier held mid-attempt waits out its claim.
    let task = stack
        .wait_task(task_id, Duration::from_secs(120), |t| {
            t["commit_statuses"]
                .as_array()
                .is_some_and(|l| l.iter().all(|s| s["status"] == "delivered"))
        })
        .await;
    let got: Vec<(String, String)> = forge
        .statuses()
        .into_iter()
        .filter(|s| s.sha == sha)
        .map(|s| (s.state, s.description.unwrap_or_default()))
        .collect();
    assert_eq!(
        got,
        [
            ("pending".to_owned(), "queued".to_owned()),
            ("pending".to_owned(), "running".to_owned()),
            ("success".to_owned(), "succeeded".to_owned()),
        ],
        "{task:#}"
    );
}
