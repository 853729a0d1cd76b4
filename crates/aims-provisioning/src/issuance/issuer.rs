//! The server's issuance service: the CA manager joined to the store.
//!
//! It persists every CA slot (public parts only) so that all replicas of a trust domain publish
//! one bundle, republishes the bundle when its keys change (a new `spiffe_sequence`), and records
//! every credential it issues (AIMS PR-1: lifecycle state of credentials).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aims_core::{SharedClock, SpiffeId, TrustDomain, WorkloadIdentifier, unix_seconds};
use aims_credentials::authority::{RotationEvent, SlotRecord};
use aims_credentials::ca::{CertificateRequest, SubjectKey, X509SvidRequest};
use aims_credentials::jose::sha256_b64url;
use aims_credentials::{
    BundleSet, CaManager, IssueError, JwtSvid, PublicKey, TrustBundle, Wit, X509Svid,
};
use aims_store::{CredentialKind, IssuedCredential, SlotRow, SlotStatus, Store};
use jsonwebtoken::Algorithm;

use crate::issuance::error::IssuanceError;

/// The bundle as published: the parsed bundle and its document.
#[derive(Debug, Clone)]
pub struct PublishedBundle {
    /// The bundle.
    pub bundle: Arc<TrustBundle>,
    /// The SPIFFE bundle JWK Set, as served by the bundle endpoint.
    pub document: String,
}

/// The authorization server's published token keys (from every live slot of every replica).
#[derive(Default)]
struct TokenKeySet {
    keys: std::collections::BTreeMap<String, PublicKey>,
    jwks: Arc<String>,
}

/// Limits on what callers may request.
#[derive(Debug, Clone, Copy)]
pub struct IssuanceLimits {
    /// Default and maximum X509-SVID lifetime.
    pub x509_svid_ttl: Duration,
    /// Lifetime of an agent's own X509-SVID (SPIRE's `agent_ttl`).
    pub agent_svid_ttl: Duration,
    /// Default and maximum JWT-SVID lifetime.
    pub jwt_svid_ttl: Duration,
    /// Default and maximum WIT-SVID lifetime.
    pub wit_svid_ttl: Duration,
    /// `spiffe_refresh_hint`.
    pub refresh_hint: Duration,
}

/// Whose X509-SVID is issued, which decides its lifetime.
#[derive(Debug, Clone, Copy)]
pub enum X509Lifetime {
    /// A workload's (or a server's): the requested lifetime, capped at `x509_svid_ttl`;
    /// `None` or zero means the default.
    Workload(Option<Duration>),
    /// An agent's own identity: `agent_svid_ttl`, so that an operator who shortens workload
    /// SVIDs does not also shorten how long an agent outlives a server outage.
    Agent,
}

/// Issues credentials for the trust domain and keeps its bundle published.
pub struct Issuer {
    trust_domain: TrustDomain,
    server_id: String,
    ca: CaManager,
    store: Store,
    clock: SharedClock,
    limits: IssuanceLimits,
    published: RwLock<Arc<PublishedBundle>>,
    /// Our bundle and every federated one, for verifiers in this process.
    bundles: Arc<BundleSet>,
    /// The authorization server's keys.
    token_keys: RwLock<Arc<TokenKeySet>>,
}

impl Issuer {
    /// Restores this server's slots from the store, runs the rotation schedule once, and
    /// publishes the bundle.
    pub async fn start(
        ca: CaManager,
        store: Store,
        server_id: String,
        clock: SharedClock,
        limits: IssuanceLimits,
    ) -> Result<Self, IssuanceError> {
        let trust_domain = ca.trust_domain().clone();
        let now = unix_seconds(clock.now());
        let mine: Vec<SlotRow> = store
            .live_slots(now)
            .await?
            .into_iter()
            .filter(|s| s.server_id == server_id)
            .collect();
        let record = |status: SlotStatus| -> Result<Option<SlotRecord>, IssuanceError> {
            mine.iter()
                .find(|s| s.status == status)
                .map(|s| {
                    serde_json::from_str(&s.record)
                        .map_err(|e| IssuanceError::Config(format!("stored CA slot: {e}")))
                })
                .transpose()
        };
        ca.restore(
            record(SlotStatus::Active)?.as_ref(),
            record(SlotStatus::Prepared)?.as_ref(),
        )?;
        let issuer = Self {
            published: RwLock::new(Arc::new(PublishedBundle {
                bundle: Arc::new(TrustBundle::new(trust_domain.clone())),
                document: String::new(),
            })),
            bundles: Arc::new(BundleSet::new()),
            token_keys: RwLock::new(Arc::new(TokenKeySet::default())),
            trust_domain,
            server_id,
            ca,
            store,
            clock,
            limits,
        };
        issuer.tick().await?;
        Ok(issuer)
    }

