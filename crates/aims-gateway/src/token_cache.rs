//! Validated tokens, kept (bounded) until they expire or their introspected status is due for
//! another check, and dropped at once on a revocation signal (AIMS MO-5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aims_oauth::claims::AccessClaims;

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

struct Entry {
    claims: Arc<AccessClaims>,
    checked: Instant,
}

/// The cache.
pub struct TokenCache {
    entries: Mutex<HashMap<TokenHash, Entry>>,
    capacity: usize,
    recheck: Duration,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens whose status is trusted for `recheck`.
    pub fn new(capacity: usize, recheck: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            recheck,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The claims of a token validated less than `recheck` ago.
    pub fn get(&self, key: &TokenHash) -> Option<Arc<AccessClaims>> {
        let entries = self.lock();
        let e = entries.get(key)?;
        (e.checked.elapsed() < self.recheck).then(|| e.claims.clone())
    }

    /// Remembers a validated token. When full, expired entries go first, then everything
    /// (the bound holds; the cost is re-validation).
    pub fn put(&self, key: TokenHash, claims: Arc<AccessClaims>, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.claims.exp > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                claims,
                checked: Instant::now(),
            },
        );
    }

    /// Drops every token with this `jti`, client or subject (a revocation signal).
    pub fn forget(&self, matches: impl Fn(&AccessClaims) -> bool) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| !matches(&e.claims));
        before - entries.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        cache.put(token_hash("a"), claims("a", "x", 100), 0);
        cache.put(token_hash("b"), claims("b", "y", 5), 0);
        assert!(cache.get(&token_hash("a")).is_some());
        // Full: the expired one goes first.
        cache.put(token_hash("c"), claims("c", "x", 100), 10);
        assert!(cache.get(&token_hash("b")).is_none());
        assert!(cache.get(&token_hash("a")).is_some());
        // A revocation signal for client x drops both of its tokens at once.
        assert_eq!(cache.forget(|c| c.client_id == "x"), 2);
        assert!(cache.get(&token_hash("a")).is_none());
        // A zero recheck interval trusts nothing.
        let strict = TokenCache::new(2, Duration::ZERO);
        strict.put(token_hash("a"), claims("a", "x", 100), 0);
        assert!(strict.get(&token_hash("a")).is_none());
    }
}
