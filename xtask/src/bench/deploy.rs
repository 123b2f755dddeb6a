//! The `deploy` suite: what the users of an app see while it is deployed.
//! A steady client sends 300 requests a second to a routed environment
//! (through the edge proxy) during 10 deploys and 2 rollbacks driven through
//! the REST API, then the same to an unrouted environment of the same app
//! (stop, then start), whose failed requests are the outage routing removes.
//!
//! The app is busybox's httpd in a `FROM scratch` image; each version's page
//! says `version <n>`, so every answer tells which version gave it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::load::{Load, Sample, Summary, Target, version};
use super::{Figure, Report, Stack, Suite};
use crate::api;
use crate::git::LocalRepo;
use crate::{http, sys};

pub struct Deploy;

/// Requests a second.
const RATE: u32 = 300;
/// Deploys of new versions, 1 to this (version 0 is deployed first).
const DEPLOYS: u32 = 10;
/// The versions the two rollbacks go back to, in order.
const ROLLBACKS: [u32; 2] = [DEPLOYS - 1, DEPLOYS - 2];
/// Each steady window of the latency floor.
const STEADY: Duration = Duration::from_secs(5);
/// The load keeps going this long after the last switch.
const TAIL: Duration = Duration::from_secs(1);
const ENVIRONMENT: &str = "bench";
const APP_PORT: u16 = 8080;
const TASK_TIMEOUT: Duration = Duration::from_secs(300);

impl Suite for Deploy {
    fn name(&self) -> &'static str {
        "deploy"
    }

    fn about(&self) -> &'static str {
        "10 deploys and 2 rollbacks under 300 requests/s, routed through the proxy and unrouted"
    }

    fn run(&self, stack: &mut Stack) -> Result<Report> {
        let app = App::create(stack)?;
        let prefix = format!("bench-{}", sys::random_hex(3));
        let _containers = Containers(prefix.clone());
        let routed = Variant {
            routed: true,
            workflow: "bench-routed",
            container: format!("{prefix}-routed"),
            port: sys::free_port()?,
        };
        let unrouted = Variant {
            routed: false,
            workflow: "bench-unrouted",
            container: format!("{prefix}-unrouted"),
            port: sys::free_port()?,
        };
        let routed_run = measure(stack, &app, &routed)?;
        let unrouted_run = measure(stack, &app, &unrouted)?;
        figures(&routed_run, &unrouted_run)
    }
}

/// The app's repository: one commit per version.
struct App {
    url: String,
    /// `commits[n]` serves `version <n>`.
    commits: Vec<String>,
}

impl App {
    fn create(stack: &Stack) -> Result<Self> {
        let repo = LocalRepo::open(&stack.dir.join("repos"), "bench-app")?;
        repo.write(
            "busybox",
            &std::fs::read("/bin/busybox").context("/bin/busybox (busybox-static)")?,
        )?;
        repo.make_executable("busybox")?;
        // The shell exits on SIGTERM, as a well-behaved app stops at once.
        repo.write(
            "Dockerfile",
            format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n\
                 ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'exit 0' TERM; /bin/busybox httpd -f -p {APP_PORT} -h /www & wait\"]\n"
            )
            .as_bytes(),
        )?;
        repo.write("www/health", b"ok\n")?;
        let mut commits = Vec::new();
        for n in 0..=DEPLOYS {
            repo.write("www/index.html", format!("version {n}\n").as_bytes())?;
            commits.push(repo.commit(&format!("version {n}"))?);
        }
        Ok(Self {
            url: repo.url(),
            commits,
        })
    }
}

/// One environment of the app, routed or not.
struct Variant {
    routed: bool,
    workflow: &'static str,
    container: String,
    /// The proxy's `listen` port (routed) or the container's host port.
    port: u16,
}

impl Variant {
    fn definition(&self, repo: &str) -> String {
        let (route, ports, health) = if self.routed {
            (
                format!(
                    "    route: {{ listen: {}, port: {APP_PORT}, drain: 2s }}\n",
                    self.port
                ),
                String::new(),
                "path: /health".to_owned(),
            )
        } else {
            (
                String::new(),
                format!(", ports: [\"127.0.0.1:{}:{APP_PORT}\"]", self.port),
                format!("url: http://127.0.0.1:{}/health", self.port),
            )
        };
        format!(
            "name: {workflow}\nrepo: {repo}\n\
             image:\n  name: bench-app\n  tags: [\"{{{{sha_short}}}}\"]\n\
             deploy:\n  - environment: {ENVIRONMENT}\n{route}\
             \x20   target:\n      container: {{ name: {container}{ports} }}\n\
             \x20   health: {{ {health}, interval: 100ms, timeout: 30s, watch: 2s }}\n",
            workflow = self.workflow,
            container = self.container,
        )
    }

