//! Signing authorities and their rotation, on SPIRE's model (spiffe/spire #5317).
//!
//! A *slot* holds everything one server signs with for one CA lifetime: an X.509 intermediate
//! (under a self-signed or upstream root), a JWT-SVID key and a WIT-SVID key. A server has a
//! current slot and, for part of its life, a next one:
//!
//! * at 1/2 of the current slot's life the next slot is **prepared**: its keys exist and its
//!   public parts go into the trust bundle, but it signs nothing;
//! * at 1/6 of the current slot's life remaining the next slot is **activated** and signs from
//!   then on; the old slot stays in the bundle until it expires, since what it signed is still
//!   valid.
//!
//! So every relying party holds a new authority for at least a third of a CA lifetime before
//! the first credential it signed can reach them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aims_core::{TrustDomain, unix_seconds};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::bundle::TrustBundle;
use crate::ca::{UpstreamAuthority, X509Authority};
use crate::error::{IssueError, VerifyError};
use crate::jwt_authority::{JwtAuthority, JwtAuthorityUse, new_kid};
use crate::key_manager::KeyManager;
use crate::keys::{KeyError, KeyType, PrivateKey, PublicKey};

/// How long authorities live and what keys they use.
#[derive(Debug, Clone, Copy)]
pub struct AuthorityPolicy {
    /// Lifetime of each slot (SPIRE's `ca_ttl`; default 24 h).
    pub ca_ttl: Duration,
    /// Key type of the CA and JWT keys (default ECDSA P-256).
    pub key_type: KeyType,
}

impl Default for AuthorityPolicy {
    fn default() -> Self {
        Self {
            ca_ttl: Duration::from_secs(24 * 3600),
            key_type: KeyType::EcP256,
        }
    }
}

/// The signing material of one slot.
pub struct AuthoritySlot {
    record: SlotRecord,
    /// The X.509 signing CA.
    pub x509: X509Authority,
    /// The JWT-SVID signing key.
    pub jwt: JwtAuthority,
    /// The WIT-SVID signing key.
    pub wit: JwtAuthority,
    /// The authorization server's token signing key (access tokens, transaction tokens, JWT
    /// grants): published in the AS's JWKS with this slot, so it is public before it signs.
    pub token: SlotKey,
}

/// A signing key of a slot with its `kid`.
#[derive(Clone)]
pub struct SlotKey {
    /// The `kid`.
    pub kid: String,
    /// The key.
    pub key: Arc<PrivateKey>,
}

impl std::fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public half of a slot key as persisted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotKeyRecord {
    /// `kid`.
    pub kid: String,
    /// Key-manager name of the private key.
    pub key_id: String,
    /// The public key.
    pub public: Jwk,
}

impl AuthoritySlot {
    /// The slot's identifier.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// What the store keeps of this slot.
    pub fn record(&self) -> &SlotRecord {
        &self.record
    }

    /// When the slot's authorities expire.
    pub fn not_after(&self) -> SystemTime {
        self.record.not_after()
    }
}

/// What is persisted of a slot: its public parts and the names of its keys in the
/// [`KeyManager`]. It holds no private key material.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotRecord {
    /// Slot identifier.
    pub id: String,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// The intermediate certificate, base64 DER.
    pub intermediate: String,
    /// Upstream certificates above the intermediate, base64 DER.
    #[serde(default)]
    pub upper_chain: Vec<String>,
    /// The roots the intermediate chains to (published as X.509 authorities), base64 DER.
    pub roots: Vec<String>,
    /// Key-manager name of the intermediate's key.
    pub x509_key_id: String,
    /// `kid` of the JWT-SVID key.
    pub jwt_kid: String,
    /// Key-manager name of the JWT-SVID key.
    pub jwt_key_id: String,
    /// Public JWT-SVID key.
    pub jwt_public: Jwk,
    /// `kid` of the WIT-SVID key.
    pub wit_kid: String,
    /// Key-manager name of the WIT-SVID key.
    pub wit_key_id: String,
    /// Public WIT-SVID key.
    pub wit_public: Jwk,
    /// The authorization server's token key (absent in slots made before AIMS had one; such
    /// a slot is not restored and a new one takes its place).
    #[serde(default)]
    pub token: Option<SlotKeyRecord>,
}

