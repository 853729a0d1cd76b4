//! `aims mcp`: an MCP client (the Rust MCP SDK, `rmcp`) that authorizes itself as MCP
//! authorization and its extensions describe, through `aims_sdk::mcp`: it finds the
//! authorization server from the server's 401, obtains a token for exactly that server by the
//! grant its flags choose, DPoP-bound when the authorization server supports it, and lists or
//! calls tools. Secrets are read from files, never from the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::api::SocketArgs;
use aims_credentials::PrivateKey;
use aims_sdk::mcp::{Assertion, AuthorizedHttp, Browser, ClientAuth, Grant, McpAuth};
use aims_sdk::source::JwtSource;
use anyhow::{Context as _, bail};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt as _};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

mod proxy;

/// `aims mcp …`.
#[derive(Debug, clap::Subcommand)]
pub enum McpCommand {
    /// List the server's tools.
    Tools(McpArgs),
    /// Call one tool and print its result (JSON).
    Call {
        #[command(flatten)]
        server: McpArgs,
        /// The tool's name.
        tool: String,
        /// Its arguments: a JSON object.
        #[arg(long, default_value = "{}")]
        arguments: String,
    },
    /// Serve a local MCP endpoint (`http://LISTEN/mcp`) that forwards to the server and
    /// authorizes each request: for MCP clients that cannot authorize themselves; the token
    /// and its key stay in this process.
    Proxy {
        #[command(flatten)]
        server: McpArgs,
        /// Where to listen (loopback only).
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: std::net::SocketAddr,
    },
}

/// The grants `aims mcp` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrantKind {
    /// A person signs in at a browser (authorization code with PKCE).
    AuthorizationCode,
    /// The client for itself (client secret or private key).
    ClientCredentials,
    /// A workload's JWT (`--assertion-file`).
    JwtBearer,
    /// An ID-JAG from the person's enterprise IdP (`--id-token-file`).
    IdJag,
}

/// Which MCP server, and how this client obtains its token.
///
/// Without `--grant`, the grant follows from the credentials given: `--id-token-file`
/// (enterprise-managed authorization: an ID-JAG from the IdP), `--assertion-file` or
/// `--workload-api` (a workload's JWT by the JWT bearer grant), `--client-secret-file` or `--private-key-file`
/// (client credentials), else a person's authorization at a browser (a client registered
/// dynamically unless `--client-id` names one).
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// The MCP server's endpoint (streamable HTTP), e.g. https://gateway.example/mcp.
    pub url: String,
    /// The grant, when the credentials given do not say.
    #[arg(long, value_enum)]
    pub grant: Option<GrantKind>,
    /// The URL of this client's metadata document (Client ID Metadata Documents): its
    /// `client_id` at authorization servers that fetch such documents, instead of registering.
    #[arg(long)]
    pub client_metadata_url: Option<String>,
    /// A program that opens the authorization URL for the person (e.g. `xdg-open`); without
    /// it the URL is printed.
    #[arg(long)]
    pub browser: Option<PathBuf>,
    /// This client's `client_id` at the MCP server's authorization server.
    #[arg(long)]
    pub client_id: Option<String>,
    /// client_secret_basic: a file holding the client's secret.
    #[arg(long, conflicts_with = "private_key_file")]
    pub client_secret_file: Option<PathBuf>,
    /// private_key_jwt: the client's private key (PEM).
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// JWT bearer grant (RFC 7523; MCP workload identity federation): a file holding the
    /// workload's JWT.
    #[arg(long, conflicts_with = "workload_api")]
    pub assertion_file: Option<PathBuf>,
    /// JWT bearer grant with this process's JWT-SVID for the authorization server, fetched
    /// from the Workload API when needed: no credential to keep.
    #[arg(long)]
    pub workload_api: bool,
    #[command(flatten)]
    pub workload: SocketArgs,
    /// Enterprise-managed authorization: a file holding the person's ID token from the IdP.
    #[arg(long, requires_all = ["idp_token_endpoint", "idp_client_id"])]
    pub id_token_file: Option<PathBuf>,
    /// The IdP's token endpoint, where the ID token is exchanged for an ID-JAG.
    #[arg(long)]
    pub idp_token_endpoint: Option<String>,
    /// This client's `client_id` at the IdP.
    #[arg(long)]
    pub idp_client_id: Option<String>,
    /// The authorization server (its issuer) this client's credentials may go to; an MCP
    /// server naming another is refused before anything is sent. Pin it when the client has a
    /// secret: otherwise the MCP server chooses where the secret goes.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Extra CA certificates (PEM) to trust, e.g. `aims up`'s local CA.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Seconds an HTTP request may wait for the server between reads.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(s.trim().to_owned())
}

impl McpArgs {
    /// How this client authenticates at the authorization server, if it can.
    fn client_auth(&self) -> anyhow::Result<Option<ClientAuth>> {
        let needs_id = || {
            self.client_id
                .clone()
                .context("--client-id is needed with a client secret or key")
        };
        Ok(if let Some(f) = &self.client_secret_file {
            Some(ClientAuth::SecretBasic {
                client_id: needs_id()?,
                secret: read_secret(f)?,
            })
        } else if let Some(f) = &self.private_key_file {
            let key = PrivateKey::from_pem(&read_secret(f)?)
                .with_context(|| format!("{} holds no private key", f.display()))?;
            Some(ClientAuth::PrivateKeyJwt {
                client_id: needs_id()?,
                key: Box::new(key),
            })
        } else {
            self.client_id
                .clone()
                .map(|client_id| ClientAuth::Public { client_id })
        })
    }

