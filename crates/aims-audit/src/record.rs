//! An audit record: the MO-8 fields, and the policy version that decided.

use serde::{Deserialize, Serialize};

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An access decision (gateway, authorization server, AuthZEN).
    Decision,
    /// A credential or token issued.
    Issuance,
    /// A remediation: revocation, disabling, a risk signal acted on.
    Remediation,
}

/// A decision's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// One audit record (AIMS MO-8: agent identifier, delegated subject, resource or tool, action,
/// decision, timestamp, correlation id, posture or risk state, remediation cause; and the
/// policy version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// What kind of event.
    pub kind: RecordKind,
    /// The component that recorded it (its SPIFFE ID); set by the log's writer, never by the
    /// caller's say-so.
    #[serde(default)]
    pub source: String,
    /// The agent (SPIFFE ID or client_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The person the agent acted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_subject: Option<String>,
    /// The delegation chain's actors, current first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The resource or tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The action (`call`, `call_tool`, `obtain_token`, `revoke` …).
    pub action: String,
    /// The outcome, for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Outcome>,
    /// Why: the deciding policies, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The task's correlation id (transaction token `txn`, W3C trace id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The agent's posture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<String>,
    /// Risk signals in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<String>,
    /// A person's approval reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// For remediations: the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_cause: Option<String>,
    /// The policy version that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    /// A credential the decision issued, as its type and the base64url SHA-256 of its bytes
    /// (`txn_token:…`): a gateway minting a call's transaction token records it here, in the
    /// call's own record (the token itself is never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
}

impl AuditRecord {
    /// A record of `kind` for `action` at `time_ms`, every other field empty.
    pub fn new(kind: RecordKind, action: impl Into<String>, time_ms: i64) -> Self {
        Self {
            time_ms,
            kind,
            source: String::new(),
            agent: None,
            delegated_subject: None,
            chain: Vec::new(),
            resource: None,
            action: action.into(),
            decision: None,
            reason: None,
            correlation_id: None,
            posture: None,
            risk: Vec::new(),
            approval: None,
            remediation_cause: None,
            policy_version: None,
            issued: None,
        }
    }
}

/// When a decision's record must be durable, as an operator chooses per component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditMode {
    /// The answer waits for the durable append (group commit keeps the wait short): no answer
    /// without its record, even across a crash.
    Sync,
    /// Records go to a bounded queue committed within milliseconds; a full queue makes callers
    /// wait, so a record is never dropped, but a crash (kill -9) loses what was still queued.
    #[default]
    Async,
}
