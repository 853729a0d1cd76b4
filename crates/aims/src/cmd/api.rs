//! `aims api`: the workload's side of the SPIFFE Workload API, as `spire-agent api` offers it:
//! fetch what the calling process is entitled to, and validate a JWT-SVID.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aims_core::TrustDomain;
use aims_credentials::bundle::{cert_to_pem, certs_from_concat_der};
use aims_credentials::x509_svid::SvidUsage;
use aims_credentials::{BundleSet, TrustBundle, verify_x509_svid};
use aims_workload_api::client::WorkloadApiClient;
use anyhow::Context as _;
use serde::Serialize;

use super::entry::Output;

/// Where the Workload API is.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Workload API endpoint (unix:///path or a path) [default: $SPIFFE_ENDPOINT_SOCKET, else
    /// ./.aims/agent.sock].
    #[arg(long)]
    pub socket: Option<String>,
}

impl SocketArgs {
    /// The endpoint: `--socket`, else `$SPIFFE_ENDPOINT_SOCKET`, else the local stack's.
    pub fn endpoint(&self) -> String {
        self.socket
            .clone()
            .or_else(|| std::env::var(aims_workload_api::ENDPOINT_SOCKET_ENV).ok())
            .unwrap_or_else(|| {
                let p = Path::new(crate::config::DEFAULT_DATA_DIR).join("agent.sock");
                std::path::absolute(&p).unwrap_or(p).display().to_string()
            })
    }

    fn client(&self) -> anyhow::Result<WorkloadApiClient> {
        Ok(WorkloadApiClient::connect(Some(&self.endpoint()))?)
    }
}

/// Workload API commands.
#[derive(Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Fetch credentials for this process.
    #[command(subcommand)]
    Fetch(FetchCommand),
    /// Validate a JWT-SVID with the agent.
    Validate {
        #[command(flatten)]
        socket: SocketArgs,
        /// The audience the token must be for.
        #[arg(long)]
        audience: String,
        /// The JWT-SVID.
        #[arg(long)]
        svid: String,
    },
}

