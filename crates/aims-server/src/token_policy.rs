//! The authorization server's policy decision point, served by the Cedar PDP with every
//! decision on record: where the server composes `aims-oauth`, `aims-policy` and
//! `aims-audit`, which do not know each other.

use std::sync::Arc;

use aims_audit::{AuditLog, AuditMode, AuditRecord};
use aims_core::SharedClock;
use aims_oauth::policy::{
    AccessRequest, ApprovalDecision, Decision, DenyKind, PdpError, PolicyDecisionPoint,
};
use aims_policy::{Action, Detail, Facts, Pdp, Principal, Query, Target};

/// The authorization server's policy trait, served by the Cedar PDP: each audience of a token
/// is a `Resource`, and every one must be permitted (`obtain_token`). Every decision is
/// handed to the audit log with its policy version before the grant goes on (AIMS MO-8).
pub struct TokenPolicy {
    pdp: Arc<Pdp>,
    audit: Arc<AuditLog>,
    /// Whether a grant waits for its decision record to be durable.
    mode: AuditMode,
    source: String,
    clock: SharedClock,
}

impl TokenPolicy {
    /// Decides grants with `pdp` and records them in `audit` as `source` (the server), each
    /// grant waiting for its record as `mode` says.
    pub fn new(
        pdp: Arc<Pdp>,
        (audit, mode): (Arc<AuditLog>, AuditMode),
        source: String,
        clock: SharedClock,
    ) -> Self {
        Self {
            pdp,
            audit,
            mode,
            source,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl PolicyDecisionPoint for TokenPolicy {
    async fn decide(&self, r: &AccessRequest) -> Result<Decision, PdpError> {
        let principal = match &r.client_spiffe_id {
            Some(id) => Principal::agent(id.clone()),
            None => Principal::Workload {
                client_id: r.client_id.clone(),
            },
        };
        let delegated_subject = (r.subject != r.client_id
            && r.client_spiffe_id
                .as_ref()
                .is_none_or(|id| id.as_str() != r.subject))
        .then(|| r.subject.clone());
        let facts = Facts {
            delegated_subject,
            chain: r.actors.clone(),
            scopes: r.scopes.clone(),
            authorization_details: r
                .authorization_details
                .as_ref()
                .map(Detail::from_json)
                .unwrap_or_default(),
            time: aims_core::unix_seconds(self.clock.now()),
            approval: r.approval.clone(),
            ..Facts::default()
        };
        for audience in &r.audience {
            let query = Query {
                principal: principal.clone(),
                action: Action::ObtainToken,
                target: Target::Resource {
                    uri: audience.clone(),
                },
                facts: facts.clone(),
            };
            let verdict = self.pdp.decide(&query);
            let mut record = verdict.audit_record(
                &query,
                audience.clone(),
                aims_core::unix_millis(self.clock.now()),
            );
            record.source = self.source.clone();
            record.correlation_id = r.correlation_id.clone();
            tracing::debug!(client = %r.client_id, audience, allowed = verdict.allowed, policy_version = verdict.policy_version, policies = ?verdict.policies, "token policy decision");
            // Sync: the grant goes on once the record is durable. Async: it is queued for the
            // next group commit and the response does not wait for it (a full queue makes the
            // grant wait; a crash loses what was queued).
            if let Err(e) = self.audit.record(&[record], self.mode).await {
                // Fail closed: a decision that cannot be recorded issues nothing.
                tracing::error!(error = %e, "token decision not recorded; refusing the grant");
                return Err(PdpError::Unrecorded(e.to_string()));
            }
            if !verdict.allowed && self.pdp.allowed_with_approval(&query) {
                return Ok(Decision::Deny(
                    DenyKind::Approval,
                    format!(
                        "policy version {} allows this token for {audience} only with a person's approval: ask for it through CIBA (backchannel_authentication_endpoint)",
                        verdict.policy_version
                    ),
                ));
            }
            if !verdict.allowed {
                let why = if verdict.policies.is_empty() {
                    "no policy permits it".to_owned()
                } else {
                    format!("forbidden by {}", verdict.policies.join(", "))
                };
                return Ok(Decision::Deny(
                    DenyKind::Scope,
                    format!(
                        "policy version {} refuses this token for {audience}: {why}",
                        verdict.policy_version
                    ),
                ));
            }
        }
        Ok(Decision::Permit)
    }

    async fn record_approval(&self, d: &ApprovalDecision) -> Result<(), PdpError> {
        let mut record = AuditRecord::new(
            aims_audit::RecordKind::Decision,
            "approve",
            aims_core::unix_millis(self.clock.now()),
        );
        record.source = self.source.clone();
        record.agent = Some(d.client_id.clone());
        record.delegated_subject = Some(d.user_id.clone());
        record.resource = Some(d.audience.join(" "));
        record.decision = Some(if d.approved {
            aims_audit::Outcome::Allow
        } else {
            aims_audit::Outcome::Deny
        });
        record.approval = Some(d.approval_id.clone());
        record.correlation_id = d.correlation_id.clone();
        let mut what = format!(
            "{} by the user",
            if d.approved { "approved" } else { "denied" }
        );
        if !d.scopes.is_empty() {
            what.push_str(&format!("; scope {}", d.scopes.join(" ")));
        }
        if let Some(details) = &d.authorization_details {
            what.push_str(&format!("; authorization_details {details}"));
        }
        record.reason = Some(what);
        // Awaited: the approval takes effect only once it is durably recorded (AIMS AZ-30).
        self.audit
            .append(&[record])
            .await
            .map(|_| ())
            .map_err(|e| PdpError::Unrecorded(e.to_string()))
    }
}
