//! The front page (the overview) and a workflow's insights page in a real
//! headless Chromium, over the seeded history of `test_support::history`
//! (whose figures `orchestrator/tests/insights.rs` works out by hand): what
//! each must show, at 1280 px, at 420 px and in the dark theme, with
//! screenshots in `target/screenshots/`.

use serde_json::json;
use test_support::browser::{Browser, until};
use test_support::{Options, Stack, history};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_the_insights_show_the_history() {
    let stack = Stack::with(Options {
        runners: 0,
        ..Options::default()
    })
    .await;
    let history = history::seed(&stack).await;
    let shop = history.workflow_id;
    let row = format!("table.overview tr[data-workflow=\"{shop}\"]");
    let cell = |env: &str| format!("{row} td[data-environment=\"{env}\"]");

    // ---- the overview is the front page.
    let browser = Browser::start(1280, 900).await;
    browser.log_in(&stack.http, &stack.token, "/").await;
    let dev = browser
        .wait_text(&cell("dev"), |t| t.to_lowercase().contains("up"))
        .await;
    // dev runs task 1002's build: its commit (no tag), message and author.
    assert!(dev.contains("222222222222"), "{dev}");
    assert!(
        dev.contains("change 1002") && dev.contains("dev1002"),
        "{dev}"
    );
    assert!(dev.contains("deployed"), "{dev}");
    let test = browser.text(&cell("test")).await.unwrap_or_default();
    assert!(
        test.contains("never deployed") && test.contains("timed_out"),
        "{test}"
    );
    let prod = browser.text(&cell("prod")).await.unwrap_or_default();
    assert!(prod.contains("awaiting_approval"), "{prod}");
    let approve = format!("#approve-{shop}-prod");
    assert!(browser.visible(&approve).await, "an approve button");
    let last = browser
        .text(&format!("{row} td.last"))
        .await
        .unwrap_or_default();
    assert!(last.contains("#1007") && last.contains("running"), "{last}");
    // (Badges are upper case on screen.)
    let waiting = browser.text(".awaiting-count").await.unwrap_or_default();
    assert!(waiting.contains("1 waiting for approval"), "{waiting}");
    // Approving asks first: declined, nothing happens.
    let question = browser.click_confirm(&approve, false).await;
    assert!(question.contains("prod"), "{question}");
    let (_, d) = stack.get("/api/deployments/2007").await;
    assert_eq!(d["status"], "awaiting_approval");
    browser.screenshot("30-overview-1280").await;

    // ---- the insights page of the week.
    browser
        .goto(&format!("{}/workflows/{shop}/insights?days=7", stack.http))
        .await;
    let figures = browser
        .wait_text(".figures", |t| t.contains("Success rate"))
        .await;
    // 2 of 4 finished builds succeeded; runs 30, 60, 120 s; queued 2, 5,
    // 10, 20 s.
    assert!(figures.contains("50.0%"), "{figures}");
    for want in ["1.0 min", "1.8 min", "7.5s"] {
        assert!(figures.contains(want), "{want} in {figures}");
    }
    let dev = browser
        .text("table.env-figures tr[data-environment=\"dev\"]")
        .await
        .unwrap_or_default();
    // 3 deploys, 1 failed; lead time p50 2370 s; recovered in 600 s.
    for want in ["dev", "3", "33.3%", "39.5 min", "10.0 min"] {
        assert!(dev.contains(want), "{want} in {dev}");
    }
    let prod = browser
        .text("table.env-figures tr[data-environment=\"prod\"]")
        .await
        .unwrap_or_default();
    assert!(prod.contains("n/a"), "prod never deployed: {prod}");
    for chart in [
        "chart-durations",
        "chart-success",
        "chart-deploys",
        "chart-change-failure",
        "chart-lead-time",
        "chart-mttr",
    ] {
        let svg = browser
            .html(&format!("#{chart} svg"))
            .await
            .unwrap_or_default();
        // (The inside of the element: its lines, bars and labels.)
        assert!(svg.contains("<text"), "{chart} is drawn: {svg}");
    }
    let names = browser
        .text("#chart-change-failure")
        .await
        .unwrap_or_default();
    for env in ["dev", "test", "prod"] {
        assert!(names.contains(env), "{env} in {names}");
    }
    // The deploys chart has a bar per environment and day with deploys:
    // dev and test three days back, dev two days back.
    let bars = browser
        .eval("return document.querySelectorAll('#chart-deploys svg rect').length;")
        .await
        .as_i64()
        .unwrap_or(0);
    assert!(bars >= 3, "{bars} bars");
    let labels = browser
        .html("#chart-durations svg")
        .await
        .unwrap_or_default();
    let days: Vec<String> = (0..4).map(|n| history.day(n)[5..].to_owned()).collect();
    assert!(
        days.iter().any(|d| labels.contains(d.as_str())),
        "{days:?} on the axis"
    );
    browser.screenshot("31-insights-1280").await;
    browser.close().await;

    // ---- 420 px: the page fits; the overview's table scrolls in its box.
    let narrow = Browser::start(420, 900).await;
    narrow.log_in(&stack.http, &stack.token, "/").await;
    narrow
        .wait_text(&cell("dev"), |t| t.to_lowercase().contains("up"))
        .await;
    assert!(narrow.page_overflow().await <= 0, "the overview fits");
    // A card per workflow: every environment, its health and Approve on
    // screen, without a sideways scroll.
    for css in [cell("prod"), approve.clone(), format!("{row} td.last")] {
        assert_eq!(narrow.overhang(&css).await, 0, "{css} on screen");
    }
    narrow.screenshot("32-overview-420").await;
    narrow
        .goto(&format!("{}/workflows/{shop}/insights?days=7", stack.http))
        .await;
    narrow
        .wait_text(".figures", |t| t.contains("Success rate"))
        .await;
    assert!(narrow.page_overflow().await <= 0, "the insights fit");
    narrow.screenshot("33-insights-420").await;
    narrow.close().await;

    // ---- dark theme.
    let dark = Browser::start_dark(1280, 900).await;
    dark.log_in(&stack.http, &stack.token, "/").await;
    dark.wait_text(&cell("dev"), |t| t.to_lowercase().contains("up"))
        .await;
    assert_eq!(
        dark.eval("return getComputedStyle(document.body).backgroundColor;")
            .await,
        json!("rgb(17, 19, 24)")
    );
    dark.screenshot("34-overview-dark").await;
    dark.goto(&format!("{}/workflows/{shop}/insights?days=30", stack.http))
        .await;
    until("the charts", || async {
        dark.visible("#chart-durations svg").await.then_some(())
    })
    .await;
    dark.screenshot("35-insights-dark").await;
    dark.close().await;
}
