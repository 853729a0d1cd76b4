//! X509-SVID verification (SPIFFE X509-SVID §5): RFC 5280 path validation against the bundle of
//! the SVID's own trust domain, then the leaf rules.

use std::time::{Duration, SystemTime};

use aims_core::SpiffeId;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::BundleSource;
use crate::error::VerifyError;
use crate::jose::sha256_b64url;
use crate::keys::PublicKey;

/// The signature algorithms accepted in X.509 chains.
pub static SUPPORTED_SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The purpose the leaf is verified for (its EKU, when it has one, must allow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidUsage {
    /// A TLS client (id-kp-clientAuth).
    Client,
    /// A TLS server (id-kp-serverAuth).
    Server,
}

/// The outcome of a successful X509-SVID verification.
#[derive(Debug, Clone)]
pub struct VerifiedX509Svid {
    /// The SPIFFE ID of the leaf.
    pub spiffe_id: SpiffeId,
    /// The leaf's `notBefore`.
    pub not_before: SystemTime,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
    /// base64url SHA-256 of the leaf DER: the RFC 8705 `x5t#S256` confirmation value.
    pub x5t_s256: String,
}

/// Reads the SPIFFE ID of a leaf X509-SVID and checks the leaf rules of X509-SVID §4.3 and §5.2:
/// exactly one URI SAN holding a SPIFFE ID with a path, `cA` false, keyUsage present with
/// digitalSignature and without keyCertSign or cRLSign.
pub fn leaf_spiffe_id(leaf: &X509Certificate<'_>) -> Result<SpiffeId, VerifyError> {
    let mut uris = Vec::new();
    let mut key_usage = None;
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(u) = name {
                        uris.push(*u);
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => key_usage = Some(*ku),
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err(VerifyError::Certificate(
                    "leaf certificate must not have CA flag set to true".into(),
                ));
            }
            _ => {}
        }
    }
    let id = match uris.as_slice() {
        [one] => SpiffeId::parse(one)?,
        [] => {
            return Err(VerifyError::Certificate(
                "certificate contains no URI SAN".into(),
            ));
        }
        _ => {
            return Err(VerifyError::Certificate(
                "leaf has more than one URI SAN".into(),
            ));
        }
    };
    if id.is_trust_domain_id() {
        return Err(VerifyError::Certificate(
            "leaf certificate SPIFFE ID must have a non-root path".into(),
        ));
    }
    let ku = key_usage.ok_or_else(|| {
        VerifyError::Certificate(
            "leaf certificate must have 'digitalSignature' set as key usage".into(),
        )
    })?;
    if !ku.digital_signature() {
        return Err(VerifyError::Certificate(
            "leaf certificate must have 'digitalSignature' set as key usage".into(),
        ));
    }
    if ku.key_cert_sign() {
        return Err(VerifyError::Certificate(
            "leaf certificate must not have 'keyCertSign' set as key usage".into(),
        ));
    }
    if ku.crl_sign() {
        return Err(VerifyError::Certificate(
            "leaf certificate must not have 'cRLSign' set as key usage".into(),
        ));
    }
    Ok(id)
}

/// The subject public key of a certificate.
pub fn leaf_public_key(der: &CertificateDer<'_>) -> Result<PublicKey, VerifyError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| VerifyError::Certificate("leaf does not parse".into()))?;
    PublicKey::from_spki_der(cert.public_key().raw)
        .map_err(|e| VerifyError::Certificate(format!("leaf key: {e}")))
}

