//! The `deploy` list of a workflow: each environment with its target (a
//! container or a compose service), its health check and the defaults
//! workflow.md gives them.

use std::time::Duration;

use super::field::{Field, Result, env_vars, is_http_url};
use super::{
    ComposeTarget, ContainerTarget, DeploySpec, EnvName, HealthCheck, RollbackMode, Route,
    RouteClaim, RouteTls, Spot, Target,
};

const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

pub(super) fn deploy_spec(f: &Field<'_>) -> Result<DeploySpec> {
    let r = f.record(&[
        "environment",
        "auto",
        "branches",
        "target",
        "route",
        "health",
        "rollback",
        "timeout",
    ])?;
    let route = r.field("route").map(|f| route(&f)).transpose()?;
    let rollback = r
        .field("rollback")
        .map(|f| match f.text()?.as_str() {
            "auto" => Ok(RollbackMode::Auto),
            "manual" => Ok(RollbackMode::Manual),
            other => Err(f.error(format!(
                "invalid rollback mode \"{other}\": use auto or manual"
            ))),
        })
        .transpose()?;
    Ok(DeploySpec {
        environment: r.required("environment")?.parse_with(EnvName::parse)?,
        auto: r
            .field("auto")
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(true),
        branches: r.field("branches").map(|f| f.patterns()).transpose()?,
        target: target(&r.required("target")?, route.is_some())?,
        health: r
            .field("health")
            .map(|f| health(&f, route.is_some()))
            .transpose()?,
        route,
        rollback: rollback.unwrap_or_default(),
        timeout: r
            .field("timeout")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_DEPLOY_TIMEOUT),
    })
}

