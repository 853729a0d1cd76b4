//! The X.509 certificate authority: trust anchors, the per-server signing (intermediate) CA, and
//! X509-SVID issuance (SPIFFE X509-SVID §4, §5; AIMS CR-1, CR-2).
//!
//! Two root modes, as SPIRE has them:
//! * **self-signed**: each CA slot gets a fresh self-signed root that goes into the trust bundle.
//!   The root key signs exactly one certificate, the slot's intermediate, and is then dropped: it
//!   never reaches a disk, and the intermediate key is the only CA key that lives.
//! * **upstream**: a CA certificate and key loaded from PEM (SPIRE's `UpstreamAuthority "disk"`)
//!   sign each slot's intermediate; the upstream roots are the bundle's X.509 authorities.
//!
//! Either way every X509-SVID chains leaf → intermediate (→ upstream intermediates) → root, so a
//! relying party sees the same shape whichever mode the trust domain runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

use crate::error::IssueError;
use crate::keys::{KeyError, KeyType, PrivateKey, PublicKey};

/// The largest CSR AIMS parses (8 KiB; an RSA-4096 CSR is about 1.7 KiB).
pub const MAX_CSR_LEN: usize = 8 * 1024;

/// How far back an X509-SVID's `notBefore` is set, to tolerate clock skew between hosts
/// (SPIRE uses the same 10 s backdate).
pub const BACKDATE: Duration = Duration::from_secs(10);

/// A CA key as rcgen sees it.
#[derive(Clone)]
pub struct CaKey(pub Arc<PrivateKey>);

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        rcgen::PublicKeyData::der_bytes(&*self.0)
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&*self.0)
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        rcgen::SigningKey::sign(&*self.0, msg)
    }
}

/// A subject public key: the key an issued certificate certifies.
pub struct SubjectKey {
    public: PublicKey,
    raw: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl SubjectKey {
    /// The subject key of a private key we hold (issuance "from a key we generate").
    pub fn of(key: &PrivateKey) -> Self {
        Self {
            public: key.public_key().clone(),
            raw: rcgen::PublicKeyData::der_bytes(key).to_vec(),
            alg: rcgen::PublicKeyData::algorithm(key),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

impl rcgen::PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// A parsed and signature-checked PKCS#10 certificate signing request (RFC 2986).
pub struct CertificateRequest {
    key: SubjectKey,
    uri_sans: Vec<String>,
    dns_sans: Vec<String>,
    other_sans: usize,
    requests_ca: bool,
}

impl CertificateRequest {
    /// Parses a DER CSR and checks its self-signature (proof of possession of the key).
    pub fn from_der(der: &[u8]) -> Result<Self, IssueError> {
        if der.len() > MAX_CSR_LEN {
            return Err(IssueError::InvalidCsr("larger than 8 KiB".into()));
        }
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|_| IssueError::InvalidCsr("not a DER PKCS#10 request".into()))?;
        if !rest.is_empty() {
            return Err(IssueError::InvalidCsr("trailing bytes".into()));
        }
        csr.verify_signature()
            .map_err(|_| IssueError::InvalidCsr("signature does not verify".into()))?;
        let spki = &csr.certification_request_info.subject_pki;
        let public = PublicKey::from_parsed_spki(spki).map_err(|e| match e {
            KeyError::Unsupported(what) => IssueError::Refused(format!("key type {what}")),
            other => IssueError::InvalidCsr(other.to_string()),
        })?;
        let alg = key_type_x509_alg(public.key_type());
        let mut req = Self {
            key: SubjectKey {
                public,
                raw: spki.subject_public_key.data.to_vec(),
                alg,
            },
            uri_sans: Vec::new(),
            dns_sans: Vec::new(),
            other_sans: 0,
            requests_ca: false,
        };
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                match ext {
                    ParsedExtension::SubjectAlternativeName(san) => {
                        for name in &san.general_names {
                            match name {
                                GeneralName::URI(u) => req.uri_sans.push((*u).to_owned()),
                                GeneralName::DNSName(d) => req.dns_sans.push((*d).to_owned()),
                                _ => req.other_sans += 1,
                            }
                        }
                    }
                    ParsedExtension::BasicConstraints(bc) if bc.ca => req.requests_ca = true,
                    _ => {}
                }
            }
        }
        Ok(req)
    }

    /// Parses a PEM CSR.
    pub fn from_pem(pem: &str) -> Result<Self, IssueError> {
        use rustls_pki_types::CertificateSigningRequestDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| IssueError::InvalidCsr("not a PEM CERTIFICATE REQUEST".into()))?;
        Self::from_der(der.as_ref())
    }

