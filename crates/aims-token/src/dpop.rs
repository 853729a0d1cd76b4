//! DPoP proofs (RFC 9449): proof-of-possession of a client-held key at the token endpoint, so
//! the access token issued is bound to that key (`cnf.jkt`, §6) and worthless to a thief.
//!
//! Checks (§4.3): one well-formed JWT, `typ` dpop+jwt, an asymmetric `alg`, a public `jwk`
//! (no private members) whose key verifies the signature, `htm` and `htu` matching this
//! request, `iat` within the window, a `jti` never seen before for that key, `ath` when a token
//! rides along, and a server nonce when the server asks for one (§8). Nonces are stateless:
//! an HMAC of the current five-minute window under a key this process made at start, so a
//! nonce is good for five to ten minutes and needs no storage.

use std::sync::Arc;

use aims_authn::replay::{ReplayCache, ReplayKind};
use aims_credentials::PublicKey;
use aims_credentials::jose::{ASYMMETRIC_ALGORITHMS, CompactJws, sha256_b64url};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::TokenError;

/// `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";
/// How old a proof may be (its `iat`), and how long its `jti` is remembered.
const PROOF_WINDOW: i64 = 300;
/// Nonce window length.
const NONCE_WINDOW: i64 = 300;
/// Longest `jti` accepted.
const MAX_JTI: usize = 256;
/// JWK members that only a private key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// A DPoP proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The key's thumbprint (RFC 7638).
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// Until when (Unix seconds) a replay of it must be refused.
    pub remember_until: i64,
}

/// Verifies DPoP proofs and issues nonces.
pub struct DpopVerifier {
    nonce_key: aws_lc_rs::hmac::Key,
    replay: Arc<ReplayCache>,
    require_nonce: bool,
    leeway: i64,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("require_nonce", &self.require_nonce)
            .finish_non_exhaustive()
    }
}

/// The target URI as DPoP compares it (§4.3 step 9): without query and fragment, scheme and
/// host in lowercase.
fn normalize_htu(u: &str) -> Option<String> {
    let mut url = url::Url::parse(u).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string().trim_end_matches('/').to_owned())
}

