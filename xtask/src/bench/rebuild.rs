//! The `rebuild` suite: what the caches, the repository's mirror and the
//! image's layer reuse save on a real build. The bundled `hello-rust`
//! example (crates from crates.io, a `cache` block for the compiled
//! dependencies) is built twice by the stack's runner: cold, on an empty
//! data directory and an empty cargo home, then after a one-line change to
//! its source. The warm run's wall time is the figure and the cold one its
//! floor; each run is also split into clone, cache restore, steps, image
//! build, push and cache save, from the task's steps and its log.
//!
//! The runner's host needs a Rust toolchain, as the example's host steps
//! run `cargo`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Figure, Report, Stack, Suite};
use crate::git::LocalRepo;
use crate::sys;

pub struct Rebuild;

/// The warm run's bound, as a share of the cold one.
const WARM_AT_MOST: f64 = 0.30;
/// Long enough for a cold build on a slow machine.
const TASK_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const EXAMPLE: &str = "examples/hello-rust";
/// The one-line change of the warm run.
const GREETING: (&str, &str) = ("hello from hello-rust", "hello again from hello-rust");

impl Suite for Rebuild {
    fn name(&self) -> &'static str {
        "rebuild"
    }

    fn about(&self) -> &'static str {
        "the hello-rust example built cold, then warm after a one-line change: clone, caches, steps, image build, push"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let source = sys::root().join(EXAMPLE);
        let repo = LocalRepo::open(&stack.dir.join("repos"), "hello-rust")?;
        copy_tree(&repo, &source, "")?;
        repo.commit("hello-rust example")?;

        let template = fs::read_to_string(source.join("slipway.yml"))?;
        // The build is measured, not the deploy: the environments are cut.
        // Cargo's downloads go to a cargo home of the bench's own, empty
        // for the cold run, at the same path for both.
        let cargo_home = stack.dir.join("cargo-home");
        fs::create_dir_all(&cargo_home)?;
        let definition = template
            .split("\ndeploy:")
            .next()
            .unwrap_or(&template)
            .to_owned();
        let definition = crate::git::with_repo(&definition, &repo.url()).replacen(
            "\nenv:\n",
            &format!("\nenv:\n  CARGO_HOME: {}\n", cargo_home.display()),
            1,
        );
        if !definition.contains("CARGO_HOME") {
            bail!("{EXAMPLE}/slipway.yml has no env block to set CARGO_HOME in");
        }
        let workflow = stack.api.register("hello-rust", &definition)?;

        eprintln!("xtask: bench rebuild: cold build");
        let cold = build(stack, workflow)?;
        let main_rs = fs::read_to_string(source.join("src/main.rs"))?;
        if !main_rs.contains(GREETING.0) {
            bail!("{EXAMPLE}/src/main.rs no longer says {:?}", GREETING.0);
        }
        repo.write(
            "src/main.rs",
            main_rs.replacen(GREETING.0, GREETING.1, 1).as_bytes(),
        )?;
        repo.commit("a one-line change")?;
        eprintln!("xtask: bench rebuild: warm build after a one-line change");
        let warm = build(stack, workflow)?;
        if warm.restored.is_empty() {
            bail!("the warm build restored no cache: {:?}", warm.cache_lines);
        }

        let mut figures = vec![
            Figure::new(
                "hello-rust task, warm after a one-line change",
                "s",
                warm.wall,
            )
            .floor(
                "the same task cold: empty data dir and cargo home",
                cold.wall,
            ),
            Figure::new("warm task over cold task", "x", warm.wall / cold.wall)
                .at_most(WARM_AT_MOST),
        ];
        for (stage, warm_value, cold_value) in [
            ("clone", warm.clone, cold.clone),
            ("cache restore", warm.restore, cold.restore),
            ("steps", warm.steps, cold.steps),
            ("image build", warm.image_build, cold.image_build),
            ("push", warm.push, cold.push),
            ("cache save", warm.save, cold.save),
        ] {
            figures.push(
                Figure::new(format!("{stage}, warm"), "s", warm_value)
                    .floor(format!("{stage}, cold"), cold_value),
            );
        }
        Ok(Report {
            figures,
            details: json!({ "cold": cold.details(), "warm": warm.details() }),
        })
    }
}

