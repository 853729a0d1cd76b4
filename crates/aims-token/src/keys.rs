//! The authorization server's signing keys. They live in the CA slots (one per slot, created
//! and published with it at half of the previous slot's life, signing from its activation, kept
//! in the JWKS until the slot expires), so a key is always public before it signs and stays
//! public while tokens it signed may live.

use std::sync::Arc;

use aims_credentials::{PublicKey, SlotKey};

/// Where the authorization server gets its keys (the server's issuance service), and where a
/// resource server finds the published ones (its cache of the AS's JWKS).
pub trait TokenKeys: Send + Sync {
    /// The key that signs now.
    fn signing_key(&self) -> Option<SlotKey>;
    /// A published key by `kid` (current, prepared or recent).
    fn verifying_key(&self, kid: &str) -> Option<PublicKey>;
    /// The JWK Set document served at the `jwks_uri`.
    fn jwks(&self) -> Arc<String>;
}

/// A JWK Set document (RFC 7517 §5) of `(kid, key)` pairs, each with `use` sig and its `alg`.
pub fn jwks_document(keys: &[(String, PublicKey)]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(kid, k)| {
            let alg = k.key_type().default_jws_algorithm();
            k.to_jwk(Some("sig"), Some(kid), Some(alg))
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}
