//! The dashboard's pages over a seeded history, in a real headless Chromium:
//! a workflow deployed three times to `dev` and the last build once more by
//! hand (so a rollback would bring back the image that runs), approved once
//! to `prod` with two more builds waiting there, an environment added since
//! and never deployed to, and a workflow whose run failed. The task list, a task's page, its log and the workflow's page are
//! checked for what they must show, at 1280 px, at 420 px and in the dark
//! theme, with screenshots of each in `target/screenshots/`.

use serde_json::{Value, json};
use test_support::browser::{Browser, until};
use test_support::images::{self, Cleanup, free_port};
use test_support::{GitRepo, Stack};

/// A routed-less container environment of the test app on its own port.
fn environment(name: &str, container: &str, port: u16, auto: bool) -> String {
    format!(
        "  - environment: {name}\n    auto: {auto}\n    target: {{ container: {{ name: {container}, ports: [\"127.0.0.1:{port}:8080\"] }} }}\n    health: {{ url: \"http://127.0.0.1:{port}/health\", interval: 200ms, timeout: 5s }}\n"
    )
}

async fn deployed(stack: &Stack, task: i64, environment: &str) -> i64 {
    let (status, body) = stack
        .post(
            &format!("/api/tasks/{task}/deploy"),
            json!({ "environment": environment }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["deployment_id"].as_i64().expect("deployment");
    until(&format!("deployment {id} to succeed"), || async {
        let (_, d) = stack.get(&format!("/api/deployments/{id}")).await;
        (d["status"] == "succeeded").then_some(())
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_history_reads_right_at_every_width_and_theme() {
    let docker = images::docker();
    images::busybox(&docker).await;
    let mut stack = Stack::start().await;
    // Alerts of healthy deploys go to a webhook nobody answers: they stay
    // pending, with a next try.
    let mut notifier = stack.notifier_settings();
    notifier.notify_retry_base = "10m".to_owned();
    stack.start_notifier(notifier).await;
    let repo = GitRepo::new();
    let ports = [free_port(), free_port()];
    let names: Vec<String> = ["dev", "prod"]
        .iter()
        .zip(ports)
        .map(|(env, port)| format!("slipway-pages-{env}-{port}"))
        .collect();
    let _cleanup = Cleanup(
        names
            .iter()
            .flat_map(|n| [n.clone(), format!("{n}.previous")])
            .collect(),
    );
    let head = format!(
        "name: shop\nrepo: {}\nimage:\n  name: slipway-pages/shop-{}\nnotify:\n  - on: [deploy_succeeded]\n    webhook: {{ url: \"http://127.0.0.1:{}/hooks/deploys/of-the-shop-workflow\" }}\ndeploy:\n",
        repo.url,
        ports[0],
        free_port()
    );
    let two = format!(
        "{head}{}{}",
        environment("dev", &names[0], ports[0], true),
        environment("prod", &names[1], ports[1], false)
    );
    let workflow = stack.create_workflow(&two).await;

    // v1 to dev, approved to prod; v2 and v3 to dev, both waiting for prod.
    let mut tasks = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let id = stack
            .push_app(&repo, &format!("{v}\n"), &format!("pages-{v}"))
            .await;
        let task = stack.wait_finished(id).await;
        assert_eq!(task["status"], "success", "{task:#}");
        if v == "v1" {
            deployed(&stack, id, "prod").await;
        }
        tasks.push(id);
    }
    let [v1, v2, v3] = [tasks[0], tasks[1], tasks[2]];
    // v3 to dev again: the previous deployment runs the same image. Then
    // an environment the definition gains, never deployed to.
    deployed(&stack, v3, "dev").await;
    let three = format!(
        "{two}  - environment: qa\n    auto: false\n    target: {{ container: {{ name: slipway-pages-qa-{} }} }}\n",
        ports[0]
    );
    let (status, body) = stack
        .api(
            reqwest::Method::PUT,
            &format!("/api/workflows/{workflow}"),
            Some(json!({ "definition": three })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A workflow whose run fails, after a step that prints nothing.
    let broken = stack
        .create_workflow(&format!(
            "name: broken\nrepo: {}\nsteps:\n  - name: quiet\n    run: \"true\"\n  - name: fail\n    run: echo boom; exit 3\n",
            repo.url
        ))
        .await;
    let failed = stack.run_workflow(broken).await;
    assert_eq!(stack.wait_finished(failed).await["status"], "failed");
    let (_, waiting) = stack.get("/api/deployments?status=awaiting_approval").await;
    let waiting = waiting.as_array().map_or(0, Vec::len);
    assert_eq!(waiting, 2, "v2 and v3 wait for prod");
    let v1_json = stack.task(v1).await;
    let commit = v1_json["commit"].as_str().expect("a commit").to_owned();

    // ---- 1280 px, light.
    let browser = Browser::start(1280, 900).await;
    browser.log_in(&stack.http, &stack.token, "/tasks").await;
    assert_eq!(
        browser.attr("#nav-tasks", "href").await.as_deref(),
        Some("/tasks")
    );
    browser
        .wait_text("#approvals-count", |t| t == waiting.to_string())
        .await;
    let row = |id: i64| format!("#task-rows tr[data-task=\"{id}\"]");
    let v1_row = browser.text(&row(v1)).await.unwrap_or_default();
    assert!(v1_row.contains("dev: succeeded"), "{v1_row}");
    assert!(v1_row.contains("prod: succeeded"), "{v1_row}");
    assert!(v1_row.contains("pages-v1"), "the commit message: {v1_row}");
    assert!(
        v1_row.contains(v1_json["author"].as_str().expect("an author")),
        "{v1_row}"
    );
    assert!(v1_row.contains(&commit[..12]), "{v1_row}");
    assert!(v1_row.contains("push"), "the trigger: {v1_row}");
    let v3_row = browser.text(&row(v3)).await.unwrap_or_default();
    assert!(v3_row.contains("success"), "{v3_row}");
    assert!(v3_row.contains("prod: awaiting approval"), "{v3_row}");
    let failed_row = browser.text(&row(failed)).await.unwrap_or_default();
    assert!(failed_row.contains("failed"), "{failed_row}");
    // Times are relative, with the instant on hover.
    let created = browser
        .attr(&format!("{} time", row(v1)), "datetime")
        .await
        .unwrap_or_default();
    assert!(created.ends_with('Z'), "{created}");
    browser.screenshot("20-tasks-1280").await;

    // An approval of v2 while v3 waits for prod warns, and a dismissed
    // question changes nothing.
    browser.goto(&format!("{}/tasks/{v2}", stack.http)).await;
    let question = browser.click_confirm("#approve-prod", false).await;
    assert!(question.contains("older version"), "{question}");
    assert!(question.contains(&format!("Task #{v3}")), "{question}");
    let v2_prod = stack.task(v2).await["deployments"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["environment"] == "prod").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(v2_prod["status"], "awaiting_approval", "{v2_prod:#}");

    // v1's page: versions, deploy forms, the log in sections.
    browser.goto(&format!("{}/tasks/{v1}", stack.http)).await;
    browser.wait_text("#task-status", |t| t == "success").await;
    let versions = browser.text("table.deployments").await.unwrap_or_default();
    assert!(versions.contains(&commit[..12]), "{versions}");
    assert!(versions.contains("sha256:"), "{versions}");
    let image = browser.text("#task-image").await.unwrap_or_default();
    assert!(image.contains("sha256:"), "{image}");
    assert!(browser.visible("#deploy-dev").await, "deploy this to dev");
    // qa came after v1's definition: v1 cannot go there.
    assert!(!browser.visible("#deploy-qa").await, "not to qa");
    let question = browser.click_confirm("#deploy-dev", false).await;
    assert!(question.contains("older"), "dev runs v3: {question}");
    until("the log's lines", || async {
        browser.visible("#log .ln").await.then_some(())
    })
    .await;
    assert_eq!(
        browser.attr("a.step-link", "href").await.as_deref(),
        Some("#log-clone")
    );
    assert!(browser.visible("details#log-clone").await);
    for step in ["image", "deploy:dev", "deploy:prod"] {
        let css = format!("details[id=\"log-{step}\"]");
        assert!(browser.visible(&css).await, "{css}");
    }
    browser.screenshot("21-task-1280").await;

    // The failed run: the quiet step still has its section; lines are
    // numbered with anchors, stamped on demand, searched.
    browser
        .goto(&format!("{}/tasks/{failed}", stack.http))
        .await;
    until("the failed step's output", || async {
        browser
            .text("details#log-fail")
            .await
            .filter(|t| t.contains("boom"))
    })
    .await;
    assert!(browser.visible("details#log-quiet").await);
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('details#log-quiet .ln').length;")
            .await,
        json!(0)
    );
    let line = "details#log-fail .ln";
    let anchor = browser.attr(&format!("{line} a.n"), "href").await;
    assert_eq!(anchor.as_deref(), Some("#fail-L1"));
    assert!(
        !browser.visible(&format!("{line} .ts")).await,
        "times hidden at first"
    );
    browser.click("#log-times").await;
    assert!(
        browser.visible(&format!("{line} .ts")).await,
        "times on demand"
    );
    browser.fill("#log-search", "boom").await;
    let hits = browser
        .wait_text("#log-hits", |t| t.ends_with("matching lines"))
        .await;
    assert!(!hits.starts_with("0 "), "{hits}");
    assert_eq!(browser.text("#log mark").await.as_deref(), Some("boom"));
    browser.screenshot("22-failed-task-1280").await;

    // The workflow: every environment, the latest deploy beside the
    // current one, a rollback offered only where it changes the image.
    browser
        .goto(&format!("{}/workflows/{workflow}", stack.http))
        .await;
    browser
        .wait_text("tr[data-environment=\"qa\"]", |t| {
            t.contains("never deployed")
        })
        .await;
    let dev = browser
        .text("tr[data-environment=\"dev\"] td.current")
        .await
        .unwrap_or_default();
    assert!(
        dev.contains("succeeded") && dev.contains("sha256:"),
        "{dev}"
    );
    let prod_latest = browser
        .text("tr[data-environment=\"prod\"] td.latest")
        .await
        .unwrap_or_default();
    assert!(prod_latest.contains("awaiting approval"), "{prod_latest}");
    assert_eq!(
        browser.attr("#rollback-dev", "title").await.as_deref(),
        Some("the previous deployment runs the same image")
    );
    assert!(browser.attr("#rollback-dev", "disabled").await.is_some());
    assert!(browser.attr("#rollback-prod", "disabled").await.is_some());
    assert_eq!(browser.overhang("#rollback-dev").await, 0, "on screen");
    let history = browser.text("table.history").await.unwrap_or_default();
    assert!(history.contains("sha256:"), "{history}");
    assert_eq!(
        browser.attr("#run-branch", "value").await.as_deref(),
        Some("main")
    );
    browser.screenshot("23-workflow-1280").await;

    // The workflows page names each workflow's last run, and follows a
    // new one without a reload.
    browser.goto(&format!("{}/workflows", stack.http)).await;
    let last_run = format!("tr[data-workflow=\"{broken}\"] .last-run");
    browser
        .wait_text(&last_run, |t| {
            t.contains(&format!("#{failed}")) && t.contains("failed")
        })
        .await;
    let again = stack.run_workflow(broken).await;
    browser
        .wait_text(&last_run, |t| t.contains(&format!("#{again}")))
        .await;
    stack.wait_finished(again).await;

    // A run from the workflow's page goes to its task, which says so.
    browser
        .goto(&format!("{}/workflows/{broken}", stack.http))
        .await;
    browser.fill("#run-branch", "main").await;
    browser.click("#run").await;
    let started = until("the started task's page", || async {
        let path = browser.path().await;
        let id: i64 = path.strip_prefix("/tasks/")?.parse().ok()?;
        (id > again).then_some(id)
    })
    .await;
    browser
        .wait_text("#flash", |t| t == format!("Task #{started} started: main."))
        .await;
    assert_eq!(stack.task(started).await["trigger"], "manual");
    stack.wait_finished(started).await;

    // A page that does not exist keeps the navigation.
    browser.goto(&format!("{}/no-such-page", stack.http)).await;
    browser
        .wait_text("#error-message", |t| t.contains("no page at /no-such-page"))
        .await;
    assert!(
        browser.visible("#nav").await,
        "the 404 page has the navigation"
    );
    browser.goto(&format!("{}/tasks/999999", stack.http)).await;
    browser.wait_text("h1", |t| t == "Error 404").await;
    assert!(browser.visible("#nav-tasks").await);
    browser.screenshot("24-not-found").await;

    // Alerts at 1400 px: long references and targets wrap, the status and
    // deliveries stay on screen, a pending delivery says when it is tried
    // again; the filters pick by workflow and type.
    browser
        .client
        .set_window_size(1400, 900)
        .await
        .expect("resize");
    browser
        .goto(&format!(
            "{}/alerts?workflow_id={workflow}&type=deploy_succeeded",
            stack.http
        ))
        .await;
    let alert = "#alert-rows tr[data-alert]";
    // Repeats within the throttle window are recorded, not sent: the first
    // alert of each environment has the delivery.
    browser
        .wait_text("#alert-rows", |t| {
            t.contains("deploy_succeeded") && t.contains("next try")
        })
        .await;
    let summary = browser
        .text(&format!("{alert} td.summary-text"))
        .await
        .unwrap_or_default();
    assert!(summary.contains("@sha256:"), "{summary}");
    assert!(summary.len() < 120, "references are short: {summary}");
    for cell in ["td:nth-child(5)", "td:nth-child(6)"] {
        let css = format!("{alert} {cell}");
        assert_eq!(browser.overhang(&css).await, 0, "{css} on screen");
    }
    assert_eq!(
        browser
            .eval("return document.getElementById('filter-type').value;")
            .await,
        json!("deploy_succeeded")
    );
    browser.screenshot("25-alerts-1400").await;
    browser
        .goto(&format!(
            "{}/alerts?workflow_id={workflow}&type=build_failed",
            stack.http
        ))
        .await;
    browser
        .wait_text("#alert-rows", |t| t.contains("No alerts"))
        .await;

    // ---- 420 px: status, trigger and the actions stay on screen.
    browser
        .client
        .set_window_size(420, 900)
        .await
        .expect("resize");
    browser.goto(&format!("{}/tasks", stack.http)).await;
    browser
        .wait_text(&row(v3), |t| t.contains("awaiting"))
        .await;
    assert!(browser.page_overflow().await <= 0, "the list fits");
    for cell in ["td.state", "td.trigger", "td.id"] {
        let css = format!("{} {cell}", row(v3));
        assert_eq!(browser.overhang(&css).await, 0, "{css} on screen");
    }
    browser.screenshot("26-tasks-420").await;
    browser.goto(&format!("{}/tasks/{v2}", stack.http)).await;
    browser.wait_text("#task-status", |t| t == "success").await;
    assert!(browser.page_overflow().await <= 0, "the task page fits");
    for css in [
        "#task-status",
        "#task-trigger",
        "#approve-prod",
        "#deploy-dev",
    ] {
        assert_eq!(browser.overhang(css).await, 0, "{css} on screen");
    }
    browser.screenshot("27-task-420").await;
    browser.close().await;

    // ---- dark theme.
    let dark = Browser::start_dark(1280, 900).await;
    dark.log_in(&stack.http, &stack.token, "/tasks").await;
    assert_eq!(
        dark.eval("return matchMedia('(prefers-color-scheme: dark)').matches;")
            .await,
        json!(true)
    );
    dark.wait_text(&row(v1), |t| t.contains("prod: succeeded"))
        .await;
    assert_eq!(
        dark.eval("return getComputedStyle(document.body).backgroundColor;")
            .await,
        json!("rgb(17, 19, 24)")
    );
    dark.screenshot("28-tasks-dark").await;
    dark.goto(&format!("{}/tasks/{v1}", stack.http)).await;
    until("the log's lines", || async {
        dark.visible("#log .ln").await.then_some(())
    })
    .await;
    dark.screenshot("29-task-dark").await;
    dark.close().await;

    // Without a browser: the raw log, the icon, and no token through the login.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = plain
        .post(format!("{}/login", stack.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&next=%2F", stack.token))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let raw = plain
        .get(format!("{}/tasks/{failed}/log.txt", stack.http))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("raw log");
    assert_eq!(raw.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&raw, "content-type").starts_with("text/plain"));
    assert_eq!(
        header(&raw, "content-disposition"),
        format!("attachment; filename=\"task-{failed}.log\"")
    );
    let text = raw.text().await.unwrap_or_default();
    assert!(
        text.contains("==> fail\n") && text.contains("boom"),
        "{text}"
    );
    for icon in ["/favicon.ico", "/favicon.svg"] {
        let r = plain
            .get(format!("{}{icon}", stack.http))
            .send()
            .await
            .expect("icon");
        assert_eq!(r.status(), 200, "{icon}");
        assert_eq!(header(&r, "content-type"), "image/svg+xml");
    }
    let r = plain
        .get(format!(
            "{}/tasks?workflow_id={workflow}&token=s3cret",
            stack.http
        ))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 303);
    assert_eq!(
        header(&r, "location"),
        format!("/login?next=%2Ftasks%3Fworkflow_id%3D{workflow}")
    );
}
