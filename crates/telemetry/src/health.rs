//! The probes behind each service's `healthcheck` command: small enough to
//! run inside the image (no curl there), each bounded by [`TIMEOUT`], each
//! failing with one lowercase line for the container engine's log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe may take; a health check that hangs is unhealthy.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer from {0} within {secs}s", secs = TIMEOUT.as_secs())]
    Timeout(String),
    #[error("{0}")]
    Unhealthy(String),
}

/// The address to probe a listener on: a wildcard bind (`0.0.0.0`, `[::]`)
/// is reached through loopback, as from inside the container.
pub fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// Healthy when `host:port` accepts a TCP connection.
pub async fn connect(target: &str) -> Result<(), HealthError> {
    match tokio::time::timeout(TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(HealthError::Connect {
            addr: target.to_owned(),
            reason: e.to_string(),
        }),
        Err(_) => Err(HealthError::Timeout(target.to_owned())),
    }
}

/// Healthy when `GET path` on `addr` answers with a 2xx status (plain
/// HTTP/1.0: the listeners probed are ours and speak it).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(), HealthError> {
    let url = format!("http://{addr}{path}");
    let probe = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| HealthError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let io = |e: std::io::Error| HealthError::Unhealthy(format!("{url}: {e}"));
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        // The status line is all that is needed.
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < head.len() {
            let n = stream.read(&mut head[read..]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let head = String::from_utf8_lossy(&head[..read]);
        let status = head.lines().next().unwrap_or_default();
        let code = status.split_whitespace().nth(1).unwrap_or_default();
        if status.starts_with("HTTP/1.") && code.starts_with('2') && code.len() == 3 {
            Ok(())
        } else {
            Err(HealthError::Unhealthy(format!("{url} answered {status:?}")))
        }
    };
    tokio::time::timeout(TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(HealthError::Timeout(url.clone())))
}

/// `host:port` of a URL such as `http://orchestrator:50051` or
/// `amqp://user:pass@broker:5672/%2f`, with the scheme's port when none is
/// written.
pub fn url_target(url: &str) -> Result<String, HealthError> {
    let invalid = || HealthError::Unhealthy(format!("cannot read host and port of {url:?}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return Err(invalid());
    }
    let has_port = match host_port.rsplit_once(':') {
        Some((_, port)) => !port.contains(']'),
        None => false,
    };
    if has_port {
        return Ok(host_port.to_owned());
    }
    let port = match scheme {
        "http" => 80,
        "https" => 443,
        "amqp" => 5672,
        "amqps" => 5671,
        _ => return Err(invalid()),
    };
    Ok(format!("{host_port}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_targets() {
        let cases = [
            ("http://127.0.0.1:50051", "127.0.0.1:50051"),
            ("amqp://guest:guest@broker:5673/%2f", "broker:5673"),
            ("amqp://guest:guest@broker/%2f", "broker:5672"),
            ("https://[::1]/x", "[::1]:443"),
            ("http://[::1]:8080", "[::1]:8080"),
        ];
        for (url, want) in cases {
            assert_eq!(url_target(url).ok().as_deref(), Some(want), "{url}");
        }
        assert!(url_target("no-scheme").is_err());
        assert!(url_target("ftp://host").is_err());
    }

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(local(any).to_string(), "127.0.0.1:8080");
        let one: SocketAddr = "10.1.2.3:9".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(local(one), one);
    }
}
