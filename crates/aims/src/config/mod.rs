//! The AIMS configuration file (TOML) and how flags override it.
//!
//! One file configures every component; each section is read by the command that runs that
//! component. Unknown keys are errors, and every error names the file, the key and what was
//! expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aims_agent::{AgentSettings, NodeAttestation, TrustBootstrap};
use aims_core::{HumanDuration, SpiffeId, TrustDomain};
use aims_credentials::{AuthorityPolicy, KeyType};
use aims_provisioning::issuance::federation::{EndpointProfile, Federation};
use aims_server::{ServerSettings, TlsFiles, UpstreamFiles};
use anyhow::{Context as _, bail};
use serde::Deserialize;

pub mod gateway;

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = ".aims";
/// The default trust domain of `aims up`.
pub const DEFAULT_TRUST_DOMAIN: &str = "aims.local";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The trust domain.
    pub trust_domain: Option<TrustDomain>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[agent]`.
    #[serde(default)]
    pub agent: AgentSection,
    /// `[gateway]`.
    #[serde(default)]
    pub gateway: gateway::GatewaySection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[telemetry]`.
    #[serde(default)]
    pub telemetry: TelemetrySection,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off by default).
    pub metrics_listen: Option<SocketAddr>,
    /// Export OpenTelemetry traces by OTLP/gRPC to this collector (off by default; the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` works too).
    pub otlp_endpoint: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// HTTPS listen address.
    pub listen: Option<SocketAddr>,
    /// Agent API listen address.
    pub agent_listen: Option<SocketAddr>,
    /// CA certificates (PEM) of node certificates accepted for x509pop node attestation.
    pub x509pop_ca_file: Option<PathBuf>,
    /// Host name in advertised URLs.
    pub public_host: Option<String>,
    /// The URL clients reach the HTTPS listener at, and the OAuth issuer (a load balancer's in
    /// front of several replicas).
    pub public_url: Option<String>,
    /// The URL clients reach the OAuth mutual-TLS listener at.
    pub public_mtls_url: Option<String>,
    /// Store URL (`sqlite://…` or `postgres://…`).
    pub database: Option<String>,
    /// Admin socket path.
    pub admin_socket: Option<PathBuf>,
    /// Replica id.
    pub server_id: Option<String>,
    /// Default X509-SVID lifetime.
    pub x509_svid_ttl: Option<HumanDuration>,
    /// Lifetime of an agent's own X509-SVID (SPIRE's `agent_ttl`) [default: `x509_svid_ttl`].
    pub agent_svid_ttl: Option<HumanDuration>,
    /// Default JWT-SVID lifetime.
    pub jwt_svid_ttl: Option<HumanDuration>,
    /// Default WIT-SVID lifetime.
    pub wit_svid_ttl: Option<HumanDuration>,
    /// `spiffe_refresh_hint` of the bundle.
    pub bundle_refresh_hint: Option<HumanDuration>,
    /// `[server.ca]`.
    #[serde(default)]
    pub ca: CaSection,
    /// `[server.tls]`.
    pub tls: Option<TlsSection>,
    /// `[[server.federation]]`: foreign trust domains whose bundles the server fetches.
    #[serde(default)]
    pub federation: Vec<FederationSection>,
    /// `[[server.signal_source]]`: transmitters whose Shared Signals (pushed to
    /// `/ssf/v1/receive`) the server acts on.
    #[serde(default)]
    pub signal_source: Vec<aims_signals::intake::SignalSource>,
    /// SPIFFE IDs (with the IDs under their paths) that may append to the audit log
    /// [default: `/aims/gateway` and `/gateway/…` of the trust domain].
    pub audit_writers: Option<Vec<String>>,
    /// Whether token grants wait for their decision records to be durable (`sync`) or queue
    /// them (`async`, the default).
    pub audit: Option<gateway::AuditModeName>,
    /// OAuth mutual-TLS listen address (RFC 8705 endpoint aliases).
    pub oauth_mtls_listen: Option<SocketAddr>,
    /// `[server.oauth]`.
    #[serde(default)]
    pub oauth: OAuthSection,
    /// `[server.people]`.
    #[serde(default)]
    pub people: PeopleSection,
}

