//! `aims audit list`: the audit log's records (AIMS MO-1, MO-8).

use super::AdminArgs;
use super::entry::Output;

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print records in order, from an index.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many, at most.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Runs `aims audit …`.
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List {
            admin,
            from,
            limit,
            output,
        } => {
            let entries = admin.client().audit_records(from, limit).await?;
            match output {
                Output::Json => {
                    for e in &entries {
                        println!("{}", serde_json::to_string(e)?);
                    }
                }
                Output::Text => {
                    for e in &entries {
                        let r = &e.record;
                        println!(
                            "{:>6}  {}  {:?}  {:<10} {:<6} {}  agent={}  policy=v{}  corr={}",
                            e.idx,
                            super::format_time(r.time_ms / 1000),
                            r.kind,
                            r.action,
                            r.decision
                                .map(|d| format!("{d:?}").to_lowercase())
                                .unwrap_or_default(),
                            r.resource.as_deref().unwrap_or("-"),
                            r.agent.as_deref().unwrap_or("-"),
                            r.policy_version.map(|v| v.to_string()).unwrap_or_default(),
                            r.correlation_id.as_deref().unwrap_or("-"),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
