//! `aims bundle show`.

use super::AdminArgs;

/// Bundle commands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Print the trust bundle.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// `jwks` (the SPIFFE bundle) or `pem` (X.509 authorities only).
        #[arg(long, value_enum, default_value_t = BundleFormat::Jwks)]
        format: BundleFormat,
    },
    /// List the federated bundles the server fetched from foreign trust domains.
    Federated {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: super::entry::Output,
    },
}

/// Bundle output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BundleFormat {
    /// SPIFFE bundle JWK Set.
    Jwks,
    /// PEM certificates.
    Pem,
}

/// Runs a bundle command.
pub async fn run(cmd: BundleCommand) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Show { admin, format } => {
            let b = admin.client().bundle().await?;
            match format {
                BundleFormat::Jwks => println!("{}", serde_json::to_string_pretty(&b.jwks)?),
                BundleFormat::Pem => print!("{}", b.pem),
            }
        }
        BundleCommand::Federated { admin, output } => {
            let rows = admin.client().federated_bundles().await?;
            match output {
                super::entry::Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                super::entry::Output::Text => {
                    if rows.is_empty() {
                        println!("No federated bundles.");
                    }
                    for r in rows {
                        println!(
                            "{}\n  from         {}\n  sequence     {}\n  refreshed    {}",
                            r.trust_domain,
                            r.endpoint,
                            r.sequence,
                            aims_core::format_unix(r.refreshed_at)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
