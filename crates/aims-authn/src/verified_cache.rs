//! Verified tokens, remembered: WITs and JWT-SVIDs (and, through [`VerifiedCache`], the
//! authorization server's own tokens).
//!
//! A workload presents the same WIT (lifetime: hours) with every proof, and the same JWT-SVID
//! (the one its Workload API caches) with every token request, so re-verifying the signature
//! every time doubles the cost of a request. A token that verified is remembered by the SHA-256
//! of its bytes until it expires, and forgotten at once when any trust bundle changes
//! (rotation, federation refresh, a revoked key), so a cached result is never older than the
//! keys it was checked with. Memory is bounded; overflowing only costs re-verification.
//! Re-presenting a JWT-SVID is not a replay: draft-ietf-oauth-spiffe-client-auth-02 §3.1 lets a
//! client use one until it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aims_credentials::jose::sha256_b64url;
use aims_credentials::{
    BundleSource, JwtSvid, VerifyError, Wit, WitProfile, verify_jwt_svid, verify_wit,
};

struct Entry<T> {
    value: T,
    expiry: i64,
}

/// Successful verifications of `T`, keyed by the SHA-256 of the token's bytes, each kept until
/// its expiry and only while the keys it was checked with are still trusted. Bounded: past
/// `capacity`, stale entries go, and if that is not enough, all of them.
pub struct VerifiedCache<T> {
    capacity: usize,
    cache: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> std::fmt::Debug for VerifiedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> VerifiedCache<T> {
    /// A cache of at most `capacity` results.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The cached result for `token` if it is unexpired at `now` (with `leeway`) and
    /// `trusted` still holds for it (its keys are the keys of now), else `verify()`'s,
    /// remembered until `expiry` of it.
    pub fn verify<E>(
        &self,
        token: &str,
        now: i64,
        leeway: i64,
        trusted: impl Fn(&T) -> bool,
        expiry: impl Fn(&T) -> i64,
        verify: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let key = sha256_b64url(token.as_bytes());
        if let Ok(cache) = self.cache.lock()
            && let Some(e) = cache.get(&key)
            && now <= e.expiry.saturating_add(leeway)
            && trusted(&e.value)
        {
            return Ok(e.value.clone());
        }
        let value = verify()?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.capacity {
                cache.retain(|_, e| e.expiry > now && trusted(&e.value));
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Entry {
                    expiry: expiry(&value),
                    value: value.clone(),
                },
            );
        }
        Ok(value)
    }

    /// Forgets every cached result.
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// How many results are cached.
    pub fn len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A result checked against the bundles of one generation.
#[derive(Clone)]
struct Checked<T> {
    value: T,
    generation: u64,
}

/// A [`VerifiedCache`] whose results hold while the trust bundles are unchanged.
struct BundleCache<T> {
    bundles: Arc<dyn BundleSource>,
    cache: VerifiedCache<Checked<T>>,
}

impl<T: Clone> BundleCache<T> {
    fn new(bundles: Arc<dyn BundleSource>, capacity: usize) -> Self {
        Self {
            bundles,
            cache: VerifiedCache::new(capacity),
        }
    }

    fn verify(
        &self,
        token: &str,
        now: i64,
        leeway: i64,
        expiry: impl Fn(&T) -> i64,
        verify: impl FnOnce() -> Result<T, VerifyError>,
    ) -> Result<T, VerifyError> {
        let generation = self.bundles.generation();
        self.cache
            .verify(
                token,
                now,
                leeway,
                |c| c.generation == generation,
                |c| expiry(&c.value),
                || verify().map(|value| Checked { value, generation }),
            )
            .map(|c| c.value)
    }
}

/// A WIT verifier with a cache of successful verifications.
pub struct WitVerifier {
    profile: WitProfile,
    cache: BundleCache<Wit>,
}

impl std::fmt::Debug for WitVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitVerifier")
            .field("profile", &self.profile)
            .field("cache", &self.cache.cache)
            .finish()
    }
}

impl WitVerifier {
    /// A verifier of WITs of `profile` against `bundles`, remembering up to `capacity` WITs.
    pub fn new(bundles: Arc<dyn BundleSource>, profile: WitProfile, capacity: usize) -> Self {
        Self {
            profile,
            cache: BundleCache::new(bundles, capacity),
        }
    }

    /// The bundles WITs are verified against.
    pub fn bundles(&self) -> &Arc<dyn BundleSource> {
        &self.cache.bundles
    }

