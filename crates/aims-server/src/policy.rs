//! The server's policy service (AIMS §12, PO-2, PO-3): the versioned policy set in the store,
//! put in force on every replica (polled), decided on by the authorization server, served to
//! gateways, and exposed as the OpenID AuthZEN Authorization API 1.0.

use std::sync::Arc;
use std::time::Duration;

use aims_audit::{AuditLog, AuditRecord};
use aims_authn::transport::ConnectionInfo;
use aims_core::{SharedClock, TrustDomain};
use aims_oauth::policy::{
    AccessRequest, ApprovalDecision, Decision, DenyKind, PdpError, PolicyDecisionPoint,
};
use aims_policy::authzen;
use aims_policy::{
    Action, CompiledPolicy, DEFAULT_POLICY, Detail, Facts, Pdp, PolicyDiff, PolicyDocument,
    Principal, Query, Target,
};
use aims_store::{PolicyVersionRow, Store, StoreError};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;
use aims_authn::caller::{Refusal, require_workload};

const MAX_BODY: usize = 256 * 1024;

/// What applying a policy text did (or would do, on a dry run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// The version in force afterwards (or that would be).
    pub document: PolicyDocument,
    /// What changed from the version in force before.
    pub diff: PolicyDiff,
    /// Whether a new version went live.
    pub applied: bool,
}

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The text does not parse or validate.
    #[error(transparent)]
    Invalid(#[from] aims_policy::PolicyError),
    /// Another replica put a version in force first.
    #[error("another replica put policy version {0} in force first: review it and apply again")]
    Conflict(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The policy service.
pub struct PolicyService {
    pdp: Arc<Pdp>,
    store: Store,
    clock: SharedClock,
}

impl PolicyService {
    /// Loads the newest version from the store, or puts the default policy in force as version
    /// 1 on a new store.
    pub async fn start(store: Store, clock: SharedClock) -> Result<Arc<Self>, ServerError> {
        let row = match store.latest_policy().await? {
            Some(row) => row,
            None => {
                let doc = PolicyDocument::new(1, DEFAULT_POLICY);
                let row = PolicyVersionRow {
                    version: doc.version,
                    hash: doc.hash,
                    text: doc.text,
                    created_at: aims_core::unix_seconds(clock.now()),
                    author: "aims (default policy)".into(),
                };
                match store.insert_policy(&row).await {
                    // Another replica seeded it at the same moment: take theirs.
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                store
                    .latest_policy()
                    .await?
                    .ok_or_else(|| ServerError::Config("policy store is empty".into()))?
            }
        };
        let pdp = Pdp::new(&PolicyDocument {
            version: row.version,
            hash: row.hash,
            text: row.text,
        })?;
        tracing::info!(version = row.version, "policy in force");
        Ok(Arc::new(Self {
            pdp: Arc::new(pdp),
            store,
            clock,
        }))
    }

    /// The decision point.
    pub fn pdp(&self) -> &Arc<Pdp> {
        &self.pdp
    }

    /// The policy set in force.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.pdp.current()
    }

    /// Validates `text` against the schema and, unless `dry_run` or unchanged, records it as
    /// the next version and puts it in force. An invalid text changes nothing.
    pub async fn apply(
        &self,
        text: &str,
        author: &str,
        dry_run: bool,
    ) -> Result<ApplyOutcome, ApplyError> {
        let current = self.pdp.current();
        let doc = PolicyDocument::new(current.version + 1, text);
        let compiled = self.pdp.compile(&doc)?;
        let diff = PolicyDiff::between(&current, &compiled);
        if dry_run || compiled.hash == current.hash {
            return Ok(ApplyOutcome {
                document: if dry_run { doc } else { current.document() },
                diff,
                applied: false,
            });
        }
        let row = PolicyVersionRow {
            version: doc.version,
            hash: doc.hash.clone(),
            text: doc.text.clone(),
            created_at: aims_core::unix_seconds(self.clock.now()),
            author: author.to_owned(),
        };
        match self.store.insert_policy(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                self.refresh().await?;
                return Err(ApplyError::Conflict(doc.version));
            }
            Err(e) => return Err(e.into()),
        }
        self.pdp.install(&doc)?;
        tracing::info!(version = doc.version, hash = %doc.hash, author, "policy applied");
        Ok(ApplyOutcome {
            document: doc,
            diff,
            applied: true,
        })
    }

    /// Puts in force a newer version another replica recorded, if there is one.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let current = self.pdp.current().version;
        if self.store.latest_policy_version().await? <= Some(current) {
            return Ok(());
        }
        let Some(row) = self.store.latest_policy().await? else {
            return Ok(());
        };
        let doc = PolicyDocument {
            version: row.version,
            hash: row.hash,
            text: row.text,
        };
        match self.pdp.install(&doc) {
            Ok(_) => tracing::info!(version = doc.version, "policy in force (from the store)"),
            Err(aims_policy::PolicyError::Stale { .. }) => {}
            Err(e) => {
                tracing::error!(version = doc.version, error = %e, "stored policy refused; the old version stays in force");
            }
        }
        Ok(())
    }

    /// Polls the store for versions other replicas put in force, every `interval`.
    pub async fn watch_store(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "cannot read the policy version; will retry");
                    }
                }
            }
        }
    }
}

