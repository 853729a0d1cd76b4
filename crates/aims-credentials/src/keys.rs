//! Asymmetric keys: the private keys AIMS signs with and the public keys it verifies with.
//!
//! Private keys are aws-lc-rs key pairs parsed once at load time, so signing costs only the
//! signature itself. A private key never appears in `Debug` output or logs: only its algorithm and
//! the RFC 7638 thumbprint of its public half do (AIMS: "CA keys are never logged").

use std::fmt;

use aws_lc_rs::encoding::{AsBigEndian, AsDer, Curve25519SeedBin, EcPrivateKeyBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, RSAKeyParameters,
    RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

/// Errors about keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key bytes could not be parsed, or describe a key that is not valid for its algorithm.
    #[error("invalid {0} key")]
    Invalid(&'static str),
    /// A key type AIMS does not accept (for example RSA below 2048 bits, or P-521).
    #[error("unsupported key type: {0}")]
    Unsupported(String),
    /// Key generation or signing failed inside the crypto library.
    #[error("cryptographic operation failed")]
    Crypto,
    /// A key store operation failed.
    #[error("key store: {0}")]
    Store(String),
}

/// The key types AIMS generates and accepts (X509-SVID and JWT-SVID allow these; AIMS defaults to
/// ECDSA P-256).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on NIST P-256 (ES256).
    #[default]
    EcP256,
    /// ECDSA on NIST P-384 (ES384).
    EcP384,
    /// Ed25519 (EdDSA).
    Ed25519,
    /// RSA, 2048 bits when generated; at least 2048 bits when accepted.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl KeyType {
    /// The JWS algorithm AIMS signs with for this key type (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn default_jws_algorithm(self) -> Algorithm {
        match self {
            KeyType::EcP256 => Algorithm::ES256,
            KeyType::EcP384 => Algorithm::ES384,
            KeyType::Ed25519 => Algorithm::EdDSA,
            KeyType::Rsa2048 => Algorithm::RS256,
        }
    }

    /// Every JWS algorithm a key of this type can verify. A token whose `alg` is not in this
    /// list is refused before any signature check (RFC 8725 §3.1: no algorithm confusion).
    pub fn jws_algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyType::EcP256 => &[Algorithm::ES256],
            KeyType::EcP384 => &[Algorithm::ES384],
            KeyType::Ed25519 => &[Algorithm::EdDSA],
            KeyType::Rsa2048 => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
        }
    }

    /// The rcgen signature algorithm for X.509 signatures made with this key type.
    fn x509_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl std::str::FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "ec-p256" | "p256" | "p-256" | "es256" => Ok(KeyType::EcP256),
            "ec-p384" | "p384" | "p-384" | "es384" => Ok(KeyType::EcP384),
            "ed25519" | "eddsa" => Ok(KeyType::Ed25519),
            "rsa2048" | "rsa-2048" | "rsa" => Ok(KeyType::Rsa2048),
            other => Err(KeyError::Unsupported(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa-2048",
        })
    }
}