    /// Verifies `token` at `now` with `leeway` seconds of skew.
    pub fn verify(&self, token: &str, now: i64, leeway: i64) -> Result<Wit, VerifyError> {
        let token = token.trim();
        self.cache.verify(
            token,
            now,
            leeway,
            |w| w.expiry,
            || verify_wit(token, &*self.cache.bundles, self.profile, now, leeway),
        )
    }

    /// Forgets every cached result (a revocation signal, AIMS MO-5).
    pub fn clear(&self) {
        self.cache.cache.clear();
    }
}

/// A verifier of JWT-SVIDs for one audience (an authorization server's issuer), with a cache of
/// successful verifications.
pub struct JwtSvidVerifier {
    audience: String,
    cache: BundleCache<Arc<JwtSvid>>,
}

impl std::fmt::Debug for JwtSvidVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvidVerifier")
            .field("audience", &self.audience)
            .field("cache", &self.cache.cache)
            .finish()
    }
}

impl JwtSvidVerifier {
    /// A verifier of JWT-SVIDs for `audience` against `bundles`, remembering up to `capacity`.
    pub fn new(bundles: Arc<dyn BundleSource>, audience: String, capacity: usize) -> Self {
        Self {
            audience,
            cache: BundleCache::new(bundles, capacity),
        }
    }

    /// Verifies `token` at `now` with `leeway` seconds of skew (SPIFFE JWT-SVID §4).
    pub fn verify(&self, token: &str, now: i64, leeway: i64) -> Result<Arc<JwtSvid>, VerifyError> {
        self.cache.verify(
            token,
            now,
            leeway,
            |s| s.expiry,
            || {
                verify_jwt_svid(token, &*self.cache.bundles, &self.audience, now, leeway)
                    .map(Arc::new)
            },
        )
    }

    /// Forgets every cached result (a revocation signal, AIMS MO-5).
    pub fn clear(&self) {
        self.cache.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use aims_core::{TrustDomain, WorkloadIdentifier, unix_seconds};
    use aims_credentials::authority::bundle_from_slots;
    use aims_credentials::{BundleSet, CaManager, KeyType, PrivateKey};

    use super::*;

    /// A CA for example.org, its active slot, and the bundles holding it.
    fn authority() -> (
        CaManager,
        Arc<aims_credentials::authority::AuthoritySlot>,
        Arc<BundleSet>,
    ) {
        aims_credentials::testing::authority(&TrustDomain::new("example.org").unwrap()).unwrap()
    }

    #[test]
    fn cached_results_never_outlive_a_bundle_change_or_expiry() {
        let (ca, slot, bundles) = authority();
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
            assert!(v.cache.cache.len() <= 2);
        }
    }

    #[test]
    fn jwt_svids_are_verified_once_for_their_audience_and_never_past_expiry() {
        let (_ca, slot, bundles) = authority();
        let id = aims_core::SpiffeId::parse("spiffe://example.org/agent").unwrap();
        let as_url = "https://as.example.org".to_owned();
        let mint = |aud: &str| {
            slot.jwt
                .mint_jwt_svid(
                    &id,
                    &[aud.to_owned()],
                    Duration::from_secs(60),
                    SystemTime::now(),
                )
                .unwrap()
                .token
        };
        let v = JwtSvidVerifier::new(bundles.clone(), as_url.clone(), 4);
        let now = unix_seconds(SystemTime::now());
        let token = mint(&as_url);
        assert_eq!(v.verify(&token, now, 0).unwrap().spiffe_id, id);
        assert_eq!(v.cache.cache.len(), 1);
        assert_eq!(v.verify(&token, now, 0).unwrap().spiffe_id, id);
        assert_eq!(
            v.cache.cache.len(),
            1,
            "the second presentation is a cache hit"
        );
        // Another audience is refused (and not cached).
        assert!(v.verify(&mint("https://elsewhere"), now, 0).is_err());
        assert_eq!(v.cache.cache.len(), 1);
        // Past its expiry, the cached SVID is refused.
        assert!(v.verify(&token, now + 61, 0).is_err());
        // A tampered token never matches the cached one.
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(v.verify(&tampered, now, 0).is_err());
        // The bundle gone: refused at once.
        bundles.remove("example.org");
        assert!(v.verify(&token, now, 0).is_err());
    }
}
