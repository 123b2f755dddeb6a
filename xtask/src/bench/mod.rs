//! `cargo xtask bench [suite...]`: builds the release binaries, starts the
//! whole stack (durable Postgres, RabbitMQ, registry, Docker Engine, the
//! edge proxy, the four services) in a temporary directory on ports of its
//! own, runs the named suites (all of them without a name), prints one table
//! and writes `target/bench/results.json`.
//!
//! Each figure is reported beside a floor measured in the same run (the
//! same thing without what is being measured: the app without the proxy,
//! the deploy without the switch), so that figures from machines of other
//! speeds can still be compared by their ratio. A suite is a [`Suite`] in
//! [`SUITES`].

mod deploy;
mod forges;
mod ingest;
mod insights;
mod load;
mod logs;
mod prune;
pub mod pushes;
mod rebuild;
mod rss;
mod spool;
mod stack;
mod tasks;

use std::fmt::Write as _;
use std::fs;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::infra;
use crate::services;
use crate::sys;

pub use stack::{Cancel, Stack};

/// A set of measurements run against a fresh stack.
pub trait Suite {
    /// Its name on the command line.
    fn name(&self) -> &'static str;
    /// What it measures, in a line.
    fn about(&self) -> &'static str;
    /// Runs it; the figures go into the table in this order, and `details`
    /// (anything worth keeping) into results.json.
    fn run(&self, stack: &mut Stack) -> Result<Report>;
}

/// Every suite, in the order a bench without names runs them. `rss`
/// comes first, on the fresh stack; `ingest`, `prune`, `forges` and
/// `spool` leave thousands of pending tasks behind, and `insights` a year
/// of history: they come last.
const SUITES: &[&dyn Suite] = &[
    &rss::Rss,
    &tasks::Dispatch,
    &tasks::Steps,
    &tasks::Throughput,
    &logs::Logs,
    &deploy::Deploy,
    &rebuild::Rebuild,
    &ingest::Ingest,
    &prune::Prune,
    &forges::Forges,
    &spool::Spool,
    &insights::Insights,
];

/// What a suite measured.
pub struct Report {
    pub figures: Vec<Figure>,
    pub details: Value,
}

/// One measured figure.
pub struct Figure {
    pub name: String,
    /// `ms`, `s`, `requests`.
    pub unit: &'static str,
    pub value: f64,
    /// The same figure without what the suite measures, from the same run.
    pub floor: Option<Floor>,
    /// The largest value that is not a failure (for figures that must stay
    /// at zero, say).
    pub max: Option<f64>,
    /// What the project aims for: printed beside the figure, met or not,
    /// never a failure.
    pub target: Option<Target>,
}

/// A figure's target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtMost(t) => value <= t,
            Self::AtLeast(t) => value >= t,
        }
    }

    fn bound(self) -> (&'static str, f64) {
        match self {
            Self::AtMost(t) => ("<=", t),
            Self::AtLeast(t) => (">=", t),
        }
    }
}

pub struct Floor {
    /// What the floor is, e.g. "app directly".
    pub what: String,
    pub value: f64,
}

impl Figure {
    pub fn new(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            unit,
            value,
            floor: None,
            max: None,
            target: None,
        }
    }

    pub fn floor(mut self, what: impl Into<String>, value: f64) -> Self {
        self.floor = Some(Floor {
            what: what.into(),
            value,
        });
        self
    }

    pub fn at_most(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// `<= 25 ms: met`.
    fn target_text(&self) -> String {
        self.target.map_or_else(
            || "-".to_owned(),
            |t| {
                let (op, bound) = t.bound();
                let verdict = if t.met(self.value) { "met" } else { "missed" };
                format!("{op} {} {}: {verdict}", number(bound), self.unit)
            },
        )
    }

    /// The figure over its floor, when the floor is above zero.
    fn ratio(&self) -> Option<f64> {
        self.floor
            .as_ref()
            .filter(|f| f.value > 0.0)
            .map(|f| self.value / f.value)
    }

    fn broken(&self) -> bool {
        self.max.is_some_and(|max| self.value > max)
    }
}

/// The suites the command line names, all of them when it names none.
fn select(args: &[String]) -> Result<Vec<&'static dyn Suite>> {
    if args.is_empty() {
        return Ok(SUITES.to_vec());
    }
    let mut chosen: Vec<&'static dyn Suite> = Vec::new();
    for arg in args {
        let Some(suite) = SUITES.iter().find(|s| s.name() == arg.as_str()) else {
            let known: Vec<String> = SUITES
                .iter()
                .map(|s| format!("  {:10} {}", s.name(), s.about()))
                .collect();
            bail!(
                "unknown bench suite {arg:?}; the suites are:\n{}",
                known.join("\n")
            );
        };
        if !chosen.iter().any(|c| c.name() == suite.name()) {
            chosen.push(*suite);
        }
    }
    Ok(chosen)
}

