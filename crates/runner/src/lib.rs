//! Slipway's runner: takes task messages from RabbitMQ, claims each task's
//! lease from the orchestrator, and runs it (clone with gix, steps with
//! `sh -e`). The delivery is acknowledged as soon as the claim is stored, so
//! no delivery stays unacknowledged for the length of a task; from then on
//! the lease, renewed by heartbeat, is what keeps the task this runner's.
//!
//! [`Runner::build`] checks the settings and that the broker answers;
//! [`Runner::run`] works until `shutdown` resolves.

pub mod cache;
pub mod client;
pub mod confine;
pub mod context;
pub mod deploy;
pub mod docker;
pub mod executor;
pub mod git;
pub mod lock;
pub mod metrics;
pub mod process;
pub mod registry;
mod report;
pub mod route;
pub mod settings;
pub mod ship;
pub mod sweep;
pub mod usage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use domain::labels::Labels;
use futures_util::StreamExt;
use proto::ErrorCode;
use queue::lapin::options::{BasicAckOptions, BasicNackOptions};
use queue::{TaskMessage, Topology};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

pub use settings::Settings;

use crate::client::{Lease, RunnerClient};
use crate::context::Context;

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Settings(String),
    #[error("cannot reach the broker at SLIPWAY_AMQP_URL: {0}")]
    Broker(#[from] queue::Error),
    #[error("{0}")]
    Metrics(#[from] telemetry::metrics::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

pub struct Runner {
    settings: Settings,
    runner_id: String,
    /// `SLIPWAY_RUNNER_LABELS`: which tasks this runner may take.
    labels: Labels,
    context: Arc<Context>,
    metrics: Arc<metrics::Metrics>,
    /// `GET /metrics`, when `SLIPWAY_METRICS_ADDR` is set.
    listener: Option<telemetry::metrics::Listener>,
    /// Asks for the data directory's sizes to be measured again.
    measure: Arc<tokio::sync::Notify>,
    /// Deletes the registry manifests of pruned images.
    registry: registry::Registry,
    /// `SLIPWAY_SWEEP_INTERVAL`.
    sweep_every: Duration,
    /// `SLIPWAY_HEALTH_INTERVAL`: how often deployed versions are probed.
    health_every: Duration,
}

impl Runner {
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        // Its own labels and its host's, which pins the tasks of routed
        // environments served here.
        let labels = settings
            .labels()
            .map_err(Error::Settings)?
            .with_host(&settings.host());
        let client = RunnerClient::new(
            &settings.orchestrator_url,
            settings.orchestrator_ca(),
            settings.token(),
        )
        .map_err(Error::Settings)?;
        // A TLS handshake that fails (an untrusted certificate) is a
        // setting to fix, not an orchestrator to wait for.
        proto::check_orchestrator_tls(&settings.orchestrator_url, settings.orchestrator_ca())
            .await
            .map_err(Error::Settings)?;
        // Fail at start when the orchestrator refuses the token; an
        // orchestrator that is not up yet is fine, runners wait for it.
        let probe = Lease {
            task_id: 0,
            token: String::new(),
        };
        if let Err(e) = client.clone().heartbeat(&probe).await
            && e.0.code == ErrorCode::Unauthenticated
        {
            return Err(token_refused(&e));
        }
        // Fail at start, in one line, when the broker is not there.
        let probe = queue::connect(&settings.amqp_url, settings.amqp_ca()).await?;
        let _ = probe.close(200, "probe".into()).await;
        let cache_max_bytes = settings.cache_max_bytes().map_err(Error::Settings)?;
        let metrics = Arc::new(metrics::Metrics::new(settings.concurrency())?);
        let workspaces = settings.data_dir.join("workspaces");
        let mirrors = settings.data_dir.join("mirrors");
        let locks = settings.data_dir.join("locks");
        for dir in [&workspaces, &mirrors, &locks] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| Error::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        let caches_dir = settings.data_dir.join("caches");
        let caches = {
            let (dir, counters) = (caches_dir.clone(), metrics.caches());
            tokio::task::spawn_blocking(move || cache::Caches::open(dir, cache_max_bytes, counters))
                .await
                .map_err(std::io::Error::other)
                .and_then(|opened| opened)
                .map_err(|source| Error::DataDir {
                    path: caches_dir.display().to_string(),
                    source,
                })?
        };
        let runner_id = if settings.runner_id.is_empty() {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{}-{}", settings.host(), &suffix[..8])
        } else {
            settings.runner_id.clone()
        };
        let host = (!settings.docker_host.is_empty()).then_some(settings.docker_host.as_str());
        let docker = match docker::Docker::connect(host) {
            Ok(docker) => Some(docker),
            Err(e) => {
                tracing::warn!(error = %e, "no Docker Engine: container steps and images will fail");
                None
            }
        };
        let context = Arc::new(Context {
            client,
            workspaces,
            mirrors: git::Mirrors::new(mirrors),
            caches,
            heartbeat: Duration::from_millis(settings.heartbeat_ms),
            grace: Duration::from_millis(settings.kill_grace_ms),
            docker,
            registry: settings.registry.clone(),
            keep_images: settings.keep_images,
            keep_containers: settings.keep_containers,
            proxy: route::Proxy::new(
                settings.proxy_admin().map_err(Error::Settings)?,
                route::Ports {
                    http: settings.proxy_http_port,
                    https: settings.proxy_https_port,
                },
            ),
            host: settings.host(),
            log_line_max: settings.log_line_max().map_err(Error::Settings)?,
            locks,
        });
        let listener = match settings.metrics_addr().map_err(Error::Settings)? {
            Some(addr) => Some(telemetry::metrics::Listener::bind(addr).await?),
            None => None,
        };
        let sweep_every = settings.sweep_every().map_err(Error::Settings)?;
        let health_every = settings.health_every().map_err(Error::Settings)?;
        Ok(Self {
            settings,
            runner_id,
            labels,
            context,
            metrics,
            listener,
            measure: Arc::new(tokio::sync::Notify::new()),
            registry: registry::Registry::new().map_err(Error::Settings)?,
            sweep_every,
            health_every,
        })
    }

    pub fn id(&self) -> &str {
        &self.runner_id
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Takes and runs tasks until `shutdown` resolves; then stops the running
    /// steps and returns (their leases lapse and the tasks are re-queued).
    /// Fails when the orchestrator refuses the runner's token.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let (metrics_stop, mut metrics_stopped) = watch::channel(false);
        let served = self.listener.take().map(|listener| {
            let metrics = self.metrics.clone();
            let render = move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            };
            tokio::spawn(listener.serve(render, async move {
                let _ = metrics_stopped.wait_for(|s| *s).await;
            }))
        });
        let outcome = self.work(shutdown).await;
        let _ = metrics_stop.send(true);
        if let Some(served) = served {
            let _ = served.await;
        }
        outcome
    }

    async fn work(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let concurrency = self.settings.concurrency();
        let slots = Arc::new(Semaphore::new(concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut running = JoinSet::new();
        let topology = Topology::new(self.settings.queue_prefix.clone())
            .expiring(self.settings.queue_expires_ms);
        // The queue of every label set this runner can serve.
        let queues: Vec<String> = self
            .labels
            .subsets()
            .iter()
            .map(|s| topology.tasks_queue_for(&s.key()))
            .collect();
        tracing::info!(runner = %self.runner_id, concurrency, labels = %self.labels, "runner started");
        let announcer = tokio::spawn(announce(
            self.context.client.clone(),
            self.runner_id.clone(),
            self.metrics.clone(),
            concurrency,
            stop_rx.clone(),
        ));
        let keeper = {
            let context = self.context.clone();
            let every = Duration::from_millis(self.settings.proxy_check_ms);
            let stop = stop_rx.clone();
            tokio::spawn(async move { deploy::keep_routes(&context, every, stop).await })
        };
        let prober = {
            let context = self.context.clone();
            let every = self.health_every;
            let stop = stop_rx.clone();
            tokio::spawn(async move { deploy::keep_probing(&context, every, stop).await })
        };
        let measurer = tokio::spawn(usage::keep_measuring(
            self.settings.data_dir.clone(),
            self.metrics.clone(),
            self.measure.clone(),
            stop_rx.clone(),
        ));
        let sweeper = {
            let sweeper = sweep::Sweeper {
                client: self.context.client.clone(),
                workspaces: self.context.workspaces.clone(),
                registry: self.registry.clone(),
                runner_id: self.runner_id.clone(),
                metrics: self.metrics.clone(),
            };
            tokio::spawn(sweeper.run(self.sweep_every, stop_rx.clone()))
        };
        let (refused_tx, mut refused_rx) = mpsc::unbounded_channel();
        let claimer = Claimer {
            context: self.context.clone(),
            metrics: self.metrics.clone(),
            measure: self.measure.clone(),
            runner_id: self.runner_id.clone(),
            labels: self.labels.clone(),
            stop: stop_rx.clone(),
            refused: refused_tx,
        };
        tokio::pin!(shutdown);
        let mut delays = queue::RECONNECT.build();
        let mut outcome = Ok(());
        'connect: loop {
            let opened = async {
                let conn = queue::connect(&self.settings.amqp_url, self.settings.amqp_ca()).await?;
                let channel = queue::consumer_channel(&conn, &topology, &queues, 1).await?;
                Ok::<_, queue::Error>((conn, channel))
            };
            let (conn, channel) = tokio::select! {
                () = &mut shutdown => break 'connect,
                c = opened => match c {
                    Ok(c) => c,
                    Err(e) => {
                        // The policy has no end.
                        let backoff = delays.next().unwrap_or_default();
                        tracing::warn!(error = %e, retry_in = ?backoff, "broker unreachable");
                        tokio::select! {
                            () = &mut shutdown => break 'connect,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        continue 'connect;
                    }
                },
            };
            delays = queue::RECONNECT.build();
            let mut consumer: Option<Consumers> = None;
            loop {
                // Reap finished tasks so the set does not grow.
                while running.try_join_next().is_some() {}
                // Not consuming since a message went back while every slot
                // was busy: again once one is free.
                if consumer.is_none() {
                    tokio::select! {
                        h = halted(shutdown.as_mut(), &mut refused_rx) => {
                            halt(&conn, h, &mut outcome).await;
                            break 'connect;
                        }
                        free = slots.acquire() => if free.is_err() {
                            break 'connect;
                        },
                    }
                }
                let mut active = match consumer.take() {
                    Some(c) => c,
                    None => match consume(&channel, &queues, &self.runner_id).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot consume");
                            continue 'connect;
                        }
                    },
                };
                let delivery = tokio::select! {
                    h = halted(shutdown.as_mut(), &mut refused_rx) => {
                        halt(&conn, h, &mut outcome).await;
                        break 'connect;
                    }
                    d = active.stream.next() => d,
                };
                consumer = Some(active);
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "lost the broker");
                        continue 'connect;
                    }
                    None => {
                        tracing::warn!("the broker cancelled the consumer");
                        continue 'connect;
                    }
                };
                // A free slot, or one that frees within HOLD: a busy runner
                // hands the next task over as soon as one of its tasks
                // ends, without asking the broker again.
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => tokio::select! {
                        h = halted(shutdown.as_mut(), &mut refused_rx) => {
                            halt(&conn, h, &mut outcome).await;
                            break 'connect;
                        }
                        p = tokio::time::timeout(HOLD, slots.clone().acquire_owned()) => match p {
                            Ok(Ok(p)) => Some(p),
                            Ok(Err(_)) => break 'connect,
                            Err(_) => None,
                        },
                    },
                };
                match permit {
                    // Claimed on the side: the next delivery need not wait
                    // for this claim's answer.
                    Some(permit) => {
                        running.spawn(claimer.clone().take(delivery, permit));
                    }
                    // Every slot still busy: the message goes back to the
                    // queue for a free runner (the broker closes a channel
                    // whose delivery stays unacknowledged past its
                    // consumer_timeout), and this one stops consuming.
                    None => {
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await;
                        if let Some(c) = consumer.take() {
                            pause(&channel, c).await;
                        }
                    }
                }
            }
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), announcer).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), keeper).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), prober).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), measurer).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), sweeper).await;
        let grace = Duration::from_millis(self.settings.kill_grace_ms) + Duration::from_secs(2);
        let _ = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        tracing::info!("runner stopped");
        outcome
    }
}