    /// Where users reach it: the proxy's port, or the container's.
    fn target(&self) -> Target {
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            path: "/".to_owned(),
        }
    }

    fn what(&self) -> &'static str {
        if self.routed { "routed" } else { "unrouted" }
    }
}

/// A deploy or rollback during the load.
struct Switch {
    kind: &'static str,
    deployment_id: u64,
    /// The version it deploys.
    version: u32,
    /// When the deployment started, on the load's clock.
    started: Duration,
}

/// What one variant measured.
struct Run {
    what: &'static str,
    samples: Vec<Sample>,
    switches: Vec<Switch>,
    /// Steady load through the proxy and straight to the app (routed only).
    steady: Option<Steady>,
}

struct Steady {
    through: Window,
    direct: Window,
}

/// What a steady load without any deploy measured.
struct Window {
    p50: Duration,
    p99: Duration,
    /// The longest time between two answers: the floor of the same figure
    /// during deploys.
    silence: Duration,
}

fn measure(stack: &Stack, app: &App, variant: &Variant) -> Result<Run> {
    eprintln!("xtask: bench deploy: {} environment", variant.what());
    let workflow = stack
        .api
        .register(variant.workflow, &variant.definition(&app.url))?;
    deploy(stack, workflow, &app.commits[0])?;
    let target = variant.target();
    stack.wait(
        &format!("version 0 answering on {}", target.addr),
        Duration::from_secs(30),
        || {
            let answer = http::request(&target.addr.to_string(), "GET", "/", &[], b"");
            Ok(answer
                .ok()
                .filter(|a| a.status == 200 && version(a.body.as_bytes()) == Some(0)))
        },
    )?;
    let steady = if variant.routed {
        Some(steady(stack, &target, &variant.container)?)
    } else {
        None
    };

    let load = Load::start(target, RATE)?;
    let clock = load.clock;
    let mut switches = Vec::new();
    let mut deployed = vec![0u64; DEPLOYS as usize + 1];
    for (n, commit) in app.commits.iter().enumerate().skip(1) {
        let d = deploy(stack, workflow, commit)?;
        deployed[n] = d.id;
        switches.push(Switch {
            kind: "deploy",
            deployment_id: d.id,
            version: u32::try_from(n)?,
            started: clock.wall_since(d.started),
        });
        eprintln!(
            "xtask: bench deploy: {} version {n} deployed",
            variant.what()
        );
    }
    for to in ROLLBACKS {
        let answer = stack.api.post(
            &format!("/api/workflows/{workflow}/environments/{ENVIRONMENT}/rollback"),
            &json!({ "deployment_id": deployed[to as usize] }),
        )?;
        let d = finished(stack, api::id(&answer, "deployment_id")?)?;
        switches.push(Switch {
            kind: "rollback",
            deployment_id: d.id,
            version: to,
            started: clock.wall_since(d.started),
        });
        eprintln!(
            "xtask: bench deploy: {} rolled back to version {to}",
            variant.what()
        );
    }
    // The answers after the last switch belong to the measurement.
    std::thread::sleep(TAIL);
    Ok(Run {
        what: variant.what(),
        samples: load.stop()?,
        switches,
        steady,
    })
}

/// A steady load of `STEADY` on `target`.
fn steady_window(target: &Target) -> Result<Window> {
    let load = Load::start(target.clone(), RATE)?;
    std::thread::sleep(STEADY);
    let samples = load.stop()?;
    let summary = Summary::new(&samples);
    if summary.failed() > 0 {
        bail!(
            "{} of {} requests to {} failed without any deploy: {:?}",
            summary.failed(),
            summary.sent(),
            target.addr,
            summary.failures()
        );
    }
    Ok(Window {
        p50: summary.latency(0.5).context("no answers")?,
        p99: summary.latency(0.99).context("no answers")?,
        silence: summary.longest_silence(),
    })
}