fn target(f: &Field<'_>, routed: bool) -> Result<Target> {
    let r = f.record(&["container", "compose"])?;
    match (r.field("container"), r.field("compose")) {
        (Some(c), None) => container(&c, routed).map(Target::Container),
        (None, Some(c)) => compose(&c).map(Target::Compose),
        (Some(_), Some(c)) => Err(c.key_error("use either container or compose, not both")),
        (None, None) => Err(f.error(r#"missing required key "container" or "compose""#)),
    }
}

fn container(f: &Field<'_>, routed: bool) -> Result<ContainerTarget> {
    let r = f.record(&["name", "ports", "env", "volumes", "network", "restart"])?;
    let name_field = r.required("name")?;
    let name = name_field.text_with_secrets()?;
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_name {
        return Err(name_field.error(format!(
            "invalid container name \"{name}\": use A-Z, a-z, 0-9, _, . and -, starting with a letter or digit"
        )));
    }
    let list = |key: &str| -> Result<Vec<String>> {
        r.field(key)
            .map(|f| {
                f.seq()?
                    .iter()
                    .map(|item| item.text_with_secrets().and_then(|s| item.no_blank(s)))
                    .collect()
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let restart = r
        .field("restart")
        .map(|f| {
            let policy = f.text()?;
            let valid = matches!(policy.as_str(), "no" | "always" | "unless-stopped" | "on-failure")
                || policy
                    .strip_prefix("on-failure:")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            if valid {
                Ok(policy)
            } else {
                Err(f.error(format!(
                    "invalid restart policy \"{policy}\": use no, always, unless-stopped or on-failure[:N]"
                )))
            }
        })
        .transpose()?;
    let ports = list("ports")?;
    if routed && let Some(ports_field) = r.field("ports") {
        // Two versions run side by side during a routed deploy: a fixed
        // host port would be taken twice.
        for (item, port) in ports_field.seq()?.iter().zip(&ports) {
            if fixed_host_port(port) {
                return Err(item.error(format!(
                    "\"{port}\" takes a fixed host port, which the candidate and the running version cannot share: the proxy reaches the app on route.port (use 127.0.0.1::PORT for an ephemeral one)"
                )));
            }
        }
    }
    Ok(ContainerTarget {
        name,
        ports,
        env: r
            .field("env")
            .map(|f| env_vars(&f, true))
            .transpose()?
            .unwrap_or_default(),
        volumes: list("volumes")?,
        network: r
            .field("network")
            .map(|f| f.text_with_secrets().and_then(|s| f.no_blank(s)))
            .transpose()?,
        restart,
    })
}

fn compose(f: &Field<'_>) -> Result<ComposeTarget> {
    let r = f.record(&["file", "project", "service"])?;
    let file = r.required("file")?.repo_path()?;
    let project_field = r.required("project")?;
    let project = project_field.text_with_secrets()?;
    // Compose's own rule for project names.
    let valid_project = project.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !valid_project {
        return Err(project_field.error(format!(
            "invalid compose project name \"{project}\": use a-z, 0-9, _ and -, starting with a letter or digit"
        )));
    }
    let service = r.required("service")?;
    Ok(ComposeTarget {
        file,
        project,
        service: service
            .text_with_secrets()
            .and_then(|s| service.no_blank(s))?,
    })
}

/// `route`: at least one of `domains` and `listen`, and the app's `port`.
fn route(f: &Field<'_>) -> Result<Route> {
    let r = f.record(&["domains", "tls", "listen", "port", "drain"])?;
    let spot = |f: &Field<'_>| {
        let e = f.error("");
        Spot {
            path: e.path,
            line: e.line,
            column: e.column,
        }
    };
    let mut claims = Vec::new();
    let mut domains = Vec::new();
    if let Some(list) = r.field("domains") {
        for item in list.seq()? {
            let domain = item.text()?;
            if !is_domain(&domain) {
                return Err(item.error(format!(
                    "invalid domain \"{domain}\": use a lowercase host name like app.example.com (a leading *. allowed)"
                )));
            }
            if domains.contains(&domain) {
                return Err(item.error(format!("duplicate domain \"{domain}\"")));
            }
            claims.push((RouteClaim::Domain(domain.clone()), spot(&item)));
            domains.push(domain);
        }
    }
    let listen = r
        .field("listen")
        .map(|f| {
            let port = port(&f)?;
            claims.push((RouteClaim::Listen(port), spot(&f)));
            Ok(port)
        })
        .transpose()?;
    if domains.is_empty() && listen.is_none() {
        return Err(f.error(r#"a route needs "domains", "listen" or both"#));
    }
    let tls = r
        .field("tls")
        .map(|f| {
            let s = f.text()?;
            RouteTls::parse(&s)
                .ok_or_else(|| f.error(format!("invalid tls \"{s}\": use auto, internal or off")))
        })
        .transpose()?
        .unwrap_or_default();
    Ok(Route {
        domains,
        tls,
        listen,
        port: port(&r.required("port")?)?,
        drain: r
            .field("drain")
            .map(|f| f.duration())
            .transpose()?
            .unwrap_or(DEFAULT_DRAIN),
        claims,
    })
}

fn port(f: &Field<'_>) -> Result<u16> {
    let s = f.text()?;
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
        f.error(format!(
            "invalid port \"{s}\": use a number from 1 to 65535"
        ))
    })
}

/// A lowercase DNS host name, optionally a wildcard `*.` of one.
fn is_domain(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    !name.is_empty() && name.len() <= 253 && labels_ok
}

fn health(f: &Field<'_>, routed: bool) -> Result<HealthCheck> {
    let r = f.record(&[
        "url",
        "path",
        "expect_status",
        "interval",
        "timeout",
        "watch",
    ])?;
    let url = r
        .field("url")
        .map(|url_field| {
            let url = url_field.text()?;
            if is_http_url(&url) {
                Ok(url)
            } else {
                Err(url_field.error(format!(
                    "invalid health check URL \"{url}\": use http:// or https://"
                )))
            }
        })
        .transpose()?;
    let path = match (&url, r.field("path")) {
        (Some(_), Some(p)) => return Err(p.key_error("use either url or path, not both")),
        (Some(url), None) => url_path(url),
        (None, Some(p)) => {
            let path = p.text()?;
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(p.error(format!(
                    "invalid health check path \"{path}\": it starts with / and has no spaces"
                )));
            }
            path
        }
        (None, None) if routed => "/".to_owned(),
        (None, None) => return Err(f.error(r#"missing required key "url""#)),
    };
    if url.is_none() && !routed {
        return Err(f.child("path").key_error(
            r#"an environment without "route" is probed at "url": give the whole URL"#,
        ));
    }
    let expect_status = r
        .field("expect_status")
        .map(|f| {
            let s = f.text()?;
            s.parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .ok_or_else(|| f.error(format!("invalid status code \"{s}\": use 100 to 599")))
        })
        .transpose()?;
    Ok(HealthCheck {
        url,
        path,
        expect_status: expect_status.unwrap_or(200),
        interval: r
            .field("interval")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_HEALTH_INTERVAL),
        timeout: r
            .field("timeout")
            .map(|f| f.positive_duration())
            .transpose()?
            .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        watch: r
            .field("watch")
            .map(|f| f.duration())
            .transpose()?
            .unwrap_or(Duration::ZERO),
    })
}

/// The path and query of an `http(s)://` URL, `/` when it has none.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    }
}

/// Whether a `docker -p` spec (`[ip:][hostPort:]containerPort[/proto]`)
/// names a host port, which two replicas could not share.
pub fn fixed_host_port(spec: &str) -> bool {
    let addr = spec.rsplit_once('/').map_or(spec, |(a, _)| a);
    let Some((rest, _container)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = rest.rsplit_once(':').map_or(rest, |(_, h)| h);
    !host.is_empty()
}