    fn grant_kind(&self) -> GrantKind {
        self.grant.unwrap_or(if self.id_token_file.is_some() {
            GrantKind::IdJag
        } else if self.assertion_file.is_some() || self.workload_api {
            GrantKind::JwtBearer
        } else if self.client_secret_file.is_some() || self.private_key_file.is_some() {
            GrantKind::ClientCredentials
        } else {
            GrantKind::AuthorizationCode
        })
    }

    fn grant(&self) -> anyhow::Result<Grant> {
        let client = self.client_auth()?;
        Ok(match self.grant_kind() {
            GrantKind::IdJag => Grant::IdJag {
                idp_token_endpoint: self
                    .idp_token_endpoint
                    .clone()
                    .context("--idp-token-endpoint is needed for an ID-JAG")?,
                idp_client_id: self
                    .idp_client_id
                    .clone()
                    .context("--idp-client-id is needed for an ID-JAG")?,
                id_token: read_secret(
                    self.id_token_file
                        .as_deref()
                        .context("--id-token-file is needed for an ID-JAG")?,
                )?,
                client: client.context("--client-id is needed for an ID-JAG")?,
            },
            GrantKind::JwtBearer => Grant::JwtBearer {
                assertion: match &self.assertion_file {
                    Some(f) => Assertion::Jwt(read_secret(f)?),
                    None if self.workload_api => {
                        let endpoint = self.workload.endpoint();
                        let socket = endpoint.strip_prefix("unix://").unwrap_or(&endpoint);
                        Assertion::JwtSvid(Arc::new(JwtSource::new(Path::new(socket), None)))
                    }
                    None => bail!("the JWT bearer grant needs --assertion-file or --workload-api"),
                },
                client,
            },
            GrantKind::ClientCredentials => match client {
                Some(c @ (ClientAuth::SecretBasic { .. } | ClientAuth::PrivateKeyJwt { .. })) => {
                    Grant::ClientCredentials(c)
                }
                _ => bail!(
                    "client credentials need --client-id with --client-secret-file or \
                     --private-key-file"
                ),
            },
            GrantKind::AuthorizationCode => Grant::AuthorizationCode {
                client,
                client_name: "aims mcp".to_owned(),
                metadata_url: self.client_metadata_url.clone(),
                browser: self
                    .browser
                    .clone()
                    .map_or(Browser::Print, Browser::Program),
            },
        })
    }

    /// The HTTP client that reaches the MCP server and the authorization servers,
    /// authorizing each request with this client's grant.
    fn authorized_http(&self) -> anyhow::Result<AuthorizedHttp> {
        let grant = self.grant()?;
        if self.issuer.is_none() && self.client_secret_file.is_some() {
            eprintln!(
                "warning: the client secret goes to whichever authorization server the MCP \
                 server names; pin yours with --issuer"
            );
        }
        let http = self.http()?;
        let auth = McpAuth::pinned(http.clone(), grant, self.issuer.clone());
        Ok(AuthorizedHttp::new(http, auth))
    }

    fn http(&self) -> anyhow::Result<reqwest::Client> {
        // Idle time, not total time: an event stream (progress, a proxied GET) may last.
        let mut builder = reqwest::Client::builder()
            .read_timeout(Duration::from_secs(self.timeout))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &self.ca_file {
            builder = aims_outbound::fetch::with_ca_file(builder, ca)?;
        }
        Ok(builder.build()?)
    }
}

/// Runs `aims mcp …`.
pub async fn run(cmd: McpCommand) -> anyhow::Result<()> {
    let (server, call) = match &cmd {
        McpCommand::Proxy { server, listen } => {
            return proxy::serve(*listen, server.url.clone(), server.authorized_http()?).await;
        }
        McpCommand::Tools(server) => (server, None),
        McpCommand::Call {
            server,
            tool,
            arguments,
        } => {
            let args: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(arguments).context("--arguments is not a JSON object")?;
            (
                server,
                Some(CallToolRequestParams::new(tool.clone()).with_arguments(args)),
            )
        }
    };
    let transport = StreamableHttpClientTransport::with_client(
        server.authorized_http()?,
        StreamableHttpClientTransportConfig::with_uri(server.url.as_str()),
    );
    // MCP 2026-07-28 (`server/discover`, per-request metadata) first; a server of an
    // earlier revision gets the `initialize` handshake.
    let lifecycle = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    };
    let client = ()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .with_context(|| format!("connecting to {}", server.url))?;
    let out = match call {
        None => {
            let tools = client.list_all_tools().await.context("tools/list")?;
            serde_json::to_string_pretty(&tools)?
        }
        Some(params) => {
            let result = client.call_tool(params).await.context("tools/call")?;
            serde_json::to_string_pretty(&result)?
        }
    };
    println!("{out}");
    client.cancel().await.ok();
    Ok(())
}
