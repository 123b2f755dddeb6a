//! `slipway-orchestrator [--config FILE] [serve|migrate|healthcheck]`

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use orchestrator::{Orchestrator, Settings};

#[derive(Parser)]
#[command(
    version,
    about = "Slipway orchestrator: database, scheduling, gRPC API"
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
    /// Migrate, then serve the gRPC API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Probe the running orchestrator (exit 0 healthy, 1 otherwise); see deploy/README.md.
    Healthcheck,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::exit_code("slipway-orchestrator", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = telemetry::load_settings(Settings::default(), cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Healthcheck = command {
        return Ok(orchestrator::healthcheck(&settings).await?);
    }
    // Held to the end: dropping it flushes the spans not yet exported.
    let _tracing =
        telemetry::init_tracing("slipway-orchestrator", &settings.log, settings.log_json);
    match command {
        Command::Migrate => {
            let applied = orchestrator::migrate(&settings.database_url).await?;
            println!("applied {} migration(s)", applied.len());
        }
        Command::Healthcheck | Command::Serve => {
            let orchestrator = Orchestrator::build(settings).await?;
            orchestrator.run(telemetry::shutdown_signal()).await?;
        }
    }
    Ok(())
}
