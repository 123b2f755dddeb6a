//! The notifier end to end: real orchestrator, gateway, runner, Postgres and
//! RabbitMQ; Slack, SMTP, DingTalk and webhook receivers played by local
//! servers that speak their protocols and check signatures.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::hooks::github_push;
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
