//! `aims policy show|history|diff|apply`: the versioned Cedar policy set (AIMS PO-2, PO-3).

use std::path::PathBuf;

use anyhow::Context as _;

use super::AdminArgs;

/// Policy commands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the policy set in force (or a past version).
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// A recorded version instead of the one in force.
        #[arg(value_name = "VERSION")]
        number: Option<u64>,
    },
    /// List every version put in force.
    History {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Validate a policy file against the AIMS schema and show what it would change.
    Diff {
        #[command(flatten)]
        admin: AdminArgs,
        /// The Cedar file.
        file: PathBuf,
    },
    /// Validate a policy file and put it in force as the next version, on every replica and
    /// gateway. An invalid file changes nothing.
    Apply {
        #[command(flatten)]
        admin: AdminArgs,
        /// The Cedar file.
        file: PathBuf,
        /// Who applies it (recorded with the version) [default: $USER].
        #[arg(long, env = "USER")]
        author: Option<String>,
    },
    /// Print the AIMS Cedar schema policies are validated against.
    Schema,
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Runs `aims policy …`.
pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Show { admin, number } => {
            let (version, hash, text) = match number {
                Some(v) => {
                    let row = admin.client().policy_version(v).await?;
                    (row.version, row.hash, row.text)
                }
                None => {
                    let doc = admin.client().current_policy().await?;
                    (doc.version, doc.hash, doc.text)
                }
            };
            println!("// version {version} ({hash})");
            print!("{text}");
        }
        PolicyCommand::History { admin } => {
            for row in admin.client().policy_history().await? {
                println!(
                    "{:>5}  {}  {}  {}",
                    row.version,
                    aims_core::format_unix(row.created_at),
                    row.hash,
                    row.author
                );
            }
        }
        PolicyCommand::Diff { admin, file } => {
            let out = admin
                .client()
                .apply_policy(&read(&file)?, true, None)
                .await?;
            println!("{} validates against the AIMS schema.", file.display());
            print!("{}", out.diff);
        }
        PolicyCommand::Apply {
            admin,
            file,
            author,
        } => {
            let out = admin
                .client()
                .apply_policy(&read(&file)?, false, author)
                .await?;
            print!("{}", out.diff);
            if out.applied {
                println!(
                    "Policy version {} ({}) is in force.",
                    out.document.version, out.document.hash
                );
            } else {
                println!(
                    "Unchanged: version {} stays in force.",
                    out.document.version
                );
            }
        }
        PolicyCommand::Schema => print!("{}", aims_policy::SCHEMA_TEXT),
    }
    Ok(())
}
