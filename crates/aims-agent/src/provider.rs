//! The Workload API's view of the agent: a caller is attested from its peer credentials by
//! every configured attestor, and gets the SVIDs of every entry whose selectors it shows
//! (AIMS PR-2, PR-3); a caller matching nothing gets a bare `PermissionDenied`.

use std::collections::BTreeSet;
use std::sync::Arc;

use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::TrustBundle;
use aims_provisioning::attest::AttestorSet;
use aims_store::Selector;
use aims_workload_api::{
    IdentityProvider, JwtSvidEntry, PeerCredentials, SvidKind, WitSvidEntry, X509SvidEntry,
};
use tokio::sync::watch;
use tonic::Status;

use crate::agent::Agent;

/// How long a first call waits for SVIDs still being issued.
const ISSUANCE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Attestations running at once. Each reads `/proc` (and, for an executable not seen
/// before, hashes it) on a blocking thread; a thousand callers arriving together must not
/// become a thousand threads.
const CONCURRENT_ATTESTATIONS: usize = 4;

/// The agent as an [`IdentityProvider`].
pub struct AgentProvider {
    agent: Arc<Agent>,
    attestors: Arc<AttestorSet>,
    attesting: tokio::sync::Semaphore,
}

impl AgentProvider {
    /// A provider answering from `agent`'s cache, attesting callers with `attestors`.
    pub fn new(agent: Arc<Agent>, attestors: AttestorSet) -> Self {
        Self {
            agent,
            attestors: Arc::new(attestors),
            attesting: tokio::sync::Semaphore::new(CONCURRENT_ATTESTATIONS),
        }
    }
}

/// A caller's selectors.
pub type Caller = Arc<BTreeSet<Selector>>;

#[tonic::async_trait]
impl IdentityProvider for AgentProvider {
    type Caller = Caller;

    async fn attest(&self, peer: PeerCredentials) -> Result<Caller, Status> {
        let attestors = self.attestors.clone();
        let _permit = self
            .attesting
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the agent is shutting down"))?;
        // Attestation reads /proc and may hash an executable: off the async workers.
        let (pid, uid) = (peer.pid, peer.uid);
        let result = tokio::task::spawn_blocking(move || attestors.attest(&peer))
            .await
            .map_err(|_| Status::internal("attestation task failed"))?;
        match result {
            Ok(selectors) => {
                tracing::debug!(pid = ?pid, uid, selectors = selectors.len(), "workload attested");
                Ok(Arc::new(selectors))
            }
            Err(e) => {
                // The reason goes to the log, never to the caller.
                tracing::warn!(pid = ?pid, uid, error = %e, "workload attestation failed");
                Err(Status::permission_denied("no identity issued"))
            }
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.agent.cache().subscribe()
    }

    fn trust_domain(&self) -> &TrustDomain {
        self.agent.trust_domain()
    }

    fn x509_svids(&self, caller: &Caller) -> Vec<X509SvidEntry> {
        self.agent.cache().x509_svids(caller, self.agent.now())
    }

    async fn ready(&self, caller: &Caller, kind: SvidKind) -> Result<(), Status> {
        let cache = self.agent.cache();
        let entries = cache.matching(caller);
        if entries.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let mut changes = cache.subscribe();
        if kind == SvidKind::Wit {
            cache.want_wit(&entries, self.agent.now());
        }
        let issued = |cache: &crate::cache::Cache| match kind {
            SvidKind::X509 => cache.x509_svids(caller, self.agent.now()).len(),
            SvidKind::Wit => cache.wit_svids(caller, self.agent.now()).len(),
        };
        let wait = async {
            while issued(cache) < entries.len() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        // Answer with what exists if the server is slow or away.
        if tokio::time::timeout(ISSUANCE_WAIT, wait).await.is_err() {
            tracing::debug!(?kind, "not every SVID issued within {ISSUANCE_WAIT:?}");
        }
        Ok(())
    }

    fn wit_svids(&self, caller: &Caller) -> Vec<WitSvidEntry> {
        self.agent.cache().wit_svids(caller, self.agent.now())
    }

    async fn jwt_svids(
        &self,
        caller: &Caller,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<JwtSvidEntry>, Status> {
        self.agent.jwt_svids(caller, audience, spiffe_id).await
    }

    fn bundles(&self) -> Vec<Arc<TrustBundle>> {
        self.agent.cache().bundles()
    }
}
