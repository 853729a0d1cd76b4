//! The admin API's request and response bodies (JSON over the admin Unix socket).

use aims_core::SpiffeId;
use serde::{Deserialize, Serialize};

/// `POST /v1/svid/x509`: sign a CSR (the operator's `aims svid mint x509`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintX509Request {
    /// The identity to certify.
    pub spiffe_id: SpiffeId,
    /// PKCS#10 request, PEM.
    pub csr_pem: String,
    /// Lifetime in seconds (capped by the server's maximum).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// DNS SANs to include.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// The minted X509-SVID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintX509Response {
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// Leaf and intermediate(s), PEM.
    pub chain_pem: String,
    /// The trust bundle's X.509 authorities, PEM.
    pub bundle_pem: String,
    /// Leaf expiry, Unix seconds.
    pub expires_at: i64,
    /// Leaf serial, hex.
    pub serial: String,
}

/// `POST /v1/svid/jwt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintJwtRequest {
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// Audiences (at least one).
    pub audience: Vec<String>,
    /// Lifetime in seconds.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A minted JWT-SVID or WIT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintTokenResponse {
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// The compact JWS.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/svid/wit`: a WIT-SVID binding a public key the caller holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintWitRequest {
    /// The identity.
    pub spiffe_id: SpiffeId,
    /// The public key to bind (`cnf.jwk`), a JWK with its `alg`.
    pub public_jwk: serde_json::Value,
    /// Lifetime in seconds.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// `GET /v1/bundle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleResponse {
    /// Trust domain.
    pub trust_domain: String,
    /// `spiffe_sequence`.
    pub sequence: u64,
    /// The SPIFFE bundle JWK Set.
    pub jwks: serde_json::Value,
    /// The X.509 authorities, PEM.
    pub pem: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always "ok" when the server answers.
    pub status: String,
    /// Trust domain.
    pub trust_domain: String,
    /// This replica's id.
    pub server_id: String,
    /// AIMS version.
    pub version: String,
}

/// `POST /v1/tokens`: a join token for node attestation (`aims token generate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateJoinTokenRequest {
    /// The SPIFFE ID the agent gets; default `spiffe://<td>/aims/agent/join_token/<digest>`.
    #[serde(default)]
    pub spiffe_id: Option<SpiffeId>,
    /// Lifetime in seconds (default 1 h, at most 7 days).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A new join token. The token is shown once; the server keeps only its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    /// The token.
    pub token: String,
    /// The SPIFFE ID an agent attesting with it gets.
    pub spiffe_id: SpiffeId,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/agents/ban` and `/v1/agents/evict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRequest {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
}

/// `POST /v1/clients`: register an OAuth client (SPIFFE workloads need none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateClientRequest {
    /// The identifier; default: a generated UUID.
    #[serde(default)]
    pub client_id: Option<String>,
    /// RFC 7591 client metadata.
    pub metadata: serde_json::Value,
}

/// `POST /v1/users`: a user who can delegate to agents and approve their requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUserRequest {
    /// The sign-in name.
    pub username: String,
    /// The name pages show.
    #[serde(default)]
    pub display_name: Option<String>,
    /// May sign in to the console.
    #[serde(default)]
    pub admin: bool,
    /// An initial password (the fallback; passkeys are enrolled through the link).
    #[serde(default)]
    pub password: Option<String>,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code: `invalid_request`, `not_found`, `conflict`, `payload_too_large`,
    /// `forbidden`, `unavailable`, `internal`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
}

/// `POST /v1/policy`: validate a policy set and, unless `dry_run`, put it in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyPolicyRequest {
    /// The Cedar text.
    pub text: String,
    /// The schema and entities of an application whose enforcement points ask the AuthZEN
    /// API, if any (a version without one has none, whatever the previous version had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<aims_policy::Application>,
    /// Validate and diff only.
    #[serde(default)]
    pub dry_run: bool,
    /// Who applies it (recorded with the version).
    #[serde(default)]
    pub author: Option<String>,
}

/// The newest signed audit checkpoint and its verifier key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The C2SP signed note, if a checkpoint was signed yet.
    pub note: Option<String>,
    /// The C2SP verifier key.
    pub vkey: String,
}

/// `POST /v1/remediation/revoke` and `/lift`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemediationRequest {
    /// The principal: an agent's SPIFFE ID, a client id or a user.
    pub principal: String,
    /// Why (recorded in the audit log).
    pub cause: String,
}

impl RemediationRequest {
    /// Both fields must say something, and not too much.
    pub fn check(&self) -> Result<(), InvalidRequest> {
        for (what, v) in [("principal", &self.principal), ("cause", &self.cause)] {
            if v.trim().is_empty() || v.len() > 1024 {
                return Err(InvalidRequest(format!(
                    "{what} must be 1 to 1024 characters"
                )));
            }
        }
        Ok(())
    }
}

/// A request whose fields are out of bounds (answered 400 `invalid_request`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

/// `POST /v1/remediation/entry`: disable or enable a registration entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryRemediationRequest {
    /// The entry.
    pub entry_id: String,
    /// Disable (true) or enable (false).
    pub disabled: bool,
    /// Why (recorded in the audit log).
    pub cause: String,
}

/// `POST /v1/compliance/report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComplianceRequest {
    /// A rule document (TOML); the shipped rules when absent.
    #[serde(default)]
    pub rules: Option<String>,
}