/// A public key, usable to verify JWS signatures and to describe itself as a JWK (RFC 7517).
#[derive(Clone)]
pub struct PublicKey {
    key_type: KeyType,
    /// The public JWK parameters, without `use`, `kid` or `alg`.
    jwk: Jwk,
    decoding: DecodingKey,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|_| KeyError::Invalid("SPKI"))?;
        if !rest.is_empty() {
            return Err(KeyError::Invalid("SPKI"));
        }
        Self::from_parsed_spki(&spki)
    }

    /// Parses a PKCS#1 `RSAPublicKey` (the `RSA PUBLIC KEY` PEM type).
    pub fn from_pkcs1_rsa_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&RawRsa(der)))
    }

    pub(crate) fn from_parsed_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let parsed = spki.parsed().map_err(|_| KeyError::Invalid("SPKI"))?;
        let (key_type, params) = match parsed {
            ParsedPublicKey::EC(point) => {
                let curve_oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .ok_or(KeyError::Invalid("EC"))?;
                let (key_type, curve, len) = match curve_oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => (KeyType::EcP256, EllipticCurve::P256, 32),
                    "1.3.132.0.34" => (KeyType::EcP384, EllipticCurve::P384, 48),
                    other => return Err(KeyError::Unsupported(format!("EC curve {other}"))),
                };
                let data = point.data();
                if data.len() != 1 + 2 * len || data[0] != 0x04 {
                    return Err(KeyError::Invalid("EC"));
                }
                (
                    key_type,
                    ec_params(curve, &data[1..1 + len], &data[1 + len..]),
                )
            }
            ParsedPublicKey::RSA(rsa) => {
                let bits = rsa.key_size();
                if bits < 2048 {
                    return Err(KeyError::Unsupported(format!("RSA-{bits}")));
                }
                (
                    KeyType::Rsa2048,
                    AlgorithmParameters::RSA(RSAKeyParameters {
                        key_type: RSAKeyType::RSA,
                        n: URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus)),
                        e: URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent)),
                    }),
                )
            }
            ParsedPublicKey::Unknown(bytes)
                if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" =>
            {
                if bytes.len() != 32 {
                    return Err(KeyError::Invalid("Ed25519"));
                }
                (KeyType::Ed25519, okp_params(bytes))
            }
            _ => {
                return Err(KeyError::Unsupported(format!(
                    "SPKI algorithm {}",
                    spki.algorithm.algorithm.to_id_string()
                )));
            }
        };
        Self::from_params(key_type, params)
    }

    /// Builds a public key from a JWK (RFC 7517). Private members are refused: a JWK carrying `d`
    /// where a public key is expected (a DPoP `jwk`, a WIT `cnf.jwk`) is an error.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let key_type = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => {
                let (key_type, len) = match ec.curve {
                    EllipticCurve::P256 => (KeyType::EcP256, 32),
                    EllipticCurve::P384 => (KeyType::EcP384, 48),
                    ref other => return Err(KeyError::Unsupported(format!("curve {other:?}"))),
                };
                let x = decode_b64url(&ec.x, "EC")?;
                let y = decode_b64url(&ec.y, "EC")?;
                if x.len() != len || y.len() != len {
                    return Err(KeyError::Invalid("EC"));
                }
                key_type
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    return Err(KeyError::Unsupported(format!("curve {:?}", okp.curve)));
                }
                let x = decode_b64url(&okp.x, "Ed25519")?;
                if x.len() != 32 {
                    return Err(KeyError::Invalid("Ed25519"));
                }
                KeyType::Ed25519
            }
            AlgorithmParameters::RSA(rsa) => {
                let n = decode_b64url(&rsa.n, "RSA")?;
                let n = strip_leading_zeros(&n);
                if n.len() * 8 < 2048 {
                    return Err(KeyError::Unsupported(format!("RSA-{}", n.len() * 8)));
                }
                KeyType::Rsa2048
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError::Unsupported("symmetric (oct) key".into()));
            }
            _ => return Err(KeyError::Unsupported("unknown kty".into())),
        };
        Self::from_params(key_type, jwk.algorithm.clone())
    }

    fn from_params(key_type: KeyType, params: AlgorithmParameters) -> Result<Self, KeyError> {
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: params,
        };
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| KeyError::Invalid("JWK"))?;
        Ok(Self {
            key_type,
            jwk,
            decoding,
        })
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public JWK (key parameters only).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The JWK with `use`, `kid` and `alg` members set as given.
    pub fn to_jwk(&self, key_use: Option<&str>, kid: Option<&str>, alg: Option<Algorithm>) -> Jwk {
        let mut jwk = self.jwk.clone();
        jwk.common.public_key_use =
            key_use.map(|u| jsonwebtoken::jwk::PublicKeyUse::Other(u.to_owned()));
        jwk.common.key_id = kid.map(str::to_owned);
        jwk.common.key_algorithm = alg.and_then(|a| jws_alg_name(a).parse().ok());
        jwk
    }

    /// The raw 32-byte key of an Ed25519 public key (RFC 8037 `x`); `None` for other types.
    pub fn ed25519_bytes(&self) -> Option<Vec<u8>> {
        match &self.jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(okp) if self.key_type == KeyType::Ed25519 => {
                URL_SAFE_NO_PAD.decode(&okp.x).ok()
            }
            _ => None,
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url (DPoP `jkt`, RFC 9449 §6.1).
    pub fn thumbprint(&self) -> String {
        // Only the required members feed the thumbprint, and every key type we accept has one.
        self.jwk
            .thumbprint(ThumbprintHash::SHA256)
            .unwrap_or_default()
    }

    /// Verifies a JWS signature (base64url) over `message` with algorithm `alg`.
    ///
    /// `alg` must be one this key type can verify ([`KeyType::jws_algorithms`]).
    pub fn verify_jws(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> bool {
        if !self.key_type.jws_algorithms().contains(&alg) {
            return false;
        }
        matches!(
            jsonwebtoken::crypto::verify(signature_b64, message, &self.decoding, alg),
            Ok(true)
        )
    }

    /// Verifies a raw (not base64) signature made with a JWS algorithm; used by RFC 9421 §3.3.7,
    /// where the algorithm is fixed by the key rather than by the message.
    pub fn verify_raw(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.verify_jws(alg, message, &URL_SAFE_NO_PAD.encode(signature))
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_type == other.key_type && self.jwk.algorithm == other.jwk.algorithm
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, jkt={})", self.key_type, self.thumbprint())
    }
}

