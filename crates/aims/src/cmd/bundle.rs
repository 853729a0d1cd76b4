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
    let BundleCommand::Show { admin, format } = cmd;
    let b = admin.client().bundle().await?;
    match format {
        BundleFormat::Jwks => println!("{}", serde_json::to_string_pretty(&b.jwks)?),
        BundleFormat::Pem => print!("{}", b.pem),
    }
    Ok(())
}
