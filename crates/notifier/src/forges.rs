//! The forges' commit status APIs (forges.md): how a claimed status becomes
//! a GitHub or GitLab request, and how the answer reads: delivered, worth
//! another try (a network error, `5xx`, `429`, a spent rate limit; with the
//! wait the forge asked for), or failed for good (any other `4xx`). The
//! notifier is the only service that sets commit statuses. Errors leave
//! here without the token.

use std::time::{Duration, SystemTime};

use domain::forge::{Forge, State};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::model::ClaimedStatus;

/// How long one attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// GitHub's limit on a status description, in characters.
const MAX_DESCRIPTION: usize = 140;
/// The longest part of a forge's answer an error quotes.
const MAX_ERROR_CHARS: usize = 200;
/// The longest wait a forge may ask for that is honoured as asked; a longer
/// one (a clock far off, a broken header) is cut to this.
const MAX_ASKED_WAIT: Duration = Duration::from_secs(60 * 60);

/// A status request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub forge: Forge,
    pub url: String,
    /// The credential header: `Authorization: Bearer` or `PRIVATE-TOKEN`.
    pub auth: (&'static str, String),
    pub body: Value,
}

/// How an answer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another try; the forge may have said when.
    Retry {
        asked: Option<Duration>,
    },
    /// Trying again cannot help.
    Failed,
}

/// How an attempt went, with why it failed (no token in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub verdict: Verdict,
    pub error: Option<String>,
}

impl Sent {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Failed,
            error: Some(error.into()),
        }
    }
}

/// The task's page on the dashboard, as alerts link it (`render::link`).
pub fn task_url(public_url: &str, task_id: i64) -> String {
    format!("{}/tasks/{task_id}", public_url.trim_end_matches('/'))
}

/// At most [`MAX_DESCRIPTION`] characters, an ellipsis marking a cut.
pub fn description(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

/// `s` with everything but RFC 3986's unreserved characters
/// percent-encoded, for one path segment.
fn encode_segment(s: &str) -> String {
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

/// GitLab's project in a path: its id as it is, a path URL-encoded
/// (`group/project` as `group%2Fproject`).
pub fn gitlab_project(repo: &str) -> String {
    encode_segment(repo)
}

/// GitHub's and GitLab's words for a stored state: GitLab has its own
/// `running` (a pending status that says so), `failed` and `canceled`.
fn states(state: &str, description: &str) -> Option<(&'static str, &'static str)> {
    if state == "running" {
        return Some(("pending", "running"));
    }
    let state = State::parse(state)?;
    Some((state.as_str(), state.gitlab(description)))
}

/// The request that sets `s`, linking to its task under `public_url`; an
/// error for a status that can never be sent (unknown forge or state, a
/// malformed repository or commit).
pub fn request(s: &ClaimedStatus, public_url: &str) -> Result<Request, String> {
    let forge = Forge::parse(&s.forge).ok_or_else(|| format!("unknown forge {:?}", s.forge))?;
    let (github_state, gitlab_state) = states(&s.state, &s.description)
        .ok_or_else(|| format!("unknown commit status state {:?}", s.state))?;
    if s.sha.is_empty() || !s.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("not a commit sha: {:?}", s.sha));
    }
    let api = s.api_url.trim_end_matches('/');
    let target_url = task_url(public_url, s.task_id);
    let description = description(&s.description);
    Ok(match forge {
        Forge::GitHub => {
            let (owner, name) = s
                .repo
                .split_once('/')
                .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| format!("not a GitHub repository (owner/name): {:?}", s.repo))?;
            Request {
                forge,
                url: format!(
                    "{api}/repos/{}/{}/statuses/{}",
                    encode_segment(owner),
                    encode_segment(name),
                    s.sha
                ),
                auth: ("Authorization", format!("Bearer {}", s.token)),
                body: json!({
                    "state": github_state,
                    "target_url": target_url,
                    "description": description,
                    "context": s.context,
                }),
            }
        }
        Forge::GitLab => {
            if s.repo.is_empty() {
                return Err("no GitLab project".to_owned());
            }
            Request {
                forge,
                url: format!(
                    "{api}/api/v4/projects/{}/statuses/{}",
                    gitlab_project(&s.repo),
                    s.sha
                ),
                auth: ("PRIVATE-TOKEN", s.token.clone()),
                body: json!({
                    "state": gitlab_state,
                    "name": s.context,
                    "target_url": target_url,
                    "description": description,
                }),
            }
        }
    })
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// The wait from `now` until `epoch` seconds.
fn until_epoch(epoch: &str, now: SystemTime) -> Option<Duration> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch.parse().ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// The wait a forge asked for: `Retry-After` (seconds or an HTTP date),
/// else the reset of a spent rate limit (GitHub's `x-ratelimit-reset`,
/// GitLab's `RateLimit-Reset`, epoch seconds).
pub fn asked_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(after) = header(headers, "retry-after") {
        let asked = match after.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => chrono::DateTime::parse_from_rfc2822(after)
                .ok()
                .map(|at| SystemTime::from(at).duration_since(now).unwrap_or_default()),
        };
        if let Some(asked) = asked {
            return Some(asked.min(MAX_ASKED_WAIT));
        }
    }
    let spent = |remaining: &str| header(headers, remaining) == Some("0");
    let reset = if spent("x-ratelimit-remaining") {
        header(headers, "x-ratelimit-reset")
    } else if spent("ratelimit-remaining") {
        header(headers, "ratelimit-reset")
    } else {
        None
    };
    reset
        .and_then(|r| until_epoch(r, now))
        .map(|d| d.min(MAX_ASKED_WAIT))
}

