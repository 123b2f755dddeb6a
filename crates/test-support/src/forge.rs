//! A local stand-in for the forges' APIs that commit statuses and GitHub App
//! tokens go to: GitHub's `POST /repos/{owner}/{repo}/statuses/{sha}` and
//! `POST /app/installations/{id}/access_tokens`, and GitLab's
//! `POST /api/v4/projects/{id}/statuses/{sha}`, on one HTTP server. It checks
//! each request as the real service does (headers, credentials, the JWT's
//! RS256 signature, the body's fields), answers as it does, and records what
//! it took, so a test asserts on the statuses a user would see on the forge.
//!
//! A test can script failures (500s, 429 with `Retry-After`, a spent rate
//! limit) and take the server down and up again on the same port.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The test GitHub App's private key, PKCS#1 PEM as GitHub hands it out.
const APP_KEY: &[u8] = include_bytes!("../keys/forge-app.pem");
/// Its public key, which the fake checks JWTs with.
const APP_PUBLIC_KEY: &[u8] = include_bytes!("../keys/forge-app.pub.pem");

/// GitHub's limit on a status description.
const MAX_DESCRIPTION: usize = 140;
/// GitHub refuses an App JWT that lives longer than this.
const MAX_JWT_LIFETIME: i64 = 600;
/// GitHub's installation tokens live an hour.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Which forge a request spoke to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
}

/// How a status request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A token registered with [`FakeForge::github_token`] or
    /// [`FakeForge::gitlab_token`].
    Token(String),
    /// An installation token the fake minted for that installation.
    Installation { id: i64, token: String },
}

/// One commit status the fake accepted, in the forge's own words (GitLab's
/// `name` as `context`, its states `running`, `failed`, `canceled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeStatus {
    pub forge: Forge,
    /// GitHub: `owner/name`; GitLab: the project id or path, decoded.
    pub repo: String,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub auth: Auth,
}

/// One installation token the fake minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub installation_id: i64,
    /// The `repositories` asked for, as sent (names without the owner).
    pub repositories: Vec<String>,
    /// The `permissions` asked for, as sent.
    pub permissions: Value,
    /// The token handed out.
    pub token: String,
    /// Its `expires_at`, RFC 3339.
    pub expires_at: String,
}

/// One request as received, with the status code it was answered with.
#[derive(Debug, Clone)]
pub struct ForgeRequest {
    pub method: String,
    /// The raw path, still percent-encoded.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl ForgeRequest {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!("{} {} -> {}: {body}", self.method, self.path, self.answered)
    }
}

/// Which requests a scripted failure applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Status requests, on either forge.
    Statuses,
    /// Installation token requests.
    Tokens,
    /// Any request.
    Any,
}

/// A scripted failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error`.
    ServerError,
    /// `429 Too Many Requests` with `Retry-After: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// A spent rate limit whose window resets in `reset_in_secs`: GitHub's
    /// `403` with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`
    /// (epoch seconds), GitLab's `429` with `RateLimit-Remaining: 0` and
    /// `RateLimit-Reset`.
    RateLimited { reset_in_secs: u64 },
}

/// What a test registered, and failures it asked for.
struct Routes {
    github_tokens: HashSet<String>,
    gitlab_tokens: HashSet<String>,
    /// installation id -> the account it belongs to.
    installations: HashMap<i64, String>,
    /// Minted token -> what it may do.
    minted: HashMap<String, Minted>,
    /// How long a minted token lives.
    token_lifetime: Duration,
    /// (route, requests still to fail, how), first match wins.
    faults: Vec<(Route, usize, Fault)>,
    /// Ids of the statuses created.
    next_id: u64,
}

/// What an installation token grants.
struct Minted {
    installation_id: i64,
    /// `owner/name`, lowercase.
    repositories: Vec<String>,
    permissions: Value,
    expires_at: SystemTime,
}

/// An answer.
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl Reply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn message(status: StatusCode, message: &str) -> Self {
        Self::json(status, json!({ "message": message }))
    }
}

/// What accepting a request adds to the records.
enum Took {
    Nothing,
    Status(ForgeStatus),
    Token(TokenRequest),
}

/// Locks, ignoring poison: a test that panicked while holding the lock must
/// not hide what was recorded from the failure messages.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `%XX` sequences decoded (GitLab's project paths: `group%2Fproject`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_json(headers: &[(String, String)]) -> bool {
    header(headers, "content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The optional string field `key`, or an error naming it.
fn opt_str<'v>(body: &'v Value, key: &str) -> Result<Option<&'v str>, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Reply::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{key} is not a string"),
        )),
    }
}

