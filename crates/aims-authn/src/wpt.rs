//! WIMSE Workload Proof Tokens, draft-ietf-wimse-wpt-02 (AIMS AU-5, AU-6, AU-7).
//!
//! A workload holding a WIT proves possession of the WIT's `cnf` key by signing a short-lived
//! JWT bound to one request: its audience (the request target), a unique `jti`, the hash of the
//! WIT (`wth`) and of any token riding along (`tth` for a Txn-Token, `oth` for others). The proof
//! travels as `Authorization: WPT <jwt>`, the WIT as `Workload-Identity-Token`; a failure is a 401
//! with `WWW-Authenticate: WPT` (WPT-02 §4.4).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SharedClock, WorkloadIdentifier, unix_seconds};
use aims_credentials::jose::{Audience, CompactJws, JwsHeader, sha256_b64url, sign};
use aims_credentials::keys::jws_alg_name;
use aims_credentials::{BundleSource, KeyError, PrivateKey, Wit, WitProfile};

use crate::verified_cache::WitVerifier;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::error::AuthnError;
use crate::replay::{ReplayCache, ReplayKind};

/// The WPT's explicit type (media type application/wpt+jwt).
pub const WPT_TYP: &str = "wpt+jwt";
/// The HTTP authentication scheme (WPT-02 §4.1).
pub const WPT_SCHEME: &str = "WPT";
/// The Txn-Token header (draft-ietf-oauth-transaction-tokens-11 §7.1).
pub const TXN_TOKEN_HEADER: &str = "txn-token";

/// How an authenticated workload proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// mTLS with an X509-SVID.
    Mtls,
    /// A WIT with a Workload Proof Token.
    Wpt,
    /// A WIT with a WIMSE HTTP message signature.
    HttpSignature,
}

/// A workload authenticated at the application layer.
#[derive(Debug, Clone)]
pub struct VerifiedWorkload {
    /// Its identifier.
    pub id: WorkloadIdentifier,
    /// How it proved it.
    pub mechanism: Mechanism,
    /// The WIT it presented (absent for mTLS).
    pub wit: Option<Wit>,
    /// A Txn-Token the proof was bound to (`tth`), if one rode along.
    pub txn_token: Option<String>,
}

/// WPT claims (WPT-02 §3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WptClaims {
    /// The recipient: the target URI without query or fragment, or a deployment value.
    pub aud: Audience,
    /// Expiry (short: seconds to minutes).
    pub exp: i64,
    /// Unique id (≥ 128 bits of randomness).
    pub jti: String,
    /// base64url(SHA-256(WIT)).
    pub wth: String,
    /// base64url(SHA-256(Txn-Token)), when one rides along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tth: Option<String>,
    /// Hashes of other tokens sent in the named header fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oth: Option<BTreeMap<String, String>>,
    /// Issued-at, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// What a proof binds to.
#[derive(Debug, Clone, Copy)]
pub struct WptBinding<'a> {
    /// The audience (target URI without query or fragment).
    pub audience: &'a str,
    /// Proof lifetime.
    pub ttl: Duration,
    /// A Txn-Token sent with the request (`tth`).
    pub txn_token: Option<&'a str>,
    /// Other tokens sent with the request, as (header name, value) (`oth`).
    pub other_tokens: &'a [(&'a str, &'a str)],
}

fn random_jti() -> Result<String, KeyError> {
    aims_credentials::jwt_authority::new_kid()
}

/// Creates a WPT signed with `key` (the WIT's `cnf` key) for `wit`.
pub fn create_wpt(
    key: &PrivateKey,
    wit: &str,
    binding: &WptBinding<'_>,
    now: SystemTime,
) -> Result<String, KeyError> {
    let claims = WptClaims {
        aud: Audience::One(binding.audience.to_owned()),
        exp: unix_seconds(now + binding.ttl),
        jti: random_jti()?,
        wth: sha256_b64url(wit.as_bytes()),
        tth: binding.txn_token.map(|t| sha256_b64url(t.as_bytes())),
        oth: (!binding.other_tokens.is_empty()).then(|| {
            binding
                .other_tokens
                .iter()
                .map(|(h, v)| (h.to_ascii_lowercase(), sha256_b64url(v.trim().as_bytes())))
                .collect()
        }),
        iat: Some(unix_seconds(now)),
    };
    sign(key, &JwsHeader::new(key, Some(WPT_TYP), None), &claims)
}

/// The only value of a header field that must appear at most once (several, or one that is
/// not ASCII, is malformed: the decision and the action must read the same value).
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, AuthnError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthnError::Malformed(format!("more than one {name} field")));
    }
    first
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| AuthnError::Malformed(format!("{name} is not ASCII")))
        })
        .transpose()
}

/// The WPT in `Authorization: WPT <token>`, if the request uses that scheme.
pub fn wpt_from_headers(headers: &HeaderMap) -> Result<Option<&str>, AuthnError> {
    let Some(auth) = single_header(headers, http::header::AUTHORIZATION.as_str())? else {
        return Ok(None);
    };
    let Some((scheme, token)) = auth.split_once(' ') else {
        return Ok(None);
    };
    if scheme.eq_ignore_ascii_case(WPT_SCHEME) {
        Ok(Some(token.trim()))
    } else {
        Ok(None)
    }
}

