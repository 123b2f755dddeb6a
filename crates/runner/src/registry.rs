//! The registry's HTTP API v2, for the one thing the Docker Engine does not
//! do: deleting a manifest by digest (`DELETE /v2/<name>/manifests/<digest>`),
//! for the images of pruned tasks. It logs in the way registries ask: as is,
//! with Basic credentials, or with a bearer token from the registry's token
//! service. A registry is reached over HTTPS, or over plain HTTP when it is
//! on the loopback interface (as the Docker Engine allows by default).

use std::time::Duration;

use domain::image::{Digest, ImageRef};
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

/// How long one request to the registry may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a manifest could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Reference(#[from] domain::image::ImageRefError),
    #[error("{0} names no registry")]
    NoRegistry(String),
    #[error("cannot reach the registry {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error(
        "the registry {0} asks for a login: set the workflow's REGISTRY_USERNAME and REGISTRY_PASSWORD secrets"
    )]
    LoginNeeded(String),
    #[error("the registry {host} refused the login: {reason}")]
    LoginRefused { host: String, reason: String },
    #[error(
        "the registry {0} does not allow deletes (its storage.delete.enabled, REGISTRY_STORAGE_DELETE_ENABLED)"
    )]
    DeleteDisabled(String),
    #[error("the registry {host} answered {status}: {body}")]
    Refused {
        host: String,
        status: StatusCode,
        body: String,
    },
}

/// What deleting came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The registry deleted it.
    Now,
    /// The registry did not have it (deleted before): done as well.
    AlreadyGone,
}

/// A client of registries' HTTP API.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
}

/// A login: user and password.
pub type Credentials<'a> = Option<(&'a str, &'a str)>;

impl Registry {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect would carry the login elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the registry client: {e}"))?;
        Ok(Self { http })
    }

    /// Deletes the manifest `digest` of `repository` (`registry/name`).
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
        credentials: Credentials<'_>,
    ) -> Result<Deleted, Error> {
        let image = ImageRef::parse(repository)?;
        let digest = Digest::parse(digest)?;
        let host = image
            .registry
            .clone()
            .ok_or_else(|| Error::NoRegistry(repository.to_owned()))?;
        let mut last = None;
        for scheme in schemes(&host) {
            let url = format!("{scheme}://{host}/v2/{}/manifests/{digest}", image.name);
            match self.delete(&url, &host, &image.name, credentials).await {
                Err(Error::Unreachable { host, reason }) => {
                    last = Some(Error::Unreachable { host, reason });
                }
                done => return done,
            }
        }
        Err(last.unwrap_or_else(|| Error::Unreachable {
            host,
            reason: "no way to reach it".to_owned(),
        }))
    }

    async fn delete(
        &self,
        url: &str,
        host: &str,
        name: &str,
        credentials: Credentials<'_>,
    ) -> Result<Deleted, Error> {
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            host: host.to_owned(),
            reason: e.without_url().to_string(),
        };
        let first = self.http.delete(url).send().await.map_err(unreachable)?;
        let answer = if first.status() == StatusCode::UNAUTHORIZED {
            let challenge = first
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(Challenge::parse)
                .unwrap_or_default();
            let request = match self.authorize(&challenge, host, name, credentials).await? {
                Login::Basic(user, password) => {
                    self.http.delete(url).basic_auth(user, Some(password))
                }
                Login::Bearer(token) => self.http.delete(url).bearer_auth(token),
            };
            request.send().await.map_err(unreachable)?
        } else {
            first
        };
        match answer.status() {
            s if s.is_success() => Ok(Deleted::Now),
            StatusCode::NOT_FOUND => Ok(Deleted::AlreadyGone),
            StatusCode::METHOD_NOT_ALLOWED => Err(Error::DeleteDisabled(host.to_owned())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::LoginRefused {
                host: host.to_owned(),
                reason: format!("answered {}", answer.status()),
            }),
            status => {
                let body = answer.text().await.unwrap_or_default();
                Err(Error::Refused {
                    host: host.to_owned(),
                    status,
                    body: body.chars().take(200).collect(),
                })
            }
        }
    }

    /// The login that answers `challenge`.
    async fn authorize<'a>(
        &self,
        challenge: &Challenge,
        host: &str,
        name: &str,
        credentials: Credentials<'a>,
    ) -> Result<Login<'a>, Error> {
        match challenge {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .clone()
                    .unwrap_or_else(|| format!("repository:{name}:delete"));
                let mut query = vec![("scope", scope)];
                if let Some(service) = service {
                    query.push(("service", service.clone()));
                }
                let refused = |reason: String| Error::LoginRefused {
                    host: host.to_owned(),
                    reason,
                };
                let url = reqwest::Url::parse_with_params(realm, &query)
                    .map_err(|e| refused(format!("its token service {realm:?}: {e}")))?;
                let mut request = self.http.get(url);
                if let Some((user, password)) = credentials {
                    request = request.basic_auth(user, Some(password));
                }
                let answer = request
                    .send()
                    .await
                    .map_err(|e| refused(e.without_url().to_string()))?;
                if !answer.status().is_success() {
                    return Err(refused(format!(
                        "its token service answered {}",
                        answer.status()
                    )));
                }
                let token: Token = answer
                    .json()
                    .await
                    .map_err(|e| refused(format!("its token service's answer: {e}")))?;
                let token = token
                    .token
                    .or(token.access_token)
                    .ok_or_else(|| refused("its token service gave no token".to_owned()))?;
                Ok(Login::Bearer(token))
            }
            Challenge::Basic => {
                let (user, password) =
                    credentials.ok_or_else(|| Error::LoginNeeded(host.to_owned()))?;
                Ok(Login::Basic(user, password))
            }
        }
    }
}