impl Routes {
    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (Reply, Took) {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match segments.as_slice() {
            ["repos", _, _, "statuses", _] | ["api", "v4", "projects", _, "statuses", _] => {
                Route::Statuses
            }
            ["app", "installations", _, "access_tokens"] => Route::Tokens,
            _ => {
                return (
                    Reply::message(StatusCode::NOT_FOUND, "Not Found"),
                    Took::Nothing,
                );
            }
        };
        if let Some(reply) = self.scripted(route, segments[0] == "api") {
            return (reply, Took::Nothing);
        }
        if *method != Method::POST {
            return (
                Reply::message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
                Took::Nothing,
            );
        }
        let answered = match segments.as_slice() {
            ["repos", owner, repo, "statuses", sha] => self
                .github_status(&format!("{owner}/{repo}"), sha, headers, body)
                .map(Took::Status),
            ["api", "v4", "projects", id, "statuses", sha] => self
                .gitlab_status(&percent_decode(id), sha, headers, body)
                .map(Took::Status),
            ["app", "installations", id, "access_tokens"] => {
                self.access_token(id, headers, body).map(Took::Token)
            }
            _ => Err(Reply::message(StatusCode::NOT_FOUND, "Not Found")),
        };
        match answered {
            Ok(Took::Status(status)) => {
                self.next_id += 1;
                let reply = Reply::json(
                    StatusCode::CREATED,
                    json!({
                        "id": self.next_id,
                        "state": status.state,
                        "context": status.context,
                        "description": status.description,
                        "target_url": status.target_url,
                    }),
                );
                (reply, Took::Status(status))
            }
            Ok(Took::Token(minted)) => {
                let reply = Reply::json(
                    StatusCode::CREATED,
                    json!({
                        "token": minted.token,
                        "expires_at": minted.expires_at,
                        "permissions": minted.permissions,
                        "repository_selection": "selected",
                    }),
                );
                (reply, Took::Token(minted))
            }
            Ok(Took::Nothing) => (
                Reply::message(StatusCode::NOT_FOUND, "Not Found"),
                Took::Nothing,
            ),
            Err(reply) => (reply, Took::Nothing),
        }
    }

    /// A scripted failure for this request, if one is due.
    fn scripted(&mut self, route: Route, gitlab: bool) -> Option<Reply> {
        let (_, left, fault) = self
            .faults
            .iter_mut()
            .find(|(r, left, _)| *left > 0 && (*r == Route::Any || *r == route))?;
        *left -= 1;
        Some(match *fault {
            Fault::ServerError => {
                Reply::message(StatusCode::INTERNAL_SERVER_ERROR, "injected failure")
            }
            Fault::TooManyRequests { retry_after_secs } => Reply {
                headers: vec![("retry-after", retry_after_secs.to_string())],
                ..Reply::message(StatusCode::TOO_MANY_REQUESTS, "too many requests")
            },
            Fault::RateLimited { reset_in_secs } => {
                let reset = (epoch_secs(SystemTime::now())
                    + i64::try_from(reset_in_secs).unwrap_or(i64::MAX))
                .to_string();
                if gitlab {
                    Reply {
                        headers: vec![
                            ("ratelimit-remaining", "0".to_owned()),
                            ("ratelimit-reset", reset),
                        ],
                        ..Reply::message(StatusCode::TOO_MANY_REQUESTS, "Retry later")
                    }
                } else {
                    Reply {
                        headers: vec![
                            ("x-ratelimit-limit", "5000".to_owned()),
                            ("x-ratelimit-remaining", "0".to_owned()),
                            ("x-ratelimit-reset", reset),
                        ],
                        ..Reply::message(StatusCode::FORBIDDEN, "API rate limit exceeded")
                    }
                }
            }
        })
    }