/// The latency through the proxy, then straight to the running container.
fn steady(stack: &Stack, target: &Target, container: &str) -> Result<Steady> {
    stack.check()?;
    let through = steady_window(target)?;
    let direct = Target {
        addr: container_addr(container)?,
        path: target.path.clone(),
    };
    stack.check()?;
    Ok(Steady {
        through,
        direct: steady_window(&direct)?,
    })
}

/// Where the one running container of a routed environment (named
/// `<container>-<deployment id>`) answers: its published loopback port, or
/// its address on a Docker network.
fn container_addr(container: &str) -> Result<SocketAddr> {
    let names = sys::output(Command::new("docker").args(["ps", "--format", "{{.Names}}"]))?;
    let prefix = format!("{container}-");
    let running: Vec<&str> = names.lines().filter(|n| n.starts_with(&prefix)).collect();
    let [name] = running[..] else {
        bail!("expected one running container {prefix}*, found {running:?}");
    };
    let published =
        sys::output(Command::new("docker").args(["port", name, &format!("{APP_PORT}/tcp")]))
            .unwrap_or_default();
    if let Some(addr) = published.lines().find_map(|line| {
        line.trim()
            .parse::<SocketAddr>()
            .ok()
            .filter(SocketAddr::is_ipv4)
    }) {
        return Ok(addr);
    }
    let ips = sys::output(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        name,
    ]))?;
    ips.split_whitespace()
        .find_map(|ip| format!("{ip}:{APP_PORT}").parse().ok())
        .with_context(|| format!("{name} has neither a published port nor an address"))
}

/// A deployment that finished.
struct Deployed {
    id: u64,
    /// Its `started_at`.
    started: SystemTime,
}

/// Runs the workflow at `commit` and waits for its deployment to finish.
fn deploy(stack: &Stack, workflow: u64, commit: &str) -> Result<Deployed> {
    let task = stack.api.run(workflow, Some(commit))?;
    let path = format!("/api/tasks/{task}");
    let id = stack.wait(&format!("task {task}"), TASK_TIMEOUT, || {
        let t = stack.api.get(&path)?;
        let deployment = t["deployments"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["environment"] == ENVIRONMENT));
        if let Some(d) = deployment {
            return Ok(Some(api::id(d, "id")?));
        }
        match t["status"].as_str() {
            Some("failed" | "cancelled") => {
                bail!("task {task} ended {}: {}", t["status"], t["error"])
            }
            Some("success") => bail!("task {task} ended without a deployment"),
            _ => Ok(None),
        }
    })?;
    finished(stack, id)
}

/// Waits for deployment `id` to end; an error unless it succeeded.
fn finished(stack: &Stack, id: u64) -> Result<Deployed> {
    let path = format!("/api/deployments/{id}");
    let d: Value = stack.wait(&format!("deployment {id}"), TASK_TIMEOUT, || {
        let d = stack.api.get(&path)?;
        let done = matches!(
            d["status"].as_str(),
            Some("succeeded" | "failed" | "rolled_back" | "timed_out" | "skipped")
        );
        Ok(done.then_some(d))
    })?;
    if d["status"] != "succeeded" {
        bail!("deployment {id} ended {}: {}", d["status"], d["error"]);
    }
    let started = d["started_at"]
        .as_str()
        .with_context(|| format!("deployment {id} has no started_at: {d}"))?;
    let started = chrono::DateTime::parse_from_rfc3339(started)
        .with_context(|| format!("deployment {id}: started_at {started:?}"))?;
    Ok(Deployed {
        id,
        started: started.into(),
    })
}

