//! The policy service over the mutual-TLS listener: the OpenID AuthZEN Authorization API 1.0
//! (§6, §7, §9) and the policy feed gateways decide with (AIMS PO-3), for workloads of the
//! trust domain.

use std::sync::Arc;

use aims_authn::caller::{BearerCheck, Refusal, bearer_refusal, bearer_token, require_workload};
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

/// Who may call the PDP's endpoints: workloads of the trust domain, by their X509-SVID; the
/// AuthZEN API also clients with a bearer access token issued for the PDP, when `bearer` can
/// check one.
#[derive(Clone)]
struct PdpState {
    service: Arc<PolicyService>,
    trust_domain: TrustDomain,
    base: String,
    bearer: Option<Arc<dyn BearerCheck>>,
}

/// The AuthZEN API (§6, §7, §9) and the policy distribution endpoint, for the mutual-TLS
/// listener whose URL is `base` (the PDP's identifier, and the audience of bearer tokens for
/// it, which `bearer` checks).
pub fn router(
    service: Arc<PolicyService>,
    trust_domain: TrustDomain,
    base: String,
    bearer: Option<Arc<dyn BearerCheck>>,
) -> Router {
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
            bearer,
        })
}

/// §10.1.3: a request identifier comes back in `X-Request-ID`.
fn with_request_id(headers: &HeaderMap, mut resp: Response) -> Response {
    if let Some(id) = headers.get("x-request-id") {
        resp.headers_mut().insert("x-request-id", id.clone());
    }
    resp
}

/// AuthZEN callers (§11 leaves the API's authentication to the deployment): a workload of the
/// trust domain by its X509-SVID, or a client with a bearer access token for this PDP. A
/// certificate, when presented, decides: a workload of another domain is not let in by a token.
async fn authenticate(
    s: &PdpState,
    conn: Option<&ConnectionInfo>,
    headers: &HeaderMap,
) -> Result<String, Response> {
    let with_certificate = conn.and_then(|c| c.peer_spiffe_id.as_ref()).is_some();
    match (&s.bearer, with_certificate) {
        (Some(check), false) => match bearer_token(headers) {
            Some(token) => check
                .check(token, &s.base)
                .await
                .map_err(|why| bearer_refusal(Some(&why))),
            None => Err(bearer_refusal(None)),
        },
        _ => require_workload(&s.trust_domain, conn)
            .map(|id| id.to_string())
            .map_err(IntoResponse::into_response),
    }
}

/// Authenticates the caller, parses its JSON body and answers with `evaluate`'s result.
async fn answer<Req: serde::de::DeserializeOwned, Resp: Serialize>(
    s: &PdpState,
    conn: Option<&ConnectionInfo>,
    headers: &HeaderMap,
    body: &[u8],
    evaluate: impl FnOnce(&Pdp, &Req, i64) -> Result<Resp, authzen::BadRequest>,
) -> Response {
    if let Err(refused) = authenticate(s, conn, headers).await {
        return with_request_id(headers, refused);
    }
    let result = serde_json::from_slice::<Req>(body)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))
        .and_then(|req| {
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
    answer(&s, conn.as_deref(), &headers, &body, authzen::evaluate).await
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
    .await
}

/// The longest a gateway's poll is held open (RFC 7240 `wait`, clamped).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `wait` preference of RFC 7240 §4.3 (`Prefer: wait=<delta-seconds>`, among other
/// preferences and parameters), clamped to [`MAX_WAIT`]; none asked for, or unreadable, is no
/// wait.
fn wait_preference(headers: &HeaderMap) -> std::time::Duration {
    let seconds = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| {
            let first = pref.split(';').next()?.trim();
            let (name, value) = first.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()
        .unwrap_or(0);
    std::time::Duration::from_secs(seconds).min(MAX_WAIT)
}

/// The version a caller says it holds: `If-None-Match` with one strong ETag, `"<version>"`.
fn known_version(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    v.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The policy set in force, for gateways (AIMS PO-3: every enforcement point decides at the
/// same version). `ETag` is the version; `If-None-Match` with it gets a 304. With
/// `Prefer: wait=N` (RFC 7240 §4.3) a caller holding the version in force is answered when a
/// newer one is, or after N seconds (at most [`MAX_WAIT`]): a push over a long poll. The
/// version a caller names is recorded as what it decides with (`aims policy apply --wait`).
async fn current_policy(
    State(s): State<PdpState>,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
) -> Response {
    let caller = match require_workload(&s.trust_domain, conn.as_deref()) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    let known = known_version(&headers);
    let wait = wait_preference(&headers);
    let current = match known {
        Some(known) => {
            s.service.follower_reports(caller.as_str(), known);
            s.service.newer_than(known, wait).await
        }
        None => s.service.current(),
    };
    let etag = format!("\"{}\"", current.version);
    let mut resp = if known == Some(current.version) {
        (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
    } else {
        ([(header::ETAG, etag)], Json(current.document())).into_response()
    };
    if !wait.is_zero()
        && let Ok(applied) = header::HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
    {
        resp.headers_mut().insert("preference-applied", applied);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_wait_preference_is_read_as_rfc_7240_writes_it_and_bounded() {
        let secs = |pairs| wait_preference(&headers(pairs)).as_secs();
        assert_eq!(secs(&[]), 0);
        assert_eq!(secs(&[("prefer", "wait=10")]), 10);
        assert_eq!(secs(&[("prefer", "respond-async, WAIT = 7")]), 7);
        assert_eq!(
            secs(&[("prefer", "return=minimal"), ("prefer", "wait=3")]),
            3
        );
        assert_eq!(secs(&[("prefer", "wait=\"4\"; x=y")]), 4);
        // A hostile caller cannot hold a connection longer than the bound.
        assert_eq!(secs(&[("prefer", "wait=99999999999")]), MAX_WAIT.as_secs());
        assert_eq!(secs(&[("prefer", "wait=-1")]), 0);
        assert_eq!(secs(&[("prefer", "wait")]), 0);
    }

    #[test]
    fn only_a_strong_numeric_etag_names_a_version() {
        let known = |v| known_version(&headers(&[("if-none-match", v)]));
        assert_eq!(known("\"12\""), Some(12));
        assert_eq!(known("W/\"12\""), None);
        assert_eq!(known("12"), None);
        assert_eq!(known("\"x\""), None);
        assert_eq!(known("*"), None);
    }
}
