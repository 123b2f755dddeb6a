//! Routed environments (edge.md): the candidate starts beside the version
//! that serves, on an ephemeral loopback port; it is probed directly; the
//! proxy then sends the traffic to it, falling back to the old version; both
//! are watched; the old version is retired after `drain`, or the traffic
//! goes back to it. At no point does the route lose its running version.
//! [`keep_routes`] re-applies the recorded routes of this host when the
//! runner starts and when the proxy comes back without them.

use std::time::{Duration, Instant};

use domain::workflow::{
    ComposeTarget, ContainerTarget, DeploySpec, HealthCheck, Route, RouteTls, Target,
    format_duration,
};
use tokio::sync::watch;

use super::health::{probe, running};
use super::{After, Deploys, Failure};
use crate::client::Version;
use crate::context::Context;
use crate::docker::{ContainerState, Docker};
use crate::route::Served;

/// How long a stopped version gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A routed environment without a health check: its candidate must answer
/// HTTP at `/` (any status below 500) within this.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A running version the proxy can reach.
#[derive(Debug, Clone)]
struct Upstream {
    deployment: i64,
    /// `127.0.0.1:<host port>`.
    addr: String,
}

/// The name of an environment's routes in the proxy.
pub fn route_key(workflow: &str, environment: &str) -> String {
    format!("{workflow}/{environment}")
}

/// What the proxy serves for `route` with these upstreams.
fn served(key: &str, route: &Route, upstreams: Vec<String>) -> Served {
    Served {
        key: key.to_owned(),
        domains: route.domains.clone(),
        tls: route.tls,
        listen: route.listen,
        upstreams,
    }
}

/// Where a container's `port` is published on the loopback.
pub(super) fn address(state: &ContainerState, port: u16) -> Option<String> {
    state
        .published
        .get(&format!("{port}/tcp"))
        .map(|p| format!("127.0.0.1:{p}"))
}

/// What the probes expect: the health check's status, or (without one) any
/// HTTP answer below 500 at `/`.
struct Expect {
    path: String,
    status: Option<u16>,
    interval: Duration,
    timeout: Duration,
    watch: Duration,
}

impl Expect {
    fn of(health: Option<&HealthCheck>) -> Self {
        match health {
            Some(h) => Expect {
                path: h.path.clone(),
                status: Some(h.expect_status),
                interval: h.interval,
                timeout: h.timeout,
                watch: h.watch,
            },
            None => Expect {
                path: "/".to_owned(),
                status: None,
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_READY_TIMEOUT,
                watch: Duration::ZERO,
            },
        }
    }

    fn accepts(&self, status: u16) -> bool {
        match self.status {
            Some(want) => status == want,
            None => status < 500,
        }
    }

    fn describe(&self) -> String {
        self.status
            .map_or_else(|| "an answer".to_owned(), |s| s.to_string())
    }
}