impl DpopVerifier {
    /// A verifier; `require_nonce` makes every proof carry a nonce this server issued.
    pub fn new(
        replay: Arc<ReplayCache>,
        require_nonce: bool,
        leeway: i64,
    ) -> Result<Self, TokenError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| TokenError::Random)?;
        Ok(Self {
            nonce_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            replay,
            require_nonce,
            leeway,
        })
    }

    /// Nonces keyed by `secret` instead of this process's random key, so every replica sharing
    /// it accepts the nonces any of them issued (RFC 9449 §8; issue 18: behind a load balancer
    /// a client's retry with the nonce it was given may reach another replica).
    pub fn with_nonce_secret(mut self, secret: &[u8]) -> Self {
        self.nonce_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        self
    }

    fn nonce_for(&self, window: i64) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.nonce_key, &window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..18])
    }

    /// A nonce for proofs made now.
    pub fn nonce(&self, now: i64) -> String {
        self.nonce_for(now.div_euclid(NONCE_WINDOW))
    }

    fn nonce_valid(&self, nonce: &str, now: i64) -> bool {
        let w = now.div_euclid(NONCE_WINDOW);
        [w, w - 1].iter().any(|w| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                self.nonce_for(*w).as_bytes(),
                nonce.as_bytes(),
            )
            .is_ok()
        })
    }

    /// Whether this verifier asks for nonces.
    pub fn requires_nonce(&self) -> bool {
        self.require_nonce
    }

    /// Verifies `proof` for a request `method` to one of `targets`, with `access_token` when
    /// the proof accompanies one. Returns the key's thumbprint (`jkt`).
    pub fn verify(
        &self,
        proof: &str,
        method: &str,
        targets: &[String],
        access_token: Option<&str>,
        owner: &str,
        now: i64,
    ) -> Result<String, TokenError> {
        self.verify_proof(proof, method, targets, access_token, owner, now)
            .map(|p| p.jkt)
    }

    /// As [`Self::verify`], with the proof's `jti` and how long it must be remembered, for a
    /// caller that also admits it where other replicas see it (RFC 9449 §11.1).
    pub fn verify_proof(
        &self,
        proof: &str,
        method: &str,
        targets: &[String],
        access_token: Option<&str>,
        owner: &str,
        now: i64,
    ) -> Result<VerifiedProof, TokenError> {
        let bad = |m: &str| TokenError::InvalidDpopProof(m.to_owned());
        let jws = CompactJws::parse(proof).map_err(|e| bad(&e.to_string()))?;
        let header = &jws.header;
        header
            .require_typ(DPOP_TYP)
            .map_err(|e| bad(&e.to_string()))?;
        header
            .require_alg(ASYMMETRIC_ALGORITHMS)
            .map_err(|e| bad(&e.to_string()))?;
        let jwk = header
            .jwk
            .as_ref()
            .ok_or_else(|| bad("no jwk in the header"))?;
        // jsonwebtoken's Jwk drops members it does not know, so look at the raw header for
        // private key parts (§4.3 step 6: the jwk MUST NOT contain a private key).
        let raw_header: serde_json::Value = proof
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("header is not JSON"))?;
        if PRIVATE_MEMBERS
            .iter()
            .any(|m| raw_header["jwk"].get(m).is_some())
        {
            return Err(bad("the jwk holds a private key"));
        }
        let key = PublicKey::from_jwk(jwk).map_err(|e| bad(&format!("jwk: {e}")))?;
        if !key.key_type().jws_algorithms().contains(&header.alg) {
            return Err(bad("alg does not fit the jwk"));
        }
        jws.verify(&key).map_err(|e| bad(&e.to_string()))?;
        let c: ProofClaims = jws.claims().map_err(|e| bad(&e.to_string()))?;
        let jti = c
            .jti
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
            .ok_or_else(|| bad("jti missing or too long"))?;
        if c.htm.as_deref() != Some(method) {
            return Err(bad("htm does not match the request method"));
        }
        let htu = c
            .htu
            .as_deref()
            .and_then(normalize_htu)
            .ok_or_else(|| bad("htu missing or not a URI"))?;
        if !targets
            .iter()
            .filter_map(|t| normalize_htu(t))
            .any(|t| t == htu)
        {
            return Err(bad("htu does not match the request URI"));
        }
        let iat = c.iat.ok_or_else(|| bad("iat missing"))?;
        if iat > now + self.leeway || iat < now - PROOF_WINDOW - self.leeway {
            return Err(bad("iat outside the acceptable window"));
        }
        match (&c.nonce, self.require_nonce) {
            (Some(n), _) if self.nonce_valid(n, now) => {}
            (Some(_), true) | (None, true) => {
                return Err(TokenError::UseDpopNonce(self.nonce(now)));
            }
            // A nonce we did not ask for and cannot vouch for.
            (Some(_), false) => return Err(bad("unknown nonce")),
            (None, false) => {}
        }
        match (access_token, c.ath.as_deref()) {
            (Some(t), Some(ath)) if ath == sha256_b64url(t.as_bytes()) => {}
            (Some(_), _) => return Err(bad("ath does not match the access token")),
            (None, _) => {}
        }
        let jkt = key.thumbprint();
        // Counted against the client presenting it (its share of the cache), and unique per
        // key as RFC 9449 §11.1 asks.
        let remember_until = iat + PROOF_WINDOW;
        self.replay
            .check_and_insert_owned(ReplayKind::Dpop, &jkt, owner, &jti, remember_until, now)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(VerifiedProof {
            jkt,
            jti,
            remember_until: remember_until + self.leeway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use aims_credentials::jose::{JwsHeader, sign};
    use aims_credentials::{KeyType, PrivateKey};

    const URL: &str = "https://as.example/oauth2/token";

    fn proof(key: &PrivateKey, claims: serde_json::Value) -> String {
        let mut h = JwsHeader::new(key, Some(DPOP_TYP), None);
        h.jwk = Some(key.public_key().jwk());
        sign(key, &h, &claims).unwrap()
    }

    fn verifier(nonce: bool) -> DpopVerifier {
        DpopVerifier::new(Arc::new(ReplayCache::new(1000, 60)), nonce, 60).unwrap()
    }

    #[test]
    fn proofs_are_checked_as_rfc_9449_says() {
        let v = verifier(false);
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let now = 1_800_000_000;
        let good = |jti: &str| {
            proof(
                &key,
                serde_json::json!({"jti": jti, "htm": "POST", "htu": URL, "iat": now}),
            )
        };
        let t = [URL.to_owned()];
        let jkt = v
            .verify(&good("1"), "POST", &t, None, "client", now)
            .unwrap();
        assert_eq!(jkt, key.public_key().thumbprint());
        // Replayed jti.
        assert_eq!(
            v.verify(&good("1"), "POST", &t, None, "client", now)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidDpopProof
        );
        // Wrong method, wrong URI (a query does not matter), stale.
        assert!(
            v.verify(&good("2"), "GET", &t, None, "client", now)
                .is_err()
        );
        assert!(
            v.verify(
                &good("3"),
                "POST",
                &["https://other/".into()],
                None,
                "client",
                now
            )
            .is_err()
        );
        let with_query = proof(
            &key,
            serde_json::json!({"jti": "4", "htm": "POST", "htu": format!("{URL}?x=1"), "iat": now}),
        );
        assert!(
            v.verify(&with_query, "POST", &t, None, "client", now)
                .is_ok()
        );
        assert!(
            v.verify(&good("5"), "POST", &t, None, "client", now + 400)
                .is_err()
        );
        // ath must match a token that rides along.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        let ath = proof(
            &key,
            serde_json::json!({"jti": "6", "htm": "POST", "htu": URL, "iat": now, "ath": sha256_b64url(token.as_bytes())}),
        );
        assert!(
            v.verify(&ath, "POST", &t, Some(token), "client", now)
                .is_ok()
        );
        assert!(
            v.verify(&good("7"), "POST", &t, Some(token), "client", now)
                .is_err()
        );
        // A symmetric alg, a private jwk, a missing typ.
        let mut h = JwsHeader::new(&key, Some(DPOP_TYP), None);
        h.jwk = None;
        let no_jwk = sign(
            &key,
            &h,
            &serde_json::json!({"jti": "8", "htm": "POST", "htu": URL, "iat": now}),
        )
        .unwrap();
        assert!(v.verify(&no_jwk, "POST", &t, None, "client", now).is_err());
        let wrong_typ = sign(
            &key,
            &JwsHeader::new(&key, Some("JWT"), None),
            &serde_json::json!({}),
        )
        .unwrap();
        assert!(
            v.verify(&wrong_typ, "POST", &t, None, "client", now)
                .is_err()
        );
        let private: serde_json::Value =
            serde_json::from_str(&key.to_private_jwk(key.jws_algorithm()).unwrap()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &serde_json::json!({"typ": DPOP_TYP, "alg": "ES256", "jwk": private}),
            )
            .unwrap(),
        );
        let body = URL_SAFE_NO_PAD.encode(b"{}");
        let sig =
            URL_SAFE_NO_PAD.encode(key.sign_jws(format!("{header}.{body}").as_bytes()).unwrap());
        let e = v
            .verify(
                &format!("{header}.{body}.{sig}"),
                "POST",
                &t,
                None,
                "client",
                now,
            )
            .unwrap_err();
        assert!(e.to_string().contains("private"), "{e}");
    }

    /// Issue 18: replicas sharing a nonce secret accept each other's nonces; a verifier with
    /// its own random key (or another secret) does not.
    #[test]
    fn replicas_sharing_a_secret_accept_each_others_nonces() {
        let a = verifier(true).with_nonce_secret(&[7; 32]);
        let b = verifier(true).with_nonce_secret(&[7; 32]);
        let (lone, other) = (verifier(true), verifier(true).with_nonce_secret(&[8; 32]));
        let now = 1_800_000_000;
        let nonce = a.nonce(now);
        assert!(b.nonce_valid(&nonce, now));
        assert!(b.nonce_valid(&nonce, now + NONCE_WINDOW));
        assert!(!b.nonce_valid(&nonce, now + 2 * NONCE_WINDOW));
        assert!(!lone.nonce_valid(&nonce, now));
        assert!(!other.nonce_valid(&nonce, now));
    }

    #[test]
    fn nonces_are_demanded_and_expire() {
        let v = verifier(true);
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let now = 1_800_000_000;
        let t = [URL.to_owned()];
        let p_at = |jti: &str, nonce: Option<String>, iat: i64| {
            let mut c = serde_json::json!({"jti": jti, "htm": "POST", "htu": URL, "iat": iat});
            if let Some(n) = nonce {
                c["nonce"] = n.into();
            }
            proof(&key, c)
        };
        let p = |jti: &str, nonce: Option<String>| p_at(jti, nonce, now);
        let e = v
            .verify(&p("1", None), "POST", &t, None, "client", now)
            .unwrap_err();
        let TokenError::UseDpopNonce(nonce) = e else {
            panic!("{e:?}")
        };
        assert!(
            v.verify(
                &p("2", Some(nonce.clone())),
                "POST",
                &t,
                None,
                "client",
                now
            )
            .is_ok()
        );
        assert_eq!(
            v.verify(
                &p("3", Some("forged".into())),
                "POST",
                &t,
                None,
                "client",
                now
            )
            .unwrap_err()
            .code(),
            ErrorCode::UseDpopNonce
        );
        // Two windows later the nonce is stale.
        assert_eq!(
            v.verify(
                &p_at("4", Some(nonce), now + 2 * NONCE_WINDOW),
                "POST",
                &t,
                None,
                "client",
                now + 2 * NONCE_WINDOW
            )
            .unwrap_err()
            .code(),
            ErrorCode::UseDpopNonce
        );
    }
}
