//! Workload attestation: turning evidence about a caller into selectors (AIMS PR-2, PR-3, PR-5).
//!
//! Each attestor contributes selectors of its own type (`unix:…`, later `tpm:…`, `k8s:…`). An
//! [`AttestorSet`] asks every attestor and unions their selectors; an entry that requires
//! selectors from several attestors is issued only to a workload for which every one of them
//! vouched (multi-signal posture).

pub mod unix;

use std::collections::BTreeSet;

use aims_peer::PeerCredentials;
use aims_store::Selector;

/// Why attestation failed. The Workload API answers every attestation failure with a bare
/// `PermissionDenied`: the caller learns nothing about why.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The process went away or its PID now names another process.
    #[error("process {0} changed during attestation (exited, or its PID was reused)")]
    ProcessChanged(i32),
    /// Evidence could not be read.
    #[error("cannot read evidence: {0}")]
    Unreadable(String),
    /// The evidence contradicts the kernel's peer credentials.
    #[error("evidence does not match the peer credentials: {0}")]
    Mismatch(String),
}

/// A source of posture evidence about a Workload API caller.
pub trait WorkloadAttestor: Send + Sync {
    /// The selector type this attestor produces (`unix`, `tpm`, …).
    fn kind(&self) -> &'static str;
    /// The selectors the evidence supports for `peer`.
    fn attest(&self, peer: &PeerCredentials) -> Result<Vec<Selector>, AttestError>;
}

/// Every configured attestor, asked in turn.
#[derive(Default)]
pub struct AttestorSet {
    attestors: Vec<Box<dyn WorkloadAttestor>>,
}

impl AttestorSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an attestor.
    pub fn with(mut self, attestor: impl WorkloadAttestor + 'static) -> Self {
        self.attestors.push(Box::new(attestor));
        self
    }

    /// The union of every attestor's selectors. One attestor failing fails the whole
    /// attestation (fail closed): a partial picture must not be mistaken for a smaller one.
    pub fn attest(&self, peer: &PeerCredentials) -> Result<BTreeSet<Selector>, AttestError> {
        let mut all = BTreeSet::new();
        for a in &self.attestors {
            for s in a.attest(peer)? {
                if s.kind == a.kind() {
                    all.insert(s);
                }
            }
        }
        Ok(all)
    }
}
