//! `[gateway]` and its `[[gateway.route]]`s: the enforcement gateway's part of the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use aims_core::{HumanDuration, SpiffeId, TrustDomain};
use aims_gateway::{AuditMode, GatewaySettings, GatewayTls, Route, RouteKind, TxnTokenIssuer};
use anyhow::bail;
use serde::Deserialize;

/// Audit modes as written in the file.
#[derive(Debug, Clone, Copy, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuditModeName {
    /// Each response waits for its record to be durable.
    Sync,
    /// Records are queued (bounded) and flushed at once.
    Async,
}

impl From<AuditModeName> for AuditMode {
    fn from(m: AuditModeName) -> Self {
        match m {
            AuditModeName::Sync => AuditMode::Sync,
            AuditModeName::Async => AuditMode::Async,
        }
    }
}

/// Who mints transaction tokens, as written in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnTokenIssuerName {
    /// The gateway, with its X509-SVID (no round trip).
    Gateway,
    /// The AIMS server (a token exchange per call).
    Server,
}

/// Route kinds as written in the file.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKindName {
    /// An HTTP API.
    #[default]
    Http,
    /// An MCP server (streamable HTTP).
    Mcp,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Listen address [default: 127.0.0.1:8445].
    pub listen: Option<SocketAddr>,
    /// The URL clients use [default: https://localhost:PORT].
    pub public_url: Option<String>,
    /// The AIMS server's OAuth issuer URL (`aims gateway`; `aims up` knows it).
    pub issuer: Option<String>,
    /// A CA the AIMS server's certificate chains to.
    pub server_ca_file: Option<PathBuf>,
    /// The Workload API socket [default: SPIFFE_ENDPOINT_SOCKET].
    pub workload_socket: Option<String>,
    /// The SPIFFE ID whose SVID the gateway uses, when the Workload API offers several.
    pub spiffe_id: Option<SpiffeId>,
    /// `sync` or `async` [default: async].
    pub audit: Option<AuditModeName>,
    /// A Web PKI certificate to present instead of the X509-SVID.
    pub tls_cert_file: Option<PathBuf>,
    /// Its key.
    pub tls_key_file: Option<PathBuf>,
    /// How long an introspected token status is trusted [default: 1s].
    pub token_recheck: Option<HumanDuration>,
    /// The pause between policy polls after an error, or when the server does not hold them
    /// (AIMS servers answer a held poll as soon as a new version is in force) [default: 500ms].
    pub policy_poll: Option<HumanDuration>,
    /// How long a decision is reused for an identical request [default: 1s; 0 disables].
    pub decision_ttl: Option<HumanDuration>,
    /// Who mints the transaction tokens forwarded upstream: `gateway` (signed with its
    /// X509-SVID, no round trip) or `server` [default: gateway].
    pub transaction_token_issuer: Option<TxnTokenIssuerName>,
    /// SPIFFE IDs (with the IDs under them) of the transaction-token services whose tokens are
    /// accepted [default: `/aims/gateway` and `/gateway/…` of the trust domain].
    pub transaction_token_services: Option<Vec<SpiffeId>>,
    /// Lifetime of the transaction tokens the gateway mints [default: 60s].
    pub transaction_token_ttl: Option<HumanDuration>,
    /// `aims up`: run the built-in demo tool behind the gateway [default: when no routes].
    pub demo_tool: Option<bool>,
    /// `aims up`: where the demo tool listens (plain HTTP) [default: a free loopback port].
    pub demo_tool_listen: Option<SocketAddr>,
    /// The routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
}

/// `[[gateway.route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Its name (the Cedar Tool or McpServer id).
    pub name: String,
    /// Path prefix it serves.
    pub path_prefix: String,
    /// Upstream base URL.
    pub upstream: String,
    /// Remove the prefix before forwarding [default: false].
    #[serde(default)]
    pub strip_prefix: bool,
    /// `http` or `mcp` [default: http].
    #[serde(default)]
    pub kind: RouteKindName,
    /// The resource identifier tokens name [default: public URL + prefix].
    pub resource: Option<String>,
    /// Scopes the route requires.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// MCP: scopes per tool.
    #[serde(default)]
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// The route's scope hierarchy: a broader scope and the narrower ones it implies
    /// (`files = ["files:read", "files:write"]`; MCP 2026-07-28).
    #[serde(default)]
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// Attach a transaction token [default: true].
    pub transaction_tokens: Option<bool>,
    /// Forward a token exchanged for this audience (the upstream takes OAuth tokens).
    pub exchange_audience: Option<String>,
}

impl RouteSection {
    /// The route.
    pub fn to_route(&self) -> Route {
        Route {
            name: self.name.clone(),
            path_prefix: self.path_prefix.clone(),
            upstream: self.upstream.clone(),
            strip_prefix: self.strip_prefix,
            kind: match self.kind {
                RouteKindName::Http => RouteKind::Http,
                RouteKindName::Mcp => RouteKind::Mcp,
            },
            resource: self.resource.clone(),
            required_scopes: self.required_scopes.clone(),
            tool_scopes: self.tool_scopes.clone(),
            scope_implies: self.scope_implies.clone(),
            transaction_tokens: self.transaction_tokens.unwrap_or(true),
            exchange_audience: self.exchange_audience.clone(),
        }
    }
}

impl GatewaySection {
    /// Settings for a gateway of `trust_domain` whose AS is `issuer` (flag or file).
    pub fn settings(
        &self,
        trust_domain: TrustDomain,
        issuer: Option<String>,
    ) -> anyhow::Result<GatewaySettings> {
        let Some(issuer) = issuer.or_else(|| self.issuer.clone()) else {
            bail!("no AIMS server: pass --issuer https://HOST:8443 or set gateway.issuer");
        };
        let mut s = GatewaySettings::new(trust_domain, issuer);
        if let Some(l) = self.listen {
            s.listen = l;
        }
        s.public_url = self.public_url.clone();
        s.server_ca_file = self.server_ca_file.clone();
        s.workload_socket = self.workload_socket.clone();
        s.spiffe_id = self.spiffe_id.clone();
        if let Some(m) = self.audit {
            s.audit = m.into();
        }
        s.tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert_file), Some(key_file)) => GatewayTls::Files {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            },
            (None, None) => GatewayTls::Svid,
            _ => bail!("gateway.tls_cert_file and gateway.tls_key_file go together"),
        };
        if let Some(d) = self.token_recheck {
            s.token_recheck = d.0;
        }
        if let Some(d) = self.policy_poll {
            s.policy_poll = d.0;
        }
        if let Some(d) = self.decision_ttl {
            s.decision_ttl = d.0;
        }
        if let Some(i) = self.transaction_token_issuer {
            s.txn_token_issuer = match i {
                TxnTokenIssuerName::Gateway => TxnTokenIssuer::Gateway,
                TxnTokenIssuerName::Server => TxnTokenIssuer::Server,
            };
        }
        if let Some(ids) = &self.transaction_token_services {
            s.txn_token_services = super::txn_token_services(
                "gateway.transaction_token_services",
                ids,
                &s.trust_domain,
            )?;
        }
        if let Some(d) = self.transaction_token_ttl {
            if d.0.as_secs() < 1 {
                bail!("gateway.transaction_token_ttl must be at least 1s");
            }
            s.txn_token_ttl = d.0;
        }
        s.routes = self.routes.iter().map(RouteSection::to_route).collect();
        Ok(s)
    }
}
