//! The `rss` suite: the resident memory of each service on the fresh,
//! idle stack, and of the four together. (`ingest` reports it again after
//! its load.)

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::ingest::memory;
use super::{Figure, Report, Stack, Suite, Target};

pub struct Rss;

/// How close two samples a second apart must be for the stack to count as
/// settled, in MB.
const SETTLED_MB: f64 = 0.25;

impl Suite for Rss {
    fn name(&self) -> &'static str {
        "rss"
    }

    fn about(&self) -> &'static str {
        "idle resident memory of each service on the fresh stack, and of the four together"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        // Idle means settled: the total moves by less than SETTLED_MB over
        // three samples a second apart.
        let mut last: Vec<f64> = Vec::new();
        let mut samples = 0usize;
        let idle = stack.wait(
            "the services' memory to settle",
            Duration::from_secs(60),
            || {
                samples += 1;
                if !samples.is_multiple_of(10) {
                    return Ok(None);
                }
                let now = memory(stack)?;
                last.push(now.iter().map(|(_, v)| v).sum());
                let steady = last.len() >= 3
                    && last[last.len() - 3..]
                        .windows(2)
                        .all(|w| (w[1] - w[0]).abs() < SETTLED_MB);
                Ok(steady.then_some(now))
            },
        )?;
        let total: f64 = idle.iter().map(|(_, v)| v).sum();
        let mut figures: Vec<Figure> = idle
            .iter()
            .map(|(name, mib)| Figure::new(format!("{name}, idle"), "MB", *mib))
            .collect();
        figures
            .push(Figure::new("the four services, idle", "MB", total).target(Target::AtMost(60.0)));
        Ok(Report {
            figures,
            details: json!({
                "idle_mb": idle.iter().map(|(n, v)| json!({"service": n, "mb": v})).collect::<Vec<_>>(),
                "total_samples_mb": last,
            }),
        })
    }
}
