//! Compliance rules as versioned policy (AIMS CO-1, PO-3): a TOML document with a version and
//! a list of rules, each one check over recorded evidence. A report names the version and the
//! SHA-256 of the exact text it was evaluated against.

use std::time::Duration;

use aims_core::HumanDuration;
use serde::{Deserialize, Serialize};

/// The rules AIMS ships (`rules/default.toml`).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// Why a rule set was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not a valid rule document.
    #[error("compliance rules: {0}")]
    Invalid(String),
}

/// One check over the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// Issued credentials of `kind` (`x509-svid`, `jwt-svid`, `wit-svid`) live at most `max`.
    MaxCredentialTtl {
        /// The credential kind.
        kind: String,
        /// The longest allowed lifetime.
        max: HumanDuration,
    },
    /// No registered OAuth client has a shared secret.
    NoClientSecret,
    /// Every recorded tool call (`call`, `call_tool`) has an outcome and a policy version.
    ToolCallsHaveDecisions,
    /// Every allowed action on one of `resources` (exact, or a prefix ending in `*`) carries an
    /// approval reference.
    HighRiskActionsHaveApproval {
        /// The high-risk resources or tools.
        #[serde(default)]
        resources: Vec<String>,
    },
    /// Nothing is allowed to a revoked principal later than `max` after its revocation
    /// (until the revocation is lifted).
    RevocationsEnforcedWithin {
        /// The allowed propagation time.
        max: HumanDuration,
    },
    /// The audit log verifies against its newest signed checkpoint.
    AuditLogConsistent,
}

impl Check {
    /// The check's name as the document writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Check::MaxCredentialTtl { .. } => "max_credential_ttl",
            Check::NoClientSecret => "no_client_secret",
            Check::ToolCallsHaveDecisions => "tool_calls_have_decisions",
            Check::HighRiskActionsHaveApproval { .. } => "high_risk_actions_have_approval",
            Check::RevocationsEnforcedWithin { .. } => "revocations_enforced_within",
            Check::AuditLogConsistent => "audit_log_consistent",
        }
    }
}

/// One rule. (Its check's parameters sit beside `id` and `title`, so unknown keys cannot be
/// refused here; a misspelt required parameter is still an error.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Unique id (reports name findings by it).
    pub id: String,
    /// What it asks, readably.
    pub title: String,
    /// The check.
    #[serde(flatten)]
    pub check: Check,
}

/// A versioned rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The version this text declares.
    pub version: String,
    /// The rules, in report order.
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
    /// SHA-256 (hex) of the text, set when parsed.
    #[serde(skip)]
    pub sha256: String,
}

impl RuleSet {
    /// Parses a rule document; ids must be unique and the version non-empty.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let mut set: RuleSet =
            toml::from_str(text).map_err(|e| RulesError::Invalid(e.to_string()))?;
        if set.version.trim().is_empty() {
            return Err(RulesError::Invalid("version must not be empty".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for r in &set.rules {
            if r.id.is_empty() || !ids.insert(r.id.as_str()) {
                return Err(RulesError::Invalid(format!(
                    "rule ids must be unique and non-empty: {:?}",
                    r.id
                )));
            }
        }
        set.sha256 = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            text.as_bytes(),
        ));
        Ok(set)
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
