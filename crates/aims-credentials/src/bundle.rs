//! SPIFFE trust bundles (SPIFFE Trust Domain and Bundle §4): per trust domain, the X.509
//! authorities that anchor X509-SVID chains and the JWT keys that verify JWT-SVIDs and WIT-SVIDs.
//!
//! A bundle is always kept with its trust domain and never merged with another's (SPIFFE bundle
//! §2; specs.md §7.1): a credential is verified only with the bundle of its own trust domain.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use aims_core::TrustDomain;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::VerifyError;
use crate::keys::PublicKey;

/// JWK `use` of an X.509 authority (SPIFFE bundle §4.2.1).
pub const USE_X509_SVID: &str = "x509-svid";
/// JWK `use` of a JWT-SVID signing key (SPIFFE bundle §4.2.2).
pub const USE_JWT_SVID: &str = "jwt-svid";
/// JWK `use` of a WIT-SVID signing key (WIT-SVID §5).
pub const USE_WIT_SVID: &str = "wit-svid";

/// The largest bundle document AIMS parses (1 MiB).
pub const MAX_BUNDLE_LEN: usize = 1024 * 1024;

/// A trust bundle: everything needed to verify the SVIDs of one trust domain.
#[derive(Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    x509_authorities: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    jwt_authorities: BTreeMap<String, PublicKey>,
    wit_authorities: BTreeMap<String, PublicKey>,
    sequence: u64,
    refresh_hint: Option<u64>,
}

/// The JWK Set form of a bundle (SPIFFE bundle §4.1).
#[derive(Debug, Serialize, Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<u64>,
}

