//! Slipway's gateway: the one service that speaks HTTP to users. It verifies
//! webhooks, serves the REST API and the dashboard, and forwards everything
//! to the orchestrator over gRPC. Its only state is the webhook spool:
//! verified deliveries the orchestrator could not take yet (`spool`).
//!
//! [`Gateway::build`] binds its listener (port 0 works, for tests);
//! [`Gateway::run`] serves until `shutdown` resolves.

pub mod api;
pub mod body;
pub mod dashboard;
pub mod error;
pub mod json;
pub mod metrics;
pub mod settings;
pub mod spool;
pub mod webhooks;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use proto::auth::Bearer;
use proto::slipway_client::SlipwayClient;
use serde_json::json;
use subtle::ConstantTimeEq;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use settings::Settings;

use crate::error::{not_found, unauthorized};

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Metrics(#[from] telemetry::metrics::Error),
    #[error("{0}")]
    Spool(#[from] spool::OpenError),
    #[error("cannot listen on SLIPWAY_HTTP_ADDR={addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub type Client = SlipwayClient<InterceptedService<Channel, Bearer>>;

/// What every handler shares.
pub struct State {
    /// The limits and secrets handlers check requests against.
    pub settings: Settings,
    /// The orchestrator connection every handler calls through.
    client: Client,
    /// What `GET /metrics` shows.
    pub metrics: metrics::Metrics,
    /// Verified deliveries waiting for the orchestrator; `None` when
    /// `SLIPWAY_WEBHOOK_SPOOL_BYTES` is 0.
    pub spool: Option<Arc<spool::Spool>>,
}

impl State {
    /// A handle on the orchestrator connection (cheap: channels are shared).
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

pub struct Gateway {
    /// Bound in `build`, so that port 0 works.
    listener: TcpListener,
    /// Handed to every handler.
    state: Data<State>,
}

impl Gateway {
    pub fn build(settings: Settings) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        let token = Bearer::new(&settings.api_token).ok_or_else(|| {
            Error::Settings("SLIPWAY_API_TOKEN must be printable ASCII".to_owned())
        })?;
        // Connect lazily: the gateway starts (and answers 503) while the
        // orchestrator is still down.
        let channel = proto::orchestrator_endpoint(
            &settings.orchestrator_url,
            proto::tls::path_setting(&settings.orchestrator_ca),
        )
        .map_err(Error::Settings)?
        .connect_lazy();
        let client = SlipwayClient::with_interceptor(channel, token)
            .max_decoding_message_size(64 * 1024 * 1024);
        let spool_bytes = settings.webhook_spool_bytes().map_err(Error::Settings)?;
        let spool = match spool_bytes {
            0 => None,
            max => Some(Arc::new(spool::Spool::open(&settings.data_dir, max)?)),
        };
        let listener = TcpListener::bind(settings.http_addr).map_err(|source| Error::Bind {
            addr: settings.http_addr,
            source,
        })?;
        Ok(Self {
            listener,
            state: Data::new(State {
                settings,
                client,
                metrics: metrics::Metrics::new()?,
                spool,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let form_limit = state.settings.api_max_bytes;
        tracing::info!(addr = ?self.listener.local_addr(), "gateway listening");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(api::tasks::query_error))
                .configure(|cfg| body::extractor_limits(cfg, form_limit))
                .wrap(from_fn(body::deadline))
                .wrap(from_fn(dashboard::errors::in_layout))
                .configure(routes)
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(self.listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(async move {
            shutdown.await;
            handle.stop(true).await;
        });
        // Handing over can stop anywhere: a delivery leaves the spool only
        // once stored, and a second hand-over is deduped.
        let drain = self.state.spool.clone().map(|spool| {
            tokio::spawn(spool::drain(
                spool,
                self.state.client(),
                Arc::clone(&self.state.metrics.spool),
            ))
        });
        let served = server.await;
        if let Some(drain) = drain {
            drain.abort();
        }
        served
    }
}

/// Every route of the gateway.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dashboard::routes)
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::serve))
        .route("/api/webhooks/github", web::post().to(webhooks::github))
        .route("/api/webhooks/gitlab", web::post().to(webhooks::gitlab))
        .service(
            web::scope("/api")
                .wrap(from_fn(require_token))
                .route("/workflows", web::post().to(api::workflows::create))
                .route("/workflows", web::get().to(api::workflows::list))
                .route("/workflows/{id}", web::get().to(api::workflows::get))
                .route("/workflows/{id}", web::put().to(api::workflows::update))
                .route("/workflows/{id}", web::delete().to(api::workflows::delete))
                .route("/workflows/{id}/run", web::post().to(api::workflows::run))
                .route("/workflows/{id}/stats", web::get().to(api::insights::stats))
                .route("/overview", web::get().to(api::insights::overview))
                .route(
                    "/workflows/{id}/secrets",
                    web::get().to(api::workflows::list_secrets),
                )
                .route(
                    "/workflows/{id}/secrets/{name}",
                    web::put().to(api::workflows::put_secret),
                )
                .route(
                    "/workflows/{id}/environments",
                    web::get().to(api::deployments::environments),
                )
                .route(
                    "/workflows/{id}/environments/{env}/rollback",
                    web::post().to(api::deployments::rollback),
                )
                .route(
                    "/tasks/{id}/deploy",
                    web::post().to(api::deployments::deploy_task),
                )
                .route("/deployments", web::get().to(api::deployments::list))
                .route("/deployments/{id}", web::get().to(api::deployments::get))
                .route("/rollbacks", web::get().to(api::deployments::rollbacks))
                .route("/alerts", web::get().to(api::alerts::list))
                .route("/tasks", web::get().to(api::tasks::list))
                .route("/tasks/{id}", web::get().to(api::tasks::get))
                .route("/tasks/{id}/logs", web::get().to(api::tasks::logs))
                .route("/tasks/{id}/logs/stream", web::get().to(api::tasks::stream))
                .route("/tasks/{id}/retry", web::post().to(api::tasks::retry))
                .route("/tasks/{id}/cancel", web::post().to(api::tasks::cancel))
                .default_service(web::to(unknown_route)),
        )
        .default_service(web::to(unknown_route));
}

/// `/api/*` (webhooks aside) needs `Authorization: Bearer <token>`.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let expected = req
        .app_data::<Data<State>>()
        .map(|s| s.settings.api_token.clone())
        .unwrap_or_default();
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if expected.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        let err = unauthorized("missing or wrong bearer token");
        let response = actix_web::ResponseError::error_response(&err);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// A browser asking for a page that is not there gets the dashboard's
/// not-found page; anything else the API's JSON.
async fn unknown_route(req: actix_web::HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    if dashboard::errors::wants_page(&req) {
        return Err(dashboard::errors::not_found(&req).into());
    }
    Err(not_found(format!("no route for {} {}", req.method(), req.path())).into())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the orchestrator answers and its database and broker do.
/// The webhook spool's depth is shown beside: deliveries waiting there are
/// taken in (`202`), but their tasks are not created yet.
async fn readyz(state: Data<State>) -> HttpResponse {
    let mut client = state.client();
    let (ready, mut body) =
        match tokio::time::timeout(Duration::from_secs(3), client.ready(proto::Empty {})).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                (
                    r.database && r.broker,
                    json!({"orchestrator": true, "database": r.database, "broker": r.broker}),
                )
            }
            _ => (
                false,
                json!({"orchestrator": false, "database": false, "broker": false}),
            ),
        };
    if let Some(spool) = &state.spool {
        let depth = spool.depth();
        body["webhook_spool"] = json!({
            "deliveries": depth.deliveries,
            "bytes": depth.bytes,
            "oldest_seconds": depth.oldest.map_or(0, |d| d.as_secs()),
        });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `slipway-gateway healthcheck`: healthy when `GET /healthz` on
/// `SLIPWAY_HTTP_ADDR` answers 2xx. Liveness only: `/readyz` also needs the
/// orchestrator, and a gateway should not be restarted for its peer.
pub async fn healthcheck(settings: &Settings) -> Result<(), telemetry::health::HealthError> {
    telemetry::health::http_get(telemetry::health::local(settings.http_addr), "/healthz").await
}
