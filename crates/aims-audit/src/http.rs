//! The audit log over the mutual-TLS listener: enforcement points of the trust domain
//! (gateways) hand their decision records to the server, which owns the log (AIMS MO-1, MO-8),
//! and get an answer once they are durable; any workload of the trust domain reads the signed
//! checkpoint and RFC 9162 inclusion and consistency proofs (AIMS MO-7), in RFC 6962 §4's
//! JSON shapes (`leaf_index`/`audit_path`, `consistency`, base64 hashes), and the tree's C2SP
//! tlog-tiles, so a verifier we did not write can check the log from its tiles.

use std::sync::Arc;

use std::collections::HashMap;
use std::sync::Mutex;

use aims_authn::caller::{Refusal, require_workload};
use aims_authn::transport::ConnectionInfo;
use aims_core::{SpiffeId, TrustDomain};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::api::{
    CHECKPOINT_PATH, CONSISTENCY_PATH, INCLUSION_PATH, MAX_RECORDS, RECORDS_PATH, TILES_PATH,
    VKEY_PATH,
};
use crate::tile_path::TilePath;
use crate::{AuditLog, AuditRecord, TreeError, TreeReader};

const MAX_BODY: usize = 2 << 20;
/// Appends of one writer in the log's queue at once: a busy (or hostile) writer waits for its
/// own turn instead of filling the queue the authorization server's records wait in.
const WRITER_INFLIGHT: usize = 2;

/// What an append answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendResponse {
    /// Index of the first record.
    pub first: u64,
    /// How many were appended.
    pub count: u64,
}

/// RFC 6962 §4.5-style inclusion proof (plus the certified leaf hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's index.
    pub leaf_index: u64,
    /// Its leaf hash, base64.
    pub leaf_hash: String,
    /// The proof, base64 hashes.
    pub audit_path: Vec<String>,
}

/// RFC 6962 §4.4-style consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The proof, base64 hashes.
    pub consistency: Vec<String>,
}

/// The log's readable side: its store and verifier key.
#[derive(Debug, Clone)]
pub struct LogView {
    /// The store holding the log.
    pub store: aims_store::Store,
    /// The C2SP verifier key of its checkpoints.
    pub vkey: String,
}

#[derive(Clone)]
struct AuditState {
    log: Arc<AuditLog>,
    view: LogView,
    trust_domain: TrustDomain,
    writers: Arc<Vec<SpiffeId>>,
    inflight: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl AuditState {
    /// Whether `id` is (or lies under) an allowed writer.
    fn may_write(&self, id: &SpiffeId) -> bool {
        self.writers.iter().any(|w| id.is_at_or_under(w))
    }

    /// The writer's share of the queue.
    fn turn(&self, id: &SpiffeId) -> Arc<Semaphore> {
        let mut map = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(WRITER_INFLIGHT)))
            .clone()
    }
}

/// The append, checkpoint and proof endpoints; `writers` may append (see
/// the server's `audit_writers` setting).
pub fn router(
    log: Arc<AuditLog>,
    view: LogView,
    trust_domain: TrustDomain,
    writers: Vec<SpiffeId>,
) -> Router {
    Router::new()
        .route(RECORDS_PATH, post(append))
        .route(CHECKPOINT_PATH, get(checkpoint))
        .route(VKEY_PATH, get(vkey))
        .route(INCLUSION_PATH, get(inclusion))
        .route(CONSISTENCY_PATH, get(consistency))
        .route(&format!("{TILES_PATH}{{*path}}"), get(tile))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AuditState {
            log,
            view,
            trust_domain,
            writers: Arc::new(writers),
            inflight: Arc::default(),
        })
}

fn text(body: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn tree_refusal(e: TreeError) -> Response {
    match e {
        TreeError::OutOfRange(_) => Refusal(StatusCode::BAD_REQUEST, e.to_string()),
        TreeError::Missing(_) => Refusal(StatusCode::NOT_FOUND, e.to_string()),
        _ => {
            tracing::error!(error = %e, "audit proof failed");
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log is unavailable".into(),
            )
        }
    }
    .into_response()
}

