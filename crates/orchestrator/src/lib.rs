//! Slipway's orchestrator: the one service with a database connection. It
//! stores workflows, turns webhooks into tasks, hands tasks to runners through
//! the queue (via the outbox), tracks their leases, and serves the public and
//! runner gRPC APIs.
//!
//! [`Orchestrator::build`] connects, migrates and binds (port 0 works, for
//! tests); [`Orchestrator::run`] serves until `shutdown` resolves.

pub mod app;
pub mod background;
pub mod crypto;
pub mod forge_auth;
pub mod forges;
pub mod grpc;
pub mod logs;
pub mod metrics;
pub mod prune;
pub mod relay;
pub mod runners;
pub mod settings;
pub mod watchdog;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use domain::mask::redact_url;
use proto::notifier_api_server::NotifierApiServer;
use proto::runner_api_server::RunnerApiServer;
use proto::slipway_server::SlipwayServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use settings::Settings;

/// How long a stop waits for open calls (log streams) to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Largest gRPC message accepted: above the gateway's largest webhook body.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

use crate::app::App;
use crate::background::{Handle, Shutdown};
use crate::grpc::{Auth, NotifierService, PublicApi, RunnerService};

/// Why the orchestrator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("cannot reach the database at SLIPWAY_DATABASE_URL={url}: {source}")]
    Database { url: String, source: store::Error },
    #[error("cannot listen on SLIPWAY_GRPC_ADDR={addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("grpc server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("{0}")]
    Metrics(#[from] telemetry::metrics::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Connects to the database and applies pending migrations.
pub async fn migrate(database_url: &str) -> Result<Vec<String>, Error> {
    let url = database_url.to_owned();
    let db_err = |source| Error::Database {
        url: redact_url(database_url).into_owned(),
        source,
    };
    let result = tokio::task::spawn_blocking(move || {
        let pool = store::pool(&url, 1, Duration::from_secs(5))?;
        let mut conn = pool.get()?;
        store::migrate(&mut conn)
    })
    .await
    .map_err(|e| Error::Settings(format!("migration task failed: {e}")))?;
    result.map_err(db_err)
}

pub struct Orchestrator {
    /// Checked settings; `run` reads the tokens and broker settings from it.
    settings: Settings,
    /// Bound in `build`, so tests can ask for port 0 and read the port.
    listener: TcpListener,
    /// TLS of the gRPC listener, when `SLIPWAY_GRPC_TLS_CERT` and
    /// `SLIPWAY_GRPC_TLS_KEY` are set.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// `GET /metrics`, unless `SLIPWAY_METRICS_ADDR` is empty.
    metrics: Option<telemetry::metrics::Listener>,
    /// The state the gRPC services and the background loops share.
    app: Arc<App>,
}

impl Orchestrator {
    /// Checks the settings, connects to the database, migrates it and binds
    /// the gRPC listener.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        let tls = proto::tls::server_config(&settings.grpc_tls_cert, &settings.grpc_tls_key)
            .map_err(Error::Settings)?;
        queue::tls_config(&settings.amqp_url, settings.amqp_ca())
            .map_err(|e| Error::Settings(e.to_string()))?;
        let applied = migrate(&settings.database_url).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
        let url = settings.database_url.clone();
        let size = settings.database_pool_size.max(2);
        let pool =
            tokio::task::spawn_blocking(move || store::pool(&url, size, Duration::from_secs(5)))
                .await
                .map_err(|e| Error::Settings(e.to_string()))?
                .map_err(|source| Error::Database {
                    url: redact_url(&settings.database_url).into_owned(),
                    source,
                })?;
        let listener = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: settings.grpc_addr,
                source,
            })?;
        let metrics = match settings.metrics_addr().map_err(Error::Settings)? {
            Some(addr) => Some(telemetry::metrics::Listener::bind(addr).await?),
            None => None,
        };
        let secrets = crypto::SecretBox::new(&settings.secret_key)
            .with_previous(&settings.secret_key_previous);
        let app = Arc::new(
            App::new(
                pool,
                secrets,
                Duration::from_secs(settings.lease_seconds),
                settings.max_requeues,
                metrics::Metrics::new()?,
                forges::Forges::from_settings(&settings).map_err(Error::Settings)?,
            )
            .with_retention_days(settings.retention_days)
            .with_bounds(settings.bounds().map_err(Error::Settings)?),
        );
        // Secrets open with either key meanwhile, so a failure here only
        // delays the rotation to the next start.
        if let Err(e) = app.reseal_secrets().await {
            tracing::warn!(error = %e, "cannot seal the stored secrets with the new key yet");
        }
        Ok(Self {
            settings,
            listener,
            tls,
            metrics,
            app,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Serves the gRPC services (public, runner, notifier API, and server
    /// reflection) and runs the outbox relay, the lease watchdog and the
    /// pruner until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let topology = queue::Topology::new(self.settings.queue_prefix.clone())
            .expiring(self.settings.queue_expires_ms);
        // The background loops stop after the gRPC server, each at a point
        // where nothing it began is left half done.
        let (stop_loops, loops_stop) = tokio::sync::watch::channel(false);
        let loops_stop = Shutdown::new(loops_stop);
        let relay = relay::Relay::new(
            self.app.clone(),
            relay::Options {
                amqp_url: self.settings.amqp_url.clone(),
                amqp_ca: self.settings.amqp_ca().map(Path::to_path_buf),
                topology: topology.clone(),
            },
        );
        let relay = Handle::spawn("relay", relay.run(loops_stop.clone()));
        let watchdog = watchdog::Watchdog::new(
            self.app.clone(),
            watchdog::Options {
                stuck_after: self.settings.pending_alert_after(),
            },
        );
        let watchdog = Handle::spawn("watchdog", watchdog.run(loops_stop.clone()));
        let pruner = prune::Pruner::new(
            self.app.clone(),
            prune::Options {
                every: self.settings.prune_every(),
                batch: self.settings.prune_batch,
                delete_images: self.settings.registry_delete,
            },
        );
        let pruner = Handle::spawn("pruner", pruner.run(loops_stop.clone()));
        let metrics = self.metrics.map(|listener| {
            let (app, topology) = (self.app.clone(), topology.clone());
            let render = move || {
                let (app, topology) = (app.clone(), topology.clone());
                async move { app.render_metrics(&topology).await }
            };
            let mut stopped = loops_stop;
            tokio::spawn(listener.serve(render, async move { stopped.requested().await }))
        });

        let public_auth = Auth::new(&self.settings.api_token);
        let runner_auth = Auth::new(self.settings.runner_token());
        let public = SlipwayServer::new(PublicApi::new(self.app.clone()))
            .max_decoding_message_size(MAX_MESSAGE);
        let public = InterceptedService::new(public, move |r| public_auth.check(r));
        let runner = RunnerApiServer::new(RunnerService::new(self.app.clone()))
            .max_decoding_message_size(MAX_MESSAGE);
        let notifier = NotifierApiServer::new(NotifierService::new(self.app.clone()));
        let notifier_auth = Auth::new(self.settings.notifier_token());
        let notifier = InterceptedService::new(notifier, move |r| notifier_auth.check(r));
        let runner = InterceptedService::new(runner, move |r| runner_auth.check(r));
        // Reflection describes the services without a token, so grpcurl and
        // other tools can list them; every call still needs its token.
        let reflection = reflection_builder("grpc.reflection.v1.ServerReflection").build_v1()?;
        let reflection_alpha =
            reflection_builder("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;
        tracing::info!(addr = %self.listener.local_addr().map_err(|source| Error::Bind { addr: self.settings.grpc_addr, source })?, tls = self.tls.is_some(), "orchestrator listening");
        // Without TCP_NODELAY, small HTTP/2 frames wait on delayed ACKs (40 ms).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        // A graceful stop waits for open calls; a followed log would hold it
        // until its task ends, so the wait is bounded.
        let (stopping, stopped) = tokio::sync::oneshot::channel();
        let signal = async move {
            shutdown.await;
            let _ = stopping.send(());
        };
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            server = server.tls_config(tls)?;
        }
        let served = server
            .trace_fn(grpc::call_span)
            .add_service(public)
            .add_service(runner)
            .add_service(notifier)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .serve_with_incoming_shutdown(incoming, signal);
        let deadline = async move {
            if stopped.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            served = served => served.map_err(Error::from),
            () = deadline => {
                tracing::warn!("open calls did not end in time; stopping anyway");
                Ok(())
            }
        };
        let _ = stop_loops.send(true);
        tokio::join!(
            relay.stopped(SHUTDOWN_GRACE),
            watchdog.stopped(SHUTDOWN_GRACE),
            pruner.stopped(SHUTDOWN_GRACE)
        );
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        result
    }
}

/// Server reflection that advertises what this server serves (and itself,
/// `own`): the descriptor set also holds the notifier's own service.
fn reflection_builder(own: &str) -> tonic_reflection::server::Builder<'static> {
    [
        proto::slipway_server::SERVICE_NAME,
        proto::runner_api_server::SERVICE_NAME,
        proto::notifier_api_server::SERVICE_NAME,
    ]
    .into_iter()
    .fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .with_service_name(own),
        tonic_reflection::server::Builder::with_service_name,
    )
}

