//! `cargo xtask fuzz [--seconds N] [target...]`: every fuzz target of
//! `fuzz/` (or the named ones) for N seconds each under cargo-fuzz on the
//! nightly toolchain, installing cargo-fuzz when it is missing; then a table
//! of executions, corpus sizes and crashes. Fails when a target crashed,
//! naming the input that did it (docs/fuzzing.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sys;

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// An input that runs longer than this is reported as a crash: a parser
/// that slow on a few kilobytes is a way to stall a service.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// What one target's run came to.
struct Run {
    target: String,
    executions: u64,
    corpus: usize,
    /// The inputs it wrote to its artifacts directory in this run.
    crashes: Vec<PathBuf>,
}

pub fn run(args: &[String]) -> Result<()> {
    let (seconds, only) = parse_args(args)?;
    ensure_cargo_fuzz()?;
    let dir = sys::root().join("fuzz");
    let listed = sys::output(nightly_cargo(&dir).args(["fuzz", "list"]))?;
    let all: Vec<String> = listed.lines().map(str::trim).map(str::to_owned).collect();
    if let Some(unknown) = only.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target {unknown}; there are: {}", all.join(", "));
    }
    let targets: Vec<String> = if only.is_empty() { all } else { only };

    eprintln!("xtask: building the fuzz targets");
    sys::run(nightly_cargo(&dir).args(["fuzz", "build"]))?;
    let logs = dir.join("target").join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut runs = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds}s");
        runs.push(fuzz_one(&dir, &logs, target, seconds)?);
    }

    println!(
        "{:<16} {:>12} {:>8} {:>8}",
        "target", "executions", "corpus", "crashes"
    );
    for r in &runs {
        println!(
            "{:<16} {:>12} {:>8} {:>8}",
            r.target,
            r.executions,
            r.corpus,
            r.crashes.len()
        );
    }
    let crashed: Vec<&Run> = runs.iter().filter(|r| !r.crashes.is_empty()).collect();
    if crashed.is_empty() {
        return Ok(());
    }
    for r in &crashed {
        for input in &r.crashes {
            eprintln!(
                "xtask: {} crashed on {}\n  reproduce: cargo +nightly fuzz run {} {}\n  minimise:  cargo +nightly fuzz tmin {} {}",
                r.target,
                input.display(),
                r.target,
                input.display(),
                r.target,
                input.display()
            );
        }
    }
    bail!(
        "{} of {} fuzz targets crashed; logs in {}",
        crashed.len(),
        runs.len(),
        logs.display()
    )
}

fn parse_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = args.next().context("--seconds needs a number")?;
                seconds = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--seconds {n}: expected a positive number"))?;
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            target => targets.push(target.to_owned()),
        }
    }
    Ok((seconds, targets))
}

/// The rustup proxy's cargo on the nightly toolchain, in `dir`, without the
/// variables of the stable cargo that runs xtask: `CARGO` and
/// `RUSTUP_TOOLCHAIN` would send cargo-fuzz's own builds to stable, and a
/// shared `CARGO_TARGET_DIR` would mix instrumented builds with the
/// workspace's.
fn nightly_cargo(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(dir);
    for key in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(key);
    }
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_MANIFEST_") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// cargo-fuzz from crates.io, as pinned by its own lock file, when missing;
/// the nightly toolchain must already be there.
fn ensure_cargo_fuzz() -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!("fuzzing needs the nightly toolchain; run: rustup toolchain install nightly");
    }
    if sys::has("cargo-fuzz") {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "cargo-fuzz", "--locked"])
        .env_remove("CARGO_TARGET_DIR");
    sys::run(&mut cmd)
}

fn fuzz_one(dir: &Path, logs: &Path, target: &str, seconds: u64) -> Result<Run> {
    let artifacts = dir.join("artifacts").join(target);
    let before = files(&artifacts);
    let out = nightly_cargo(dir)
        .args(["fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .output()
        .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
    let log = logs.join(format!("{target}.log"));
    let text = String::from_utf8_lossy(&out.stderr);
    std::fs::write(&log, text.as_bytes())
        .with_context(|| format!("cannot write {}", log.display()))?;
    let crashes: Vec<PathBuf> = files(&artifacts).difference(&before).cloned().collect();
    if !out.status.success() && crashes.is_empty() {
        bail!(
            "cargo fuzz run {target} failed with {} and left no input; see {}",
            out.status,
            log.display()
        );
    }
    Ok(Run {
        target: target.to_owned(),
        executions: executions(&text),
        corpus: files(&dir.join("corpus").join(target)).len(),
        crashes,
    })
}

/// The inputs run, from libFuzzer's final statistics, else from its last
/// status line (`#123456 DONE ...`).
fn executions(log: &str) -> u64 {
    let stat = log.lines().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|l| {
            l.strip_prefix('#')
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
    })
    .unwrap_or(0)
}

/// The files directly in `dir`; none when it does not exist.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_from_libfuzzer_output() {
        let stats = "#4096\tpulse  cov: 10\n#52001\tDONE   cov: 12\nDone 52001 runs in 2 second(s)\nstat::number_of_executed_units: 52013\nstat::peak_rss_mb: 40\n";
        assert_eq!(executions(stats), 52013);
        assert_eq!(executions("#1\tINITED\n#77\tDONE   cov: 3\n"), 77);
        assert_eq!(executions("no statistics"), 0);
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(args(&[]).ok(), Some((DEFAULT_SECONDS, vec![])));
        assert_eq!(
            args(&["--seconds", "5", "duration"]).ok(),
            Some((5, vec!["duration".to_owned()]))
        );
        assert!(args(&["--seconds", "0"]).is_err());
        assert!(args(&["--seconds"]).is_err());
        assert!(args(&["--forever"]).is_err());
    }
}
