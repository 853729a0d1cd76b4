//! What the Workload API needs from the node agent.

use std::sync::Arc;

use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::{PrivateKey, TrustBundle};
pub use aims_peer::PeerCredentials;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tonic::Status;
use zeroize::Zeroizing;

/// One X509-SVID a caller is entitled to, with its private key.
#[derive(Clone)]
pub struct X509SvidEntry {
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key, PKCS#8 DER, as the Workload API hands it over (held in memory only,
    /// AIMS PR-9; the agent never signs with it, so it keeps no parsed key).
    pub key_pkcs8: Arc<Zeroizing<Vec<u8>>>,
    /// The Workload API `hint`.
    pub hint: Option<String>,
}

impl std::fmt::Debug for X509SvidEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509SvidEntry")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// One JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvidEntry {
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The compact JWS.
    pub token: String,
    /// The Workload API `hint`.
    pub hint: Option<String>,
}

/// One WIT-SVID with the private key its `cnf` names.
#[derive(Clone)]
pub struct WitSvidEntry {
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The compact JWS.
    pub token: String,
    /// The `cnf` private key.
    pub key: Arc<PrivateKey>,
    /// The Workload API `hint`.
    pub hint: Option<String>,
}

impl std::fmt::Debug for WitSvidEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitSvidEntry")
            .field("spiffe_id", &self.spiffe_id)
            .field("key", &self.key)
            .finish()
    }
}

/// An SVID profile a Workload API call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidKind {
    /// X509-SVIDs.
    X509,
    /// WIT-SVIDs.
    Wit,
}

/// The agent's side of the Workload API.
///
/// `attest` identifies a caller once per call or stream; every other method answers for that
/// caller with what the agent holds now. `changes` ticks whenever SVIDs, registration entries
/// or bundles change, and every open stream then sends its new state.
#[tonic::async_trait]
pub trait IdentityProvider: Send + Sync + 'static {
    /// What attestation established about a caller (its selectors).
    type Caller: Send + Sync + Clone + 'static;

    /// Attests the caller from its peer credentials.
    async fn attest(&self, peer: PeerCredentials) -> Result<Self::Caller, Status>;

    /// A receiver that changes whenever anything a stream sends may have changed.
    fn changes(&self) -> watch::Receiver<u64>;

    /// The trust domain of the agent.
    fn trust_domain(&self) -> &TrustDomain;

    /// The X509-SVIDs the caller is entitled to now; the first is the default identity.
    fn x509_svids(&self, caller: &Self::Caller) -> Vec<X509SvidEntry>;

    /// Waits (bounded) until the caller's SVIDs of `kind` are issued: X509-SVIDs of an entry
    /// created a moment ago may still be in flight, and WIT-SVIDs are minted on first demand
    /// (most workloads never ask for one) and kept rotated from then on. A caller that matches
    /// no entry gets `PermissionDenied` at once.
    async fn ready(&self, caller: &Self::Caller, kind: SvidKind) -> Result<(), Status>;

    /// The WIT-SVIDs the caller is entitled to now.
    fn wit_svids(&self, caller: &Self::Caller) -> Vec<WitSvidEntry>;

    /// JWT-SVIDs for `audience`, for every identity of the caller or only `spiffe_id`.
    async fn jwt_svids(
        &self,
        caller: &Self::Caller,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<JwtSvidEntry>, Status>;

    /// Our bundle and every federated bundle.
    fn bundles(&self) -> Vec<Arc<TrustBundle>>;
}
