//! `slipway`: the command-line client of Slipway. It talks only to the
//! orchestrator's public gRPC API (`slipway.v1.Slipway`), except `validate`,
//! which checks a workflow file offline with the server's own parser.
//!
//! Exit codes are part of the interface (docs/cli.md): see [`error::exit`].

mod args;
mod client;
mod commands;
mod error;
mod insights;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors: clap prints them and exits with 2.
    let cli = args::Cli::parse();
    let format = cli.output;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let err = error::Error::Io(format!("cannot start the async runtime: {e}"));
            err.print(format);
            return ExitCode::from(err.exit_code());
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            err.print(format);
            ExitCode::from(err.exit_code())
        }
    }
}
