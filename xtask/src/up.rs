//! `cargo xtask up`: the whole system on this machine, in the foreground,
//! with the edge proxy in front of the example's environment (and of the
//! gateway itself when `SLIPWAY_DOMAIN` is set), the services supervised (a
//! service that dies is started again; services.rs). Ctrl-C (or SIGTERM)
//! stops every process it started.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, Result, bail};

use crate::api::Api;
use crate::git::LocalRepo;
use crate::infra::{self, DEV, Infra};
use crate::proxy::Ports;
use crate::services::{self, Logs, Services};
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

pub fn run() -> Result<()> {
    let mut needs = infra::build_needs();
    needs.extend(infra::infra_needs(true));
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

    let base = infra::base_dir(DEV);
    let mut infra = Infra::start(DEV)?;
    let result = serve(&base, &mut infra, &stop);
    infra.stop();
    result
}

fn serve(base: &Path, infra: &mut Infra, stop: &mpsc::Receiver<()>) -> Result<()> {
    let bin = services::build_release()?;

    let mut env = dev_env(base)?;
    env.insert("SLIPWAY_DATABASE_URL".into(), infra.database_url.clone());
    env.insert("SLIPWAY_AMQP_URL".into(), infra.amqp_url.clone());
    env.insert("SLIPWAY_REGISTRY".into(), infra.registry.clone());
    if infra.own_registry() {
        // The bundled registry allows deletes and collects at start.
        env.insert("SLIPWAY_REGISTRY_DELETE".into(), "true".into());
    }
    env.entry("SLIPWAY_DATA_DIR".into())
        .or_insert_with(|| base.join("data").display().to_string());
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("SLIPWAY_")) {
        env.insert(k, v);
    }
    let http_addr = env
        .get("SLIPWAY_HTTP_ADDR")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let domain = env.get("SLIPWAY_DOMAIN").filter(|d| !d.is_empty()).cloned();
    if let Some(domain) = &domain
        && !is_host_name(domain)
    {
        bail!("SLIPWAY_DOMAIN={domain:?} is not a host name like ci.example.com");
    }

    // The proxy's data next to the runner's, where the runner looks for its
    // admin socket by default.
    let data_dir = std::path::absolute(&env["SLIPWAY_DATA_DIR"])?;
    let private = DEV
        .proxy_ports
        .context("the dev profile has no proxy ports")?;
    // ACME needs the public ports; otherwise private ones leave 80 and 443
    // to whatever else this machine serves.
    let ports = Ports::from_env(if domain.is_some() {
        Ports::PUBLIC
    } else {
        private
    })?;
    let proxy = infra.start_proxy(&data_dir.join("proxy"), ports)?;
    env.extend(proxy.env());
    match &domain {
        Some(domain) => proxy
            .admin
            .serve_gateway(domain, &dial_addr(&http_addr), ports.https)?,
        // A domain of an earlier run is not served any more.
        None if proxy.owned() => proxy.admin.forget_gateway()?,
        None => {}
    }
    let proxy_storage = proxy.storage.clone();
    // Links in alerts point at this gateway.
    let public_url = domain
        .as_ref()
        .map_or_else(|| format!("http://{http_addr}"), |d| format!("https://{d}"));
    env.entry("SLIPWAY_PUBLIC_URL".into()).or_insert(public_url);

    let options = services::Options {
        runners: 1,
        supervise: true,
    };
    let mut services = Services::start(&bin, &env, &Logs::Terminal, &http_addr, options)?;
    let token = env.get("SLIPWAY_API_TOKEN").cloned().unwrap_or_default();
    let api = Api::new(&http_addr, &token);
    let example = register_example(base, &api)?;
    print_banner(&Banner {
        addr: &http_addr,
        env: &env,
        example: &example,
        slipway: &bin.join("slipway"),
        proxy_storage: proxy_storage.as_deref(),
    });
    services.watch(stop)
}

/// A lowercase DNS host name (what a certificate can be issued for).
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Where the proxy on this host reaches a listener bound to `addr`: an
/// unspecified address is reached on loopback.
fn dial_addr(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => addr.to_owned(),
    }
}

struct Example {
    workflow_id: u64,
    repo: PathBuf,
    task_id: u64,
    /// The port the edge proxy serves the example's `dev` on.
    listen: Option<u16>,
}

