//! The gateway's own identity, from the SPIFFE Workload API (AIMS ID-1, CR-4): its X509-SVID
//! (presented to agents and to the AIMS server, replaced on every rotation) and the X.509 and
//! WIT bundles it verifies agents with.

use std::sync::Arc;
use std::time::Duration;

use aims_authn::mtls::SvidStore;
use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::bundle::{BundleSet, BundleSource, TrustBundle, certs_from_concat_der};
use aims_credentials::{PrivateKey, PublicKey};
use aims_workload_api::client::WorkloadApiClient;
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::GatewayError;

/// The gateway's SVID and bundles, kept current.
pub struct WorkloadIdentity {
    /// The X509-SVID.
    pub svid: Arc<SvidStore>,
    /// X.509 bundles (mTLS peers).
    pub x509_bundles: Arc<dyn BundleSource>,
    /// WIT bundles (WPT and HTTP-signature peers).
    pub wit_bundles: Arc<dyn BundleSource>,
}

impl WorkloadIdentity {
    /// An identity its owner keeps current (a gateway in the server's own process, `aims up`).
    pub fn provided(svid: Arc<SvidStore>, bundles: Arc<dyn BundleSource>) -> Arc<Self> {
        Arc::new(Self {
            svid,
            x509_bundles: bundles.clone(),
            wit_bundles: bundles,
        })
    }

    /// Subscribes to the Workload API at `socket` and waits (up to `wait`) for the first SVID.
    pub async fn connect(
        socket: Option<&str>,
        want: Option<SpiffeId>,
        wait: Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, GatewayError> {
        let (tx, mut ready) = watch::channel(None);
        let svid = Arc::new(SvidStore::new());
        let x509 = Arc::new(BundleSet::new());
        let wit = Arc::new(BundleSet::new());
        let me = Arc::new(Self {
            svid: svid.clone(),
            x509_bundles: x509.clone(),
            wit_bundles: wit.clone(),
        });
        let client = WorkloadApiClient::connect(socket)
            .map_err(|e| GatewayError::Identity(format!("Workload API: {e}")))?;
        tokio::spawn(keep_x509(
            client.clone(),
            svid,
            x509,
            want,
            tx,
            shutdown.clone(),
        ));
        tokio::spawn(keep_wit_bundles(client, wit, shutdown));
        let got = tokio::time::timeout(wait, ready.wait_for(Option::is_some)).await;
        match got {
            Ok(Ok(id)) => {
                tracing::info!(spiffe_id = %id.as_ref().map(SpiffeId::as_str).unwrap_or(""), "gateway identity ready");
                Ok(me.clone())
            }
            _ => Err(GatewayError::Identity(format!(
                "no X509-SVID from the Workload API within {wait:?} (is the agent running, and is an entry registered for this gateway?)"
            ))),
        }
    }

    /// The gateway's SPIFFE ID.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.svid.spiffe_id()
    }
}

fn x509_bundle(td: &str, der: &[u8]) -> Option<TrustBundle> {
    let td = TrustDomain::new(td.trim_start_matches("spiffe://")).ok()?;
    let mut bundle = TrustBundle::new(td);
    for cert in certs_from_concat_der(der).ok()? {
        bundle.add_x509_authority(cert).ok()?;
    }
    Some(bundle)
}

async fn keep_x509(
    mut client: WorkloadApiClient,
    store: Arc<SvidStore>,
    bundles: Arc<BundleSet>,
    want: Option<SpiffeId>,
    ready: watch::Sender<Option<SpiffeId>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let mut stream = match client.fetch_x509_svid().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Workload API: no X509-SVID yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                n = stream.next() => n,
            };
            let Some(Ok(resp)) = next else { break };
            // SPIFFE Workload API §5.2: several SVIDs may match; take the one configured.
            let Some(svid) = resp
                .svids
                .iter()
                .find(|s| want.as_ref().is_none_or(|w| w.as_str() == s.spiffe_id))
            else {
                tracing::warn!(want = ?want.as_ref().map(SpiffeId::as_str), "the Workload API offers no SVID with the configured SPIFFE ID");
                continue;
            };
            let key = PrivateKey::from_pkcs8_der(&svid.x509_svid_key);
            let chain = certs_from_concat_der(&svid.x509_svid);
            match (key, chain) {
                (Ok(key), Ok(chain)) => {
                    if let Err(e) = store.set(chain, &key) {
                        tracing::error!(error = %e, "Workload API sent an unusable X509-SVID");
                        continue;
                    }
                }
                _ => {
                    tracing::error!("Workload API sent an undecodable X509-SVID");
                    continue;
                }
            }
            if let Some(b) = SpiffeId::parse(&svid.spiffe_id)
                .ok()
                .and_then(|id| x509_bundle(id.trust_domain_name(), &svid.bundle))
            {
                bundles.put(b);
            }
            for (td, der) in &resp.federated_bundles {
                if let Some(b) = x509_bundle(td, der) {
                    bundles.put(b);
                }
            }
            backoff = Duration::from_millis(100);
            let _ = ready.send(store.spiffe_id());
        }
        tracing::warn!("Workload API stream ended; reconnecting");
    }
}

async fn keep_wit_bundles(
    mut client: WorkloadApiClient,
    bundles: Arc<BundleSet>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let Ok(mut stream) = client.fetch_wit_bundles().await else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                n = stream.next() => n,
            };
            let Some(Ok(resp)) = next else { break };
            for (td, jwks) in &resp.bundles {
                let Ok(td) = TrustDomain::new(td.trim_start_matches("spiffe://")) else {
                    continue;
                };
                match wit_bundle(td, jwks) {
                    Some(b) => bundles.put(b),
                    None => tracing::warn!("Workload API sent an unusable WIT bundle"),
                }
            }
        }
    }
}

fn wit_bundle(td: TrustDomain, jwks: &str) -> Option<TrustBundle> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks).ok()?;
    let mut bundle = TrustBundle::new(td);
    for jwk in &set.keys {
        let kid = jwk.common.key_id.as_deref()?;
        bundle
            .add_wit_authority(kid, PublicKey::from_jwk(jwk).ok()?)
            .ok()?;
    }
    Some(bundle)
}
