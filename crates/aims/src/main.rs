//! `aims`: the Agent Identity Management System in one binary.
#![forbid(unsafe_code)]

mod balancer;
mod cmd;
mod config;
mod demo_tool;
mod telemetry;
mod up_file;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// mimalloc instead of glibc's allocator: the gateway and the token endpoint allocate per
/// request (headers, JSON, TLS records), and glibc malloc and free took about 15 % of the
/// gateway's core in the issue-17 profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AIMS — identities, credentials and access for AI agents (draft-ietf-wimse-aims).
///
/// Every agent gets one SPIFFE ID and short-lived, key-bound credentials (X.509-SVID,
/// JWT-SVID, WIT). Start everything locally with `aims up`.
#[derive(Parser)]
#[command(name = "aims", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Log level or filter (e.g. `info`, `debug`, `aims_server=debug,info`); RUST_LOG works too.
    #[arg(long, global = true, env = "AIMS_LOG")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, env = "AIMS_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local AIMS stack (server and agent) on one data directory.
    Up(cmd::up::UpArgs),
    /// Run the enforcement gateway in front of tools and MCP servers.
    Gateway(cmd::gateway::GatewayArgs),
    /// Run the trust-domain server: CA, bundle endpoint, agent API, admin API.
    Server(cmd::server::ServerArgs),
    /// Run the node agent: attests this host, serves the SPIFFE Workload API to its processes.
    Agent(cmd::agent::AgentArgs),
    /// Call the Workload API as this process (fetch SVIDs and bundles, validate a JWT-SVID).
    #[command(subcommand)]
    Api(cmd::api::ApiCommand),
    /// Manage registration entries (which workloads get which SPIFFE ID).
    #[command(subcommand)]
    Entry(cmd::entry::EntryCommand),
    /// Mint credentials as an operator (like `spire-server x509 mint`).
    #[command(subcommand)]
    Svid(cmd::svid::SvidCommand),
    /// Show the trust bundle.
    #[command(subcommand)]
    Bundle(cmd::bundle::BundleCommand),
    /// Create join tokens for agents.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// List, ban or evict attested agents.
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// Register OAuth clients that are not SPIFFE workloads.
    #[command(subcommand)]
    Client(cmd::client::ClientCommand),
    /// A narrated end-to-end scenario against `aims up`: identities, tokens, delegation, an
    /// agent-to-agent hop, a person's approval, a revocation and the audit trail.
    Demo(cmd::demo::DemoArgs),
    /// Manage the people who delegate to agents and approve their requests.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Compliance reports from recorded evidence against versioned rules.
    #[command(subcommand)]
    Compliance(cmd::compliance::ComplianceCommand),
    /// Revoke a principal's access (remediation), lift or list revocations.
    #[command(subcommand)]
    Revoke(cmd::revoke::RevokeCommand),
    /// Show, diff and apply the versioned Cedar policy set.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Check that the server on a data directory answers.
    Health(cmd::AdminArgs),
    /// Call an MCP server's tools as an OAuth client (MCP authorization: discovery, client
    /// credentials, JWT bearer, ID-JAG, DPoP).
    #[command(subcommand)]
    Mcp(cmd::mcp::McpCommand),
    /// Run the demo tool `aims up` puts behind its gateway, standalone: an HTTP API at
    /// `/weather` and an MCP server (streamable HTTP, on the `rmcp` SDK) at `/mcp` with `echo`,
    /// `read_file` and `delete_file`.
    DemoTool(demo_tool::DemoToolArgs),
}

/// Logs to stderr (text or JSON) and, with an OTLP endpoint, spans to OpenTelemetry; returns
/// the trace provider to flush at exit.
fn init_logging(
    level: Option<&str>,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("warning: invalid log filter {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let (otel, provider) = match otlp_endpoint.map(telemetry::otel_layer) {
        Some(Ok((layer, provider))) => (Some(layer), Some(provider)),
        Some(Err(e)) => {
            eprintln!("warning: OpenTelemetry export is off: {e:#}");
            (None, None)
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .init();
    provider
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider in the whole process: aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let file = match &cli.command {
            Command::Up(a) => Some(config::load_file(&a.flags.common)?),
            Command::Server(a) => Some(config::load_file(&a.flags.common)?),
            Command::Agent(a) => Some(config::load_file(&a.flags.common)?),
            Command::Gateway(a) => Some(config::load_file(&a.common)?),
            _ => None,
        };
        let long_running = file.is_some();
        let otlp = file
            .as_ref()
            .and_then(|f| f.telemetry.otlp_endpoint.clone())
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .filter(|_| long_running)
            });
        let file_log = file.map(|f| f.log);
        let level = cli
            .log_level
            .clone()
            .or_else(|| file_log.as_ref().and_then(|l| l.level.clone()))
            .or_else(|| (!long_running).then(|| "warn".to_owned()));
        let format = cli
            .log_format
            .or_else(|| file_log.as_ref().and_then(|l| l.format))
            .unwrap_or(LogFormat::Text);
        let traces = init_logging(level.as_deref(), format, otlp.as_deref());
        let done = match cli.command {
            Command::Up(a) => cmd::up::run(a).await,
            Command::Server(a) => cmd::server::run(a).await,
            Command::Agent(a) => cmd::agent::run(a).await,
            Command::Api(c) => cmd::api::run(c).await,
            Command::Token(c) => cmd::token::run(c).await,
            Command::Node(c) => cmd::node::run(c).await,
            Command::Client(c) => cmd::client::run(c).await,
            Command::User(c) => cmd::user::run(c).await,
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::Policy(c) => cmd::policy::run(c).await,
            Command::Audit(c) => cmd::audit::run(c).await,
            Command::Revoke(c) => cmd::revoke::run(c).await,
            Command::Compliance(c) => cmd::compliance::run(c).await,
            Command::Gateway(a) => cmd::gateway::run(a).await,
            Command::Entry(c) => cmd::entry::run(c).await,
            Command::Svid(c) => cmd::svid::run(c).await,
            Command::Bundle(c) => cmd::bundle::run(c).await,
            Command::Health(a) => cmd::health(a).await,
            Command::Mcp(c) => cmd::mcp::run(c).await,
            Command::DemoTool(a) => demo_tool::run(a).await,
        };
        if let Some(t) = traces {
            // What is queued goes out before the process ends.
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        done
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
