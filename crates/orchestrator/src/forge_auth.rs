//! GitHub App installation tokens (forges.md): the orchestrator alone holds
//! the App's private key. It signs a short-lived JWT with it and trades that
//! for an installation token limited to one repository and one permission:
//! read access to contents for a runner's clone, write access to statuses for
//! the notifier. Tokens are cached per installation, repository and access
//! until five minutes before they expire, and concurrent callers for one of
//! those share one request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A token this close to its `expires_at` is minted anew: it must outlive
/// the clone or status request it is handed to.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The JWT's `iat` lies this far in the past, for clock drift (GitHub's advice).
const JWT_BACKDATE: u64 = 60;
/// The JWT's lifetime from now; GitHub refuses one past ten minutes.
const JWT_LIFETIME: u64 = 9 * 60;
/// How long one token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest part of GitHub's answer an error quotes.
const MAX_ERROR_CHARS: usize = 200;

/// What an installation token may do: one permission, on one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read the repository's contents: a runner's clone.
    Contents,
    /// Write commit statuses: the notifier.
    Statuses,
}

impl Access {
    /// The `permissions` of the token request.
    fn permissions(self) -> serde_json::Value {
        match self {
            Access::Contents => json!({ "contents": "read" }),
            Access::Statuses => json!({ "statuses": "write" }),
        }
    }
}

/// Why no installation token could be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SLIPWAY_GITHUB_APP_KEY_FILE: not a usable RSA private key in PEM: {0}")]
    Key(jsonwebtoken::errors::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("repository {0:?} is not owner/name")]
    Repo(String),
    #[error("cannot reach GitHub: {0}")]
    Unreachable(String),
    #[error(
        "GitHub answered {status} to the token request of installation {installation}: {message}"
    )]
    Refused {
        installation: i64,
        status: u16,
        message: String,
        /// A `429`, or a `403` with `x-ratelimit-remaining: 0`.
        rate_limited: bool,
    },
    #[error("GitHub's answer to the token request is not a token: {0}")]
    Answer(String),
}

impl Error {
    /// Whether asking again later may succeed (network, `5xx`, a spent
    /// rate limit), as opposed to a setup that cannot work (a bad key, an
    /// App not installed there, a repository it may not see).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable(_) => true,
            Error::Refused {
                status,
                rate_limited,
                ..
            } => *status >= 500 || *rate_limited,
            Error::Key(_) | Error::Client(_) | Error::Repo(_) | Error::Answer(_) => false,
        }
    }
}

/// The JWT an App authenticates as itself with.
#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    /// The App's id, as a string.
    iss: String,
}

/// GitHub's answer to a token request (the fields used).
#[derive(Deserialize)]
struct Minted {
    token: String,
    expires_at: String,
}

/// A token and when to stop handing it out.
struct Cached {
    token: String,
    renew_at: SystemTime,
}

impl Cached {
    fn fresh(&self, now: SystemTime) -> bool {
        now < self.renew_at
    }
}

/// What a token is cached under: installation, `owner/name`, access.
type Key = (i64, String, Access);
/// One slot per key; its async lock makes concurrent callers wait for the
/// one request in flight instead of sending their own.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// A GitHub App, as the orchestrator acts for it.
pub struct GitHubApp {
    /// `iss` of the JWTs.
    app_id: u64,
    /// The App's private key (`SLIPWAY_GITHUB_APP_KEY_FILE`).
    key: EncodingKey,
    /// `SLIPWAY_GITHUB_API_URL`, without a trailing `/`.
    api: String,
    /// Reused for every token request.
    http: reqwest::Client,
    /// Tokens by installation, repository and access.
    tokens: Mutex<HashMap<Key, Slot>>,
}

impl std::fmt::Debug for GitHubApp {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.app_id)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl GitHubApp {
    /// The App `app_id` with its PEM private key, talking to the API at
    /// `api_url` (`https://api.github.com`, or an Enterprise server's
    /// `/api/v3`). A key that cannot sign is refused here, not at the
    /// first token request.
    pub fn new(app_id: u64, key_pem: &[u8], api_url: &str) -> Result<Self, Error> {
        let key = EncodingKey::from_rsa_pem(key_pem).map_err(Error::Key)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent("slipway")
            .build()
            .map_err(Error::Client)?;
        let app = Self {
            app_id,
            key,
            api: api_url.trim_end_matches('/').to_owned(),
            http,
            tokens: Mutex::new(HashMap::new()),
        };
        app.jwt(SystemTime::now())?;
        Ok(app)
    }

