//! `cargo xtask up`: the whole system on this machine, in the foreground.
//! Ctrl-C (or SIGTERM) stops every process it started.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::http;
use crate::infra::{self, DEV, Infra};
use crate::sys::{self, Need};

/// The settings `up` generates once and keeps, so stored secrets stay
/// readable across restarts.
fn dev_env(base: &Path) -> Result<BTreeMap<String, String>> {
    let file = base.join("slipway.env");
    let mut env = BTreeMap::new();
    if let Ok(text) = fs::read_to_string(&file) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                env.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
    }
    for key in [
        "SLIPWAY_API_TOKEN",
        "SLIPWAY_SECRET_KEY",
        "SLIPWAY_GITHUB_SECRET",
        "SLIPWAY_GITLAB_TOKEN",
    ] {
        if let Ok(v) = std::env::var(key) {
            env.insert(key.to_owned(), v);
        }
        env.entry(key.to_owned())
            .or_insert_with(|| sys::random_hex(24));
    }
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    // Tokens and the secret key: for the owner's eyes only.
    fs::write(&file, text)?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
    Ok(env)
}

/// A service process whose output is printed with its name in front.
struct Service {
    name: &'static str,
    child: Child,
}

fn spawn(
    name: &'static str,
    binary: &Path,
    args: &[&str],
    env: &BTreeMap<String, String>,
) -> Result<Service> {
    let mut child = Command::new(binary)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches xtask alone,
        // which then stops the services in order.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if let Some(out) = child.stdout.take() {
        prefix(name, out);
    }
    if let Some(err) = child.stderr.take() {
        prefix(name, err);
    }
    Ok(Service { name, child })
}

fn prefix(name: &'static str, stream: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[{name:12}] {line}");
        }
    });
}

pub fn run() -> Result<()> {
    let mut needs = infra::build_needs();
    needs.extend(infra::infra_needs());
    needs.push(Need {
        package: "golang-go",
        present: || sys::has("go"),
    });
    sys::ensure(&needs)?;

    let (tx, stop) = mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    let root = sys::root();
    let base = infra::base_dir(DEV);
    let mut infra = Infra::start(DEV)?;
    let result = serve(&root, &base, &infra, &stop);
    infra.stop();
    result
}

fn serve(root: &Path, base: &Path, infra: &Infra, stop: &mpsc::Receiver<()>) -> Result<()> {
    eprintln!("xtask: building the services and the slipway CLI (release)");
    sys::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(root)
            .args([
                "build",
                "--release",
                "-p",
                "orchestrator",
                "-p",
                "gateway",
                "-p",
                "runner",
                "-p",
                "notifier",
                "-p",
                "cli",
            ]),
    )?;
    let bin = root.join("target/release");

    let mut env = dev_env(base)?;
    env.insert("SLIPWAY_DATABASE_URL".into(), infra.database_url.clone());
    env.insert("SLIPWAY_AMQP_URL".into(), infra.amqp_url.clone());
    env.insert("SLIPWAY_REGISTRY".into(), infra.registry.clone());
    env.entry("SLIPWAY_DATA_DIR".into())
        .or_insert_with(|| base.join("data").display().to_string());
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("SLIPWAY_")) {
        env.insert(k, v);
    }
    let http_addr = env
        .get("SLIPWAY_HTTP_ADDR")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    // Links in alerts point at this gateway.
    env.entry("SLIPWAY_PUBLIC_URL".into())
        .or_insert_with(|| format!("http://{http_addr}"));

    sys::run(
        Command::new(bin.join("slipway-orchestrator"))
            .arg("migrate")
            .envs(&env),
    )?;
    let mut services = vec![spawn(
        "orchestrator",
        &bin.join("slipway-orchestrator"),
        &["serve"],
        &env,
    )?];
    let result = (|| {
        services.push(spawn("gateway", &bin.join("slipway-gateway"), &[], &env)?);
        services.push(spawn("runner", &bin.join("slipway-runner"), &[], &env)?);
        services.push(spawn("notifier", &bin.join("slipway-notifier"), &[], &env)?);
        sys::wait_for("the gateway", Duration::from_secs(60), || {
            http::request(&http_addr, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
        })?;
        let token = env.get("SLIPWAY_API_TOKEN").cloned().unwrap_or_default();
        let example = register_example(root, base, &http_addr, &token)?;
        print_banner(&http_addr, &env, &example, &bin.join("slipway"));
        watch(&mut services, stop)
    })();
    // Stop in reverse order of start: notifier, runner, gateway, orchestrator.
    for service in services.iter_mut().rev() {
        eprintln!("xtask: stopping {}", service.name);
        infra::stop_child(&mut service.child, Duration::from_secs(15));
    }
    result
}

/// Waits for Ctrl-C, or for a service to exit on its own.
fn watch(services: &mut [Service], stop: &mpsc::Receiver<()>) -> Result<()> {
    loop {
        match stop.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for s in services.iter_mut() {
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!("{} exited with {status}", s.name);
            }
        }
    }
}

struct Example {
    workflow_id: String,
    repo: PathBuf,
    task_id: String,
}