/// Whether a `403` is GitHub's spent rate limit (primary: no requests
/// left; secondary: a `Retry-After`) rather than a refusal.
fn rate_limited(headers: &HeaderMap) -> bool {
    header(headers, "x-ratelimit-remaining") == Some("0")
        || header(headers, "retry-after").is_some()
}

/// How an HTTP answer reads (forges.md): `2xx` delivered; `5xx`, `429`
/// and a rate-limited `403` retried, after the wait asked for if any; any
/// other answer failed at once.
pub fn classify(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && rate_limited(headers))
    {
        Verdict::Retry {
            asked: asked_wait(headers, now),
        }
    } else {
        Verdict::Failed
    }
}

/// The client that sets statuses, shared by every attempt.
pub struct Forges {
    http: reqwest::Client,
}

impl Forges {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent("slipway")
            // A redirected POST turns into a GET: report the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http })
    }

    /// Sets one status; how it went.
    pub async fn send(&self, s: &ClaimedStatus, public_url: &str) -> Sent {
        let req = match request(s, public_url) {
            Ok(req) => req,
            Err(why) => return Sent::failed(why),
        };
        let mut builder = self
            .http
            .post(&req.url)
            .header(req.auth.0, &req.auth.1)
            .json(&req.body);
        if req.forge == Forge::GitHub {
            builder = builder
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28");
        }
        let sent = match builder.send().await {
            Err(e) => {
                let e = e.without_url();
                let why = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    e.to_string()
                };
                Sent {
                    verdict: Verdict::Retry { asked: None },
                    error: Some(why),
                }
            }
            Ok(answer) => {
                let status = answer.status();
                let verdict = classify(status, answer.headers(), SystemTime::now());
                if verdict == Verdict::Delivered {
                    Sent {
                        verdict,
                        error: None,
                    }
                } else {
                    let text = answer.text().await.unwrap_or_default();
                    if req.forge == Forge::GitLab && already_in_state(status, &text) {
                        // A status sent again (at least once): GitLab has it.
                        return Sent {
                            verdict: Verdict::Delivered,
                            error: None,
                        };
                    }
                    let text: String = text.trim().chars().take(MAX_ERROR_CHARS).collect();
                    Sent {
                        verdict,
                        error: Some(format!("{} answered {status}: {text}", req.forge)),
                    }
                }
            }
        };
        Sent {
            error: sent.error.map(|e| redact(e, &s.token)),
            ..sent
        }
    }
}