/// `[server.people]`: how users sign in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleSection {
    /// Allow the password fallback (on). Passkeys are always on where the public host is a
    /// name.
    pub password_sign_in: Option<bool>,
    /// How long a sign-in lasts (8h).
    pub session_ttl: Option<HumanDuration>,
    /// How long an enrolment link stays valid (24h).
    pub enrolment_ttl: Option<HumanDuration>,
}

/// Access token format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormatName {
    /// RFC 9068 JWTs.
    Jwt,
    /// Opaque references (RFC 7662 introspection).
    Opaque,
}

/// `[server.oauth]`: the authorization server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSection {
    /// `jwt` (default) or `opaque`.
    pub token_format: Option<TokenFormatName>,
    /// Access token lifetime.
    pub access_token_ttl: Option<HumanDuration>,
    /// Transaction token lifetime.
    pub transaction_token_ttl: Option<HumanDuration>,
    /// SPIFFE IDs (with the IDs under them) of the transaction-token services at the trust
    /// domain's edge, whose `x5c`-signed transaction tokens are accepted [default:
    /// `/aims/gateway` and `/gateway/…` of the trust domain].
    pub transaction_token_services: Option<Vec<aims_core::SpiffeId>>,
    /// Refresh token lifetime.
    pub refresh_token_ttl: Option<HumanDuration>,
    /// Lifetime of JWT authorization grants for other domains.
    pub grant_ttl: Option<HumanDuration>,
    /// Let legacy clients use client_secret (off: static secrets are an antipattern).
    pub allow_client_secret: Option<bool>,
    /// Open RFC 7591 dynamic registration.
    pub dynamic_registration: Option<bool>,
    /// Issue sender-constrained (DPoP or mTLS) access tokens only.
    pub require_sender_constrained_tokens: Option<bool>,
    /// Require server nonces in DPoP proofs.
    pub require_dpop_nonce: Option<bool>,
    /// Accept HTTPS URLs of Client ID Metadata Documents as client_ids.
    pub client_id_metadata_documents: Option<bool>,
    /// Extra CA certificates (PEM) for fetching client-named URLs (metadata documents, jwks_uri).
    pub fetch_ca_file: Option<PathBuf>,
    /// Let client-named URLs reach loopback and private addresses (development only: SSRF).
    pub fetch_allow_private_networks: Option<bool>,
    /// `[[server.oauth.trusted_issuers]]`: authorization servers whose JWT grants are accepted.
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuerSection>,
    /// `[[server.oauth.resources]]`: the resources token exchanges may aim at (a local
    /// gateway's routes are added as it starts).
    #[serde(default)]
    pub resources: Vec<ResourceSection>,
    /// Every authorization request must be pushed first (PAR, RFC 9126; FAPI 2.0).
    pub require_par: Option<bool>,
    /// The poll interval given to CIBA clients (5s).
    pub ciba_interval: Option<HumanDuration>,
    /// How long a CIBA request waits for the user by default (5m).
    pub ciba_expiry: Option<HumanDuration>,
    /// A URL that is POSTed a JSON notice whenever an approval waits for someone.
    pub approval_webhook: Option<String>,
}

/// `[[server.oauth.resources]]`: a resource (RFC 8707) and who serves it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    /// Its resource identifier (an absolute URI; URIs under it are the same resource's).
    pub resource: String,
    /// The client (SPIFFE ID or client_id) that serves it and may exchange its tokens.
    pub server: Option<String>,
    /// Audiences that server may exchange the tokens it receives for.
    #[serde(default)]
    pub exchange_to: Vec<String>,
}