/// Checks the structure of an X509-SVID chain without a bundle (X509-SVID §4, §5): the leaf
/// rules of [`leaf_spiffe_id`], and every signing certificate a CA with keyCertSign whose
/// SPIFFE ID, if it has one, names the leaf's trust domain itself. Returns the leaf's ID.
pub fn check_chain_structure(chain: &[CertificateDer<'_>]) -> Result<SpiffeId, VerifyError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| VerifyError::Certificate("empty certificate chain".into()))?;
    check_structure(leaf, intermediates)
}

fn check_structure(
    leaf_der: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<SpiffeId, VerifyError> {
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|_| VerifyError::Certificate("leaf does not parse".into()))?;
    let spiffe_id = leaf_spiffe_id(&leaf)?;
    for der in intermediates {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| VerifyError::Certificate("intermediate does not parse".into()))?;
        if !cert.is_ca() {
            return Err(VerifyError::Certificate(
                "signing certificate must have CA flag set to true".into(),
            ));
        }
        if !cert
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|ku| ku.value.key_cert_sign())
        {
            return Err(VerifyError::Certificate(
                "signing certificate must have 'keyCertSign' set as key usage".into(),
            ));
        }
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(u) = name
                    && let Ok(ca_id) = SpiffeId::parse(u)
                    && (!ca_id.is_trust_domain_id()
                        || !ca_id.is_member_of(&spiffe_id.trust_domain()))
                {
                    return Err(VerifyError::Certificate(format!(
                        "signing certificate carries SPIFFE ID {ca_id}"
                    )));
                }
            }
        }
    }
    Ok(spiffe_id)
}

/// The subject public key of a certificate: an X509-SVID's key, for the JWS it signs and
/// carries its chain with (RFC 7515 §4.1.6 `x5c`). Verify the chain first.
pub fn certificate_public_key(der: &CertificateDer<'_>) -> Result<PublicKey, VerifyError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| VerifyError::Certificate("leaf does not parse".into()))?;
    PublicKey::from_parsed_spki(cert.public_key())
        .map_err(|e| VerifyError::Certificate(e.to_string()))
}

/// Verifies an X509-SVID chain (leaf first, then intermediates) at time `now`, with the bundle
/// of the leaf's own trust domain from `bundles`.
pub fn verify_x509_svid(
    chain: &[CertificateDer<'_>],
    bundles: &dyn BundleSource,
    now: SystemTime,
    usage: SvidUsage,
) -> Result<VerifiedX509Svid, VerifyError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| VerifyError::Certificate("empty certificate chain".into()))?;
    verify_x509_svid_parts(leaf, intermediates, bundles, now, usage)
}

/// [`verify_x509_svid`] with the leaf and intermediates apart, as TLS hands them over.
pub fn verify_x509_svid_parts(
    leaf_der: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &dyn BundleSource,
    now: SystemTime,
    usage: SvidUsage,
) -> Result<VerifiedX509Svid, VerifyError> {
    let spiffe_id = check_structure(leaf_der, intermediates)?;
    let bundle = bundles
        .bundle_for(spiffe_id.trust_domain_name())
        .ok_or_else(|| VerifyError::UntrustedDomain(spiffe_id.trust_domain_name().to_owned()))?;
    if bundle.trust_anchors().is_empty() {
        return Err(VerifyError::UntrustedDomain(
            spiffe_id.trust_domain_name().to_owned(),
        ));
    }
    let ee = EndEntityCert::try_from(leaf_der)
        .map_err(|e| VerifyError::Certificate(format!("leaf: {e:?}")))?;
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    );
    let key_usage = match usage {
        SvidUsage::Client => KeyUsage::client_auth(),
        SvidUsage::Server => KeyUsage::server_auth(),
    };
    ee.verify_for_usage(
        SUPPORTED_SIG_ALGS,
        bundle.trust_anchors(),
        intermediates,
        time,
        key_usage,
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => VerifyError::Expired,
        webpki::Error::CertNotValidYet { .. } => VerifyError::NotYetValid,
        webpki::Error::UnknownIssuer => VerifyError::UnknownIssuer,
        other => VerifyError::Certificate(format!("{other:?}")),
    })?;
    let (not_before, not_after) = X509Certificate::from_der(leaf_der)
        .map(|(_, leaf)| {
            let at = |t: x509_parser::time::ASN1Time| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
            };
            (
                at(leaf.validity().not_before),
                at(leaf.validity().not_after),
            )
        })
        .map_err(|_| VerifyError::Certificate("leaf does not parse".into()))?;
    Ok(VerifiedX509Svid {
        spiffe_id,
        not_before,
        not_after,
        x5t_s256: sha256_b64url(leaf_der),
    })
}