impl TrustBundle {
    /// An empty bundle: every SVID of the trust domain is refused until authorities are added.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: Vec::new(),
            anchors: Vec::new(),
            jwt_authorities: BTreeMap::new(),
            wit_authorities: BTreeMap::new(),
            sequence: 0,
            refresh_hint: None,
        }
    }

    /// The trust domain this bundle belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Adds an X.509 authority (a CA certificate, DER). Duplicates are ignored.
    pub fn add_x509_authority(&mut self, der: CertificateDer<'static>) -> Result<(), VerifyError> {
        if self.x509_authorities.contains(&der) {
            return Ok(());
        }
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| VerifyError::Certificate(format!("trust anchor: {e:?}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.x509_authorities.push(der);
        Ok(())
    }

    /// Adds a JWT-SVID key under `kid`. A `kid` must be unique across the whole bundle.
    pub fn add_jwt_authority(&mut self, kid: &str, key: PublicKey) -> Result<(), VerifyError> {
        self.check_new_kid(kid)?;
        self.jwt_authorities.insert(kid.to_owned(), key);
        Ok(())
    }

    /// Adds a WIT-SVID key under `kid`. A `kid` must be unique across the whole bundle
    /// (WIT-SVID §5).
    pub fn add_wit_authority(&mut self, kid: &str, key: PublicKey) -> Result<(), VerifyError> {
        self.check_new_kid(kid)?;
        self.wit_authorities.insert(kid.to_owned(), key);
        Ok(())
    }

    fn check_new_kid(&self, kid: &str) -> Result<(), VerifyError> {
        if kid.is_empty() {
            return Err(VerifyError::MissingKeyId);
        }
        if self.jwt_authorities.contains_key(kid) || self.wit_authorities.contains_key(kid) {
            return Err(VerifyError::Malformed(format!(
                "duplicate kid {kid:?} in bundle"
            )));
        }
        Ok(())
    }

    /// Sets `spiffe_sequence`.
    pub fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }

    /// Sets `spiffe_refresh_hint`, in seconds.
    pub fn set_refresh_hint(&mut self, seconds: Option<u64>) {
        self.refresh_hint = seconds;
    }

    /// The bundle's `spiffe_sequence`.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The bundle's `spiffe_refresh_hint`, in seconds.
    pub fn refresh_hint(&self) -> Option<u64> {
        self.refresh_hint
    }

    /// The X.509 authorities (DER).
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        &self.x509_authorities
    }

    /// The X.509 authorities as webpki trust anchors.
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The JWT-SVID key with this `kid`.
    pub fn jwt_authority(&self, kid: &str) -> Option<&PublicKey> {
        self.jwt_authorities.get(kid)
    }

    /// The WIT-SVID key with this `kid`.
    pub fn wit_authority(&self, kid: &str) -> Option<&PublicKey> {
        self.wit_authorities.get(kid)
    }

    /// The JWT-SVID keys.
    pub fn jwt_authorities(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.jwt_authorities.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The WIT-SVID keys.
    pub fn wit_authorities(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.wit_authorities.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the bundle holds no usable key at all.
    pub fn is_empty(&self) -> bool {
        self.x509_authorities.is_empty()
            && self.jwt_authorities.is_empty()
            && self.wit_authorities.is_empty()
    }

    /// Whether two bundles hold the same keys (sequence and hint aside).
    pub fn same_keys(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain
            && self.x509_authorities == other.x509_authorities
            && self.jwt_authorities == other.jwt_authorities
            && self.wit_authorities == other.wit_authorities
    }

    /// The SPIFFE bundle as a JWK Set document (SPIFFE bundle §4), every key kind included.
    pub fn to_jwks(&self) -> Result<String, VerifyError> {
        self.jwks_of(true, true, true)
    }

    /// A JWK Set with only the JWT-SVID keys, as the Workload API's `FetchJWTBundles` sends it.
    pub fn to_jwt_jwks(&self) -> Result<String, VerifyError> {
        self.jwks_of(false, true, false)
    }

    /// A JWK Set with only the WIT-SVID keys, as `FetchWITBundles` sends it.
    pub fn to_wit_jwks(&self) -> Result<String, VerifyError> {
        self.jwks_of(false, false, true)
    }

    fn jwks_of(&self, x509: bool, jwt: bool, wit: bool) -> Result<String, VerifyError> {
        let mut keys = Vec::new();
        let to_value =
            |jwk: Jwk| serde_json::to_value(jwk).map_err(|e| VerifyError::Malformed(e.to_string()));
        if x509 {
            for der in &self.x509_authorities {
                let (_, cert) = X509Certificate::from_der(der)
                    .map_err(|_| VerifyError::Certificate("unparseable authority".into()))?;
                let key = PublicKey::from_parsed_spki(cert.public_key())
                    .map_err(|e| VerifyError::Certificate(e.to_string()))?;
                let mut jwk = key.to_jwk(Some(USE_X509_SVID), None, None);
                jwk.common.x509_chain = Some(vec![STANDARD.encode(der.as_ref())]);
                keys.push(to_value(jwk)?);
            }
        }
        if jwt {
            for (kid, key) in &self.jwt_authorities {
                keys.push(to_value(key.to_jwk(Some(USE_JWT_SVID), Some(kid), None))?);
            }
        }
        if wit {
            for (kid, key) in &self.wit_authorities {
                keys.push(to_value(key.to_jwk(Some(USE_WIT_SVID), Some(kid), None))?);
            }
        }
        let doc = JwksDocument {
            keys,
            spiffe_sequence: Some(self.sequence),
            spiffe_refresh_hint: self.refresh_hint,
        };
        serde_json::to_string(&doc).map_err(|e| VerifyError::Malformed(e.to_string()))
    }

    /// Parses a SPIFFE bundle JWK Set for `trust_domain`. Keys with a missing or unknown `use`,
    /// or an unknown `kty`, are ignored as the standard says; a malformed key of a known kind,
    /// or a duplicate `kid`, fails the whole document.
    pub fn from_jwks(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, VerifyError> {
        if json.len() > MAX_BUNDLE_LEN {
            return Err(VerifyError::TooLarge);
        }
        let doc: JwksDocument = serde_json::from_slice(json)
            .map_err(|e| VerifyError::Malformed(format!("bundle: {e}")))?;
        let mut bundle = Self::new(trust_domain);
        bundle.sequence = doc.spiffe_sequence.unwrap_or(0);
        bundle.refresh_hint = doc.spiffe_refresh_hint;
        for key in doc.keys {
            let key_use = key
                .get("use")
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_owned();
            let kty = key.get("kty").and_then(|k| k.as_str()).unwrap_or_default();
            if !matches!(kty, "EC" | "RSA" | "OKP") {
                continue;
            }
            match key_use.as_str() {
                USE_X509_SVID => {
                    // SPIFFE bundle §4.2.1: exactly one certificate per x509-svid entry.
                    let first = match key.get("x5c").and_then(|c| c.as_array()) {
                        Some(certs) if certs.len() == 1 => certs[0].as_str(),
                        Some(certs) => {
                            return Err(VerifyError::Malformed(format!(
                                "expected a single certificate in an x509-svid entry; got {}",
                                certs.len()
                            )));
                        }
                        None => None,
                    }
                    .ok_or_else(|| VerifyError::Malformed("x509-svid key without x5c".into()))?;
                    let der = STANDARD
                        .decode(first)
                        .map_err(|_| VerifyError::Malformed("x5c is not base64".into()))?;
                    bundle.add_x509_authority(CertificateDer::from(der))?;
                }
                USE_JWT_SVID | USE_WIT_SVID => {
                    let jwk: Jwk = serde_json::from_value(key)
                        .map_err(|e| VerifyError::Malformed(format!("bundle key: {e}")))?;
                    let kid = jwk.common.key_id.clone().ok_or(VerifyError::MissingKeyId)?;
                    let public = PublicKey::from_jwk(&jwk)
                        .map_err(|e| VerifyError::Malformed(format!("bundle key {kid:?}: {e}")))?;
                    if key_use == USE_JWT_SVID {
                        bundle.add_jwt_authority(&kid, public)?;
                    } else {
                        bundle.add_wit_authority(&kid, public)?;
                    }
                }
                _ => continue,
            }
        }
        Ok(bundle)
    }

    /// Parses a bundle document in either form operators hand around: a SPIFFE bundle JWK Set
    /// (`{…}`) or PEM `CERTIFICATE` blocks (X.509 authorities only).
    pub fn from_document(trust_domain: TrustDomain, doc: &[u8]) -> Result<Self, VerifyError> {
        if doc.len() > MAX_BUNDLE_LEN {
            return Err(VerifyError::TooLarge);
        }
        if doc.trim_ascii_start().starts_with(b"{") {
            return Self::from_jwks(trust_domain, doc);
        }
        let text = std::str::from_utf8(doc)
            .map_err(|_| VerifyError::Malformed("bundle is neither a JWK Set nor PEM".into()))?;
        let certs = certs_from_pem(text)?;
        if certs.is_empty() {
            return Err(VerifyError::Malformed(
                "bundle is neither a JWK Set nor PEM certificates".into(),
            ));
        }
        let mut bundle = Self::new(trust_domain);
        for c in certs {
            bundle.add_x509_authority(c)?;
        }
        Ok(bundle)
    }

    /// The X.509 authorities as concatenated PEM `CERTIFICATE` blocks.
    pub fn to_pem(&self) -> String {
        self.x509_authorities
            .iter()
            .map(|c| cert_to_pem(c))
            .collect()
    }

    /// The X.509 authorities as concatenated DER (the Workload API's bundle encoding).
    pub fn x509_authorities_concat_der(&self) -> Vec<u8> {
        self.x509_authorities
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect()
    }
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain.name())
            .field("x509_authorities", &self.x509_authorities.len())
            .field(
                "jwt_authorities",
                &self.jwt_authorities.keys().collect::<Vec<_>>(),
            )
            .field(
                "wit_authorities",
                &self.wit_authorities.keys().collect::<Vec<_>>(),
            )
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// One DER certificate as a PEM block.
pub fn cert_to_pem(der: &[u8]) -> String {
    to_pem("CERTIFICATE", der)
}

/// A DER object as one PEM block labelled `label` (RFC 7468).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Splits concatenated DER certificates, the Workload API's encoding of chains and bundles
/// (SPIFFE Workload API §5.2: "ASN.1 DER encoded certificates, concatenated with no padding").
pub fn certs_from_concat_der(der: &[u8]) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    let mut out = Vec::new();
    let mut rest = der;
    while !rest.is_empty() {
        let (next, _) = X509Certificate::from_der(rest)
            .map_err(|_| VerifyError::Malformed("not concatenated DER certificates".into()))?;
        let len = rest.len() - next.len();
        out.push(CertificateDer::from(rest[..len].to_vec()));
        rest = next;
    }
    Ok(out)
}

/// Parses every `CERTIFICATE` block of a PEM document.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::Malformed(format!("PEM: {e}")))
}