    /// The App's JWT at `now`.
    fn jwt(&self, now: SystemTime) -> Result<String, Error> {
        let now = epoch_secs(now);
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE),
            exp: now + JWT_LIFETIME,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map_err(Error::Key)
    }

    /// An installation token for `repo` (`owner/name`) with `access`: a
    /// cached one with more than five minutes left, else a new one.
    pub async fn installation_token(
        &self,
        installation_id: i64,
        repo: &str,
        access: Access,
    ) -> Result<String, Error> {
        let name = match repo.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                name
            }
            _ => return Err(Error::Repo(repo.to_owned())),
        };
        let slot = self.slot((installation_id, repo.to_ascii_lowercase(), access));
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && c.fresh(SystemTime::now())
        {
            return Ok(c.token.clone());
        }
        let (token, expires_at) = self.mint(installation_id, name, access).await?;
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: expires_at.checked_sub(RENEW_BEFORE).unwrap_or(UNIX_EPOCH),
        });
        Ok(token)
    }

    /// The slot of `key`, made if new. Slots nobody else holds whose token
    /// is due for renewal (or was never had) are dropped on the way, so the
    /// map stays small.
    fn slot(&self, key: Key) -> Slot {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        tokens.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .is_ok_and(|cached| cached.as_ref().is_some_and(|c| c.fresh(now)))
        });
        tokens.entry(key).or_default().clone()
    }

    /// Asks GitHub for a token of `installation_id` limited to the
    /// repository `name` (of the installation's account) and `access`.
    async fn mint(
        &self,
        installation_id: i64,
        name: &str,
        access: Access,
    ) -> Result<(String, SystemTime), Error> {
        let jwt = self.jwt(SystemTime::now())?;
        let url = format!(
            "{}/app/installations/{installation_id}/access_tokens",
            self.api
        );
        let body = json!({
            "repositories": [name],
            "permissions": access.permissions(),
        });
        let answer = self
            .http
            .post(url)
            .bearer_auth(jwt)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Unreachable(e.without_url().to_string()))?;
        let status = answer.status();
        if !status.is_success() {
            let spent = answer
                .headers()
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0");
            let rate_limited = status.as_u16() == 429 || (status.as_u16() == 403 && spent);
            let text = answer.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(text);
            return Err(Error::Refused {
                installation: installation_id,
                status: status.as_u16(),
                message: message.trim().chars().take(MAX_ERROR_CHARS).collect(),
                rate_limited,
            });
        }
        let minted: Minted = answer
            .json()
            .await
            .map_err(|e| Error::Answer(e.without_url().to_string()))?;
        let expires_at = chrono::DateTime::parse_from_rfc3339(&minted.expires_at)
            .map_err(|e| Error::Answer(format!("expires_at {:?}: {e}", minted.expires_at)))?;
        Ok((minted.token, SystemTime::from(expires_at)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use test_support::forge::{Auth, FakeForge, Fault, Route};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);
    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    async fn forge() -> (FakeForge, GitHubApp) {
        let forge = FakeForge::start().await;
        forge.install_app(7, "acme");
        let app = GitHubApp::new(FakeForge::APP_ID, FakeForge::app_key_pem(), &forge.base())
            .expect("the test key signs");
        (forge, app)
    }

    #[tokio::test]
    async fn mints_a_token_limited_to_the_repository_and_access() {
        let (forge, app) = forge().await;
        let token = app
            .installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect("a token");
        let contents = app
            .installation_token(7, "acme/hello", Access::Contents)
            .await
            .expect("a token");
        assert_ne!(token, contents);
        let minted = forge.token_requests();
        assert_eq!(minted.len(), 2);
        assert_eq!(minted[0].installation_id, 7);
        assert_eq!(minted[0].repositories, ["hello"]);
        assert_eq!(minted[0].permissions, json!({"statuses": "write"}));
        assert_eq!(minted[1].permissions, json!({"contents": "read"}));

        // The fake lets the token set statuses on that repository only.
        let client = reqwest::Client::new();
        let post = |repo: &str, token: &str| {
            client
                .post(format!("{}/repos/{repo}/statuses/{SHA}", forge.base()))
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .header("user-agent", "slipway")
                .json(&json!({"state": "pending", "context": "slipway/hello"}))
                .send()
        };
        assert_eq!(
            post("acme/hello", &token).await.expect("sent").status(),
            201
        );
        assert_eq!(
            post("acme/other", &token).await.expect("sent").status(),
            403
        );
        assert_eq!(
            post("acme/hello", &contents).await.expect("sent").status(),
            403
        );
        let sent = forge.wait_for(1, WAIT).await;
        assert_eq!(sent[0].auth, Auth::Installation { id: 7, token });
    }

    #[tokio::test]
    async fn caches_per_installation_repository_and_access() {
        let (forge, app) = forge().await;
        forge.install_app(8, "acme");
        let first = app
            .installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect("a token");
        let again = app
            .installation_token(7, "Acme/Hello", Access::Statuses)
            .await
            .expect("a token");
        assert_eq!(first, again, "cached");
        assert_eq!(forge.token_requests().len(), 1);
        for (installation, repo) in [(7, "acme/other"), (8, "acme/hello")] {
            let other = app
                .installation_token(installation, repo, Access::Statuses)
                .await
                .expect("a token");
            assert_ne!(other, first);
        }
        assert_eq!(forge.token_requests().len(), 3);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_request() {
        let (forge, app) = forge().await;
        let app = Arc::new(app);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let app = app.clone();
            calls.spawn(async move {
                app.installation_token(7, "acme/hello", Access::Statuses)
                    .await
            });
        }
        let mut tokens = Vec::new();
        while let Some(done) = calls.join_next().await {
            tokens.push(done.expect("joined").expect("a token"));
        }
        tokens.dedup();
        assert_eq!(tokens.len(), 1, "one token for all");
        assert_eq!(forge.token_requests().len(), 1);
    }

    #[tokio::test]
    async fn renews_a_token_close_to_its_expiry() {
        let (forge, app) = forge().await;
        // Four minutes left: inside the five-minute margin from the start.
        forge.token_lifetime(Duration::from_secs(4 * 60));
        let first = app
            .installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect("a token");
        let second = app
            .installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect("a token");
        assert_ne!(first, second);
        assert_eq!(forge.token_requests().len(), 2);
    }

    #[tokio::test]
    async fn errors_say_whether_to_try_again() {
        let (forge, app) = forge().await;
        forge.fail_next(Route::Tokens, 1, Fault::ServerError);
        forge.fail_next(Route::Tokens, 1, Fault::RateLimited { reset_in_secs: 60 });
        for why in ["500", "rate limit"] {
            let failed = app
                .installation_token(7, "acme/hello", Access::Statuses)
                .await
                .expect_err(why);
            assert!(failed.is_transient(), "{failed}");
        }
        // A failure is not cached.
        app.installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect("a token after the 500");

        let not_installed = app
            .installation_token(99, "acme/hello", Access::Statuses)
            .await
            .expect_err("404");
        assert!(
            matches!(not_installed, Error::Refused { status: 404, .. }),
            "{not_installed}"
        );
        assert!(!not_installed.is_transient());

        let wrong_app =
            GitHubApp::new(1, FakeForge::app_key_pem(), &forge.base()).expect("the key signs");
        let refused = wrong_app
            .installation_token(7, "acme/hello", Access::Statuses)
            .await
            .expect_err("401");
        assert!(
            matches!(refused, Error::Refused { status: 401, .. }),
            "{refused}"
        );

        let bad_repo = app
            .installation_token(7, "hello", Access::Contents)
            .await
            .expect_err("no owner");
        assert!(matches!(bad_repo, Error::Repo(_)));

        forge.down().await;
        let down = app
            .installation_token(7, "acme/down", Access::Statuses)
            .await
            .expect_err("down");
        assert!(
            matches!(down, Error::Unreachable(_)) && down.is_transient(),
            "{down}"
        );
        forge.up().await;
        app.installation_token(7, "acme/down", Access::Statuses)
            .await
            .expect("a token once it is back");
    }

    #[test]
    fn a_key_that_cannot_sign_is_refused_at_once() {
        let not_pem = GitHubApp::new(1, b"not a key", "http://127.0.0.1:9").expect_err("not pem");
        assert!(matches!(not_pem, Error::Key(_)));
        let garbage = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let cannot_sign = GitHubApp::new(1, garbage, "http://127.0.0.1:9").expect_err("no key");
        assert!(matches!(cannot_sign, Error::Key(_)), "{cannot_sign}");
        assert!(
            cannot_sign
                .to_string()
                .starts_with("SLIPWAY_GITHUB_APP_KEY_FILE")
        );
    }

    #[test]
    fn the_jwt_is_backdated_and_short() {
        let app = GitHubApp::new(42, FakeForge::app_key_pem(), "http://127.0.0.1:9")
            .expect("the key signs");
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let jwt = app.jwt(at).expect("signed");
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(FakeForge::app_public_key_pem())
            .expect("public key");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation)
            .expect("verifies")
            .claims;
        assert_eq!(
            claims,
            json!({"iat": 1_000_000 - 60, "exp": 1_000_000 + 540, "iss": "42"})
        );
    }
}
