//! Mutual TLS with X509-SVIDs (AIMS AU-2; draft-ietf-wimse-mutual-tls-02; SPIFFE X509-SVID §5).
//!
//! The peer's certificate chain is validated against the bundle of **the peer's own trust
//! domain** (never a pooled set of roots), then the peer is authorized by its SPIFFE ID: an exact
//! ID, any of a list, any member of a trust domain, or a predicate. DNS names play no part: a
//! SPIFFE ID is the identity. Bundles are read on every handshake, so a bundle update (CA
//! rotation, federation refresh) applies to the next handshake. The local SVID lives in an
//! [`SvidStore`]: replacing it changes what the next handshake presents, while connections
//! already established keep working on the keys they negotiated.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aims_core::{SharedClock, SpiffeId, TrustDomain};
use aims_credentials::{BundleSource, PrivateKey, SvidUsage, VerifyError, verify_x509_svid_parts};
use base64::Engine as _;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The crypto provider AIMS uses everywhere: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Which SPIFFE IDs a peer may present.
#[derive(Clone)]
pub enum Authorizer {
    /// Any SPIFFE ID that chains to a trusted bundle (authorization happens later, at the
    /// application layer, with the ID handed up).
    Any,
    /// Exactly this ID.
    Exact(SpiffeId),
    /// Any of these IDs.
    OneOf(Vec<SpiffeId>),
    /// Any ID of this trust domain.
    MemberOf(TrustDomain),
    /// Whatever the predicate accepts.
    Predicate(Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>),
}

impl Authorizer {
    /// Whether `id` is acceptable.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        match self {
            Authorizer::Any => true,
            Authorizer::Exact(want) => want == id,
            Authorizer::OneOf(list) => list.contains(id),
            Authorizer::MemberOf(td) => id.is_member_of(td),
            Authorizer::Predicate(f) => f(id),
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorizer::Any => f.write_str("Any"),
            Authorizer::Exact(id) => write!(f, "Exact({id})"),
            Authorizer::OneOf(ids) => write!(f, "OneOf({ids:?})"),
            Authorizer::MemberOf(td) => write!(f, "MemberOf({td})"),
            Authorizer::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

/// A verification failure carried through rustls, so logs show the precise reason.
#[derive(Debug)]
struct SvidRejected(VerifyError);

impl fmt::Display for SvidRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X509-SVID rejected: {}", self.0)
    }
}

impl std::error::Error for SvidRejected {}

fn to_rustls(e: VerifyError) -> rustls::Error {
    let cert_err = match e {
        VerifyError::Expired => CertificateError::Expired,
        VerifyError::NotYetValid => CertificateError::NotValidYet,
        VerifyError::UntrustedDomain(_) | VerifyError::UnknownIssuer => {
            CertificateError::UnknownIssuer
        }
        other => CertificateError::Other(OtherError(Arc::new(SvidRejected(other)))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

/// The checks both sides share: the SVID, then the authorizer.
#[derive(Clone)]
struct SvidCheck {
    bundles: Arc<dyn BundleSource>,
    authorizer: Authorizer,
    algs: WebPkiSupportedAlgorithms,
    clock: Option<SharedClock>,
}

impl SvidCheck {
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: SvidUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let now = match &self.clock {
            Some(c) => c.now(),
            None => SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs()),
        };
        let verified = verify_x509_svid_parts(leaf, intermediates, &*self.bundles, now, usage)
            .map_err(to_rustls)?;
        if self.authorizer.allows(&verified.spiffe_id) {
            Ok(verified.spiffe_id)
        } else {
            tracing::debug!(peer = %verified.spiffe_id, authorizer = ?self.authorizer, "peer SPIFFE ID not authorized");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl fmt::Debug for SvidCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidCheck")
            .field("authorizer", &self.authorizer)
            .finish()
    }
}

/// Verifies clients' X509-SVIDs on a server.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    check: SvidCheck,
    mandatory: bool,
}

/// Whether a server requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present an authorized X509-SVID.
    Required,
    /// A client may connect without a certificate (the application then decides, per request,
    /// what an unauthenticated caller may do); a certificate it does present must verify.
    Optional,
}

impl SpiffeClientVerifier {
    /// A verifier reading `bundles` at each handshake and accepting peers `authorizer` allows.
    pub fn new(bundles: Arc<dyn BundleSource>, authorizer: Authorizer) -> Self {
        Self {
            check: SvidCheck {
                bundles,
                authorizer,
                algs: provider().signature_verification_algorithms,
                clock: None,
            },
            mandatory: true,
        }
    }

    /// Lets clients connect without a certificate.
    pub fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }

    /// Uses `clock` instead of the handshake time (for tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.check.clock = Some(clock);
        self
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check
            .verify(end_entity, intermediates, now, SvidUsage::Client)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.check.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.check.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.algs.supported_schemes()
    }
}

/// Verifies a server's X509-SVID on a client. The server name the client dialled is not
/// checked: the SPIFFE ID is the identity (draft-ietf-wimse-mutual-tls-02 §3).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    check: SvidCheck,
}

