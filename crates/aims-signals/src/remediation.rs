//! Remediation (AIMS MO-3…MO-6): revoking a principal's access — an agent's SPIFFE ID, a client,
//! a user — and lifting it again, each recorded durably in the audit log with its cause before
//! it is acknowledged. A revocation kills the principal's remembered tokens and refresh
//! families, makes introspection call every earlier token inactive (so gateways refuse it at
//! their next recheck), and refuses new grants until lifted. Every receiver of the Shared
//! Signals transmitter hears of it at once: CAEP session-revoked on a revocation, RISC
//! account-enabled when it is lifted (AIMS MO-2, MO-4).

use std::sync::Arc;

use aims_audit::{AuditLog, AuditRecord, RecordKind};
use aims_core::Clock;
use aims_store::{EntryUpdate, RegistrationEntry, Revocation, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{SubjectId, Transmitter, event};

/// Why a remediation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// The store failed (or the principal or entry is unknown).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log did not take the record: the act is not acknowledged without its trail.
    #[error(transparent)]
    Audit(#[from] aims_audit::AppendError),
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediated {
    /// The revocation as it stands.
    pub revocation: Revocation,
    /// Remembered tokens revoked with it.
    pub tokens_revoked: u64,
    /// The audit record's index.
    pub audit_index: u64,
}

/// Who revokes or restores access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator<'a> {
    /// An operator (admin socket, CLI, console).
    Operator,
    /// A signal from the transmitter with this issuer: it restores only what it revoked.
    Signal(&'a str),
}

impl<'a> Initiator<'a> {
    /// What the store keeps as `revoked_by`, and whose revocations it lifts: the signal's
    /// issuer; `None` for the operator (who lifts any).
    fn source(self) -> Option<&'a str> {
        match self {
            Initiator::Operator => None,
            Initiator::Signal(iss) => Some(iss),
        }
    }
}

impl std::fmt::Display for Initiator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Initiator::Operator => f.write_str("operator (admin socket)"),
            Initiator::Signal(iss) => write!(f, "signal from {iss}"),
        }
    }
}

