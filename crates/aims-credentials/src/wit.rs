//! The WIMSE Workload Identity Token (draft-ietf-wimse-workload-creds-02 §3) and its SPIFFE
//! profile, the WIT-SVID (SPIFFE WIT-SVID, incubating).
//!
//! A WIT binds a workload identifier to a key the workload holds (`cnf.jwk`); it is never a
//! bearer token and is presented only with a proof of possession of that key (a WPT or an HTTP
//! message signature, AIMS AU-5, AU-8). AIMS mints WITs that satisfy both profiles: `typ`
//! wit+jwt, a `kid`, an RS/ES/PS `alg`, no `aud`.

use std::time::{Duration, SystemTime};

use aims_core::{WorkloadIdentifier, unix_seconds};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};

use crate::bundle::BundleSource;
use crate::error::{IssueError, VerifyError};
use crate::jose::{
    ASYMMETRIC_ALGORITHMS, CompactJws, SPIFFE_JWT_ALGORITHMS, WIT_TYP, check_time, sha256_b64url,
};
use crate::jwt_authority::{JwtAuthority, new_kid};
use crate::keys::{PublicKey, jws_alg_name};

/// The HTTP header that carries a WIT (workload-creds-02 §3.3).
pub const WIT_HEADER: &str = "workload-identity-token";

/// Which set of WIT rules to verify against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitProfile {
    /// The WIMSE WIT: any asymmetric `alg`, `kid` optional.
    Wimse,
    /// The WIT-SVID: `alg` in the JWT-SVID families (cnf too), `kid` mandatory, `aud` forbidden,
    /// subject a SPIFFE ID.
    WitSvid,
}

/// A WIT, minted or verified.
#[derive(Debug, Clone)]
pub struct Wit {
    /// The compact JWS.
    pub token: String,
    /// `sub`.
    pub subject: WorkloadIdentifier,
    /// `cnf.jwk`: the key every proof must be signed with.
    pub cnf_key: PublicKey,
    /// `cnf.jwk.alg`: the only algorithm a proof may use (WPT-02 §3: the proof `alg` MUST
    /// string-equal it).
    pub cnf_alg: Algorithm,
    /// `exp`, seconds since the epoch.
    pub expiry: i64,
    /// `iss`, if present (for audit only: validation keys on `sub`).
    pub issuer: Option<String>,
    /// `jti`, if present.
    pub jti: Option<String>,
}

impl Wit {
    /// `wth`: base64url SHA-256 of the WIT as sent (WPT-02 §3).
    pub fn hash(&self) -> String {
        sha256_b64url(self.token.as_bytes())
    }
}

#[derive(Serialize)]
struct OutClaims<'a> {
    sub: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    cnf: OutCnf,
}

#[derive(Serialize)]
struct OutCnf {
    jwk: Jwk,
}

#[derive(Deserialize)]
struct InClaims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iss: Option<String>,
    jti: Option<String>,
    cnf: Option<InCnf>,
    aud: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct InCnf {
    jwk: Option<serde_json::Value>,
}

impl JwtAuthority {
    /// Mints a WIT for `subject`, binding `cnf_key` whose proofs will use `cnf_alg`.
    pub fn mint_wit(
        &self,
        subject: &WorkloadIdentifier,
        cnf_key: &PublicKey,
        cnf_alg: Algorithm,
        ttl: Duration,
        now: SystemTime,
        issuer: Option<&str>,
    ) -> Result<Wit, IssueError> {
        if !cnf_key.key_type().jws_algorithms().contains(&cnf_alg) {
            return Err(IssueError::Refused(format!(
                "cnf alg {} does not fit a {} key",
                jws_alg_name(cnf_alg),
                cnf_key.key_type()
            )));
        }
        let exp = unix_seconds(now + ttl);
        let jti = new_kid()?;
        let token = self.sign(&OutClaims {
            sub: subject.as_str(),
            exp,
            iat: unix_seconds(now),
            jti: jti.clone(),
            iss: issuer,
            cnf: OutCnf {
                jwk: cnf_key.to_jwk(None, None, Some(cnf_alg)),
            },
        })?;
        Ok(Wit {
            token,
            subject: subject.clone(),
            cnf_key: cnf_key.clone(),
            cnf_alg,
            expiry: exp,
            issuer: issuer.map(str::to_owned),
            jti: Some(jti),
        })
    }
}