/// What to fetch.
#[derive(Debug, clap::Subcommand)]
pub enum FetchCommand {
    /// X509-SVIDs and bundles.
    X509 {
        #[command(flatten)]
        socket: SocketArgs,
        /// Write svid.N.pem, svid.N.key (0600) and bundle.0.pem into this directory.
        #[arg(long)]
        write: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// A JWT-SVID for an audience.
    Jwt {
        #[command(flatten)]
        socket: SocketArgs,
        /// Audience (repeatable).
        #[arg(long = "audience", short = 'a', required = true)]
        audience: Vec<String>,
        /// Only this identity.
        #[arg(long)]
        spiffe_id: Option<String>,
    },
    /// WIT-SVIDs and their keys.
    Wit {
        #[command(flatten)]
        socket: SocketArgs,
        /// Write wit.N.jwt and wit.N.key.jwk (0600) into this directory.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct X509Out {
    spiffe_id: String,
    expires_at: i64,
    hint: String,
}

/// A Workload API status as the user should read it.
fn api_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("Workload API: {:?}: {}", s.code(), s.message())
}

/// The first message of a Workload API stream.
async fn first<T>(stream: Result<tonic::Streaming<T>, tonic::Status>) -> anyhow::Result<T> {
    stream
        .map_err(api_err)?
        .message()
        .await
        .map_err(api_err)?
        .context("the Workload API closed the stream without an answer")
}

fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    aims_core::files::write_atomic(path, contents, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn fetch_x509(
    socket: SocketArgs,
    out_dir: Option<PathBuf>,
    output: Output,
) -> anyhow::Result<()> {
    let msg = first(socket.client()?.fetch_x509_svid().await).await?;
    let mut rows = Vec::new();
    for (i, svid) in msg.svids.iter().enumerate() {
        let chain = certs_from_concat_der(&svid.x509_svid)?;
        let roots = certs_from_concat_der(&svid.bundle)?;
        let id = aims_core::SpiffeId::parse(&svid.spiffe_id)?;
        let td = TrustDomain::new(id.trust_domain_name())?;
        let mut bundle = TrustBundle::new(td);
        for r in &roots {
            bundle.add_x509_authority(r.clone())?;
        }
        // Checked against the bundle that came with it: what any SPIFFE library would do.
        let verified = verify_x509_svid(
            &chain,
            &BundleSet::with([bundle]),
            SystemTime::now(),
            SvidUsage::Client,
        )
        .with_context(|| format!("the X509-SVID for {id} does not verify"))?;
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let pem: String = chain.iter().map(|c| cert_to_pem(c)).collect();
            write(&dir.join(format!("svid.{i}.pem")), pem.as_bytes(), 0o644)?;
            let key = aims_credentials::bundle::to_pem("PRIVATE KEY", &svid.x509_svid_key);
            write(&dir.join(format!("svid.{i}.key")), key.as_bytes(), 0o600)?;
            if i == 0 {
                let roots: String = roots.iter().map(|c| cert_to_pem(c)).collect();
                write(&dir.join("bundle.0.pem"), roots.as_bytes(), 0o644)?;
            }
        }
        rows.push(X509Out {
            spiffe_id: svid.spiffe_id.clone(),
            expires_at: aims_core::unix_seconds(verified.not_after),
            hint: svid.hint.clone(),
        });
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Text => {
            for r in &rows {
                println!(
                    "SPIFFE ID: {}\n  expires {}{}",
                    r.spiffe_id,
                    aims_core::format_unix(r.expires_at),
                    if r.hint.is_empty() {
                        String::new()
                    } else {
                        format!("\n  hint {}", r.hint)
                    }
                );
            }
            if !msg.federated_bundles.is_empty() {
                let mut names: Vec<_> = msg.federated_bundles.keys().collect();
                names.sort();
                println!(
                    "Federated bundles: {}",
                    names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(dir) = &out_dir {
                println!("Written to {}", dir.display());
            }
        }
    }
    Ok(())
}

/// Runs `aims api …`.
pub async fn run(cmd: ApiCommand) -> anyhow::Result<()> {
    match cmd {
        ApiCommand::Fetch(FetchCommand::X509 {
            socket,
            write,
            output,
        }) => fetch_x509(socket, write, output).await,
        ApiCommand::Fetch(FetchCommand::Jwt {
            socket,
            audience,
            spiffe_id,
        }) => {
            let resp = socket
                .client()?
                .fetch_jwt_svid(audience, spiffe_id)
                .await
                .map_err(api_err)?;
            for s in resp.svids {
                eprintln!("JWT-SVID for {}", s.spiffe_id);
                println!("{}", s.svid);
            }
            Ok(())
        }
        ApiCommand::Fetch(FetchCommand::Wit { socket, write: dir }) => {
            let msg = first(socket.client()?.fetch_wit_svid(None).await).await?;
            for (i, s) in msg.svids.iter().enumerate() {
                eprintln!("WIT-SVID for {}", s.spiffe_id);
                match &dir {
                    Some(d) => {
                        std::fs::create_dir_all(d)
                            .with_context(|| format!("cannot create {}", d.display()))?;
                        write(
                            &d.join(format!("wit.{i}.jwt")),
                            s.wit_svid.as_bytes(),
                            0o600,
                        )?;
                        write(
                            &d.join(format!("wit.{i}.key.jwk")),
                            s.wit_svid_key.as_bytes(),
                            0o600,
                        )?;
                    }
                    None => println!("{}", s.wit_svid),
                }
            }
            Ok(())
        }
        ApiCommand::Validate {
            socket,
            audience,
            svid,
        } => {
            let resp = socket
                .client()?
                .validate_jwt_svid(audience, svid)
                .await
                .map_err(api_err)?;
            println!("valid: {}", resp.spiffe_id);
            Ok(())
        }
    }
}