/// The registered JWS name of an algorithm (RFC 7518 §3.1), as it appears in `alg`.
pub fn jws_alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive; an algorithm it adds later has no name here
        // until AIMS decides to accept it.
        _ => "unsupported",
    }
}

fn ec_params(curve: EllipticCurve, x: &[u8], y: &[u8]) -> AlgorithmParameters {
    AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
        key_type: EllipticCurveKeyType::EC,
        curve,
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
    })
}

fn okp_params(x: &[u8]) -> AlgorithmParameters {
    AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
        key_type: OctetKeyPairType::OctetKeyPair,
        curve: EllipticCurve::Ed25519,
        x: URL_SAFE_NO_PAD.encode(x),
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn decode_b64url(s: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| KeyError::Invalid(what))
}

/// The parsed signing halves of a private key.
enum Signer {
    /// ECDSA needs two encodings: fixed r‖s for JWS (RFC 7518 §3.4) and ASN.1 DER for X.509.
    Ecdsa {
        fixed: EcdsaKeyPair,
        asn1: EcdsaKeyPair,
    },
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key. Construction parses it once; `Debug` never shows key material.
pub struct PrivateKey {
    key_type: KeyType,
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    public: PublicKey,
    /// The `subjectPublicKey` bits (EC point, Ed25519 key, or PKCS#1 RSAPublicKey), for X.509.
    public_raw: Vec<u8>,
    rng: SystemRandom,
}

impl PrivateKey {
    /// Generates a fresh key (AIMS PR-9: fresh key material for every credential).
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8: Vec<u8> = match key_type {
            KeyType::EcP256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
            KeyType::EcP384 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
            // PKCS#8 v1 (RFC 5208), not v2: OpenSSL 1.x, Python `cryptography` and
            // jsonwebtoken read only v1 Ed25519 keys, and key files must be portable.
            KeyType::Ed25519 => Ed25519KeyPair::generate_pkcs8v1(&rng)
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
            KeyType::Rsa2048 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Crypto)?
                .as_der()
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        Self::from_pkcs8_der_typed(key_type, Zeroizing::new(pkcs8))
    }

