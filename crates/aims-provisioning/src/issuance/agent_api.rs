//! The agent API: node attestation and everything an attested agent asks of the server, as
//! gRPC (`aims.agent.v1.AgentService`) over mutual TLS with X509-SVIDs.
//!
//! The listener accepts clients without a certificate only so that a new agent can attest; every
//! other call requires the agent's X509-SVID (verified by the TLS layer against our bundle) and
//! an attested, unbanned node record for its SPIFFE ID. An agent may only obtain SVIDs for
//! registration entries whose parent is its own ID (AIMS PR-4: the issuance decision is the
//! server's; the agent only matches workloads to what it was given).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::node::{
    AttestedNodeIdentity, X509PopVerifier, join_token_agent_id, join_token_digest, new_join_token,
};
use crate::proto::agent_service_server::{AgentService, AgentServiceServer};
use crate::proto::{
    AgentSvid, AttestRequest, RenewAgentRequest, SignJwtSvidRequest, SignWitSvidRequest,
    SignX509SvidsRequest, SignX509SvidsResponse, SignedToken, SyncRequest, SyncResponse,
    X509SvidResult, attest_request,
};
use aims_authn::replay::{ReplayCache, ReplayKind};
use aims_authn::transport::ConnectionInfo;
use aims_core::{SpiffeId, unix_seconds};
use aims_credentials::ca::CertificateRequest;
use aims_credentials::jose::SPIFFE_JWT_ALGORITHMS;
use aims_credentials::{IssueError, X509Svid, cnf_key_from_jwk};
use aims_store::{AttestedNode, EntryFilter, RegistrationEntry, Selector, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::issuance::error::IssuanceError;
use crate::issuance::issuer::{Issuer, X509Lifetime};
use crate::issuance::registrations::Registrations;
use crate::issuance::sync_stream::AgentSync;

/// The most CSRs one `SignX509Svids` call may carry.
pub const MAX_CSRS_PER_CALL: usize = 1000;
/// The most audiences of one JWT-SVID.
const MAX_AUDIENCES: usize = 32;
/// The longest join token accepted (ours are 43 characters).
const MAX_JOIN_TOKEN: usize = 256;

/// The agent API service.
pub struct AgentApi {
    issuer: Arc<Issuer>,
    registrations: Arc<Registrations>,
    x509pop: Option<Arc<X509PopVerifier>>,
    replay: Arc<ReplayCache>,
    /// Ends every `Sync` stream when the server stops.
    shutdown: CancellationToken,
}

impl AgentApi {
    /// A service issuing from `issuer`, syncing agents from `registrations`; `x509pop` enables
    /// x509pop attestation; streams end when `shutdown` fires.
    pub fn new(
        issuer: Arc<Issuer>,
        registrations: Arc<Registrations>,
        x509pop: Option<X509PopVerifier>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            issuer,
            registrations,
            x509pop: x509pop.map(Arc::new),
            replay: Arc::new(ReplayCache::new(100_000, 60)),
            shutdown,
        }
    }

    /// The service as an axum router (to be served by [`aims_authn::transport::serve_tls`], which
    /// attaches the peer's verified SPIFFE ID to every request).
    pub fn into_router(self) -> axum::Router {
        tonic::service::Routes::new(AgentServiceServer::new(self)).into_axum_router()
    }
}

/// Creates a join token valid for `ttl` that attests an agent as `spiffe_id` (default: an ID
/// derived from the token). Returns the token, the agent ID and the expiry (Unix seconds); the
/// store keeps only the token's digest.
pub async fn create_join_token(
    issuer: &Issuer,
    spiffe_id: Option<SpiffeId>,
    ttl: Duration,
) -> Result<(String, SpiffeId, i64), IssuanceError> {
    let token = new_join_token()?;
    let agent_id = match &spiffe_id {
        Some(id) => id.clone(),
        None => join_token_agent_id(issuer.trust_domain(), &token)
            .map_err(|e| IssuanceError::Config(e.to_string()))?,
    };
    let expires_at = unix_seconds(issuer.clock().now() + ttl);
    issuer
        .store()
        .create_join_token(&join_token_digest(&token), spiffe_id.as_ref(), expires_at)
        .await?;
    tracing::info!(agent = %agent_id, expires_at, "join token created");
    Ok((token, agent_id, expires_at))
}

