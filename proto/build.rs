//! Generates the `confide.v1` types and services with a vendored `protoc`, so a
//! fresh machine needs no system protobuf compiler; and, apart from them (not
//! in the reflection descriptor), the benchmark's echo service
//! `confide.bench.v1`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "confide/v1/common.proto",
        "confide/v1/auth.proto",
        "confide/v1/devices.proto",
        "confide/v1/key_packages.proto",
        "confide/v1/groups.proto",
        "confide/v1/delivery.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("confide_v1_descriptor.bin"))
        .bytes(".")
        .compile_protos(&protos, &["."])?;
    let bench = ["confide/bench/v1/echo.proto"];
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&bench, &["."])?;
    for proto in protos.iter().chain(&bench) {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
