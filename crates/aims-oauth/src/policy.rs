//! The policy decision point every grant consults (AIMS AZ-4, PV-1): may this client obtain
//! these scopes, for this audience and these authorization details, for this subject, now?
//! A typed trait; the Cedar PDP serves it when the policy layer lands.

use aims_core::SpiffeId;

/// What a grant is about to issue.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    /// The grant type (`client_credentials`, token exchange URN, …).
    pub grant_type: String,
    /// The authenticated client.
    pub client_id: String,
    /// The client's SPIFFE ID, when it authenticated with an SVID.
    pub client_spiffe_id: Option<SpiffeId>,
    /// The subject the token will name.
    pub subject: String,
    /// The delegation chain, current actor first (RFC 8693 §4.1).
    pub actors: Vec<String>,
    /// Scopes to grant.
    pub scopes: Vec<String>,
    /// Audiences (resource indicators) the token will be for.
    pub audience: Vec<String>,
    /// RFC 9396 authorization details, if any.
    pub authorization_details: Option<serde_json::Value>,
    /// The person's approval the grant rests on (a CIBA approval reference), if any.
    pub approval: Option<String>,
    /// The task the request belongs to (its W3C trace id), for the audit record.
    pub correlation_id: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    /// A scope is not allowed (`invalid_scope`).
    Scope,
    /// The audience is not allowed (`invalid_target`).
    Target,
    /// The client may not obtain this at all (`unauthorized_client`).
    Client,
    /// Policy allows it only with a person's approval (AIMS AZ-27, AZ-28): the client must
    /// obtain one through CIBA (`interaction_required`).
    Approval,
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue.
    Permit,
    /// Refuse, with why.
    Deny(DenyKind, String),
}

/// A person's decision on a request for their approval (AIMS AZ-30).
#[derive(Debug, Clone)]
pub struct ApprovalDecision {
    /// The approval's reference (what tokens issued on it carry).
    pub approval_id: String,
    /// The agent that asked.
    pub client_id: String,
    /// The person who decided.
    pub user_id: String,
    /// Approved or denied.
    pub approved: bool,
    /// What was asked: scopes.
    pub scopes: Vec<String>,
    /// Resources.
    pub audience: Vec<String>,
    /// Authorization details.
    pub authorization_details: Option<serde_json::Value>,
    /// The task the request belongs to (the W3C trace id the agent sent with it).
    pub correlation_id: Option<String>,
}

/// Why a decision point could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PdpError {
    /// The decision, or the person's approval, could not be recorded; nothing may be issued
    /// on it (AIMS MO-8, AZ-30). The client may retry: `temporarily_unavailable`.
    #[error("the decision could not be recorded: {0}")]
    Unrecorded(String),
}

/// A policy decision point, which also keeps the record of what it decided.
#[async_trait::async_trait]
pub trait PolicyDecisionPoint: Send + Sync {
    /// Decides a request, and records the decision before it counts.
    async fn decide(&self, request: &AccessRequest) -> Result<Decision, PdpError>;

    /// Records a person's approval or denial before it takes effect; an error leaves the
    /// request undecided.
    async fn record_approval(&self, _decision: &ApprovalDecision) -> Result<(), PdpError> {
        Ok(())
    }
}

/// Permits everything the protocol rules allow: until a policy is configured, what a token
/// may carry is bounded only by the grant rules themselves (authenticated clients, no scope or
/// audience widening on exchange, trust domain limits on transaction tokens).
#[derive(Debug, Default, Clone, Copy)]
pub struct PermitAll;

#[async_trait::async_trait]
impl PolicyDecisionPoint for PermitAll {
    async fn decide(&self, _request: &AccessRequest) -> Result<Decision, PdpError> {
        Ok(Decision::Permit)
    }
}
