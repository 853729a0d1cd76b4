//! Verified WITs, remembered.
//!
//! A workload presents the same WIT (lifetime: hours) with every proof, so re-verifying its
//! signature on every request doubles the cost of a WPT or an HTTP signature. A WIT that
//! verified is remembered by the SHA-256 of its bytes until it expires, and forgotten at once
//! when any trust bundle changes (rotation, federation refresh, a revoked key), so a cached
//! result is never older than the keys it was checked with. Memory is bounded; overflowing
//! only costs re-verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aims_credentials::jose::sha256_b64url;
use aims_credentials::{BundleSource, VerifyError, Wit, WitProfile, verify_wit};

struct Entry {
    wit: Wit,
    generation: u64,
}

/// A WIT verifier with a cache of successful verifications.
pub struct WitVerifier {
    bundles: Arc<dyn BundleSource>,
    profile: WitProfile,
    capacity: usize,
    cache: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for WitVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitVerifier")
            .field("profile", &self.profile)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl WitVerifier {
    /// A verifier of WITs of `profile` against `bundles`, remembering up to `capacity` WITs.
    pub fn new(bundles: Arc<dyn BundleSource>, profile: WitProfile, capacity: usize) -> Self {
        Self {
            bundles,
            profile,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The bundles WITs are verified against.
    pub fn bundles(&self) -> &Arc<dyn BundleSource> {
        &self.bundles
    }

    /// Verifies `token` at `now` with `leeway` seconds of skew.
    pub fn verify(&self, token: &str, now: i64, leeway: i64) -> Result<Wit, VerifyError> {
        let token = token.trim();
        let key = sha256_b64url(token.as_bytes());
        let generation = self.bundles.generation();
        if let Ok(cache) = self.cache.lock()
            && let Some(e) = cache.get(&key)
            && e.generation == generation
            && now <= e.wit.expiry.saturating_add(leeway)
        {
            return Ok(e.wit.clone());
        }
        let wit = verify_wit(token, &*self.bundles, self.profile, now, leeway)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.capacity {
                cache.retain(|_, e| e.generation == generation && e.wit.expiry > now);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Entry {
                    wit: wit.clone(),
                    generation,
                },
            );
        }
        Ok(wit)
    }

    /// Forgets every cached result (a revocation signal, AIMS MO-5).
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use aims_core::{TrustDomain, WorkloadIdentifier, unix_seconds};
    use aims_credentials::authority::bundle_from_slots;
    use aims_credentials::{
        AuthorityPolicy, BundleSet, CaManager, KeyType, MemoryKeyManager, PrivateKey,
    };

    use super::*;

    #[test]
    fn cached_results_never_outlive_a_bundle_change_or_expiry() {
        let ca = CaManager::new(
            TrustDomain::new("example.org").unwrap(),
            AuthorityPolicy::default(),
            Arc::new(MemoryKeyManager::new()),
            None,
        );
        ca.tick(SystemTime::now()).unwrap();
        let slot = ca.active().unwrap();
        let bundles = Arc::new(BundleSet::with([bundle_from_slots(
            ca.trust_domain(),
            [slot.record()],
            SystemTime::now(),
        )
        .unwrap()]));
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let wit = slot
            .wit
            .mint_wit(
                &WorkloadIdentifier::parse("spiffe://example.org/a").unwrap(),
                key.public_key(),
                key.jws_algorithm(),
                Duration::from_secs(60),
                SystemTime::now(),
                None,
            )
            .unwrap();
        let v = WitVerifier::new(bundles.clone(), WitProfile::Wimse, 2);
        let now = unix_seconds(SystemTime::now());
        v.verify(&wit.token, now, 0).unwrap();
        v.verify(&wit.token, now, 0).unwrap();
        // Expired: refused even though cached.
        assert_eq!(
            v.verify(&wit.token, now + 61, 0).unwrap_err(),
            VerifyError::Expired
        );
        // The trust domain's bundle removed (e.g. a key revoked): refused at once.
        bundles.remove("example.org");
        assert!(matches!(
            v.verify(&wit.token, now, 0),
            Err(VerifyError::UntrustedDomain(_))
        ));
        // Bounded: far more distinct WITs than capacity never grow the cache past it.
        bundles
            .put(bundle_from_slots(ca.trust_domain(), [slot.record()], SystemTime::now()).unwrap());
        for _ in 0..10 {
            let w = slot
                .wit
                .mint_wit(
                    &WorkloadIdentifier::parse("spiffe://example.org/a").unwrap(),
                    key.public_key(),
                    key.jws_algorithm(),
                    Duration::from_secs(60),
                    SystemTime::now(),
                    None,
                )
                .unwrap();
            v.verify(&w.token, now, 0).unwrap();
            assert!(v.cache.lock().unwrap().len() <= 2);
        }
    }
}