/// How long a message waits in a runner whose slots are all busy for one
/// of them to free before it goes back to the queue for another runner.
const HOLD: Duration = Duration::from_millis(250);

/// Why the runner stops taking tasks.
enum Halt {
    Shutdown,
    /// The orchestrator refused the runner's token.
    Refused(Error),
}

/// Resolves when the runner must stop taking tasks.
async fn halted(
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    refused: &mut mpsc::UnboundedReceiver<Error>,
) -> Halt {
    tokio::select! {
        () = shutdown => Halt::Shutdown,
        Some(e) = refused.recv() => Halt::Refused(e),
    }
}

/// Closes the broker connection for `why`, keeping a refusal as the
/// runner's outcome.
async fn halt(conn: &queue::lapin::Connection, why: Halt, outcome: &mut Result<(), Error>) {
    let reason = match why {
        Halt::Shutdown => "shutting down",
        Halt::Refused(e) => {
            *outcome = Err(e);
            "refused"
        }
    };
    let _ = conn.close(200, reason.into()).await;
}

/// What claiming a delivery's task needs, shared by the claims in flight.
#[derive(Clone)]
struct Claimer {
    context: Arc<Context>,
    metrics: Arc<metrics::Metrics>,
    /// Asks for the data directory's sizes to be measured again.
    measure: Arc<tokio::sync::Notify>,
    runner_id: String,
    labels: Labels,
    /// The runner stops.
    stop: watch::Receiver<bool>,
    /// Where a refused token goes, which stops the runner.
    refused: mpsc::UnboundedSender<Error>,
}

