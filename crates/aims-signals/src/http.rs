//! The server's Shared Signals transmitter over HTTP (SSF 1.0; AIMS MO-2): metadata at the
//! authorization server's issuer (`/.well-known/ssf-configuration` on the HTTPS listener; SETs
//! are signed with its keys, so `jwks_uri` is its JWKS), and the stream management and poll
//! endpoints on the mutual-TLS listener, where receivers of the trust domain authenticate with
//! their X509-SVIDs (`urn:ietf:rfc:8705`) and own the streams they create.

use std::sync::Arc;

use crate::stream::{
    METADATA_PATH, POLL, PUSH, PollRequest, StreamConfiguration, StreamStatus, TransmitterMetadata,
};
use crate::{SecEvent, SetError, SetSigner, StreamOwner, Transmitter, TransmitterError};
use aims_authn::transport::ConnectionInfo;
use aims_core::TrustDomain;
use aims_token::keys::TokenKeys;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use aims_authn::caller::{Refusal, require_workload};

/// Stream configuration endpoint.
pub const STREAM_PATH: &str = "/ssf/v1/stream";
/// Stream status endpoint.
pub const STATUS_PATH: &str = "/ssf/v1/status";
/// Verification endpoint.
pub const VERIFY_PATH: &str = "/ssf/v1/verify";
/// Add-subject endpoint.
pub const ADD_SUBJECT_PATH: &str = "/ssf/v1/subjects/add";
/// Remove-subject endpoint.
pub const REMOVE_SUBJECT_PATH: &str = "/ssf/v1/subjects/remove";

/// Signs SETs with the authorization server's active JWT key.
pub struct AsSigner(pub Arc<dyn TokenKeys>);

impl SetSigner for AsSigner {
    fn sign(&self, set: &SecEvent) -> Result<String, SetError> {
        let key = self
            .0
            .signing_key()
            .ok_or_else(|| SetError::InvalidKey("no signing key is active yet".into()))?;
        set.sign(&key.key, &key.kid)
    }
}

/// SSF 1.0 §7.1: the transmitter's metadata; management endpoints under `mtls_base`.
pub fn metadata(issuer: &str, mtls_base: &str) -> TransmitterMetadata {
    TransmitterMetadata {
        spec_version: Some("1_0".into()),
        issuer: issuer.to_owned(),
        jwks_uri: format!("{issuer}{}", aims_token::wire::JWKS_PATH),
        delivery_methods_supported: vec![PUSH.into(), POLL.into()],
        configuration_endpoint: Some(format!("{mtls_base}{STREAM_PATH}")),
        status_endpoint: Some(format!("{mtls_base}{STATUS_PATH}")),
        add_subject_endpoint: Some(format!("{mtls_base}{ADD_SUBJECT_PATH}")),
        remove_subject_endpoint: Some(format!("{mtls_base}{REMOVE_SUBJECT_PATH}")),
        verification_endpoint: Some(format!("{mtls_base}{VERIFY_PATH}")),
        authorization_schemes: vec![json!({"spec_urn": "urn:ietf:rfc:8705"})],
        default_subjects: Some("ALL".into()),
    }
}

/// The metadata route, for the HTTPS listener (the issuer's origin).
pub fn metadata_router(issuer: String, mtls_base: String) -> Router {
    let doc = Arc::new(metadata(&issuer, &mtls_base));
    Router::new().route(
        METADATA_PATH,
        get(move || {
            let doc = doc.clone();
            async move { Json((*doc).clone()) }
        }),
    )
}

#[derive(Clone)]
struct SsfState {
    tx: Arc<Transmitter>,
    trust_domain: TrustDomain,
}

/// The management and poll routes, for the mutual-TLS listener.
pub fn router(tx: Arc<Transmitter>, trust_domain: TrustDomain) -> Router {
    Router::new()
        .route(
            STREAM_PATH,
            get(read_streams)
                .post(create_stream)
                .patch(update_stream)
                .put(replace_stream)
                .delete(delete_stream),
        )
        .route(STATUS_PATH, get(read_status).post(update_status))
        .route(VERIFY_PATH, post(verify))
        .route(ADD_SUBJECT_PATH, post(add_subject))
        .route(REMOVE_SUBJECT_PATH, post(remove_subject))
        .route("/ssf/v1/poll/{stream_id}", post(poll))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 10))
        .with_state(SsfState { tx, trust_domain })
}

fn owner(s: &SsfState, conn: Option<&ConnectionInfo>) -> Result<StreamOwner, Refusal> {
    require_workload(&s.trust_domain, conn).map(|id| StreamOwner(id.to_string()))
}

/// The caller and its JSON request.
fn owner_and<T: serde::de::DeserializeOwned>(
    s: &SsfState,
    conn: Option<&ConnectionInfo>,
    body: &[u8],
) -> Result<(StreamOwner, T), Refusal> {
    let o = owner(s, conn)?;
    let req = serde_json::from_slice(body)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))?;
    Ok((o, req))
}

