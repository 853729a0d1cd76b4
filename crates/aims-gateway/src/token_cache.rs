//! Validated tokens, kept (bounded) until they expire or their introspected status is due for
//! another check, and dropped at once on a revocation signal (AIMS MO-5).

use std::sync::Arc;

use aims_token::claims::AccessClaims;

use crate::recent::RecentCache;

/// A cache key: SHA-256 of the token (tokens are never kept).
pub type TokenHash = [u8; 32];

/// SHA-256 of a token.
pub fn token_hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    out
}

/// Validated tokens by hash (their status trusted for the recheck interval).
pub type TokenCache = RecentCache<TokenHash, Arc<AccessClaims>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn put(cache: &TokenCache, token: &str, claims: Arc<AccessClaims>, now: i64) {
        cache.put(token_hash(token), claims, |c| c.exp <= now);
    }

    fn claims(jti: &str, client: &str, exp: i64) -> Arc<AccessClaims> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "iss": "https://as", "sub": client, "aud": "r", "exp": exp, "iat": 0,
                "jti": jti, "client_id": client
            }))
            .unwrap(),
        )
    }

    #[test]
    fn bounded_rechecked_and_forgotten_on_revocation() {
        let cache = TokenCache::new(2, Duration::from_secs(60));
        put(&cache, "a", claims("a", "x", 100), 0);
        put(&cache, "b", claims("b", "y", 5), 0);
        assert!(cache.get(&token_hash("a")).is_some());
        // Full: the expired one goes first.
        put(&cache, "c", claims("c", "x", 100), 10);
        assert!(cache.get(&token_hash("b")).is_none());
        assert!(cache.get(&token_hash("a")).is_some());
        // A revocation signal for client x drops both of its tokens at once.
        assert_eq!(cache.forget(|c| c.client_id == "x"), 2);
        assert!(cache.get(&token_hash("a")).is_none());
        // A zero recheck interval trusts nothing.
        let strict = TokenCache::new(2, Duration::ZERO);
        put(&strict, "a", claims("a", "x", 100), 0);
        assert!(strict.get(&token_hash("a")).is_none());
    }
}
