//! Test support: a trust domain's authority, ready to issue, the bundle that trusts it, and
//! X509-SVIDs from it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SpiffeId, TrustDomain};
use rustls_pki_types::CertificateDer;

use crate::authority::{AuthorityPolicy, AuthoritySlot, CaManager, bundle_from_slots};
use crate::bundle::BundleSet;
use crate::ca::{SubjectKey, X509SvidRequest};
use crate::error::IssueError;
use crate::key_manager::MemoryKeyManager;
use crate::keys::{KeyType, PrivateKey};

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

/// An X509-SVID for `id` from `slot` (a fresh P-256 key, ten minutes): its chain and key.
pub fn x509_svid(
    slot: &AuthoritySlot,
    id: &SpiffeId,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKey), IssueError> {
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let svid = slot.x509.issue(&X509SvidRequest {
        spiffe_id: id,
        subject_key: &SubjectKey::of(&key),
        dns_names: &[],
        ttl: Duration::from_secs(600),
        now: SystemTime::now(),
    })?;
    Ok((svid.chain, key))
}