/// Whether GitLab refused a status because the commit's status for that
/// name is in that state already (`Cannot transition status via :run from
/// :running`): a repeat of a status it took.
fn already_in_state(status: StatusCode, body: &str) -> bool {
    status == StatusCode::BAD_REQUEST && body.contains("Cannot transition status")
}

/// `text` without `token`.
fn redact(text: String, token: &str) -> String {
    if token.len() < 4 {
        return text;
    }
    text.replace(token, "***")
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn status(forge: &str, repo: &str) -> ClaimedStatus {
        ClaimedStatus {
            id: 1,
            task_id: 12,
            forge: forge.into(),
            api_url: "https://forge.example/".into(),
            repo: repo.into(),
            sha: SHA.into(),
            token: "tok-secret".into(),
            context: "slipway/hello".into(),
            state: "pending".into(),
            description: "running".into(),
            attempts: 0,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                )
            })
            .collect()
    }

    #[test]
    fn github_requests() {
        let req = request(&status("github", "acme/hello"), "http://slipway.test/").expect("valid");
        assert_eq!(
            req.url,
            format!("https://forge.example/repos/acme/hello/statuses/{SHA}")
        );
        assert_eq!(req.auth, ("Authorization", "Bearer tok-secret".to_owned()));
        assert_eq!(
            req.body,
            json!({
                "state": "pending",
                "target_url": "http://slipway.test/tasks/12",
                "description": "running",
                "context": "slipway/hello",
            })
        );
    }

    #[test]
    fn gitlab_requests() {
        let cases = [
            (
                "pending",
                "running",
                "42",
                "running",
                "/api/v4/projects/42/",
            ),
            (
                "pending",
                "queued",
                "group/sub/p",
                "pending",
                "/api/v4/projects/group%2Fsub%2Fp/",
            ),
            (
                "running",
                "whatever",
                "42",
                "running",
                "/api/v4/projects/42/",
            ),
            (
                "success",
                "succeeded",
                "42",
                "success",
                "/api/v4/projects/42/",
            ),
            ("failure", "failed", "42", "failed", "/api/v4/projects/42/"),
            (
                "error",
                "cancelled",
                "42",
                "canceled",
                "/api/v4/projects/42/",
            ),
        ];
        for (state, description, repo, want_state, want_path) in cases {
            let s = ClaimedStatus {
                state: state.into(),
                description: description.into(),
                ..status("gitlab", repo)
            };
            let req = request(&s, "http://slipway.test").expect("valid");
            assert!(req.url.contains(want_path), "{}", req.url);
            assert!(req.url.ends_with(&format!("/statuses/{SHA}")));
            assert_eq!(req.auth, ("PRIVATE-TOKEN", "tok-secret".to_owned()));
            assert_eq!(req.body["state"], want_state, "{state} {description}");
            assert_eq!(req.body["name"], "slipway/hello");
            assert_eq!(req.body["target_url"], "http://slipway.test/tasks/12");
        }
    }

    #[test]
    fn statuses_that_can_never_be_sent() {
        let cases = [
            status("bitbucket", "acme/hello"),
            status("github", "hello"),
            status("github", "a/b/c"),
            status("gitlab", ""),
            ClaimedStatus {
                state: "queued".into(),
                ..status("github", "acme/hello")
            },
            ClaimedStatus {
                sha: "main/../x".into(),
                ..status("github", "acme/hello")
            },
        ];
        for s in cases {
            assert!(request(&s, "http://x").is_err(), "{s:?}");
        }
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        assert_eq!(description("queued"), "queued");
        let exact = "é".repeat(140);
        assert_eq!(description(&exact), exact);
        let long = description(&"é".repeat(141));
        assert_eq!(long.chars().count(), 140);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn task_links_match_the_alerts() {
        let event = domain::alert::Event {
            id: "e".into(),
            kind: domain::workflow::AlertEvent::TaskCreated,
            at: String::new(),
            workflow_id: 3,
            workflow: "hello".into(),
            workflow_version: 1,
            task_id: Some(12),
            deployment_id: None,
            environment: None,
            branch: None,
            tag: None,
            commit: None,
            message: None,
            summary: String::new(),
            error: None,
            reason: None,
            outcome: None,
            recovery: false,
        };
        for base in ["http://slipway.test", "http://slipway.test/"] {
            assert_eq!(task_url(base, 12), crate::render::link(base, &event));
        }
    }

    #[test]
    fn answers_are_classified() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let retry = |secs: Option<u64>| Verdict::Retry {
            asked: secs.map(Duration::from_secs),
        };
        type Case = (u16, Vec<(&'static str, &'static str)>, Verdict);
        let cases: Vec<Case> = vec![
            (201, vec![], Verdict::Delivered),
            (200, vec![], Verdict::Delivered),
            (500, vec![], retry(None)),
            (502, vec![], retry(None)),
            (503, vec![("retry-after", "7")], retry(Some(7))),
            (429, vec![], retry(None)),
            (429, vec![("retry-after", "1")], retry(Some(1))),
            // An HTTP date, 30 s from now.
            (
                429,
                vec![("retry-after", "Mon, 12 Jan 1970 13:47:10 GMT")],
                retry(Some(30)),
            ),
            // A date in the past: at once.
            (
                429,
                vec![("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT")],
                retry(Some(0)),
            ),
            // GitLab's rate limit.
            (
                429,
                vec![("ratelimit-remaining", "0"), ("ratelimit-reset", "1000045")],
                retry(Some(45)),
            ),
            // GitHub's primary rate limit answers 403 (or 429).
            (
                403,
                vec![
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000090"),
                ],
                retry(Some(90)),
            ),
            (
                429,
                vec![
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000090"),
                ],
                retry(Some(90)),
            ),
            // Its secondary rate limit: 403 with Retry-After.
            (403, vec![("retry-after", "60")], retry(Some(60))),
            // Retry-After wins over the reset.
            (
                403,
                vec![
                    ("retry-after", "5"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1000090"),
                ],
                retry(Some(5)),
            ),
            // A reset with requests left is no reason to wait.
            (
                503,
                vec![
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", "1000090"),
                ],
                retry(None),
            ),
            // An absurd wait is cut to an hour.
            (429, vec![("retry-after", "999999")], retry(Some(3600))),
            (429, vec![("retry-after", "soon")], retry(None)),
            (
                403,
                vec![("x-ratelimit-remaining", "4999")],
                Verdict::Failed,
            ),
            (403, vec![], Verdict::Failed),
            (401, vec![], Verdict::Failed),
            (404, vec![], Verdict::Failed),
            (422, vec![("retry-after", "1")], Verdict::Failed),
            (400, vec![], Verdict::Failed),
            (301, vec![], Verdict::Failed),
        ];
        for (code, pairs, want) in cases {
            let status = StatusCode::from_u16(code).expect("status");
            assert_eq!(
                classify(status, &headers(&pairs), now),
                want,
                "{code} {pairs:?}"
            );
        }
    }

    #[test]
    fn errors_never_show_the_token() {
        assert_eq!(
            redact("github answered 401: bad tok-secret".into(), "tok-secret"),
            "github answered 401: bad ***"
        );
    }
}