    /// GitHub's common checks: API version, media type, user agent.
    fn github_headers(headers: &[(String, String)]) -> Result<(), Reply> {
        if header(headers, "user-agent").is_none_or(|ua| ua.trim().is_empty()) {
            return Err(Reply::message(
                StatusCode::FORBIDDEN,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            ));
        }
        if header(headers, "x-github-api-version") != Some("2022-11-28") {
            return Err(Reply::message(
                StatusCode::BAD_REQUEST,
                "expected X-GitHub-Api-Version: 2022-11-28",
            ));
        }
        if header(headers, "accept") != Some("application/vnd.github+json") {
            return Err(Reply::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Accept: application/vnd.github+json",
            ));
        }
        Ok(())
    }

    fn bearer(headers: &[(String, String)]) -> Option<&str> {
        header(headers, "authorization")?.strip_prefix("Bearer ")
    }

    fn json_body(headers: &[(String, String)], body: &[u8]) -> Result<Value, Reply> {
        if !is_json(headers) {
            return Err(Reply::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(Reply::message(
                StatusCode::BAD_REQUEST,
                "Problems parsing JSON",
            )),
        }
    }

    fn github_status(
        &mut self,
        repo: &str,
        sha: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ForgeStatus, Reply> {
        Self::github_headers(headers)?;
        let token = Self::bearer(headers)
            .ok_or_else(|| Reply::message(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
        let auth = if self.github_tokens.contains(token) {
            Auth::Token(token.to_owned())
        } else if let Some(minted) = self.minted.get(token) {
            if minted.expires_at <= SystemTime::now() {
                return Err(Reply::message(StatusCode::UNAUTHORIZED, "Bad credentials"));
            }
            let repo_lower = repo.to_ascii_lowercase();
            let may_write =
                minted.permissions.get("statuses").and_then(Value::as_str) == Some("write");
            if !minted.repositories.contains(&repo_lower) || !may_write {
                return Err(Reply::message(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                ));
            }
            Auth::Installation {
                id: minted.installation_id,
                token: token.to_owned(),
            }
        } else {
            return Err(Reply::message(StatusCode::UNAUTHORIZED, "Bad credentials"));
        };
        let body = Self::json_body(headers, body)?;
        if !is_sha(sha) {
            return Err(Reply::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("No commit found for SHA: {sha}"),
            ));
        }
        let state = opt_str(&body, "state")?.unwrap_or_default();
        if !matches!(state, "pending" | "success" | "failure" | "error") {
            return Err(Reply::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("state {state:?} is not included in the list"),
            ));
        }
        let context = opt_str(&body, "context")?.unwrap_or("default");
        let description = opt_str(&body, "description")?;
        if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            return Err(Reply::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "description is too long (maximum is 140 characters)",
            ));
        }
        let target_url = opt_str(&body, "target_url")?;
        if target_url.is_some_and(|u| !is_http_url(u)) {
            return Err(Reply::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "target_url must use http(s) scheme",
            ));
        }
        Ok(ForgeStatus {
            forge: Forge::GitHub,
            repo: repo.to_owned(),
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state.to_owned(),
            description: description.map(str::to_owned),
            target_url: target_url.map(str::to_owned),
            auth,
        })
    }

    fn gitlab_status(
        &mut self,
        project: &str,
        sha: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ForgeStatus, Reply> {
        let token = header(headers, "private-token")
            .filter(|t| self.gitlab_tokens.contains(*t))
            .ok_or_else(|| Reply::message(StatusCode::UNAUTHORIZED, "401 Unauthorized"))?;
        let body = Self::json_body(headers, body)?;
        if !is_sha(sha) {
            return Err(Reply::message(
                StatusCode::NOT_FOUND,
                "404 References Not Found",
            ));
        }
        let state = opt_str(&body, "state")?.unwrap_or_default();
        if !matches!(
            state,
            "pending" | "running" | "success" | "failed" | "canceled"
        ) {
            return Err(Reply::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": "state does not have a valid value" }),
            ));
        }
        let Some(name) = opt_str(&body, "name")?.filter(|n| !n.trim().is_empty()) else {
            return Err(Reply::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": "name is missing" }),
            ));
        };
        let target_url = opt_str(&body, "target_url")?;
        if target_url.is_some_and(|u| !is_http_url(u)) {
            return Err(Reply::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": "target_url is invalid" }),
            ));
        }
        Ok(ForgeStatus {
            forge: Forge::GitLab,
            repo: project.to_owned(),
            sha: sha.to_owned(),
            context: name.to_owned(),
            state: state.to_owned(),
            description: opt_str(&body, "description")?.map(str::to_owned),
            target_url: target_url.map(str::to_owned),
            auth: Auth::Token(token.to_owned()),
        })
    }

    /// Checks the App's JWT: RS256 with the test App's key, issued by its
    /// id, living at most ten minutes.
    fn check_jwt(jwt: &str) -> Result<(), Reply> {
        let bad = |why: &str| Reply::message(StatusCode::UNAUTHORIZED, why);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(APP_PUBLIC_KEY)
            .map_err(|e| bad(&format!("test key: {e}")))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[FakeForge::APP_ID.to_string()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
            .map_err(|e| bad(&format!("A JSON web token could not be decoded: {e}")))?
            .claims;
        let (Some(iat), Some(exp)) = (
            claims.get("iat").and_then(Value::as_i64),
            claims.get("exp").and_then(Value::as_i64),
        ) else {
            return Err(bad(
                "'Issued at' and 'Expiration time' claims must be integers",
            ));
        };
        if exp - iat > MAX_JWT_LIFETIME {
            return Err(bad(
                "'Expiration time' claim ('exp') is too far in the future",
            ));
        }
        if iat > epoch_secs(SystemTime::now()) + 60 {
            return Err(bad(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
            ));
        }
        // GitHub wants the id as a string; a number passes the issuer check
        // above only if jsonwebtoken coerces it, so look.
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(bad("'Issuer' claim ('iss') must be a String"));
        }
        Ok(())
    }

    fn access_token(
        &mut self,
        installation: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TokenRequest, Reply> {
        Self::github_headers(headers)?;
        let jwt = Self::bearer(headers).ok_or_else(|| {
            Reply::message(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            )
        })?;
        Self::check_jwt(jwt)?;
        let id: i64 = installation
            .parse()
            .map_err(|_| Reply::message(StatusCode::NOT_FOUND, "Not Found"))?;
        let owner = self
            .installations
            .get(&id)
            .cloned()
            .ok_or_else(|| Reply::message(StatusCode::NOT_FOUND, "Not Found"))?;
        let body = if body.is_empty() {
            json!({})
        } else {
            Self::json_body(headers, body)?
        };
        let mut repositories = Vec::new();
        if let Some(names) = body.get("repositories") {
            let names = names.as_array().ok_or_else(|| {
                Reply::message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "repositories is not an array",
                )
            })?;
            for name in names {
                match name.as_str() {
                    Some(n) if !n.is_empty() && !n.contains('/') => repositories.push(n.to_owned()),
                    _ => {
                        return Err(Reply::message(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "repositories are names without their owner",
                        ));
                    }
                }
            }
        }
        let permissions = body
            .get("permissions")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !permissions.is_object() {
            return Err(Reply::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "permissions is not an object",
            ));
        }
        let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
        let expires = SystemTime::now() + self.token_lifetime;
        let expires_at = chrono::DateTime::<chrono::Utc>::from(expires)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.minted.insert(
            token.clone(),
            Minted {
                installation_id: id,
                repositories: repositories
                    .iter()
                    .map(|n| format!("{owner}/{n}").to_ascii_lowercase())
                    .collect(),
                permissions: permissions.clone(),
                expires_at: expires,
            },
        );
        Ok(TokenRequest {
            installation_id: id,
            repositories,
            permissions,
            token,
            expires_at,
        })
    }
}

