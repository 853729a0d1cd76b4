//! The server's own X509-SVID (`spiffe://<td>/aims/server`), presented to agents on the agent
//! API, and those of components in the server's process, issued by the server's CA with a
//! fresh key and renewed at half of their life.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::rotation;
use aims_authn::mtls::SvidStore;
use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::ca::SubjectKey;
use aims_credentials::{KeyType, PrivateKey};

use crate::issuance::error::IssuanceError;
use crate::issuance::issuer::{Issuer, X509Lifetime};

/// The path of the server's SPIFFE ID.
pub const SERVER_PATH: &str = "/aims/server";

/// The SPIFFE ID of the servers of `td`, which agents require of the server they talk to.
pub fn server_spiffe_id(td: &TrustDomain) -> Result<SpiffeId, IssuanceError> {
    td.id_with_path(SERVER_PATH)
        .map_err(|e| IssuanceError::Config(format!("server SPIFFE ID: {e}")))
}

/// The server's SVID, kept current.
pub struct ServerSvid {
    id: SpiffeId,
    store: Arc<SvidStore>,
    /// Validity of the current SVID.
    window: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ServerSvid {
    /// No SVID yet; call [`ServerSvid::refresh`].
    pub fn new(td: &TrustDomain) -> Result<Self, IssuanceError> {
        Ok(Self::for_id(server_spiffe_id(td)?))
    }

    /// The SVID of `id`, for a component that runs in the server's own process and so needs
    /// no attestation (the gateway of `aims up`). No SVID yet; call [`ServerSvid::refresh`].
    pub fn for_id(id: SpiffeId) -> Self {
        Self {
            id,
            store: Arc::new(SvidStore::new()),
            window: Mutex::new(None),
        }
    }

    /// The rustls certificate resolver holding the current SVID.
    pub fn store(&self) -> Arc<SvidStore> {
        self.store.clone()
    }

    /// Issues a new SVID if there is none or the current one is past half of its life.
    pub async fn refresh(&self, issuer: &Issuer, now: SystemTime) -> Result<(), IssuanceError> {
        let due = self
            .window
            .lock()
            .map(|w| w.is_none_or(|(nb, na)| rotation::due(nb, na, now)))
            .unwrap_or(true);
        if !due {
            return Ok(());
        }
        let key = PrivateKey::generate(KeyType::EcP256)?;
        let svid = issuer
            .issue_x509(
                &self.id,
                &SubjectKey::of(&key),
                &[],
                X509Lifetime::Workload(None),
            )
            .await?;
        self.store
            .set(svid.chain.clone(), &key)
            .map_err(|e| IssuanceError::Tls(e.to_string()))?;
        if let Ok(mut w) = self.window.lock() {
            *w = Some((now, svid.not_after));
        }
        tracing::info!(spiffe_id = %self.id, serial = %svid.serial_hex(), "server X509-SVID issued");
        Ok(())
    }
}
