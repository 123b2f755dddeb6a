//! The `spool` suite: signed pushes answered while Postgres is down, kept
//! in the gateway's webhook spool, beside the same pushes taken directly
//! and beside the disk's own synced write; then how fast the spool is
//! handed over once Postgres is back, and whether every push became one
//! task.
//!
//! The workflow asks for a runner label no runner has, so its tasks stay
//! queued and nothing else runs while the figures are taken.

use std::fs::{self, File};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::pushes::{self, Answer, Push, Sender, Sent};
use super::{Figure, Report, Stack, Suite, percentile};
use crate::git::LocalRepo;

pub struct Spool;

/// Pushes in each half: taken directly, then spooled.
const PUSHES: usize = 300;
/// Over how long each half is sent.
const OVER: Duration = Duration::from_secs(10);
const WORKFLOW: &str = "spool";
/// What a spooled delivery takes on disk, about: the floor writes as much.
const ENTRY_BYTES: usize = 1024;

impl Suite for Spool {
    fn name(&self) -> &'static str {
        "spool"
    }

    fn about(&self) -> &'static str {
        "webhooks while Postgres is down: kept in the gateway's spool, beside a synced write of the disk, then handed over"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let repo = LocalRepo::open(&stack.dir.join("repos"), WORKFLOW)?;
        repo.write("README.md", b"spool\n")?;
        let base = repo.commit("base")?;
        let commits = pushes::commits(&repo.bare, &base, WORKFLOW, 2 * PUSHES)?;
        let url = repo.url();
        let workflow_id = stack.api.register(
            WORKFLOW,
            &format!(
                "name: {WORKFLOW}\nrepo: {url}\nruns_on: [spool-bench]\n\
                 on:\n  push: {{ branches: [{WORKFLOW}] }}\n\
                 steps:\n  - name: noop\n    run: \"true\"\n"
            ),
        )?;
        let signed = pushes::signed(
            stack.github_secret.as_bytes(),
            &url,
            "spool",
            WORKFLOW,
            &commits,
        )?;
        let mut signed = signed.into_iter();
        let addr: SocketAddr = stack.gateway.parse().context("the gateway's address")?;

        eprintln!(
            "xtask: spool: {PUSHES} pushes over {}s, taken directly",
            OVER.as_secs()
        );
        let direct = send(stack, addr, signed.by_ref().take(PUSHES).collect())?;
        let direct_ms = latencies(&direct, false);
        if direct_ms.len() != PUSHES {
            bail!(
                "{} of {PUSHES} pushes were taken directly while everything was up",
                direct_ms.len()
            );
        }

        let floor_ms = synced_writes(&stack.dir.join("synced-writes"), PUSHES)?;

        eprintln!(
            "xtask: spool: Postgres killed; {PUSHES} pushes over {}s",
            OVER.as_secs()
        );
        stack.infra().kill_postgres()?;
        let spooled = send(stack, addr, signed.collect())?;
        let spooled_ms = latencies(&spooled, true);
        let not_queued = PUSHES - spooled_ms.len();
        let held = spool_depth(stack)?;

        stack.infra().start_postgres_again()?;
        let back = Instant::now();
        let first = stack.wait("the hand-over to start", Duration::from_secs(60), || {
            Ok((spool_depth(stack)? < held).then(Instant::now))
        })?;
        let emptied = stack.wait("the spool to empty", Duration::from_secs(300), || {
            Ok((spool_depth(stack)? == 0).then(Instant::now))
        })?;
        let handing_over = emptied.duration_since(first);
        let per_delivery_ms = handing_over.as_secs_f64() * 1000.0 / held.max(1) as f64;

        let answered: usize = direct
            .iter()
            .chain(&spooled)
            .filter(|s| s.accepted())
            .count();
        let tasks: usize = stack
            .sql(&format!(
                "SELECT count(*) FROM tasks WHERE workflow_id = {workflow_id}"
            ))?
            .parse()?;
        let distinct: usize = stack
            .sql(&format!(
                "SELECT count(DISTINCT commit_sha) FROM tasks WHERE workflow_id = {workflow_id}"
            ))?
            .parse()?;
        let missing = answered.saturating_sub(distinct);
        let duplicates = tasks - distinct;

        let q = |v: &[f64], p: f64| percentile(v, p);
        let figures = vec![
            Figure::new("spooled webhook p50", "ms", q(&spooled_ms, 0.5))
                .floor("synced 1 KiB write", q(&floor_ms, 0.5)),
            Figure::new("spooled webhook p99", "ms", q(&spooled_ms, 0.99))
                .floor("synced 1 KiB write", q(&floor_ms, 0.99)),
            Figure::new("spooled webhook p50, vs direct", "ms", q(&spooled_ms, 0.5))
                .floor("taken directly", q(&direct_ms, 0.5)),
            Figure::new("hand-over per delivery", "ms", per_delivery_ms)
                .floor("direct webhook p50", q(&direct_ms, 0.5)),
            Figure::new(
                "pushes refused while Postgres was down",
                "requests",
                not_queued as f64,
            )
            .at_most(0.0),
            Figure::new("2xx pushes without their task", "requests", missing as f64).at_most(0.0),
            Figure::new("duplicate tasks", "tasks", duplicates as f64).at_most(0.0),
        ];
        Ok(Report {
            figures,
            details: json!({
                "pushes_each_half": PUSHES,
                "over_s": OVER.as_secs(),
                "spool_held": held,
                "postgres_back_to_first_hand_over_s": first.duration_since(back).as_secs_f64(),
                "hand_over_s": handing_over.as_secs_f64(),
                "tasks": tasks,
            }),
        })
    }
}

/// Sends `pushes` over [`OVER`] and waits for every answer.
fn send(stack: &Stack, addr: SocketAddr, pushes: Vec<Push>) -> Result<Vec<Sent>> {
    let sender = Sender::start(addr, pushes, OVER)?;
    stack.wait(
        "the pushes' answers",
        OVER + Duration::from_secs(30),
        || Ok(sender.finished().then_some(())),
    )?;
    sender.join()
}

/// The latencies (ms) of the pushes answered 2xx, queued or taken as asked.
fn latencies(sent: &[Sent], queued: bool) -> Vec<f64> {
    sent.iter()
        .filter(|s| {
            s.accepted() && matches!(s.answer, Answer::Status { queued: q, .. } if q == queued)
        })
        .map(|s| s.done.saturating_sub(s.sent).as_secs_f64() * 1000.0)
        .collect()
}

/// What the spool holds, from the gateway's metrics.
pub(super) fn spool_depth(stack: &Stack) -> Result<u64> {
    let text = stack.api.text("/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("slipway_webhook_spool_deliveries "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("the gateway's metrics have no slipway_webhook_spool_deliveries")
}

/// The floor: `n` files of [`ENTRY_BYTES`] written as the spool writes
/// one (under a temporary name, synced, renamed, the directory synced), in
/// `dir` on the stack's disk; each one's time in ms.
fn synced_writes(dir: &Path, n: usize) -> Result<Vec<f64>> {
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp)?;
    let bytes = vec![7u8; ENTRY_BYTES];
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let began = Instant::now();
        let name = format!("{i:020}.delivery");
        let mut file = File::create(tmp.join(&name))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(tmp.join(&name), dir.join(&name))?;
        File::open(dir)?.sync_all()?;
        took.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    fs::remove_dir_all(dir)?;
    Ok(took)
}
