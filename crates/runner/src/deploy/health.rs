//! Health of a deployed version: HTTP probes until healthy, then a watch,
//! and for a container, that it keeps running.

use std::time::{Duration, Instant};

use domain::workflow::{HealthCheck, format_duration};

use super::{Deploys, Failure};
use crate::docker::Docker;

impl Deploys<'_> {
    /// Probes until healthy or `timeout`, then keeps probing for `watch`.
    /// A container that stops running fails at once.
    pub(super) async fn verify(
        &self,
        docker: &Docker,
        name: Option<&str>,
        health: Option<&HealthCheck>,
        position: i32,
    ) -> Result<(), Failure> {
        let Some(health) = health else {
            return match name {
                Some(name) => running(docker, name).await,
                None => Ok(()),
            };
        };
        // The parser gives every environment without `route` a URL.
        let url = health.url.as_deref().unwrap_or("http://127.0.0.1/");
        let client = reqwest::Client::builder()
            .timeout(health.interval.max(Duration::from_secs(1)))
            .build()
            .map_err(|e| Failure::deploy(format!("cannot probe health: {e}")))?;
        let started = Instant::now();
        let mut last: String;
        loop {
            if let Some(name) = name {
                running(docker, name).await?;
            }
            match probe(&client, url).await {
                Ok(status) if status == health.expect_status => break,
                Ok(status) => last = format!("{status}"),
                Err(e) => last = e,
            }
            if started.elapsed() >= health.timeout {
                return Err(Failure::health(format!(
                    "health check failed: {last} after {}",
                    format_duration(health.timeout)
                )));
            }
            tokio::time::sleep(health.interval).await;
        }
        self.sink.line(
            position,
            &format!("healthy: {} answered {}", url, health.expect_status),
        );
        if health.watch.is_zero() {
            return Ok(());
        }
        self.sink.line(
            position,
            &format!("watching for {}", format_duration(health.watch)),
        );
        let watched = Instant::now();
        while watched.elapsed() < health.watch {
            tokio::time::sleep(health.interval.min(health.watch)).await;
            if let Some(name) = name {
                running(docker, name).await?;
            }
            match probe(&client, url).await {
                Ok(status) if status == health.expect_status => {}
                Ok(status) => {
                    return Err(Failure::health(format!(
                        "health check failed during watch: {status}"
                    )));
                }
                Err(e) => {
                    return Err(Failure::health(format!(
                        "health check failed during watch: {e}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Fails when the container is not running (it exited or vanished), with its
/// exit code and last lines.
pub(super) async fn running(docker: &Docker, name: &str) -> Result<(), Failure> {
    match docker.container_state(name).await {
        Ok(Some(state)) if state.running => Ok(()),
        Ok(Some(state)) => {
            let tail = docker
                .container_logs_tail(name, 5)
                .await
                .unwrap_or_default();
            let code = state
                .exit_code
                .map_or_else(|| state.status.clone(), |c| format!("code {c}"));
            Err(Failure::deploy(format!(
                "container exited with {code}: {}",
                tail.trim().replace('\n', " | ")
            )))
        }
        Ok(None) => Err(Failure::deploy("the container is gone".to_owned())),
        Err(e) => Err(Failure::deploy(format!(
            "cannot inspect the container: {e}"
        ))),
    }
}

pub(super) async fn probe(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else {
                "connection refused or reset".to_owned()
            }
        })
}
