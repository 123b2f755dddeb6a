//! The edge proxy's admin API: HTTP/1.1 over its unix socket (or TCP for a
//! proxy on another host), one connection per call. Caddy 2.6 sends the
//! config's `Etag` as a trailer of a `GET`, so this reads trailers as well as
//! headers; a change sends it back in `If-Match`.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// How long one admin call may take: a config change reloads the proxy.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// `unix/<path>`, Caddy's own notation.
    Unix(PathBuf),
    /// `http://host:port`.
    Tcp(String),
}

impl Admin {
    /// Parses `SLIPWAY_PROXY_ADMIN`: `unix/<path>` or `http://host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix/") {
            if path.is_empty() {
                return Err(format!("SLIPWAY_PROXY_ADMIN {s:?} names no socket"));
            }
            return Ok(Admin::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("http://") {
            let addr = addr.trim_end_matches('/');
            if !addr.is_empty() && !addr.contains('/') {
                return Ok(Admin::Tcp(addr.to_owned()));
            }
        }
        Err(format!(
            "invalid SLIPWAY_PROXY_ADMIN {s:?}: use unix/<socket path> or http://host:port"
        ))
    }
}

impl std::fmt::Display for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admin::Unix(path) => write!(f, "unix/{}", path.display()),
            Admin::Tcp(addr) => write!(f, "http://{addr}"),
        }
    }
}

/// An admin call that got no answer, or an answer that was not a success.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no edge proxy answers at SLIPWAY_PROXY_ADMIN={admin}: {reason}")]
    Unreachable { admin: String, reason: String },
    /// 412: the config changed since it was read.
    #[error("the proxy's configuration changed meanwhile")]
    Conflict,
    #[error("the proxy refused {method} {path}: {status} {body}")]
    Refused {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
}

/// A successful answer: its body and the config's `Etag`, if sent.
pub struct Answer {
    pub body: Bytes,
    pub etag: Option<String>,
}

impl Admin {
    /// One call: `body` as JSON, `if_match` as the `If-Match` header.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Answer, AdminError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.exchange(&method, path, body, if_match)).await
        {
            Ok(answer) => answer,
            Err(_) => Err(self.unreachable("no answer in 30s")),
        }
    }

    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<Answer, AdminError> {
        // Caddy checks the Host against its `origins`; "localhost" is the
        // one a unix socket is configured with.
        let host = match self {
            Admin::Unix(_) => "localhost".to_owned(),
            Admin::Tcp(addr) => addr.clone(),
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, host);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(etag) = if_match {
            request = request.header(hyper::header::IF_MATCH, etag);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.unreachable(&e.to_string()))?;
        let response = match self {
            Admin::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| self.unreachable(&e.to_string()))?;
                self.send(stream, request).await?
            }
            Admin::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| self.unreachable(&e.to_string()))?;
                self.send(stream, request).await?
            }
        };
        let status = response.status();
        let header_etag = etag_of(response.headers());
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        let etag = header_etag.or_else(|| collected.trailers().and_then(etag_of));
        let body = collected.to_bytes();
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(AdminError::Conflict);
        }
        if !status.is_success() {
            return Err(AdminError::Refused {
                method: method.clone(),
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        Ok(Answer { body, etag })
    }

    async fn send<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, AdminError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(&e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(&e.to_string()))
    }

    fn unreachable(&self, reason: &str) -> AdminError {
        AdminError::Unreachable {
            admin: self.to_string(),
            reason: reason.to_owned(),
        }
    }
}

fn etag_of(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_addresses() {
        assert_eq!(
            Admin::parse("unix//run/slipway/proxy/admin.sock"),
            Ok(Admin::Unix(PathBuf::from("/run/slipway/proxy/admin.sock")))
        );
        assert_eq!(
            Admin::parse("http://10.0.0.5:2019/"),
            Ok(Admin::Tcp("10.0.0.5:2019".to_owned()))
        );
        for bad in ["", "unix/", "localhost:2019", "https://x:1", "http://x/y"] {
            assert!(Admin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Admin::parse("unix//a/b.sock").unwrap().to_string(),
            "unix//a/b.sock"
        );
    }
}
