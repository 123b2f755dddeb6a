//! A real headless Chromium for dashboard tests, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`). Screenshots land in
//! `target/screenshots/` (or `SLIPWAY_SCREENSHOTS`), kept as test artefacts.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::DEADLINE;

/// Where Debian installs the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser session; [`Browser::close`] ends it (dropping only stops the
/// driver).
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// The profile of this session, removed with it.
    _profile: tempfile::TempDir,
}

/// Polls `check` until it gives a value, failing the test after the
/// deadline with `what`.
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::launch(width, height, &[]).await
    }

    /// As [`Browser::start`], with the system's dark theme: pages see
    /// `prefers-color-scheme: dark`.
    pub async fn start_dark(width: u32, height: u32) -> Self {
        Self::launch(width, height, &["--force-dark-mode"]).await
    }

    async fn launch(width: u32, height: u32, extra: &[&str]) -> Self {
        let port = crate::images::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver)");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut args = vec![
            "--headless=new".to_owned(),
            // Tests run as root, where Chromium's sandbox cannot.
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
            },
            // A page's confirm() waits for the test to answer it.
            "unhandledPromptBehavior": "ignore",
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = until("chromedriver to take a session", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// The inner HTML of the first element matching `css`.
    pub async fn html(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.html(true).await.ok()
    }

    /// Whether an element matching `css` is on the page and shown.
    pub async fn visible(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// Waits until an element matching `css` has text that `check` accepts;
    /// returns that text.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        until(&format!("{css} to show the expected text"), || async {
            self.text(css).await.filter(|t| check(t))
        })
        .await
    }

    /// Clicks the element matching `css` once it is there and visible.
    pub async fn click(&self, css: &str) {
        until(&format!("{css} to be clickable"), || async {
            let el = self.client.find(Locator::Css(css)).await.ok()?;
            if !el.is_displayed().await.unwrap_or(false) {
                return None;
            }
            el.click().await.ok()
        })
        .await;
    }

    /// Clicks the element matching `css`, then answers the confirmation it
    /// asks (`accept` or not); returns the question.
    pub async fn click_confirm(&self, css: &str, accept: bool) -> String {
        let el = until(&format!("{css} to be shown"), || async {
            let el = self.client.find(Locator::Css(css)).await.ok()?;
            el.is_displayed().await.unwrap_or(false).then_some(el)
        })
        .await;
        // The click opens the question; whether the driver reports that as
        // an error or not, the question is what is awaited.
        let _ = el.click().await;
        let question = until(&format!("{css} to ask for a confirmation"), || async {
            self.client.get_alert_text().await.ok()
        })
        .await;
        if accept {
            self.client.accept_alert().await.expect("confirmed");
        } else {
            self.client.dismiss_alert().await.expect("dismissed");
        }
        question
    }

    /// How far the element matching `css` reaches right of the window (0
    /// when inside, -1 when there is none).
    pub async fn overhang(&self, css: &str) -> i64 {
        self.eval(&format!(
            "var e = document.querySelector('{css}'); if (!e) return -1; \
             return Math.max(0, Math.ceil(e.getBoundingClientRect().right - document.documentElement.clientWidth));"
        ))
        .await
        .as_i64()
        .unwrap_or(-1)
    }

    /// How much wider than the window the page is (0 when it fits).
    pub async fn page_overflow(&self) -> i64 {
        self.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await
        .as_i64()
        .unwrap_or(1)
    }

    /// The value of a script's `return`.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Logs in to the dashboard at `http` with `token` through the form,
    /// starting from `path` (which sends the browser to the login first);
    /// returns once the browser is back on `path`.
    pub async fn log_in(&self, http: &str, token: &str, path: &str) {
        self.goto(&format!("{http}{path}")).await;
        until("the login page", || async {
            (self.path().await == "/login").then_some(())
        })
        .await;
        self.fill("#token", token).await;
        self.click("#login").await;
        let want = path.split('?').next().unwrap_or(path).to_owned();
        until(&format!("{path} after the login"), || async {
            (self.path().await == want).then_some(())
        })
        .await;
    }

    /// Types into the element matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} is on the page: {e}"));
        el.clear().await.expect("cleared");
        el.send_keys(text).await.expect("typed");
    }

    /// Saves a screenshot of the page as `<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = std::env::var_os("SLIPWAY_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../target/screenshots"
                ))
            });
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Ends the browser session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