/// `[[server.oauth.trusted_issuers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerSection {
    /// Its issuer identifier.
    pub issuer: String,
    /// Its JWK Set URL.
    pub jwks_uri: String,
    /// Extra CA certificates (PEM) for `jwks_uri`.
    pub ca_file: Option<PathBuf>,
    /// The subjects its grants may name: exact, or prefixes ending in `/` or `:`.
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// A `transaction_token_services` list, which may name only workloads of `trust_domain`: a
/// trust domain's transaction-token services are its own.
pub fn txn_token_services(
    key: &str,
    ids: &[SpiffeId],
    trust_domain: &TrustDomain,
) -> anyhow::Result<Vec<SpiffeId>> {
    if let Some(other) = ids.iter().find(|id| !id.is_member_of(trust_domain)) {
        bail!("{key}: {other} is not in the trust domain {trust_domain}");
    }
    Ok(ids.to_vec())
}

impl OAuthSection {
    fn apply(&self, o: &mut aims_oauth::AsSettings) -> anyhow::Result<()> {
        if let Some(f) = self.token_format {
            o.token_format = match f {
                TokenFormatName::Jwt => aims_oauth::TokenFormat::Jwt,
                TokenFormatName::Opaque => aims_oauth::TokenFormat::Opaque,
            };
        }
        for (field, value) in [
            (&mut o.access_token_ttl, self.access_token_ttl),
            (&mut o.txn_token_ttl, self.transaction_token_ttl),
            (&mut o.refresh_token_ttl, self.refresh_token_ttl),
            (&mut o.grant_ttl, self.grant_ttl),
            (&mut o.ciba_interval, self.ciba_interval),
            (&mut o.ciba_expiry, self.ciba_expiry),
        ] {
            if let Some(v) = value {
                if v.0.as_secs() < 1 {
                    bail!("server.oauth lifetimes must be at least 1s");
                }
                *field = v.0;
            }
        }
        for (field, value) in [
            (&mut o.allow_client_secret, self.allow_client_secret),
            (&mut o.dynamic_registration, self.dynamic_registration),
            (
                &mut o.require_sender_constraint,
                self.require_sender_constrained_tokens,
            ),
            (&mut o.require_dpop_nonce, self.require_dpop_nonce),
            (
                &mut o.client_id_metadata_documents,
                self.client_id_metadata_documents,
            ),
            (
                &mut o.fetch.allow_private_networks,
                self.fetch_allow_private_networks,
            ),
            (&mut o.require_par, self.require_par),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        if let Some(ca) = &self.fetch_ca_file {
            o.fetch.ca_file = Some(ca.clone());
        }
        if let Some(ids) = &self.transaction_token_services {
            o.txn_token_services = txn_token_services(
                "server.oauth.transaction_token_services",
                ids,
                &o.trust_domain,
            )?;
        }
        if let Some(url) = &self.approval_webhook {
            if !url.starts_with("https://") {
                bail!("server.oauth.approval_webhook must be an https URL");
            }
            o.approval_webhook = Some(url.clone());
        }
        for r in &self.resources {
            if reqwest::Url::parse(&r.resource).is_err() {
                bail!(
                    "server.oauth.resources: {:?} is not an absolute URI",
                    r.resource
                );
            }
            o.resources.push(aims_oauth::ResourceServer {
                resource: r.resource.clone(),
                server: r.server.clone(),
                exchange_to: r.exchange_to.clone(),
            });
        }
        for t in &self.trusted_issuers {
            for (name, url) in [("issuer", &t.issuer), ("jwks_uri", &t.jwks_uri)] {
                if !url.starts_with("https://") {
                    bail!("server.oauth.trusted_issuers: {name} {url:?} must be an https URL");
                }
            }
            o.trusted_issuers.push(aims_oauth::TrustedIssuer {
                issuer: t.issuer.trim_end_matches('/').to_owned(),
                jwks_uri: t.jwks_uri.clone(),
                ca_file: t.ca_file.clone(),
                subjects: t.subjects.clone(),
            });
        }
        Ok(())
    }
}

/// A bundle endpoint profile (SPIFFE Federation §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileName {
    /// Web PKI.
    HttpsWeb,
    /// The endpoint's X509-SVID.
    HttpsSpiffe,
}

