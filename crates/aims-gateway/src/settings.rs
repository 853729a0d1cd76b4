//! The gateway's settings (the binary fills them from `[gateway]` in the config file).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aims_core::{SpiffeId, TrustDomain};

pub use aims_audit::AuditMode;

/// Who mints the transaction tokens the gateway forwards (txn-tokens-11 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnTokenIssuer {
    /// The gateway, as a Txn-Token Service at the trust domain's edge: signed with its
    /// X509-SVID, no round trip, the issuance recorded in the call's own audit record.
    #[default]
    Gateway,
    /// The AIMS server (an RFC 8693 exchange per call): for recipients that read transaction
    /// tokens with the authorization server's JWKS only.
    Server,
}

/// What is behind a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteKind {
    /// An HTTP API: one tool.
    #[default]
    Http,
    /// An MCP server (streamable HTTP transport): each tool decided on its own.
    Mcp,
}

/// The certificate the gateway's listener presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GatewayTls {
    /// Its X509-SVID (agents check it by SPIFFE ID).
    #[default]
    Svid,
    /// A Web PKI certificate (for OAuth and MCP clients that check host names).
    Files {
        /// PEM certificate chain.
        cert_file: PathBuf,
        /// PEM private key.
        key_file: PathBuf,
    },
}

/// One upstream tool.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name (the Cedar `Tool` / `McpServer` id).
    pub name: String,
    /// Requests whose path starts with this go to it (`/weather`).
    pub path_prefix: String,
    /// Where it is (`http://127.0.0.1:9000`); the request path is appended, without the
    /// prefix when `strip_prefix`.
    pub upstream: String,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// HTTP or MCP.
    pub kind: RouteKind,
    /// The resource identifier tokens must name in `aud` [default: public URL + prefix].
    pub resource: Option<String>,
    /// Scopes a token needs for the route (and for MCP tools without their own).
    pub required_scopes: Vec<String>,
    /// MCP: scopes per tool name.
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// Its scope hierarchy (MCP 2026-07-28): a broader scope and the narrower scopes it
    /// implies, e.g. `files` → `files:read`, `files:write`; a token granting the broader one is
    /// sufficient wherever a narrower one is required.
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// Attach a transaction token minted for each allowed request.
    pub transaction_tokens: bool,
    /// Forward `Authorization: Bearer` with the caller's token exchanged (RFC 8693, the gateway
    /// as actor) for this audience, for upstreams that take OAuth tokens.
    pub exchange_audience: Option<String>,
}

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where to listen (HTTPS; HTTP/1.1 and HTTP/2).
    pub listen: SocketAddr,
    /// The URL clients use [default: https://PUBLIC_HOST:<port>].
    pub public_url: Option<String>,
    /// The host name in the default public URL [default: localhost].
    pub public_host: Option<String>,
    /// The listener's certificate.
    pub tls: GatewayTls,
    /// The authorization server's issuer URL (the AIMS server).
    pub issuer: String,
    /// A CA file the AIMS server's certificate chains to, besides the system roots.
    pub server_ca_file: Option<PathBuf>,
    /// The Workload API socket the gateway gets its SVID from [default: SPIFFE_ENDPOINT_SOCKET].
    pub workload_socket: Option<String>,
    /// The SPIFFE ID to use when the Workload API offers several SVIDs [default: the first].
    pub spiffe_id: Option<aims_core::SpiffeId>,
    /// This trust domain.
    pub trust_domain: TrustDomain,
    /// Sync or async audit appends.
    pub audit: AuditMode,
    /// The routes.
    pub routes: Vec<Route>,
    /// The pause between policy polls after an error, or when the server does not hold them
    /// (a server that does answers the gateway's poll as soon as a new version is in force).
    pub policy_poll: Duration,
    /// How long a token's introspected status is trusted before it is asked again.
    pub token_recheck: Duration,
    /// Tokens whose validation is kept (and decisions), at most.
    pub token_cache: usize,
    /// How long a decision is reused for an identical request (0 disables).
    pub decision_ttl: Duration,
    /// The largest JSON-RPC body read to authorize an MCP request.
    pub max_json_body: usize,
    /// The largest request body forwarded.
    pub max_body: usize,
    /// How long an upstream may take to start its answer, and to pause within its body.
    pub upstream_timeout: Duration,
    /// Who mints the transaction tokens.
    pub txn_token_issuer: TxnTokenIssuer,
    /// The transaction-token services at the trust domain's edge (with the IDs under them)
    /// whose forwarded tokens the gateway accepts; when it mints, its own SPIFFE ID must be
    /// among them [default: `/aims/gateway`, `/gateway/…`, as the server's].
    pub txn_token_services: Vec<SpiffeId>,
    /// The lifetime of the transaction tokens the gateway mints [default: 60 s; never past the
    /// token it was minted from].
    pub txn_token_ttl: Duration,
}

impl GatewaySettings {
    /// Settings with the defaults and no routes.
    pub fn new(trust_domain: TrustDomain, issuer: impl Into<String>) -> Self {
        let txn_token_services = aims_token::txn::TxnTokenServices::default_edge(&trust_domain);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8445)),
            public_url: None,
            public_host: None,
            tls: GatewayTls::Svid,
            issuer: issuer.into(),
            server_ca_file: None,
            workload_socket: None,
            spiffe_id: None,
            trust_domain,
            audit: AuditMode::Async,
            routes: Vec::new(),
            policy_poll: Duration::from_millis(500),
            token_recheck: Duration::from_secs(1),
            token_cache: 100_000,
            decision_ttl: Duration::from_secs(1),
            max_json_body: 1 << 20,
            max_body: 16 << 20,
            upstream_timeout: Duration::from_secs(30),
            txn_token_issuer: TxnTokenIssuer::Gateway,
            txn_token_services,
            txn_token_ttl: Duration::from_secs(60),
        }
    }
}