#[cfg(test)]
mod against_a_fake_forge {
    use test_support::forge::{Auth, FakeForge, Fault, Forge as Fake, Route};

    use super::*;

    const SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const WAIT: Duration = Duration::from_secs(10);

    fn status(forge: &str, api_url: String, repo: &str, token: &str) -> ClaimedStatus {
        ClaimedStatus {
            id: 1,
            task_id: 7,
            forge: forge.into(),
            api_url,
            repo: repo.into(),
            sha: SHA.into(),
            token: token.into(),
            context: "slipway/hello".into(),
            state: "pending".into(),
            description: "running".into(),
            attempts: 0,
        }
    }

    #[tokio::test]
    async fn sets_statuses_as_each_forge_expects() {
        let fake = FakeForge::start().await;
        fake.github_token("ghp_test");
        fake.gitlab_token("glpat_test");
        let forges = Forges::new().expect("client");
        let delivered = Sent {
            verdict: Verdict::Delivered,
            error: None,
        };
        let github = status("github", fake.base(), "acme/hello", "ghp_test");
        assert_eq!(forges.send(&github, "http://slipway.test").await, delivered);
        let gitlab = ClaimedStatus {
            state: "failure".into(),
            description: "x".repeat(300),
            ..status("gitlab", fake.base(), "group/hello", "glpat_test")
        };
        assert_eq!(forges.send(&gitlab, "http://slipway.test").await, delivered);

        let got = fake.wait_for(2, WAIT).await;
        assert_eq!(
            (got[0].forge, got[0].repo.as_str()),
            (Fake::GitHub, "acme/hello")
        );
        assert_eq!(got[0].state, "pending");
        assert_eq!(
            got[0].target_url.as_deref(),
            Some("http://slipway.test/tasks/7")
        );
        assert_eq!(got[0].auth, Auth::Token("ghp_test".into()));
        assert_eq!(
            (got[1].forge, got[1].repo.as_str()),
            (Fake::GitLab, "group/hello")
        );
        assert_eq!(got[1].state, "failed");
        assert_eq!(got[1].context, "slipway/hello");
        assert_eq!(
            got[1].description.as_ref().map(|d| d.chars().count()),
            Some(140)
        );
        let requests = fake.requests();
        assert_eq!(requests[0].header("user-agent"), Some("slipway"));
    }

