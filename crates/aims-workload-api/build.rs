//! Generates the Workload API code from the vendored proto with `protox` (a pure-Rust protobuf
//! compiler: no `protoc` is needed on the build machine).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/workload.proto");
    let fds = protox::compile(["workload.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
