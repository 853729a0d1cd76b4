//! `aims svid mint x509|jwt|wit`: credentials minted by the operator, like
//! `spire-server x509 mint` and `jwt mint`. For X509-SVIDs and WITs the key pair is generated
//! here and only a CSR or the public key goes to the server.

use std::path::{Path, PathBuf};

use aims_admin::api::{MintJwtRequest, MintWitRequest, MintX509Request};
use aims_core::{HumanDuration, SpiffeId};
use aims_credentials::{KeyType, PrivateKey};
use anyhow::Context as _;

use super::AdminArgs;

/// `aims svid …`.
#[derive(Debug, clap::Subcommand)]
pub enum SvidCommand {
    /// Mint a credential.
    #[command(subcommand)]
    Mint(MintCommand),
}

/// What to mint.
#[derive(Debug, clap::Subcommand)]
pub enum MintCommand {
    /// An X509-SVID: writes svid.pem (leaf + intermediate), key.pem (0600) and bundle.pem.
    X509 {
        #[command(flatten)]
        admin: AdminArgs,
        /// The SPIFFE ID.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// Lifetime [default: the server's X509-SVID TTL].
        #[arg(long)]
        ttl: Option<HumanDuration>,
        /// DNS SAN (repeatable).
        #[arg(long = "dns-name")]
        dns_names: Vec<String>,
        /// Key type: ec-p256, ec-p384, ed25519, rsa-2048.
        #[arg(long, default_value = "ec-p256")]
        key_type: KeyType,
        /// Directory to write the files to.
        #[arg(long)]
        out: PathBuf,
    },
    /// A JWT-SVID: printed, or written to DIR/svid.jwt with the JWT bundle in DIR/bundle.jwks.
    Jwt {
        #[command(flatten)]
        admin: AdminArgs,
        /// The SPIFFE ID.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// Audience (repeatable; at least one).
        #[arg(long = "audience", short = 'a', required = true)]
        audience: Vec<String>,
        /// Lifetime [default: the server's JWT-SVID TTL].
        #[arg(long)]
        ttl: Option<HumanDuration>,
        /// Directory to write the files to (default: print the token).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A WIT-SVID bound to a fresh key: writes wit.jwt, key.pem (0600) and bundle.jwks.
    Wit {
        #[command(flatten)]
        admin: AdminArgs,
        /// The SPIFFE ID.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// Lifetime [default: the server's WIT-SVID TTL].
        #[arg(long)]
        ttl: Option<HumanDuration>,
        /// Key type: ec-p256, ec-p384, rsa-2048 (WIT-SVID keys are RS/ES/PS).
        #[arg(long, default_value = "ec-p256")]
        key_type: KeyType,
        /// Directory to write the files to.
        #[arg(long)]
        out: PathBuf,
    },
}

fn write(dir: &Path, name: &str, contents: &[u8], mode: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    aims_core::files::write_atomic(&path, contents, mode)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn out_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Runs `aims svid …`.
pub async fn run(cmd: SvidCommand) -> anyhow::Result<()> {
    let SvidCommand::Mint(mint) = cmd;
    match mint {
        MintCommand::X509 {
            admin,
            spiffe_id,
            ttl,
            dns_names,
            key_type,
            out,
        } => {
            let key = PrivateKey::generate(key_type)?;
            let csr = aims_credentials::bundle::to_pem(
                "CERTIFICATE REQUEST",
                &aims_credentials::ca::svid_csr(&key, Some(&spiffe_id), &dns_names)?,
            );
            let resp = admin
                .client()
                .mint_x509(&MintX509Request {
                    spiffe_id,
                    csr_pem: csr,
                    ttl_seconds: ttl.map(|t| t.0.as_secs()),
                    dns_names,
                })
                .await?;
            out_dir(&out)?;
            let svid = write(&out, "svid.pem", resp.chain_pem.as_bytes(), 0o644)?;
            let key_path = write(&out, "key.pem", key.to_pkcs8_pem().as_bytes(), 0o600)?;
            let bundle = write(&out, "bundle.pem", resp.bundle_pem.as_bytes(), 0o644)?;
            println!(
                "X509-SVID for {} (serial {}), expires {}",
                resp.spiffe_id,
                resp.serial,
                aims_core::format_unix(resp.expires_at)
            );
            println!(
                "  {}\n  {}\n  {}",
                svid.display(),
                key_path.display(),
                bundle.display()
            );
            Ok(())
        }
        MintCommand::Jwt {
            admin,
            spiffe_id,
            audience,
            ttl,
            out,
        } => {
            let client = admin.client();
            let resp = client
                .mint_jwt(&MintJwtRequest {
                    spiffe_id,
                    audience,
                    ttl_seconds: ttl.map(|t| t.0.as_secs()),
                })
                .await?;
            match out {
                None => println!("{}", resp.token),
                Some(dir) => {
                    out_dir(&dir)?;
                    let bundle = client.bundle().await?;
                    let token = write(&dir, "svid.jwt", resp.token.as_bytes(), 0o600)?;
                    let jwks = write(
                        &dir,
                        "bundle.jwks",
                        serde_json::to_string_pretty(&bundle.jwks)?.as_bytes(),
                        0o644,
                    )?;
                    println!(
                        "JWT-SVID for {}, expires {}",
                        resp.spiffe_id,
                        aims_core::format_unix(resp.expires_at)
                    );
                    println!("  {}\n  {}", token.display(), jwks.display());
                }
            }
            Ok(())
        }
        MintCommand::Wit {
            admin,
            spiffe_id,
            ttl,
            key_type,
            out,
        } => {
            let key = PrivateKey::generate(key_type)?;
            let jwk = key
                .public_key()
                .to_jwk(None, None, Some(key.jws_algorithm()));
            let client = admin.client();
            let resp = client
                .mint_wit(&MintWitRequest {
                    spiffe_id,
                    public_jwk: serde_json::to_value(jwk)?,
                    ttl_seconds: ttl.map(|t| t.0.as_secs()),
                })
                .await?;
            let bundle = client.bundle().await?;
            out_dir(&out)?;
            let wit = write(&out, "wit.jwt", resp.token.as_bytes(), 0o600)?;
            let key_path = write(&out, "key.pem", key.to_pkcs8_pem().as_bytes(), 0o600)?;
            let jwks = write(
                &out,
                "bundle.jwks",
                serde_json::to_string_pretty(&bundle.jwks)?.as_bytes(),
                0o644,
            )?;
            println!(
                "WIT-SVID for {}, expires {}",
                resp.spiffe_id,
                aims_core::format_unix(resp.expires_at)
            );
            println!(
                "  {}\n  {}\n  {}",
                wit.display(),
                key_path.display(),
                jwks.display()
            );
            Ok(())
        }
    }
}