fn b64(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

async fn checkpoint(
    State(s): State<AuditState>,
    conn: Option<Extension<ConnectionInfo>>,
) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    match s.view.store.latest_audit_checkpoint().await {
        Ok(Some(cp)) => text(cp.note),
        Ok(None) => Refusal(StatusCode::NOT_FOUND, "no checkpoint yet".into()).into_response(),
        Err(e) => tree_refusal(e.into()),
    }
}

async fn vkey(State(s): State<AuditState>, conn: Option<Extension<ConnectionInfo>>) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    text(format!("{}\n", s.view.vkey))
}

#[derive(Debug, Deserialize)]
struct InclusionQuery {
    leaf_index: u64,
    tree_size: u64,
}

async fn inclusion(
    State(s): State<AuditState>,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<InclusionQuery>,
) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    match TreeReader::new(s.view.store.clone())
        .inclusion_proof(q.leaf_index, q.tree_size)
        .await
    {
        Ok((leaf, path)) => Json(InclusionProof {
            leaf_index: q.leaf_index,
            leaf_hash: STANDARD.encode(leaf),
            audit_path: b64(&path),
        })
        .into_response(),
        Err(e) => tree_refusal(e),
    }
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

async fn consistency(
    State(s): State<AuditState>,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<ConsistencyQuery>,
) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    match TreeReader::new(s.view.store.clone())
        .consistency_proof(q.first, q.second)
        .await
    {
        Ok(path) => Json(ConsistencyProof {
            consistency: b64(&path),
        })
        .into_response(),
        Err(e) => tree_refusal(e),
    }
}

/// C2SP tlog-tiles: a hash tile. Tiles never change once served (a partial one is a prefix
/// of what the tree keeps), so they may be cached for good.
async fn tile(
    State(s): State<AuditState>,
    conn: Option<Extension<ConnectionInfo>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    if let Err(refusal) = require_workload(&s.trust_domain, conn.as_deref()) {
        return refusal.into_response();
    }
    let Some(tile) = TilePath::parse(&path) else {
        let why = if path.starts_with("entries/") {
            "entry bundles are not served: operators read records through the admin API"
        } else {
            "not a tile path (C2SP tlog-tiles: <L>/<N>[.p/<W>], canonical)"
        };
        return Refusal(StatusCode::NOT_FOUND, why.into()).into_response();
    };
    match TreeReader::new(s.view.store.clone()).tile(tile).await {
        Ok(Some(hashes)) => (
            [
                (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
                (
                    axum::http::header::CACHE_CONTROL,
                    "private, max-age=31536000, immutable",
                ),
            ],
            hashes,
        )
            .into_response(),
        Ok(None) => Refusal(StatusCode::NOT_FOUND, format!("no {tile} yet")).into_response(),
        Err(e) => tree_refusal(e),
    }
}

async fn append(
    State(s): State<AuditState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    let source = match require_workload(&s.trust_domain, conn.as_deref()) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    // Only enforcement points write decisions: another workload could otherwise fill the log's
    // queue or put records into any task's trace (issue 16).
    if !s.may_write(&source) {
        return Refusal(
            StatusCode::FORBIDDEN,
            format!("{source} is not an audit writer (server.audit_writers)"),
        )
        .into_response();
    }
    let mut records: Vec<AuditRecord> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Refusal(StatusCode::BAD_REQUEST, format!("invalid records: {e}"))
                .into_response();
        }
    };
    if records.is_empty() || records.len() > MAX_RECORDS {
        return Refusal(
            StatusCode::BAD_REQUEST,
            format!("send 1 to {MAX_RECORDS} records"),
        )
        .into_response();
    }
    // The source is who authenticated, whatever the records say.
    for r in &mut records {
        r.source = source.to_string();
    }
    let turn = s.turn(&source);
    let Ok(_permit) = turn.acquire().await else {
        return Refusal(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()).into_response();
    };
    match s.log.append(&records).await {
        Ok(a) => (
            StatusCode::CREATED,
            Json(AppendResponse {
                first: a.indexes.start,
                count: a.indexes.end - a.indexes.start,
            }),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, %source, "audit append refused");
            Refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}