impl Claimer {
    /// Claims the task of one delivery and runs it, holding the slot
    /// `permit`; acknowledges or hands the message back as the claim's
    /// answer says. The claim and the run happen in one span, a child of
    /// the trace context the message carries.
    async fn take(
        self,
        delivery: queue::lapin::message::Delivery,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let Ok(message) = TaskMessage::decode(&delivery.data) else {
            tracing::warn!("dropping a malformed task message");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        };
        let requeue = || async {
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        };
        let span = tracing::info_span!(
            "run task",
            otel.kind = "consumer",
            task_id = message.task_id,
            runner = %self.runner_id,
        );
        telemetry::propagation::set_parent(&span, &queue::headers(&delivery.properties));
        let mut client = self.context.client.clone();
        let claimed = client
            .claim(message.task_id, &self.runner_id, &self.labels)
            .instrument(span.clone())
            .await;
        match claimed {
            Ok(claim) => {
                self.metrics.claim(metrics::Claim::Claimed);
                let _ = delivery.ack(BasicAckOptions::default()).await;
                let counted = self.metrics.running();
                let finished = executor::execute(self.context.clone(), claim, self.stop.clone())
                    .instrument(span.clone())
                    .await;
                drop(counted);
                drop(permit);
                finished.clean_up().instrument(span).await;
                self.measure.notify_one();
            }
            // Already claimed, finished, cancelled or deleted: the message is moot.
            Err(e) if matches!(e.0.code, ErrorCode::Conflict | ErrorCode::NotFound) => {
                tracing::info!(task_id = message.task_id, reason = %e, "task not claimable; dropping the message");
                self.metrics.claim(metrics::Claim::Moot);
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(e) if e.0.code == ErrorCode::Unauthenticated => {
                requeue().await;
                let _ = self.refused.send(token_refused(&e));
            }
            Err(e) => {
                tracing::warn!(task_id = message.task_id, error = %e, "cannot claim; the task goes back to the queue");
                self.metrics.claim(metrics::Claim::Error);
                requeue().await;
                // The slot stays taken a while, so that an unreachable
                // orchestrator is not hammered.
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(permit);
            }
        }
    }
}

/// The orchestrator refused the runner's token: say which setting to fix.
fn token_refused(e: &client::CallError) -> Error {
    Error::Settings(format!(
        "the orchestrator refuses this runner's token ({e}): set SLIPWAY_RUNNER_TOKEN to the orchestrator's SLIPWAY_RUNNER_TOKEN, or to its SLIPWAY_API_TOKEN when it has none"
    ))
}

/// How often the runner tells the orchestrator it is alive, busy or not
/// (what `slipway_runners_online` counts).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Announces the runner until `stop`, then says it leaves.
async fn announce(
    mut client: RunnerClient,
    runner_id: String,
    metrics: Arc<metrics::Metrics>,
    total: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Not the free permits: one is held while waiting for a delivery.
        let busy = metrics.running_now();
        if let Err(e) = client.announce(&runner_id, total, busy, false).await {
            tracing::debug!(error = %e, "cannot announce the runner");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            () = tokio::time::sleep(ANNOUNCE_EVERY) => {}
        }
    }
    let _ = client.announce(&runner_id, total, 0, true).await;
}