    /// Checks the request against what will be issued: no CA, at most one URI SAN and it must be
    /// exactly `id` (so never another trust domain), DNS SANs only from `allowed_dns`, and no
    /// other SAN types (X509-SVID §2: exactly one URI SAN).
    pub fn check_for(&self, id: &SpiffeId, allowed_dns: &[String]) -> Result<(), IssueError> {
        if self.requests_ca {
            return Err(IssueError::Refused("CSR asks for a CA certificate".into()));
        }
        match self.uri_sans.as_slice() {
            [] => {}
            [one] if one == id.as_str() => {}
            [one] => {
                let reason = match SpiffeId::parse(one) {
                    Ok(other) if other.trust_domain_name() != id.trust_domain_name() => format!(
                        "CSR names trust domain {}, not {}",
                        other.trust_domain_name(),
                        id.trust_domain_name()
                    ),
                    _ => format!("CSR URI SAN {one:?} is not {id}"),
                };
                return Err(IssueError::Refused(reason));
            }
            _ => return Err(IssueError::Refused("CSR has more than one URI SAN".into())),
        }
        if let Some(dns) = self.dns_sans.iter().find(|d| !allowed_dns.contains(d)) {
            return Err(IssueError::Refused(format!(
                "CSR DNS SAN {dns:?} is not allowed"
            )));
        }
        if self.other_sans > 0 {
            return Err(IssueError::Refused(
                "CSR has SAN types other than URI and DNS".into(),
            ));
        }
        Ok(())
    }

    /// Checks a request that must claim no identity at all (no SAN, no CA), as a node's
    /// attestation CSR: the issuer decides the identity from other evidence.
    pub fn check_names_nothing(&self) -> Result<(), IssueError> {
        if self.requests_ca {
            return Err(IssueError::Refused("CSR asks for a CA certificate".into()));
        }
        if !self.uri_sans.is_empty() || !self.dns_sans.is_empty() || self.other_sans > 0 {
            return Err(IssueError::Refused(
                "this CSR must not name an identity: the server assigns it".into(),
            ));
        }
        Ok(())
    }

    /// The requested key.
    pub fn subject_key(&self) -> &SubjectKey {
        &self.key
    }
}

/// A PKCS#10 request (DER) for an X509-SVID certifying `key` as `id`, with `dns_names`: what an
/// agent sends the server for a workload's fresh key or for its own (X509-SVID §2: the SPIFFE ID
/// is the one URI SAN; the subject is left to the CA). Without `id` the CA decides the identity
/// (node attestation).
pub fn svid_csr(
    key: &PrivateKey,
    id: Option<&SpiffeId>,
    dns_names: &[String],
) -> Result<Vec<u8>, IssueError> {
    let bad = |what: &str| IssueError::Refused(format!("cannot put {what} in a CSR"));
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(id) = id {
        params.subject_alt_names = vec![SanType::URI(
            id.as_str().try_into().map_err(|_| bad(id.as_str()))?,
        )];
    }
    for d in dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(d.as_str().try_into().map_err(|_| bad(d))?));
    }
    Ok(params
        .serialize_request(key)
        .map_err(|e| IssueError::Certificate(e.to_string()))?
        .der()
        .to_vec())
}

fn key_type_x509_alg(kt: KeyType) -> &'static rcgen::SignatureAlgorithm {
    match kt {
        KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    }
}

