//! Prometheus metrics: registering a service's metrics in its own registry,
//! rendering them in the text format (version 0.0.4), and the small HTTP
//! listener that serves `GET /metrics` for the services without an HTTP
//! server of their own (orchestrator, notifier, runner).
//!
//! Each service owns a [`Registry`] rather than using the process-wide
//! default: tests run several services in one process, and each must show
//! only its own numbers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, HistogramOpts, Opts, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Buckets (seconds) for how long tasks and steps run: a second to an hour.
pub const RUN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Buckets (seconds) for waits that should be short: 10 ms to 10 minutes.
pub const WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];

/// How long a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A metric that could not be registered, or a listener that could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
    #[error("cannot listen for metrics on SLIPWAY_METRICS_ADDR={addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A counter per combination of `labels`, registered in `registry`.
pub fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, Error> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A gauge per combination of `labels`, registered in `registry`.
pub fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, Error> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A histogram with `buckets` per combination of `labels`, registered in
/// `registry`.
pub fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let metric = HistogramVec::new(opts, labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A histogram without labels, registered in `registry`.
pub fn plain_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, Error> {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Every metric of `registry` in the text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        // Only a metric family without samples of its type fails; the
        // others are still worth serving.
        tracing::warn!(error = %e, "cannot encode some metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Reads a `SLIPWAY_METRICS_ADDR`-like setting: empty turns the listener
/// off, anything else must be `host:port` (port 0 picks one).
pub fn parse_addr(setting: &str, value: &str) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("{setting}: invalid address {value:?}: use e.g. 127.0.0.1:9464"))
}

/// The bound listener of `GET /metrics`. [`Listener::bind`] binds (port 0
/// works, for tests); [`Listener::serve`] answers until `shutdown`.
pub struct Listener {
    listener: TcpListener,
}

impl Listener {
    pub async fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `GET /metrics` with what `render` returns (it may look
    /// things up: it is called once per scrape) until `shutdown` resolves.
    pub async fn serve<F, Fut>(self, render: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        tracing::info!(addr = ?self.listener.local_addr(), "metrics listening");
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pass, retry.
                        tracing::warn!(error = %e, "cannot accept a metrics connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            let render = render.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| answer(req, render.clone()));
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
        // Dropping the set ends the connections still open.
        connections.shutdown().await;
    }
}

async fn answer<F, Fut>(
    req: Request<Incoming>,
    render: F,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let mut response = Response::new(Full::new(Bytes::from(render().await)));
    response.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() -> Result<(), Error> {
        let registry = Registry::new();
        let hooks = counter(&registry, "demo_total", "Demo counter.", &["outcome"])?;
        hooks.with_label_values(&["accepted"]).inc_by(2);
        let waits = plain_histogram(&registry, "demo_seconds", "Demo.", &[1.0, 5.0])?;
        waits.observe(2.0);
        let text = render(&registry);
        assert!(text.contains("# TYPE demo_total counter"), "{text}");
        assert!(
            text.contains("demo_total{outcome=\"accepted\"} 2"),
            "{text}"
        );
        assert!(text.contains("demo_seconds_bucket{le=\"1\"} 0"), "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"5\"} 1"), "{text}");
        assert!(text.contains("demo_seconds_count 1"), "{text}");
        Ok(())
    }

    #[test]
    fn a_name_registered_twice_is_an_error() {
        let registry = Registry::new();
        assert!(counter(&registry, "twice_total", "Once.", &[]).is_ok());
        assert!(counter(&registry, "twice_total", "Twice.", &[]).is_err());
    }

    #[test]
    fn empty_turns_the_listener_off() {
        assert_eq!(parse_addr("SLIPWAY_METRICS_ADDR", " "), Ok(None));
        assert_eq!(
            parse_addr("SLIPWAY_METRICS_ADDR", "127.0.0.1:0"),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 0))))
        );
        let err = parse_addr("SLIPWAY_METRICS_ADDR", "localhost").unwrap_err();
        assert!(err.contains("SLIPWAY_METRICS_ADDR"), "{err}");
    }
}
