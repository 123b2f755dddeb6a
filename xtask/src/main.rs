//! `cargo xtask`: the one entry point for working on Slipway.
//!
//! - `cargo xtask up`: install what is missing, start private Postgres,
//!   RabbitMQ and the edge proxy (or use `SLIPWAY_DATABASE_URL`,
//!   `SLIPWAY_AMQP_URL`, `SLIPWAY_PROXY_ADMIN`), build and start the
//!   services, register the bundled example, stay in the foreground until
//!   Ctrl-C.
//! - `cargo xtask test`: the same infrastructure, then fmt, clippy and every
//!   test.
//! - `cargo xtask images [--debug]`: the `slipway/slipway` image, built
//!   from local files only (see deploy/README.md).
//! - `cargo xtask infra`: only the test profile's Postgres and RabbitMQ, in
//!   the foreground, for running single tests with `cargo nextest`.
//! - `cargo xtask bench [suite...]`: the release stack on a durable
//!   database in a temporary directory, then the named suites (all without
//!   a name); docs/benchmarks.md.
//! - `cargo xtask chaos [--pushes N] [--seconds S] [--debug]`: signed pushes
//!   while every part of the system is killed and started again, then the
//!   drain and what became of each push, task and alert; docs/chaos.md.
//! - `cargo xtask fuzz [--seconds N] [target...]`: every fuzz target (or
//!   the named ones) for N seconds each on nightly, installing cargo-fuzz
//!   when missing; fails if one crashed (docs/fuzzing.md).

mod api;
mod bench;
mod chaos;
mod docker;
mod fuzz;
mod git;
mod http;
mod images;
mod infra;
mod proxy;
mod services;
mod sys;
mod test;
mod up;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up::run(),
        Some("test") => test::run(&args[1..]),
        Some("infra") => test::infra_foreground(),
        Some("images") => images::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("chaos") => chaos::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <up|test [test filters...]|infra|images [--debug]|bench [suite...]|chaos [--pushes N] [--seconds S] [--debug]|fuzz [--seconds N] [target...]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
