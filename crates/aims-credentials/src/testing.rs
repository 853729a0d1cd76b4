//! Test support: a trust domain's authority, ready to issue, and the bundle that trusts it.

use std::sync::Arc;
use std::time::SystemTime;

use aims_core::TrustDomain;

use crate::authority::{AuthorityPolicy, AuthoritySlot, CaManager, bundle_from_slots};
use crate::bundle::BundleSet;
use crate::error::IssueError;
use crate::key_manager::MemoryKeyManager;

/// A CA for `trust_domain` (keys in memory) with its first slot active, the slot, and a bundle
/// set holding that trust domain's bundle.
pub fn authority(
    trust_domain: &TrustDomain,
) -> Result<(CaManager, Arc<AuthoritySlot>, Arc<BundleSet>), IssueError> {
    let ca = CaManager::new(
        trust_domain.clone(),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now())?;
    let slot = ca
        .active()
        .ok_or_else(|| IssueError::Refused("no active CA slot".into()))?;
    let bundle = bundle_from_slots(trust_domain, [slot.record()], SystemTime::now())
        .map_err(|e| IssueError::Refused(e.to_string()))?;
    Ok((ca, slot, Arc::new(BundleSet::with([bundle]))))
}