/// Reads a `cnf.jwk` (WIMSE workload-creds §3.1): a public asymmetric key carrying its `alg`,
/// which must be in `algs` and fit the key. Used to verify a WIT and to check the key a workload
/// asks to have bound before minting one.
pub fn cnf_key_from_jwk(
    jwk_value: serde_json::Value,
    algs: &[Algorithm],
) -> Result<(PublicKey, Algorithm), VerifyError> {
    if jwk_value.get("d").is_some() {
        return Err(VerifyError::Malformed("cnf.jwk holds a private key".into()));
    }
    let cnf_alg = jwk_value
        .get("alg")
        .and_then(serde_json::Value::as_str)
        .ok_or(VerifyError::MissingClaim("cnf.jwk.alg"))?
        .parse::<Algorithm>()
        .map_err(|_| VerifyError::AlgorithmNotAllowed("cnf.jwk.alg".into()))?;
    if !algs.contains(&cnf_alg) {
        return Err(VerifyError::AlgorithmNotAllowed(format!(
            "cnf.jwk.alg {}",
            jws_alg_name(cnf_alg)
        )));
    }
    let jwk: Jwk = serde_json::from_value(jwk_value)
        .map_err(|e| VerifyError::Malformed(format!("cnf.jwk: {e}")))?;
    let cnf_key =
        PublicKey::from_jwk(&jwk).map_err(|e| VerifyError::Malformed(format!("cnf.jwk: {e}")))?;
    if !cnf_key.key_type().jws_algorithms().contains(&cnf_alg) {
        return Err(VerifyError::AlgorithmNotAllowed(
            "cnf.jwk.alg does not fit its key".into(),
        ));
    }
    Ok((cnf_key, cnf_alg))
}

/// Verifies a WIT at `now` (seconds) with `leeway` seconds of skew: explicit type, algorithm
/// allow-list, signature by a `wit-svid` key of the bundle of `sub`'s trust domain, `exp`, and a
/// `cnf.jwk` holding a public asymmetric key with its `alg`.
pub fn verify_wit(
    token: &str,
    bundles: &dyn BundleSource,
    profile: WitProfile,
    now: i64,
    leeway: i64,
) -> Result<Wit, VerifyError> {
    let token = token.trim();
    let jws = CompactJws::parse(token)?;
    let header = &jws.header;
    header.require_typ(WIT_TYP)?;
    header.check_crit(&[])?;
    let algs = match profile {
        WitProfile::Wimse => ASYMMETRIC_ALGORITHMS,
        WitProfile::WitSvid => SPIFFE_JWT_ALGORITHMS,
    };
    header.require_alg(algs)?;
    let claims: InClaims = jws.claims()?;
    let sub = claims.sub.ok_or(VerifyError::MissingClaim("sub"))?;
    let subject =
        WorkloadIdentifier::parse(&sub).map_err(|e| VerifyError::InvalidSubject(e.to_string()))?;
    if profile == WitProfile::WitSvid {
        if subject.as_spiffe().is_none() {
            return Err(VerifyError::InvalidSubject(
                "a WIT-SVID subject is a SPIFFE ID".into(),
            ));
        }
        if claims.aud.is_some() {
            return Err(VerifyError::ForbiddenClaim("aud"));
        }
    }
    let bundle = bundles
        .bundle_for(subject.trust_domain_name())
        .ok_or_else(|| VerifyError::UntrustedDomain(subject.trust_domain_name().to_owned()))?;
    let key = match (header.kid.as_deref(), profile) {
        (Some(kid), _) => bundle
            .wit_authority(kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))?,
        (None, WitProfile::WitSvid) => return Err(VerifyError::MissingKeyId),
        // Without a kid the choice must be unambiguous (workload-creds-02 §3.2).
        (None, WitProfile::Wimse) => {
            let mut keys = bundle.wit_authorities();
            match (keys.next(), keys.next()) {
                (Some((_, k)), None) => k,
                _ => return Err(VerifyError::MissingKeyId),
            }
        }
    };
    jws.verify(key)?;
    check_time(claims.exp, claims.nbf, now, leeway)?;
    let jwk_value = claims
        .cnf
        .and_then(|c| c.jwk)
        .ok_or(VerifyError::MissingClaim("cnf.jwk"))?;
    let (cnf_key, cnf_alg) = cnf_key_from_jwk(jwk_value, algs)?;
    Ok(Wit {
        token: token.to_owned(),
        subject,
        cnf_key,
        cnf_alg,
        expiry: claims.exp.unwrap_or_default(),
        issuer: claims.iss,
        jti: claims.jti,
    })
}