/// The authorization server's policy trait, served by the Cedar PDP: each audience of a token
/// is a `Resource`, and every one must be permitted (`obtain_token`). Every decision is
/// handed to the audit log with its policy version before the grant goes on (AIMS MO-8).
pub struct TokenPolicy {
    pdp: Arc<Pdp>,
    audit: Arc<AuditLog>,
    source: String,
    clock: SharedClock,
}

impl TokenPolicy {
    /// Decides grants with `pdp` and records them in `audit` as `source` (the server).
    pub fn new(pdp: Arc<Pdp>, audit: Arc<AuditLog>, source: String, clock: SharedClock) -> Self {
        Self {
            pdp,
            audit,
            source,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl PolicyDecisionPoint for TokenPolicy {
    async fn decide(&self, r: &AccessRequest) -> Result<Decision, PdpError> {
        let principal = match &r.client_spiffe_id {
            Some(id) => Principal::agent(id.clone()),
            None => Principal::Workload {
                client_id: r.client_id.clone(),
            },
        };
        let delegated_subject = (r.subject != r.client_id
            && r.client_spiffe_id
                .as_ref()
                .is_none_or(|id| id.as_str() != r.subject))
        .then(|| r.subject.clone());
        let facts = Facts {
            delegated_subject,
            chain: r.actors.clone(),
            scopes: r.scopes.clone(),
            authorization_details: r
                .authorization_details
                .as_ref()
                .map(Detail::from_json)
                .unwrap_or_default(),
            time: aims_core::unix_seconds(self.clock.now()),
            approval: r.approval.clone(),
            ..Facts::default()
        };
        for audience in &r.audience {
            let query = Query {
                principal: principal.clone(),
                action: Action::ObtainToken,
                target: Target::Resource {
                    uri: audience.clone(),
                },
                facts: facts.clone(),
            };
            let verdict = self.pdp.decide(&query);
            let mut record = verdict.audit_record(
                &query,
                audience.clone(),
                aims_core::unix_millis(self.clock.now()),
            );
            record.source = self.source.clone();
            record.correlation_id = r.correlation_id.clone();
            tracing::debug!(client = %r.client_id, audience, allowed = verdict.allowed, policy_version = verdict.policy_version, policies = ?verdict.policies, "token policy decision");
            // Submitted, not awaited: the token response does not wait for the fsync (the
            // record is in the next group commit); a full queue makes the grant wait.
            if let Err(e) = self.audit.submit(&[record]).await {
                // Fail closed: a decision that cannot be recorded issues nothing.
                tracing::error!(error = %e, "token decision not recorded; refusing the grant");
                return Err(PdpError::Unrecorded(e.to_string()));
            }
            if !verdict.allowed && self.pdp.allowed_with_approval(&query) {
                return Ok(Decision::Deny(
                    DenyKind::Approval,
                    format!(
                        "policy version {} allows this token for {audience} only with a person's approval: ask for it through CIBA (backchannel_authentication_endpoint)",
                        verdict.policy_version
                    ),
                ));
            }
            if !verdict.allowed {
                let why = if verdict.policies.is_empty() {
                    "no policy permits it".to_owned()
                } else {
                    format!("forbidden by {}", verdict.policies.join(", "))
                };
                return Ok(Decision::Deny(
                    DenyKind::Scope,
                    format!(
                        "policy version {} refuses this token for {audience}: {why}",
                        verdict.policy_version
                    ),
                ));
            }
        }
        Ok(Decision::Permit)
    }

    async fn record_approval(&self, d: &ApprovalDecision) -> Result<(), PdpError> {
        let mut record = AuditRecord::new(
            aims_audit::RecordKind::Decision,
            "approve",
            aims_core::unix_millis(self.clock.now()),
        );
        record.source = self.source.clone();
        record.agent = Some(d.client_id.clone());
        record.delegated_subject = Some(d.user_id.clone());
        record.resource = Some(d.audience.join(" "));
        record.decision = Some(if d.approved {
            aims_audit::Outcome::Allow
        } else {
            aims_audit::Outcome::Deny
        });
        record.approval = Some(d.approval_id.clone());
        record.correlation_id = d.correlation_id.clone();
        let mut what = format!(
            "{} by the user",
            if d.approved { "approved" } else { "denied" }
        );
        if !d.scopes.is_empty() {
            what.push_str(&format!("; scope {}", d.scopes.join(" ")));
        }
        if let Some(details) = &d.authorization_details {
            what.push_str(&format!("; authorization_details {details}"));
        }
        record.reason = Some(what);
        // Awaited: the approval takes effect only once it is durably recorded (AIMS AZ-30).
        self.audit
            .append(&[record])
            .await
            .map(|_| ())
            .map_err(|e| PdpError::Unrecorded(e.to_string()))
    }
}

/// Who may call the PDP's endpoints: workloads of the trust domain, by their X509-SVID.
#[derive(Clone)]
struct PdpState {
    service: Arc<PolicyService>,
    trust_domain: TrustDomain,
    base: String,
}

/// The AuthZEN API (§6, §7, §9) and the policy distribution endpoint, for the mutual-TLS
/// listener whose URL is `base`.
pub fn router(service: Arc<PolicyService>, trust_domain: TrustDomain, base: String) -> Router {
    Router::new()
        .route(authzen::METADATA_PATH, get(authzen_metadata))
        .route(authzen::EVALUATION_PATH, post(evaluation))
        .route(authzen::EVALUATIONS_PATH, post(evaluations))
        .route(aims_policy::CURRENT_POLICY_PATH, get(current_policy))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(PdpState {
            service,
            trust_domain,
            base,
        })
}

/// §10.1.3: a request identifier comes back in `X-Request-ID`.
fn with_request_id(headers: &HeaderMap, mut resp: Response) -> Response {
    if let Some(id) = headers.get("x-request-id") {
        resp.headers_mut().insert("x-request-id", id.clone());
    }
    resp
}

/// Authenticates the caller, parses its JSON body and answers with `evaluate`'s result.
fn answer<Req: serde::de::DeserializeOwned, Resp: Serialize>(
    s: &PdpState,
    conn: Option<&ConnectionInfo>,
    headers: &HeaderMap,
    body: &[u8],
    evaluate: impl FnOnce(&Pdp, &Req, i64) -> Result<Resp, authzen::BadRequest>,
) -> Response {
    let result = require_workload(&s.trust_domain, conn).and_then(|_caller| {
        let req: Req = serde_json::from_slice(body)
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))?;
        let now = aims_core::unix_seconds(s.service.clock.now());
        evaluate(s.service.pdp(), &req, now).map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.0))
    });
    let resp = match result {
        Ok(decision) => Json(decision).into_response(),
        Err(refusal) => refusal.into_response(),
    };
    with_request_id(headers, resp)
}

async fn authzen_metadata(State(s): State<PdpState>) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(authzen::metadata(&s.base)),
    )
        .into_response()
}

async fn evaluation(
    State(s): State<PdpState>,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    answer(&s, conn.as_deref(), &headers, &body, authzen::evaluate)
}

async fn evaluations(
    State(s): State<PdpState>,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    answer(
        &s,
        conn.as_deref(),
        &headers,
        &body,
        authzen::evaluate_batch,
    )
}

/// The policy set in force, for gateways (AIMS PO-3: every enforcement point decides at the
/// same version). `ETag` is the version; `If-None-Match` with it gets a 304.
async fn current_policy(
    State(s): State<PdpState>,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    let current = s.service.current();
    let etag = format!("\"{}\"", current.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    ([(header::ETAG, etag)], Json(current.document())).into_response()
}
