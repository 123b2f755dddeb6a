//! Slipway's notifier: takes events from the broker, matches them against
//! each workflow's `notify` rules (or the server default), and delivers
//! them to Slack, e-mail, DingTalk and webhooks; and sets the commit
//! statuses they map to on GitHub and GitLab. Both with retries and every
//! attempt recorded through the orchestrator. It is the only service that
//! talks to those channels and to the forges' status APIs.
//!
//! [`Notifier::build`] checks the settings and binds its gRPC listener
//! (port 0 works, for tests); [`Notifier::run`] works until `shutdown`
//! resolves.

pub mod channels;
mod consume;
mod convert;
mod deliver;
mod forges;
mod grpc;
mod metrics;
mod model;
mod orchestrator;
pub mod render;
pub mod settings;
mod statuses;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use proto::notifier_server::NotifierServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use settings::Settings;

use crate::channels::Channels;
use crate::deliver::Deliverer;
use crate::orchestrator::Orchestrator;
use crate::statuses::{RetryPolicy, Statuses};

/// Why the notifier could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("cannot listen on SLIPWAY_NOTIFIER_ADDR={addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("grpc server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("{0}")]
    Metrics(#[from] telemetry::metrics::Error),
}

pub struct Notifier {
    /// What `run` connects to and consumes with.
    settings: Settings,
    /// The gRPC listener, bound in `build` so that port 0 works.
    listener: TcpListener,
    /// `GET /metrics`, unless `SLIPWAY_METRICS_ADDR` is empty.
    metrics: Option<telemetry::metrics::Listener>,
    /// Shared by the consumer, the retry loop and the gRPC service.
    deliverer: Arc<Deliverer>,
    /// Shared by the consumer and the commit status claim loop.
    statuses: Arc<Statuses>,
}

impl Notifier {
    /// Checks the settings, sets up the channels' clients and binds the
    /// gRPC listener.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        let checked = settings.check().map_err(Error::Settings)?;
        // Both rustls back-ends may be compiled in; the Slack client needs a
        // process default. A second install (tests) is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let channels = Channels::new(
            &settings.slack_api_url,
            &settings.smtp_url,
            &settings.smtp_from,
        )
        .map_err(Error::Settings)?;
        queue::tls_config(
            &settings.amqp_url,
            proto::tls::path_setting(&settings.amqp_ca),
        )
        .map_err(|e| Error::Settings(e.to_string()))?;
        let orchestrator = Orchestrator::new(
            &settings.orchestrator_url,
            proto::tls::path_setting(&settings.orchestrator_ca),
            &settings.api_token,
            settings.internal_token(),
        )
        .map_err(Error::Settings)?;
        let listener = TcpListener::bind(settings.notifier_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: settings.notifier_addr,
                source,
            })?;
        let metrics = match checked.metrics_addr {
            Some(addr) => Some(telemetry::metrics::Listener::bind(addr).await?),
            None => None,
        };
        let counters = metrics::Metrics::new()?;
        let statuses = Arc::new(Statuses::new(
            orchestrator.clone(),
            forges::Forges::new().map_err(Error::Settings)?,
            settings.public_url.clone(),
            RetryPolicy {
                base: checked.status_retry_base,
                retry_for: checked.status_retry_for,
            },
            counters.clone(),
        ));
        let deliverer = Arc::new(Deliverer::new(
            orchestrator,
            channels,
            settings.public_url.clone(),
            checked,
            counters,
        ));
        Ok(Self {
            settings,
            listener,
            metrics,
            deliverer,
            statuses,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Consumes events, retries due deliveries and commit statuses, and
    /// serves the gRPC service until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let topology = queue::Topology::new(self.settings.queue_prefix.clone())
            .expiring(self.settings.queue_expires_ms);
        let consumer = tokio::spawn(consume::run(
            self.deliverer.clone(),
            self.statuses.clone(),
            self.settings.amqp_url.clone(),
            proto::tls::path_setting(&self.settings.amqp_ca).map(std::path::Path::to_path_buf),
            topology,
            self.settings.notify_concurrency,
            stopped.clone(),
        ));
        let retries = tokio::spawn(self.deliverer.clone().retry_loop(stopped.clone()));
        let status_claims = tokio::spawn(self.statuses.clone().claim_loop(stopped.clone()));
        let metrics = self.metrics.map(|listener| {
            let deliverer = self.deliverer.clone();
            let render = move || {
                let deliverer = deliverer.clone();
                async move { deliverer.metrics.render() }
            };
            let mut stopped = stopped;
            tokio::spawn(listener.serve(render, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });

        let auth = proto::auth::RequireBearer::new(&self.settings.api_token);
        let service = NotifierServer::new(grpc::NotifierService::new(self.deliverer.clone()));
        let service = InterceptedService::new(service, move |r| auth.check(r));
        let addr = self.listener.local_addr().map_err(|source| Error::Bind {
            addr: self.settings.notifier_addr,
            source,
        })?;
        tracing::info!(%addr, "notifier listening");
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, signal)
            .await;
        // The consumer closes its connection, handing back what it holds.
        let _ = consumer.await;
        let _ = retries.await;
        let _ = status_claims.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        served.map_err(Error::from)
    }
}

/// `slipway-notifier healthcheck`: healthy when its gRPC listener
/// (`SLIPWAY_NOTIFIER_ADDR`) accepts a connection. Liveness only: a lost
/// broker is reconnected to with backoff by the notifier itself, and a
/// restart would not bring it back sooner.
pub async fn healthcheck(settings: &Settings) -> Result<(), telemetry::health::HealthError> {
    let addr = telemetry::health::local(settings.notifier_addr);
    telemetry::health::connect(&addr.to_string()).await
}