/// Pushes the bundled example to a local bare repository and registers its
/// workflow (or updates it), then starts a first run.
fn register_example(root: &Path, base: &Path, addr: &str, token: &str) -> Result<Example> {
    let source = root.join("examples/hello-go");
    let repos = base.join("repos");
    let bare = repos.join("hello-go.git");
    let work = repos.join("hello-go-work");
    let git = |dir: &Path, args: &[&str]| {
        sys::output(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=Slipway",
                    "-c",
                    "user.email=slipway@localhost",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .current_dir(dir),
        )
    };
    fs::create_dir_all(&repos)?;
    if !bare.join("HEAD").is_file() {
        git(
            &repos,
            &["init", "-q", "--bare", "-b", "main", "hello-go.git"],
        )?;
    }
    let _ = fs::remove_dir_all(&work);
    git(
        &repos,
        &[
            "clone",
            "-q",
            bare.to_str().context("path is not UTF-8")?,
            "hello-go-work",
        ],
    )?;
    let _ = git(&work, &["checkout", "-q", "-B", "main"]);
    for entry in
        fs::read_dir(&source).with_context(|| format!("cannot read {}", source.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), work.join(entry.file_name()))?;
        }
    }
    git(&work, &["add", "-A"])?;
    if !git(&work, &["status", "--porcelain"])?.trim().is_empty() {
        git(&work, &["commit", "-q", "-m", "hello-go example"])?;
        git(&work, &["push", "-q", "origin", "main"])?;
    }

    let template = fs::read_to_string(source.join("slipway.yml"))?;
    let definition = template.replace("{{repo}}", &format!("file://{}", bare.display()));
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/yaml"),
    ];
    let created = http::request(
        addr,
        "POST",
        "/api/workflows",
        &headers,
        definition.as_bytes(),
    )?;
    let workflow_id = match created.status {
        201 => json_field(&created.body, "id").context("no id in the answer")?,
        409 => {
            let list = http::request(addr, "GET", "/api/workflows", &headers, b"")?;
            let id = find_workflow_id(&list.body, "hello-go")
                .context("hello-go is taken but not listed")?;
            let updated = http::request(
                addr,
                "PUT",
                &format!("/api/workflows/{id}"),
                &headers,
                definition.as_bytes(),
            )?;
            if updated.status != 200 {
                bail!(
                    "cannot update the example workflow: {} {}",
                    updated.status,
                    updated.body
                );
            }
            id
        }
        other => bail!(
            "cannot register the example workflow: {other} {}",
            created.body
        ),
    };
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let run = http::request(
        addr,
        "POST",
        &format!("/api/workflows/{workflow_id}/run"),
        &json,
        br#"{"branch":"main"}"#,
    )?;
    let task_id = json_field(&run.body, "task_id").unwrap_or_else(|| "?".to_owned());
    Ok(Example {
        workflow_id,
        repo: bare,
        task_id,
    })
}

/// The value of a numeric field in a flat JSON object.
fn json_field(body: &str, key: &str) -> Option<String> {
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = body[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

fn find_workflow_id(list: &str, name: &str) -> Option<String> {
    list.split('{')
        .find(|obj| obj.contains(&format!("\"name\":\"{name}\"")))
        .and_then(|obj| json_field(&format!("{{{obj}"), "id"))
}

fn print_banner(addr: &str, env: &BTreeMap<String, String>, example: &Example, slipway: &Path) {
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let grpc_addr = env
        .get("SLIPWAY_GRPC_ADDR")
        .map_or("127.0.0.1:50051", String::as_str);
    let token = get("SLIPWAY_API_TOKEN");
    let task = &example.task_id;
    let lines = [
        String::new(),
        "=".repeat(64),
        "Slipway is up.".to_owned(),
        String::new(),
        format!("  dashboard and API:  http://{addr}/"),
        format!("  API token:          {token}"),
        format!("  GitHub secret:      {}", get("SLIPWAY_GITHUB_SECRET")),
        format!("  GitLab token:       {}", get("SLIPWAY_GITLAB_TOKEN")),
        String::new(),
        format!(
            "The example workflow hello-go (id {}) builds {};",
            example.workflow_id,
            example.repo.display()
        ),
        format!("its first task is {task}:"),
        String::new(),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/tasks/{task}"),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/tasks/{task}/logs"),
        String::new(),
        "Or with the CLI (docs/cli.md):".to_owned(),
        format!(
            "  SLIPWAY_ORCHESTRATOR_URL=http://{grpc_addr} SLIPWAY_API_TOKEN={token} {} logs -f {task}",
            slipway.display()
        ),
        String::new(),
        "Once it is green, the app answers on dev: curl http://127.0.0.1:18081/health".to_owned(),
        String::new(),
        "Alerts and their deliveries (notify: rules in a workflow, or".to_owned(),
        "SLIPWAY_DEFAULT_NOTIFY for all of them, say where they go):".to_owned(),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/alerts"),
        String::new(),
        "Push to that repository and deliver a webhook to".to_owned(),
        format!("http://{addr}/api/webhooks/github or /api/webhooks/gitlab."),
        "Ctrl-C stops everything.".to_owned(),
        "=".repeat(64),
    ];
    eprintln!("{}", lines.join("\n"));
}