/// A log that tests wait on: every append wakes the waiters.
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

    /// Waits until at least `n` items arrived; `Err` when `deadline` passed.
    async fn wait(&self, n: usize, deadline: Duration) -> Result<Vec<T>, Vec<T>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut arrived = self.arrived.subscribe();
        loop {
            arrived.mark_unchanged();
            let items = self.snapshot();
            if items.len() >= n {
                return Ok(items);
            }
            if tokio::time::timeout_at(until, arrived.changed())
                .await
                .is_err()
            {
                let items = self.snapshot();
                return if items.len() >= n {
                    Ok(items)
                } else {
                    Err(items)
                };
            }
        }
    }
}

/// What the server's handler and the [`FakeForge`] share.
struct Shared {
    routes: Mutex<Routes>,
    requests: Log<ForgeRequest>,
    statuses: Log<ForgeStatus>,
    tokens: Log<TokenRequest>,
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let (reply, took) = lock(&shared.routes).answer(&method, &path, &headers, &body);
    shared.requests.push(ForgeRequest {
        method: method.to_string(),
        path,
        headers,
        body,
        answered: reply.status.as_u16(),
    });
    match took {
        Took::Status(s) => shared.statuses.push(s),
        Took::Token(t) => shared.tokens.push(t),
        Took::Nothing => {}
    }
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json; charset=utf-8");
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, shared).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Accepts until aborted; aborting drops the listener and every open
/// connection (the `JoinSet` aborts its tasks when dropped).
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A fake GitHub and GitLab API on 127.0.0.1:0 (see the module doc).
/// Dropping it stops the server.
pub struct FakeForge {
    /// Where it listens, kept across [`FakeForge::down`] and [`FakeForge::up`].
    addr: SocketAddr,
    /// Routes and logs, shared with the handler.
    shared: Arc<Shared>,
    /// The accept loop while up.
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
    }
}

