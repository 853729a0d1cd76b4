//! `aims agent`: the node agent.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::{self, AgentFlags};

/// Arguments of `aims agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub flags: AgentFlags,
}

/// How long start-up waits for the first sync before serving from whatever it has.
pub const FIRST_SYNC_WAIT: Duration = Duration::from_secs(15);

/// Runs the agent until Ctrl-C or SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let file = config::load_file(&args.flags.common)?;
    let settings = config::agent_settings(&args.flags, &file)?;
    crate::telemetry::start(&args.flags.common, &file).await?;
    let agent = aims_agent::start(settings, FIRST_SYNC_WAIT)
        .await
        .context("the agent could not start")?;
    eprintln!(
        "Workload API: unix://{}  (export SPIFFE_ENDPOINT_SOCKET=unix://{})",
        agent.socket_path.display(),
        agent.socket_path.display()
    );
    super::shutdown_signal().await;
    agent.stop().await;
    Ok(())
}
