//! The agent's own identity: its X509-SVID (presented to the server), the trust bundle it
//! verifies the server with, how it gets them (node attestation) and keeps them (renewal at
//! half life, AIMS PR-7), and their copies on disk so a restarted agent needs no new join
//! token (`<data_dir>/agent/svid.pem`, `svid.key` 0600, `bundle.jwks`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aims_authn::mtls::SvidStore;
use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::bundle::{cert_to_pem, certs_from_pem};
use aims_credentials::ca::svid_csr;
use aims_credentials::x509_svid::SvidUsage;
use aims_credentials::{
    BundleSet, KeyType, PrivateKey, TrustBundle, VerifyError, verify_x509_svid,
};
use aims_provisioning::node::create_x509pop_proof;
use aims_provisioning::proto::{
    AgentSvid, AttestRequest, RenewAgentRequest, X509PopProof, attest_request,
};
use aims_provisioning::rotation;
use rustls_pki_types::CertificateDer;

use crate::connection::{AgentClient, CALL_TIMEOUT};
use crate::error::AgentError;
use crate::settings::{NodeAttestation, TrustBootstrap};

/// The validity window of the current agent SVID.
#[derive(Debug, Clone)]
struct Window {
    id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// The agent's SVID and trust bundle.
pub struct AgentIdentity {
    trust_domain: TrustDomain,
    dir: PathBuf,
    svid: Arc<SvidStore>,
    bundles: Arc<BundleSet>,
    window: Mutex<Option<Window>>,
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, AgentError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::io(format!("read {}", path.display()), e)),
    }
}

impl AgentIdentity {
    /// Loads the saved bundle (or the bootstrap one) and the saved SVID if it is still valid.
    pub fn open(
        trust_domain: TrustDomain,
        dir: PathBuf,
        bootstrap: Option<&TrustBootstrap>,
        now: SystemTime,
    ) -> Result<Self, AgentError> {
        aims_core::files::private_dir(&dir)
            .map_err(|e| AgentError::io(format!("create {}", dir.display()), e))?;
        let this = Self {
            trust_domain,
            svid: Arc::new(SvidStore::new()),
            bundles: Arc::new(BundleSet::new()),
            window: Mutex::new(None),
            dir,
        };
        this.load_bundle(bootstrap)?;
        this.load_svid(now)?;
        Ok(this)
    }

    fn load_bundle(&self, bootstrap: Option<&TrustBootstrap>) -> Result<(), AgentError> {
        let saved = self.dir.join("bundle.jwks");
        let (doc, source) = match (read_file(&saved)?, bootstrap) {
            (Some(doc), _) => (doc, saved.display().to_string()),
            (None, Some(TrustBootstrap::File(path))) => (
                read_file(path)?.ok_or_else(|| {
                    AgentError::Config(format!("trust bundle {} does not exist", path.display()))
                })?,
                path.display().to_string(),
            ),
            (None, Some(TrustBootstrap::Document(doc))) => {
                (doc.clone().into_bytes(), "the bootstrap bundle".to_owned())
            }
            (None, None) => {
                return Err(AgentError::Config(
                    "no trust bundle to verify the server with: pass --trust-bundle FILE \
                     (from `aims bundle show` on the server)"
                        .into(),
                ));
            }
        };
        let bundle = TrustBundle::from_document(self.trust_domain.clone(), &doc)
            .map_err(|e| AgentError::Config(format!("trust bundle from {source}: {e}")))?;
        if bundle.x509_authorities().is_empty() {
            return Err(AgentError::Config(format!(
                "trust bundle from {source} has no X.509 authority"
            )));
        }
        self.bundles.put(bundle);
        Ok(())
    }

    fn load_svid(&self, now: SystemTime) -> Result<(), AgentError> {
        let (Some(chain), Some(key)) = (
            read_file(&self.dir.join("svid.pem"))?,
            read_file(&self.dir.join("svid.key"))?,
        ) else {
            return Ok(());
        };
        let loaded = (|| -> Result<(Vec<CertificateDer<'static>>, PrivateKey), AgentError> {
            let chain = certs_from_pem(&String::from_utf8_lossy(&chain))?;
            let key = PrivateKey::from_pem(&String::from_utf8_lossy(&key))?;
            Ok((chain, key))
        })();
        match loaded.and_then(|(chain, key)| self.install(chain, &key, now, false)) {
            Ok(()) => {
                tracing::info!(agent = %self.spiffe_id().map(|i| i.to_string()).unwrap_or_default(), "agent SVID loaded from disk");
            }
            Err(AgentError::Credential(VerifyError::Expired)) => {
                tracing::warn!("the saved agent SVID has expired; the agent must attest again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the saved agent SVID is unusable; the agent must attest again");
            }
        }
        Ok(())
    }

    /// The SVID presented to the server.
    pub fn svid_store(&self) -> Arc<SvidStore> {
        self.svid.clone()
    }

    /// The bundles the server is verified with.
    pub fn bundles(&self) -> Arc<BundleSet> {
        self.bundles.clone()
    }

