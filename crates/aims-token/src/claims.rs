//! The tokens the AIMS authorization server issues, and how it and the resource servers in
//! front of tools (the gateway) read them back.
//!
//! * Access tokens: RFC 9068 JWTs (`typ` at+jwt) with `client_id` = the agent (its SPIFFE ID
//!   when it authenticated with an SVID, AIMS AZ-5), `sub` = the user or system it acts for
//!   (AZ-6; itself for client credentials), `act` for every delegation hop (RFC 8693 §4.1),
//!   `cnf` when sender-constrained (RFC 8705 §3, RFC 9449 §6).
//! * Transaction tokens: `typ` txntoken+jwt (draft-ietf-oauth-transaction-tokens-11 §4).
//! * JWT authorization grants for other domains (identity chaining §2.3): `typ` JWT.

use aims_credentials::PublicKey;
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

impl TxnClaims {
    /// The task this transaction belongs to, as a W3C trace id (AIMS MO-9, MO-11): the
    /// `trace` member of the transaction context when it holds one, else the transaction id.
    /// Each transaction has its own `txn` (txn-tokens §4.2); one task may span several.
    pub fn task_trace(&self) -> &str {
        self.tctx
            .as_ref()
            .and_then(|c| c.get("trace"))
            .and_then(serde_json::Value::as_str)
            .filter(|t| aims_core::trace_context::is_trace_id(t))
            .unwrap_or(&self.txn)
    }
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
    verify_own_keyed(keys, issuer, token, typ, now).map(|v| v.claims)
}

/// A token the authorization server signed, verified: its claims, and the key (by `kid`) and
/// expiry they were accepted with.
#[derive(Clone)]
struct OwnVerified<T> {
    claims: T,
    kid: String,
    key: PublicKey,
    exp: i64,
}

fn verify_own_keyed<T: serde::de::DeserializeOwned>(
    keys: &dyn TokenKeys,
    issuer: &str,
    token: &str,
    typ: &'static str,
    now: i64,
) -> Result<OwnVerified<T>, TokenError> {
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
    Ok(OwnVerified {
        claims: jws.claims()?,
        kid: kid.to_owned(),
        key,
        // check_time refused a token without one.
        exp: common.exp.unwrap_or(i64::MIN),
    })
}

/// [`verify_own`] for tokens of one `typ`, remembering what verified (issue 17): a token
/// presented again — a subject token exchanged for several audiences, one introspected by
/// several resource servers — costs a hash and a lookup, not a signature check. A remembered
/// result holds until the token's `exp` and only while its `kid` still names the same
/// published key (a key retired or replaced drops it at once); everything else the caller
/// checks (revocation above all) it checks every time. Bounded.
pub struct OwnTokenVerifier<T> {
    typ: &'static str,
    cache: aims_authn::verified_cache::VerifiedCache<OwnVerified<T>>,
}