/// The consumers of one channel, one per queue, read as one stream.
struct Consumers {
    tags: Vec<String>,
    stream: futures_util::stream::SelectAll<queue::lapin::Consumer>,
}

/// Starts consuming each of `queues` (the channel's prefetch of 1 is shared
/// by them all).
async fn consume(
    channel: &queue::lapin::Channel,
    queues: &[String],
    runner_id: &str,
) -> Result<Consumers, queue::Error> {
    let mut consumers = Consumers {
        tags: Vec::with_capacity(queues.len()),
        stream: futures_util::stream::SelectAll::new(),
    };
    for (i, queue) in queues.iter().enumerate() {
        let tag = format!("{runner_id}.{i}");
        consumers
            .stream
            .push(queue::start_consuming(channel, queue, &tag).await?);
        consumers.tags.push(tag);
    }
    Ok(consumers)
}

/// Stops consuming while every slot is busy, handing back to the queue any
/// message the broker sent before the cancel reached it.
async fn pause(channel: &queue::lapin::Channel, mut consumers: Consumers) {
    for tag in &consumers.tags {
        if let Err(e) = queue::stop_consuming(channel, tag).await {
            tracing::warn!(error = %e, "cannot pause consuming");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(delivery)) = consumers.stream.next().await {
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        }
    })
    .await;
}

/// `slipway-runner healthcheck`: a runner serves nothing but `/metrics`, so
/// with `SLIPWAY_METRICS_ADDR` set it is healthy when `GET /metrics`
/// answers; without it, when the broker it takes tasks from
/// (`SLIPWAY_AMQP_URL`) accepts a connection.
pub async fn healthcheck(settings: &Settings) -> Result<(), telemetry::health::HealthError> {
    use telemetry::health::{self, HealthError};
    match settings.metrics_addr().map_err(HealthError::Unhealthy)? {
        Some(addr) if addr.port() != 0 => health::http_get(health::local(addr), "/metrics").await,
        _ => health::connect(&health::url_target(&settings.amqp_url)?).await,
    }
}
