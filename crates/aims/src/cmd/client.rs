//! `aims client create|list|delete`: OAuth clients that are not SPIFFE workloads (a SPIFFE
//! workload needs no registration: its SPIFFE ID is its client_id).

use std::path::PathBuf;

use aims_admin::api::CreateClientRequest;
use anyhow::Context as _;

use super::AdminArgs;
use super::entry::Output;

/// Client commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Register a client.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// The client_id [default: a generated UUID].
        #[arg(long)]
        client_id: Option<String>,
        /// private_key_jwt (default with --jwks), spiffe_jwt / spiffe_wit / spiffe_x509 (with
        /// --spiffe-id), or a legacy client_secret_basic / client_secret_post (only if the
        /// server allows secrets).
        #[arg(long)]
        auth_method: Option<String>,
        /// A JWK Set file with the client's public keys (private_key_jwt).
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The SPIFFE ID (or `…/*` prefix) the client authenticates as.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// Scopes the client may request (space-separated).
        #[arg(long)]
        scope: Option<String>,
        /// A grant type the client may use (repeatable) [default: all].
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// A human-readable name (the consent page shows it).
        #[arg(long)]
        name: Option<String>,
        /// A redirect URI for the authorization code grant (repeatable; matched exactly).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Its authorization requests must be pushed first (PAR, RFC 9126).
        #[arg(long)]
        require_par: bool,
        /// CIBA ping mode: where the server pings when the user has decided (https).
        #[arg(long)]
        ciba_ping_endpoint: Option<String>,
    },
    /// List registered clients.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a client.
    Delete {
        #[command(flatten)]
        admin: AdminArgs,
        /// Its client_id.
        client_id: String,
    },
}

/// Runs `aims client …`.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Create {
            admin,
            client_id,
            auth_method,
            jwks,
            spiffe_id,
            scope,
            grant_types,
            name,
            redirect_uris,
            require_par,
            ciba_ping_endpoint,
        } => {
            let mut metadata = serde_json::Map::new();
            let method = auth_method.unwrap_or_else(|| {
                if spiffe_id.is_some() && jwks.is_none() {
                    "spiffe_jwt".into()
                } else {
                    "private_key_jwt".into()
                }
            });
            metadata.insert("token_endpoint_auth_method".into(), method.into());
            if let Some(path) = jwks {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let set: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                metadata.insert("jwks".into(), set);
            }
            for (k, v) in [
                ("spiffe_id", spiffe_id),
                ("scope", scope),
                ("client_name", name),
            ] {
                if let Some(v) = v {
                    metadata.insert(k.into(), v.into());
                }
            }
            if !grant_types.is_empty() {
                metadata.insert("grant_types".into(), grant_types.into());
            }
            if !redirect_uris.is_empty() {
                metadata.insert("redirect_uris".into(), redirect_uris.into());
            }
            if require_par {
                metadata.insert("require_pushed_authorization_requests".into(), true.into());
            }
            if let Some(endpoint) = ciba_ping_endpoint {
                metadata.insert("backchannel_token_delivery_mode".into(), "ping".into());
                metadata.insert(
                    "backchannel_client_notification_endpoint".into(),
                    endpoint.into(),
                );
            }
            let created = admin
                .client()
                .create_client(&CreateClientRequest {
                    client_id,
                    metadata: metadata.into(),
                })
                .await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            if created.get("client_secret").is_some() {
                eprintln!("The client_secret is shown once; the server keeps only its hash.");
            }
        }
        ClientCommand::List { admin, output } => {
            let clients = admin.client().list_clients().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&clients)?),
                Output::Text => {
                    if clients.is_empty() {
                        println!("No registered clients (SPIFFE workloads need none).");
                    }
                    for c in clients {
                        println!(
                            "{}\n  method   {}\n  source   {:?}\n  created  {}",
                            c.client_id,
                            c.metadata["token_endpoint_auth_method"]
                                .as_str()
                                .unwrap_or("?"),
                            c.source,
                            aims_core::format_unix(c.created_at)
                        );
                    }
                }
            }
        }
        ClientCommand::Delete { admin, client_id } => {
            admin.client().delete_client(&client_id).await?;
            println!("Deleted client {client_id}.");
        }
    }
    Ok(())
}
