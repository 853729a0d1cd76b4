//! Credentials from the SPIFFE Workload API that stay current by themselves.
//!
//! * [`X509Source`] opens `FetchX509SVID` once and follows the stream: the agent rotates the
//!   SVID at half life and pushes it, and the source always answers with the newest (SPIFFE
//!   Workload API §5.2). If the stream breaks it reconnects with backoff and keeps serving the
//!   last SVID until it expires.
//! * [`JwtSource`] fetches JWT-SVIDs per audience and reuses each until half its life.
//! * [`wit_signer`] builds a [`WimseSigner`] from the WIT-SVID the Workload API hands out, for
//!   Workload Proof Tokens or WIMSE HTTP message signatures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aims_authn::client::{ProofMode, WimseSigner, WorkloadCredentials};
use aims_credentials::PrivateKey;
use aims_credentials::bundle::certs_from_concat_der;
use aims_credentials::jose::CompactJws;
use aims_workload_api::client::WorkloadApiClient;
use rustls_pki_types::CertificateDer;
use tokio_stream::StreamExt as _;

use crate::SdkError;

/// An X509-SVID as the Workload API delivered it.
#[derive(Clone)]
pub struct X509Svid {
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The SVID's private key (it never leaves this process).
    pub key: Arc<PrivateKey>,
    /// The trust domain's X.509 authorities.
    pub bundle: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn connect(socket: &Path) -> Result<WorkloadApiClient, SdkError> {
    WorkloadApiClient::connect_path(socket).map_err(|e| SdkError::WorkloadApi(e.to_string()))
}

/// The X509-SVID of `spiffe_id` (or the first) from one `FetchX509SVID` answer.
fn pick(
    resp: aims_workload_api::proto::X509svidResponse,
    spiffe_id: Option<&str>,
) -> Result<X509Svid, SdkError> {
    let s = resp
        .svids
        .into_iter()
        .find(|s| spiffe_id.is_none_or(|id| s.spiffe_id == id))
        .ok_or_else(|| SdkError::Invalid("no X509-SVID for this identity".into()))?;
    let bad = |e: String| SdkError::Invalid(e);
    Ok(X509Svid {
        chain: certs_from_concat_der(&s.x509_svid).map_err(|e| bad(e.to_string()))?,
        key: Arc::new(
            PrivateKey::from_pkcs8_der(&s.x509_svid_key).map_err(|e| bad(e.to_string()))?,
        ),
        bundle: certs_from_concat_der(&s.bundle).map_err(|e| bad(e.to_string()))?,
        spiffe_id: s.spiffe_id,
    })
}

/// The current X509-SVID, kept current by following the Workload API stream.
pub struct X509Source {
    current: Arc<RwLock<X509Svid>>,
    updates: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for X509Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Source").finish_non_exhaustive()
    }
}

impl Drop for X509Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl X509Source {
    /// Connects to the Workload API at `socket`, waits for the first X509-SVID (of
    /// `spiffe_id`, when the workload has several identities) and follows the stream.
    pub async fn new(socket: &Path, spiffe_id: Option<String>) -> Result<Self, SdkError> {
        let mut stream = connect(socket)?
            .fetch_x509_svid()
            .await
            .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))?;
        let first = stream
            .next()
            .await
            .ok_or_else(|| SdkError::WorkloadApi("the stream ended".into()))?
            .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))?;
        let current = Arc::new(RwLock::new(pick(first, spiffe_id.as_deref())?));
        let (tx, updates) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(follow(
            socket.to_path_buf(),
            spiffe_id,
            stream,
            current.clone(),
            tx,
        ));
        Ok(Self {
            current,
            updates,
            task,
        })
    }

    /// The newest X509-SVID.
    pub fn svid(&self) -> X509Svid {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the SVID changes (a rotation pushed by the agent).
    pub async fn changed(&mut self) -> Result<(), SdkError> {
        self.updates
            .changed()
            .await
            .map_err(|_| SdkError::WorkloadApi("the source stopped".into()))
    }
}