    /// Loads an unencrypted PKCS#8 DER private key of any accepted type.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        for key_type in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            if let Ok(key) = Self::from_pkcs8_der_typed(key_type, Zeroizing::new(der.to_vec())) {
                return Ok(key);
            }
        }
        Err(KeyError::Invalid("PKCS#8"))
    }

    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
    /// (`RSA PRIVATE KEY`), as upstream CAs commonly ship them.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| KeyError::Invalid("PEM"))?;
        match der {
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8_der(k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => {
                for (key_type, alg) in [
                    (KeyType::EcP256, &ECDSA_P256_SHA256_FIXED_SIGNING),
                    (KeyType::EcP384, &ECDSA_P384_SHA384_FIXED_SIGNING),
                ] {
                    if let Ok(pair) = EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()) {
                        let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
                        return Self::from_pkcs8_der_typed(
                            key_type,
                            Zeroizing::new(pkcs8.as_ref().to_vec()),
                        );
                    }
                }
                Err(KeyError::Invalid("SEC1"))
            }
            PrivateKeyDer::Pkcs1(k) => {
                let pair = RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|_| KeyError::Invalid("PKCS#1"))?;
                let pkcs8 = pair.as_der().map_err(|_| KeyError::Crypto)?;
                Self::from_pkcs8_der_typed(
                    KeyType::Rsa2048,
                    Zeroizing::new(pkcs8.as_ref().to_vec()),
                )
            }
            _ => Err(KeyError::Unsupported("private key format".into())),
        }
    }

    fn from_pkcs8_der_typed(
        key_type: KeyType,
        pkcs8: Zeroizing<Vec<u8>>,
    ) -> Result<Self, KeyError> {
        let (signer, params, raw) = match key_type {
            KeyType::EcP256 | KeyType::EcP384 => {
                let (fixed_alg, asn1_alg, curve, len) = if key_type == KeyType::EcP256 {
                    (
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &ECDSA_P256_SHA256_ASN1_SIGNING,
                        EllipticCurve::P256,
                        32,
                    )
                } else {
                    (
                        &ECDSA_P384_SHA384_FIXED_SIGNING,
                        &ECDSA_P384_SHA384_ASN1_SIGNING,
                        EllipticCurve::P384,
                        48,
                    )
                };
                let fixed = EcdsaKeyPair::from_pkcs8(fixed_alg, &pkcs8)
                    .map_err(|_| KeyError::Invalid("EC"))?;
                let asn1 = EcdsaKeyPair::from_pkcs8(asn1_alg, &pkcs8)
                    .map_err(|_| KeyError::Invalid("EC"))?;
                let point = fixed.public_key().as_ref().to_vec();
                let params = ec_params(curve, &point[1..1 + len], &point[1 + len..]);
                (Signer::Ecdsa { fixed, asn1 }, params, point)
            }
            KeyType::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
                    .map_err(|_| KeyError::Invalid("Ed25519"))?;
                let x = pair.public_key().as_ref().to_vec();
                (Signer::Ed25519(pair), okp_params(&x), x)
            }
            KeyType::Rsa2048 => {
                let pair = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| KeyError::Invalid("RSA"))?;
                if pair.public_modulus_len() * 8 < 2048 {
                    return Err(KeyError::Unsupported(format!(
                        "RSA-{}",
                        pair.public_modulus_len() * 8
                    )));
                }
                let pkcs1 = pair.public_key().as_ref().to_vec();
                let spki = rcgen::PublicKeyData::subject_public_key_info(&RawRsa(&pkcs1));
                let parsed = PublicKey::from_spki_der(&spki)?;
                (Signer::Rsa(pair), parsed.jwk.algorithm, pkcs1)
            }
        };
        let public = PublicKey::from_params(key_type, params)?;
        Ok(Self {
            key_type,
            pkcs8,
            signer,
            public,
            public_raw: raw,
            rng: SystemRandom::new(),
        })
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The JWS algorithm this key signs with.
    pub fn jws_algorithm(&self) -> Algorithm {
        self.key_type.default_jws_algorithm()
    }

    /// Signs `message` for a JWS (ECDSA fixed r‖s per RFC 7518 §3.4, Ed25519 per RFC 8037,
    /// RSA PKCS#1 v1.5 SHA-256 for RS256).
    pub fn sign_jws(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Ecdsa { fixed, .. } => fixed
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Rsa(pair) => self.sign_rsa(pair, message),
        }
    }

    fn sign_rsa(&self, pair: &RsaKeyPair, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| KeyError::Crypto)?;
        Ok(sig)
    }

    /// The PKCS#8 DER encoding. Handle with care: this is the secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The PKCS#8 PEM encoding. Handle with care: this is the secret.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.pkcs8));
        let mut out = String::with_capacity(b64.len() + 80);
        out.push_str("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        Zeroizing::new(out)
    }

    /// Loads a private JWK (RFC 7517 §4 with `d`; RFC 7518 §6.2.2 for EC, RFC 8037 §2 for
    /// Ed25519), as the Workload API's `wit_svid_key` carries it: the inverse of
    /// [`PrivateKey::to_private_jwk`].
    pub fn from_private_jwk(json: &str) -> Result<Self, KeyError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            kty: String,
            crv: Option<String>,
            x: Option<String>,
            y: Option<String>,
            d: Option<String>,
        }
        let raw: Raw = serde_json::from_str(json).map_err(|_| KeyError::Invalid("JWK"))?;
        let b64 = |v: &Option<String>| -> Result<Zeroizing<Vec<u8>>, KeyError> {
            v.as_deref()
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .map(Zeroizing::new)
                .ok_or(KeyError::Invalid("JWK member"))
        };
        let d = b64(&raw.d)?;
        let x = b64(&raw.x)?;
        match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (key_type, alg) = if crv == "P-256" {
                    (KeyType::EcP256, &ECDSA_P256_SHA256_FIXED_SIGNING)
                } else {
                    (KeyType::EcP384, &ECDSA_P384_SHA384_FIXED_SIGNING)
                };
                let y = b64(&raw.y)?;
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point)
                    .map_err(|_| KeyError::Invalid("EC JWK"))?;
                let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
                Self::from_pkcs8_der_typed(key_type, Zeroizing::new(pkcs8.as_ref().to_vec()))
            }
            ("OKP", Some("Ed25519")) => {
                let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x)
                    .map_err(|_| KeyError::Invalid("Ed25519 JWK"))?;
                let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
                Self::from_pkcs8_der_typed(
                    KeyType::Ed25519,
                    Zeroizing::new(pkcs8.as_ref().to_vec()),
                )
            }
            _ => Err(KeyError::Unsupported(format!(
                "private JWK of kty {} crv {:?}",
                raw.kty, raw.crv
            ))),
        }
    }

    /// The private key as a JWK (RFC 7517 §4, with `d`), as the Workload API's `wit_svid_key`
    /// field carries it (SPIFFE Workload API, WIT profile). Only EC and Ed25519 keys have one.
    pub fn to_private_jwk(&self, alg: Algorithm) -> Result<Zeroizing<String>, KeyError> {
        let d = match &self.signer {
            Signer::Ecdsa { fixed, .. } => {
                let scalar: EcPrivateKeyBin<'static> = fixed
                    .private_key()
                    .as_be_bytes()
                    .map_err(|_| KeyError::Crypto)?;
                Zeroizing::new(URL_SAFE_NO_PAD.encode(scalar.as_ref()))
            }
            Signer::Ed25519(pair) => {
                let seed = pair.seed().map_err(|_| KeyError::Crypto)?;
                let raw: Curve25519SeedBin<'static> =
                    seed.as_be_bytes().map_err(|_| KeyError::Crypto)?;
                Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()))
            }
            Signer::Rsa(_) => return Err(KeyError::Unsupported("RSA private JWK".into())),
        };
        let mut value = serde_json::to_value(self.public.to_jwk(None, None, Some(alg)))
            .map_err(|_| KeyError::Crypto)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("d".into(), serde_json::Value::String(d.to_string()));
        }
        let s = Zeroizing::new(value.to_string());
        if let Some(obj) = value.as_object_mut() {
            obj.remove("d");
        }
        Ok(s)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({}, jkt={})",
            self.key_type,
            self.public.thumbprint()
        )
    }
}

