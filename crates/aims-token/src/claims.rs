//! The tokens the AIMS authorization server issues, and how it and the resource servers in
//! front of tools (the gateway) read them back.
//!
//! * Access tokens: RFC 9068 JWTs (`typ` at+jwt) with `client_id` = the agent (its SPIFFE ID
//!   when it authenticated with an SVID, AIMS AZ-5), `sub` = the user or system it acts for
//!   (AZ-6; itself for client credentials), `act` for every delegation hop (RFC 8693 §4.1),
//!   `cnf` when sender-constrained (RFC 8705 §3, RFC 9449 §6).
//! * Transaction tokens: `typ` txntoken+jwt (draft-ietf-oauth-transaction-tokens-11 §4).
//! * JWT authorization grants for other domains (identity chaining §2.3): `typ` JWT.

use aims_credentials::jose::{Audience, CompactJws, SPIFFE_JWT_ALGORITHMS, check_time};
use serde::{Deserialize, Serialize};

use crate::error::TokenError;
use crate::keys::TokenKeys;

/// `typ` of access tokens (RFC 9068 §2.1).
pub const AT_TYP: &str = "at+jwt";
/// `typ` of transaction tokens (txn-tokens-11 §4.1).
pub const TXN_TYP: &str = "txntoken+jwt";
/// `typ` of JWT authorization grants.
pub const GRANT_TYP: &str = "JWT";

/// An actor in a delegation chain (RFC 8693 §4.1): who acts, and before them who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor.
    pub sub: String,
    /// Its issuer, when not this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The actor before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// The chain, current actor first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.sub.clone()];
        let mut next = self.act.as_deref();
        while let Some(a) = next {
            out.push(a.sub.clone());
            next = a.act.as_deref();
        }
        out
    }

    /// Depth of the chain.
    pub fn depth(&self) -> usize {
        1 + self.act.as_deref().map_or(0, Actor::depth)
    }
}

/// The confirmation of a sender-constrained token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 8705 §3.1: SHA-256 thumbprint of the client certificate.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    /// RFC 9449 §6.1: JWK SHA-256 thumbprint of the DPoP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// Access token claims (RFC 9068 §2.2) and the extensions AIMS uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// The user, system or agent the token acts for.
    pub sub: String,
    /// The resource(s).
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// The client (the agent).
    pub client_id: String,
    /// Granted scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 9396 authorization details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// Delegation chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Who may act for the subject (RFC 8693 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<serde_json::Value>,
    /// Sender constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The reference of the person's approval this grant rests on (a CIBA approval; AIMS
    /// AZ-30: a confirmation bound to a verifiable grant). The audit log records the approval
    /// under the same reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

impl AccessClaims {
    /// Scopes as a list.
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .map(|s| {
                s.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Transaction token claims (txn-tokens-11 §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnClaims {
    /// Issuer (optional in the draft; AIMS sets it).
    pub iss: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// The trust domain.
    pub aud: String,
    /// The transaction.
    pub txn: String,
    /// The subject.
    pub sub: String,
    /// The purpose.
    pub scope: String,
    /// The requesting workload(s).
    pub req_wl: String,
    /// Transaction context (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tctx: Option<serde_json::Value>,
    /// Request context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rctx: Option<serde_json::Value>,
}

/// `typ` of ID tokens (OpenID Connect Core §2 leaves it open; `JWT` as RFC 7519 §5.1).
pub const ID_TYP: &str = "JWT";

/// ID token claims (OpenID Connect Core 1.0 §2), issued with delegated grants when the scope
/// asks for `openid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authorization request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// How the user authenticated (RFC 8176).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The CIBA request it answers (CIBA Core §10.1.1).
    #[serde(
        rename = "urn:openid:params:jwt:claim:auth_req_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_req_id: Option<String>,
}

/// Verifies a JWT the authorization server signed: the explicit type, an allowed algorithm, a
/// published key, its issuer, and the time window (no leeway: it minted it).
pub fn verify_own<T: serde::de::DeserializeOwned>(
    keys: &dyn TokenKeys,
    issuer: &str,
    token: &str,
    typ: &'static str,
    now: i64,
) -> Result<T, TokenError> {
    let jws = CompactJws::parse(token)?;
    let header = &jws.header;
    // RFC 9068 §4: `at+jwt` or `application/at+jwt` (typ_is allows the prefix).
    if !header.typ_is(typ) {
        return Err(TokenError::WrongType(typ));
    }
    header.require_alg(SPIFFE_JWT_ALGORITHMS)?;
    let kid = header.kid.as_deref().ok_or(TokenError::NoKid)?;
    let key = keys
        .verifying_key(kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?;
    jws.verify(&key)?;
    #[derive(Deserialize)]
    struct Common {
        iss: Option<String>,
        exp: Option<i64>,
        nbf: Option<i64>,
    }
    let common: Common = jws.claims()?;
    if common.iss.as_deref() != Some(issuer) {
        return Err(TokenError::WrongIssuer);
    }
    check_time(common.exp, common.nbf, now, 0)?;
    Ok(jws.claims()?)
}
