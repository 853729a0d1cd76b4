//! The policy service over the mutual-TLS listener: the OpenID AuthZEN Authorization API 1.0
//! (§6, §7, §9) and the policy feed gateways decide with (AIMS PO-3), for workloads of the
//! trust domain.

use std::sync::Arc;

use aims_authn::caller::{Refusal, require_workload};
use aims_authn::transport::ConnectionInfo;
use aims_core::TrustDomain;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::service::PolicyService;
use crate::{CURRENT_POLICY_PATH, Pdp, authzen};

const MAX_BODY: usize = 256 * 1024;

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
        .route(CURRENT_POLICY_PATH, get(current_policy))
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
