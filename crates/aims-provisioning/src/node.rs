//! Node attestation: how an agent proves to the server which host it runs on before it gets
//! its own X509-SVID (AIMS PR-4, as SPIRE's node attestors).
//!
//! * **Join token**: a 256-bit random token an operator generates (`aims token generate`); the
//!   server keeps only its SHA-256, and a token works once, before it expires.
//! * **x509pop**: the agent holds a node certificate issued by a CA the server trusts and proves
//!   possession of its key by signing a short-lived statement bound to the server's trust domain,
//!   to the CSR of the key it wants certified, and to a one-time `jti`.

use std::time::SystemTime;

use aims_core::{SpiffeId, TrustDomain, unix_seconds};
use aims_credentials::jose::{CompactJws, JwsHeader, sha256_b64url, sign};
use aims_credentials::{KeyError, PrivateKey, PublicKey};
use aims_store::Selector;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The explicit type of an x509pop proof.
pub const X509POP_TYP: &str = "aims-x509pop+jwt";
/// The longest lifetime of an x509pop proof, seconds.
pub const X509POP_MAX_LIFETIME: i64 = 300;

/// Why node attestation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeAttestError {
    /// The token is unknown, used or expired (one message for all three: nothing leaks).
    #[error("invalid join token")]
    InvalidJoinToken,
    /// The node certificate does not chain to a trusted node CA.
    #[error("node certificate rejected: {0}")]
    Certificate(String),
    /// The proof of possession is invalid.
    #[error("x509pop proof rejected: {0}")]
    Proof(String),
}

/// A fresh join token: 256 random bits, lowercase hex (64 characters). Hex, not base64url: a
/// token must survive a shell and a command line, where one starting with `-` reads as a flag.
pub fn new_join_token() -> Result<String, KeyError> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| KeyError::Crypto)?;
    Ok(hex::encode(b))
}

/// What the store keeps of a join token: its SHA-256 (base64url), never the token.
pub fn join_token_digest(token: &str) -> String {
    sha256_b64url(token.as_bytes())
}

/// The SPIFFE ID an agent attested with `token` gets when the operator named none:
/// `spiffe://<td>/aims/agent/join_token/<first 16 characters of the token digest>`.
pub fn join_token_agent_id(
    td: &TrustDomain,
    token: &str,
) -> Result<SpiffeId, aims_core::SpiffeIdError> {
    let digest = join_token_digest(token);
    let short: String = digest
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    td.id_with_path(&format!("/aims/agent/join_token/{short}"))
}

#[derive(Debug, Serialize, Deserialize)]
struct PopClaims {
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// SHA-256 (base64url) of the CSR the agent sends with the proof.
    csr: String,
}

/// Creates an x509pop proof: a JWS signed with the node key, bound to the server's trust
/// domain and to `csr_der`, valid 60 seconds.
pub fn create_x509pop_proof(
    node_key: &PrivateKey,
    trust_domain: &TrustDomain,
    csr_der: &[u8],
    now: SystemTime,
) -> Result<String, KeyError> {
    let iat = unix_seconds(now);
    let claims = PopClaims {
        aud: trust_domain.id_string(),
        iat,
        exp: iat + 60,
        jti: aims_credentials::jwt_authority::new_kid()?,
        csr: sha256_b64url(csr_der),
    };
    sign(
        node_key,
        &JwsHeader::new(node_key, Some(X509POP_TYP), None),
        &claims,
    )
}

/// What a successful node attestation established.
#[derive(Debug, Clone)]
pub struct AttestedNodeIdentity {
    /// The agent's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// `join_token` or `x509pop`.
    pub attestation_type: &'static str,
    /// Selectors describing the node.
    pub selectors: Vec<Selector>,
}

/// Verifies x509pop attestations against the node CAs the server trusts.
pub struct X509PopVerifier {
    trust_domain: TrustDomain,
    roots: Vec<TrustAnchor<'static>>,
}

impl std::fmt::Debug for X509PopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509PopVerifier")
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl X509PopVerifier {
    /// A verifier trusting the CA certificates in `ca_pem`.
    pub fn from_pem(trust_domain: TrustDomain, ca_pem: &str) -> Result<Self, NodeAttestError> {
        let certs = aims_credentials::bundle::certs_from_pem(ca_pem)
            .map_err(|e| NodeAttestError::Certificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(NodeAttestError::Certificate(
                "no node CA certificate".into(),
            ));
        }
        let roots = certs
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| NodeAttestError::Certificate(format!("{e:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trust_domain,
            roots,
        })
    }

    /// Verifies the chain and the proof for a CSR. `admit_jti` records the proof's `jti` and
    /// returns false if it was seen before (replay).
    pub fn verify(
        &self,
        chain: &[Vec<u8>],
        proof: &str,
        csr_der: &[u8],
        now: SystemTime,
        admit_jti: impl FnOnce(&str, i64) -> bool,
    ) -> Result<AttestedNodeIdentity, NodeAttestError> {
        let chain: Vec<CertificateDer<'_>> = chain
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| NodeAttestError::Certificate("empty chain".into()))?;
        let ee = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| NodeAttestError::Certificate(format!("{e:?}")))?;
        let time = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        ee.verify_for_usage(
            aims_credentials::x509_svid::SUPPORTED_SIG_ALGS,
            &self.roots,
            intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| NodeAttestError::Certificate(format!("{e:?}")))?;
        let (_, parsed) = X509Certificate::from_der(leaf)
            .map_err(|_| NodeAttestError::Certificate("leaf does not parse".into()))?;
        let key = PublicKey::from_spki_der(parsed.public_key().raw)
            .map_err(|e| NodeAttestError::Certificate(e.to_string()))?;

        let jws = CompactJws::parse(proof).map_err(|e| NodeAttestError::Proof(e.to_string()))?;
        jws.header
            .require_typ(X509POP_TYP)
            .map_err(|e| NodeAttestError::Proof(e.to_string()))?;
        jws.verify(&key)
            .map_err(|e| NodeAttestError::Proof(e.to_string()))?;
        let claims: PopClaims = jws
            .claims()
            .map_err(|e| NodeAttestError::Proof(e.to_string()))?;
        let now_s = unix_seconds(now);
        if claims.aud != self.trust_domain.id_string() {
            return Err(NodeAttestError::Proof(
                "audience is not this trust domain".into(),
            ));
        }
        if now_s > claims.exp + 60
            || claims.iat > now_s + 60
            || claims.exp - claims.iat > X509POP_MAX_LIFETIME
        {
            return Err(NodeAttestError::Proof(
                "expired, not yet valid, or too long-lived".into(),
            ));
        }
        if claims.csr != sha256_b64url(csr_der) {
            return Err(NodeAttestError::Proof("bound to another CSR".into()));
        }
        if claims.jti.is_empty() || !admit_jti(&claims.jti, claims.exp) {
            return Err(NodeAttestError::Proof("replayed".into()));
        }
        let fingerprint = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf));
        let spiffe_id = self
            .trust_domain
            .id_with_path(&format!("/aims/agent/x509pop/{fingerprint}"))
            .map_err(|e| NodeAttestError::Certificate(e.to_string()))?;
        let mut selectors = vec![Selector {
            kind: "x509pop".into(),
            value: format!("sha256:{fingerprint}"),
        }];
        for cn in parsed
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
        {
            selectors.push(Selector {
                kind: "x509pop".into(),
                value: format!("subject:cn:{cn}"),
            });
        }
        Ok(AttestedNodeIdentity {
            spiffe_id,
            attestation_type: "x509pop",
            selectors,
        })
    }
}
