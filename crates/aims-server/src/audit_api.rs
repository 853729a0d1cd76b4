//! Appending to the audit log over the mutual-TLS listener: enforcement points of the trust
//! domain (gateways) hand their decision records to the server, which owns the log (AIMS MO-1,
//! MO-8). The response comes after the records are durable.

use std::sync::Arc;

use aims_audit::{AuditLog, AuditRecord};
use aims_authn::transport::ConnectionInfo;
use aims_core::TrustDomain;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use crate::peer::{Refusal, require_workload};

/// Where records are appended (ours: the log's append API is AIMS's own).
pub const RECORDS_PATH: &str = "/audit/v1/records";
/// Records per append, at most.
pub const MAX_RECORDS: usize = 10_000;
const MAX_BODY: usize = 8 << 20;

/// What an append answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendResponse {
    /// Index of the first record.
    pub first: u64,
    /// How many were appended.
    pub count: u64,
}

#[derive(Clone)]
struct AuditState {
    log: Arc<AuditLog>,
    trust_domain: TrustDomain,
}

/// The append endpoint.
pub fn router(log: Arc<AuditLog>, trust_domain: TrustDomain) -> Router {
    Router::new()
        .route(RECORDS_PATH, post(append))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AuditState { log, trust_domain })
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