/// Pushes the bundled example to a local bare repository and registers its
/// workflow (or updates it), then starts a first run.
fn register_example(base: &Path, api: &Api) -> Result<Example> {
    let source = sys::root().join("examples/hello-go");
    let repo = LocalRepo::open(&base.join("repos"), "hello-go")?;
    for entry in
        fs::read_dir(&source).with_context(|| format!("cannot read {}", source.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name();
            let name = name.to_str().context("file name is not UTF-8")?;
            repo.write(name, &fs::read(entry.path())?)?;
        }
    }
    repo.commit("hello-go example")?;

    let template = fs::read_to_string(source.join("slipway.yml"))?;
    let definition = crate::git::with_repo(&template, &repo.url());
    let workflow_id = api.register("hello-go", &definition)?;
    let task_id = api.run(workflow_id, None)?;
    let listen = template
        .lines()
        .find_map(|line| line.trim().strip_prefix("listen:"))
        .and_then(|port| port.trim().parse().ok());
    Ok(Example {
        workflow_id,
        repo: repo.bare,
        task_id,
        listen,
    })
}

/// What the banner shows.
struct Banner<'a> {
    addr: &'a str,
    env: &'a BTreeMap<String, String>,
    example: &'a Example,
    slipway: &'a Path,
    /// Where the proxy keeps certificates and its local CA, if `up`
    /// started it.
    proxy_storage: Option<&'a Path>,
}

fn print_banner(b: &Banner<'_>) {
    let get = |k: &str| b.env.get(k).cloned().unwrap_or_default();
    let addr = b.addr;
    let grpc_addr = b
        .env
        .get("SLIPWAY_GRPC_ADDR")
        .map_or("127.0.0.1:50051", String::as_str);
    let token = get("SLIPWAY_API_TOKEN");
    let task = b.example.task_id;
    let mut lines = vec![
        String::new(),
        "=".repeat(64),
        "Slipway is up.".to_owned(),
        String::new(),
        format!("  dashboard and API:  http://{addr}/"),
    ];
    if let Some(domain) = b.env.get("SLIPWAY_DOMAIN").filter(|d| !d.is_empty()) {
        lines.push(format!(
            "  through the proxy:  https://{domain}/ (certificate from ACME: point the domain's DNS at this host)"
        ));
    }
    lines.extend([
        format!("  API token:          {token}"),
        format!("  GitHub secret:      {}", get("SLIPWAY_GITHUB_SECRET")),
        format!("  GitLab token:       {}", get("SLIPWAY_GITLAB_TOKEN")),
        format!(
            "  edge proxy:         {} (HTTP port {}, HTTPS port {})",
            get("SLIPWAY_PROXY_ADMIN"),
            get("SLIPWAY_PROXY_HTTP_PORT"),
            get("SLIPWAY_PROXY_HTTPS_PORT")
        ),
    ]);
    if let Some(storage) = b.proxy_storage {
        lines.push(format!(
            "  proxy's local CA:   {}",
            storage.join("pki/authorities/local/root.crt").display()
        ));
    }
    lines.extend([
        String::new(),
        format!(
            "The example workflow hello-go (id {}) builds {};",
            b.example.workflow_id,
            b.example.repo.display()
        ),
        format!("its first task is {task}:"),
        String::new(),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/tasks/{task}"),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/tasks/{task}/logs"),
        String::new(),
        "Or with the CLI (docs/cli.md):".to_owned(),
        format!(
            "  SLIPWAY_ORCHESTRATOR_URL=http://{grpc_addr} SLIPWAY_API_TOKEN={token} {} logs -f {task}",
            b.slipway.display()
        ),
        String::new(),
    ]);
    if let Some(port) = b.example.listen {
        lines.extend([
            "Once it is green, the app answers on dev through the edge proxy:".to_owned(),
            format!("  curl http://127.0.0.1:{port}/"),
            "Each new commit starts beside the running version and gets the".to_owned(),
            "traffic once healthy, without a request dropped.".to_owned(),
            String::new(),
        ]);
    }
    lines.extend([
        "Alerts and their deliveries (notify: rules in a workflow, or".to_owned(),
        "SLIPWAY_DEFAULT_NOTIFY for all of them, say where they go):".to_owned(),
        format!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/alerts"),
        String::new(),
        "Push to that repository and deliver a webhook to".to_owned(),
        format!("http://{addr}/api/webhooks/github or /api/webhooks/gitlab."),
        "Ctrl-C stops everything.".to_owned(),
        "=".repeat(64),
    ]);
    eprintln!("{}", lines.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::{dial_addr, is_host_name};

    #[test]
    fn the_proxy_dials_unspecified_addresses_on_loopback() {
        assert_eq!(dial_addr("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(dial_addr("[::]:8080"), "[::1]:8080");
        assert_eq!(dial_addr("10.1.2.3:8080"), "10.1.2.3:8080");
        assert_eq!(dial_addr("gateway:8080"), "gateway:8080");
    }

    #[test]
    fn domains_are_lowercase_host_names() {
        assert!(is_host_name("ci.acme.example"));
        for bad in [
            "CI.acme.example",
            "localhost",
            "ci..example",
            "-a.example",
            "a b.example",
            "https://ci.example",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
