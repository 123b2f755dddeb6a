//! The wire format between Slipway's services: the code generated from
//! `proto/slipway.proto` and the files it imports, their file descriptor
//! set (for gRPC server reflection), time conversions, and [`ErrorCode`],
//! the one table that maps an error to both a gRPC and an HTTP status. With
//! the `json` feature, the REST API's JSON shapes too, shared by the
//! gateway and the CLI.

pub mod auth;
pub mod error;
#[cfg(feature = "json")]
pub mod json;
pub mod tls;

#[allow(clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("slipway.v1");
}

pub use error::{ApiError, CallError, ErrorCode};

/// How runners and notifiers retry a call the orchestrator could not answer
/// ([`CallError::is_transient`]): soon, then up to every 5 s, with jitter;
/// callers bound the total with `with_total_delay` where giving up is right.
pub const RETRY_CALLS: backon::ExponentialBuilder = backon::ExponentialBuilder::new()
    .with_min_delay(std::time::Duration::from_millis(100))
    .with_max_delay(std::time::Duration::from_secs(5))
    .with_jitter()
    .without_max_times();
pub use generated::*;
pub use prost_types::Timestamp;

/// The encoded `FileDescriptorSet` of `proto/slipway.proto` and its
/// imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("slipway_descriptor");

use chrono::{DateTime, Utc};

/// A protobuf timestamp from a UTC time.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A UTC time from a protobuf timestamp; `None` when it is out of range.
pub fn datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// A channel to the orchestrator at `url` (`SLIPWAY_ORCHESTRATOR_URL`),
/// connected on first use, so a service starts while the orchestrator is
/// still down; calls give up after `timeout`. An `https://` URL uses TLS,
/// trusting `ca` (`SLIPWAY_ORCHESTRATOR_CA`, a PEM file) alone when given,
/// else the system and webpki roots.
pub fn orchestrator_channel(
    url: &str,
    ca: Option<&std::path::Path>,
    timeout: std::time::Duration,
) -> Result<tonic::transport::Channel, String> {
    Ok(orchestrator_endpoint(url, ca)?
        .timeout(timeout)
        .connect_lazy())
}

/// The endpoint [`orchestrator_channel`] connects to, for a caller that
/// sets its own timeouts.
pub fn orchestrator_endpoint(
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<tonic::transport::Endpoint, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid SLIPWAY_ORCHESTRATOR_URL {url:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .tcp_nodelay(true);
    let https = endpoint.uri().scheme_str() == Some("https");
    match tls::client_config(url, https, ca)? {
        Some(config) => endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS to {url}: {e}")),
        None => Ok(endpoint),
    }
}

/// For an `https://` orchestrator URL, connects once to find out at start
/// whether the TLS handshake succeeds: `Err` says why it does not (an
/// untrusted certificate, a server without TLS). An orchestrator that does
/// not answer at all is fine: services wait for it.
pub async fn check_orchestrator_tls(url: &str, ca: Option<&std::path::Path>) -> Result<(), String> {
    let endpoint = orchestrator_endpoint(url, ca)?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(());
    }
    match endpoint.connect().await {
        Err(e) => match tls::failure(&e) {
            Some(why) => Err(format!(
                "TLS with the orchestrator at {url} failed: {why} (trusting {})",
                ca.map_or_else(
                    || "the system roots; set SLIPWAY_ORCHESTRATOR_CA for a private CA".to_owned(),
                    |ca| format!("SLIPWAY_ORCHESTRATOR_CA {}", ca.display())
                )
            )),
            None => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}