impl FakeForge {
    /// The test GitHub App's id, the `iss` its JWTs must carry.
    pub const APP_ID: u64 = 424_242;

    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake forge binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake forge address");
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes {
                github_tokens: HashSet::new(),
                gitlab_tokens: HashSet::new(),
                installations: HashMap::new(),
                minted: HashMap::new(),
                token_lifetime: TOKEN_LIFETIME,
                faults: Vec::new(),
                next_id: 0,
            }),
            requests: Log::new(),
            statuses: Log::new(),
            tokens: Log::new(),
        });
        let server = tokio::spawn(accept(listener, shared.clone()));
        Self {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        }
    }

    /// `http://127.0.0.1:PORT`: GitHub's API base, and GitLab's instance
    /// base (its API is under `/api/v4`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The test App's private key (PKCS#1 PEM), for `SLIPWAY_GITHUB_APP_KEY_FILE`.
    pub fn app_key_pem() -> &'static [u8] {
        APP_KEY
    }

    /// Its public key (PKCS#1 PEM).
    pub fn app_public_key_pem() -> &'static [u8] {
        APP_PUBLIC_KEY
    }

    /// A GitHub token (`SLIPWAY_GITHUB_TOKEN`) that may set statuses on
    /// any repository.
    pub fn github_token(&self, token: &str) {
        lock(&self.shared.routes)
            .github_tokens
            .insert(token.to_owned());
    }

    /// A GitLab token (`PRIVATE-TOKEN`) that may set statuses on any project.
    pub fn gitlab_token(&self, token: &str) {
        lock(&self.shared.routes)
            .gitlab_tokens
            .insert(token.to_owned());
    }

    /// Installs the test App on `owner`'s account as `installation_id`.
    pub fn install_app(&self, installation_id: i64, owner: &str) {
        lock(&self.shared.routes)
            .installations
            .insert(installation_id, owner.to_owned());
    }

    /// How long the tokens minted from now on live (an hour by default).
    pub fn token_lifetime(&self, lifetime: Duration) {
        lock(&self.shared.routes).token_lifetime = lifetime;
    }

    /// The next `n` requests on `route` are answered with `fault` (and
    /// recorded as such) before normal handling resumes.
    pub fn fail_next(&self, route: Route, n: usize, fault: Fault) {
        lock(&self.shared.routes).faults.push((route, n, fault));
    }

    /// Stops listening and drops every open connection: clients are
    /// refused until [`FakeForge::up`].
    pub async fn down(&self) {
        let server = lock(&self.server).take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again, on the same port.
    pub async fn up(&self) {
        if lock(&self.server).is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("fake forge binds its port again");
        let server = tokio::spawn(accept(listener, self.shared.clone()));
        *lock(&self.server) = Some(server);
    }

    /// Every status accepted so far, in arrival order.
    pub fn statuses(&self) -> Vec<ForgeStatus> {
        self.shared.statuses.snapshot()
    }

    /// Every request so far, accepted or not, in arrival order.
    pub fn requests(&self) -> Vec<ForgeRequest> {
        self.shared.requests.snapshot()
    }

    /// Every installation token minted so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.tokens.snapshot()
    }

    /// Waits until at least `n` statuses were accepted; returns them all,
    /// or panics after `deadline` listing every request received.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<ForgeStatus> {
        match self.shared.statuses.wait(n, deadline).await {
            Ok(all) => all,
            Err(all) => panic!(
                "expected {n} status(es) within {deadline:?}; accepted {}; requests:\n{}",
                all.len(),
                self.request_lines()
            ),
        }
    }

    /// Waits until at least `n` requests arrived, whatever their answer.
    pub async fn wait_requests(&self, n: usize, deadline: Duration) -> Vec<ForgeRequest> {
        match self.shared.requests.wait(n, deadline).await {
            Ok(all) => all,
            Err(all) => panic!(
                "expected {n} request(s) within {deadline:?}; received {}:\n{}",
                all.len(),
                self.request_lines()
            ),
        }
    }

    fn request_lines(&self) -> String {
        self.requests()
            .iter()
            .map(ForgeRequest::summary)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests;