/// `slipway-orchestrator healthcheck`: calls `Ready` on its own gRPC
/// listener (`SLIPWAY_GRPC_ADDR`, with `SLIPWAY_API_TOKEN`); healthy when it
/// answers and reports both the database and the broker up.
pub async fn healthcheck(settings: &Settings) -> Result<(), telemetry::health::HealthError> {
    use telemetry::health::{HealthError, TIMEOUT, local};
    let addr = local(settings.grpc_addr);
    if proto::tls::path_setting(&settings.grpc_tls_cert).is_some() {
        // The certificate names what remote clients dial, not necessarily
        // the loopback address: with TLS, only the listener is checked.
        return telemetry::health::connect(&addr.to_string()).await;
    }
    let url = format!("http://{addr}");
    let bearer = proto::auth::Bearer::new(&settings.api_token).ok_or_else(|| {
        HealthError::Unhealthy("SLIPWAY_API_TOKEN cannot be sent as a header".to_owned())
    })?;
    let ask = async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| HealthError::Unhealthy(format!("{url}: {e}")))?
            .connect()
            .await
            .map_err(|e| HealthError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let mut client = proto::slipway_client::SlipwayClient::with_interceptor(channel, bearer);
        client
            .ready(proto::Empty {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| HealthError::Unhealthy(format!("ready failed: {}", s.message())))
    };
    let ready = tokio::time::timeout(TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err(HealthError::Timeout(url.clone())))?;
    match (ready.database, ready.broker) {
        (true, true) => Ok(()),
        (database, broker) => Err(HealthError::Unhealthy(format!(
            "not ready: database up {database}, broker up {broker}"
        ))),
    }
}
