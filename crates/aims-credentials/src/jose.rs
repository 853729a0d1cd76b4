//! JWS Compact Serialization (RFC 7515 §7.1) as every AIMS token uses it: JWT-SVID, WIT, WPT,
//! DPoP proofs, access tokens, transaction tokens, security event tokens.
//!
//! Signing uses keys parsed once ([`PrivateKey`]); verification uses the `jsonwebtoken` crate's
//! verifiers over keys from trust bundles. Parsing is deliberately strict (RFC 8725): a size cap,
//! an explicit per-format algorithm allow-list checked before any key is touched, `alg: none` and
//! symmetric algorithms impossible for asymmetric keys, explicit `typ` checks, and `crit`
//! honoured by refusing any critical parameter the caller does not understand.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::VerifyError;
use crate::keys::{KeyError, PrivateKey, PublicKey, jws_alg_name};

/// The WIT's explicit type (workload-creds-02 §3.1; media type application/wit+jwt).
pub const WIT_TYP: &str = "wit+jwt";

/// The largest compact JWS AIMS parses (16 KiB): every token it handles is far smaller, and a cap
/// keeps hostile input from costing memory or time.
pub const MAX_COMPACT_JWS_LEN: usize = 16 * 1024;

/// The JOSE header members AIMS writes.
#[derive(Debug, Clone, Serialize)]
pub struct JwsHeader<'a> {
    /// `alg` (RFC 7515 §4.1.1).
    pub alg: &'static str,
    /// `typ` (RFC 7515 §4.1.9), when the format has an explicit type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<&'a str>,
    /// `kid` (RFC 7515 §4.1.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<&'a str>,
    /// `jwk` (RFC 7515 §4.1.3), e.g. the public key of a DPoP proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwk: Option<&'a Jwk>,
    /// `x5c` (RFC 7515 §4.1.6): the signer's certificate chain, leaf first, each DER
    /// certificate in standard base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<&'a [String]>,
}

impl<'a> JwsHeader<'a> {
    /// A header for `key` with the given `typ` and `kid`.
    pub fn new(key: &PrivateKey, typ: Option<&'a str>, kid: Option<&'a str>) -> Self {
        Self {
            alg: jws_alg_name(key.jws_algorithm()),
            typ,
            kid,
            jwk: None,
            x5c: None,
        }
    }

    /// The base64url encoding of this header, for reuse across many tokens with the same header.
    pub fn encode(&self) -> Result<EncodedHeader, KeyError> {
        let json = serde_json::to_vec(self).map_err(|_| KeyError::Crypto)?;
        Ok(EncodedHeader(URL_SAFE_NO_PAD.encode(json)))
    }
}

/// A header already base64url-encoded.
#[derive(Debug, Clone)]
pub struct EncodedHeader(String);

/// Signs `claims` under an encoded header, producing `header.payload.signature`.
pub fn sign_with_encoded_header(
    key: &PrivateKey,
    header: &EncodedHeader,
    claims: &impl Serialize,
) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto)?;
    let mut out = String::with_capacity(header.0.len() + payload.len() * 4 / 3 + 100);
    out.push_str(&header.0);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let signature = key.sign_jws(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut out);
    Ok(out)
}

/// Signs `claims` as a compact JWS with the given header.
pub fn sign(
    key: &PrivateKey,
    header: &JwsHeader<'_>,
    claims: &impl Serialize,
) -> Result<String, KeyError> {
    sign_with_encoded_header(key, &header.encode()?, claims)
}