    /// Advances CA rotation, persists what changed, prunes expired slots and republishes the
    /// bundle if its keys changed (including slots other replicas added).
    pub async fn tick(&self) -> Result<(), IssuanceError> {
        let now = self.clock.now();
        for event in self.ca.tick(now)? {
            let (record, status) = match &event {
                RotationEvent::Prepared(r) => (r, SlotStatus::Prepared),
                RotationEvent::Activated(r) => (r, SlotStatus::Active),
            };
            tracing::info!(
                slot = %record.id,
                status = ?status,
                not_after = record.not_after,
                "CA slot {}",
                if status == SlotStatus::Active { "activated" } else { "prepared" }
            );
            self.store
                .put_slot(&SlotRow {
                    server_id: self.server_id.clone(),
                    slot_id: record.id.clone(),
                    status,
                    not_after: record.not_after,
                    record: serde_json::to_string(record)
                        .map_err(|e| IssuanceError::Config(e.to_string()))?,
                })
                .await?;
        }
        let now_secs = unix_seconds(now);
        for expired in self.store.prune_slots(&self.server_id, now_secs).await? {
            if let Ok(rec) = serde_json::from_str::<SlotRecord>(&expired.record) {
                self.ca.forget(&rec)?;
                tracing::info!(slot = %rec.id, "expired CA slot removed");
            }
        }
        self.republish().await
    }