/// Revokes and restores access, recording each act.
pub struct Remediation {
    store: Store,
    audit: Arc<AuditLog>,
    signals: Arc<Transmitter>,
    source: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Remediation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediation")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Remediation {
    /// Remediation over `store`, recorded in `audit` as `source` (the server's SPIFFE ID).
    pub fn new(
        store: Store,
        audit: Arc<AuditLog>,
        signals: Arc<Transmitter>,
        source: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            audit,
            signals,
            source,
            clock,
        }
    }

    async fn record(
        &self,
        action: &str,
        principal: &str,
        cause: &str,
        initiator: &str,
    ) -> Result<u64, RemediationError> {
        self.record_on(action, principal, None, cause, initiator)
            .await
    }

    async fn record_on(
        &self,
        action: &str,
        principal: &str,
        resource: Option<String>,
        cause: &str,
        initiator: &str,
    ) -> Result<u64, RemediationError> {
        metrics::counter!("aims_remediations_total", "action" => action.to_owned()).increment(1);
        let mut r = AuditRecord::new(
            RecordKind::Remediation,
            action,
            aims_core::unix_millis(self.clock.now()),
        );
        r.source = self.source.clone();
        r.agent = Some(principal.to_owned());
        r.resource = resource;
        r.remediation_cause = Some(cause.to_owned());
        r.reason = Some(format!("initiated by {initiator}"));
        Ok(self.audit.append(&[r]).await?.indexes.start)
    }

    /// Revokes `principal` for `cause`, initiated by `initiator` (an operator, a signal).
    pub async fn revoke(
        &self,
        principal: &str,
        cause: &str,
        initiator: Initiator<'_>,
    ) -> Result<Remediated, RemediationError> {
        let now = aims_core::unix_seconds(self.clock.now());
        let by = initiator.source().unwrap_or_default();
        let tokens_revoked = self
            .store
            .revoke_principal(principal, cause, by, now)
            .await?;
        // Recorded before it is acknowledged: no remediation without its trail.
        let audit_index = self
            .record("revoke", principal, cause, &initiator.to_string())
            .await?;
        tracing::warn!(%principal, %cause, %initiator, tokens_revoked, "access revoked");
        self.signal(event::SESSION_REVOKED, principal, cause, now, audit_index)
            .await;
        let revocation = self
            .store
            .revocations_of(&[principal])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound(principal.to_owned()))?;
        Ok(Remediated {
            revocation,
            tokens_revoked,
            audit_index,
        })
    }

    /// Lifts the revocation of `principal`; `None` if none stood that `initiator` may lift
    /// (a signal lifts only what its own issuer revoked, never an operator's ban).
    pub async fn lift(
        &self,
        principal: &str,
        cause: &str,
        initiator: Initiator<'_>,
    ) -> Result<Option<u64>, RemediationError> {
        let now = aims_core::unix_seconds(self.clock.now());
        if !self
            .store
            .lift_revocation(principal, initiator.source(), now)
            .await?
        {
            return Ok(None);
        }
        let index = self
            .record("lift_revocation", principal, cause, &initiator.to_string())
            .await?;
        tracing::warn!(%principal, %cause, %initiator, "revocation lifted");
        Ok(Some(index))
    }

    /// Disables (or enables again) a registration entry: no SVID is issued or renewed for it
    /// and agents drop the ones they hold at their next sync (the caller pokes them). Receivers
    /// hear CAEP credential-change (`x509`, `revoke` or `create`) about its SPIFFE ID.
    pub async fn set_entry_disabled(
        &self,
        entry_id: &str,
        disabled: bool,
        cause: &str,
        initiator: &str,
    ) -> Result<RegistrationEntry, RemediationError> {
        let update = EntryUpdate {
            disabled: Some(disabled),
            ..EntryUpdate::default()
        };
        let entry = self.store.update_entry(entry_id, update).await?;
        let (action, change) = if disabled {
            ("disable_entry", "revoke")
        } else {
            ("enable_entry", "create")
        };
        let principal = entry.spiffe_id.to_string();
        let index = self
            .record_on(
                action,
                &principal,
                Some(format!("entry {entry_id}")),
                cause,
                initiator,
            )
            .await?;
        tracing::warn!(entry = %entry_id, spiffe_id = %principal, disabled, %cause, %initiator, "entry remediated");
        let body = json!({
            "credential_type": "x509",
            "change_type": change,
            "initiating_entity": "admin",
            "reason_admin": {"en": cause},
            "event_timestamp": aims_core::unix_seconds(self.clock.now()),
        });
        if let Err(e) = self
            .signals
            .emit(
                event::CREDENTIAL_CHANGE,
                &SubjectId::for_principal(&principal),
                body,
                Some(format!("audit-{index}")),
            )
            .await
        {
            tracing::error!(error = %e, %principal, "remediation signal not sent");
        }
        Ok(entry)
    }

    /// Tells every receiver (CAEP/RISC, `initiating_entity` admin, the cause as
    /// `reason_admin`; `txn` the audit record's index). The revocation already holds at the
    /// AS, so a failure here is logged, not fatal: gateways still refuse at their next recheck.
    async fn signal(&self, event_type: &str, principal: &str, cause: &str, now: i64, index: u64) {
        let body = json!({
            "event_timestamp": now,
            "initiating_entity": "admin",
            "reason_admin": {"en": cause},
        });
        let subject = SubjectId::for_principal(principal);
        if let Err(e) = self
            .signals
            .emit(event_type, &subject, body, Some(format!("audit-{index}")))
            .await
        {
            tracing::error!(error = %e, %principal, "remediation signal not sent");
        }
    }

    /// Every revocation, newest first.
    pub async fn list(&self) -> Result<Vec<Revocation>, RemediationError> {
        Ok(self.store.revocations().await?)
    }
}
