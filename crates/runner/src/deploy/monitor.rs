//! After a deploy: the runners of a host take turns probing the current
//! deployment of each environment served here, every
//! `SLIPWAY_HEALTH_INTERVAL`, and report each result; the orchestrator
//! decides when an environment is down (alerts.md `health_down`).
//!
//! An environment behind the edge proxy is probed on its serving
//! container's loopback port, any other on its health check's URL.

use std::time::Duration;

use domain::workflow::{DeploySpec, parse_stored};
use tokio::sync::watch;

use super::health::probe;
use super::routed::address;
use crate::client::HealthCheck;
use crate::context::Context;

/// Checks taken per claim.
const BATCH: i32 = 20;
/// How often a runner asks for due checks, at most.
const MAX_TICK: Duration = Duration::from_secs(5);

/// Probes what is due on this host until `stop`.
pub async fn keep_probing(ctx: &Context, every: Duration, mut stop: watch::Receiver<bool>) {
    let tick = every.min(MAX_TICK);
    let client = match reqwest::Client::builder()
        .timeout(every.clamp(Duration::from_secs(1), Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot probe deployed versions");
            return;
        }
    };
    let mut said_unreachable = false;
    loop {
        match ctx
            .client
            .clone()
            .claim_health_checks(&ctx.host, every, BATCH)
            .await
        {
            Ok(checks) => {
                said_unreachable = false;
                for check in checks {
                    let (healthy, error) = match target(ctx, &check).await {
                        Some((url, want)) => match probe(&client, &url).await {
                            Ok(status) if status == want => (true, None),
                            Ok(status) => (false, Some(format!("{url} answered {status}"))),
                            Err(e) => (false, Some(format!("{url}: {e}"))),
                        },
                        None => (false, Some("its container does not run".to_owned())),
                    };
                    let reported = ctx
                        .client
                        .clone()
                        .report_health(&check, healthy, error.as_deref())
                        .await;
                    if let Err(e) = reported {
                        tracing::debug!(error = %e, "cannot report a health probe now");
                    }
                }
            }
            Err(e) => {
                if !said_unreachable {
                    tracing::warn!(error = %e, "cannot take health checks now");
                    said_unreachable = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Where the check probes and the status that passes; `None` when its
/// version does not run here.
async fn target(ctx: &Context, check: &HealthCheck) -> Option<(String, u16)> {
    let workflow = parse_stored(&check.definition).ok()?;
    let spec: &DeploySpec = workflow
        .deploy
        .iter()
        .find(|d| d.environment.as_str() == check.environment)?;
    let health = spec.health.clone()?;
    let want = health.expect_status;
    let Some(route) = &spec.route else {
        return health.url.map(|url| (url, want));
    };
    let docker = ctx.docker.as_ref()?;
    let id = check.deployment_id.to_string();
    let labels = [
        ("slipway.workflow", check.workflow.as_str()),
        ("slipway.environment", check.environment.as_str()),
        ("slipway.deployment", id.as_str()),
    ];
    let containers = docker.list_containers(&labels).await.ok()?;
    let addr = containers
        .iter()
        .filter(|c| c.running)
        .find_map(|c| address(c, route.port))?;
    Some((format!("http://{addr}{}", health.path), want))
}
