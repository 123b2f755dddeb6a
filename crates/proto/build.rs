//! Generates the gRPC code from `proto/`, and the file descriptor set the
//! orchestrator serves over gRPC server reflection. Needs `protoc` (Debian's
//! `protobuf-compiler`, installed by `cargo xtask`), or `PROTOC` naming one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../../proto";
    println!("cargo:rerun-if-changed={dir}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("slipway_descriptor.bin"))
        .compile_protos(&[format!("{dir}/slipway.proto")], &[dir.to_owned()])?;
    Ok(())
}
