//! An MCP tool server (streamable HTTP, on the official `rmcp` SDK) to put behind the AIMS
//! gateway: `echo`, `read_file` and `delete_file`, and a small HTTP API at `/weather`. It is
//! the tool `aims up` runs by default, standalone.
//!
//! ```sh
//! cargo run -p aims-gateway --example mcp_tool -- 127.0.0.1:9000
//! ```
//! then route to it (`aims.toml`):
//! ```toml
//! [[gateway.route]]
//! name = "my-mcp"
//! path_prefix = "/mcp"
//! upstream = "http://127.0.0.1:9000"
//! kind = "mcp"
//! required_scopes = ["mcp"]
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, task) = aims_gateway::demo_tool::serve(listen, stop.clone()).await?;
    println!("MCP tool server at http://{addr}/mcp (HTTP API at /weather); Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    task.await?;
    Ok(())
}