/// Follows the stream; on a break, reconnects with capped exponential backoff.
async fn follow(
    socket: PathBuf,
    spiffe_id: Option<String>,
    mut stream: tonic::Streaming<aims_workload_api::proto::X509svidResponse>,
    current: Arc<RwLock<X509Svid>>,
    tx: tokio::sync::watch::Sender<u64>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut n = 0u64;
    loop {
        while let Some(next) = stream.next().await {
            match next
                .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))
                .and_then(|r| pick(r, spiffe_id.as_deref()))
            {
                Ok(svid) => {
                    if let Ok(mut c) = current.write() {
                        *c = svid;
                    }
                    n += 1;
                    let _ = tx.send(n);
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "X509-SVID update unusable; keeping the current one");
                }
            }
        }
        tracing::info!(retry_in = ?backoff, "Workload API stream ended; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
        if let Ok(mut client) = connect(&socket)
            && let Ok(s) = client.fetch_x509_svid().await
        {
            stream = s;
        }
    }
}

/// JWT-SVIDs per audience, each reused until half its life.
pub struct JwtSource {
    socket: PathBuf,
    spiffe_id: Option<String>,
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl std::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSource")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// Audiences cached at most.
const JWT_CACHE: usize = 64;

impl JwtSource {
    /// JWT-SVIDs from the Workload API at `socket` (of `spiffe_id`, when the workload has
    /// several identities).
    pub fn new(socket: &Path, spiffe_id: Option<String>) -> Self {
        Self {
            socket: socket.to_path_buf(),
            spiffe_id,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A JWT-SVID for `audience`.
    pub async fn token(&self, audience: &str) -> Result<String, SdkError> {
        let now = SystemTime::now();
        if let Some((t, _)) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(audience).filter(|(_, renew)| *renew > now).cloned())
        {
            return Ok(t);
        }
        let resp = connect(&self.socket)?
            .fetch_jwt_svid(vec![audience.to_owned()], self.spiffe_id.clone())
            .await
            .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))?;
        let token = resp
            .svids
            .into_iter()
            .next()
            .map(|s| s.svid)
            .ok_or_else(|| SdkError::Invalid("no JWT-SVID".into()))?;
        let renew = half_life(&token, now)?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= JWT_CACHE {
                c.retain(|_, (_, r)| *r > now);
            }
            if c.len() < JWT_CACHE {
                c.insert(audience.to_owned(), (token.clone(), renew));
            }
        }
        Ok(token)
    }
}

/// When a JWT issued now is half-way to its `exp`.
fn half_life(token: &str, now: SystemTime) -> Result<SystemTime, SdkError> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: u64,
    }
    let exp: Exp = CompactJws::parse(token)
        .and_then(|j| j.claims())
        .map_err(|e| SdkError::Invalid(format!("JWT-SVID: {e}")))?;
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(exp.exp);
    let left = exp.duration_since(now).unwrap_or_default();
    Ok(now + left / 2)
}

/// A signer for Workload Proof Tokens or WIMSE HTTP signatures with the WIT-SVID (of
/// `spiffe_id`) from the Workload API.
pub async fn wit_signer(
    socket: &Path,
    spiffe_id: Option<String>,
    mode: ProofMode,
) -> Result<WimseSigner, SdkError> {
    let mut stream = connect(socket)?
        .fetch_wit_svid(spiffe_id)
        .await
        .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))?;
    let resp = stream
        .next()
        .await
        .ok_or_else(|| SdkError::WorkloadApi("the stream ended".into()))?
        .map_err(|e| SdkError::WorkloadApi(e.message().to_owned()))?;
    let w = resp
        .svids
        .into_iter()
        .next()
        .ok_or_else(|| SdkError::Invalid("no WIT-SVID".into()))?;
    let key = PrivateKey::from_private_jwk(&w.wit_svid_key)
        .map_err(|e| SdkError::Invalid(format!("WIT-SVID key: {e}")))?;
    Ok(WimseSigner::new(
        WorkloadCredentials {
            wit: w.wit_svid,
            key: Arc::new(key),
        },
        mode,
    ))
}
