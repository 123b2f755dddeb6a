//! `slipway-runner [--config FILE] [healthcheck]`

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use runner::{Runner, Settings};

#[derive(Parser)]
#[command(
    version,
    about = "Slipway runner: takes tasks from the queue and runs them"
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
    telemetry::exit_code("slipway-runner", run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = telemetry::load_settings(Settings::default(), cli.config.as_deref())?;
    if let Some(Command::Healthcheck) = cli.command {
        return Ok(runner::healthcheck(&settings).await?);
    }
    // Held to the end: dropping it flushes the spans not yet exported.
    let _tracing = telemetry::init_tracing("slipway-runner", &settings.log, settings.log_json);
    let runner = Runner::build(settings).await?;
    runner.run(telemetry::shutdown_signal()).await?;
    Ok(())
}