/// A parsed (not yet verified) JOSE header.
#[derive(Debug, Clone)]
pub struct JoseHeader {
    /// `alg`.
    pub alg: Algorithm,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present, as written.
    pub typ: Option<String>,
    /// `jwk`, if present.
    pub jwk: Option<Jwk>,
    /// `x5c`, if present: the signer's chain as written (standard base64 DER, leaf first).
    pub x5c: Option<Vec<String>>,
    /// `crit`, if present.
    pub crit: Vec<String>,
    /// The names of every member of the header.
    pub members: BTreeSet<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    jwk: Option<Jwk>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl JoseHeader {
    /// Whether `typ` names the media type `expected` (RFC 7515 §4.1.9: compared case-insensitively,
    /// with the `application/` prefix optional).
    pub fn typ_is(&self, expected: &str) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case(expected)
        })
    }

    /// Fails unless `typ` is `expected`.
    pub fn require_typ(&self, expected: &'static str) -> Result<(), VerifyError> {
        if self.typ_is(expected) {
            Ok(())
        } else {
            Err(VerifyError::WrongType {
                expected,
                found: self.typ.clone(),
            })
        }
    }

    /// Fails unless `alg` is one of `allowed`.
    pub fn require_alg(&self, allowed: &[Algorithm]) -> Result<(), VerifyError> {
        if allowed.contains(&self.alg) {
            Ok(())
        } else {
            Err(VerifyError::AlgorithmNotAllowed(
                jws_alg_name(self.alg).to_owned(),
            ))
        }
    }

    /// Fails if any member other than those in `allowed` is present.
    pub fn allow_only(&self, allowed: &[&str]) -> Result<(), VerifyError> {
        match self.members.iter().find(|m| !allowed.contains(&m.as_str())) {
            Some(m) => Err(VerifyError::UnexpectedHeaderParameter(m.clone())),
            None => Ok(()),
        }
    }

    /// Fails if `crit` names a parameter outside `understood` (RFC 7515 §4.1.11).
    pub fn check_crit(&self, understood: &[&str]) -> Result<(), VerifyError> {
        match self.crit.iter().find(|c| !understood.contains(&c.as_str())) {
            Some(c) => Err(VerifyError::UnsupportedCritical(c.clone())),
            None => Ok(()),
        }
    }
}

/// A compact JWS split into its parts, with its header parsed. Nothing is trusted until
/// [`CompactJws::verify`] succeeds.
#[derive(Debug)]
pub struct CompactJws<'a> {
    /// The parsed header.
    pub header: JoseHeader,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits and parses a compact JWS. Fails on anything but three base64url parts, an oversized
    /// token, a header that is not a JSON object, or an `alg` that is `none` or unknown.
    pub fn parse(token: &'a str) -> Result<Self, VerifyError> {
        if token.len() > MAX_COMPACT_JWS_LEN {
            return Err(VerifyError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed(
                "not a compact JWS (three dot-separated parts)".into(),
            ));
        };
        let signing_input = &token[..h.len() + 1 + p.len()];
        let header_bytes = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| VerifyError::Malformed("header is not base64url".into()))?;
        let raw: RawHeader = serde_json::from_slice(&header_bytes)
            .map_err(|e| VerifyError::Malformed(format!("header: {e}")))?;
        let alg = parse_alg(&raw.alg)?;
        let mut members: BTreeSet<String> = raw.other.keys().cloned().collect();
        members.insert("alg".into());
        for (present, name) in [
            (raw.kid.is_some(), "kid"),
            (raw.typ.is_some(), "typ"),
            (raw.jwk.is_some(), "jwk"),
            (raw.x5c.is_some(), "x5c"),
            (raw.crit.is_some(), "crit"),
        ] {
            if present {
                members.insert(name.into());
            }
        }
        Ok(Self {
            header: JoseHeader {
                alg,
                kid: raw.kid,
                typ: raw.typ,
                jwk: raw.jwk,
                x5c: raw.x5c,
                crit: raw.crit.unwrap_or_default(),
                members,
            },
            signing_input,
            payload_b64: p,
            signature_b64: s,
        })
    }

    /// Verifies the signature with `key`. The header's `alg` must be one `key` can verify, so a
    /// token cannot pick a weaker or symmetric algorithm (RFC 8725 §2.1).
    pub fn verify(&self, key: &PublicKey) -> Result<(), VerifyError> {
        if !key.key_type().jws_algorithms().contains(&self.header.alg) {
            return Err(VerifyError::AlgorithmNotAllowed(format!(
                "{} with a {} key",
                jws_alg_name(self.header.alg),
                key.key_type()
            )));
        }
        if key.verify_jws(
            self.header.alg,
            self.signing_input.as_bytes(),
            self.signature_b64,
        ) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// The decoded payload.
    pub fn payload(&self) -> Result<Vec<u8>, VerifyError> {
        URL_SAFE_NO_PAD
            .decode(self.payload_b64)
            .map_err(|_| VerifyError::Malformed("payload is not base64url".into()))
    }

    /// The payload as JSON claims.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, VerifyError> {
        serde_json::from_slice(&self.payload()?)
            .map_err(|e| VerifyError::Malformed(format!("claims: {e}")))
    }

    /// The JWS signing input, `header.payload`.
    pub fn signing_input(&self) -> &str {
        self.signing_input
    }
}

fn parse_alg(s: &str) -> Result<Algorithm, VerifyError> {
    s.parse::<Algorithm>()
        .map_err(|_| VerifyError::AlgorithmNotAllowed(s.chars().take(32).collect()))
}