/// `[[server.federation]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// Its bundle endpoint URL (https).
    pub bundle_endpoint_url: String,
    /// `https_web` or `https_spiffe`.
    pub profile: ProfileName,
    /// https_web: extra CA certificates (PEM) to trust for the endpoint.
    pub ca_file: Option<PathBuf>,
    /// https_spiffe: the SPIFFE ID the endpoint presents.
    pub endpoint_spiffe_id: Option<SpiffeId>,
    /// https_spiffe: the bundle (PEM or JWK Set) to verify a self-serving endpoint with first.
    pub bootstrap_bundle: Option<PathBuf>,
}

impl FederationSection {
    fn to_settings(&self) -> anyhow::Result<Federation> {
        let td = &self.trust_domain;
        let profile = match self.profile {
            ProfileName::HttpsWeb => {
                if self.endpoint_spiffe_id.is_some() || self.bootstrap_bundle.is_some() {
                    bail!(
                        "server.federation {td}: endpoint_spiffe_id and bootstrap_bundle belong to profile = \"https_spiffe\""
                    );
                }
                EndpointProfile::HttpsWeb {
                    ca_file: self.ca_file.clone(),
                }
            }
            ProfileName::HttpsSpiffe => {
                if self.ca_file.is_some() {
                    bail!("server.federation {td}: ca_file belongs to profile = \"https_web\"");
                }
                EndpointProfile::HttpsSpiffe {
                    endpoint_spiffe_id: self.endpoint_spiffe_id.clone().with_context(|| {
                        format!(
                            "server.federation {td}: profile https_spiffe needs endpoint_spiffe_id"
                        )
                    })?,
                    bootstrap_bundle: self.bootstrap_bundle.clone(),
                }
            }
        };
        Ok(Federation {
            trust_domain: td.clone(),
            url: self.bundle_endpoint_url.clone(),
            profile,
        })
    }
}

/// `[server.ca]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// CA lifetime.
    pub ttl: Option<HumanDuration>,
    /// CA key type: `ec-p256`, `ec-p384`, `ed25519` or `rsa-2048`.
    pub key_type: Option<KeyType>,
    /// `[server.ca.upstream]`.
    pub upstream: Option<UpstreamSection>,
}

/// `[server.ca.upstream]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Upstream CA certificate (PEM).
    pub cert_file: PathBuf,
    /// Upstream CA key (PEM).
    pub key_file: PathBuf,
    /// Roots to publish (PEM).
    pub bundle_file: Option<PathBuf>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
}

/// `[agent]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The server's agent API, `host:port`; several replicas comma separated.
    pub server_address: Option<String>,
    /// Bundle (PEM or JWK Set) to trust the server with before the first sync.
    pub trust_bundle: Option<PathBuf>,
    /// The Workload API socket.
    pub socket_path: Option<PathBuf>,
    /// A file holding a join token (tokens are secrets: not inline in the config).
    pub join_token_file: Option<PathBuf>,
    /// Key type of workload SVIDs.
    pub workload_key_type: Option<KeyType>,
    /// `[agent.x509pop]`: node certificate and key for x509pop attestation.
    pub x509pop: Option<X509PopSection>,
}

/// `[agent.x509pop]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509PopSection {
    /// Node certificate (PEM).
    pub cert_file: PathBuf,
    /// Node key (PEM).
    pub key_file: PathBuf,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Level or filter, e.g. `info` or `aims=debug,info`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<LogFormat>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }
}