fn random_serial() -> Result<SerialNumber, IssueError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
    // RFC 5280 §4.1.2.2: a positive integer; clear the top bit and make sure it is not zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    td: &TrustDomain,
    common_name: String,
    not_before: SystemTime,
    not_after: SystemTime,
    path_len: u8,
) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "AIMS");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    // X509-SVID §4.1: a signing certificate carries the trust domain's own ID, with no path.
    params.subject_alt_names =
        vec![SanType::URI(td.id_string().try_into().map_err(|_| {
            IssueError::Certificate("trust domain ID".into())
        })?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// An upstream CA loaded from PEM files; it signs each slot's intermediate.
pub struct UpstreamAuthority {
    /// Certificates between the upstream signing certificate and a root, signing cert first,
    /// roots excluded.
    chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, CaKey>,
    not_after: SystemTime,
}

impl UpstreamAuthority {
    /// Loads an upstream CA: `cert_pem` holds its certificate (optionally followed by the chain
    /// to its root), `key_pem` its private key, `bundle_pem` the roots to publish (default: the
    /// last certificate of `cert_pem`, which must then be self-signed).
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        bundle_pem: Option<&str>,
    ) -> Result<Self, IssueError> {
        let certs = crate::bundle::certs_from_pem(cert_pem)
            .map_err(|e| IssueError::Refused(format!("upstream certificate: {e}")))?;
        let key = Arc::new(PrivateKey::from_pem(key_pem)?);
        let first = certs
            .first()
            .ok_or_else(|| IssueError::Refused("upstream certificate file is empty".into()))?;
        let (_, parsed) = X509Certificate::from_der(first)
            .map_err(|_| IssueError::Refused("upstream certificate does not parse".into()))?;
        let cert_key = PublicKey::from_parsed_spki(parsed.public_key())?;
        if &cert_key != key.public_key() {
            return Err(IssueError::Refused(
                "upstream key does not match the upstream certificate".into(),
            ));
        }
        if !parsed.is_ca()
            || !parsed
                .key_usage()
                .ok()
                .flatten()
                .is_some_and(|ku| ku.value.key_cert_sign())
        {
            return Err(IssueError::Refused(
                "upstream certificate is not a CA with keyCertSign".into(),
            ));
        }
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
            );
        let (chain, roots) = match bundle_pem {
            Some(pem) => (
                certs.clone(),
                crate::bundle::certs_from_pem(pem)
                    .map_err(|e| IssueError::Refused(format!("upstream bundle: {e}")))?,
            ),
            None => {
                let last = certs.last().cloned().unwrap_or_else(|| first.clone());
                let (_, last_parsed) = X509Certificate::from_der(&last)
                    .map_err(|_| IssueError::Refused("upstream chain does not parse".into()))?;
                if last_parsed.subject() != last_parsed.issuer() {
                    return Err(IssueError::Refused(
                        "upstream chain does not end in a self-signed root and no bundle was given"
                            .into(),
                    ));
                }
                (certs[..certs.len() - 1].to_vec(), vec![last])
            }
        };
        if roots.is_empty() {
            return Err(IssueError::Refused("upstream bundle has no roots".into()));
        }
        let issuer = Issuer::from_ca_cert_der(first, CaKey(key))?;
        Ok(Self {
            chain,
            roots,
            issuer,
            not_after,
        })
    }

    /// The upstream roots, published as the bundle's X.509 authorities.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }
}

/// One signing CA: the intermediate that issues X509-SVIDs, and the roots it chains to.
pub struct X509Authority {
    intermediate: CertificateDer<'static>,
    /// Upstream certificates between the intermediate and a root (empty when self-signed).
    upper_chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, CaKey>,
    not_after: SystemTime,
}

impl X509Authority {
    /// A new slot under a fresh self-signed root. `key` is the intermediate's key; the root key
    /// is generated here, used once, and dropped.
    pub fn create_self_signed(
        td: &TrustDomain,
        label: &str,
        key: Arc<PrivateKey>,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Self, IssueError> {
        let root_key = CaKey(Arc::new(PrivateKey::generate(key.key_type())?));
        let root_params = ca_params(
            td,
            format!("AIMS root CA {label}"),
            not_before,
            not_after,
            1,
        )?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);
        let params = ca_params(
            td,
            format!("AIMS intermediate CA {label}"),
            not_before,
            not_after,
            0,
        )?;
        let intermediate = params.signed_by(&CaKey(key.clone()), &root_issuer)?;
        Self::assemble(
            intermediate.der().clone(),
            Vec::new(),
            vec![root_cert.der().clone()],
            key,
        )
    }

