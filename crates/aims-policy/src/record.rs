//! A verdict as the audit log records it (AIMS MO-8): the log takes plain fields and knows no
//! policy types, so the decision point says what its decision was.

use aims_audit::{AuditRecord, Outcome, RecordKind};

use crate::{Principal, Query, Verdict};

impl Verdict {
    /// The record of this decision on `query` for `resource` at `time_ms`: who, for whom,
    /// through which chain, what, the outcome and why, posture, risk, approval and the policy
    /// version. Source and correlation id are the recorder's to set.
    pub fn audit_record(&self, query: &Query, resource: String, time_ms: i64) -> AuditRecord {
        let mut r = AuditRecord::new(RecordKind::Decision, query.action.as_str(), time_ms);
        r.agent = Some(query.principal.id().to_owned());
        r.delegated_subject = query.facts.delegated_subject.clone();
        r.chain = query.facts.chain.clone();
        r.resource = Some(resource);
        r.decision = Some(if self.allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        });
        r.reason = Some(if self.errors.is_empty() {
            self.policies.join(",")
        } else {
            self.errors.join("; ")
        });
        if let Principal::Agent { posture, .. } = &query.principal {
            r.posture = Some(posture.clone());
        }
        r.risk = query.facts.risk.clone();
        r.approval = query.facts.approval.clone();
        r.policy_version = Some(self.policy_version);
        r
    }
}
