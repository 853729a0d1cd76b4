//! `aims node list|ban|evict`: the attested agents (nodes).

use aims_core::SpiffeId;

use super::AdminArgs;
use super::entry::Output;

/// Node commands.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// List attested agents.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Ban an agent: it can no longer renew, sync or obtain SVIDs, and may not attest again.
    Ban {
        #[command(flatten)]
        admin: AdminArgs,
        /// The agent's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// Evict an agent: its record is deleted and it must attest again.
    Evict {
        #[command(flatten)]
        admin: AdminArgs,
        /// The agent's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
}

/// Runs `aims node …`.
pub async fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::List { admin, output } => {
            let nodes = admin.client().list_agents().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
                Output::Text => {
                    if nodes.is_empty() {
                        println!("No attested agents.");
                    }
                    for n in nodes {
                        println!(
                            "{}\n  attested by   {}\n  SVID serial   {}\n  SVID expires  {}{}",
                            n.spiffe_id,
                            n.attestation_type,
                            n.cert_serial,
                            aims_core::format_unix(n.cert_not_after),
                            if n.banned { "\n  BANNED" } else { "" }
                        );
                    }
                }
            }
        }
        NodeCommand::Ban { admin, spiffe_id } => {
            admin.client().ban_agent(&spiffe_id).await?;
            println!("Banned {spiffe_id}.");
        }
        NodeCommand::Evict { admin, spiffe_id } => {
            admin.client().evict_agent(&spiffe_id).await?;
            println!("Evicted {spiffe_id}; it must attest again.");
        }
    }
    Ok(())
}