pub fn run(args: &[String]) -> Result<()> {
    let suites = select(args)?;
    let mut needs = infra::build_needs();
    needs.extend(infra::infra_needs(false));
    sys::ensure(&needs)?;
    let cancel = stack::Cancel::install()?;

    let bin = services::build_release()?;
    let mut stack = Stack::start(&bin, cancel, services::Options::default(), &[])?;
    let mut reports = Vec::new();
    let mut failed = None;
    for suite in &suites {
        eprintln!("xtask: bench suite {}: {}", suite.name(), suite.about());
        match suite.run(&mut stack) {
            Ok(report) => reports.push((suite.name(), report)),
            Err(e) => {
                // Its logs tell why.
                stack.keep();
                failed = Some(e.context(format!("bench suite {}", suite.name())));
                break;
            }
        }
    }
    // Everything stops before the results are printed: those of the suites
    // that ran, even when one failed.
    drop(stack);

    print!("{}", table(&reports));
    let file = sys::target_dir().join("bench/results.json");
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&file, serde_json::to_vec_pretty(&results(&reports))?)?;
    eprintln!("xtask: wrote {}", file.display());
    if let Some(e) = failed {
        return Err(e);
    }

    let broken: Vec<String> = reports
        .iter()
        .flat_map(|(suite, r)| r.figures.iter().map(move |f| (suite, f)))
        .filter(|(_, f)| f.broken())
        .map(|(suite, f)| {
            format!(
                "{suite}: {} is {} {} (at most {})",
                f.name,
                number(f.value),
                f.unit,
                number(f.max.unwrap_or_default())
            )
        })
        .collect();
    if !broken.is_empty() {
        bail!("figures out of bounds:\n  {}", broken.join("\n  "));
    }
    Ok(())
}

/// The `q` quantile of `values` (ms), 0 when there are none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut durations: Vec<std::time::Duration> = values
        .iter()
        .map(|ms| std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        .collect();
    load::quantile(&mut durations, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One table of every figure: suite, figure, value, floor, ratio, target.
fn table(reports: &[(&str, Report)]) -> String {
    let mut rows = vec![[
        "suite".to_owned(),
        "figure".to_owned(),
        "value".to_owned(),
        "floor (same run)".to_owned(),
        "ratio".to_owned(),
        "target".to_owned(),
    ]];
    for (suite, report) in reports {
        for f in &report.figures {
            rows.push([
                (*suite).to_owned(),
                f.name.clone(),
                format!("{} {}", number(f.value), f.unit),
                f.floor.as_ref().map_or_else(
                    || "-".to_owned(),
                    |fl| format!("{} {} ({})", number(fl.value), f.unit, fl.what),
                ),
                f.ratio()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
                f.target_text(),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (j, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left.
            if j == 2 || j == 4 {
                let _ = write!(line, "{cell:>w$}  ");
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 10));
            out.push('\n');
        }
    }
    out
}

fn results(reports: &[(&str, Report)]) -> Value {
    let commit = sys::output(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(sys::root()),
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_default();
    json!({
        "commit": commit,
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "suites": reports.iter().map(|(suite, r)| json!({
            "suite": suite,
            "figures": r.figures.iter().map(|f| json!({
                "figure": f.name,
                "unit": f.unit,
                "value": f.value,
                "floor": f.floor.as_ref().map(|fl| json!({ "what": fl.what, "value": fl.value })),
                "ratio": f.ratio(),
                "max": f.max,
                "target": f.target.map(|t| {
                    let (op, bound) = t.bound();
                    json!({ "op": op, "value": bound, "met": t.met(f.value) })
                }),
            })).collect::<Vec<_>>(),
            "details": r.details,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_chosen_by_name_and_unknown_ones_refused() {
        let all = select(&[]).map(|s| s.len()).ok();
        assert_eq!(all, Some(SUITES.len()));
        let deploy = select(&["deploy".to_owned(), "deploy".to_owned()]);
        assert_eq!(deploy.map(|s| s.len()).ok(), Some(1));
        let err = select(&["nope".to_owned()]).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("unknown bench suite \"nope\"") && e.contains("deploy")),
            "{err:?}"
        );
    }

    #[test]
    fn the_table_has_a_row_per_figure_with_its_ratio() {
        let report = Report {
            figures: vec![
                Figure::new("p50 latency", "ms", 1.5).floor("app directly", 0.5),
                Figure::new("failed requests", "requests", 0.0).at_most(0.0),
            ],
            details: Value::Null,
        };
        let text = table(&[("deploy", report)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[2].contains("1.50 ms") && lines[2].contains("0.50 ms (app directly)"));
        assert!(
            lines[2].contains("3.00x") && lines[2].ends_with('-'),
            "{text}"
        );
        assert!(
            lines[3].contains("0 requests") && lines[3].ends_with('-'),
            "{text}"
        );
    }

    #[test]
    fn targets_are_printed_met_or_missed() {
        let report = Report {
            figures: vec![
                Figure::new("rate", "/s", 900.0).target(Target::AtLeast(3000.0)),
                Figure::new("p99", "ms", 20.0).target(Target::AtMost(25.0)),
            ],
            details: Value::Null,
        };
        let text = table(&[("ingest", report)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].ends_with(">= 3000 /s: missed"), "{text}");
        assert!(lines[3].ends_with("<= 25 ms: met"), "{text}");
        assert!(
            !Figure::new("p99", "ms", 99.0)
                .target(Target::AtMost(1.0))
                .broken()
        );
    }

    #[test]
    fn a_figure_over_its_bound_is_broken() {
        assert!(Figure::new("failed", "requests", 1.0).at_most(0.0).broken());
        assert!(!Figure::new("failed", "requests", 0.0).at_most(0.0).broken());
        assert!(!Figure::new("p50", "ms", 9.0).broken());
    }
}