impl rcgen::PublicKeyData for PrivateKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_raw
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key_type.x509_algorithm()
    }
}

impl rcgen::SigningKey for PrivateKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig = match &self.signer {
            Signer::Ecdsa { asn1, .. } => asn1
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| rcgen::Error::RingUnspecified)?,
            Signer::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
            Signer::Rsa(pair) => self
                .sign_rsa(pair, msg)
                .map_err(|_| rcgen::Error::RingUnspecified)?,
        };
        Ok(sig)
    }
}

/// A PKCS#1 RSA public key viewed as rcgen public key data, to build its SPKI.
struct RawRsa<'a>(&'a [u8]);

impl rcgen::PublicKeyData for RawRsa<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_jwks_round_trip() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519] {
            let key = PrivateKey::generate(kt).unwrap();
            let jwk = key.to_private_jwk(key.jws_algorithm()).unwrap();
            let back = PrivateKey::from_private_jwk(&jwk).unwrap();
            assert_eq!(
                back.public_key().thumbprint(),
                key.public_key().thumbprint(),
                "{kt}"
            );
        }
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let other = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut jwk: serde_json::Value =
            serde_json::from_str(&key.to_private_jwk(key.jws_algorithm()).unwrap()).unwrap();
        let other_jwk: serde_json::Value =
            serde_json::from_str(&other.to_private_jwk(other.jws_algorithm()).unwrap()).unwrap();
        jwk["d"] = other_jwk["d"].clone();
        assert!(
            PrivateKey::from_private_jwk(&jwk.to_string()).is_err(),
            "d of another key"
        );
        assert!(PrivateKey::from_private_jwk(r#"{"kty":"oct","k":"AA"}"#).is_err());
    }

    #[test]
    fn every_key_type_signs_and_verifies_jws() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            let key = PrivateKey::generate(kt).unwrap();
            let sig = key.sign_jws(b"hello").unwrap();
            let alg = key.jws_algorithm();
            assert!(key.public_key().verify_raw(alg, b"hello", &sig), "{kt}");
            assert!(!key.public_key().verify_raw(alg, b"hellp", &sig), "{kt}");
            // Round trip through PKCS#8 and through the public JWK.
            let again = PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            assert_eq!(again.key_type(), kt);
            assert_eq!(again.public_key(), key.public_key());
            let from_jwk = PublicKey::from_jwk(key.public_key().jwk()).unwrap();
            assert!(from_jwk.verify_raw(alg, b"hello", &sig), "{kt} via JWK");
            let pem = key.to_pkcs8_pem();
            assert_eq!(
                PrivateKey::from_pem(&pem).unwrap().public_key(),
                key.public_key()
            );
        }
    }

    #[test]
    fn rejects_algorithm_confusion() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let sig = key.sign_jws(b"m").unwrap();
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            assert!(!key.public_key().verify_raw(alg, b"m", &sig), "{alg:?}");
        }
    }

    #[test]
    fn rfc7638_thumbprint_of_rfc8037_key() {
        // RFC 8037 Appendix A.3.
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc9449_dpop_thumbprint() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}"#).unwrap();
        assert_eq!(
            PublicKey::from_jwk(&jwk).unwrap().thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn rfc7515_a3_es256_vector_verifies() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#).unwrap();
        let key = PublicKey::from_jwk(&jwk).unwrap();
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        let (input, sig) = jws.rsplit_once('.').unwrap();
        assert!(key.verify_jws(Algorithm::ES256, input.as_bytes(), sig));
        assert!(!key.verify_jws(Algorithm::ES256, b"tampered", sig));
    }

    #[test]
    fn rfc8037_ed25519_signature_is_reproduced() {
        // RFC 8037 Appendix A.4: Ed25519 is deterministic, so the signature must match exactly.
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&d);
        let key = PrivateKey::from_pkcs8_der(&pkcs8).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = URL_SAFE_NO_PAD.encode(key.sign_jws(input.as_bytes()).unwrap());
        assert_eq!(
            sig,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn private_jwk_round_trips_for_wit_keys() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let jwk = key.to_private_jwk(Algorithm::ES256).unwrap();
        let v: serde_json::Value = serde_json::from_str(&jwk).unwrap();
        assert_eq!(v["kty"], "EC");
        assert_eq!(v["alg"], "ES256");
        assert_eq!(v["d"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn refuses_small_rsa_and_secret_jwks() {
        let oct: Jwk = serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap();
        assert!(matches!(
            PublicKey::from_jwk(&oct),
            Err(KeyError::Unsupported(_))
        ));
        let small: Jwk = serde_json::from_str(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#).unwrap();
        assert!(matches!(
            PublicKey::from_jwk(&small),
            Err(KeyError::Unsupported(_))
        ));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.starts_with("PrivateKey(ec-p256, jkt="));
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!dbg.contains(&body));
    }
}