fn from_epoch(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn decode_certs(list: &[String]) -> Result<Vec<CertificateDer<'static>>, IssueError> {
    list.iter()
        .map(|b| {
            STANDARD
                .decode(b)
                .map(CertificateDer::from)
                .map_err(|_| IssueError::Certificate("stored certificate is not base64".into()))
        })
        .collect()
}

impl SlotRecord {
    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        from_epoch(self.not_before)
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        from_epoch(self.not_after)
    }

    /// The `kid` and public key of the slot's token key, if it has one.
    pub fn token_key(&self) -> Result<Option<(String, PublicKey)>, VerifyError> {
        self.token
            .as_ref()
            .map(|t| {
                PublicKey::from_jwk(&t.public)
                    .map(|k| (t.kid.clone(), k))
                    .map_err(|e| VerifyError::Malformed(e.to_string()))
            })
            .transpose()
    }

    /// Adds this slot's public authorities to `bundle`.
    pub fn publish_into(&self, bundle: &mut TrustBundle) -> Result<(), VerifyError> {
        for root in decode_certs(&self.roots).map_err(|e| VerifyError::Malformed(e.to_string()))? {
            bundle.add_x509_authority(root)?;
        }
        let jwt = PublicKey::from_jwk(&self.jwt_public)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        bundle.add_jwt_authority(&self.jwt_kid, jwt)?;
        let wit = PublicKey::from_jwk(&self.wit_public)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        bundle.add_wit_authority(&self.wit_kid, wit)?;
        Ok(())
    }
}

/// What the rotation schedule asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Nothing to do.
    Wait,
    /// Create the next slot and publish it.
    Prepare,
    /// Make the prepared slot the one that signs.
    Activate,
}

/// The rotation schedule: prepare at 1/2 of the current slot's life, activate at 1/6 remaining.
pub fn rotation_step(
    now: SystemTime,
    current_not_before: SystemTime,
    current_not_after: SystemTime,
    next_prepared: bool,
) -> RotationStep {
    let life = current_not_after
        .duration_since(current_not_before)
        .unwrap_or(Duration::ZERO);
    let prepare_at = current_not_before + life / 2;
    let activate_at = current_not_after - life / 6;
    if next_prepared {
        if now >= activate_at {
            RotationStep::Activate
        } else {
            RotationStep::Wait
        }
    } else if now >= prepare_at {
        RotationStep::Prepare
    } else {
        RotationStep::Wait
    }
}

/// What a [`CaManager::tick`] changed, for the caller to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum RotationEvent {
    /// A slot was created and published, not yet signing.
    Prepared(SlotRecord),
    /// This slot now signs (it was prepared before, or created because none was usable).
    Activated(SlotRecord),
}

/// The authorities of one server and their rotation.
pub struct CaManager {
    trust_domain: TrustDomain,
    policy: AuthorityPolicy,
    keys: Arc<dyn KeyManager>,
    upstream: Option<UpstreamAuthority>,
    current: RwLock<Option<Arc<AuthoritySlot>>>,
    next: RwLock<Option<Arc<AuthoritySlot>>>,
}

