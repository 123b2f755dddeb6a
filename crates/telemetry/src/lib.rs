//! What every Slipway binary does at start: read its typed settings (defaults,
//! then an optional TOML file, then `SLIPWAY_*` variables) and set up logging
//! and distributed tracing ([`trace`], [`propagation`]).

pub mod propagation;
pub mod trace;

pub mod health;
pub mod metrics;
pub mod size;

use std::path::Path;

use figment::Figment;
use std::collections::BTreeMap;

use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A setting that could not be read; its message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(String);

/// Reads settings: `defaults`, overridden by the TOML file at `config` (when
/// given), overridden by `SLIPWAY_<FIELD>` environment variables.
pub fn load_settings<T>(defaults: T, config: Option<&Path>) -> Result<T, SettingsError>
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = config {
        if !path.exists() {
            return Err(SettingsError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    // Variables are taken as strings and converted only where a field asks
    // for a number or a bool: a token made of digits stays a token.
    let vars: BTreeMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("SLIPWAY_")?.to_ascii_lowercase(), v)))
        .collect();
    figment = figment.merge(Serialized::defaults(vars));
    figment
        .extract_lossy()
        .map_err(|e| SettingsError(describe(&e)))
}

fn describe(err: &figment::Error) -> String {
    let mut out = String::new();
    for e in err.clone() {
        if !out.is_empty() {
            out.push_str("; ");
        }
        match e.path.last() {
            Some(key) => out.push_str(&format!("SLIPWAY_{}: {}", key.to_ascii_uppercase(), e.kind)),
            None => out.push_str(&e.kind.to_string()),
        }
    }
    out
}

/// An error as one line: the start-up failure a service prints before it
/// exits (libpq, for one, puts hints on lines of their own).
pub fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a service's `main` ends: success, or its error on one line on stderr
/// and exit status 1.
pub fn exit_code<E: std::fmt::Display>(
    service: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets up logging, and span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set (see [`trace::Export::from_env`]). `filter` is `SLIPWAY_LOG` (e.g.
/// `info`, `slipway=debug`); JSON lines when `json` is set, else
/// human-readable. `service` is the default `service.name` of the spans.
///
/// Keep the returned guard until the service stops: dropping it flushes the
/// spans not yet exported.
pub fn init_tracing(service: &str, filter: &str, json: bool) -> trace::Tracing {
    trace::init(filter, json, trace::Export::from_env(service))
}

/// Resolves on Ctrl-C or SIGTERM: the shutdown every service's `main` waits on.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Demo {
        demo_token: String,
        demo_port: u16,
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the error type
    fn environment_overrides_defaults_and_digits_stay_strings() {
        // Names unique to this test: the environment is shared by the process.
        figment::Jail::expect_with(|jail| {
            jail.set_env("SLIPWAY_DEMO_TOKEN", "12345");
            jail.set_env("SLIPWAY_DEMO_PORT", "8081");
            let got = load_settings(
                Demo {
                    demo_token: "x".into(),
                    demo_port: 1,
                },
                None,
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(got.demo_token, "12345");
            assert_eq!(got.demo_port, 8081);
            jail.set_env("SLIPWAY_DEMO_PORT", "http");
            let err = load_settings(
                Demo {
                    demo_token: "x".into(),
                    demo_port: 1,
                },
                None,
            )
            .unwrap_err();
            assert!(err.to_string().contains("SLIPWAY_DEMO_PORT"), "{err}");
            Ok(())
        });
    }
}