/// The gRPC status for a server error: the caller's fault, or ours (logged, not detailed).
fn status(e: IssuanceError) -> Status {
    match e {
        IssuanceError::Issue(
            IssueError::InvalidCsr(_)
            | IssueError::Refused(_)
            | IssueError::InvalidId(_)
            | IssueError::Key(_),
        ) => Status::invalid_argument(e.to_string()),
        IssuanceError::Store(StoreError::NotFound(m)) => Status::not_found(m),
        IssuanceError::Store(StoreError::Invalid(m)) => Status::invalid_argument(m),
        IssuanceError::Store(StoreError::Unavailable(_)) => {
            tracing::warn!(error = %e, "store unavailable in the agent API");
            Status::unavailable("the store is unavailable; retry")
        }
        other => {
            tracing::error!(error = %other, "agent API failure");
            Status::internal("internal error; see the server log")
        }
    }
}

fn store_status(e: StoreError) -> Status {
    status(IssuanceError::Store(e))
}

/// The verified SPIFFE ID and leaf expiry of the caller's X509-SVID.
fn peer<T>(req: &Request<T>) -> Result<(SpiffeId, Option<SystemTime>), Status> {
    let info = req
        .extensions()
        .get::<ConnectionInfo>()
        .ok_or_else(|| Status::unauthenticated("an agent X509-SVID is required"))?;
    let id = info
        .peer_spiffe_id
        .clone()
        .ok_or_else(|| Status::unauthenticated("an agent X509-SVID is required"))?;
    let not_after = info
        .peer_certificates
        .as_deref()
        .and_then(|c| c.first())
        .and_then(|leaf| X509Certificate::from_der(leaf).ok())
        .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    Ok((id, not_after))
}

fn ttl(secs: u32) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
}

fn agent_svid(issuer: &Issuer, svid: &X509Svid) -> AgentSvid {
    AgentSvid {
        spiffe_id: svid.spiffe_id.to_string(),
        chain: svid.chain.iter().map(|c| c.to_vec()).collect(),
        bundle: issuer.published().document.clone(),
    }
}

impl AgentApi {
    fn now(&self) -> SystemTime {
        self.issuer.clock().now()
    }

    /// The caller, if it is an attested agent that is not banned.
    async fn authorize<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(SpiffeId, Option<SystemTime>), Status> {
        let (id, not_after) = peer(req)?;
        Self::check_node(&self.issuer, &id).await?;
        Ok((id, not_after))
    }

    async fn check_node(issuer: &Issuer, id: &SpiffeId) -> Result<(), Status> {
        match issuer.store().get_node(id).await {
            Ok(node) if node.banned => Err(Status::permission_denied("agent is banned")),
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(Status::permission_denied("not an attested agent")),
            Err(e) => Err(store_status(e)),
        }
    }

    /// The entries named by `csrs` that this agent may issue, by id: looked up one by one
    /// for a few (a new or renewed entry), listed once for many (start-up, a mass renewal).
    async fn entries_for(
        &self,
        agent: &SpiffeId,
        csrs: &[crate::proto::X509SvidCsr],
    ) -> Result<HashMap<String, RegistrationEntry>, Status> {
        const LOOKUP_ONE_BY_ONE: usize = 16;
        let store = self.issuer.store();
        if csrs.len() > LOOKUP_ONE_BY_ONE {
            return Ok(store
                .list_entries(&EntryFilter {
                    spiffe_id: None,
                    parent_id: Some(agent.clone()),
                })
                .await
                .map_err(store_status)?
                .into_iter()
                .filter(|e| !e.disabled)
                .map(|e| (e.id.clone(), e))
                .collect());
        }
        let mut found = HashMap::new();
        for csr in csrs {
            match store.get_entry(&csr.entry_id).await {
                Ok(e) if e.parent_id == *agent && !e.disabled => {
                    found.insert(e.id.clone(), e);
                }
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(store_status(e)),
            }
        }
        Ok(found)
    }

    /// An entry this agent may issue.
    async fn entry_for(
        &self,
        agent: &SpiffeId,
        entry_id: &str,
    ) -> Result<RegistrationEntry, Status> {
        let entry = self
            .issuer
            .store()
            .get_entry(entry_id)
            .await
            .map_err(store_status)?;
        if entry.parent_id != *agent || entry.disabled {
            // The same answer as for an unknown entry: an agent learns nothing about others',
            // and a disabled entry (AIMS MO-3) gets nothing.
            return Err(Status::not_found(format!("entry {entry_id}")));
        }
        Ok(entry)
    }