    /// Builds the bundle from every replica's live CA slots and publishes it if its keys
    /// changed; adopts what the store holds either way (another replica may have published it).
    pub async fn republish(&self) -> Result<(), IssuanceError> {
        let now = self.clock.now();
        let rows = self.store.live_slots(unix_seconds(now)).await?;
        let records: Vec<SlotRecord> = rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.record).ok())
            .collect();
        self.publish_token_keys(&records);
        let mut bundle =
            aims_credentials::authority::bundle_from_slots(&self.trust_domain, &records, now)?;
        if let Some(up) = self.ca.upstream() {
            for root in up.roots() {
                bundle.add_x509_authority(root.clone())?;
            }
        }
        let digest = sha256_b64url(bundle.to_jwks()?.as_bytes());
        let hint = self.limits.refresh_hint.as_secs();
        let row = self
            .store
            .publish_bundle(self.trust_domain.name(), &digest, |sequence| {
                let mut b = bundle.clone();
                b.set_sequence(u64::try_from(sequence).unwrap_or(0));
                b.set_refresh_hint(Some(hint));
                b.to_jwks().unwrap_or_default()
            })
            .await?;
        let current = self.published();
        if current.document != row.document {
            let parsed =
                TrustBundle::from_jwks(self.trust_domain.clone(), row.document.as_bytes())?;
            tracing::info!(
                sequence = parsed.sequence(),
                x509_authorities = parsed.x509_authorities().len(),
                jwt_authorities = parsed.jwt_authorities().count(),
                "trust bundle published"
            );
            let parsed = Arc::new(parsed);
            self.bundles.put((*parsed).clone());
            if let Ok(mut p) = self.published.write() {
                *p = Arc::new(PublishedBundle {
                    bundle: parsed,
                    document: row.document,
                });
            }
        }
        Ok(())
    }

    /// Publishes the token keys of `records` if the set changed.
    fn publish_token_keys(&self, records: &[SlotRecord]) {
        let keys: std::collections::BTreeMap<String, PublicKey> = records
            .iter()
            .filter_map(|r| r.token_key().ok().flatten())
            .collect();
        let current = self.token_key_set();
        if current.keys.keys().eq(keys.keys()) && !current.jwks.is_empty() {
            return;
        }
        let pairs: Vec<(String, PublicKey)> =
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let jwks = Arc::new(aims_token::keys::jwks_document(&pairs));
        tracing::info!(keys = pairs.len(), "authorization server keys published");
        if let Ok(mut t) = self.token_keys.write() {
            *t = Arc::new(TokenKeySet { keys, jwks });
        }
    }

    fn token_key_set(&self) -> Arc<TokenKeySet> {
        self.token_keys
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle as currently published.
    pub fn published(&self) -> Arc<PublishedBundle> {
        self.published
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Our bundle and federated bundles, for verification.
    pub fn bundles(&self) -> Arc<BundleSet> {
        self.bundles.clone()
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn check_member(&self, id: &SpiffeId) -> Result<(), IssueError> {
        if id.is_member_of(&self.trust_domain) {
            Ok(())
        } else {
            Err(IssueError::Refused(format!(
                "{id} is not in trust domain {}",
                self.trust_domain
            )))
        }
    }

    fn x509_ttl(&self, lifetime: X509Lifetime) -> Duration {
        match lifetime {
            X509Lifetime::Workload(requested) => Self::ttl(requested, self.limits.x509_svid_ttl),
            X509Lifetime::Agent => self.limits.agent_svid_ttl,
        }
    }

    fn ttl(requested: Option<Duration>, max: Duration) -> Duration {
        requested
            .filter(|t| !t.is_zero())
            .map_or(max, |t| t.min(max))
    }

    async fn record(
        &self,
        kind: CredentialKind,
        serial: String,
        id: &SpiffeId,
        expires_at: i64,
        issuer: &str,
    ) -> Result<(), IssuanceError> {
        metrics::counter!("aims_svids_issued_total", "kind" => kind.as_str()).increment(1);
        self.store
            .record_issued(&IssuedCredential {
                kind,
                serial,
                spiffe_id: id.clone(),
                issued_at: unix_seconds(self.clock.now()),
                expires_at,
                issuer: issuer.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Issues an X509-SVID for `id` from a DER CSR, after checking the CSR's SANs against
    /// `id` and `dns_names`.
    pub async fn issue_x509_from_csr(
        &self,
        id: &SpiffeId,
        csr_der: &[u8],
        dns_names: &[String],
        lifetime: X509Lifetime,
    ) -> Result<X509Svid, IssuanceError> {
        self.check_member(id)?;
        let csr = CertificateRequest::from_der(csr_der)?;
        csr.check_for(id, dns_names)?;
        self.issue_x509(id, csr.subject_key(), dns_names, lifetime)
            .await
    }

    /// Issues an X509-SVID certifying `subject_key`.
    pub async fn issue_x509(
        &self,
        id: &SpiffeId,
        subject_key: &SubjectKey,
        dns_names: &[String],
        lifetime: X509Lifetime,
    ) -> Result<X509Svid, IssuanceError> {
        self.check_member(id)?;
        let slot = self.ca.active().ok_or(IssueError::NoActiveAuthority)?;
        let svid = slot.x509.issue(&X509SvidRequest {
            spiffe_id: id,
            subject_key,
            dns_names,
            ttl: self.x509_ttl(lifetime),
            now: self.clock.now(),
        })?;
        self.record(
            CredentialKind::X509Svid,
            svid.serial_hex(),
            id,
            unix_seconds(svid.not_after),
            slot.id(),
        )
        .await?;
        Ok(svid)
    }

    /// Mints a JWT-SVID.
    pub async fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<JwtSvid, IssuanceError> {
        self.check_member(id)?;
        let slot = self.ca.active().ok_or(IssueError::NoActiveAuthority)?;
        let svid = slot.jwt.mint_jwt_svid(
            id,
            audience,
            Self::ttl(ttl, self.limits.jwt_svid_ttl),
            self.clock.now(),
        )?;
        self.record(
            CredentialKind::JwtSvid,
            sha256_b64url(svid.token.as_bytes()),
            id,
            svid.expiry,
            slot.id(),
        )
        .await?;
        Ok(svid)
    }

    /// Mints a WIT-SVID binding `cnf_key`.
    pub async fn mint_wit_svid(
        &self,
        id: &SpiffeId,
        cnf_key: &PublicKey,
        cnf_alg: Algorithm,
        ttl: Option<Duration>,
    ) -> Result<Wit, IssuanceError> {
        self.check_member(id)?;
        let slot = self.ca.active().ok_or(IssueError::NoActiveAuthority)?;
        let wit = slot.wit.mint_wit(
            &WorkloadIdentifier::Spiffe(id.clone()),
            cnf_key,
            cnf_alg,
            Self::ttl(ttl, self.limits.wit_svid_ttl),
            self.clock.now(),
            None,
        )?;
        self.record(
            CredentialKind::WitSvid,
            wit.hash(),
            id,
            wit.expiry,
            slot.id(),
        )
        .await?;
        Ok(wit)
    }
}

impl aims_token::keys::TokenKeys for Issuer {
    fn signing_key(&self) -> Option<aims_credentials::SlotKey> {
        self.ca.active().map(|s| s.token.clone())
    }

    fn verifying_key(&self, kid: &str) -> Option<PublicKey> {
        self.token_key_set().keys.get(kid).cloned()
    }

    fn jwks(&self) -> Arc<String> {
        self.token_key_set().jwks.clone()
    }
}
