//! The build script of each service's crate: how its binaries link.
//!
//! On Linux with glibc, relative relocations are packed (`DT_RELR`, GNU ld
//! 2.38 and glibc 2.36 or newer, as on Debian 12): the loader then reads a
//! few kilobytes of them at start instead of a table of about a megabyte,
//! which stayed resident in every service for as long as it ran.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=../bin-link.rs");
}
