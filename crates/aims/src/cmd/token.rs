//! `aims token generate`: join tokens for node attestation.

use aims_admin::api::CreateJoinTokenRequest;
use aims_core::{HumanDuration, SpiffeId};

use super::AdminArgs;

/// Join token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a single-use join token for `aims agent --join-token`.
    Generate {
        #[command(flatten)]
        admin: AdminArgs,
        /// The SPIFFE ID the agent gets [default: spiffe://TD/aims/agent/join_token/<digest>].
        #[arg(long)]
        spiffe_id: Option<SpiffeId>,
        /// How long the token may be used, e.g. 10m [default: 1h; at most 7d].
        #[arg(long)]
        ttl: Option<HumanDuration>,
    },
}

/// Runs `aims token …`.
pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Generate {
        admin,
        spiffe_id,
        ttl,
    } = cmd;
    let resp = admin
        .client()
        .create_join_token(&CreateJoinTokenRequest {
            spiffe_id,
            ttl_seconds: ttl.map(|t| t.0.as_secs()),
        })
        .await?;
    println!("{}", resp.token);
    eprintln!(
        "Join token for {} (single use, expires {}). Start the agent with:\n  aims agent --trust-domain {} --join-token <token> --trust-bundle <bundle.pem>",
        resp.spiffe_id,
        aims_core::format_unix(resp.expires_at),
        resp.spiffe_id.trust_domain_name(),
    );
    Ok(())
}