fn refusal(e: TransmitterError) -> Refusal {
    let status = match &e {
        TransmitterError::NotFound => StatusCode::NOT_FOUND,
        TransmitterError::Invalid(_) => StatusCode::BAD_REQUEST,
        TransmitterError::Conflict(_) => StatusCode::CONFLICT,
        TransmitterError::Store(_) | TransmitterError::Sign(_) => {
            tracing::error!(error = %e, "SSF transmitter failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    Refusal(status, e.to_string())
}

/// A handler's outcome: a status and JSON body, or a refusal.
type Answer = Result<Response, Refusal>;

fn json_answer<T: serde::Serialize>(ok: StatusCode, v: T) -> Answer {
    Ok((ok, Json(v)).into_response())
}

fn respond(a: Answer) -> Response {
    a.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    stream_id: Option<String>,
}

fn required(id: Option<String>) -> Result<String, Refusal> {
    id.ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, "stream_id is required".into()))
}

async fn read_streams(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<StreamQuery>,
) -> Response {
    respond(
        async {
            let o = owner(&s, conn.as_deref())?;
            match q.stream_id {
                Some(id) => json_answer(StatusCode::OK, s.tx.get(&o, &id).await.map_err(refusal)?),
                None => json_answer(StatusCode::OK, s.tx.list(&o).await.map_err(refusal)?),
            }
        }
        .await,
    )
}

async fn create_stream(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (o, c) = owner_and::<StreamConfiguration>(&s, conn.as_deref(), &body)?;
            json_answer(
                StatusCode::CREATED,
                s.tx.create(&o, c).await.map_err(refusal)?,
            )
        }
        .await,
    )
}

async fn change_stream(
    s: &SsfState,
    conn: Option<&ConnectionInfo>,
    body: &[u8],
    replace: bool,
) -> Answer {
    let (o, c) = owner_and::<StreamConfiguration>(s, conn, body)?;
    json_answer(
        StatusCode::OK,
        s.tx.update(&o, c, replace).await.map_err(refusal)?,
    )
}

async fn update_stream(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(change_stream(&s, conn.as_deref(), &body, false).await)
}

async fn replace_stream(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(change_stream(&s, conn.as_deref(), &body, true).await)
}

async fn delete_stream(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<StreamQuery>,
) -> Response {
    respond(
        async {
            let o = owner(&s, conn.as_deref())?;
            s.tx.delete(&o, &required(q.stream_id)?)
                .await
                .map_err(refusal)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn read_status(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<StreamQuery>,
) -> Response {
    respond(
        async {
            let o = owner(&s, conn.as_deref())?;
            json_answer(
                StatusCode::OK,
                s.tx.status(&o, &required(q.stream_id)?)
                    .await
                    .map_err(refusal)?,
            )
        }
        .await,
    )
}

async fn update_status(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (o, st) = owner_and::<StreamStatus>(&s, conn.as_deref(), &body)?;
            json_answer(
                StatusCode::OK,
                s.tx.set_status(&o, st).await.map_err(refusal)?,
            )
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
struct StreamRef {
    stream_id: String,
    #[serde(default)]
    state: Option<String>,
}

async fn verify(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (o, r) = owner_and::<StreamRef>(&s, conn.as_deref(), &body)?;
            s.tx.verify(&o, &r.stream_id, r.state)
                .await
                .map_err(refusal)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// SSF §8.1.3: every stream carries every subject (`default_subjects` is `ALL`), so adding
/// or removing one is accepted and changes nothing (which §8.1.3.2 allows); the stream must
/// be the caller's and the subject well-formed.
async fn subject_change(
    s: &SsfState,
    conn: Option<&ConnectionInfo>,
    body: &[u8],
    ok: StatusCode,
) -> Answer {
    #[derive(Deserialize)]
    struct SubjectRequest {
        stream_id: String,
        #[serde(rename = "subject")]
        _subject: crate::SubjectId,
    }
    let (o, r) = owner_and::<SubjectRequest>(s, conn, body)?;
    s.tx.get(&o, &r.stream_id).await.map_err(refusal)?;
    Ok(ok.into_response())
}

async fn add_subject(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(subject_change(&s, conn.as_deref(), &body, StatusCode::OK).await)
}

async fn remove_subject(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    body: axum::body::Bytes,
) -> Response {
    respond(subject_change(&s, conn.as_deref(), &body, StatusCode::NO_CONTENT).await)
}

async fn poll(
    State(s): State<SsfState>,
    conn: Option<Extension<ConnectionInfo>>,
    Path(stream_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let (o, req) = owner_and::<PollRequest>(&s, conn.as_deref(), &body)?;
            json_answer(
                StatusCode::OK,
                s.tx.poll(&o, &stream_id, req).await.map_err(refusal)?,
            )
        }
        .await,
    )
}