/// What a routed environment runs: a container, or a compose service whose
/// candidate is a second replica.
#[derive(Clone, Copy)]
pub(super) enum Side<'a> {
    Container(&'a ContainerTarget),
    Compose(&'a ComposeTarget),
}

impl Deploys<'_> {
    /// A deploy of a routed environment, either driver.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn routed_deploy(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        side: Side<'_>,
        route: &Route,
        id: i64,
        image: &str,
        previous: Option<&Version>,
        position: i32,
    ) -> Result<(), Failure> {
        let env = spec.environment.as_str();
        let key = route_key(self.workflow, env);
        let proxy = &self.ctx.proxy;
        // The running version is where the proxy serving it is.
        if let Some(host) = previous.and_then(|v| v.host.as_deref())
            && host != self.ctx.host
        {
            return Err(Failure::deploy(format!(
                "{env} is served from host {host}, and this runner is on {}: deploys of a routed environment run on runners of its host (when a workflow's routed environments are on several hosts, give its runs_on a label only that host's runners have)",
                self.ctx.host
            ))
            .kept());
        }
        proxy
            .check()
            .await
            .map_err(|e| Failure::deploy(e.to_string()).kept())?;
        let old = match previous {
            Some(v) => self.upstream_of(docker, env, v.id, route.port).await,
            None => None,
        };
        // 1. The candidate, beside the running version.
        let (name, addr) = match side {
            Side::Container(target) => {
                self.container_candidate(docker, spec, target, route, &key, id, image)
                    .await?
            }
            Side::Compose(target) => {
                self.compose_candidate(docker, spec, target, route, id, image, position)
                    .await?
            }
        };
        self.sink
            .line(position, &format!("started the candidate {name} at {addr}"));
        if !self.advance(id, "verify", None, None).await {
            let _ = docker.remove_container(&name).await;
            return Err(Failure::deploy("the deploy's lease was lost".to_owned()).kept());
        }
        // 2. Probed directly; the route is not touched until it is healthy.
        let expect = Expect::of(spec.health.as_ref());
        if let Err(failure) = self
            .until_healthy(docker, &name, &addr, &expect, position)
            .await
        {
            let _ = docker.remove_container(&name).await;
            self.sink.line(
                position,
                "the candidate was removed; the running version kept serving",
            );
            return Err(failure.kept());
        }
        // 3. The switch: new requests go to the candidate, the old version
        // answers those it cannot.
        let mut upstreams = vec![addr.clone()];
        upstreams.extend(old.iter().map(|o| o.addr.clone()));
        if let Err(e) = proxy.serve(&served(&key, route, upstreams)).await {
            let _ = docker.remove_container(&name).await;
            return Err(Failure::deploy(format!("cannot switch the route: {e}")).kept());
        }
        let _ = self
            .ctx
            .client
            .clone()
            .record_traffic(self.lease, id, Some(id), Vec::new())
            .await;
        self.sink
            .line(position, &format!("switched the route to deployment {id}"));
        // 4. The watch: the candidate directly, and the route through the proxy.
        if let Err(failure) = self
            .watch_routed(docker, &name, &addr, route, &expect, position)
            .await
        {
            let to = old.as_ref().map(|o| o.deployment);
            let result = match &old {
                Some(o) => proxy
                    .serve(&served(&key, route, vec![o.addr.clone()]))
                    .await
                    .map_err(|e| format!("cannot switch the route back: {e}")),
                None => proxy
                    .withdraw(&key)
                    .await
                    .map_err(|e| format!("cannot withdraw the route: {e}")),
            };
            if result.is_ok() {
                // Back to the old version, or (none running) nothing serves.
                let retired = if to.is_some() { Vec::new() } else { vec![id] };
                let _ = self
                    .ctx
                    .client
                    .clone()
                    .record_traffic(self.lease, id, to, retired)
                    .await;
                self.sink.line(
                    position,
                    &to.map_or_else(
                        || "the route was withdrawn: no earlier version runs".to_owned(),
                        |to| format!("switched the route back to deployment {to}"),
                    ),
                );
            }
            let _ = docker.remove_container(&name).await;
            return Err(Failure {
                after: After::SwitchedBack { to, result },
                ..failure
            });
        }
        // 5. The old version leaves: no new requests, then `drain` for those
        // in flight, then it stops (kept stopped for a quick start again).
        proxy
            .serve(&served(&key, route, vec![addr]))
            .await
            .map_err(|e| Failure::deploy(format!("cannot retire the old version: {e}")).kept())?;
        self.retire(docker, env, id, old.as_ref(), route, side, position)
            .await;
        Ok(())
    }

    /// Starts the candidate container `<name>-<id>`, its port published on an
    /// ephemeral loopback port; returns its name and address.
    #[allow(clippy::too_many_arguments)]
    async fn container_candidate(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        target: &ContainerTarget,
        route: &Route,
        key: &str,
        id: i64,
        image: &str,
    ) -> Result<(String, String), Failure> {
        let name = candidate_name(&target.name, id);
        let _ = docker.remove_container(&name).await;
        let mut service = self.service(spec, target, id, image)?;
        service.name.clone_from(&name);
        service.ports = vec![format!("127.0.0.1::{}", route.port)];
        service
            .labels
            .push(("slipway.route".to_owned(), key.to_owned()));
        docker
            .start_service(&service)
            .await
            .map_err(|e| Failure::deploy(format!("container would not start: {e}")).kept())?;
        published(docker, &name, route.port).await
    }

    /// Stops the versions of the environment other than `id` that still run
    /// (the old one after `drain`), records them retired, and removes the
    /// stopped ones beyond `SLIPWAY_KEEP_CONTAINERS`.
    #[allow(clippy::too_many_arguments)]
    async fn retire(
        &self,
        docker: &Docker,
        env: &str,
        id: i64,
        old: Option<&Upstream>,
        route: &Route,
        side: Side<'_>,
        position: i32,
    ) {
        let labels = [
            ("slipway.workflow", self.workflow),
            ("slipway.environment", env),
        ];
        let Ok(all) = docker.list_containers(&labels).await else {
            return;
        };
        let running: Vec<&ContainerState> = all
            .iter()
            .filter(|c| c.running && deployment_of(c) != Some(id))
            .collect();
        if !running.is_empty() && !route.drain.is_zero() {
            self.sink.line(
                position,
                &format!(
                    "the old version drains for {}",
                    format_duration(route.drain)
                ),
            );
            tokio::time::sleep(route.drain).await;
        }
        let mut retired = Vec::new();
        for c in running {
            if docker.stop_container(&c.name, STOP_GRACE).await.is_ok() {
                self.sink
                    .line(position, &format!("stopped the old version {}", c.name));
                retired.extend(deployment_of(c));
                // A compose service is back to one replica; a container is
                // kept stopped for a quick start again.
                if matches!(side, Side::Compose(_)) {
                    let _ = docker.remove_container(&c.name).await;
                }
            }
        }
        if old.is_some() || !retired.is_empty() {
            let _ = self
                .ctx
                .client
                .clone()
                .record_traffic(self.lease, id, None, retired)
                .await;
        }
        // The newest stopped versions stay, for a quick start again.
        let mut stopped: Vec<(i64, &str)> = all
            .iter()
            .filter(|c| deployment_of(c) != Some(id))
            .filter_map(|c| Some((deployment_of(c)?, c.name.as_str())))
            .collect();
        stopped.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
        for (_, name) in stopped.into_iter().skip(self.ctx.keep_containers.max(1)) {
            let _ = docker.remove_container(name).await;
        }
    }

    /// The running container of deployment `deployment` and where it is
    /// reached.
    async fn upstream_of(
        &self,
        docker: &Docker,
        env: &str,
        deployment: i64,
        port: u16,
    ) -> Option<Upstream> {
        let id = deployment.to_string();
        let labels = [
            ("slipway.workflow", self.workflow),
            ("slipway.environment", env),
            ("slipway.deployment", id.as_str()),
        ];
        let all = docker.list_containers(&labels).await.ok()?;
        all.iter().filter(|c| c.running).find_map(|c| {
            Some(Upstream {
                deployment,
                addr: address(c, port)?,
            })
        })
    }

    /// Probes the candidate at `addr` until it answers as expected, or fails
    /// when its container stops or the health timeout passes.
    async fn until_healthy(
        &self,
        docker: &Docker,
        name: &str,
        addr: &str,
        expect: &Expect,
        position: i32,
    ) -> Result<(), Failure> {
        let client = probe_client(expect.interval)?;
        let url = format!("http://{addr}{}", expect.path);
        let started = Instant::now();
        loop {
            running(docker, name).await?;
            let last = match probe(&client, &url).await {
                Ok(status) if expect.accepts(status) => break,
                Ok(status) => status.to_string(),
                Err(e) => e,
            };
            if started.elapsed() >= expect.timeout {
                return Err(Failure::health(format!(
                    "health check failed: {last} after {}",
                    format_duration(expect.timeout)
                )));
            }
            tokio::time::sleep(expect.interval).await;
        }
        self.sink.line(
            position,
            &format!(
                "healthy: the candidate answered {} at {}",
                expect.describe(),
                expect.path
            ),
        );
        Ok(())
    }

    /// For `watch`: the candidate still runs and answers directly, and the
    /// route answers through the proxy (on its `listen` port, or its first
    /// plain-HTTP domain).
    async fn watch_routed(
        &self,
        docker: &Docker,
        name: &str,
        addr: &str,
        route: &Route,
        expect: &Expect,
        position: i32,
    ) -> Result<(), Failure> {
        if expect.watch.is_zero() {
            return Ok(());
        }
        self.sink.line(
            position,
            &format!("watching for {}", format_duration(expect.watch)),
        );
        let client = probe_client(expect.interval)?;
        let direct = format!("http://{addr}{}", expect.path);
        let through = self.through_proxy(route, &expect.path);
        let watched = Instant::now();
        while watched.elapsed() < expect.watch {
            tokio::time::sleep(expect.interval.min(expect.watch)).await;
            running(docker, name).await?;
            for (url, host, what) in [
                (Some(direct.clone()), None, "the candidate"),
                (
                    through.as_ref().map(|(u, _)| u.clone()),
                    through.as_ref().and_then(|(_, h)| h.clone()),
                    "the route",
                ),
            ] {
                let Some(url) = url else { continue };
                let mut request = client.get(&url);
                if let Some(host) = host {
                    request = request.header(reqwest::header::HOST, host);
                }
                let answer = request.send().await.map(|r| r.status().as_u16());
                match answer {
                    Ok(status) if expect.accepts(status) => {}
                    Ok(status) => {
                        return Err(Failure::health(format!(
                            "health check of {what} failed during watch: {status}"
                        )));
                    }
                    Err(e) => {
                        let why = if e.is_timeout() {
                            "timeout"
                        } else {
                            "connection refused or reset"
                        };
                        return Err(Failure::health(format!(
                            "health check of {what} failed during watch: {why}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the route is probed through the proxy, with the `Host` to send.
    fn through_proxy(&self, route: &Route, path: &str) -> Option<(String, Option<String>)> {
        if let Some(port) = route.listen {
            return Some((format!("http://127.0.0.1:{port}{path}"), None));
        }
        if route.tls == RouteTls::Off {
            let domain = route.domains.iter().find(|d| !d.starts_with("*."))?;
            let port = self.ctx.proxy.ports().http;
            return Some((
                format!("http://127.0.0.1:{port}{path}"),
                Some(domain.clone()),
            ));
        }
        // HTTPS domains are watched on the candidate directly: a
        // certificate still being issued is not the app's failure.
        None
    }

    /// After a deploy ran past its budget: the candidate goes, and the route
    /// serves the version that ran before.
    pub(super) async fn routed_abandon(
        &self,
        docker: &Docker,
        spec: &DeploySpec,
        route: &Route,
        id: i64,
        previous: Option<&Version>,
    ) {
        let env = spec.environment.as_str();
        let key = route_key(self.workflow, env);
        let old = match previous {
            Some(v) => self.upstream_of(docker, env, v.id, route.port).await,
            None => None,
        };
        if let Some(old) = &old
            && self
                .ctx
                .proxy
                .serve(&served(&key, route, vec![old.addr.clone()]))
                .await
                .is_ok()
        {
            let _ = self
                .ctx
                .client
                .clone()
                .record_traffic(self.lease, id, Some(old.deployment), Vec::new())
                .await;
        }
        // The candidate, whichever driver made it, carries the deployment.
        let id = id.to_string();
        let labels = [
            ("slipway.workflow", self.workflow),
            ("slipway.environment", env),
            ("slipway.deployment", id.as_str()),
        ];
        for c in docker.list_containers(&labels).await.unwrap_or_default() {
            let _ = docker.remove_container(&c.name).await;
        }
    }
}

/// The name and loopback address of the just started container `name`.
pub(super) async fn published(
    docker: &Docker,
    name: &str,
    port: u16,
) -> Result<(String, String), Failure> {
    let addr = match docker.container_state(name).await {
        Ok(Some(state)) => address(&state, port),
        _ => None,
    };
    match addr {
        Some(addr) => Ok((name.to_owned(), addr)),
        None => {
            let _ = docker.remove_container(name).await;
            Err(Failure::deploy(format!("the candidate's port {port} was not published")).kept())
        }
    }
}

fn candidate_name(name: &str, id: i64) -> String {
    format!("{name}-{id}")
}

fn deployment_of(c: &ContainerState) -> Option<i64> {
    c.labels.get("slipway.deployment")?.parse().ok()
}

fn probe_client(interval: Duration) -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .timeout(interval.max(Duration::from_secs(1)))
        .build()
        .map_err(|e| Failure::deploy(format!("cannot probe health: {e}")))
}

/// Re-applies the recorded routes of this host when the runner starts, and
/// again whenever the proxy has lost routes it had (it restarted without
/// its configuration), checking every `every` until `stop`.
pub async fn keep_routes(ctx: &Context, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut restored = false;
    let mut said_unreachable = false;
    loop {
        let lost = if restored {
            ctx.proxy.lost_routes().await
        } else {
            Ok(true)
        };
        match lost {
            Ok(true) => match restore(ctx).await {
                Ok(count) => {
                    if count > 0 || !restored {
                        tracing::info!(routes = count, "edge proxy routes restored");
                    }
                    restored = true;
                    said_unreachable = false;
                }
                Err(e) => {
                    if !said_unreachable {
                        tracing::warn!(error = %e, "cannot restore the edge proxy's routes yet");
                        said_unreachable = true;
                    }
                }
            },
            Ok(false) => {}
            Err(e) => {
                if !said_unreachable {
                    tracing::warn!(error = %e, "the edge proxy does not answer");
                    said_unreachable = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Puts every recorded route of this host in the proxy, to the container of
/// its serving deployment; returns how many.
async fn restore(ctx: &Context) -> Result<usize, String> {
    let Some(docker) = &ctx.docker else {
        return Ok(0);
    };
    let records = ctx
        .client
        .clone()
        .list_routes(&ctx.host)
        .await
        .map_err(|e| format!("cannot list the routes of this host: {e}"))?;
    let mut routes = Vec::new();
    for record in records {
        let Ok(workflow) = domain::workflow::parse_stored(&record.definition) else {
            continue;
        };
        let Some(spec) = workflow
            .deploy
            .iter()
            .find(|d| d.environment.as_str() == record.environment)
        else {
            continue;
        };
        let Some(route) = &spec.route else { continue };
        let id = record.deployment_id.to_string();
        let labels = [
            ("slipway.workflow", record.workflow.as_str()),
            ("slipway.environment", record.environment.as_str()),
            ("slipway.deployment", id.as_str()),
        ];
        let containers = docker
            .list_containers(&labels)
            .await
            .map_err(|e| e.to_string())?;
        let addrs: Vec<String> = containers
            .iter()
            .filter(|c| c.running)
            .filter_map(|c| address(c, route.port))
            .collect();
        if addrs.is_empty() {
            tracing::warn!(
                workflow = %record.workflow,
                environment = %record.environment,
                deployment = record.deployment_id,
                "the serving version of a routed environment does not run here; its route is left out"
            );
            continue;
        }
        let key = route_key(&record.workflow, &record.environment);
        routes.push(served(&key, route, addrs));
    }
    ctx.proxy
        .serve_all(&routes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(routes.len())
}

/// The routed part of a target, when the environment has a route.
pub(super) fn routed(spec: &DeploySpec) -> Option<(Side<'_>, &Route)> {
    let route = spec.route.as_ref()?;
    Some(match &spec.target {
        Target::Container(t) => (Side::Container(t), route),
        Target::Compose(t) => (Side::Compose(t), route),
    })
}
