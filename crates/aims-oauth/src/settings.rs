//! The authorization server's typed settings.

use std::path::PathBuf;
use std::time::Duration;

use aims_core::TrustDomain;

use crate::fetch::FetchSettings;

/// How access tokens are issued (AIMS AZ-9: both are supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    /// RFC 9068 JWTs, validated by resource servers locally.
    #[default]
    Jwt,
    /// Random references, validated by RFC 7662 introspection.
    Opaque,
}

/// Another authorization server whose JWT authorization grants this one accepts (RFC 7523
/// §2.1; identity chaining, AIMS AZ-23…AZ-26).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Its `issuer` identifier (the grant's `iss`).
    pub issuer: String,
    /// Where its signing keys are.
    pub jwks_uri: String,
    /// Extra CA certificates (PEM) to trust for `jwks_uri`.
    pub ca_file: Option<PathBuf>,
    /// The subjects its grants may name (identity chaining §2.4.2: a subject this server cannot
    /// identify is refused): each an exact subject, or a prefix when it ends in `/` or `:`
    /// (`spiffe://partner.org/`). Empty: any subject but a workload of this trust domain, which
    /// no other authorization server speaks for.
    pub subjects: Vec<String>,
}

impl TrustedIssuer {
    /// Whether its grants may name `sub` (beside the rule that none names a workload of this
    /// trust domain).
    pub fn may_name(&self, sub: &str) -> bool {
        self.subjects.is_empty()
            || self.subjects.iter().any(|s| {
                s == sub || ((s.ends_with('/') || s.ends_with(':')) && sub.starts_with(s.as_str()))
            })
    }
}

/// A resource this authorization server issues tokens for (RFC 8707 resource indicator): the
/// audiences a token exchange may name (AIMS AZ-6, PV-6; see [`crate::audience`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServer {
    /// The resource identifier, an absolute URI; a URI under it (by path segment) is the same
    /// resource's.
    pub resource: String,
    /// The client (`client_id` or SPIFFE ID) that serves it and receives its tokens, e.g. the
    /// gateway in front of a route; it may exchange them.
    pub server: Option<String>,
    /// Upstream audiences its server exchanges received tokens for (a gateway route's
    /// `exchange_audience`).
    pub exchange_to: Vec<String>,
}

impl ResourceServer {
    /// A resource with no registered server.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            server: None,
            exchange_to: Vec::new(),
        }
    }
}