    /// A new slot whose intermediate the upstream CA signs. The intermediate never outlives the
    /// upstream certificate.
    pub fn create_under_upstream(
        td: &TrustDomain,
        label: &str,
        key: Arc<PrivateKey>,
        upstream: &UpstreamAuthority,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Self, IssueError> {
        let params = ca_params(
            td,
            format!("AIMS intermediate CA {label}"),
            not_before,
            not_after.min(upstream.not_after),
            0,
        )?;
        let intermediate = params.signed_by(&CaKey(key.clone()), &upstream.issuer)?;
        Self::assemble(
            intermediate.der().clone(),
            upstream.chain.clone(),
            upstream.roots.clone(),
            key,
        )
    }

    /// Rebuilds a slot from its stored certificates and its key.
    pub fn restore(
        intermediate: CertificateDer<'static>,
        upper_chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKey>,
    ) -> Result<Self, IssueError> {
        let (_, parsed) = X509Certificate::from_der(&intermediate)
            .map_err(|_| IssueError::Certificate("stored intermediate does not parse".into()))?;
        if &PublicKey::from_parsed_spki(parsed.public_key())? != key.public_key() {
            return Err(IssueError::Certificate(
                "stored intermediate does not match its key".into(),
            ));
        }
        Self::assemble(intermediate, upper_chain, roots, key)
    }

    fn assemble(
        intermediate: CertificateDer<'static>,
        upper_chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKey>,
    ) -> Result<Self, IssueError> {
        let (_, parsed) = X509Certificate::from_der(&intermediate)
            .map_err(|_| IssueError::Certificate("intermediate does not parse".into()))?;
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0),
            );
        let issuer = Issuer::from_ca_cert_der(&intermediate, CaKey(key))?;
        Ok(Self {
            intermediate,
            upper_chain,
            roots,
            issuer,
            not_after,
        })
    }

    /// The intermediate certificate.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        &self.intermediate
    }

    /// Upstream certificates above the intermediate.
    pub fn upper_chain(&self) -> &[CertificateDer<'static>] {
        &self.upper_chain
    }

    /// The roots this authority chains to.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// When the intermediate expires; no SVID outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues an X509-SVID (X509-SVID §4.3, §5): exactly one URI SAN holding `id` (plus any DNS
    /// names), `cA=false`, keyUsage digitalSignature (critical; keyEncipherment too for RSA),
    /// EKU serverAuth and clientAuth, a random 128-bit serial, `notBefore` backdated 10 s and
    /// `notAfter` capped by the CA's own expiry.
    pub fn issue(&self, req: &X509SvidRequest<'_>) -> Result<X509Svid, IssueError> {
        if req.spiffe_id.is_trust_domain_id() {
            return Err(IssueError::Refused(
                "a leaf X509-SVID needs a SPIFFE ID with a path".into(),
            ));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "AIMS");
        params.distinguished_name = dn;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        let not_after = (req.now + req.ttl).min(self.not_after);
        params.not_before = OffsetDateTime::from(req.now - BACKDATE);
        params.not_after = OffsetDateTime::from(not_after);
        let mut sans = Vec::with_capacity(1 + req.dns_names.len());
        sans.push(SanType::URI(req.spiffe_id.as_str().try_into().map_err(
            |_| IssueError::Certificate("SPIFFE ID is not IA5".into()),
        )?));
        for dns in req.dns_names {
            sans.push(SanType::DnsName(dns.as_str().try_into().map_err(|_| {
                IssueError::Refused(format!("DNS name {dns:?} is not IA5"))
            })?));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if req.subject_key.public.key_type() == KeyType::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(req.subject_key, &self.issuer)?;
        let mut chain = Vec::with_capacity(2 + self.upper_chain.len());
        chain.push(cert.der().clone());
        chain.push(self.intermediate.clone());
        chain.extend(self.upper_chain.iter().cloned());
        Ok(X509Svid {
            spiffe_id: req.spiffe_id.clone(),
            chain,
            not_after,
            serial: serial.to_bytes(),
        })
    }
}

/// What to put in an X509-SVID.
pub struct X509SvidRequest<'a> {
    /// The SPIFFE ID (the single URI SAN).
    pub spiffe_id: &'a SpiffeId,
    /// The key to certify (from a CSR or one we generated).
    pub subject_key: &'a SubjectKey,
    /// DNS SANs, from the registration entry.
    pub dns_names: &'a [String],
    /// Requested lifetime; capped by the CA's expiry.
    pub ttl: Duration,
    /// The issuance time.
    pub now: SystemTime,
}

/// An issued X509-SVID: the leaf and the chain up to (not including) a bundle root.
#[derive(Debug, Clone)]
pub struct X509Svid {
    /// The SPIFFE ID it certifies.
    pub spiffe_id: SpiffeId,
    /// Leaf first, then the intermediate(s).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
    /// The leaf's serial number.
    pub serial: Vec<u8>,
}

impl X509Svid {
    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| crate::bundle::cert_to_pem(c))
            .collect()
    }

    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}
