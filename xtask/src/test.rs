//! `cargo xtask test`: infrastructure, then the compose file's check, fmt,
//! clippy with warnings denied, every test against the real Postgres and
//! RabbitMQ, and a short chaos run (docs/chaos.md).

use std::process::Command;

use anyhow::Result;

use crate::bench::Cancel;
use crate::infra::{self, Infra, TEST};
use crate::sys;

pub fn run(filters: &[String]) -> Result<()> {
    let mut needs = infra::build_needs();
    needs.extend(infra::infra_needs(true));
    needs.extend(browser_needs());
    needs.push(compose_need());
    // The runner on a second "host" lives in a network namespace.
    needs.push(sys::Need {
        package: "iproute2",
        present: || sys::has("ip"),
    });
    // The TLS tests make a throwaway CA with it.
    needs.push(sys::Need {
        package: "openssl",
        present: || sys::has("openssl"),
    });
    // The image test assembles the image from these files.
    needs.extend(crate::images::needs());
    sys::ensure(&needs)?;
    // Ctrl-C reaches the test run too (same process group); xtask itself
    // stays to stop the infrastructure it started, and the chaos run sees
    // the flag at its next wait.
    let cancel = Cancel::install()?;
    let mut infra = Infra::start(TEST)?;
    let result = checks(&infra, filters, cancel);
    infra.stop();
    result
}

/// The headless browser the dashboard tests drive over WebDriver.
fn browser_needs() -> [sys::Need; 2] {
    [
        sys::Need {
            package: "chromium",
            present: || std::path::Path::new("/usr/bin/chromium").is_file(),
        },
        sys::Need {
            package: "chromium-driver",
            present: || sys::has("chromedriver"),
        },
    ]
}

/// What checks `compose/docker-compose.yml`.
fn compose_need() -> sys::Need {
    sys::Need {
        package: "docker-compose",
        present: || sys::has("docker-compose"),
    }
}

/// The compose file must stay valid with the example settings a user
/// starts from; `config -q` checks it without pulling or starting anything.
fn compose_config() -> Result<()> {
    eprintln!("xtask: docker-compose config");
    sys::run(
        Command::new("docker-compose")
            .current_dir(sys::root())
            .args([
                "-f",
                "compose/docker-compose.yml",
                "--env-file",
                "compose/.env.example",
                "config",
                "-q",
            ]),
    )
}

fn checks(infra: &Infra, filters: &[String], cancel: Cancel) -> Result<()> {
    compose_config()?;
    eprintln!("xtask: cargo fmt --check");
    sys::run(sys::cargo().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("xtask: cargo clippy");
    sys::run(sys::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let nextest = sys::cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = sys::cargo();
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found; using cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(filters)
        .env("SLIPWAY_TEST_DATABASE_URL", &infra.database_url)
        .env("SLIPWAY_TEST_AMQP_URL", &infra.amqp_url)
        .env("SLIPWAY_TEST_REGISTRY", &infra.registry);
    sys::run(&mut cmd)?;
    // The whole system killed piece by piece under pushes; a filtered run
    // is after single tests, not this.
    if filters.is_empty() {
        eprintln!("xtask: chaos (short)");
        crate::chaos::short(cancel)?;
    }
    Ok(())
}

/// Starts the test infrastructure and waits for Ctrl-C.
pub fn infra_foreground() -> Result<()> {
    sys::ensure(&infra::infra_needs(true))?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;
    let mut infra = Infra::start(TEST)?;
    eprintln!(
        "xtask: infrastructure up; Ctrl-C stops it\n  export SLIPWAY_TEST_DATABASE_URL={}\n  export SLIPWAY_TEST_AMQP_URL={}\n  export SLIPWAY_TEST_REGISTRY={}",
        infra.database_url, infra.amqp_url, infra.registry
    );
    let _ = rx.recv();
    infra.stop();
    Ok(())
}