/// What a request logs in with.
enum Login<'a> {
    Basic(&'a str, &'a str),
    Bearer(String),
}

/// The token service's answer (Docker's token authentication).
#[derive(serde::Deserialize)]
struct Token {
    token: Option<String>,
    access_token: Option<String>,
}

/// How a registry asks to log in (`WWW-Authenticate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Challenge {
    /// Credentials on every request (and what to try when it does not say).
    #[default]
    Basic,
    /// A token from `realm` for `service` and `scope`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Reads `Bearer realm="...",service="...",scope="..."` or `Basic ...`.
    fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Basic;
        }
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        for (key, value) in params_of(params) {
            match key.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                "scope" => scope = Some(value),
                _ => {}
            }
        }
        match realm {
            Some(realm) => Challenge::Bearer {
                realm,
                service,
                scope,
            },
            None => Challenge::Basic,
        }
    }
}

/// `key="value"` pairs separated by commas; a quoted value may hold commas
/// (a scope with several actions).
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, next)) => (value.to_owned(), next),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value.trim().to_owned(), next),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The schemes to reach `host` with, in order: HTTPS, then plain HTTP for
/// a registry on the loopback interface only, as the Docker Engine does
/// without an `insecure-registries` setting.
fn schemes(host: &str) -> &'static [&'static str] {
    let name = match host.rsplit_once(':') {
        // `[::1]:5000`, `127.0.0.1:5000`, `localhost:5000`
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        &["https", "http"]
    } else {
        &["https"]
    }
}

#[cfg(test)]
mod tests {
    use super::{Challenge, schemes};

    #[test]
    fn challenges_read_as_registries_send_them() {
        let cases = [
            ("Basic realm=\"Registry Realm\"", Challenge::Basic),
            ("", Challenge::Basic),
            ("Bearer", Challenge::Basic),
            (
                "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:team/app:pull,push,delete\"",
                Challenge::Bearer {
                    realm: "https://auth.docker.io/token".to_owned(),
                    service: Some("registry.docker.io".to_owned()),
                    scope: Some("repository:team/app:pull,push,delete".to_owned()),
                },
            ),
            (
                "bearer realm=https://r.example/jwt/auth, service=\"container_registry\"",
                Challenge::Bearer {
                    realm: "https://r.example/jwt/auth".to_owned(),
                    service: Some("container_registry".to_owned()),
                    scope: None,
                },
            ),
            ("Bearer service=\"x\"", Challenge::Basic),
            (
                "Bearer realm=\"unterminated",
                Challenge::Bearer {
                    realm: "unterminated".to_owned(),
                    service: None,
                    scope: None,
                },
            ),
        ];
        for (header, want) in cases {
            assert_eq!(Challenge::parse(header), want, "{header}");
        }
    }

    #[test]
    fn plain_http_only_on_the_loopback_interface() {
        let cases = [
            ("127.0.0.1:5000", true),
            ("127.9.9.9", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("registry.example:5000", false),
            ("10.0.0.2:5000", false),
            ("ghcr.io", false),
            ("localhost.evil.example", false),
        ];
        for (host, plain) in cases {
            assert_eq!(schemes(host).contains(&"http"), plain, "{host}");
        }
    }
}
