//! The agent's run loop: attest or renew, sync with the server, keep every SVID issued and
//! fresh, and ride out server outages on the cache.
//!
//! A *session* is one connection to the server: it renews the agent's own SVID if due (or
//! attests, if it has none), opens the `Sync` stream, and from then on applies every state the
//! server pushes and issues what is due (new entries at once, renewals at half life, wanted
//! WIT-SVIDs on demand). When the server goes away the session ends; workloads keep being
//! served from the cache while the agent retries with capped, jittered exponential backoff.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aims_authn::mtls::Authorizer;
use aims_core::{SpiffeId, TrustDomain, unix_seconds};
use aims_credentials::ca::svid_csr;
use aims_credentials::jose::sha256_b64url;
use aims_credentials::x509_svid::{SvidUsage, leaf_public_key};
use aims_credentials::{
    PrivateKey, TrustBundle, WitProfile, verify_jwt_svid, verify_wit, verify_x509_svid,
};
use aims_provisioning::proto::{
    SignJwtSvidRequest, SignWitSvidRequest, SignX509SvidsRequest, SyncRequest, SyncResponse,
    X509SvidCsr,
};
use aims_provisioning::rotation;
use aims_store::Selector;
use aims_workload_api::{JwtSvidEntry, WitSvidEntry, X509SvidEntry};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::cache::{Cache, EntryRecord, Validity, token_validity};
use crate::connection::{AgentClient, CALL_TIMEOUT, ServerAddresses, connect};
use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::settings::AgentSettings;

/// CSRs per `SignX509Svids` call.
const CSR_BATCH: usize = 500;

/// How a session ended.
enum SessionEnd {
    /// The agent is stopping.
    Stopped,
    /// The agent's SVID was renewed: reconnect at once to present it.
    Reconnect,
}

/// The running agent's shared core.
pub struct Agent {
    settings: AgentSettings,
    identity: AgentIdentity,
    cache: Arc<Cache>,
    /// The client of the current session, for on-demand JWT- and WIT-SVIDs.
    client: RwLock<Option<AgentClient>>,
    server_id: Authorizer,
    /// The server's replicas.
    servers: Arc<ServerAddresses>,
    /// The registration sequence number of the last sync message applied, and as whom: a
    /// reconnection (to any replica) resumes from it (issue 18).
    synced: std::sync::Mutex<Option<(SpiffeId, i64)>>,
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut b);
    // Up to +25%.
    d + d.mul_f64(f64::from(b[0]) / 1024.0)
}

impl Agent {
    /// Loads the agent's saved state. Fails when the agent can neither start from a saved SVID
    /// nor attest.
    pub fn open(settings: AgentSettings) -> Result<Self, AgentError> {
        let now = settings.clock.now();
        let identity = AgentIdentity::open(
            settings.trust_domain.clone(),
            settings.state_dir(),
            settings.trust_bootstrap.as_ref(),
            now,
        )?;
        if !identity.valid(now) && matches!(settings.attestation, crate::NodeAttestation::None) {
            return Err(AgentError::Attestation(
                "the agent has no valid SVID: pass --join-token (from `aims token generate`) \
                 or configure x509pop"
                    .into(),
            ));
        }
        let server_id = Authorizer::Exact(
            settings
                .trust_domain
                .id_with_path("/aims/server")
                .map_err(|e| AgentError::Config(e.to_string()))?,
        );
        Ok(Self {
            cache: Arc::new(Cache::new(settings.jwt_cache_size)),
            client: RwLock::new(None),
            identity,
            server_id,
            servers: Arc::new(ServerAddresses::parse(&settings.server_address)?),
            settings,
            synced: std::sync::Mutex::new(None),
        })
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.settings.trust_domain
    }

