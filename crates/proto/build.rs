//! Generates the gRPC code from `proto/`. Needs `protoc` (Debian's
//! `protobuf-compiler`, installed by `cargo xtask`), or `PROTOC` naming one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../../proto";
    println!("cargo:rerun-if-changed={dir}");
    tonic_prost_build::configure()
        .compile_protos(&[format!("{dir}/slipway.proto")], &[dir.to_owned()])?;
    Ok(())
}
