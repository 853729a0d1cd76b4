//! `aims revoke …`: remediation by an operator (AIMS MO-3…MO-6) — revoke a principal's access
//! (an agent's SPIFFE ID, a client id, a user), lift it, list what stands.

use super::AdminArgs;
use super::entry::Output;

/// Remediation commands.
#[derive(Debug, clap::Subcommand)]
pub enum RevokeCommand {
    /// Revoke a principal: its tokens die (gateways refuse them at their next check), its
    /// refresh families end, new grants to or for it are refused; recorded with the cause.
    Access {
        #[command(flatten)]
        admin: AdminArgs,
        /// An agent's SPIFFE ID, a client id or a user.
        principal: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        cause: String,
    },
    /// Lift a revocation: new grants are possible again; earlier tokens stay dead.
    Lift {
        #[command(flatten)]
        admin: AdminArgs,
        /// The principal.
        principal: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        cause: String,
    },
    /// Disable a registration entry: no SVID is issued or renewed for it and agents drop the
    /// ones they hold; with --enable, enable it again. Recorded with the cause.
    Entry {
        #[command(flatten)]
        admin: AdminArgs,
        /// The entry id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        cause: String,
        /// Enable the entry again instead.
        #[arg(long)]
        enable: bool,
    },
    /// List revocations, newest first.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Runs `aims revoke …`.
pub async fn run(cmd: RevokeCommand) -> anyhow::Result<()> {
    match cmd {
        RevokeCommand::Access {
            admin,
            principal,
            cause,
        } => {
            let done = admin.client().revoke(&principal, &cause).await?;
            println!(
                "revoked {principal}: {} remembered tokens revoked; audit record {}",
                done.tokens_revoked, done.audit_index
            );
        }
        RevokeCommand::Lift {
            admin,
            principal,
            cause,
        } => {
            admin.client().lift_revocation(&principal, &cause).await?;
            println!("lifted the revocation of {principal}");
        }
        RevokeCommand::Entry {
            admin,
            id,
            cause,
            enable,
        } => {
            let e = admin.client().remediate_entry(&id, !enable, &cause).await?;
            println!(
                "{} entry {id} ({})",
                if enable { "enabled" } else { "disabled" },
                e.spiffe_id
            );
        }
        RevokeCommand::List { admin, output } => {
            let list = admin.client().revocations().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Output::Text => {
                    for r in list {
                        println!(
                            "{}  {}  {}  cause={}",
                            aims_core::format_unix(r.revoked_at),
                            if r.lifted_at.is_some() {
                                "lifted "
                            } else {
                                "standing"
                            },
                            r.principal,
                            r.cause
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