/// The asymmetric algorithms SPIFFE allows for JWT-SVIDs and WIT-SVIDs (JWT-SVID §3): RS, ES and
/// PS families. EdDSA and every HMAC are excluded.
pub const SPIFFE_JWT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Every asymmetric algorithm AIMS verifies (WIMSE WIT, WPT, DPoP proofs, client assertions).
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// One audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience string.
    One(String),
    /// An array of audiences.
    Many(Vec<String>),
}

impl Audience {
    /// The audience values.
    pub fn values(&self) -> &[String] {
        match self {
            Audience::One(s) => std::slice::from_ref(s),
            Audience::Many(v) => v,
        }
    }

    /// Whether `aud` is among the values.
    pub fn contains(&self, aud: &str) -> bool {
        self.values().iter().any(|a| a == aud)
    }

    /// A single value as a string, several as an array (JWT-SVID §3: prefer one audience).
    pub fn from_values(mut values: Vec<String>) -> Self {
        if values.len() == 1 {
            Audience::One(values.remove(0))
        } else {
            Audience::Many(values)
        }
    }
}

/// The time rules of a JWT (RFC 7519 §4.1.4, §4.1.5): `exp` in the future and `nbf` in the past,
/// each with `leeway` seconds of clock skew allowed.
pub fn check_time(
    exp: Option<i64>,
    nbf: Option<i64>,
    now: i64,
    leeway: i64,
) -> Result<(), VerifyError> {
    let exp = exp.ok_or(VerifyError::MissingClaim("exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// base64url(SHA-256(input)), the hash form of `wth`, `tth`, `ath`, `jkt` and `x5t#S256`.
pub fn sha256_b64url(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input))
}

/// 256 random bits, base64url: bearer handles (tokens, codes, session cookies, flow handles)
/// that are stored only as their [`sha256_b64url`].
pub fn random_b64url() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyType;

    #[test]
    fn sign_then_parse_and_verify() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let token = sign(
            &key,
            &JwsHeader::new(&key, Some("JWT"), Some("k1")),
            &serde_json::json!({"sub": "x"}),
        )
        .unwrap();
        let jws = CompactJws::parse(&token).unwrap();
        assert_eq!(jws.header.alg, Algorithm::ES256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert!(jws.header.typ_is("jwt"));
        jws.verify(key.public_key()).unwrap();
        let claims: serde_json::Value = jws.claims().unwrap();
        assert_eq!(claims["sub"], "x");
    }

    #[test]
    fn rejects_malformed_and_dangerous_tokens() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.x",
            &"a".repeat(MAX_COMPACT_JWS_LEN + 1),
        ] {
            assert!(CompactJws::parse(bad).is_err(), "{bad:.20}");
        }
        // alg none is not even parseable.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert!(matches!(
            CompactJws::parse(&none),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
        // HS256 "signed" with the public key bytes must not verify against the public key.
        let pub_json = serde_json::to_vec(key.public_key().jwk()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode("{}");
        let input = format!("{header}.{payload}");
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &pub_json),
            input.as_bytes(),
        );
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        let jws = CompactJws::parse(&forged).unwrap();
        assert!(matches!(
            jws.verify(key.public_key()),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn header_rules() {
        let h = URL_SAFE_NO_PAD
            .encode(r#"{"alg":"ES256","typ":"application/WIT+jwt","crit":["exp"],"x":1}"#);
        let token = format!("{h}.e30.AA");
        let jws = CompactJws::parse(&token).unwrap();
        assert!(jws.header.typ_is("wit+jwt"));
        assert!(jws.header.require_typ("wpt+jwt").is_err());
        assert!(jws.header.check_crit(&[]).is_err());
        assert!(jws.header.check_crit(&["exp"]).is_ok());
        assert!(matches!(
            jws.header.allow_only(&["alg", "typ", "crit"]),
            Err(VerifyError::UnexpectedHeaderParameter(m)) if m == "x"
        ));
    }

    #[test]
    fn time_rules() {
        assert!(check_time(Some(100), None, 100, 0).is_ok());
        assert!(matches!(
            check_time(Some(100), None, 101, 0),
            Err(VerifyError::Expired)
        ));
        assert!(check_time(Some(100), None, 150, 60).is_ok());
        assert!(matches!(
            check_time(None, None, 0, 0),
            Err(VerifyError::MissingClaim("exp"))
        ));
        assert!(matches!(
            check_time(Some(200), Some(150), 100, 10),
            Err(VerifyError::NotYetValid)
        ));
        assert!(check_time(Some(200), Some(105), 100, 10).is_ok());
    }
}