impl CaManager {
    /// A manager with no slot yet; the first [`tick`](Self::tick) creates and activates one.
    pub fn new(
        trust_domain: TrustDomain,
        policy: AuthorityPolicy,
        keys: Arc<dyn KeyManager>,
        upstream: Option<UpstreamAuthority>,
    ) -> Self {
        Self {
            trust_domain,
            policy,
            keys,
            upstream,
            current: RwLock::new(None),
            next: RwLock::new(None),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The upstream authority, if the trust domain has one.
    pub fn upstream(&self) -> Option<&UpstreamAuthority> {
        self.upstream.as_ref()
    }

    /// Restores the slots a previous run persisted. A record whose keys are gone is skipped
    /// (its public parts stay in the bundle through the store until they expire).
    pub fn restore(
        &self,
        current: Option<&SlotRecord>,
        next: Option<&SlotRecord>,
    ) -> Result<(), IssueError> {
        if let Some(rec) = current {
            let slot = self.load(rec)?;
            *self.current.write().map_err(|_| lock())? = slot.map(Arc::new);
        }
        if let Some(rec) = next {
            let slot = self.load(rec)?;
            *self.next.write().map_err(|_| lock())? = slot.map(Arc::new);
        }
        Ok(())
    }

    fn load(&self, rec: &SlotRecord) -> Result<Option<AuthoritySlot>, IssueError> {
        let Some(token) = &rec.token else {
            return Ok(None);
        };
        let (Some(x509_key), Some(jwt_key), Some(wit_key), Some(token_key)) = (
            self.keys.get(&rec.x509_key_id)?,
            self.keys.get(&rec.jwt_key_id)?,
            self.keys.get(&rec.wit_key_id)?,
            self.keys.get(&token.key_id)?,
        ) else {
            return Ok(None);
        };
        let x509 = X509Authority::restore(
            decode_certs(std::slice::from_ref(&rec.intermediate))?
                .pop()
                .ok_or_else(|| IssueError::Certificate("no intermediate".into()))?,
            decode_certs(&rec.upper_chain)?,
            decode_certs(&rec.roots)?,
            x509_key,
        )?;
        Ok(Some(AuthoritySlot {
            record: rec.clone(),
            x509,
            jwt: JwtAuthority::new(&rec.jwt_kid, jwt_key, JwtAuthorityUse::JwtSvid)?,
            wit: JwtAuthority::new(&rec.wit_kid, wit_key, JwtAuthorityUse::WitSvid)?,
            token: SlotKey {
                kid: token.kid.clone(),
                key: token_key,
            },
        }))
    }

    fn create(&self, not_before: SystemTime) -> Result<AuthoritySlot, IssueError> {
        let id = format!("{}-{}", unix_seconds(not_before), &new_kid()?[..8]);
        let not_after = not_before + self.policy.ca_ttl;
        let x509_key_id = format!("x509-ca-{id}");
        let jwt_key_id = format!("jwt-svid-{id}");
        let wit_key_id = format!("wit-svid-{id}");
        let token_key_id = format!("as-token-{id}");
        let x509_key = self.keys.generate(&x509_key_id, self.policy.key_type)?;
        let x509 = match &self.upstream {
            None => X509Authority::create_self_signed(
                &self.trust_domain,
                &id,
                x509_key,
                not_before,
                not_after,
            )?,
            Some(up) => X509Authority::create_under_upstream(
                &self.trust_domain,
                &id,
                x509_key,
                up,
                not_before,
                not_after,
            )?,
        };
        // JWT-SVIDs and WIT-SVIDs only allow RS/ES/PS: an Ed25519 CA still signs them with P-256.
        let jwt_type = match self.policy.key_type {
            KeyType::Ed25519 => KeyType::EcP256,
            other => other,
        };
        let jwt_key = self.keys.generate(&jwt_key_id, jwt_type)?;
        let wit_key = self.keys.generate(&wit_key_id, jwt_type)?;
        let token_key = self.keys.generate(&token_key_id, jwt_type)?;
        let jwt_kid = new_kid()?;
        let wit_kid = new_kid()?;
        let token = SlotKey {
            kid: new_kid()?,
            key: token_key,
        };
        let record = SlotRecord {
            id,
            not_before: unix_seconds(not_before),
            not_after: unix_seconds(x509.not_after()),
            intermediate: STANDARD.encode(x509.intermediate()),
            upper_chain: x509
                .upper_chain()
                .iter()
                .map(|c| STANDARD.encode(c))
                .collect(),
            roots: x509.roots().iter().map(|c| STANDARD.encode(c)).collect(),
            x509_key_id,
            jwt_public: jwt_key.public_key().jwk().clone(),
            jwt_kid: jwt_kid.clone(),
            jwt_key_id,
            wit_public: wit_key.public_key().jwk().clone(),
            wit_kid: wit_kid.clone(),
            wit_key_id,
            token: Some(SlotKeyRecord {
                kid: token.kid.clone(),
                key_id: token_key_id,
                public: token.key.public_key().jwk().clone(),
            }),
        };
        Ok(AuthoritySlot {
            record,
            x509,
            jwt: JwtAuthority::new(&jwt_kid, jwt_key, JwtAuthorityUse::JwtSvid)?,
            wit: JwtAuthority::new(&wit_kid, wit_key, JwtAuthorityUse::WitSvid)?,
            token,
        })
    }

    /// Advances the rotation schedule to `now`, returning what changed.
    pub fn tick(&self, now: SystemTime) -> Result<Vec<RotationEvent>, IssueError> {
        let mut events = Vec::new();
        let mut current = self.current.write().map_err(|_| lock())?;
        let mut next = self.next.write().map_err(|_| lock())?;
        // No usable current slot (first start, or down past its expiry): use a prepared one
        // if it is still valid, else create one and sign with it at once.
        if current.as_ref().is_none_or(|c| c.not_after() <= now) {
            let slot = match next.take() {
                Some(n) if n.not_after() > now => n,
                _ => Arc::new(self.create(now)?),
            };
            events.push(RotationEvent::Activated(slot.record.clone()));
            *current = Some(slot);
        }
        let Some(cur) = current.clone() else {
            return Ok(events);
        };
        match rotation_step(
            now,
            cur.record.not_before(),
            cur.record.not_after(),
            next.is_some(),
        ) {
            RotationStep::Wait => {}
            RotationStep::Prepare => {
                let slot = Arc::new(self.create(now)?);
                events.push(RotationEvent::Prepared(slot.record.clone()));
                *next = Some(slot);
            }
            RotationStep::Activate => {
                if let Some(n) = next.take() {
                    events.push(RotationEvent::Activated(n.record.clone()));
                    *current = Some(n);
                }
            }
        }
        Ok(events)
    }

    /// The slot that signs now.
    pub fn active(&self) -> Option<Arc<AuthoritySlot>> {
        self.current.read().ok()?.clone()
    }

    /// The prepared slot, if any.
    pub fn prepared(&self) -> Option<Arc<AuthoritySlot>> {
        self.next.read().ok()?.clone()
    }

    /// Deletes the keys of a slot that has expired.
    pub fn forget(&self, record: &SlotRecord) -> Result<(), KeyError> {
        self.keys.delete(&record.x509_key_id)?;
        self.keys.delete(&record.jwt_key_id)?;
        self.keys.delete(&record.wit_key_id)?;
        match &record.token {
            Some(t) => self.keys.delete(&t.key_id),
            None => Ok(()),
        }
    }
}

fn lock() -> IssueError {
    IssueError::Certificate("authority lock poisoned".into())
}

/// Builds the trust bundle of `trust_domain` from every published slot still valid at `now`
/// (ours and other servers' of the same trust domain), plus upstream roots.
pub fn bundle_from_slots<'a>(
    trust_domain: &TrustDomain,
    slots: impl IntoIterator<Item = &'a SlotRecord>,
    now: SystemTime,
) -> Result<TrustBundle, VerifyError> {
    let mut bundle = TrustBundle::new(trust_domain.clone());
    for rec in slots {
        if rec.not_after() > now {
            rec.publish_into(&mut bundle)?;
        }
    }
    Ok(bundle)
}