    /// The agent's SPIFFE ID, once attested.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.identity.spiffe_id()
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.settings.clock.now()
    }

    fn connect(&self) -> Result<AgentClient, AgentError> {
        connect(
            self.servers.clone(),
            self.identity.svid_store(),
            self.identity.bundles(),
            self.server_id.clone(),
        )
    }

    fn current_client(&self) -> Option<AgentClient> {
        self.client.read().ok()?.clone()
    }

    /// Attests now if the agent has no valid SVID, so that a bad join token or an unreachable
    /// server fails start-up with a clear error instead of retrying in the background.
    pub async fn attest_if_needed(&self) -> Result<(), AgentError> {
        let now = self.now();
        if self.identity.valid(now) {
            return Ok(());
        }
        let mut client = self.connect()?;
        self.identity
            .attest(&mut client, &self.settings.attestation, now)
            .await
    }

    /// Runs sessions until `stop`, retrying with backoff when the server is unreachable.
    /// `ready` fires after the first complete sync (every entry's X509-SVID issued).
    pub async fn run(
        self: Arc<Self>,
        stop: CancellationToken,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let (first, max) = self.settings.retry;
        let mut delay = first;
        let mut ready = Some(ready);
        loop {
            let mut synced = false;
            let outcome = self.session(&stop, &mut synced, &mut ready).await;
            if let Ok(mut c) = self.client.write() {
                *c = None;
            }
            if synced {
                delay = first;
            }
            match outcome {
                Ok(SessionEnd::Stopped) => return,
                Ok(SessionEnd::Reconnect) => continue,
                Err(e) => {
                    // Whatever failed, the next session starts at another replica, if any.
                    self.servers.move_on();
                    let wait = jitter(delay);
                    tracing::warn!(
                        server = %self.settings.server_address,
                        error = %e,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "lost contact with the server; serving cached SVIDs and retrying"
                    );
                    self.cache.purge_expired(self.now());
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    delay = (delay * 2).min(max);
                }
            }
        }
    }

    async fn session(
        &self,
        stop: &CancellationToken,
        synced: &mut bool,
        ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<SessionEnd, AgentError> {
        let mut client = self.connect()?;
        let now = self.now();
        if !self.identity.valid(now) {
            self.identity
                .attest(&mut client, &self.settings.attestation, now)
                .await?;
            return Ok(SessionEnd::Reconnect);
        }
        if self.identity.due(now) {
            self.identity.renew(&mut client, now).await?;
            return Ok(SessionEnd::Reconnect);
        }
        if let Ok(mut c) = self.client.write() {
            *c = Some(client.clone());
        }
        let mut stream = client.sync(self.sync_request()).await?.into_inner();
        let mut ticker = tokio::time::interval(self.settings.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(SessionEnd::Stopped),
                msg = stream.message() => {
                    let msg = msg?.ok_or_else(|| AgentError::Unreachable {
                        address: self.settings.server_address.clone(),
                        reason: "the sync stream ended".into(),
                    })?;
                    self.apply(msg)?;
                    self.reconcile(&mut client).await?;
                    *synced = true;
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                _ = ticker.tick() => {
                    if self.identity.due(self.now()) {
                        self.identity.renew(&mut client, self.now()).await?;
                        return Ok(SessionEnd::Reconnect);
                    }
                    if *synced {
                        self.reconcile(&mut client).await?;
                    }
                }
                () = self.cache.wit_requested() => {
                    if *synced {
                        self.reconcile(&mut client).await?;
                    }
                }
            }
        }
    }

    /// Incremental sync, resuming from the last message applied as the identity we hold now.
    fn sync_request(&self) -> SyncRequest {
        let me = self.identity.spiffe_id();
        let since = self
            .synced
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .filter(|(who, _)| Some(who) == me.as_ref())
            .map_or(0, |(_, seq)| seq);
        SyncRequest {
            incremental: true,
            since,
        }
    }

    /// Applies a synced state or change: our bundle (also saved, for the next start),
    /// federated bundles and entries.
    fn apply(&self, msg: SyncResponse) -> Result<(), AgentError> {
        let sequence = msg.sequence;
        let mut removed = msg.removed;
        let mut entries = Vec::with_capacity(msg.entries.len());
        for e in msg.entries {
            let id = e.id.clone();
            match EntryRecord::try_from(e) {
                Ok(r) => entries.push(r),
                Err(e) => {
                    // Not served in any version: an older one held is dropped too.
                    tracing::warn!(entry = %id, error = %e, "ignoring an entry");
                    removed.push(id);
                }
            }
        }
        // A delta without a bundle leaves the bundles as they are.
        let bundles = if msg.delta && msg.bundle.is_empty() {
            None
        } else {
            Some(self.apply_bundles(&msg.bundle, msg.federated_bundles)?)
        };
        tracing::debug!(
            revision = msg.revision,
            sequence,
            delta = msg.delta,
            entries = entries.len(),
            removed = removed.len(),
            "synced"
        );
        match bundles {
            Some((bundle, federated)) if !msg.delta => {
                self.cache.apply_sync(entries, bundle, federated);
            }
            bundles => self.cache.apply_delta(entries, &removed, bundles),
        }
        if let (Some(me), Ok(mut synced)) = (self.identity.spiffe_id(), self.synced.lock()) {
            *synced = Some((me, sequence));
        }
        Ok(())
    }

    /// Our bundle (saved if it changed) and the federated bundles of a sync message.
    fn apply_bundles(
        &self,
        document: &str,
        federated_bundles: std::collections::HashMap<String, String>,
    ) -> Result<(TrustBundle, Vec<TrustBundle>), AgentError> {
        let td = &self.settings.trust_domain;
        let bundle = TrustBundle::from_jwks(td.clone(), document.as_bytes())?;
        let changed = self
            .identity
            .bundles()
            .all()
            .iter()
            .find(|b| b.trust_domain() == td)
            .is_none_or(|b| !b.same_keys(&bundle) || b.sequence() != bundle.sequence());
        if changed {
            tracing::info!(sequence = bundle.sequence(), "trust bundle updated");
            self.identity.set_bundle(bundle.clone())?;
        }
        let mut federated = Vec::with_capacity(federated_bundles.len());
        for (name, doc) in federated_bundles {
            let parsed = TrustDomain::new(&name)
                .map_err(|e| e.to_string())
                .and_then(|ftd| {
                    TrustBundle::from_jwks(ftd, doc.as_bytes()).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(b) if b.trust_domain() != td => federated.push(b),
                Ok(_) => tracing::warn!("ignoring a federated bundle for our own trust domain"),
                Err(e) => {
                    tracing::warn!(trust_domain = %name, error = %e, "ignoring a federated bundle")
                }
            }
        }
        Ok((bundle, federated))
    }

    /// Issues every X509-SVID and wanted WIT-SVID that is missing, stale or past half life.
    async fn reconcile(&self, client: &mut AgentClient) -> Result<(), AgentError> {
        let now = self.now();
        self.cache.purge_expired(now);
        let due = self.cache.due(now);
        for batch in due.x509.chunks(CSR_BATCH) {
            self.issue_x509(client, batch.to_vec()).await?;
        }
        if !due.x509.is_empty() {
            tracing::info!(
                issued = due.x509.len(),
                cached = self.cache.x509_count(),
                "X509-SVIDs issued"
            );
        }
        for entry in due.wit {
            self.issue_wit(client, &entry).await?;
        }
        Ok(())
    }

    async fn issue_x509(
        &self,
        client: &mut AgentClient,
        batch: Vec<Arc<EntryRecord>>,
    ) -> Result<(), AgentError> {
        let key_type = self.settings.workload_key_type;
        // Fresh keys and CSRs for the whole batch, off the async workers (AIMS PR-9).
        let prepared = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|e| {
                    let key = PrivateKey::generate(key_type)?;
                    let csr = svid_csr(&key, Some(&e.spiffe_id), &e.dns_names)?;
                    Ok((e, key, csr))
                })
                .collect::<Result<Vec<_>, AgentError>>()
        })
        .await
        .map_err(|e| AgentError::Config(format!("key generation task: {e}")))??;
        let mut req = tonic::Request::new(SignX509SvidsRequest {
            csrs: prepared
                .iter()
                .map(|(e, _, csr)| X509SvidCsr {
                    entry_id: e.id.clone(),
                    csr: csr.clone(),
                })
                .collect(),
        });
        req.set_timeout(CALL_TIMEOUT);
        let resp = client.sign_x509_svids(req).await?.into_inner();
        let bundles = self.identity.bundles();
        let now = self.now();
        let mut issued = Vec::with_capacity(prepared.len());
        for ((entry, key, _), result) in prepared.into_iter().zip(resp.svids) {
            if result.entry_id != entry.id {
                return Err(AgentError::Server(Status::internal(
                    "SignX509Svids answered out of order",
                )));
            }
            if !result.error.is_empty() {
                tracing::warn!(entry = %entry.id, spiffe_id = %entry.spiffe_id, error = %result.error, "the server refused an X509-SVID");
                continue;
            }
            let chain: Vec<CertificateDer<'static>> =
                result.chain.into_iter().map(CertificateDer::from).collect();
            // Defence in depth: the SVID must chain to our bundle, name the entry's ID and
            // certify the key we generated.
            let checked =
                verify_x509_svid(&chain, &*bundles, now, SvidUsage::Client).and_then(|v| {
                    let leaf = leaf_public_key(&chain[0])?;
                    Ok((v, leaf))
                });
            match checked {
                Ok((v, leaf)) if v.spiffe_id == entry.spiffe_id && &leaf == key.public_key() => {
                    issued.push((
                        entry.id.clone(),
                        X509SvidEntry {
                            spiffe_id: entry.spiffe_id.clone(),
                            chain,
                            key_pkcs8: Arc::new(zeroize::Zeroizing::new(key.pkcs8_der().to_vec())),
                            hint: entry.hint.clone(),
                        },
                        Validity {
                            not_before: rotation::x509_issued_at(v.not_before, v.not_after),
                            not_after: v.not_after,
                            revision: entry.revision,
                        },
                    ));
                }
                Ok(_) => {
                    tracing::error!(entry = %entry.id, "the server returned an X509-SVID for another identity or key; discarded")
                }
                Err(e) => {
                    tracing::error!(entry = %entry.id, error = %e, "the server returned an invalid X509-SVID; discarded")
                }
            }
        }
        let count = issued.len();
        self.cache.put_x509(issued);
        tracing::debug!(count, "X509-SVIDs issued");
        Ok(())
    }

    async fn issue_wit(
        &self,
        client: &mut AgentClient,
        entry: &EntryRecord,
    ) -> Result<(), AgentError> {
        let key = PrivateKey::generate(self.settings.workload_key_type)?;
        let jwk = key
            .public_key()
            .to_jwk(None, None, Some(key.jws_algorithm()));
        let mut req = tonic::Request::new(SignWitSvidRequest {
            entry_id: entry.id.clone(),
            public_jwk: serde_json::to_string(&jwk)
                .map_err(|e| AgentError::Config(e.to_string()))?,
        });
        req.set_timeout(CALL_TIMEOUT);
        let token = match client.sign_wit_svid(req).await {
            Ok(r) => r.into_inner().token,
            Err(s)
                if s.code() == tonic::Code::NotFound
                    || s.code() == tonic::Code::InvalidArgument =>
            {
                tracing::warn!(entry = %entry.id, error = %s.message(), "the server refused a WIT-SVID");
                return Ok(());
            }
            Err(s) => return Err(s.into()),
        };
        let now = self.now();
        let wit = verify_wit(
            &token,
            &*self.identity.bundles(),
            WitProfile::WitSvid,
            unix_seconds(now),
            0,
        )?;
        if wit.subject.as_spiffe() != Some(&entry.spiffe_id) || wit.cnf_key != *key.public_key() {
            tracing::error!(entry = %entry.id, "the server returned a WIT-SVID for another identity or key; discarded");
            return Ok(());
        }
        let v = token_validity(None, wit.expiry, entry.revision, now);
        self.cache.put_wit(
            entry.id.clone(),
            WitSvidEntry {
                spiffe_id: entry.spiffe_id.clone(),
                token,
                key: Arc::new(key),
                hint: entry.hint.clone(),
            },
            v,
        );
        Ok(())
    }

    /// JWT-SVIDs for `audience`, for every entry of a workload with `selectors` (or only
    /// `only`): from the cache until half life, else minted by the server.
    pub async fn jwt_svids(
        &self,
        selectors: &BTreeSet<Selector>,
        audience: &[String],
        only: Option<&SpiffeId>,
    ) -> Result<Vec<JwtSvidEntry>, Status> {
        let entries: Vec<Arc<EntryRecord>> = self
            .cache
            .matching(selectors)
            .into_iter()
            .filter(|e| only.is_none_or(|id| *id == e.spiffe_id))
            .collect();
        if entries.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let now = self.now();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(svid) = self.cache.jwt(&e.id, audience, now) {
                out.push(svid);
                continue;
            }
            let mut client = self
                .current_client()
                .ok_or_else(|| Status::unavailable("the agent cannot reach the server; retry"))?;
            let mut req = tonic::Request::new(SignJwtSvidRequest {
                entry_id: e.id.clone(),
                audience: audience.to_vec(),
            });
            req.set_timeout(Duration::from_secs(5));
            let token = client
                .sign_jwt_svid(req)
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::InvalidArgument => Status::invalid_argument(s.message()),
                    _ => {
                        tracing::warn!(entry = %e.id, error = %s.message(), "JWT-SVID minting failed");
                        Status::unavailable("the agent cannot mint a JWT-SVID now; retry")
                    }
                })?
                .into_inner()
                .token;
            let verified = verify_jwt_svid(
                &token,
                &*self.identity.bundles(),
                &audience[0],
                unix_seconds(now),
                0,
            )
            .map_err(|err| {
                tracing::error!(entry = %e.id, error = %err, token = %sha256_b64url(token.as_bytes()), "the server returned an invalid JWT-SVID");
                Status::internal("invalid JWT-SVID from the server")
            })?;
            let iat = verified
                .claims
                .get("iat")
                .and_then(serde_json::Value::as_i64);
            let svid = JwtSvidEntry {
                spiffe_id: e.spiffe_id.clone(),
                token,
                hint: e.hint.clone(),
            };
            self.cache.put_jwt(
                &e.id,
                audience,
                svid.clone(),
                token_validity(iat, verified.expiry, e.revision, now),
                now,
            );
            out.push(svid);
        }
        Ok(out)
    }
}
