//! `slipway-notifier [--config FILE] [healthcheck]`

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use notifier::{Notifier, Settings};

#[derive(Parser)]
#[command(
    version,
    about = "Slipway notifier: delivers alerts to Slack, e-mail, DingTalk and webhooks"
)]
struct Cli {
    /// TOML file with settings; SLIPWAY_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Probe the running service (exit 0 healthy, 1 otherwise); see deploy/README.md.
    Healthcheck,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::exit_code("slipway-notifier", run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = telemetry::load_settings(Settings::default(), cli.config.as_deref())?;
    if let Some(Command::Healthcheck) = cli.command {
        return Ok(notifier::healthcheck(&settings).await?);
    }
    // Held to the end: dropping it flushes the spans not yet exported.
    let _tracing = telemetry::init_tracing("slipway-notifier", &settings.log, settings.log_json);
    let notifier = Notifier::build(settings).await?;
    notifier.run(telemetry::shutdown_signal()).await?;
    Ok(())
}