/// How long after each switch's start its version first answered.
fn to_new_version(run: &Run) -> Result<Vec<(&Switch, Duration)>> {
    let summary = Summary::new(&run.samples);
    run.switches
        .iter()
        .map(|s| {
            let first = summary
                .first_answer(s.version, s.started)
                .with_context(|| {
                    format!(
                        "{} {} (deployment {}): version {} never answered",
                        run.what, s.kind, s.deployment_id, s.version
                    )
                })?;
            Ok((s, first.saturating_sub(s.started)))
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The largest and the median of `values`, in seconds.
fn max_and_median(values: &[Duration]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    let median = super::load::quantile(&mut sorted, 0.5).unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    (max.as_secs_f64(), median.as_secs_f64())
}

fn figures(routed: &Run, unrouted: &Run) -> Result<Report> {
    let r = Summary::new(&routed.samples);
    let u = Summary::new(&unrouted.samples);
    let steady = routed.steady.as_ref().context("no steady measurement")?;
    let r_times = to_new_version(routed)?;
    let u_times = to_new_version(unrouted)?;
    let split = |times: &[(&Switch, Duration)], kind: &str| -> Vec<Duration> {
        times
            .iter()
            .filter(|(s, _)| s.kind == kind)
            .map(|(_, d)| *d)
            .collect()
    };
    let (r_deploy_max, r_deploy_p50) = max_and_median(&split(&r_times, "deploy"));
    let (u_deploy_max, u_deploy_p50) = max_and_median(&split(&u_times, "deploy"));
    let (r_back_max, _) = max_and_median(&split(&r_times, "rollback"));
    let (u_back_max, _) = max_and_median(&split(&u_times, "rollback"));
    let switches = format!("{DEPLOYS} deploys + {} rollbacks", ROLLBACKS.len());
    #[allow(clippy::cast_precision_loss)]
    let count = |n: usize| n as f64;
    let figures = vec![
        Figure::new(
            format!("failed requests, routed ({switches})"),
            "requests",
            count(r.failed()),
        )
        .at_most(0.0),
        Figure::new(
            format!("failed requests, unrouted ({switches}, stop then start)"),
            "requests",
            count(u.failed()),
        ),
        Figure::new(
            "longest time without an answer, routed",
            "ms",
            ms(r.longest_silence()),
        )
        .floor("proxy, steady", ms(steady.through.silence)),
        Figure::new(
            "longest time without an answer, unrouted",
            "ms",
            ms(u.longest_silence()),
        )
        .floor("proxy, steady", ms(steady.through.silence)),
        Figure::new(
            "p50 latency through the proxy, steady",
            "ms",
            ms(steady.through.p50),
        )
        .floor("app directly", ms(steady.direct.p50)),
        Figure::new(
            "p99 latency through the proxy, steady",
            "ms",
            ms(steady.through.p99),
        )
        .floor("app directly", ms(steady.direct.p99)),
        Figure::new(
            "p99 latency through the proxy, during deploys",
            "ms",
            ms(r.latency(0.99).context("no answers")?),
        )
        .floor("app directly, steady", ms(steady.direct.p99)),
        Figure::new(
            "deploy start to new version answering, p50",
            "s",
            r_deploy_p50,
        )
        .floor("unrouted", u_deploy_p50),
        Figure::new(
            "deploy start to new version answering, max",
            "s",
            r_deploy_max,
        )
        .floor("unrouted", u_deploy_max),
        Figure::new(
            "rollback start to old version answering, max",
            "s",
            r_back_max,
        )
        .floor("unrouted", u_back_max),
        Figure::new(
            "requests retried on a closed keep-alive connection, routed",
            "requests",
            count(r.retried()),
        ),
    ];
    let detail = |run: &Run, times: &[(&Switch, Duration)]| {
        let s = Summary::new(&run.samples);
        json!({
            "sent": s.sent(),
            "failed": s.failed(),
            "failures": s.failures().into_iter().map(|(k, n)| json!({ "what": k, "count": n })).collect::<Vec<_>>(),
            "retried": s.retried(),
            "p50_ms": s.latency(0.5).map(ms),
            "p99_ms": s.latency(0.99).map(ms),
            "longest_silence_ms": ms(s.longest_silence()),
            "switches": times.iter().map(|(sw, d)| json!({
                "kind": sw.kind,
                "deployment_id": sw.deployment_id,
                "version": sw.version,
                "to_new_version_s": d.as_secs_f64(),
            })).collect::<Vec<_>>(),
        })
    };
    Ok(Report {
        figures,
        details: json!({
            "rate_per_s": RATE,
            "steady_window_s": STEADY.as_secs(),
            "routed": detail(routed, &r_times),
            "unrouted": detail(unrouted, &u_times),
        }),
    })
}

/// Removes the suite's containers (every name starting with the prefix)
/// when dropped.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let Ok(names) =
            sys::output(Command::new("docker").args(["ps", "-a", "--format", "{{.Names}}"]))
        else {
            return;
        };
        let ours: Vec<&str> = names.lines().filter(|n| n.starts_with(&self.0)).collect();
        if !ours.is_empty() {
            let _ = sys::output(Command::new("docker").args(["rm", "-f"]).args(&ours));
        }
    }
}
