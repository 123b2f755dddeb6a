//! Local stand-ins for the services the notifier delivers to: an HTTP
//! receiver that plays Slack (incoming webhooks and `chat.postMessage`), a
//! DingTalk robot and a receiver of Slipway's signed webhooks, and an SMTP
//! sink. Each checks a request the way the real service does, answers as it
//! does, and records what arrived, so a test asserts on what a user would get.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Larger than any notification; the limit only keeps a runaway client from
/// eating the test machine's memory.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The same guard for one SMTP line and one message.
const MAX_SMTP_LINE: u64 = 1024 * 1024;
const MAX_MAIL: usize = 32 * 1024 * 1024;

/// What `chat.postMessage` answers as the message's timestamp.
pub const SLACK_TS: &str = "1700000000.000100";
/// Slack refuses a message with more blocks than this.
const SLACK_MAX_BLOCKS: usize = 50;
/// DingTalk refuses a signed request whose timestamp is further from now.
const DINGTALK_WINDOW_MS: i64 = 60 * 60 * 1000;

/// One HTTP request a receiver accepted (or refused), as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The raw query string, still percent-encoded.
    pub query: String,
    pub headers: Vec<(String, String)>,
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

/// Locks, ignoring poison: a test that panicked while holding the lock must
/// not hide what was recorded from the tests' failure messages.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a server recorded, with a signal so that waiting tests wake when
/// something arrives instead of sleeping.
struct Log<T> {
    items: Mutex<Vec<T>>,
    arrived: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    fn new() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            arrived: watch::Sender::new(0),
        }
    }

    fn push(&self, item: T) {
        let len = {
            let mut items = lock(&self.items);
            items.push(item);
            items.len()
        };
        self.arrived.send_replace(len);
    }

    fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Waits until `done` holds for what arrived; `Err` carries what
    /// arrived when `deadline` passed.
    async fn wait(
        &self,
        deadline: Duration,
        done: impl Fn(&[T]) -> bool,
    ) -> Result<Vec<T>, Vec<T>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut arrived = self.arrived.subscribe();
        loop {
            // Marked before looking, so an arrival after the look wakes us.
            arrived.mark_unchanged();
            let items = self.snapshot();
            if done(&items) {
                return Ok(items);
            }
            if tokio::time::timeout_at(until, arrived.changed())
                .await
                .is_err()
            {
                let items = self.snapshot();
                return if done(&items) { Ok(items) } else { Err(items) };
            }
        }
    }
}

/// `urlencode` as DingTalk and Slack's URLs expect it: everything but the
/// unreserved characters of RFC 3986 percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// DingTalk's robot signature, before URL encoding:
/// `base64(HMAC-SHA256(key = secret, "{timestamp}\n{secret}"))`.
pub fn dingtalk_sign(secret: &str, timestamp_ms: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Slipway's webhook signature header value: `sha256=<hex HMAC-SHA256>`
/// of the raw body (the same scheme as GitHub's).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    crate::hooks::github_signature(secret.as_bytes(), body)
}

/// The tokens and secrets a test registered, and failures it asked for.
#[derive(Default)]
struct Routes {
    slack_hooks: HashSet<String>,
    slack_tokens: HashSet<String>,
    /// access token -> signing secret, if the robot signs.
    dingtalk: HashMap<String, Option<String>>,
    /// hook name -> signing secret, if the hook checks signatures.
    webhooks: HashMap<String, Option<String>>,
    /// (path prefix, requests still to fail), first match wins.
    failures: Vec<(String, usize)>,
}

struct HttpShared {
    routes: Mutex<Routes>,
    log: Log<Received>,
}

/// An answer, and whether the request counts as delivered.
struct Reply {
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
    accepted: bool,
}

impl Reply {
    fn text(status: StatusCode, body: &str, accepted: bool) -> Self {
        Self {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            body: body.to_owned(),
            accepted,
        }
    }

    fn json(body: Value, accepted: bool) -> Self {
        Self::json_status(StatusCode::OK, body, accepted)
    }

    fn json_status(status: StatusCode, body: Value, accepted: bool) -> Self {
        Self {
            status,
            content_type: Some("application/json; charset=utf-8"),
            body: body.to_string(),
            accepted,
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            content_type: None,
            body: String::new(),
            accepted: true,
        }
    }

    fn slack_error(error: &str) -> Self {
        Self::json(json!({"ok": false, "error": error}), false)
    }

    fn dingtalk_error(errcode: i64, errmsg: &str) -> Self {
        Self::json(json!({"errcode": errcode, "errmsg": errmsg}), false)
    }
}