/// Flags every long-running command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonFlags {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', env = "AIMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (store, keys, sockets) [default: ./.aims].
    #[arg(long, env = "AIMS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Trust domain [default for `aims up`: aims.local].
    #[arg(long, env = "AIMS_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP; keep it on loopback or a
    /// private network) [default: off].
    #[arg(long, env = "AIMS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Flags that override the file, shared by `aims up` and `aims server`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// HTTPS listen address [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Agent API listen address (gRPC over mTLS) [default: 127.0.0.1:8081].
    #[arg(long)]
    pub agent_listen: Option<SocketAddr>,
    /// OAuth mutual-TLS listen address (RFC 8705 aliases) [default: 127.0.0.1:8444].
    #[arg(long)]
    pub oauth_mtls_listen: Option<SocketAddr>,
    /// Store URL: sqlite://PATH or postgres://USER@HOST/DB [default: SQLite in the data dir].
    #[arg(long, env = "AIMS_DATABASE")]
    pub database: Option<String>,
    /// Admin socket [default: DATA_DIR/admin.sock].
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,
    /// The URL clients reach the HTTPS listener at, and the OAuth issuer: a load balancer's
    /// in front of several replicas [default: https://PUBLIC_HOST:HTTPS_PORT].
    #[arg(long)]
    pub public_url: Option<String>,
    /// The URL clients reach the OAuth mutual-TLS listener at [default:
    /// https://PUBLIC_HOST:MTLS_PORT].
    #[arg(long)]
    pub public_mtls_url: Option<String>,
}

/// The config file named by the flags, or an empty one.
pub fn load_file(flags: &CommonFlags) -> anyhow::Result<FileConfig> {
    match &flags.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    }
}