    #[tokio::test]
    async fn failures_say_whether_and_when_to_try_again() {
        let fake = FakeForge::start().await;
        fake.github_token("ghp_test");
        let forges = Forges::new().expect("client");
        let s = status("github", fake.base(), "acme/hello", "ghp_test");

        fake.fail_next(Route::Statuses, 1, Fault::ServerError);
        fake.fail_next(
            Route::Statuses,
            1,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        );
        fake.fail_next(
            Route::Statuses,
            1,
            Fault::RateLimited { reset_in_secs: 120 },
        );
        let first = forges.send(&s, "http://x").await;
        assert_eq!(first.verdict, Verdict::Retry { asked: None });
        assert!(
            first
                .error
                .is_some_and(|e| e.starts_with("github answered 500"))
        );
        let second = forges.send(&s, "http://x").await;
        assert_eq!(
            second.verdict,
            Verdict::Retry {
                asked: Some(Duration::from_secs(1))
            }
        );
        let third = forges.send(&s, "http://x").await;
        let Verdict::Retry { asked: Some(reset) } = third.verdict else {
            panic!("a spent rate limit is retried after its reset: {third:?}");
        };
        assert!(reset > Duration::from_secs(100) && reset <= Duration::from_secs(120));
        assert_eq!(
            forges.send(&s, "http://x").await.verdict,
            Verdict::Delivered
        );

        let bad_token = ClaimedStatus {
            token: "ghp_wrong".into(),
            ..s.clone()
        };
        let refused = forges.send(&bad_token, "http://x").await;
        assert_eq!(refused.verdict, Verdict::Failed);
        let error = refused.error.expect("why");
        assert!(error.starts_with("github answered 401"), "{error}");
        assert!(!error.contains("ghp_wrong"));

        fake.down().await;
        let down = forges.send(&s, "http://x").await;
        assert_eq!(down.verdict, Verdict::Retry { asked: None });
        assert_eq!(down.error.as_deref(), Some("cannot connect"));
        fake.up().await;
        assert_eq!(
            forges.send(&s, "http://x").await.verdict,
            Verdict::Delivered
        );
        assert_eq!(fake.wait_for(2, WAIT).await.len(), 2);
    }
}