fn is_json_content_type(request: &Received) -> bool {
    request
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn non_empty_str<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
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

    /// Slack's incoming webhooks answer in plain text, errors with 4xx.
    fn slack_hook(&self, token: &str, request: &Received) -> Reply {
        if !self.slack_hooks.contains(token) {
            return Reply::text(StatusCode::NOT_FOUND, "no_service", false);
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::text(StatusCode::BAD_REQUEST, "invalid_payload", false);
        }
        if let Err(error) = slack_content(&payload) {
            return Reply::text(StatusCode::BAD_REQUEST, error, false);
        }
        Reply::text(StatusCode::OK, "ok", true)
    }

    /// The Web API answers 200 with `ok: false` for its own errors.
    fn slack_api(&self, api_method: &str, request: &Received) -> Reply {
        if api_method != "chat.postMessage" {
            return Reply::json_status(
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error": "unknown_method"}),
                false,
            );
        }
        let authorized = request
            .header("authorization")
            .and_then(|auth| auth.strip_prefix("Bearer "))
            .is_some_and(|token| self.slack_tokens.contains(token.trim()));
        if !authorized {
            return Reply::slack_error("invalid_auth");
        }
        if !is_json_content_type(request) {
            return Reply::slack_error("invalid_form_data");
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::slack_error("invalid_json");
        }
        let Some(channel) = non_empty_str(&payload, "channel") else {
            return Reply::slack_error("channel_not_found");
        };
        if let Err(error) = slack_content(&payload) {
            return Reply::slack_error(error);
        }
        Reply::json(
            json!({
                "ok": true,
                "channel": channel,
                "ts": SLACK_TS,
                "message": {"ts": SLACK_TS},
            }),
            true,
        )
    }

    fn dingtalk(&self, request: &Received) -> Reply {
        // Decoded as a servlet would: `+` is a space, so a sign sent without
        // URL encoding fails here as it does at DingTalk.
        let params = web::Query::<HashMap<String, String>>::from_query(&request.query)
            .map(web::Query::into_inner)
            .unwrap_or_default();
        let secret = match params
            .get("access_token")
            .and_then(|token| self.dingtalk.get(token))
        {
            Some(secret) => secret,
            None => return Reply::dingtalk_error(300001, "token is not exist"),
        };
        if let Some(secret) = secret {
            let timestamp = params.get("timestamp").map(String::as_str).unwrap_or("");
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|ts| (now_ms() - ts).abs() <= DINGTALK_WINDOW_MS);
            if !fresh {
                return Reply::dingtalk_error(310000, "invalid timestamp");
            }
            if params.get("sign").map(String::as_str) != Some(&dingtalk_sign(secret, timestamp)) {
                return Reply::dingtalk_error(310000, "sign not match");
            }
        }
        if !is_json_content_type(request) {
            return Reply::dingtalk_error(43004, "invalid content-type");
        }
        let payload = request.json();
        if !payload.is_object() {
            return Reply::dingtalk_error(40035, "missing parameter json");
        }
        if payload.get("msgtype").and_then(Value::as_str) != Some("markdown") {
            return Reply::dingtalk_error(40035, "msgtype is not markdown");
        }
        let markdown = payload.get("markdown").cloned().unwrap_or(Value::Null);
        for field in ["title", "text"] {
            if non_empty_str(&markdown, field).is_none() {
                return Reply::dingtalk_error(
                    40035,
                    &format!("missing parameter markdown.{field}"),
                );
            }
        }
        Reply::json(json!({"errcode": 0, "errmsg": "ok"}), true)
    }

    fn webhook(&self, name: &str, request: &Received) -> Reply {
        let Some(secret) = self.webhooks.get(name) else {
            return Reply::text(StatusCode::NOT_FOUND, "no such hook", false);
        };
        if let Some(secret) = secret {
            let expected = webhook_signature(secret, &request.body);
            if request.header("x-slipway-signature") != Some(expected.as_str()) {
                return Reply::text(StatusCode::UNAUTHORIZED, "bad signature", false);
            }
        }
        if request
            .header("x-slipway-event-id")
            .is_none_or(|id| id.trim().is_empty())
        {
            return Reply::text(StatusCode::BAD_REQUEST, "missing x-slipway-event-id", false);
        }
        if serde_json::from_slice::<Value>(&request.body).is_err() {
            return Reply::text(StatusCode::BAD_REQUEST, "body is not json", false);
        }
        Reply::no_content()
    }
}

