//! MCP JSON-RPC bodies (MCP 2025-11-25 basic/transports) as the gateway reads them to decide a
//! tool call: a request or a JSON-RPC error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aims_gateway::mcp::parse(data);
});
