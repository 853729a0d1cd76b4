//! JWT-SVIDs (SPIFFE JWT-SVID §2–§3): short-lived bearer tokens naming a SPIFFE ID, for one or a
//! few audiences (AIMS CR-2).

use std::time::{Duration, SystemTime};

use aims_core::{SpiffeId, unix_seconds};
use serde::Serialize;

use crate::bundle::BundleSource;
use crate::error::{IssueError, VerifyError};
use crate::jose::{Audience, CompactJws, SPIFFE_JWT_ALGORITHMS, check_time};
use crate::jwt_authority::JwtAuthority;

/// A JWT-SVID, minted or verified.
#[derive(Debug, Clone)]
pub struct JwtSvid {
    /// The compact JWS.
    pub token: String,
    /// `sub`.
    pub spiffe_id: SpiffeId,
    /// `aud`.
    pub audience: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expiry: i64,
    /// Every claim, as the Workload API's `ValidateJWTSVID` returns them.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    aud: Audience,
    exp: i64,
    iat: i64,
}

impl JwtAuthority {
    /// Mints a JWT-SVID for `id` and `audience` valid for `ttl` from `now` (JWT-SVID §3: `sub`,
    /// `aud`, `exp` required; header `alg`, `kid`, `typ` only).
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<JwtSvid, IssueError> {
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(IssueError::Refused(
                "a JWT-SVID needs at least one audience".into(),
            ));
        }
        let iat = unix_seconds(now);
        let exp = unix_seconds(now + ttl);
        let aud = Audience::from_values(audience.to_vec());
        let token = self.sign(&Claims {
            sub: id.as_str(),
            aud: aud.clone(),
            exp,
            iat,
        })?;
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), id.as_str().into());
        claims.insert(
            "aud".into(),
            serde_json::to_value(&aud).unwrap_or(serde_json::Value::Null),
        );
        claims.insert("exp".into(), exp.into());
        claims.insert("iat".into(), iat.into());
        Ok(JwtSvid {
            token,
            spiffe_id: id.clone(),
            audience: audience.to_vec(),
            expiry: exp,
            claims,
        })
    }
}

fn int_claim(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<i64> {
    claims.get(name).and_then(serde_json::Value::as_i64)
}

/// Verifies a JWT-SVID for `audience` at time `now` (seconds), allowing `leeway` seconds of
/// skew (JWT-SVID §4): header limited to `alg`/`kid`/`typ`, `alg` in the RS/ES/PS families,
/// `kid` required and looked up in the bundle of `sub`'s trust domain, `exp` required,
/// `audience` among `aud`.
pub fn verify_jwt_svid(
    token: &str,
    bundles: &dyn BundleSource,
    audience: &str,
    now: i64,
    leeway: i64,
) -> Result<JwtSvid, VerifyError> {
    let jws = CompactJws::parse(token)?;
    let header = &jws.header;
    header.allow_only(&["alg", "kid", "typ"])?;
    header.require_alg(SPIFFE_JWT_ALGORITHMS)?;
    if header.typ.is_some() && !header.typ_is("JWT") && !header.typ_is("JOSE") {
        return Err(VerifyError::WrongType {
            expected: "JWT",
            found: header.typ.clone(),
        });
    }
    let kid = header.kid.as_deref().ok_or(VerifyError::MissingKeyId)?;
    let claims: serde_json::Map<String, serde_json::Value> = jws.claims()?;
    let sub = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .ok_or(VerifyError::MissingClaim("sub"))?;
    let spiffe_id = SpiffeId::parse(sub)?;
    let bundle = bundles
        .bundle_for(spiffe_id.trust_domain_name())
        .ok_or_else(|| VerifyError::UntrustedDomain(spiffe_id.trust_domain_name().to_owned()))?;
    let key = bundle
        .jwt_authority(kid)
        .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))?;
    jws.verify(key)?;
    check_time(
        int_claim(&claims, "exp"),
        int_claim(&claims, "nbf"),
        now,
        leeway,
    )?;
    let aud: Audience = claims
        .get("aud")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(VerifyError::MissingClaim("aud"))?;
    if !aud.contains(audience) {
        return Err(VerifyError::WrongAudience);
    }
    Ok(JwtSvid {
        token: token.to_owned(),
        spiffe_id,
        audience: aud.values().to_vec(),
        expiry: int_claim(&claims, "exp").unwrap_or_default(),
        claims,
    })
}