/// Where verifiers find the bundle of a trust domain.
pub trait BundleSource: Send + Sync {
    /// The bundle of the trust domain named `trust_domain`, if trusted.
    fn bundle_for(&self, trust_domain: &str) -> Option<Arc<TrustBundle>>;

    /// A number that changes whenever any bundle changes, so caches of verification results
    /// know when to forget them. Sources that never change return 0.
    fn generation(&self) -> u64 {
        0
    }
}

/// The bundles of our own and every federated trust domain, swappable at run time.
#[derive(Default)]
pub struct BundleSet {
    bundles: RwLock<HashMap<String, Arc<TrustBundle>>>,
    generation: std::sync::atomic::AtomicU64,
}

impl BundleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding these bundles.
    pub fn with(bundles: impl IntoIterator<Item = TrustBundle>) -> Self {
        let set = Self::new();
        for b in bundles {
            set.put(b);
        }
        set
    }

    /// Inserts or replaces the bundle of its trust domain.
    pub fn put(&self, bundle: TrustBundle) {
        if let Ok(mut map) = self.bundles.write() {
            map.insert(bundle.trust_domain().name().to_owned(), Arc::new(bundle));
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Removes the bundle of `trust_domain`.
    pub fn remove(&self, trust_domain: &str) {
        if let Ok(mut map) = self.bundles.write() {
            map.remove(trust_domain);
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Every bundle.
    pub fn all(&self) -> Vec<Arc<TrustBundle>> {
        self.bundles
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl BundleSource for BundleSet {
    fn bundle_for(&self, trust_domain: &str) -> Option<Arc<TrustBundle>> {
        self.bundles.read().ok()?.get(trust_domain).cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<T: BundleSource + ?Sized> BundleSource for Arc<T> {
    fn bundle_for(&self, trust_domain: &str) -> Option<Arc<TrustBundle>> {
        (**self).bundle_for(trust_domain)
    }

    fn generation(&self) -> u64 {
        (**self).generation()
    }
}