    /// The agent's SPIFFE ID, once it has an SVID.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.window.lock().ok()?.as_ref().map(|w| w.id.clone())
    }

    fn window(&self) -> Option<Window> {
        self.window.lock().ok()?.clone()
    }

    /// Whether the agent holds an SVID valid at `now`.
    pub fn valid(&self, now: SystemTime) -> bool {
        self.window().is_some_and(|w| now < w.not_after)
    }

    /// Whether the SVID is due for renewal at `now`.
    pub fn due(&self, now: SystemTime) -> bool {
        self.window()
            .is_none_or(|w| rotation::due(w.not_before, w.not_after, now))
    }

    /// Replaces the trust bundle (after a sync) and saves it.
    pub fn set_bundle(&self, bundle: TrustBundle) -> Result<(), AgentError> {
        let doc = bundle.to_jwks()?;
        self.bundles.put(bundle);
        let path = self.dir.join("bundle.jwks");
        aims_core::files::write_atomic(&path, doc.as_bytes(), 0o644)
            .map_err(|e| AgentError::io(format!("write {}", path.display()), e))
    }

    /// Checks an SVID against the bundle and starts presenting it; saves it when `persist`.
    fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKey,
        now: SystemTime,
        persist: bool,
    ) -> Result<(), AgentError> {
        let verified = verify_x509_svid(&chain, &*self.bundles, now, SvidUsage::Client)?;
        if !verified.spiffe_id.is_member_of(&self.trust_domain) {
            return Err(VerifyError::UntrustedDomain(
                verified.spiffe_id.trust_domain_name().into(),
            )
            .into());
        }
        let leaf_key = aims_credentials::x509_svid::leaf_public_key(&chain[0])?;
        if &leaf_key != key.public_key() {
            return Err(VerifyError::Certificate(
                "the SVID does not certify the agent's key".into(),
            )
            .into());
        }
        if persist {
            let pem: String = chain.iter().map(|c| cert_to_pem(c)).collect();
            for (name, contents, mode) in [
                ("svid.key", key.to_pkcs8_pem().as_bytes().to_vec(), 0o600),
                ("svid.pem", pem.into_bytes(), 0o644),
            ] {
                let path = self.dir.join(name);
                aims_core::files::write_atomic(&path, &contents, mode)
                    .map_err(|e| AgentError::io(format!("write {}", path.display()), e))?;
            }
        }
        self.svid
            .set(chain, key)
            .map_err(|e| AgentError::Config(e.to_string()))?;
        if let Ok(mut w) = self.window.lock() {
            *w = Some(Window {
                id: verified.spiffe_id,
                not_before: rotation::x509_issued_at(verified.not_before, verified.not_after),
                not_after: verified.not_after,
            });
        }
        Ok(())
    }

    fn accept(&self, resp: AgentSvid, key: &PrivateKey, now: SystemTime) -> Result<(), AgentError> {
        if !resp.bundle.is_empty() {
            let bundle = TrustBundle::from_jwks(self.trust_domain.clone(), resp.bundle.as_bytes())?;
            self.set_bundle(bundle)?;
        }
        let chain = resp.chain.into_iter().map(CertificateDer::from).collect();
        self.install(chain, key, now, true)
    }

    /// Node attestation: proves the node with `method` and installs the SVID the server issues.
    pub async fn attest(
        &self,
        client: &mut AgentClient,
        method: &NodeAttestation,
        now: SystemTime,
    ) -> Result<(), AgentError> {
        let key = PrivateKey::generate(KeyType::EcP256)?;
        // No URI SAN: the server decides the agent's ID from the attestation.
        let csr = svid_csr(&key, None, &[])?;
        let method = match method {
            NodeAttestation::None => {
                return Err(AgentError::Attestation(
                    "the agent has no valid SVID and no attestation method: pass --join-token \
                     (from `aims token generate`) or configure x509pop"
                        .into(),
                ));
            }
            NodeAttestation::JoinToken(token) => attest_request::Method::JoinToken(token.clone()),
            NodeAttestation::X509Pop {
                cert_file,
                key_file,
            } => {
                let chain_pem = read_file(cert_file)?.ok_or_else(|| {
                    AgentError::Config(format!("{} does not exist", cert_file.display()))
                })?;
                let node_key = read_file(key_file)?.ok_or_else(|| {
                    AgentError::Config(format!("{} does not exist", key_file.display()))
                })?;
                let chain = certs_from_pem(&String::from_utf8_lossy(&chain_pem))?;
                let node_key = PrivateKey::from_pem(&String::from_utf8_lossy(&node_key))?;
                let proof = create_x509pop_proof(&node_key, &self.trust_domain, &csr, now)?;
                attest_request::Method::X509pop(X509PopProof {
                    chain: chain.iter().map(|c| c.to_vec()).collect(),
                    proof,
                })
            }
        };
        let mut req = tonic::Request::new(AttestRequest {
            csr,
            method: Some(method),
        });
        req.set_timeout(CALL_TIMEOUT);
        let resp = client.attest(req).await?.into_inner();
        self.accept(resp, &key, now)?;
        tracing::info!(agent = %self.spiffe_id().map(|i| i.to_string()).unwrap_or_default(), "node attested");
        Ok(())
    }

    /// Renews the SVID with a fresh key.
    pub async fn renew(&self, client: &mut AgentClient, now: SystemTime) -> Result<(), AgentError> {
        let id = self
            .spiffe_id()
            .ok_or_else(|| AgentError::Attestation("no SVID to renew".into()))?;
        let key = PrivateKey::generate(KeyType::EcP256)?;
        let csr = svid_csr(&key, Some(&id), &[])?;
        let mut req = tonic::Request::new(RenewAgentRequest { csr });
        req.set_timeout(CALL_TIMEOUT);
        let resp = client.renew_agent(req).await?.into_inner();
        self.accept(resp, &key, now)?;
        tracing::info!(agent = %id, "agent SVID renewed");
        Ok(())
    }
}
