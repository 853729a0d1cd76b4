//! Generates the agent protocol code with `protox` (no `protoc` needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/aims/agent/v1/agent.proto");
    let fds = protox::compile(["aims/agent/v1/agent.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