/// Slack wants something to show: a non-empty `text` or well-formed `blocks`.
fn slack_content(payload: &Value) -> Result<(), &'static str> {
    match payload.get("blocks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(blocks)) => {
            let well_formed = blocks.len() <= SLACK_MAX_BLOCKS
                && blocks.iter().all(|b| non_empty_str(b, "type").is_some());
            if !well_formed {
                return Err("invalid_blocks");
            }
            if !blocks.is_empty() {
                return Ok(());
            }
        }
        Some(_) => return Err("invalid_blocks"),
    }
    match non_empty_str(payload, "text") {
        Some(_) => Ok(()),
        None => Err("no_text"),
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
    base: String,
    shared: Arc<HttpShared>,
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

    /// An incoming-webhook URL that Slack would know (the token may contain
    /// slashes, as Slack's `T…/B…/…` paths do).
    pub fn slack_webhook_url(&self, token: &str) -> String {
        lock(&self.shared.routes)
            .slack_hooks
            .insert(token.to_owned());
        format!("{}/slack/hooks/{token}", self.base)
    }

    /// The Web API base, without a trailing slash.
    pub fn slack_api_url(&self) -> String {
        format!("{}/slack/api", self.base)
    }

    /// A bot token that `chat.postMessage` accepts.
    pub fn allow_slack_token(&self, bot_token: &str) {
        lock(&self.shared.routes)
            .slack_tokens
            .insert(bot_token.to_owned());
    }

    /// A robot URL; with a secret, requests must be signed with it.
    pub fn dingtalk_url(&self, access_token: &str, secret: Option<&str>) -> String {
        lock(&self.shared.routes)
            .dingtalk
            .insert(access_token.to_owned(), secret.map(str::to_owned));
        format!(
            "{}/dingtalk/robot/send?access_token={}",
            self.base,
            percent_encode(access_token)
        )
    }

    /// A generic webhook URL; with a secret, requests must carry its
    /// `X-Slipway-Signature`.
    pub fn webhook_url(&self, name: &str, secret: Option<&str>) -> String {
        lock(&self.shared.routes)
            .webhooks
            .insert(name.to_owned(), secret.map(str::to_owned));
        format!("{}/hooks/{name}", self.base)
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

/// One message the SMTP sink took, with its envelope and what a mail client
/// would show of it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-stuffing removed.
    pub raw: Vec<u8>,
    pub subject: String,
    /// The address of the `From:` header.
    pub from: String,
    /// The addresses of the `To:` header.
    pub to: Vec<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// MIME parts whose content type is text/plain.
    pub text_parts: usize,
    /// MIME parts whose content type is text/html.
    pub html_parts: usize,
}

impl Mail {
    fn parse(
        auth: Option<&(String, String)>,
        mail_from: String,
        rcpt_to: Vec<String>,
        raw: Vec<u8>,
    ) -> Self {
        let mut mail = Self {
            auth_user: auth.map(|(user, _)| user.clone()),
            auth_password: auth.map(|(_, password)| password.clone()),
            mail_from,
            rcpt_to,
            raw: Vec::new(),
            subject: String::new(),
            from: String::new(),
            to: Vec::new(),
            text: None,
            html: None,
            text_parts: 0,
            html_parts: 0,
        };
        if let Some(message) = MessageParser::default().parse(&raw) {
            mail.subject = message.subject().unwrap_or_default().to_owned();
            mail.from = message
                .from()
                .and_then(|from| from.first())
                .and_then(|addr| addr.address())
                .unwrap_or_default()
                .to_owned();
            mail.to = message
                .to()
                .map(|to| {
                    to.iter()
                        .filter_map(|addr| addr.address())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            mail.text = message.body_text(0).map(|t| t.into_owned());
            mail.html = message.body_html(0).map(|h| h.into_owned());
            mail.text_parts = count_parts(&message, "plain");
            mail.html_parts = count_parts(&message, "html");
        }
        mail.raw = raw;
        mail
    }
}

/// Counts the MIME parts that really are `text/{subtype}`; the parser's
/// body counts include bodies it converted from the other type.
fn count_parts(message: &Message<'_>, subtype: &str) -> usize {
    message
        .parts
        .iter()
        .filter(|part| matches!(part.body, PartType::Text(_) | PartType::Html(_)))
        .filter(|part| match part.content_type() {
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("text")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            }
            // RFC 2045: no Content-Type means text/plain.
            None => subtype == "plain",
        })
        .count()
}

struct Credentials {
    user: String,
    password: String,
}

/// A plain-text SMTP server on 127.0.0.1:0 (no TLS), as the lettre crate
/// talks to it. Dropping it closes the listener and every connection.
pub struct SmtpSink {
    addr: SocketAddr,
    user: String,
    password: String,
    log: Arc<Log<Mail>>,
    server: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SmtpSink {
    /// Requires AUTH with these credentials before MAIL.
    pub async fn start(user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("smtp sink binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("smtp sink address");
        let log = Arc::new(Log::new());
        let credentials = Arc::new(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        let server = tokio::spawn(accept_smtp(listener, credentials, log.clone()));
        Self {
            addr,
            user: user.to_owned(),
            password: password.to_owned(),
            log,
            server,
        }
    }

    /// `smtp://user:password@127.0.0.1:PORT`, user and password
    /// percent-encoded.
    pub fn url(&self) -> String {
        format!(
            "smtp://{}:{}@{}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            self.addr
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message taken so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        self.log.snapshot()
    }

    /// Waits until at least `n` messages arrived; returns all of them, or
    /// panics after `deadline` listing what arrived.
    pub async fn wait_mails(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        match self.log.wait(deadline, |mails| mails.len() >= n).await {
            Ok(mails) => mails,
            Err(mails) => {
                let lines: Vec<String> = mails
                    .iter()
                    .map(|m| format!("{} -> {:?}: {}", m.mail_from, m.rcpt_to, m.subject))
                    .collect();
                panic!(
                    "expected {n} mail(s) within {deadline:?}; received {}:\n{}",
                    mails.len(),
                    lines.join("\n")
                );
            }
        }
    }
}

async fn accept_smtp(listener: TcpListener, credentials: Arc<Credentials>, log: Arc<Log<Mail>>) {
    // Sessions live in the set so that stopping the sink ends them too.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept concerns that one connection; keep serving.
                if let Ok((stream, _)) = accepted {
                    sessions.spawn(smtp_session(stream, credentials.clone(), log.clone()));
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The envelope being built, and who authenticated on this connection.
#[derive(Default)]
struct Session {
    auth: Option<(String, String)>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

async fn reply(write: &mut (impl AsyncWrite + Unpin), lines: &str) -> io::Result<()> {
    write.write_all(lines.as_bytes()).await?;
    write.write_all(b"\r\n").await?;
    write.flush().await
}

/// Reads one line into `line`; false at the end of the stream.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    line.clear();
    let n = (&mut *reader)
        .take(MAX_SMTP_LINE)
        .read_until(b'\n', line)
        .await?;
    if n as u64 == MAX_SMTP_LINE && line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "smtp line too long",
        ));
    }
    Ok(n > 0)
}

/// A line the client owes us, as text without its line ending.
async fn read_reply_line(reader: &mut (impl AsyncBufRead + Unpin)) -> io::Result<String> {
    let mut line = Vec::new();
    if !read_line(reader, &mut line).await? {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "smtp client hung up mid-command",
        ));
    }
    Ok(String::from_utf8_lossy(trim_line_end(&line)).into_owned())
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The address in `FROM:<a@b> PARAM=…` (after the `FROM:`/`TO:` keyword).
fn envelope_address(arg: &str, keyword: &str) -> Option<String> {
    let (head, rest) = arg.split_at_checked(keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest.trim_start();
    match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>').map(|(addr, _)| addr.to_owned()),
        None => rest.split_whitespace().next().map(str::to_owned),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.trim()).ok()
}

async fn smtp_session(
    stream: TcpStream,
    credentials: Arc<Credentials>,
    log: Arc<Log<Mail>>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::default();
    let mut line = Vec::new();
    reply(&mut write, "220 sink ESMTP").await?;
    loop {
        if !read_line(&mut reader, &mut line).await? {
            return Ok(());
        }
        let command = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
        let (verb, arg) = command.split_once(' ').unwrap_or((command.as_str(), ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                session.reset();
                "250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"
            }
            "HELO" => {
                session.reset();
                "250 sink"
            }
            "AUTH" if session.auth.is_some() => "503 5.5.1 Already authenticated",
            "AUTH" => match smtp_auth(&mut reader, &mut write, arg.trim()).await? {
                Err(answer) => answer,
                Ok((user, password))
                    if user == credentials.user && password == credentials.password =>
                {
                    session.auth = Some((user, password));
                    "235 2.7.0 Authentication successful"
                }
                Ok(_) => "535 5.7.8 Authentication credentials invalid",
            },
            "MAIL" if session.auth.is_none() => "530 5.7.0 Authentication required",
            "MAIL" => match envelope_address(arg, "FROM:") {
                Some(from) => {
                    session.reset();
                    session.mail_from = Some(from);
                    "250 2.1.0 OK"
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>",
            },
            "RCPT" if session.mail_from.is_none() => "503 5.5.1 Bad sequence of commands",
            "RCPT" => match envelope_address(arg, "TO:") {
                Some(to) => {
                    session.rcpt_to.push(to);
                    "250 2.1.5 OK"
                }
                None => "501 5.5.4 Syntax: RCPT TO:<address>",
            },
            "DATA" if session.rcpt_to.is_empty() => "503 5.5.1 Bad sequence of commands",
            "DATA" => {
                reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await?;
                let Some(raw) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let mail_from = session.mail_from.take().unwrap_or_default();
                let rcpt_to = std::mem::take(&mut session.rcpt_to);
                match raw {
                    Some(raw) => {
                        log.push(Mail::parse(session.auth.as_ref(), mail_from, rcpt_to, raw));
                        "250 2.0.0 OK: queued"
                    }
                    None => "552 5.3.4 Message too big",
                }
            }
            "RSET" => {
                session.reset();
                "250 2.0.0 OK"
            }
            "NOOP" => "250 2.0.0 OK",
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized",
        };
        reply(&mut write, answer).await?;
    }
}

/// Reads a message up to the line that is a lone "."; `None` when the client
/// hung up, `Some(None)` when the message was too big to keep.
async fn read_data(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> io::Result<Option<Option<Vec<u8>>>> {
    let mut raw = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        if !read_line(reader, &mut line).await? {
            return Ok(None);
        }
        if trim_line_end(&line) == b"." {
            return Ok(Some((!too_big).then_some(raw)));
        }
        // RFC 5321 4.5.2: the client doubled every leading dot.
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        if raw.len() + unstuffed.len() > MAX_MAIL {
            too_big = true;
            raw.clear();
        } else if !too_big {
            raw.extend_from_slice(unstuffed);
        }
    }
}

/// Runs the AUTH exchange; `Ok` with the credentials the client gave, or
/// `Err` with the answer when it gave none that could be read.
async fn smtp_auth(
    reader: &mut (impl AsyncBufRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    arg: &str,
) -> io::Result<Result<(String, String), &'static str>> {
    const CANNOT_DECODE: &str = "501 5.5.2 Cannot decode response";
    const CANCELLED: &str = "501 5.0.0 Authentication cancelled";
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((mechanism, initial)) => (mechanism, Some(initial.trim().to_owned())),
        None => (arg, None),
    };
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(initial) => initial,
                None => {
                    reply(write, "334 ").await?;
                    read_reply_line(reader).await?
                }
            };
            if response == "*" {
                return Ok(Err(CANCELLED));
            }
            // authzid NUL authcid NUL passwd
            let Some(decoded) = decode_base64(&response) else {
                return Ok(Err(CANNOT_DECODE));
            };
            let fields: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            let [_, user, password] = fields.as_slice() else {
                return Ok(Err(CANNOT_DECODE));
            };
            Ok(Ok((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(password).into_owned(),
            )))
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => initial,
                None => {
                    reply(write, "334 VXNlcm5hbWU6").await?;
                    read_reply_line(reader).await?
                }
            };
            if user == "*" {
                return Ok(Err(CANCELLED));
            }
            reply(write, "334 UGFzc3dvcmQ6").await?;
            let password = read_reply_line(reader).await?;
            if password == "*" {
                return Ok(Err(CANCELLED));
            }
            match (decode_base64(&user), decode_base64(&password)) {
                (Some(user), Some(password)) => Ok(Ok((
                    String::from_utf8_lossy(&user).into_owned(),
                    String::from_utf8_lossy(&password).into_owned(),
                ))),
                _ => Ok(Err(CANNOT_DECODE)),
            }
        }
        _ => Ok(Err("504 5.5.4 Unrecognized authentication type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use lettre::message::MultiPart;
    use lettre::transport::smtp::authentication::Mechanism;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Email, Tokio1Executor};

    const WAIT: Duration = Duration::from_secs(10);

    async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String, String) {
        let mut request = reqwest::Client::new().post(url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            content_type,
            response.text().await.expect("body read"),
        )
    }

    async fn post_json(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, String, Value) {
        let mut all = vec![("content-type", "application/json; charset=utf-8")];
        all.extend_from_slice(headers);
        let (status, content_type, text) = post(url, &all, body.to_string().into_bytes()).await;
        (
            status,
            content_type,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn slack_webhook_answers_like_slack() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.slack_webhook_url("T0001/B0001/abc");

        let (status, content_type, body) = post(
            &url,
            &[],
            json!({"text": "build failed"}).to_string().into_bytes(),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(content_type.starts_with("text/plain"), "{content_type}");

        let unknown = format!("{}/slack/hooks/T0001/B0001/nope", receiver.base());
        let (status, _, body) = post(&unknown, &[], b"{\"text\":\"x\"}".to_vec()).await;
        assert_eq!((status, body.as_str()), (404, "no_service"));
        let (status, _, body) = post(&url, &[], b"not json".to_vec()).await;
        assert_eq!((status, body.as_str()), (400, "invalid_payload"));
        let (status, _, body) = post(&url, &[], b"{\"text\":\"\"}".to_vec()).await;
        assert_eq!((status, body.as_str()), (400, "no_text"));

        receiver.fail_next("/slack/hooks", 1);
        let (status, _, _) = post(&url, &[], b"{\"text\":\"retry me\"}".to_vec()).await;
        assert_eq!(status, 500);
        let (status, _, _) = post(&url, &[], b"{\"text\":\"retry me\"}".to_vec()).await;
        assert_eq!(status, 200);

        let accepted = receiver.wait_accepted("/slack/hooks", 2, WAIT).await;
        assert_eq!(accepted[0].json()["text"], "build failed");
        assert_eq!(accepted[1].text(), "{\"text\":\"retry me\"}");
        assert_eq!(receiver.received("/slack/hooks").len(), 6);
        assert_eq!(receiver.received("/slack").len(), 6);
        assert!(receiver.received("/hooks").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slack_post_message_checks_token_and_channel() {
        let receiver = HttpReceiver::start().await;
        receiver.allow_slack_token("xoxb-good");
        let url = format!("{}/chat.postMessage", receiver.slack_api_url());
        let message = json!({
            "channel": "#ci",
            "text": "build failed",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*failed*"}}],
        });

        let (status, content_type, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            message.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert_eq!(
            body,
            json!({"ok": true, "channel": "#ci", "ts": SLACK_TS, "message": {"ts": SLACK_TS}})
        );

        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-bad")],
            message.clone(),
        )
        .await;
        assert_eq!(body, json!({"ok": false, "error": "invalid_auth"}));
        let (_, _, body) = post_json(&url, &[], message.clone()).await;
        assert_eq!(body["error"], "invalid_auth");
        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            json!({"text": "where to?"}),
        )
        .await;
        assert_eq!(body, json!({"ok": false, "error": "channel_not_found"}));
        let (_, _, body) = post_json(
            &url,
            &[("authorization", "Bearer xoxb-good")],
            json!({"channel": "#ci", "blocks": [{"text": "no type"}]}),
        )
        .await;
        assert_eq!(body["error"], "invalid_blocks");

        let accepted = receiver
            .wait_accepted("/slack/api/chat.postMessage", 1, WAIT)
            .await;
        assert_eq!(accepted.len(), 1);
        assert_eq!(
            accepted[0].header("Authorization"),
            Some("Bearer xoxb-good")
        );
        assert_eq!(accepted[0].json(), message);
        assert_eq!(receiver.received("/slack/api").len(), 5);
    }

    fn signed_dingtalk_url(url: &str, secret: &str, timestamp: i64) -> String {
        let sign = dingtalk_sign(secret, &timestamp.to_string());
        format!("{url}&timestamp={timestamp}&sign={}", percent_encode(&sign))
    }

    #[tokio::test]
    async fn dingtalk_robot_verifies_the_signature() {
        let receiver = HttpReceiver::start().await;
        let secret = "SEC0123456789abcdef";
        let url = receiver.dingtalk_url("robot-token", Some(secret));
        let message =
            json!({"msgtype": "markdown", "markdown": {"title": "CI", "text": "## failed"}});
        let now = now_ms();

        let (status, _, body) = post_json(
            &signed_dingtalk_url(&url, secret, now),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"errcode": 0, "errmsg": "ok"}));

        let (_, _, body) = post_json(
            &signed_dingtalk_url(&url, "wrong", now),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(body, json!({"errcode": 310000, "errmsg": "sign not match"}));
        let (_, _, body) = post_json(&url, &[], message.clone()).await;
        assert_eq!(body["errcode"], 310000);
        let stale = now - 2 * DINGTALK_WINDOW_MS;
        let (_, _, body) = post_json(
            &signed_dingtalk_url(&url, secret, stale),
            &[],
            message.clone(),
        )
        .await;
        assert_eq!(body["errcode"], 310000);

        // A sign with a `+` sent without URL encoding reads as a space.
        let (timestamp, sign) = (0..)
            .map(|back| now - back)
            .map(|ts| (ts, dingtalk_sign(secret, &ts.to_string())))
            .find(|(_, sign)| sign.contains('+'))
            .expect("some sign has a plus");
        let unencoded = format!("{url}&timestamp={timestamp}&sign={sign}");
        let (_, _, body) = post_json(&unencoded, &[], message.clone()).await;
        assert_eq!(body["errmsg"], "sign not match");

        let unknown = format!("{}/dingtalk/robot/send?access_token=nope", receiver.base());
        let (_, _, body) = post_json(&unknown, &[], message.clone()).await;
        assert_eq!(
            body,
            json!({"errcode": 300001, "errmsg": "token is not exist"})
        );

        let unsigned = receiver.dingtalk_url("plain-token", None);
        let (_, _, body) = post_json(
            &unsigned,
            &[],
            json!({"msgtype": "markdown", "markdown": {"title": "CI", "text": ""}}),
        )
        .await;
        assert_eq!(body["errcode"], 40035);
        let (_, _, body) = post_json(
            &unsigned,
            &[],
            json!({"msgtype": "text", "text": {"content": "x"}}),
        )
        .await;
        assert_eq!(body["errcode"], 40035);
        let (_, _, body) = post_json(&unsigned, &[], message.clone()).await;
        assert_eq!(body["errcode"], 0);

        let accepted = receiver.wait_accepted("/dingtalk", 2, WAIT).await;
        assert_eq!(accepted[0].json(), message);
        assert!(accepted[0].query.contains("access_token=robot-token"));
        assert!(accepted[1].query.contains("access_token=plain-token"));
        assert_eq!(receiver.received("/dingtalk").len(), 9);
    }

    #[tokio::test]
    async fn webhook_checks_signature_event_id_and_json() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.webhook_url("deploys", Some("hook-secret"));
        let body = json!({"event": "task.failed", "task_id": 7})
            .to_string()
            .into_bytes();
        let good = webhook_signature("hook-secret", &body);
        let bad = webhook_signature("other", &body);

        let headers = [
            ("x-slipway-signature", good.as_str()),
            ("x-slipway-event-id", "ev-1"),
        ];
        let (status, _, _) = post(&url, &headers, body.clone()).await;
        assert_eq!(status, 204);
        let (status, _, _) = post(
            &url,
            &[
                ("x-slipway-signature", bad.as_str()),
                ("x-slipway-event-id", "ev-1"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _, _) = post(&url, &[("x-slipway-event-id", "ev-1")], body.clone()).await;
        assert_eq!(status, 401);
        let (status, _, _) = post(
            &url,
            &[("x-slipway-signature", good.as_str())],
            body.clone(),
        )
        .await;
        assert_eq!(status, 400);

        let open = receiver.webhook_url("open", None);
        let (status, _, _) = post(
            &open,
            &[("x-slipway-event-id", "ev-2")],
            b"not json".to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        let (status, _, _) = post(&open, &[("x-slipway-event-id", "ev-2")], b"{}".to_vec()).await;
        assert_eq!(status, 204);
        let (status, _, _) = post(
            &format!("{}/hooks/missing", receiver.base()),
            &[],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, 404);
        let (status, _, body) = post(
            &format!("{}/elsewhere", receiver.base()),
            &[],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!((status, body.as_str()), (404, "no_service"));

        let accepted = receiver.wait_accepted("/hooks/", 2, WAIT).await;
        assert_eq!(accepted[0].path, "/hooks/deploys");
        assert_eq!(accepted[0].header("X-Slipway-Event-Id"), Some("ev-1"));
        assert_eq!(accepted[0].json()["task_id"], 7);
        assert_eq!(accepted[1].path, "/hooks/open");
        assert_eq!(receiver.received("/hooks/deploys").len(), 4);
        assert_eq!(receiver.received("/").len(), 8);
    }

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

    fn email(subject: &str, text: &str, html: &str) -> Email {
        Email::builder()
            .from("Slipway <ci@example.com>".parse().expect("from"))
            .to("Dev One <dev1@example.com>".parse().expect("to"))
            .to("dev2@example.com".parse().expect("to"))
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .expect("message builds")
    }

    #[tokio::test]
    async fn smtp_sink_takes_mail_from_lettre() {
        let sink = SmtpSink::start("ci@example.com", "p@ss:w/rd").await;
        assert!(
            sink.url()
                .starts_with("smtp://ci%40example.com:p%40ss%3Aw%2Frd@127.0.0.1:")
        );
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url parses")
            .build();

        transport
            .send(email(
                "Build #1 failed",
                "line one\n.starts with a dot\n",
                "<p>failed</p>",
            ))
            .await
            .expect("first mail sent");
        transport
            .send(email("Build #2 passed", "all good", "<p>passed</p>"))
            .await
            .expect("second mail sent");

        let mails = sink.wait_mails(2, WAIT).await;
        let first = &mails[0];
        assert_eq!(first.auth_user.as_deref(), Some("ci@example.com"));
        assert_eq!(first.auth_password.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(first.mail_from, "ci@example.com");
        assert_eq!(first.rcpt_to, ["dev1@example.com", "dev2@example.com"]);
        assert_eq!(first.subject, "Build #1 failed");
        assert_eq!(first.from, "ci@example.com");
        assert_eq!(first.to, ["dev1@example.com", "dev2@example.com"]);
        let text = first.text.as_deref().expect("text body");
        assert!(text.contains("\n.starts with a dot"), "{text:?}");
        assert!(
            first
                .html
                .as_deref()
                .expect("html body")
                .contains("<p>failed</p>")
        );
        assert_eq!((first.text_parts, first.html_parts), (1, 1));
        assert_eq!(mails[1].subject, "Build #2 passed");

        let login = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url parses")
            .authentication(vec![Mechanism::Login])
            .build();
        login
            .send(email("Build #3", "login", "<b>login</b>"))
            .await
            .expect("mail sent with AUTH LOGIN");
        assert_eq!(sink.wait_mails(3, WAIT).await[2].subject, "Build #3");

        let wrong = sink.url().replace("p%40ss", "nope");
        let refused = AsyncSmtpTransport::<Tokio1Executor>::from_url(&wrong)
            .expect("url parses")
            .build()
            .send(email("never", "x", "<p>x</p>"))
            .await
            .expect_err("wrong password refused");
        assert!(
            refused.to_string().contains("credentials invalid"),
            "{refused}"
        );
        assert_eq!(sink.mails().len(), 3);
    }

    /// Sends `command` and returns the server's full answer.
    async fn say(stream: &mut BufReader<TcpStream>, command: &str) -> String {
        stream
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("command sent");
        answer(stream).await
    }

    async fn answer(stream: &mut BufReader<TcpStream>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.expect("answer read");
            all.push_str(&line);
            // The last line of a multi-line answer has a space after the code.
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    #[tokio::test]
    async fn smtp_sink_speaks_the_protocol() {
        let sink = SmtpSink::start("user", "secret").await;
        let mut client = BufReader::new(TcpStream::connect(sink.addr()).await.expect("connects"));
        assert_eq!(answer(&mut client).await, "220 sink ESMTP\r\n");
        assert_eq!(
            say(&mut client, "EHLO client").await,
            "250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        );
        assert!(
            say(&mut client, "MAIL FROM:<a@example.com>")
                .await
                .starts_with("530 ")
        );
        assert!(say(&mut client, "VRFY user").await.starts_with("502 "));
        assert_eq!(say(&mut client, "AUTH PLAIN").await, "334 \r\n");
        let wrong = BASE64.encode("\0user\0guess");
        assert_eq!(
            say(&mut client, &wrong).await,
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(say(&mut client, "AUTH PLAIN").await, "334 \r\n");
        assert!(
            say(&mut client, &BASE64.encode("\0user\0secret"))
                .await
                .starts_with("235 ")
        );
        assert!(say(&mut client, "NOOP").await.starts_with("250 "));
        assert!(say(&mut client, "DATA").await.starts_with("503 "));
        assert!(
            say(&mut client, "MAIL FROM:<a@example.com> BODY=8BITMIME")
                .await
                .starts_with("250 ")
        );
        assert!(
            say(&mut client, "RCPT TO:<b@example.com>")
                .await
                .starts_with("250 ")
        );
        assert!(say(&mut client, "DATA").await.starts_with("354 "));
        let message =
            "Subject: plain\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n..dot\r\nbody\r\n.";
        assert!(say(&mut client, message).await.starts_with("250 "));
        assert!(say(&mut client, "RSET").await.starts_with("250 "));
        assert!(say(&mut client, "QUIT").await.starts_with("221 "));

        let mails = sink.wait_mails(1, WAIT).await;
        assert_eq!(mails[0].rcpt_to, ["b@example.com"]);
        assert_eq!(mails[0].subject, "plain");
        assert_eq!(
            mails[0].raw,
            b"Subject: plain\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n.dot\r\nbody\r\n"
        );
        assert_eq!(mails[0].text.as_deref(), Some(".dot\r\nbody\r\n"));
        assert_eq!((mails[0].text_parts, mails[0].html_parts), (1, 0));
    }
}
