//! The notifier end to end: real orchestrator, gateway, runner, Postgres and
//! RabbitMQ; Slack, SMTP, DingTalk and webhook receivers played by local
//! servers that speak their protocols and check signatures.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::hooks::github_push;
use test_support::images::{Cleanup, app, free_port};
use test_support::receivers::{HttpReceiver, SmtpSink};
use test_support::{DEADLINE, GitRepo, Stack};

const SLACK_HOOK_TOKEN: &str = "T0SLIP/B0WAY/hooktoken9f8e7d";
const SLACK_BOT_TOKEN: &str = "xoxb-bot-token-5a4b3c";
const DINGTALK_TOKEN: &str = "dingaccesstoken77";
const DINGTALK_SECRET: &str = "SEC0dingtalksecret42";
const HOOK_SECRET: &str = "hook-signing-secret-31";

/// Pushes `files` on `branch` with `message`; returns the task id.
async fn push(
    stack: &Stack,
    repo: &GitRepo,
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
) -> i64 {
    let sha = repo.commit(branch, files, message);
    let delivery = format!("d-{}", uuid_like());
    let (status, body) = stack
        .github(
            "push",
            &delivery,
            &github_push(
                &repo.url,
                &format!("refs/heads/{branch}"),
                &sha,
                message,
                &["x"],
            ),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["task_ids"][0].as_i64().expect("a task")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const FAIL: &[(&str, &str)] = &[("fail", "1")];
const PASS: &[(&str, &str)] = &[("fail", "0")];
const STEPS: &str = "steps:\n  - name: test\n    run: |\n      echo \"测试 $(cat fail)\"\n      test \"$(cat fail)\" = 0\n";

/// The alerts of a task, once `done` holds for them.
async fn wait_alerts(stack: &Stack, task_id: i64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = stack.get(&format!("/api/alerts?task_id={task_id}")).await;
        assert_eq!(status, 200, "{body}");
        let alerts = body.as_array().cloned().unwrap_or_default();
        if done(&alerts) {
            return alerts;
        }
        assert!(
            Instant::now() < until,
            "alerts of task {task_id} did not get there: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_delivered(alerts: &[Value]) -> bool {
    !alerts.is_empty() && alerts.iter().all(|a| a["status"] == "delivered")
}

fn of_type<'a>(alerts: &'a [Value], kind: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_failure_reaches_every_channel_with_its_facts() {
    let http = HttpReceiver::start().await;
    let smtp = SmtpSink::start("alerts", "smtp-pass-8c1").await;
    http.allow_slack_token(SLACK_BOT_TOKEN);
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("ci", Some(HOOK_SECRET));
    let yaml = format!(
        "name: notified\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed]\n    slack: {{ webhook_url: \"${{{{ secrets.SLACK_HOOK }}}}\" }}\n    email: {{ to: [ops@example.com, dev@example.com] }}\n    dingtalk: {{ webhook_url: \"${{{{ secrets.DINGTALK_URL }}}}\", secret: \"${{{{ secrets.DINGTALK_SECRET }}}}\" }}\n    webhook: {{ url: \"{hook}\", secret: \"${{{{ secrets.HOOK_SECRET }}}}\" }}\n  - on: [task_succeeded]\n    slack: {{ token: \"${{{{ secrets.SLACK_BOT }}}}\", channel: \"#deploys\" }}\n",
        repo = repo.url
    );
    let workflow_id = stack.create_workflow(&yaml).await;
    for (name, value) in [
        ("SLACK_HOOK", http.slack_webhook_url(SLACK_HOOK_TOKEN)),
        (
            "DINGTALK_URL",
            http.dingtalk_url(DINGTALK_TOKEN, Some(DINGTALK_SECRET)),
        ),
        ("DINGTALK_SECRET", DINGTALK_SECRET.to_owned()),
        ("HOOK_SECRET", HOOK_SECRET.to_owned()),
        ("SLACK_BOT", SLACK_BOT_TOKEN.to_owned()),
    ] {
        stack.set_secret(workflow_id, name, &value).await;
    }
    let settings = notifier::Settings {
        slack_api_url: http.slack_api_url(),
        smtp_url: smtp.url(),
        smtp_from: "Slipway CI <ci@slipway.test>".to_owned(),
        ..stack.notifier_settings()
    };
    stack.start_notifier(settings).await;

    let branch = "功能-登录";
    let message = "修复登录 <bug> & more\n\nbody";
    let failed = push(&stack, &repo, branch, FAIL, message).await;
    let task = stack.wait_finished(failed).await;
    assert_eq!(task["status"], "failed", "{task:#}");
    let commit = task["commit"].as_str().expect("commit").to_owned();
    let short = &commit[..12];
    let link = format!("http://slipway.test/tasks/{failed}");

    let alerts = wait_alerts(&stack, failed, |a| {
        of_type(a, "build_failed").is_some_and(|b| b["status"] == "delivered")
    })
    .await;
    let alert = of_type(&alerts, "build_failed").expect("build_failed");
    assert_eq!(alert["branch"], branch);
    assert_eq!(alert["workflow"], "notified");
    let channels: HashSet<&str> = alert["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["channel"].as_str())
        .collect();
    assert_eq!(
        channels,
        HashSet::from(["slack", "email", "dingtalk", "webhook"])
    );
    assert!(
        of_type(&alerts, "task_started").is_none(),
        "no rule asks for task_started: {alerts:?}"
    );

    // Slack's incoming webhook: readable text with every fact.
    let slack = http.wait_accepted("/slack/hooks/", 1, DEADLINE).await;
    let body = slack[0].json();
    let text = body["text"].as_str().expect("fallback text");
    let block = body["blocks"][0]["text"]["text"]
        .as_str()
        .expect("a mrkdwn block");
    for needle in ["Build failed", "notified", branch, short, "修复登录", &link] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(block.contains("修复登录 &lt;bug&gt; &amp; more"), "{block}");
    assert!(block.contains(&format!("<{link}|")), "{block}");

    // E-mail: plain and HTML parts, to both addresses, Chinese intact.
    let mails = smtp.wait_mails(1, DEADLINE).await;
    let mail = &mails[0];
    assert_eq!(mail.auth_user.as_deref(), Some("alerts"));
    assert!(
        mail.subject.contains("Build failed: notified"),
        "{}",
        mail.subject
    );
    assert_eq!(mail.from, "ci@slipway.test");
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(to, ["dev@example.com", "ops@example.com"]);
    assert_eq!((mail.text_parts, mail.html_parts), (1, 1));
    let plain = mail.text.as_deref().expect("text part");
    let html = mail.html.as_deref().expect("html part");
    for needle in [
        branch,
        short,
        "修复登录 <bug> & more",
        &link,
        "step test failed",
    ] {
        assert!(plain.contains(needle), "{needle} in {plain}");
    }
    assert!(html.contains("修复登录 &lt;bug&gt; &amp; more"), "{html}");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");

    // DingTalk: signed (the receiver checked it), markdown.
    let ding = http.wait_accepted("/dingtalk/", 1, DEADLINE).await;
    let body = ding[0].json();
    assert_eq!(body["msgtype"], "markdown");
    let md = body["markdown"]["text"].as_str().expect("markdown");
    for needle in [branch, short, "修复登录", &link] {
        assert!(md.contains(needle), "{needle} in {md}");
    }

    // The webhook: the event as JSON, signed, with its id.
    let hooks = http.wait_accepted("/hooks/ci", 1, DEADLINE).await;
    let event = hooks[0].json();
    assert_eq!(event["type"], "build_failed");
    assert_eq!(event["task_id"], failed);
    assert_eq!(event["workflow"], "notified");
    assert_eq!(event["branch"], branch);
    assert_eq!(event["commit"], commit.as_str());
    assert_eq!(event["url"], link.as_str());
    assert_eq!(
        hooks[0].header("X-Slipway-Event-Id"),
        event["id"].as_str(),
        "the header names the event"
    );
    assert_eq!(alert["event_id"], event["id"]);

    // A green build after the red one: a recovery, to the bot's channel.
    let passed = push(&stack, &repo, branch, PASS, "fix").await;
    let task = stack.wait_finished(passed).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let alerts = wait_alerts(&stack, passed, all_delivered).await;
    let ok = of_type(&alerts, "task_succeeded").expect("task_succeeded");
    assert_eq!(ok["recovery"], true);
    let posted = http
        .wait_accepted("/slack/api/chat.postMessage", 1, DEADLINE)
        .await;
    let body = posted[0].json();
    assert_eq!(body["channel"], "#deploys");
    assert!(
        body["text"]
            .as_str()
            .unwrap_or("")
            .contains("succeeded again"),
        "{body}"
    );

    // No secret in what the API shows.
    let (_, all) = stack.get("/api/alerts").await;
    let shown = all.to_string();
    for secret in [
        SLACK_HOOK_TOKEN,
        SLACK_BOT_TOKEN,
        DINGTALK_TOKEN,
        DINGTALK_SECRET,
        HOOK_SECRET,
    ] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    // Nothing was sent twice.
    assert_eq!(http.accepted("/slack/hooks/").len(), 1);
    assert_eq!(http.accepted("/hooks/ci").len(), 1);
    assert_eq!(smtp.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_fails_three_times_is_delivered_once() {
    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("flaky", None);
    let yaml = format!(
        "name: flaky\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed]\n    webhook: {{ url: \"{hook}\" }}\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    http.fail_next("/hooks/flaky", 3);
    stack.start_notifier(stack.notifier_settings()).await;

    let task = push(&stack, &repo, "main", FAIL, "boom").await;
    let alerts = wait_alerts(&stack, task, all_delivered).await;
    let delivery = &alerts[0]["deliveries"][0];
    assert_eq!(delivery["attempts"], 4, "{delivery}");
    assert_eq!(delivery["status"], "delivered");
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("500"),
        "{delivery}"
    );
    let received = http.received("/hooks/flaky");
    assert_eq!(received.len(), 4, "three refused, then one accepted");
    assert_eq!(http.accepted("/hooks/flaky").len(), 1);
    let ids: HashSet<Option<&str>> = received
        .iter()
        .map(|r| r.header("X-Slipway-Event-Id"))
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same event id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_stopped_notifier_and_are_sent_once() {
    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("later", None);
    let yaml = format!(
        "name: later\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed, task_succeeded]\n    webhook: {{ url: \"{hook}\" }}\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    let settings = notifier::Settings {
        notify_throttle: "0s".to_owned(),
        ..stack.notifier_settings()
    };
    // The notifier runs once (declaring its queue), then is stopped.
    stack.start_notifier(settings.clone()).await;
    stack.stop_notifier().await;

    let mut tasks = Vec::new();
    for (i, files) in [FAIL, PASS, FAIL].into_iter().enumerate() {
        let task = push(&stack, &repo, "main", files, &format!("change {i}")).await;
        stack.wait_finished(task).await;
        tasks.push(task);
    }
    assert!(http.received("/hooks/later").is_empty());

    stack.start_notifier(settings.clone()).await;
    for task in &tasks {
        wait_alerts(&stack, *task, all_delivered).await;
    }
    let got = http.accepted("/hooks/later");
    let ids: Vec<&str> = got
        .iter()
        .filter_map(|r| r.header("X-Slipway-Event-Id"))
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 3, "{got:#?}");
    assert_eq!(unique.len(), 3, "none twice: {ids:?}");
    let kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "build_failed").count(),
        2,
        "{kinds:?}"
    );

    // Started again, the notifier sends only what is new: a fourth event
    // comes after anything it could have taken up again.
    stack.stop_notifier().await;
    stack.start_notifier(settings).await;
    let task = push(&stack, &repo, "main", FAIL, "change 3").await;
    wait_alerts(&stack, task, all_delivered).await;
    let got = http.accepted("/hooks/later");
    let ids: HashSet<&str> = got
        .iter()
        .filter_map(|r| r.header("X-Slipway-Event-Id"))
        .collect();
    assert_eq!((got.len(), ids.len()), (4, 4), "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_are_throttled_but_recoveries_are_not() {
    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("noisy", None);
    let yaml = format!(
        "name: noisy\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed, task_succeeded]\n    webhook: {{ url: \"{hook}\" }}\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    stack.start_notifier(stack.notifier_settings()).await;

    let mut statuses = Vec::new();
    for (i, files) in [FAIL, FAIL, PASS, FAIL, PASS, PASS].into_iter().enumerate() {
        let task = push(&stack, &repo, "main", files, &format!("change {i}")).await;
        stack.wait_finished(task).await;
        let alerts = wait_alerts(&stack, task, |a| {
            a.iter()
                .any(|x| x["status"] == "delivered" || x["status"] == "throttled")
        })
        .await;
        statuses.push(alerts[0]["status"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(
        statuses,
        [
            "delivered", // the first failure
            "throttled", // the same failure again within 5 min
            "delivered", // a recovery
            "throttled", // a failure again, within 5 min of the first
            "delivered", // a recovery again, within 5 min of the last success
            "throttled", // a plain success again
        ]
    );
    assert_eq!(http.accepted("/hooks/noisy").len(), 3);

    // Another branch counts on its own.
    let task = push(&stack, &repo, "other", FAIL, "elsewhere").await;
    stack.wait_finished(task).await;
    let alerts = wait_alerts(&stack, task, all_delivered).await;
    assert_eq!(alerts[0]["type"], "build_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_runner_takes_raises_task_stuck() {
    let http = HttpReceiver::start().await;
    let mut stack = Stack::with(test_support::Options {
        runners: 0,
        pending_alert: "1s".to_owned(),
        ..test_support::Options::default()
    })
    .await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("stuck", None);
    let yaml = format!(
        "name: stuck\nrepo: {repo}\n{STEPS}notify:\n  - on: [task_stuck]\n    webhook: {{ url: \"{hook}\" }}\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    stack.start_notifier(stack.notifier_settings()).await;
    let task = push(&stack, &repo, "main", PASS, "nobody home").await;
    let alerts = wait_alerts(&stack, task, all_delivered).await;
    assert_eq!(alerts.len(), 1, "raised once: {alerts:?}");
    assert_eq!(alerts[0]["type"], "task_stuck");
    let got = http.wait_accepted("/hooks/stuck", 1, DEADLINE).await;
    assert!(
        got[0].json()["summary"]
            .as_str()
            .unwrap_or("")
            .contains("no runner takes it"),
        "{:?}",
        got[0].text()
    );
}

/// The seed's deploy rules through the server default: a failed health
/// check and a failed deploy are sent with the rollback that followed, a
/// deploy past its timeout is sent for a person; a healthy deploy is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_failures_notify_through_the_server_default() {
    test_support::images::busybox(&test_support::images::docker()).await;
    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let port = free_port();
    let slow_port = free_port();
    let container = format!("slipway-notify-dev-{port}");
    let slow = format!("slipway-notify-slow-{port}");
    let _cleanup = Cleanup(vec![container.clone(), slow.clone()]);
    let yaml = format!(
        "name: shipped\nrepo: {repo}\nimage:\n  name: slipway-notify/shipped-{port}\ndeploy:\n  - environment: dev\n    branches: [main]\n    target:\n      container:\n        name: {container}\n        ports: [\"127.0.0.1:{port}:8080\"]\n    health:\n      url: http://127.0.0.1:{port}/health\n      interval: 200ms\n      timeout: 4s\n      watch: 400ms\n  - environment: slow\n    branches: [slow]\n    target:\n      container:\n        name: {slow}\n        ports: [\"127.0.0.1:{slow_port}:8080\"]\n    health:\n      url: http://127.0.0.1:{slow_port}/health\n      interval: 200ms\n      timeout: 60s\n    timeout: 2s\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    let settings = notifier::Settings {
        default_notify: format!(
            "{{webhook: {{url: \"{}\"}}}}",
            http.webhook_url("ops", None)
        ),
        ..stack.notifier_settings()
    };
    stack.start_notifier(settings).await;

    let files = app(Some("v1\n"), None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let v1 = push(&stack, &repo, "main", &files, "v1").await;
    let task = stack.wait_finished(v1).await;
    assert_eq!(task["status"], "success", "{task:#}");

    // v2 has no /health: health_check_failed, then rolled back to v1.
    let files = app(None, None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let v2 = push(&stack, &repo, "main", &files, "v2").await;
    let task = stack.wait_finished(v2).await;
    assert_eq!(task["deployments"][0]["status"], "rolled_back", "{task:#}");
    let alerts = wait_alerts(&stack, v2, |a| a.len() == 2 && all_delivered(a)).await;
    let failed = of_type(&alerts, "health_check_failed").expect("health_check_failed");
    assert_eq!(failed["environment"], "dev");
    assert!(
        failed["error"].as_str().unwrap_or("").contains("404"),
        "{failed}"
    );
    let rolled = of_type(&alerts, "rolled_back").expect("rolled_back");
    assert_eq!(rolled["reason"], "health_check_failed");
    assert_eq!(rolled["outcome"], "succeeded");
    assert!(of_type(&alerts, "build_failed").is_none(), "{alerts:?}");

    // v3 exits at once: deploy_failed, then rolled back.
    let files = app(Some("v3\n"), Some("[\"false\"]"));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let v3 = push(&stack, &repo, "main", &files, "v3").await;
    stack.wait_finished(v3).await;
    let alerts = wait_alerts(&stack, v3, |a| a.len() == 2 && all_delivered(a)).await;
    assert!(of_type(&alerts, "deploy_failed").is_some(), "{alerts:?}");
    assert_eq!(
        of_type(&alerts, "rolled_back").expect("rolled_back")["reason"],
        "deploy_failed"
    );

    // On `slow` the app never gets healthy, and the deploy runs past its
    // 2 s budget: deploy_timeout, left for a person.
    let files = app(None, None);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let v4 = push(&stack, &repo, "slow", &files, "v4").await;
    let task = stack.wait_finished(v4).await;
    assert_eq!(task["deployments"][0]["status"], "timed_out", "{task:#}");
    let alerts = wait_alerts(&stack, v4, all_delivered).await;
    let kinds: Vec<&str> = alerts.iter().filter_map(|a| a["type"].as_str()).collect();
    assert_eq!(kinds, ["deploy_timeout"]);

    // What reached the receiver: exactly the alerts, each once.
    let got = http.accepted("/hooks/ops");
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "deploy_failed",
            "deploy_timeout",
            "health_check_failed",
            "rolled_back",
            "rolled_back"
        ]
    );
}

/// The notifier's own gRPC service: a test message to a channel, with the
/// workflow's secrets resolved, and an honest answer when it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_checks_a_channel() {
    use proto::notifier_client::NotifierClient;
    use proto::test_channel_request::Channel as Wire;

    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let workflow_id = stack
        .create_workflow(&format!("name: tested\nrepo: {}\n{STEPS}", repo.url))
        .await;
    stack
        .set_secret(workflow_id, "DING_SECRET", DINGTALK_SECRET)
        .await;
    let addr = stack.start_notifier(stack.notifier_settings()).await;
    let channel = tonic::transport::Endpoint::from_shared(addr)
        .expect("url")
        .connect()
        .await
        .expect("notifier answers");
    let bearer = proto::auth::Bearer::new(&stack.token).expect("token");
    let mut client = NotifierClient::with_interceptor(channel.clone(), bearer);

    let answer = client
        .test_channel(proto::TestChannelRequest {
            channel: Some(Wire::Dingtalk(proto::DingTalkTarget {
                webhook_url: http.dingtalk_url(DINGTALK_TOKEN, Some(DINGTALK_SECRET)),
                secret: Some("${{ secrets.DING_SECRET }}".to_owned()),
            })),
            workflow_id: Some(workflow_id),
        })
        .await
        .expect("answered")
        .into_inner();
    assert!(answer.delivered, "{answer:?}");
    assert_eq!(
        answer.target,
        format!("robot {}", http.base()),
        "the target without its token"
    );
    let got = http.wait_accepted("/dingtalk/", 1, DEADLINE).await;
    assert!(
        got[0].json()["markdown"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("Test message"),
        "{}",
        got[0].text()
    );

    // A wrong signing secret: DingTalk refuses, and the answer says why
    // without the secret.
    let answer = client
        .test_channel(proto::TestChannelRequest {
            channel: Some(Wire::Dingtalk(proto::DingTalkTarget {
                webhook_url: http.dingtalk_url(DINGTALK_TOKEN, Some(DINGTALK_SECRET)),
                secret: Some("SECwrong-secret-value".to_owned()),
            })),
            workflow_id: None,
        })
        .await
        .expect("answered")
        .into_inner();
    assert!(!answer.delivered);
    let error = answer.error.unwrap_or_default();
    assert!(error.contains("310000"), "{error}");
    assert!(
        !error.contains("SECwrong") && !error.contains(DINGTALK_TOKEN),
        "{error}"
    );

    // Placeholders without a workflow are a bad request; no token, no entry.
    let err = client
        .test_channel(proto::TestChannelRequest {
            channel: Some(Wire::Webhook(proto::WebhookTarget {
                url: "${{ secrets.X }}".to_owned(),
                secret: None,
            })),
            workflow_id: None,
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let mut anonymous = NotifierClient::new(channel);
    let err = anonymous
        .list_deliveries(proto::ListAlertsRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // The orchestrator's notifier API, which hands out secrets, wants the
    // notifier token: the API token is not enough.
    let orchestrator = tonic::transport::Endpoint::from_shared(stack.grpc_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("orchestrator answers");
    let api = proto::auth::Bearer::new(&stack.token).expect("token");
    let err = proto::notifier_api_client::NotifierApiClient::with_interceptor(orchestrator, api)
        .get_notify_config(proto::GetNotifyConfigRequest {
            workflow_id,
            version: None,
            secret_names: vec!["DING_SECRET".to_owned()],
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

/// A failing channel whose URL and secret are tokens: the notifier's log
/// (at debug) and the API name the failure, never the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_or_the_api() {
    let http = HttpReceiver::start().await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let url_token = "hookpathtoken-6d2f9a";
    let secret = "hooksigning-1c7e3b";
    let hook = http.webhook_url(url_token, Some(secret));
    let yaml = format!(
        "name: secretive\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed]\n    webhook: {{ url: \"${{{{ secrets.URL }}}}\", secret: \"${{{{ secrets.SIG }}}}\" }}\n    dingtalk: {{ webhook_url: \"${{{{ secrets.DING }}}}\", secret: \"${{{{ secrets.SIG }}}}\" }}\n",
        repo = repo.url
    );
    let workflow_id = stack.create_workflow(&yaml).await;
    stack.set_secret(workflow_id, "URL", &hook).await;
    stack.set_secret(workflow_id, "SIG", secret).await;
    // DingTalk refuses the signature (the robot knows another secret).
    let ding = http.dingtalk_url(DINGTALK_TOKEN, Some(DINGTALK_SECRET));
    stack.set_secret(workflow_id, "DING", &ding).await;
    http.fail_next("/hooks/", 2);

    let s = stack.notifier_settings();
    let log = tempfile_path("notifier.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-notifier"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLIPWAY_NOTIFIER_ADDR", "127.0.0.1:0")
        .env("SLIPWAY_ORCHESTRATOR_URL", &s.orchestrator_url)
        .env("SLIPWAY_AMQP_URL", &s.amqp_url)
        .env("SLIPWAY_API_TOKEN", &s.api_token)
        .env("SLIPWAY_NOTIFIER_TOKEN", &s.notifier_token)
        .env("SLIPWAY_QUEUE_PREFIX", &s.queue_prefix)
        .env("SLIPWAY_QUEUE_EXPIRES_MS", s.queue_expires_ms.to_string())
        .env("SLIPWAY_NOTIFY_RETRY_BASE", "100ms")
        .env("SLIPWAY_NOTIFY_ATTEMPTS", "3")
        .env("SLIPWAY_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("notifier process starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);

    let task = push(&stack, &repo, "main", FAIL, "leak check").await;
    // The webhook gets through on its third attempt; DingTalk never does.
    let alerts = wait_alerts(&stack, task, |a| {
        a.iter().any(|x| {
            x["deliveries"]
                .as_array()
                .is_some_and(|ds| ds.iter().all(|d| d["status"] != "pending"))
        })
    })
    .await;
    let deliveries = alerts[0]["deliveries"].as_array().expect("deliveries");
    let by = |c: &str| deliveries.iter().find(|d| d["channel"] == c).expect(c);
    assert_eq!(by("webhook")["status"], "delivered", "{alerts:?}");
    assert_eq!(by("dingtalk")["status"], "failed", "{alerts:?}");
    assert_eq!(by("dingtalk")["attempts"], 3, "{alerts:?}");
    let got = http.accepted("/hooks/");
    assert_eq!(got.len(), 1);

    let (_, api) = stack.get("/api/alerts").await;
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("delivery failed"), "{logged}");
    for text in [api.to_string(), logged] {
        for leak in [url_token, secret, DINGTALK_TOKEN] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
    }
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slipway-notify-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// A message on the events queue that is not an event is dropped with a
/// warning; the notifier goes on with the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_dropped_and_the_next_is_sent() {
    use queue::lapin::options::BasicPublishOptions;

    let http = HttpReceiver::start().await;
    let mut stack = Stack::start().await;
    let repo = GitRepo::new();
    let hook = http.webhook_url("robust", None);
    let yaml = format!(
        "name: robust\nrepo: {repo}\n{STEPS}notify:\n  - on: [build_failed]\n    webhook: {{ url: \"{hook}\" }}\n",
        repo = repo.url
    );
    stack.create_workflow(&yaml).await;
    stack.start_notifier(stack.notifier_settings()).await;

    let topology = queue::Topology::new(stack.queue_prefix.clone());
    let connection = queue::connect(&stack.amqp_url, None).await.expect("broker");
    let channel = connection.create_channel().await.expect("channel");
    for body in [&b"not json"[..], br#"{"id": "x", "type": "no_such_event"}"#] {
        channel
            .basic_publish(
                topology.events_exchange().as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                queue::lapin::BasicProperties::default(),
            )
            .await
            .expect("published")
            .await
            .expect("confirmed");
    }
    let _ = connection.close(200, "done".into()).await;

    let task = push(&stack, &repo, "main", FAIL, "after garbage").await;
    wait_alerts(&stack, task, all_delivered).await;
    assert_eq!(http.accepted("/hooks/robust").len(), 1);
}
