//! Signing the tokens the authorization server issues, with the key of [`TokenKeys`] that
//! signs now. The keys live in the CA slots (one per slot, created and published with it at
//! half of the previous slot's life, signing from its activation, kept in the JWKS until the
//! slot expires), so a key is always public before it signs and stays public while tokens it
//! signed may live.

use aims_credentials::IssueError;
use aims_credentials::jose::{JwsHeader, sign};
use aims_token::keys::TokenKeys;
use serde::Serialize;

use crate::error::OAuthError;

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
