//! A small tool to put the gateway in front of (`aims up`, the tests and the benchmarks): an
//! HTTP API and an MCP server (streamable HTTP, on the `rmcp` SDK). The HTTP API answers with
//! what reached it — whether a transaction token came, and whether an `Authorization` header
//! leaked through — so a client can see what the gateway forwards.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::Query;
use axum::routing::get;
use http::HeaderMap;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use aims_gateway::{Route, RouteKind};
use anyhow::Context as _;

#[derive(Debug, serde::Deserialize)]
struct WeatherQuery {
    city: Option<String>,
}

/// `GET /weather?city=…`: a forecast, and what the request carried.
async fn weather(Query(q): Query<WeatherQuery>, headers: HeaderMap) -> Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Json(json!({
        "city": q.city.as_deref().unwrap_or("Berlin"),
        "forecast": "sunny, 21 °C",
        "received": {
            "authorization": header("authorization"),
            "txn_token": header("txn-token"),
            "agent": header("x-aims-agent"),
            "subject": header("x-aims-subject"),
            "traceparent": header("traceparent"),
        },
    }))
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct TextArg {
    /// The text.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct PathArg {
    /// A file path.
    path: String,
}

/// The demo MCP server.
#[derive(Debug, Clone)]
struct DemoMcp {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl DemoMcp {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Echo the text back")]
    fn echo(&self, Parameters(TextArg { text }): Parameters<TextArg>) -> String {
        text
    }

    #[tool(description = "Read a (pretend) file")]
    fn read_file(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("contents of {path}")
    }

    #[tool(description = "Delete a (pretend) file")]
    fn delete_file(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("deleted {path}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("The AIMS demo tool: echo, read_file, delete_file")
    }
}

/// Serves the demo tool on `listen` (plain HTTP: it sits behind the gateway on loopback) until
/// `shutdown`: `/weather` and the MCP endpoint `/mcp`.
pub async fn serve(
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let mcp: StreamableHttpService<DemoMcp, LocalSessionManager> = StreamableHttpService::new(
        || Ok(DemoMcp::new()),
        Default::default(),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_cancellation_token(shutdown.child_token()),
    );
    let app = axum::Router::new()
        .route("/weather", get(weather))
        .nest_service("/mcp", mcp);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("demo tool: listen on {listen}"))?;
    let addr = listener.local_addr().context("demo tool: local address")?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
            .await;
    });
    tracing::info!(%addr, "demo tool listening (HTTP /weather, MCP /mcp)");
    Ok((addr, task))
}

/// The routes that put the demo tool served at `upstream` (`http://HOST:PORT`) behind a
/// gateway: `/weather` needs scope `weather.read` (which `weather` implies); the MCP server at
/// `/mcp` needs `mcp`, and `read_file` and `delete_file` need `files.read` and `files.delete`
/// too (which `files` implies).
pub fn routes(upstream: &str) -> Vec<Route> {
    let scopes = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        Route {
            name: "weather".into(),
            path_prefix: "/weather".into(),
            upstream: upstream.to_owned(),
            strip_prefix: false,
            kind: RouteKind::Http,
            resource: None,
            required_scopes: scopes(&["weather.read"]),
            tool_scopes: Default::default(),
            scope_implies: [("weather".to_owned(), scopes(&["weather.read"]))]
                .into_iter()
                .collect(),
            transaction_tokens: true,
            exchange_audience: None,
        },
        Route {
            name: "demo-mcp".into(),
            path_prefix: "/mcp".into(),
            upstream: upstream.to_owned(),
            strip_prefix: false,
            kind: RouteKind::Mcp,
            resource: None,
            required_scopes: scopes(&["mcp"]),
            tool_scopes: [
                ("read_file".to_owned(), scopes(&["mcp", "files.read"])),
                ("delete_file".to_owned(), scopes(&["mcp", "files.delete"])),
            ]
            .into_iter()
            .collect(),
            scope_implies: [("files".to_owned(), scopes(&["files.read", "files.delete"]))]
                .into_iter()
                .collect(),
            transaction_tokens: true,
            exchange_audience: None,
        },
    ]
}

/// `aims demo-tool`.
#[derive(Debug, clap::Args)]
pub struct DemoToolArgs {
    /// Where to listen (plain HTTP: put it behind a gateway on loopback).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
}

/// Serves the demo tool until Ctrl-C. Route to it from a gateway (`aims.toml`):
///
/// ```toml
/// [[gateway.route]]
/// name = "my-mcp"
/// path_prefix = "/mcp"
/// upstream = "http://127.0.0.1:9000"
/// kind = "mcp"
/// required_scopes = ["mcp"]
/// ```
pub async fn run(args: DemoToolArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let (addr, task) = serve(args.listen, stop.clone()).await?;
    tracing::info!(%addr, "demo tool: MCP at /mcp, HTTP API at /weather; Ctrl-C stops it");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stop.cancel();
    task.await.context("demo tool")?;
    Ok(())
}
