//! Each check over the evidence (AIMS CO-1): a finding names what broke the rule and the audit
//! entries that show it.

use aims_audit::{LogVerifier, NoteVerifier, Outcome, RecordKind, VerifyError};
use serde::{Deserialize, Serialize};

use crate::evidence::Evidence;
use crate::rules::{Check, Rule, RuleSet, millis};

/// A rule's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No finding.
    Pass,
    /// At least one finding.
    Fail,
}

/// Something that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What is wrong.
    pub message: String,
    /// The audit entries that show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_indexes: Vec<u64>,
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleResult {
    /// The rule's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The check it runs.
    pub check: String,
    /// Pass or fail.
    pub status: Status,
    /// How many items of evidence it looked at.
    pub evaluated: usize,
    /// What broke it.
    pub findings: Vec<Finding>,
}

/// Findings reported per rule, at most (the count is exact).
const MAX_FINDINGS: usize = 1000;

fn finding(message: String, audit_indexes: Vec<u64>) -> Finding {
    Finding {
        message,
        audit_indexes,
    }
}

fn matches(pattern: &str, resource: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => resource.starts_with(prefix),
        None => pattern == resource,
    }
}

fn is_tool_call(action: &str) -> bool {
    matches!(action, "call" | "call_tool")
}

/// Runs one check: the number of items looked at, and the findings.
fn run(check: &Check, ev: &Evidence) -> (usize, Vec<Finding>) {
    match check {
        Check::MaxCredentialTtl { kind, max } => {
            let limit = i64::try_from(max.0.as_secs()).unwrap_or(i64::MAX);
            let of_kind: Vec<_> = ev
                .issued
                .iter()
                .filter(|c| c.kind.as_str() == kind)
                .collect();
            let findings = of_kind
                .iter()
                .filter(|c| c.expires_at - c.issued_at > limit)
                .map(|c| {
                    finding(
                        format!(
                            "{kind} {} for {} lives {} s (limit {max})",
                            c.serial,
                            c.spiffe_id,
                            c.expires_at - c.issued_at
                        ),
                        Vec::new(),
                    )
                })
                .collect();
            (of_kind.len(), findings)
        }
        Check::NoClientSecret => {
            let findings = ev
                .clients
                .iter()
                .filter(|c| c.secret_hash.is_some())
                .map(|c| {
                    finding(
                        format!("client {} has a shared secret", c.client_id),
                        Vec::new(),
                    )
                })
                .collect();
            (ev.clients.len(), findings)
        }
        Check::ToolCallsHaveDecisions => {
            let calls: Vec<_> = ev
                .records()
                .filter(|(_, r)| r.kind == RecordKind::Decision && is_tool_call(&r.action))
                .collect();
            let findings = calls
                .iter()
                .filter(|(_, r)| r.decision.is_none() || r.policy_version.is_none())
                .map(|(i, r)| {
                    finding(
                        format!(
                            "{} on {} has no {}",
                            r.action,
                            r.resource.as_deref().unwrap_or("?"),
                            if r.decision.is_none() {
                                "outcome"
                            } else {
                                "policy version"
                            }
                        ),
                        vec![*i],
                    )
                })
                .collect();
            (calls.len(), findings)
        }
        Check::HighRiskActionsHaveApproval { resources } => {
            let allowed: Vec<_> = ev
                .records()
                .filter(|(_, r)| {
                    r.decision == Some(Outcome::Allow)
                        && r.resource
                            .as_deref()
                            .is_some_and(|res| resources.iter().any(|p| matches(p, res)))
                })
                .collect();
            let findings = allowed
                .iter()
                .filter(|(_, r)| r.approval.is_none())
                .map(|(i, r)| {
                    finding(
                        format!(
                            "{} on {} by {} was allowed without an approval",
                            r.action,
                            r.resource.as_deref().unwrap_or("?"),
                            r.agent.as_deref().unwrap_or("?")
                        ),
                        vec![*i],
                    )
                })
                .collect();
            (allowed.len(), findings)
        }
        Check::RevocationsEnforcedWithin { max } => {
            let grace = millis(max.0);
            let revocations: Vec<_> = ev
                .records()
                .filter(|(_, r)| r.kind == RecordKind::Remediation && r.action == "revoke")
                .collect();
            let mut findings = Vec::new();
            for (ri, rev) in &revocations {
                let Some(principal) = rev.agent.as_deref() else {
                    continue;
                };
                // The revocation stands until a later lift of the same principal.
                let lifted_at = ev
                    .records()
                    .filter(|(i, r)| {
                        *i > *ri
                            && r.action == "lift_revocation"
                            && r.agent.as_deref() == Some(principal)
                    })
                    .map(|(_, r)| r.time_ms)
                    .next()
                    .unwrap_or(i64::MAX);
                for (i, r) in ev.records() {
                    let concerns = r.agent.as_deref() == Some(principal)
                        || r.delegated_subject.as_deref() == Some(principal);
                    if concerns
                        && r.decision == Some(Outcome::Allow)
                        && r.time_ms > rev.time_ms + grace
                        && r.time_ms < lifted_at
                    {
                        findings.push(finding(
                            format!(
                                "{} on {} was allowed to {principal} {} ms after its revocation",
                                r.action,
                                r.resource.as_deref().unwrap_or("?"),
                                r.time_ms - rev.time_ms
                            ),
                            vec![*ri, i],
                        ));
                    }
                }
            }
            (revocations.len(), findings)
        }
        Check::AuditLogConsistent => {
            let n = ev.entries.len();
            let verdict = (|| -> Result<(), VerifyError> {
                let note = ev.checkpoint.as_deref().ok_or(VerifyError::Bad {
                    index: 0,
                    problem: "no signed checkpoint yet".into(),
                })?;
                let key = NoteVerifier::from_vkey(&ev.vkey)?;
                let mut v = LogVerifier::new(note, &key)?;
                for (e, _) in &ev.entries {
                    v.check(e)?;
                }
                v.finish().map(|_| ())
            })();
            let findings = match verdict {
                Ok(()) => Vec::new(),
                Err(VerifyError::Bad { index, problem }) => {
                    vec![finding(format!("entry {index}: {problem}"), vec![index])]
                }
                Err(e) => vec![finding(e.to_string(), Vec::new())],
            };
            (n, findings)
        }
    }
}

/// Evaluates every rule of `rules` over `ev`.
pub fn evaluate(rules: &RuleSet, ev: &Evidence) -> Vec<RuleResult> {
    rules
        .rules
        .iter()
        .map(|Rule { id, title, check }| {
            let (evaluated, mut findings) = run(check, ev);
            let status = if findings.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            };
            if findings.len() > MAX_FINDINGS {
                let more = findings.len() - MAX_FINDINGS;
                findings.truncate(MAX_FINDINGS);
                findings.push(finding(format!("… and {more} more"), Vec::new()));
            }
            RuleResult {
                id: id.clone(),
                title: title.clone(),
                check: check.name().to_owned(),
                status,
                evaluated,
                findings,
            }
        })
        .collect()
}