    async fn join_token(&self, token: &str) -> Result<AttestedNodeIdentity, Status> {
        if token.is_empty() || token.len() > MAX_JOIN_TOKEN {
            return Err(Status::permission_denied("invalid join token"));
        }
        let digest = join_token_digest(token);
        let named = self
            .issuer
            .store()
            .consume_join_token(&digest, unix_seconds(self.now()))
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => Status::permission_denied("invalid join token"),
                other => store_status(other),
            })?;
        let spiffe_id = match named {
            Some(id) => id,
            None => join_token_agent_id(self.issuer.trust_domain(), token)
                .map_err(|e| Status::internal(e.to_string()))?,
        };
        Ok(AttestedNodeIdentity {
            spiffe_id,
            attestation_type: "join_token",
            selectors: vec![Selector {
                kind: "join_token".into(),
                value: digest,
            }],
        })
    }

    fn x509pop(
        &self,
        proof: &crate::proto::X509PopProof,
        csr: &[u8],
    ) -> Result<AttestedNodeIdentity, Status> {
        let verifier = self
            .x509pop
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("x509pop attestation is not enabled"))?;
        let now = self.now();
        let now_s = unix_seconds(now);
        verifier
            .verify(&proof.chain, &proof.proof, csr, now, |jti, exp| {
                self.replay
                    .check_and_insert(ReplayKind::X509Pop, "", jti, exp, now_s)
                    .is_ok()
            })
            .map_err(|e| Status::permission_denied(e.to_string()))
    }

    async fn record_node(
        &self,
        identity: &AttestedNodeIdentity,
        svid: &X509Svid,
    ) -> Result<(), Status> {
        self.issuer
            .store()
            .upsert_node(&AttestedNode {
                spiffe_id: identity.spiffe_id.clone(),
                attestation_type: identity.attestation_type.into(),
                cert_serial: svid.serial_hex(),
                cert_not_after: unix_seconds(svid.not_after),
                selectors: identity.selectors.clone(),
                banned: false,
            })
            .await
            .map_err(store_status)
    }
}

type SyncStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<SyncResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SyncStream = SyncStream;

    async fn attest(&self, request: Request<AttestRequest>) -> Result<Response<AgentSvid>, Status> {
        let req = request.into_inner();
        // The CSR is checked before a join token is spent on it; it names no identity, since
        // the attestation decides the agent's.
        let csr = CertificateRequest::from_der(&req.csr)
            .and_then(|c| c.check_names_nothing().map(|()| c))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let identity = match &req.method {
            Some(attest_request::Method::JoinToken(token)) => self.join_token(token).await?,
            Some(attest_request::Method::X509pop(proof)) => self.x509pop(proof, &req.csr)?,
            None => return Err(Status::invalid_argument("no attestation method")),
        };
        match self.issuer.store().get_node(&identity.spiffe_id).await {
            Ok(node) if node.banned => {
                tracing::warn!(agent = %identity.spiffe_id, "banned agent tried to attest");
                return Err(Status::permission_denied("agent is banned"));
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(store_status(e)),
        }
        let svid = self
            .issuer
            .issue_x509(
                &identity.spiffe_id,
                csr.subject_key(),
                &[],
                X509Lifetime::Agent,
            )
            .await
            .map_err(status)?;
        self.record_node(&identity, &svid).await?;
        tracing::info!(
            agent = %identity.spiffe_id,
            method = identity.attestation_type,
            serial = %svid.serial_hex(),
            "agent attested"
        );
        Ok(Response::new(agent_svid(&self.issuer, &svid)))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<AgentSvid>, Status> {
        let (agent, _) = self.authorize(&request).await?;
        let node = self
            .issuer
            .store()
            .get_node(&agent)
            .await
            .map_err(store_status)?;
        let svid = self
            .issuer
            .issue_x509_from_csr(&agent, &request.get_ref().csr, &[], X509Lifetime::Agent)
            .await
            .map_err(status)?;
        self.issuer
            .store()
            .upsert_node(&AttestedNode {
                cert_serial: svid.serial_hex(),
                cert_not_after: unix_seconds(svid.not_after),
                ..node
            })
            .await
            .map_err(store_status)?;
        tracing::debug!(agent = %agent, serial = %svid.serial_hex(), "agent SVID renewed");
        Ok(Response::new(agent_svid(&self.issuer, &svid)))
    }

    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let (agent, not_after) = self.authorize(&request).await?;
        let req = request.into_inner();
        let issuer = self.issuer.clone();
        // Subscribed before the first message is made, so no refresh after it goes unseen.
        let mut refreshed = self.registrations.subscribe();
        let mut sync = AgentSync::new(agent.clone(), self.registrations.clone(), req.incremental);
        let first = sync.first(&issuer, req.since);
        let shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(2);
        if first.delta {
            tracing::info!(
                agent = %agent,
                since = req.since,
                sequence = first.sequence,
                changed = first.entries.len(),
                removed = first.removed.len(),
                "agent sync resumed"
            );
        } else {
            tracing::debug!(agent = %agent, entries = first.entries.len(), "agent sync stream opened");
        }
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            // The stream ends when the agent's SVID expires: the agent reconnects with its
            // renewed one, so a long-lived connection never outlives the credential it began with.
            let expiry = not_after
                .and_then(|t| t.duration_since(issuer.clock().now()).ok())
                .unwrap_or(Duration::ZERO);
            let expired = tokio::time::sleep(expiry);
            tokio::pin!(expired);
            loop {
                tokio::select! {
                    changed = refreshed.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                        return;
                    }
                    () = &mut expired => {
                        let _ = tx.send(Err(Status::unauthenticated("agent SVID expired; reconnect with the renewed one"))).await;
                        return;
                    }
                }
                let Some(next) = sync.next(&issuer) else {
                    continue;
                };
                // Banned or evicted (on any replica): the stream ends; nothing more is sent.
                if next.agent_changed
                    && let Err(e) = Self::check_node(&issuer, &agent).await
                {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                if let Some(msg) = next.message
                    && tx.send(Ok(msg)).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn sign_x509_svids(
        &self,
        request: Request<SignX509SvidsRequest>,
    ) -> Result<Response<SignX509SvidsResponse>, Status> {
        let (agent, _) = self.authorize(&request).await?;
        let req = request.into_inner();
        if req.csrs.len() > MAX_CSRS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_CSRS_PER_CALL} CSRs per call"
            )));
        }
        let entries = self.entries_for(&agent, &req.csrs).await?;
        let mut svids = Vec::with_capacity(req.csrs.len());
        for csr in req.csrs {
            let Some(entry) = entries.get(&csr.entry_id) else {
                svids.push(X509SvidResult {
                    entry_id: csr.entry_id.clone(),
                    error: format!("entry {} not found", csr.entry_id),
                    ..X509SvidResult::default()
                });
                continue;
            };
            match self
                .issuer
                .issue_x509_from_csr(
                    &entry.spiffe_id,
                    &csr.csr,
                    &entry.dns_names,
                    X509Lifetime::Workload(ttl(entry.x509_svid_ttl)),
                )
                .await
            {
                Ok(svid) => svids.push(X509SvidResult {
                    entry_id: csr.entry_id,
                    chain: svid.chain.iter().map(|c| c.to_vec()).collect(),
                    expires_at: unix_seconds(svid.not_after),
                    error: String::new(),
                }),
                Err(IssuanceError::Store(e)) => return Err(store_status(e)),
                Err(e) => svids.push(X509SvidResult {
                    entry_id: csr.entry_id,
                    error: status(e).message().to_owned(),
                    ..X509SvidResult::default()
                }),
            }
        }
        Ok(Response::new(SignX509SvidsResponse { svids }))
    }

    async fn sign_jwt_svid(
        &self,
        request: Request<SignJwtSvidRequest>,
    ) -> Result<Response<SignedToken>, Status> {
        let (agent, _) = self.authorize(&request).await?;
        let req = request.into_inner();
        if req.audience.is_empty() || req.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.audience.len() > MAX_AUDIENCES {
            return Err(Status::invalid_argument("too many audiences"));
        }
        let entry = self.entry_for(&agent, &req.entry_id).await?;
        let svid = self
            .issuer
            .mint_jwt_svid(&entry.spiffe_id, &req.audience, ttl(entry.jwt_svid_ttl))
            .await
            .map_err(status)?;
        Ok(Response::new(SignedToken {
            token: svid.token,
            expires_at: svid.expiry,
        }))
    }

    async fn sign_wit_svid(
        &self,
        request: Request<SignWitSvidRequest>,
    ) -> Result<Response<SignedToken>, Status> {
        let (agent, _) = self.authorize(&request).await?;
        let req = request.into_inner();
        let jwk: serde_json::Value = serde_json::from_str(&req.public_jwk)
            .map_err(|e| Status::invalid_argument(format!("public_jwk: {e}")))?;
        let (key, alg) = cnf_key_from_jwk(jwk, SPIFFE_JWT_ALGORITHMS)
            .map_err(|e| Status::invalid_argument(format!("public_jwk: {e}")))?;
        let entry = self.entry_for(&agent, &req.entry_id).await?;
        let wit = self
            .issuer
            .mint_wit_svid(&entry.spiffe_id, &key, alg, None)
            .await
            .map_err(status)?;
        Ok(Response::new(SignedToken {
            token: wit.token,
            expires_at: wit.expiry,
        }))
    }
}
