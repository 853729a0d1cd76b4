//! The subcommands.

pub mod agent;
pub mod api;
pub mod audit;
pub mod bundle;
pub mod client;
pub mod compliance;
pub mod demo;
pub mod entry;
pub mod gateway;
pub mod mcp;
pub mod node;
pub mod policy;
pub mod replicas;
pub mod revoke;
pub mod server;
pub mod svid;
pub mod token;
pub mod up;
pub mod user;

use std::path::PathBuf;

use aims_admin::client::AdminClient;

/// How a command finds the local server's admin socket.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Data directory of the server [default: ./.aims].
    #[arg(long, env = "AIMS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin socket, if not DATA_DIR/admin.sock.
    #[arg(long, env = "AIMS_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
}

impl AdminArgs {
    /// A client for the admin socket.
    pub fn client(&self) -> AdminClient {
        AdminClient::new(crate::config::admin_socket(
            self.data_dir.as_ref(),
            self.admin_socket.as_ref(),
        ))
    }
}

/// `aims health`.
pub async fn health(args: AdminArgs) -> anyhow::Result<()> {
    let h = args.client().health().await?;
    println!(
        "ok: trust domain {}, server {}, version {}",
        h.trust_domain, h.server_id, h.version
    );
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the process");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM; shutting down"),
    }
}
