//! MCP JSON-RPC bodies (MCP 2025-11-25 / 2026-07-28 basic/transports) and their SEP-2243 routing
//! headers as the gateway reads them to decide a tool call: a request or a JSON-RPC error,
//! never a panic. Input: an `Mcp-Name` value, a NUL byte, then the body (no NUL: no header).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    let body = match data.iter().position(|b| *b == 0) {
        Some(at) => {
            if let Ok(v) = http::HeaderValue::from_bytes(&data[..at]) {
                headers.insert("mcp-name", v);
                headers.insert(
                    "mcp-protocol-version",
                    http::HeaderValue::from_static("2026-07-28"),
                );
            }
            &data[at + 1..]
        }
        None => data,
    };
    let _ = aims_gateway::mcp::parse(body, &headers);
});
