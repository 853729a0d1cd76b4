//! `aims gateway`: the enforcement gateway in front of tools and MCP servers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::gateway::AuditModeName;
use crate::config::{self, CommonFlags};

/// Arguments of `aims gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Listen address [default: 127.0.0.1:8445].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The AIMS server's OAuth issuer URL, e.g. https://aims.example.org:8443.
    #[arg(long, env = "AIMS_ISSUER")]
    pub issuer: Option<String>,
    /// A CA file the AIMS server's HTTPS certificate chains to (besides the system roots).
    #[arg(long)]
    pub server_ca_file: Option<PathBuf>,
    /// The Workload API socket (unix:///path) [default: SPIFFE_ENDPOINT_SOCKET].
    #[arg(long)]
    pub socket: Option<String>,
    /// Whether responses wait for their decision record to be durable.
    #[arg(long, value_enum)]
    pub audit: Option<AuditModeName>,
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let file = config::load_file(&args.common)?;
    let td = config::trust_domain(args.common.trust_domain.as_ref(), &file, None)?;
    let mut settings = file.gateway.settings(td, args.issuer.clone())?;
    if settings.routes.is_empty() {
        anyhow::bail!("no routes: add [[gateway.route]] sections to the configuration file");
    }
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(ca) = args.server_ca_file {
        settings.server_ca_file = Some(ca);
    }
    if let Some(s) = args.socket {
        settings.workload_socket = Some(s);
    }
    if let Some(m) = args.audit {
        settings.audit = m.into();
    }
    crate::telemetry::start(&args.common, &file).await?;
    let gateway = aims_gateway::start(settings)
        .await
        .context("the gateway could not start")?;
    println!(
        "AIMS gateway listening on {} ({}).",
        gateway.addr, gateway.public_url
    );
    super::shutdown_signal().await;
    gateway.stop().await;
    Ok(())
}
