//! The authorization server's signing keys. They live in the CA slots (one per slot, created
//! and published with it at half of the previous slot's life, signing from its activation, kept
//! in the JWKS until the slot expires), so a key is always public before it signs and stays
//! public while tokens it signed may live.

use std::sync::Arc;

use aims_credentials::jose::{JwsHeader, sign};
use aims_credentials::{IssueError, PublicKey, SlotKey};
use serde::Serialize;

use crate::error::OAuthError;

/// Where the authorization server gets its keys (the server's issuance service).
pub trait TokenKeys: Send + Sync {
    /// The key that signs now.
    fn signing_key(&self) -> Option<SlotKey>;
    /// A published key by `kid` (current, prepared or recent).
    fn verifying_key(&self, kid: &str) -> Option<PublicKey>;
    /// The JWK Set document served at the `jwks_uri`.
    fn jwks(&self) -> Arc<String>;
}

/// Signs `claims` as a JWS of type `typ` with the current key.
pub fn sign_token(
    keys: &dyn TokenKeys,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, OAuthError> {
    let key = keys
        .signing_key()
        .ok_or_else(|| OAuthError::unavailable("no signing key is active yet"))?;
    sign(
        &key.key,
        &JwsHeader::new(&key.key, Some(typ), Some(&key.kid)),
        claims,
    )
    .map_err(|e| OAuthError::server_error("token signing failed", IssueError::Key(e)))
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
