//! `slipway-orchestrator [--config FILE] [serve|migrate]`

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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::exit_code("slipway-orchestrator", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = telemetry::load_settings(Settings::default(), cli.config.as_deref())?;
    // Held to the end: dropping it flushes the spans not yet exported.
    let _tracing =
        telemetry::init_tracing("slipway-orchestrator", &settings.log, settings.log_json);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let applied = orchestrator::migrate(&settings.database_url).await?;
            println!("applied {} migration(s)", applied.len());
        }
        Command::Serve => {
            let orchestrator = Orchestrator::build(settings).await?;
            orchestrator.run(telemetry::shutdown_signal()).await?;
        }
    }
    Ok(())
}