/// The data directory: flag, then file, then `./.aims`.
pub fn data_dir(flag: Option<&PathBuf>, file: &FileConfig) -> PathBuf {
    flag.cloned()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Flags of `aims agent`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// The server's agent API, HOST:PORT [default: 127.0.0.1:8081]; for several replicas,
    /// HOST:PORT,HOST:PORT,… (tried in turn; the agent moves on when one fails).
    #[arg(long, env = "AIMS_SERVER_ADDRESS")]
    pub server_address: Option<String>,
    /// Trust bundle (PEM or JWK Set, e.g. from `aims bundle show`) to verify the server with
    /// until the first sync.
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// Join token from `aims token generate` (needed only until the agent has an SVID).
    #[arg(long, env = "AIMS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Workload API socket [default: DATA_DIR/agent.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// The trust domain: flag, then file, then a default.
pub fn trust_domain(
    flag: Option<&String>,
    file: &FileConfig,
    default: Option<&str>,
) -> anyhow::Result<TrustDomain> {
    match (flag, &file.trust_domain, default) {
        (Some(flag), _, _) => TrustDomain::new(flag)
            .with_context(|| format!("--trust-domain {flag:?} is not a valid trust domain")),
        (None, Some(td), _) => Ok(td.clone()),
        (None, None, Some(default)) => Ok(TrustDomain::new(default)?),
        (None, None, None) => bail!(
            "no trust domain: pass --trust-domain (e.g. --trust-domain example.org) or set trust_domain in the config file"
        ),
    }
}

/// Builds the agent settings from file and flags (flags win).
pub fn agent_settings(flags: &AgentFlags, file: &FileConfig) -> anyhow::Result<AgentSettings> {
    let td = trust_domain(flags.common.trust_domain.as_ref(), file, None)?;
    let sec = &file.agent;
    let address = flags
        .server_address
        .clone()
        .or_else(|| sec.server_address.clone())
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let mut s = AgentSettings::new(td, data_dir(flags.common.data_dir.as_ref(), file), address);
    s.trust_bootstrap = flags
        .trust_bundle
        .clone()
        .or_else(|| sec.trust_bundle.clone())
        .map(TrustBootstrap::File);
    s.socket_path = flags.socket.clone().or_else(|| sec.socket_path.clone());
    if let Some(kt) = sec.workload_key_type {
        s.workload_key_type = kt;
    }
    s.attestation = match (&flags.join_token, &sec.join_token_file, &sec.x509pop) {
        (Some(token), _, _) => NodeAttestation::JoinToken(token.trim().to_owned()),
        (None, Some(path), _) => NodeAttestation::JoinToken(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read agent.join_token_file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None, Some(x)) => NodeAttestation::X509Pop {
            cert_file: x.cert_file.clone(),
            key_file: x.key_file.clone(),
        },
        (None, None, None) => NodeAttestation::None,
    };
    Ok(s)
}

/// Builds the server settings from file and flags (flags win).
pub fn server_settings(
    flags: &ServerFlags,
    file: &FileConfig,
    default_trust_domain: Option<&str>,
) -> anyhow::Result<ServerSettings> {
    let common = &flags.common;
    let trust_domain = trust_domain(common.trust_domain.as_ref(), file, default_trust_domain)?;
    let mut s = ServerSettings::new(trust_domain, data_dir(common.data_dir.as_ref(), file));
    let sec = &file.server;
    if let Some(l) = flags.listen.or(sec.listen) {
        s.listen = l;
    }
    if let Some(l) = flags.agent_listen.or(sec.agent_listen) {
        s.agent_listen = l;
    }
    if let Some(l) = flags.oauth_mtls_listen.or(sec.oauth_mtls_listen) {
        s.oauth_mtls_listen = l;
    }
    sec.oauth.apply(&mut s.oauth)?;
    if let Some(p) = sec.people.password_sign_in {
        s.people.password_sign_in = p;
    }
    for (field, value) in [
        (&mut s.people.session_ttl, sec.people.session_ttl),
        (&mut s.people.enrolment_ttl, sec.people.enrolment_ttl),
    ] {
        if let Some(v) = value {
            *field = v.0;
        }
    }
    s.x509pop_ca_file = sec.x509pop_ca_file.clone();
    if let Some(h) = &sec.public_host {
        s.public_host = h.clone();
    }
    s.public_url = flags.public_url.clone().or_else(|| sec.public_url.clone());
    s.public_mtls_url = flags
        .public_mtls_url
        .clone()
        .or_else(|| sec.public_mtls_url.clone());
    s.database_url = flags.database.clone().or_else(|| sec.database.clone());
    s.admin_socket = flags
        .admin_socket
        .clone()
        .or_else(|| sec.admin_socket.clone());
    s.server_id = sec.server_id.clone();
    for (field, value) in [
        (&mut s.x509_svid_ttl, sec.x509_svid_ttl),
        (&mut s.jwt_svid_ttl, sec.jwt_svid_ttl),
        (&mut s.wit_svid_ttl, sec.wit_svid_ttl),
        (&mut s.bundle_refresh_hint, sec.bundle_refresh_hint),
    ] {
        if let Some(v) = value {
            *field = v.0;
        }
    }
    s.ca = AuthorityPolicy {
        ca_ttl: sec.ca.ttl.map_or(s.ca.ca_ttl, |d| d.0),
        key_type: sec.ca.key_type.unwrap_or(s.ca.key_type),
    };
    s.agent_svid_ttl = sec.agent_svid_ttl.map(|d| d.0);
    let agent_svid_ttl = s.agent_svid_ttl.unwrap_or(s.x509_svid_ttl);
    for (name, d) in [
        ("server.x509_svid_ttl", s.x509_svid_ttl),
        ("server.agent_svid_ttl", agent_svid_ttl),
    ] {
        if s.ca.ca_ttl < 2 * d {
            bail!(
                "server.ca.ttl ({}) must be at least twice {name} ({}) so SVIDs can rotate within a CA's life",
                aims_core::format_duration(s.ca.ca_ttl),
                aims_core::format_duration(d)
            );
        }
    }
    for (name, d) in [
        ("server.x509_svid_ttl", s.x509_svid_ttl),
        ("server.agent_svid_ttl", agent_svid_ttl),
        ("server.jwt_svid_ttl", s.jwt_svid_ttl),
        ("server.wit_svid_ttl", s.wit_svid_ttl),
    ] {
        if d.as_secs() < 10 {
            bail!("{name} must be at least 10s");
        }
    }
    s.upstream = sec.ca.upstream.as_ref().map(|u| UpstreamFiles {
        cert_file: u.cert_file.clone(),
        key_file: u.key_file.clone(),
        bundle_file: u.bundle_file.clone(),
    });
    s.federation = sec
        .federation
        .iter()
        .map(FederationSection::to_settings)
        .collect::<anyhow::Result<_>>()?;
    for f in &s.federation {
        f.validate(&s.trust_domain)?;
    }
    for src in &sec.signal_source {
        if !src.jwks_uri.starts_with("https://") {
            bail!(
                "server.signal_source {}: jwks_uri must be https",
                src.issuer
            );
        }
    }
    s.signal_sources = sec.signal_source.clone();
    if let Some(mode) = sec.audit {
        s.audit = mode.into();
    }
    if let Some(writers) = &sec.audit_writers {
        s.audit_writers = writers
            .iter()
            .map(|w| {
                aims_core::SpiffeId::parse(w)
                    .map_err(|e| anyhow::anyhow!("server.audit_writers: {w:?}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    s.tls = sec.tls.as_ref().map(|t| TlsFiles {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
    });
    Ok(s)
}

/// Where a CLI command finds the admin socket.
pub fn admin_socket(data_dir: Option<&PathBuf>, explicit: Option<&PathBuf>) -> PathBuf {
    explicit.cloned().unwrap_or_else(|| {
        data_dir
            .cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
            .join("admin.sock")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let f = FileConfig::parse(
            r#"
trust_domain = "example.org"
data_dir = "/var/lib/aims"
[server]
listen = "0.0.0.0:8443"
database = "postgres://aims@db/aims"
x509_svid_ttl = "30m"
agent_svid_ttl = "24h"
jwt_svid_ttl = 120
[server.ca]
ttl = "48h"
key_type = "ec-p384"
[server.ca.upstream]
cert_file = "/etc/aims/upstream.pem"
key_file = "/etc/aims/upstream.key"
[[server.federation]]
trust_domain = "partner.org"
bundle_endpoint_url = "https://partner.org/bundle"
profile = "https_web"
[[server.federation]]
trust_domain = "other.org"
bundle_endpoint_url = "https://aims.other.org:8081/bundle"
profile = "https_spiffe"
endpoint_spiffe_id = "spiffe://other.org/aims/server"
bootstrap_bundle = "/etc/aims/other.pem"
[server.oauth]
token_format = "opaque"
access_token_ttl = "10m"
require_dpop_nonce = true
[[server.oauth.trusted_issuers]]
issuer = "https://as.partner.org/"
jwks_uri = "https://as.partner.org/oauth2/jwks"
[agent]
server_address = "aims.example.org:8081"
socket_path = "/run/aims/agent.sock"
[agent.x509pop]
cert_file = "/etc/aims/node.pem"
key_file = "/etc/aims/node.key"
[log]
level = "debug"
format = "json"
"#,
        )
        .unwrap();
        let s = server_settings(&ServerFlags::default(), &f, None).unwrap();
        assert_eq!(s.trust_domain.name(), "example.org");
        assert_eq!(s.x509_svid_ttl.as_secs(), 1800);
        assert_eq!(s.agent_svid_ttl.map(|d| d.as_secs()), Some(24 * 3600));
        assert_eq!(s.jwt_svid_ttl.as_secs(), 120);
        assert_eq!(s.ca.ca_ttl.as_secs(), 48 * 3600);
        assert_eq!(s.ca.key_type, KeyType::EcP384);
        assert!(s.upstream.is_some());
        assert_eq!(s.federation.len(), 2);
        assert_eq!(s.oauth.token_format, aims_oauth::TokenFormat::Opaque);
        assert_eq!(s.oauth.access_token_ttl.as_secs(), 600);
        assert!(s.oauth.require_dpop_nonce && !s.oauth.allow_client_secret);
        assert_eq!(s.oauth.trusted_issuers[0].issuer, "https://as.partner.org");
        assert!(matches!(
            &s.federation[1].profile,
            EndpointProfile::HttpsSpiffe { endpoint_spiffe_id, .. } if endpoint_spiffe_id.as_str() == "spiffe://other.org/aims/server"
        ));
        let a = agent_settings(&AgentFlags::default(), &f).unwrap();
        assert_eq!(a.server_address, "aims.example.org:8081");
        assert!(matches!(a.attestation, NodeAttestation::X509Pop { .. }));
        assert_eq!(f.log.format, Some(LogFormat::Json));
        // Flags win over the file.
        let flags = ServerFlags {
            common: CommonFlags {
                trust_domain: Some("third.org".into()),
                ..CommonFlags::default()
            },
            ..ServerFlags::default()
        };
        assert_eq!(
            server_settings(&flags, &f, None)
                .unwrap()
                .trust_domain
                .name(),
            "third.org"
        );
    }

    #[test]
    fn bad_files_name_the_key_and_the_expectation() {
        for (text, expect) in [
            ("trust_domian = \"x\"", "unknown field `trust_domian`"),
            ("[server]\nlisten = \"nowhere\"", "listen"),
            (
                "[server]\nx509_svid_ttl = \"5 parsecs\"",
                "invalid duration",
            ),
            ("trust_domain = \"Example.org\"", "trust domain characters"),
            ("[server.ca]\nkey_type = \"dsa\"", "key_type"),
            ("[server]\n[server]", "duplicate"),
        ] {
            let err = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(err.contains(expect), "{text:?}: {err}");
        }
        let f =
            FileConfig::parse("trust_domain = \"example.org\"\n[server]\nx509_svid_ttl = \"20h\"")
                .unwrap();
        let err = server_settings(&ServerFlags::default(), &f, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.ca.ttl"), "{err}");
        for (agent_ttl, expect) in [
            ("20h", "twice server.agent_svid_ttl"),
            ("5s", "at least 10s"),
        ] {
            let f = FileConfig::parse(&format!(
                "trust_domain = \"example.org\"\n[server]\nagent_svid_ttl = \"{agent_ttl}\""
            ))
            .unwrap();
            let err = server_settings(&ServerFlags::default(), &f, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{agent_ttl}: {err}");
        }
        let err = server_settings(&ServerFlags::default(), &FileConfig::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--trust-domain"), "{err}");
        // A trust domain names only its own transaction-token services.
        let f = FileConfig::parse(
            "trust_domain = \"example.org\"\n[server.oauth]\ntransaction_token_services = [\"spiffe://example.org/gw\", \"spiffe://other.org/gw\"]",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            server_settings(&ServerFlags::default(), &f, None).unwrap_err()
        );
        assert!(
            err.contains("server.oauth.transaction_token_services: spiffe://other.org/gw"),
            "{err}"
        );
        let f = FileConfig::parse(
            "trust_domain = \"example.org\"\n[server.oauth]\ntransaction_token_services = [\"spiffe://example.org/gw\"]",
        )
        .unwrap();
        let s = server_settings(&ServerFlags::default(), &f, None).unwrap();
        assert_eq!(
            s.oauth.txn_token_services[0].as_str(),
            "spiffe://example.org/gw"
        );
        for (federation, expect) in [
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"http://partner.org/bundle\"\nprofile = \"https_web\"",
                "must be https",
            ),
            (
                "trust_domain = \"example.org\"\nbundle_endpoint_url = \"https://x/bundle\"\nprofile = \"https_web\"",
                "itself",
            ),
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"https://x/bundle\"\nprofile = \"https_spiffe\"",
                "endpoint_spiffe_id",
            ),
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"https://x/bundle\"\nprofile = \"https_spiffe\"\nendpoint_spiffe_id = \"spiffe://partner.org/s\"",
                "bootstrap bundle",
            ),
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"https://u:p@x/bundle\"\nprofile = \"https_web\"",
                "userinfo",
            ),
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"https://x/bundle\"\nprofile = \"https_web\"\nendpoint_spiffe_id = \"spiffe://partner.org/s\"",
                "belong to profile",
            ),
            (
                "trust_domain = \"partner.org\"\nbundle_endpoint_url = \"https://x/bundle\"\nprofile = \"mtls\"",
                "unknown variant",
            ),
        ] {
            let text =
                format!("trust_domain = \"example.org\"\n[[server.federation]]\n{federation}");
            let err = FileConfig::parse(&text)
                .and_then(|f| server_settings(&ServerFlags::default(), &f, None))
                .map(|_| ())
                .unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains(expect), "{federation}: {err}");
        }
    }
}