impl<T> std::fmt::Debug for OwnTokenVerifier<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnTokenVerifier")
            .field("typ", &self.typ)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<T: serde::de::DeserializeOwned + Clone> OwnTokenVerifier<T> {
    /// A verifier of `typ` tokens remembering up to `capacity` of them.
    pub fn new(typ: &'static str, capacity: usize) -> Self {
        Self {
            typ,
            cache: aims_authn::verified_cache::VerifiedCache::new(capacity),
        }
    }

    /// [`verify_own`], or what it gave for the same token before while still valid.
    pub fn verify(
        &self,
        keys: &dyn TokenKeys,
        issuer: &str,
        token: &str,
        now: i64,
    ) -> Result<T, TokenError> {
        self.cache
            .verify(
                token,
                now,
                0,
                |v| keys.verifying_key(&v.kid).is_some_and(|k| k == v.key),
                |v| v.exp,
                || verify_own_keyed(keys, issuer, token, self.typ, now),
            )
            .map(|v| v.claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use aims_credentials::jose::{JwsHeader, sign};
    use aims_credentials::{KeyType, PrivateKey, SlotKey};
    use serde_json::{Value, json};

    use super::*;

    const ISSUER: &str = "https://as.example.org";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_transaction_names_its_task_only_by_a_trace_id() {
        let txn = |tctx: Option<Value>| TxnClaims {
            iss: ISSUER.into(),
            iat: NOW,
            exp: NOW + 60,
            aud: "example.org".into(),
            txn: "0af7651916cd43dd8448eb211c80319c".into(),
            sub: "alice".into(),
            scope: "read".into(),
            req_wl: "spiffe://example.org/gw".into(),
            tctx,
            rctx: None,
        };
        let task = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(txn(Some(json!({"trace": task}))).task_trace(), task);
        // No context, no trace, or a trace that is no W3C trace id (a forged label, a
        // header injection, all zeros): the transaction's own id.
        for tctx in [
            None,
            Some(json!({"tool": "wx"})),
            Some(json!({"trace": "not-a-trace\r\nx: y"})),
            Some(json!({"trace": "00000000000000000000000000000000"})),
            Some(json!({"trace": 42})),
        ] {
            assert_eq!(
                txn(tctx.clone()).task_trace(),
                "0af7651916cd43dd8448eb211c80319c",
                "{tctx:?}"
            );
        }
    }

    /// Published keys that tests retire and replace.
    struct Keys(Mutex<Vec<SlotKey>>);

    impl TokenKeys for Keys {
        fn signing_key(&self) -> Option<SlotKey> {
            self.0.lock().unwrap().first().cloned()
        }
        fn verifying_key(&self, kid: &str) -> Option<PublicKey> {
            let keys = self.0.lock().unwrap();
            keys.iter()
                .find(|k| k.kid == kid)
                .map(|k| k.key.public_key().clone())
        }
        fn jwks(&self) -> Arc<String> {
            Arc::new(String::new())
        }
    }

    fn slot(kid: &str) -> SlotKey {
        SlotKey {
            kid: kid.into(),
            key: Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap()),
        }
    }

    fn token(key: &SlotKey, typ: &str, exp: i64) -> String {
        let header = JwsHeader::new(&key.key, Some(typ), Some(&key.kid));
        sign(
            &key.key,
            &header,
            &json!({"iss": ISSUER, "sub": "alice", "exp": exp, "jti": "j1"}),
        )
        .unwrap()
    }

    /// Issue 17: a token presented again is remembered, but never past its expiry, once its
    /// key is retired or replaced, for another type, or when tampered with.
    #[test]
    fn remembered_tokens_never_outlive_their_expiry_or_key() {
        let k1 = slot("k1");
        let keys = Keys(Mutex::new(vec![k1.clone()]));
        let v: OwnTokenVerifier<Value> = OwnTokenVerifier::new(AT_TYP, 3);
        let t = token(&k1, AT_TYP, NOW + 60);
        assert_eq!(v.verify(&keys, ISSUER, &t, NOW).unwrap()["sub"], "alice");
        assert_eq!(
            v.verify(&keys, ISSUER, &t, NOW + 1).unwrap()["sub"],
            "alice"
        );
        assert_eq!(v.cache.len(), 1, "the second presentation is remembered");
        assert!(matches!(
            v.verify(&keys, ISSUER, &t, NOW + 61),
            Err(TokenError::Jws(aims_credentials::VerifyError::Expired))
        ));
        // Another issuer's view of the same bytes is not asked of this verifier; another type
        // never verifies, so nothing of it is remembered.
        let txn = token(&k1, TXN_TYP, NOW + 60);
        assert!(matches!(
            v.verify(&keys, ISSUER, &txn, NOW),
            Err(TokenError::WrongType(_))
        ));
        let mut tampered = t.clone();
        tampered.insert(tampered.len() - 2, 'A');
        assert!(v.verify(&keys, ISSUER, &tampered, NOW).is_err());
        assert_eq!(v.cache.len(), 1);
        // The same kid now names another key (a restore, a rogue rotation): refused at once.
        *keys.0.lock().unwrap() = vec![SlotKey {
            kid: "k1".into(),
            key: slot("x").key,
        }];
        assert!(v.verify(&keys, ISSUER, &t, NOW).is_err());
        // The key retired: refused at once.
        keys.0.lock().unwrap().clear();
        assert!(matches!(
            v.verify(&keys, ISSUER, &t, NOW),
            Err(TokenError::UnknownKey(_))
        ));
        // Bounded.
        *keys.0.lock().unwrap() = vec![k1.clone()];
        for i in 0..10 {
            v.verify(&keys, ISSUER, &token(&k1, AT_TYP, NOW + 100 + i), NOW)
                .unwrap();
            assert!(v.cache.len() <= 3);
        }
    }
}
