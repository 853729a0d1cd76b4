//! The resource server's side (AIMS AZ-7, AZ-9): checking an access token presented with a
//! request — RFC 9068 §4 validation, and the sender constraint the token carries: the TLS client
//! certificate it was bound to (RFC 8705 §3) or a DPoP proof with its key (RFC 9449 §7). A
//! bound token presented without its proof is refused, as a stolen bearer token would be.

use aims_credentials::jose::sha256_b64url;

use crate::claims::{AT_TYP, AccessClaims, verify_own};
use crate::dpop::DpopVerifier;
use crate::error::TokenError;
use crate::keys::TokenKeys;

/// The DPoP proof that came with a request.
#[derive(Debug, Clone, Copy)]
pub struct DpopPresented<'a> {
    /// The `DPoP` header.
    pub proof: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request URI.
    pub uri: &'a str,
}

/// What the request proves about its sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct SenderProof<'a> {
    /// The authorization scheme used (`Bearer` or `DPoP`).
    pub scheme: &'a str,
    /// The TLS client certificate (DER), if mutual TLS.
    pub client_certificate: Option<&'a [u8]>,
    /// The DPoP proof, if any.
    pub dpop: Option<DpopPresented<'a>>,
}

/// Verifies `token` for `resource`: signature by a published key, `typ`, issuer, audience,
/// time, and the sender constraint.
#[allow(clippy::too_many_arguments)]
pub fn verify_access_token(
    keys: &dyn TokenKeys,
    issuer: &str,
    resource: &str,
    token: &str,
    proof: &SenderProof<'_>,
    dpop: &DpopVerifier,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let claims: AccessClaims = verify_own(keys, issuer, token, AT_TYP, now)?;
    check_presentation(&claims, resource, token, proof, dpop, now)?;
    Ok(claims)
}

/// The per-request half of [`verify_access_token`], for claims already verified (a resource
/// server's cache, or introspection): the audience is `resource` (no token passthrough), and
/// the sender proves the key or certificate the token is bound to.
pub fn check_presentation(
    claims: &AccessClaims,
    resource: &str,
    token: &str,
    proof: &SenderProof<'_>,
    dpop: &DpopVerifier,
    now: i64,
) -> Result<(), TokenError> {
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if !claims.aud.contains(resource) {
        return Err(TokenError::WrongAudience);
    }
    let cnf = claims.cnf.clone().unwrap_or_default();
    if let Some(x5t) = &cnf.x5t_s256 {
        let presented = proof
            .client_certificate
            .map(sha256_b64url)
            .ok_or(TokenError::MissingCertificate)?;
        if &presented != x5t {
            return Err(TokenError::WrongCertificate);
        }
    }
    match (&cnf.jkt, proof.dpop) {
        (Some(jkt), Some(p)) => {
            if !proof.scheme.eq_ignore_ascii_case("DPoP") {
                return Err(TokenError::DpopScheme);
            }
            let got = dpop.verify(
                p.proof,
                p.method,
                &[p.uri.to_owned()],
                Some(token),
                &claims.client_id,
                now,
            )?;
            if &got != jkt {
                return Err(TokenError::DpopKeyMismatch);
            }
        }
        (Some(_), None) => return Err(TokenError::MissingDpopProof),
        (None, _) => {}
    }
    Ok(())
}
