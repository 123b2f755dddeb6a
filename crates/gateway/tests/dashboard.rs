//! The dashboard in a real headless Chromium against a real stack: a user
//! logs in with the API token, watches a running task's log grow (colours
//! rendered, secrets masked), cancels (after a confirmation) and retries
//! it, approves a waiting environment and rolls one back, each action said
//! by a flash on the page it leads to. Screenshots of each step are kept in
//! `target/screenshots/`. `dashboard_pages.rs` reads a seeded history in
//! every layout.

use serde_json::{Value, json};
use test_support::browser::{Browser, until};
use test_support::images::{self, Cleanup, free_port};
use test_support::{GitRepo, Stack};

/// Logs in through the form, starting from `path` (which sends the browser
/// to the login first).
async fn log_in(browser: &Browser, stack: &Stack, path: &str) {
    browser.goto(&format!("{}{path}", stack.http)).await;
    until("the login page", || async {
        (browser.path().await == "/login").then_some(())
    })
    .await;
    browser.fill("#token", "not-the-token").await;
    browser.click("#login").await;
    browser
        .wait_text("#login-error", |t| t.contains("not the API token"))
        .await;
    browser.fill("#token", &stack.token).await;
    browser.screenshot("01-login").await;
    browser.click("#login").await;
    until(&format!("{path} after the login"), || async {
        (browser.path().await == path.split('?').next().unwrap_or(path)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_follows_a_log_then_cancels_and_retries_the_task() {
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    repo.commit("main", &[("README", "slow\n")], "first");
    let workflow = stack
        .create_workflow(&format!(
            "name: slow\nrepo: {}\nsecrets: [API_KEY]\nsteps:\n  - name: count\n    run: |\n      echo \"key=$API_KEY\"\n      for i in $(seq 1 600); do printf '\\033[32mline %s\\033[0m <ok>\\n' $i; sleep 0.1; done\n",
            repo.url
        ))
        .await;
    stack
        .set_secret(workflow, "API_KEY", "hunter2-s3cret")
        .await;

    let browser = Browser::start(1280, 900).await;
    // Pages need a login; the session cookie is HttpOnly and SameSite=Strict.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = plain
        .post(format!("{}/login", stack.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&next=%2F", stack.token))
        .send()
        .await
        .expect("login post");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    log_in(&browser, &stack, "/tasks").await;

    // The list picks up a new task without a reload.
    let task = stack.run_workflow(workflow).await;
    browser
        .wait_text(&format!("#task-rows tr[data-task=\"{task}\"]"), |t| {
            t.contains("slow")
        })
        .await;
    browser.screenshot("02-tasks").await;

    // The log follows live: it grows while the user watches.
    browser.goto(&format!("{}/tasks/{task}", stack.http)).await;
    browser
        .wait_text("#log", |t| t.contains("line 3 <ok>"))
        .await;
    let first = browser.text("#log").await.unwrap_or_default();
    browser
        .wait_text("#log", |t| t.len() > first.len() + 40)
        .await;
    let html = browser.html("#log").await.unwrap_or_default();
    assert!(
        html.contains("<span class=\"f2\">line 1</span> &lt;ok&gt;"),
        "colours are spans and text is escaped: {html}"
    );
    let text = browser.text("#log").await.unwrap_or_default();
    assert!(text.contains("key=***"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    browser.wait_text("#task-status", |t| t == "running").await;
    assert!(!browser.visible("#retry").await, "no retry while running");
    browser.screenshot("03-log-following").await;

    // Cancel, from the page: asked first, then said.
    let question = browser.click_confirm("#cancel", true).await;
    assert!(
        question.contains(&format!("Cancel task #{task}")),
        "{question}"
    );
    browser
        .wait_text("#flash", |t| t.contains("cancel requested"))
        .await;
    browser
        .wait_text("#task-status", |t| t == "cancelled")
        .await;
    let ended = until("the log stream to end", || async {
        browser.attr("#log", "data-ended").await
    })
    .await;
    assert_eq!(ended, "cancelled");
    assert_eq!(stack.task(task).await["status"], "cancelled");
    until("retry to be offered", || async {
        (browser.visible("#retry").await && !browser.visible("#cancel").await).then_some(())
    })
    .await;
    browser.screenshot("04-cancelled").await;

    // Retry: a new task for the same commit, and the browser goes to it.
    browser.click("#retry").await;
    let retried = until("the retried task's page", || async {
        let path = browser.path().await;
        let id: i64 = path.strip_prefix("/tasks/")?.parse().ok()?;
        (id != task).then_some(id)
    })
    .await;
    browser
        .wait_text("#flash", |t| t.contains(&format!("retries task #{task}")))
        .await;
    let body = stack.task(retried).await;
    assert_eq!(body["retry_of"], task, "{body:#}");
    assert_eq!(body["attempt"], 2);
    browser
        .wait_text("#log", |t| t.contains("line 2 <ok>"))
        .await;
    browser.screenshot("05-retried").await;
    stack
        .post(&format!("/api/tasks/{retried}/cancel"), json!({}))
        .await;

    // A form without the session's CSRF token changes nothing.
    let resp = plain
        .post(format!("{}/tasks/{retried}/retry", stack.http))
        .header(
            "cookie",
            cookie.split(';').next().unwrap_or_default().to_owned(),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=forged")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);

    // On a phone's width nothing overflows the page sideways.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("resize");
    browser.goto(&format!("{}/", stack.http)).await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .expect("script");
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "overflow {overflow}");
    browser.screenshot("06-phone").await;

    // Logging out ends the session.
    browser.click("#logout").await;
    until("the login page", || async {
        (browser.path().await == "/login").then_some(())
    })
    .await;
    browser.close().await;
}

async fn deployment(stack: &Stack, id: i64) -> Value {
    stack.get(&format!("/api/deployments/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_approves_a_waiting_environment_and_rolls_one_back() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let stack = Stack::start().await;
    let repo = GitRepo::new();
    let (dev_port, prod_port) = (free_port(), free_port());
    let dev = format!("slipway-ui-dev-{dev_port}");
    let prod = format!("slipway-ui-prod-{prod_port}");
    let _cleanup = Cleanup(vec![
        dev.clone(),
        format!("{dev}.previous"),
        prod.clone(),
        format!("{prod}.previous"),
    ]);
    let workflow = stack
        .create_workflow(&format!(
            "name: shop\nrepo: {repo}\nimage:\n  name: slipway-ui/shop-{dev_port}\ndeploy:\n  - environment: dev\n    target: {{ container: {{ name: {dev}, ports: [\"127.0.0.1:{dev_port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{dev_port}/health\", interval: 200ms, timeout: 5s }}\n  - environment: prod\n    auto: false\n    target: {{ container: {{ name: {prod}, ports: [\"127.0.0.1:{prod_port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{prod_port}/health\", interval: 200ms, timeout: 5s }}\n",
            repo = repo.url
        ))
        .await;
    let v1 = stack.push_app(&repo, "v1\n", "ui-v1").await;
    let task = stack.wait_finished(v1).await;
    assert_eq!(task["status"], "success", "{task:#}");
    let waiting = task["deployments"][1]["id"]
        .as_i64()
        .expect("prod deployment");
    assert_eq!(task["deployments"][1]["status"], "awaiting_approval");

    let browser = Browser::start(1280, 900).await;
    log_in(&browser, &stack, &format!("/tasks/{v1}")).await;
    browser.wait_text("#task-status", |t| t == "success").await;
    browser.screenshot("10-awaiting-approval").await;

    // Approve prod from the task page, once asked.
    let question = browser.click_confirm("#approve-prod", true).await;
    assert!(
        question.contains(&format!("Deploy task #{v1}")) && question.contains("to prod"),
        "{question}"
    );
    browser
        .wait_text("#flash", |t| {
            t.contains("Deploying task") && t.contains("to prod")
        })
        .await;
    until("prod to be deployed", || async {
        let d = deployment(&stack, waiting).await;
        (d["status"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(deployment(&stack, waiting).await["trigger"], "approval");

    // v2 to dev, then roll dev back from the workflow page.
    let v2 = stack.push_app(&repo, "v2\n", "ui-v2").await;
    let task2 = stack.wait_finished(v2).await;
    assert_eq!(task2["status"], "success", "{task2:#}");
    browser
        .goto(&format!("{}/workflows/{workflow}", stack.http))
        .await;
    browser
        .wait_text("tr[data-environment=\"prod\"]", |t| t.contains("succeeded"))
        .await;
    browser.screenshot("11-workflow").await;
    let question = browser.click_confirm("#rollback-dev", true).await;
    assert!(question.starts_with("Roll dev back from #"), "{question}");
    until("the rollback of dev to succeed", || async {
        let (_, rollbacks) = stack
            .get(&format!(
                "/api/rollbacks?workflow_id={workflow}&environment=dev"
            ))
            .await;
        let done = rollbacks
            .as_array()?
            .iter()
            .any(|r| r["reason"] == "manual" && r["status"] == "succeeded");
        done.then_some(())
    })
    .await;
    let health = reqwest::get(format!("http://127.0.0.1:{dev_port}/health"))
        .await
        .expect("dev answers")
        .text()
        .await
        .unwrap_or_default();
    assert_eq!(health, "v1\n", "dev runs v1 again");
    browser
        .goto(&format!("{}/workflows/{workflow}", stack.http))
        .await;
    browser
        .wait_text("table.rollbacks", |t| {
            t.contains("manual") && t.contains("succeeded")
        })
        .await;
    browser.screenshot("12-rolled-back").await;

    // Alerts list with the events of these deploys.
    browser.goto(&format!("{}/alerts", stack.http)).await;
    browser.wait_text("h1", |t| t == "Alerts").await;
    browser.screenshot("13-alerts").await;
    browser.close().await;
}