/// Verifies WIT + WPT presentations.
#[derive(Clone)]
pub struct WptVerifier {
    wits: Arc<WitVerifier>,
    replay: Arc<ReplayCache>,
    clock: SharedClock,
    max_lifetime: i64,
}

impl std::fmt::Debug for WptVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WptVerifier")
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl WptVerifier {
    /// A verifier with a 5-minute maximum proof lifetime; the clock-skew tolerance is the
    /// replay cache's.
    pub fn new(
        bundles: Arc<dyn BundleSource>,
        replay: Arc<ReplayCache>,
        clock: SharedClock,
    ) -> Self {
        Self {
            wits: Arc::new(WitVerifier::new(bundles, WitProfile::Wimse, 10_000)),
            replay,
            clock,
            max_lifetime: 300,
        }
    }

    /// Shares a WIT verifier (and its cache) with other verifiers.
    pub fn with_wit_verifier(mut self, wits: Arc<WitVerifier>) -> Self {
        self.wits = wits;
        self
    }

    /// The WIT verifier.
    pub fn wit_verifier(&self) -> &Arc<WitVerifier> {
        &self.wits
    }

    /// Sets the longest proof lifetime accepted.
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Requires WITs to be WIT-SVIDs.
    pub fn wit_profile(mut self, profile: WitProfile) -> Self {
        self.wits = Arc::new(WitVerifier::new(
            self.wits.bundles().clone(),
            profile,
            10_000,
        ));
        self
    }

    /// Verifies the WIT and WPT of a request addressed to `audience` (WPT-02 §4.3). Returns the
    /// workload; the `jti` is remembered so the proof cannot be used again.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        audience: &str,
    ) -> Result<VerifiedWorkload, AuthnError> {
        let now = self.clock.unix_now();
        let skew = self.replay.skew();
        let wpt = wpt_from_headers(headers)?.ok_or(AuthnError::Missing)?;
        let wit_token = single_header(headers, aims_credentials::wit::WIT_HEADER)?
            .ok_or_else(|| AuthnError::Malformed("WPT without a Workload-Identity-Token".into()))?;
        let wit = self
            .wits
            .verify(wit_token, now, skew)
            .map_err(AuthnError::InvalidWit)?;

        let jws = CompactJws::parse(wpt).map_err(|e| AuthnError::InvalidProof(e.to_string()))?;
        jws.header
            .require_typ(WPT_TYP)
            .map_err(|e| AuthnError::InvalidProof(e.to_string()))?;
        jws.header
            .check_crit(&[])
            .map_err(|e| AuthnError::InvalidProof(e.to_string()))?;
        // WPT-02 §4.3: the proof's alg must string-equal the WIT's cnf.jwk.alg.
        if jws.header.alg != wit.cnf_alg {
            return Err(AuthnError::InvalidProof(format!(
                "alg {} is not the WIT's cnf alg {}",
                jws_alg_name(jws.header.alg),
                jws_alg_name(wit.cnf_alg)
            )));
        }
        jws.verify(&wit.cnf_key)
            .map_err(|e| AuthnError::InvalidProof(e.to_string()))?;
        let claims: WptClaims = jws
            .claims()
            .map_err(|e| AuthnError::InvalidProof(e.to_string()))?;

        if !claims.aud.contains(audience) {
            return Err(AuthnError::WrongAudience {
                expected: audience.to_owned(),
                found: claims.aud.values().join(" "),
            });
        }
        if now > claims.exp.saturating_add(skew) {
            return Err(AuthnError::Expired);
        }
        if claims.exp.saturating_sub(now) > self.max_lifetime.saturating_add(skew) {
            return Err(AuthnError::LifetimeTooLong(self.max_lifetime));
        }
        if claims.iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
            return Err(AuthnError::Expired);
        }
        if claims.jti.is_empty() || claims.jti.len() > 256 {
            return Err(AuthnError::InvalidProof(
                "jti must be 1 to 256 characters".into(),
            ));
        }
        if claims.wth != wit.hash() {
            return Err(AuthnError::BindingMismatch("wth".into()));
        }
        let txn = single_header(headers, TXN_TOKEN_HEADER)?;
        match (txn, &claims.tth) {
            (Some(t), Some(tth)) if sha256_b64url(t.as_bytes()) == *tth => {}
            (None, None) => {}
            (Some(_), None) => {
                return Err(AuthnError::BindingMismatch(
                    "a Txn-Token was sent without tth".into(),
                ));
            }
            _ => return Err(AuthnError::BindingMismatch("tth".into())),
        }
        for (name, hash) in claims.oth.iter().flatten() {
            let value = single_header(headers, name)?.ok_or_else(|| {
                AuthnError::BindingMismatch(format!("oth names {name}, which was not sent"))
            })?;
            if sha256_b64url(value.as_bytes()) != *hash {
                return Err(AuthnError::BindingMismatch(format!("oth {name}")));
            }
        }
        // Only a proof that passed every other check takes a place in the replay cache.
        self.replay.check_and_insert(
            ReplayKind::Wpt,
            wit.subject.as_str(),
            &claims.jti,
            claims.exp,
            now,
        )?;
        Ok(VerifiedWorkload {
            id: wit.subject.clone(),
            mechanism: Mechanism::Wpt,
            txn_token: txn.map(str::to_owned),
            wit: Some(wit),
        })
    }
}
