//! An agent on the AIMS SDK: its identity from the Workload API, a DPoP-bound token obtained
//! with its JWT-SVID, and an MCP `tools/call` through the AIMS gateway with a proof per call.
//!
//! ```sh
//! cargo run --release -- up --register-self &          # the local stack, in another shell
//! cargo run -p aims-sdk --example agent -- .aims/up.json "hello"
//! ```
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use aims_sdk::dpop::DpopKey;
use aims_sdk::oauth::TokenClient;
use aims_sdk::source::JwtSource;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let up_path = args.next().unwrap_or_else(|| ".aims/up.json".into());
    let text = args
        .next()
        .unwrap_or_else(|| "hello from a Rust agent".into());
    let up: Value = serde_json::from_str(&std::fs::read_to_string(&up_path)?)?;
    let field = |v: &Value| v.as_str().map(str::to_owned).ok_or("up.json lacks a field");
    let issuer = field(&up["server"]["oauth_issuer"])?;
    let socket = field(&up["agent"]["workload_api_socket"])?;
    let mcp = up["gateway"]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "demo-mcp"))
        .ok_or("no demo-mcp route")?;
    let (url, resource) = (field(&mcp["url"])?, field(&mcp["resource"])?);
    let ca = std::fs::read(field(&up["server"]["web_ca_file"])?)?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .build()?;

    // Identity and token: the key never leaves this process.
    let svids = Arc::new(JwtSource::new(std::path::Path::new(&socket), None));
    let tokens = TokenClient::new(issuer, http.clone(), svids);
    let key = DpopKey::generate()?;
    let token = tokens
        .client_credentials(&resource, "mcp", Some(&key))
        .await?;

    // The tool call, with a DPoP proof bound to the token.
    let proof = key.proof("POST", &url, Some(&token.access_token), None)?;
    let answer: Value = http
        .post(&url)
        .header("authorization", format!("DPoP {}", token.access_token))
        .header("dpop", proof)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": text}}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("{}", answer["result"]["content"][0]["text"]);
    Ok(())
}
