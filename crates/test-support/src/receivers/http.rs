//! The HTTP server that Slack, DingTalk and the webhook receiver share: it
//! records every request, answers with failures a test asked for, and hands
//! the rest to the service its path names (`/slack/`, `/dingtalk/`, `/hooks/`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::recording::{Log, lock};

/// Larger than any notification; the limit only keeps a runaway client from
/// eating the test machine's memory.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One HTTP request a receiver accepted (or refused), as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path, which names the service and the hook or token.
    pub path: String,
    /// The raw query string, still percent-encoded.
    pub query: String,
    /// Name and value of every header, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The raw body, for tests that check it byte for byte or as JSON.
    pub body: Vec<u8>,
    /// Whether the receiver took the request as the real service would
    /// have delivered it.
    pub accepted: bool,
}

impl Received {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One line for a failure message.
    fn summary(&self) -> String {
        let mut body = self.text();
        if body.len() > 300 {
            let mut end = 300;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        let verdict = if self.accepted { "accepted" } else { "refused" };
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        format!("{verdict} {}{query}: {body}", self.path)
    }
}

/// The tokens and secrets a test registered, and failures it asked for.
#[derive(Default)]
pub(super) struct Routes {
    /// Tokens of the incoming-webhook URLs Slack would know.
    pub(super) slack_hooks: HashSet<String>,
    /// Bot tokens `chat.postMessage` accepts.
    pub(super) slack_tokens: HashSet<String>,
    /// access token -> signing secret, if the robot signs.
    pub(super) dingtalk: HashMap<String, Option<String>>,
    /// hook name -> signing secret, if the hook checks signatures.
    pub(super) webhooks: HashMap<String, Option<String>>,
    /// (path prefix, requests still to fail), first match wins.
    failures: Vec<(String, usize)>,
}

/// What the server's handler and the [`HttpReceiver`] share.
pub(super) struct HttpShared {
    /// What the services answer; registered by the test while serving.
    pub(super) routes: Mutex<Routes>,
    /// Every request, accepted or not, for the tests to read and wait on.
    log: Log<Received>,
}

/// An answer, and whether the request counts as delivered.
pub(super) struct Reply {
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
    accepted: bool,
}

impl Reply {
    pub(super) fn text(status: StatusCode, body: &str, accepted: bool) -> Self {
        Self {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            body: body.to_owned(),
            accepted,
        }
    }

    pub(super) fn json(body: Value, accepted: bool) -> Self {
        Self::json_status(StatusCode::OK, body, accepted)
    }

    pub(super) fn json_status(status: StatusCode, body: Value, accepted: bool) -> Self {
        Self {
            status,
            content_type: Some("application/json; charset=utf-8"),
            body: body.to_string(),
            accepted,
        }
    }

    pub(super) fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: None,
            body: String::new(),
            accepted: true,
        }
    }
}

pub(super) fn is_json_content_type(request: &Received) -> bool {
    request
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

pub(super) fn non_empty_str<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

impl Routes {
    fn answer(&mut self, method: &Method, request: &Received) -> Reply {
        let path = request.path.as_str();
        if let Some((_, left)) = self
            .failures
            .iter_mut()
            .find(|(prefix, left)| *left > 0 && path.starts_with(prefix.as_str()))
        {
            *left -= 1;
            return Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "injected failure", false);
        }
        let known = path.starts_with("/slack/hooks/")
            || path.starts_with("/slack/api/")
            || path == "/dingtalk/robot/send"
            || path.starts_with("/hooks/");
        if !known {
            return Reply::text(StatusCode::NOT_FOUND, "no_service", false);
        }
        if *method != Method::POST {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", false);
        }
        if let Some(token) = path.strip_prefix("/slack/hooks/") {
            self.slack_hook(token, request)
        } else if let Some(api_method) = path.strip_prefix("/slack/api/") {
            self.slack_api(api_method, request)
        } else if let Some(name) = path.strip_prefix("/hooks/") {
            self.webhook(name, request)
        } else {
            self.dingtalk(request)
        }
    }
}

async fn serve(req: HttpRequest, body: web::Bytes, shared: web::Data<HttpShared>) -> HttpResponse {
    let mut received = Received {
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        accepted: false,
    };
    let reply = lock(&shared.routes).answer(req.method(), &received);
    received.accepted = reply.accepted;
    shared.log.push(received);
    let mut response = HttpResponse::build(reply.status);
    if let Some(content_type) = reply.content_type {
        response.content_type(content_type);
    }
    response.body(reply.body)
}

/// An HTTP server on 127.0.0.1:0 that plays Slack (incoming webhooks and the
/// Web API's chat.postMessage), a DingTalk robot, and a receiver of
/// Slipway's signed webhooks. Dropping it stops the server.
pub struct HttpReceiver {
    /// `http://127.0.0.1:PORT`, the start of every URL handed out.
    pub(super) base: String,
    /// Routes and log, shared with the server's handler.
    pub(super) shared: Arc<HttpShared>,
    /// The actix server; aborting the task drops it, which stops its threads.
    server: JoinHandle<io::Result<()>>,
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl HttpReceiver {
    pub async fn start() -> Self {
        let listener =
            StdTcpListener::bind("127.0.0.1:0").expect("http receiver binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("http receiver address");
        let shared = Arc::new(HttpShared {
            routes: Mutex::new(Routes::default()),
            log: Log::new(),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("http receiver listens")
        .run();
        Self {
            base: format!("http://{addr}"),
            shared,
            server: tokio::spawn(server),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// The next `n` requests whose path starts with `path_prefix` are
    /// answered 500 (recorded with accepted=false) before normal handling
    /// resumes.
    pub fn fail_next(&self, path_prefix: &str, n: usize) {
        lock(&self.shared.routes)
            .failures
            .push((path_prefix.to_owned(), n));
    }

    /// Everything received so far whose path starts with `path_prefix` (in
    /// arrival order), accepted or not.
    pub fn received(&self, path_prefix: &str) -> Vec<Received> {
        self.shared
            .log
            .snapshot()
            .into_iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .collect()
    }

    /// Only the accepted ones.
    pub fn accepted(&self, path_prefix: &str) -> Vec<Received> {
        self.received(path_prefix)
            .into_iter()
            .filter(|r| r.accepted)
            .collect()
    }

    /// Waits until at least `n` requests under `path_prefix` were accepted;
    /// returns them, or panics after `deadline` listing what arrived.
    pub async fn wait_accepted(
        &self,
        path_prefix: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<Received> {
        let under = |r: &Received| r.accepted && r.path.starts_with(path_prefix);
        match self
            .shared
            .log
            .wait(deadline, |all| all.iter().filter(|r| under(r)).count() >= n)
            .await
        {
            Ok(all) => all.into_iter().filter(under).collect(),
            Err(all) => {
                let lines: Vec<String> = all.iter().map(Received::summary).collect();
                panic!(
                    "expected {n} accepted request(s) under {path_prefix} within {deadline:?}; \
                     received {}:\n{}",
                    all.len(),
                    lines.join("\n")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::HttpReceiver;
    use crate::receivers::client::post;

    #[tokio::test]
    #[should_panic(expected = "expected 1 accepted request(s) under /hooks/ within")]
    async fn wait_accepted_panics_with_what_arrived() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.webhook_url("deploys", Some("secret"));
        let (status, _, _) = post(&url, &[("x-slipway-event-id", "ev")], b"{}".to_vec()).await;
        assert_eq!(status, 401);
        receiver
            .wait_accepted("/hooks/", 1, Duration::from_millis(200))
            .await;
    }
}