impl SpiffeServerVerifier {
    /// A verifier reading `bundles` at each handshake and accepting servers `authorizer` allows.
    pub fn new(bundles: Arc<dyn BundleSource>, authorizer: Authorizer) -> Self {
        Self {
            check: SvidCheck {
                bundles,
                authorizer,
                algs: provider().signature_verification_algorithms,
                clock: None,
            },
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .verify(end_entity, intermediates, now, SvidUsage::Server)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.check.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.check.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.algs.supported_schemes()
    }
}

/// The local X509-SVID, replaceable at any time (rotation). Each handshake presents whatever is
/// current when it starts.
#[derive(Default)]
pub struct SvidStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    spiffe_id: RwLock<Option<SpiffeId>>,
    signing: RwLock<Option<Arc<SigningSvid>>>,
}

/// The current X509-SVID as a JWS signer: its key and the chain a verifier checks it by
/// (RFC 7515 §4.1.6 `x5c`, standard base64 DER, leaf first).
pub struct SigningSvid {
    /// The SVID's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The SVID's private key.
    pub key: PrivateKey,
    /// The chain, leaf first, as `x5c` members.
    pub x5c: Vec<String>,
}

impl fmt::Debug for SvidStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidStore")
            .field("spiffe_id", &self.spiffe_id())
            .finish()
    }
}

/// Why an SVID could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SvidStoreError {
    /// The chain is empty or its leaf is not an X509-SVID.
    #[error("not an X509-SVID: {0}")]
    NotAnSvid(VerifyError),
    /// rustls cannot use the key.
    #[error("unusable key: {0}")]
    Key(String),
}

impl SvidStore {
    /// An empty store (a server with it presents no certificate until one is set).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `chain` and `key`.
    pub fn with(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKey,
    ) -> Result<Self, SvidStoreError> {
        let store = Self::new();
        store.set(chain, key)?;
        Ok(store)
    }

    /// Replaces the SVID. Live connections are not affected.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKey,
    ) -> Result<(), SvidStoreError> {
        let id = aims_credentials::x509_svid::check_chain_structure(&chain)
            .map_err(SvidStoreError::NotAnSvid)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
        let signing = provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| SvidStoreError::Key(e.to_string()))?;
        let jws_signer = SigningSvid {
            spiffe_id: id.clone(),
            key: PrivateKey::from_pkcs8_der(key.pkcs8_der())
                .map_err(|e| SvidStoreError::Key(e.to_string()))?,
            x5c: chain
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c.as_ref()))
                .collect(),
        };
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        if let Ok(mut c) = self.current.write() {
            *c = Some(certified);
        }
        if let Ok(mut s) = self.spiffe_id.write() {
            *s = Some(id);
        }
        if let Ok(mut s) = self.signing.write() {
            *s = Some(Arc::new(jws_signer));
        }
        Ok(())
    }

    /// The current SVID as a JWS signer.
    pub fn signing_svid(&self) -> Option<Arc<SigningSvid>> {
        self.signing.read().ok()?.clone()
    }

    /// The SPIFFE ID of the current SVID.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.spiffe_id.read().ok()?.clone()
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

impl ResolvesServerCert for SvidStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SvidStore {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}

/// A server configuration that presents `svid` and requires clients `authorizer` allows.
///
/// Session resumption is off: a resumed session skips certificate verification, so a peer
/// whose SVID has since expired, been rotated out, or left the bundle (revocation, AIMS MO-4)
/// could keep reconnecting on an old ticket. Every connection verifies the current SVID
/// against the current bundle and authorizer.
pub fn server_config(
    svid: Arc<SvidStore>,
    bundles: Arc<dyn BundleSource>,
    authorizer: Authorizer,
) -> Result<ServerConfig, rustls::Error> {
    server_config_with(svid, bundles, authorizer, ClientAuth::Required)
}

/// [`server_config`] with client authentication required or optional.
pub fn server_config_with(
    svid: Arc<SvidStore>,
    bundles: Arc<dyn BundleSource>,
    authorizer: Authorizer,
    client_auth: ClientAuth,
) -> Result<ServerConfig, rustls::Error> {
    let mut verifier = SpiffeClientVerifier::new(bundles, authorizer);
    if client_auth == ClientAuth::Optional {
        verifier = verifier.optional();
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(svid);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A client configuration that presents `svid` and accepts servers `authorizer` allows.
/// Resumption is off, for the reason given at [`server_config`].
pub fn client_config(
    svid: Arc<SvidStore>,
    bundles: Arc<dyn BundleSource>,
    authorizer: Authorizer,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(bundles, authorizer)))
        .with_client_cert_resolver(svid);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The SPIFFE ID of a peer whose chain a SPIFFE verifier already accepted.
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    let (_, leaf) = X509Certificate::from_der(certs.first()?).ok()?;
    aims_credentials::x509_svid::leaf_spiffe_id(&leaf).ok()
}