/// Everything the authorization server needs.
#[derive(Debug, Clone)]
pub struct AsSettings {
    /// The issuer identifier (RFC 8414 §2): the HTTPS base URL, no trailing slash.
    pub issuer: String,
    /// The base URL of the mutual-TLS aliases of the endpoints (RFC 8705 §5), where clients
    /// present X509-SVIDs.
    pub mtls_base: Option<String>,
    /// Our trust domain (transaction tokens are for it only).
    pub trust_domain: TrustDomain,
    /// Access token lifetime (5 min).
    pub access_token_ttl: Duration,
    /// Transaction token lifetime (60 s).
    pub txn_token_ttl: Duration,
    /// The workloads (with those under their paths) of this trust domain that are
    /// transaction-token services at its edge: their `x5c`-signed transaction tokens are
    /// accepted as this server's own [default: `/aims/gateway`, `/gateway/…`].
    pub txn_token_services: Vec<aims_core::SpiffeId>,
    /// JWT authorization grant lifetime for other domains (5 min).
    pub grant_ttl: Duration,
    /// Refresh token lifetime (24 h).
    pub refresh_token_ttl: Duration,
    /// JWT or opaque access tokens.
    pub token_format: TokenFormat,
    /// Whether legacy `client_secret` clients may register and authenticate (off: static
    /// secrets are an antipattern, AIMS CR-9).
    pub allow_client_secret: bool,
    /// Whether RFC 7591 dynamic registration is open (off; MCP 2026-07-28 deprecates it for
    /// Client ID Metadata Documents).
    pub dynamic_registration: bool,
    /// Whether every access token must be sender-constrained (DPoP or mTLS).
    pub require_sender_constraint: bool,
    /// Whether DPoP proofs must carry a server nonce (RFC 9449 §8).
    pub require_dpop_nonce: bool,
    /// Issuers whose JWT authorization grants are accepted.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Registered resources: what a token exchange may aim at.
    pub resources: Vec<ResourceServer>,
    /// Clock skew tolerated on assertions and proofs (60 s).
    pub leeway: Duration,
    /// Whether clients may identify by Client ID Metadata Document URLs (on: MCP 2026-07-28's
    /// way for a client to introduce itself; every fetch goes through the SSRF guards).
    pub client_id_metadata_documents: bool,
    /// How client-named URLs (metadata documents, `jwks_uri`) are fetched.
    pub fetch: FetchSettings,
    /// Whether every authorization request must be pushed first (RFC 9126 §5; FAPI 2.0).
    /// A client can require it for itself (`require_pushed_authorization_requests`).
    pub require_par: bool,
    /// Authorization code lifetime (60 s; RFC 6749 §4.1.2 recommends at most 10 minutes).
    pub code_ttl: Duration,
    /// The poll interval CIBA clients are given (5 s, CIBA Core §7.3's default).
    pub ciba_interval: Duration,
    /// The default and the longest lifetime of a CIBA request (5 and 30 minutes).
    pub ciba_expiry: Duration,
    /// The longest `requested_expiry` accepted.
    pub ciba_max_expiry: Duration,
    /// Where people are told of approvals waiting for them (a JSON POST; AIMS AZ-29).
    pub approval_webhook: Option<String>,
}

impl AsSettings {
    /// Defaults for `issuer` in `trust_domain`.
    pub fn new(issuer: String, trust_domain: TrustDomain) -> Self {
        let txn_token_services = aims_token::txn::TxnTokenServices::default_edge(&trust_domain);
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            mtls_base: None,
            trust_domain,
            access_token_ttl: Duration::from_secs(300),
            txn_token_ttl: Duration::from_secs(60),
            txn_token_services,
            grant_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(24 * 3600),
            token_format: TokenFormat::Jwt,
            allow_client_secret: false,
            dynamic_registration: false,
            require_sender_constraint: false,
            require_dpop_nonce: false,
            trusted_issuers: Vec::new(),
            resources: Vec::new(),
            leeway: Duration::from_secs(60),
            client_id_metadata_documents: true,
            fetch: FetchSettings::default(),
            require_par: false,
            code_ttl: Duration::from_secs(60),
            ciba_interval: Duration::from_secs(5),
            ciba_expiry: Duration::from_secs(300),
            ciba_max_expiry: Duration::from_secs(1800),
            approval_webhook: None,
        }
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}{}", self.issuer, aims_token::wire::TOKEN_PATH)
    }

    /// The token endpoint's mutual-TLS alias.
    pub fn mtls_token_endpoint(&self) -> Option<String> {
        self.mtls_base
            .as_ref()
            .map(|b| format!("{b}{}", aims_token::wire::TOKEN_PATH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_issuer_names_only_the_subjects_it_is_given() {
        let issuer = |subjects: &[&str]| TrustedIssuer {
            issuer: "https://as.partner.org".into(),
            jwks_uri: "https://as.partner.org/jwks".into(),
            ca_file: None,
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert!(issuer(&[]).may_name("anyone"));
        let pinned = issuer(&["spiffe://partner.org/", "user:", "alice"]);
        assert!(pinned.may_name("spiffe://partner.org/agent/a"));
        assert!(pinned.may_name("user:42"));
        assert!(pinned.may_name("alice"));
        // An exact entry is not a prefix; a prefix is matched from the start.
        assert!(!pinned.may_name("alice2"));
        assert!(!pinned.may_name("spiffe://partner.org.evil/agent/a"));
        assert!(!pinned.may_name("spiffe://other.org/agent/a"));
    }
}