/// Copies the example into the repository, without build outputs.
fn copy_tree(repo: &LocalRepo, dir: &Path, prefix: &str) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_str().context("file name is not UTF-8")?;
        let path = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() && !matches!(name, "target" | ".cargo") {
            copy_tree(repo, &entry.path(), &format!("{path}/"))?;
        } else if kind.is_file() && name != "app" {
            repo.write(&path, &fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

/// One task of the example, in seconds.
struct Run {
    task_id: u64,
    /// From the task's creation to its end.
    wall: f64,
    /// The clone step without its caches' restore.
    clone: f64,
    restore: f64,
    /// The workflow's own steps.
    steps: f64,
    image_build: f64,
    push: f64,
    /// After the steps and the image, before the task's end.
    save: f64,
    restored: Vec<String>,
    cache_lines: Vec<String>,
}

impl Run {
    fn details(&self) -> Value {
        json!({
            "task_id": self.task_id,
            "wall_s": self.wall,
            "clone_s": self.clone,
            "cache_restore_s": self.restore,
            "steps_s": self.steps,
            "image_build_s": self.image_build,
            "push_s": self.push,
            "cache_save_s": self.save,
            "cache_lines": self.cache_lines,
        })
    }
}

fn build(stack: &Stack, workflow: u64) -> Result<Run> {
    let task_id = stack.api.run(workflow, None)?;
    let task = stack.wait(
        &format!("task {task_id} of hello-rust"),
        TASK_TIMEOUT,
        || {
            let task = stack.api.get(&format!("/api/tasks/{task_id}"))?;
            Ok(matches!(
                task["status"].as_str(),
                Some("success" | "failed" | "cancelled")
            )
            .then_some(task))
        },
    )?;
    let log = stack.api.text(&format!("/api/tasks/{task_id}/logs"))?;
    if task["status"] != "success" {
        bail!(
            "task {task_id} ended {}: {}\n{log}",
            task["status"],
            task["error"]
        );
    }
    let step = |name: &str| -> Result<f64> {
        let step = task["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["name"] == name))
            .with_context(|| format!("task {task_id} has no step {name}: {task}"))?;
        between(&step["started_at"], &step["finished_at"])
    };
    let cache_lines: Vec<String> = log
        .lines()
        .filter(|l| l.contains("cache target: "))
        .map(str::to_owned)
        .collect();
    let restored: Vec<String> = cache_lines
        .iter()
        .filter(|l| l.contains(": restored "))
        .cloned()
        .collect();
    let restore = timed(&restored);
    let saved: Vec<String> = cache_lines
        .iter()
        .filter(|l| l.contains(": saved key "))
        .cloned()
        .collect();
    let image = step("image")?;
    let image_build = timed(&lines_starting(&log, "built in "));
    let push = timed(&lines_starting(&log, "pushed in "));
    if image_build + push > image + 0.5 {
        bail!("task {task_id}: the image step's log says more than the step took");
    }
    Ok(Run {
        task_id,
        wall: between(&task["created_at"], &task["finished_at"])?,
        clone: (step("clone")? - restore).max(0.0),
        restore,
        steps: step("test")? + step("build")?,
        image_build,
        push,
        save: timed(&saved),
        restored,
        cache_lines,
    })
}

/// The log's lines that start with `prefix` once the log's own line prefix
/// (time, step) is set aside.
fn lines_starting(log: &str, prefix: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.find(prefix).map(|at| l[at..].to_owned()))
        .collect()
}

/// The sum of the `in <seconds>s` at the end of each line.
fn timed(lines: &[String]) -> f64 {
    lines
        .iter()
        .filter_map(|l| {
            l.rsplit_once(" in ")?
                .1
                .trim()
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        // Not `sum`, whose sum of nothing is -0.
        .fold(0.0, |total, t| total + t)
}

/// Seconds between two RFC 3339 times of the API.
fn between(from: &Value, to: &Value) -> Result<f64> {
    let at = |v: &Value| -> Result<chrono::DateTime<chrono::FixedOffset>> {
        let text = v.as_str().with_context(|| format!("no time in {v}"))?;
        chrono::DateTime::parse_from_rfc3339(text).with_context(|| format!("{text:?}"))
    };
    let seconds = (at(to)? - at(from)?).num_milliseconds() as f64 / 1000.0;
    Ok(seconds.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_times_are_read_from_the_log() {
        let lines = vec![
            "cache target: restored key 1a2b, 12.5 MiB in 0.75s".to_owned(),
            "built in 1.25s".to_owned(),
        ];
        assert!((timed(&lines) - 2.0).abs() < 1e-9);
        assert_eq!(timed(&["no time here".to_owned()]), 0.0);
        let log = "[image] building x\n[image] built in 3.00s\n[image] pushed in 0.50s\n";
        assert_eq!(lines_starting(log, "built in "), ["built in 3.00s"]);
        assert!((timed(&lines_starting(log, "pushed in ")) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn times_are_seconds_apart() {
        let from = json!("2026-12-03T08:00:00.250Z");
        let to = json!("2026-12-03T08:00:02.000Z");
        assert!((between(&from, &to).expect("times") - 1.75).abs() < 1e-9);
        assert!(between(&json!(null), &to).is_err());
    }
}
