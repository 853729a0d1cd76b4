//! The local admin API: JSON over a Unix socket (mode 0600, like SPIRE's registration socket),
//! used by `aims entry …` and `aims svid mint …`. Only the server's own user (or root) may call
//! it: the socket's mode says so and every connection's peer credentials are checked again.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aims_core::SpiffeId;
use aims_credentials::IssueError;
use aims_credentials::bundle::cert_to_pem;
use aims_credentials::cnf_key_from_jwk;
use aims_credentials::jose::SPIFFE_JWT_ALGORITHMS;
use aims_store::{EntryFilter, EntryUpdate, NewEntry, StoreError};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;
use aims_admin::api::{
    AgentRequest, BundleResponse, CreateClientRequest, CreateJoinTokenRequest, CreateUserRequest,
    ErrorBody, HealthResponse, JoinTokenResponse, MintJwtRequest, MintTokenResponse,
    MintWitRequest, MintX509Request, MintX509Response,
};
use aims_provisioning::issuance::changes::ChangeFeed;
use aims_provisioning::issuance::issuer::{Issuer, X509Lifetime};
use aims_provisioning::issuance::server_svid::server_spiffe_id;
use aims_signals::remediation::Initiator;

/// Paths of SPIFFE IDs AIMS gives its own components (`/aims/server`, `/aims/agent/…`); no
/// registration entry may name one, so no workload can pose as a server or an agent.
pub const RESERVED_PATH: &str = "/aims/";
/// Default join token lifetime.
const JOIN_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest join token lifetime.
const MAX_JOIN_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest admin request body (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// An admin API error, answered as JSON with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.code.into(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => Self::invalid(m),
            other => {
                tracing::error!(error = %other, "store failure in admin API");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable",
                )
            }
        }
    }
}

impl From<aims_people::PeopleError> for ApiError {
    fn from(e: aims_people::PeopleError) -> Self {
        use aims_people::PeopleError as P;
        match e {
            P::Store(s) => s.into(),
            P::Invalid(m) => Self::invalid(m),
            other => {
                tracing::error!(error = %other, "admin API failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<aims_admin::api::InvalidRequest> for ApiError {
    fn from(e: aims_admin::api::InvalidRequest) -> Self {
        Self::invalid(e.0)
    }
}

impl From<aims_provisioning::issuance::IssuanceError> for ApiError {
    fn from(e: aims_provisioning::issuance::IssuanceError) -> Self {
        use aims_provisioning::issuance::IssuanceError as I;
        match e {
            I::Store(s) => s.into(),
            I::Issue(IssueError::InvalidCsr(m)) => Self::invalid(format!("invalid CSR: {m}")),
            I::Issue(IssueError::Refused(m)) => Self::invalid(m),
            I::Issue(IssueError::InvalidId(m)) => Self::invalid(format!("invalid SPIFFE ID: {m}")),
            I::Issue(IssueError::Key(k)) => Self::invalid(k.to_string()),
            other => ServerError::Issuance(other).into(),
        }
    }
}

impl From<aims_signals::remediation::RemediationError> for ApiError {
    fn from(e: aims_signals::remediation::RemediationError) -> Self {
        ServerError::from(e).into()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "admin API failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

/// JSON bodies with our error shape (axum's default rejection is plain text).
struct ApiJson<T>(T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request body exceeds {MAX_BODY} bytes"),
                ))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// The admin API's shared state.
pub struct AdminState {
    /// The issuance service.
    pub issuer: Arc<Issuer>,
    /// This replica's id.
    pub server_id: String,
    /// Told about every change agents must see.
    pub changes: Arc<ChangeFeed>,
    /// The authorization server (client registration).
    pub authorization_server: Arc<aims_oauth::AuthorizationServer>,
    /// The policy service.
    pub policy: Arc<aims_policy::service::PolicyService>,
    /// The audit log's readable side.
    pub log: aims_audit::http::LogView,
    /// Revocations.
    pub remediation: Arc<aims_signals::remediation::Remediation>,
    /// Users.
    pub people: Arc<aims_people::People>,
}

type AppState = Arc<AdminState>;

/// Peer credentials of an admin connection.
#[derive(Clone, Debug)]
pub struct PeerCred {
    uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

async fn only_owner(
    State(owner): State<u32>,
    ConnectInfo(peer): ConnectInfo<PeerCred>,
    req: Request,
    next: Next,
) -> Response {
    match peer.uid {
        Some(uid) if uid == owner || uid == 0 => next.run(req).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API is for the server's own user",
        )
        .into_response(),
    }
}

/// The admin router.
pub fn router(state: AppState, owner_uid: u32) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/entries", post(create_entry).get(list_entries))
        .route(
            "/v1/entries/{id}",
            get(show_entry).patch(update_entry).delete(delete_entry),
        )
        .route("/v1/svid/x509", post(mint_x509))
        .route("/v1/svid/jwt", post(mint_jwt))
        .route("/v1/svid/wit", post(mint_wit))
        .route("/v1/bundle", get(bundle))
        .route("/v1/bundles/federated", get(federated_bundles))
        .route("/v1/issued", get(issued))
        .route("/v1/tokens", post(create_join_token))
        .route("/v1/clients", post(create_client).get(list_clients))
        .route("/v1/clients/{id}", axum::routing::delete(delete_client))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/ban", post(ban_agent))
        .route("/v1/agents/evict", post(evict_agent))
        .route("/v1/policy", get(current_policy).post(apply_policy))
        .route("/v1/policy/history", get(policy_history))
        .route("/v1/policy/followers", get(policy_followers))
        .route("/v1/policy/{version}", get(policy_version))
        .route("/v1/audit/records", get(audit_records))
        .route("/v1/audit/checkpoint", get(audit_checkpoint))
        .route("/v1/audit/storage", get(audit_storage))
        .route("/v1/compliance/report", post(compliance_report))
        .route("/v1/remediation", get(list_revocations))
        .route("/v1/remediation/revoke", post(revoke_principal))
        .route("/v1/remediation/lift", post(lift_revocation))
        .route("/v1/remediation/entry", post(remediate_entry))
        .route("/v1/audit/trace/{id}", get(audit_trace))
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{user}", axum::routing::delete(delete_user))
        .route("/v1/users/{user}/disable", post(disable_user))
        .route("/v1/users/{user}/enable", post(enable_user))
        .route("/v1/users/{user}/enrolment", post(enrol_user))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(owner_uid, only_owner))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
}

/// Binds the admin socket (mode 0600) and serves until `shutdown`. A stale socket from a
/// crashed run is replaced; a live one means another server owns this data directory.
pub async fn serve(
    path: &Path,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::Config(format!(
                "another AIMS server is already listening on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| ServerError::io(format!("remove stale socket {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| ServerError::io(format!("bind admin socket {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ServerError::io(format!("chmod {}", path.display()), e))?;
    let owner = std::fs::metadata(path)
        .map_err(|e| ServerError::io(format!("stat {}", path.display()), e))?
        .uid();
    let app = router(state, owner).into_make_service_with_connect_info::<PeerCred>();
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    }))
}

async fn health(State(s): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        trust_domain: s.issuer.trust_domain().to_string(),
        server_id: s.server_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn check_in_domain(s: &AdminState, id: &SpiffeId, what: &str) -> Result<(), ApiError> {
    if id.is_member_of(s.issuer.trust_domain()) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} {id} is not in trust domain {}",
            s.issuer.trust_domain()
        )))
    }
}

async fn create_entry(
    State(s): State<AppState>,
    ApiJson(new): ApiJson<NewEntry>,
) -> Result<impl IntoResponse, ApiError> {
    check_in_domain(&s, &new.spiffe_id, "SPIFFE ID")?;
    check_in_domain(&s, &new.parent_id, "parent ID")?;
    if new.spiffe_id.is_trust_domain_id() {
        return Err(ApiError::invalid("an entry's SPIFFE ID needs a path"));
    }
    if new.spiffe_id.path().starts_with(RESERVED_PATH) {
        return Err(ApiError::invalid(format!(
            "SPIFFE IDs under {RESERVED_PATH} are reserved for AIMS's own servers and agents"
        )));
    }
    let entry = s.issuer.store().create_entry(new).await?;
    s.changes.poke();
    tracing::info!(entry = %entry.id, spiffe_id = %entry.spiffe_id, "registration entry created");
    Ok((StatusCode::CREATED, Json(entry)))
}

async fn list_entries(
    State(s): State<AppState>,
    Query(filter): Query<EntryFilter>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().list_entries(&filter).await?))
}

async fn show_entry(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().get_entry(&id).await?))
}

async fn update_entry(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    ApiJson(update): ApiJson<EntryUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(parent) = &update.parent_id {
        check_in_domain(&s, parent, "parent ID")?;
    }
    let entry = s.issuer.store().update_entry(&id, update).await?;
    s.changes.poke();
    tracing::info!(entry = %entry.id, revision = entry.revision, "registration entry updated");
    Ok(Json(entry))
}

async fn delete_entry(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.issuer.store().delete_entry(&id).await?;
    s.changes.poke();
    tracing::info!(entry = %id, "registration entry deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn ttl(secs: Option<u64>) -> Option<Duration> {
    secs.map(Duration::from_secs)
}

async fn mint_x509(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<MintX509Request>,
) -> Result<impl IntoResponse, ApiError> {
    let csr = CertificateSigningRequestDer::from_pem_slice(req.csr_pem.as_bytes())
        .map_err(|_| ApiError::invalid("invalid CSR: csr_pem is not a PEM CERTIFICATE REQUEST"))?;
    let svid = s
        .issuer
        .issue_x509_from_csr(
            &req.spiffe_id,
            csr.as_ref(),
            &req.dns_names,
            X509Lifetime::Workload(ttl(req.ttl_seconds)),
        )
        .await?;
    tracing::info!(spiffe_id = %svid.spiffe_id, serial = %svid.serial_hex(), "X509-SVID minted by operator");
    let published = s.issuer.published();
    Ok(Json(MintX509Response {
        spiffe_id: svid.spiffe_id.clone(),
        chain_pem: svid.chain.iter().map(|c| cert_to_pem(c)).collect(),
        bundle_pem: published.bundle.to_pem(),
        expires_at: aims_core::unix_seconds(svid.not_after),
        serial: svid.serial_hex(),
    }))
}

async fn mint_jwt(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<MintJwtRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let svid = s
        .issuer
        .mint_jwt_svid(&req.spiffe_id, &req.audience, ttl(req.ttl_seconds))
        .await?;
    tracing::info!(spiffe_id = %svid.spiffe_id, audience = ?svid.audience, "JWT-SVID minted by operator");
    Ok(Json(MintTokenResponse {
        spiffe_id: svid.spiffe_id,
        token: svid.token,
        expires_at: svid.expiry,
    }))
}

async fn mint_wit(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<MintWitRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (key, alg) = cnf_key_from_jwk(req.public_jwk, SPIFFE_JWT_ALGORITHMS)
        .map_err(|e| ApiError::invalid(format!("public_jwk: {e}")))?;
    let wit = s
        .issuer
        .mint_wit_svid(&req.spiffe_id, &key, alg, ttl(req.ttl_seconds))
        .await?;
    Ok(Json(MintTokenResponse {
        spiffe_id: req.spiffe_id,
        token: wit.token,
        expires_at: wit.expiry,
    }))
}

async fn bundle(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let published = s.issuer.published();
    Ok(Json(BundleResponse {
        trust_domain: s.issuer.trust_domain().to_string(),
        sequence: published.bundle.sequence(),
        jwks: serde_json::from_str(&published.document)
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        pem: published.bundle.to_pem(),
    }))
}

#[derive(Deserialize)]
struct IssuedQuery {
    spiffe_id: Option<SpiffeId>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn issued(
    State(s): State<AppState>,
    Query(q): Query<IssuedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        s.issuer
            .store()
            .list_issued(q.spiffe_id.as_ref(), q.limit.min(1000))
            .await?,
    ))
}

async fn create_join_token(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateJoinTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ttl = req.ttl_seconds.map_or(JOIN_TOKEN_TTL, Duration::from_secs);
    if ttl.is_zero() || ttl > MAX_JOIN_TOKEN_TTL {
        return Err(ApiError::invalid("ttl must be between 1s and 7 days"));
    }
    if let Some(id) = &req.spiffe_id {
        check_in_domain(&s, id, "agent ID")?;
        if id.is_trust_domain_id() || *id == server_spiffe_id(s.issuer.trust_domain())? {
            return Err(ApiError::invalid(format!("{id} cannot be an agent ID")));
        }
    }
    let (token, spiffe_id, expires_at) =
        aims_provisioning::issuance::agent_api::create_join_token(&s.issuer, req.spiffe_id, ttl)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(JoinTokenResponse {
            token,
            spiffe_id,
            expires_at,
        }),
    ))
}

async fn list_agents(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().list_nodes().await?))
}

async fn ban_agent(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AgentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let node = s.issuer.store().ban_node(&req.spiffe_id).await?;
    s.changes.poke();
    tracing::warn!(agent = %node.spiffe_id, "agent banned");
    Ok(Json(node))
}

async fn evict_agent(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AgentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    s.issuer.store().delete_node(&req.spiffe_id).await?;
    s.changes.poke();
    tracing::warn!(agent = %req.spiffe_id, "agent evicted");
    Ok(StatusCode::NO_CONTENT)
}

async fn federated_bundles(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().federated_bundles().await?))
}

impl From<aims_oauth::OAuthError> for ApiError {
    fn from(e: aims_oauth::OAuthError) -> Self {
        if e.status.is_server_error() {
            Self::new(e.status, "internal", e.description)
        } else {
            Self::invalid(format!("{}: {}", e.code, e.description))
        }
    }
}

async fn create_client(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateClientRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let metadata = serde_json::from_value(req.metadata)
        .map_err(|e| ApiError::invalid(format!("metadata: {e}")))?;
    let registered = s
        .authorization_server
        .register_client(metadata, req.client_id, aims_store::ClientSource::Admin)
        .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn list_clients(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().list_clients().await?))
}

async fn delete_client(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.issuer.store().delete_client(&id).await?;
    s.authorization_server.forget_client(&id);
    tracing::info!(client = %id, "OAuth client deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn create_user(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let created = s
        .people
        .create_user(aims_people::users::NewUser {
            username: req.username,
            display_name: req.display_name,
            is_admin: req.admin,
            password: req.password,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list_users(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.people.list_users().await?))
}

async fn delete_user(
    State(s): State<AppState>,
    UrlPath(user): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.people.delete_user(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn disable_user(
    State(s): State<AppState>,
    UrlPath(user): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.people.set_disabled(&user, true).await?))
}

async fn enable_user(
    State(s): State<AppState>,
    UrlPath(user): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.people.set_disabled(&user, false).await?))
}

async fn enrol_user(
    State(s): State<AppState>,
    UrlPath(user): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let url = s.people.enrolment_link(&user).await?;
    Ok(Json(serde_json::json!({ "enrolment_url": url })))
}

impl From<aims_policy::service::ApplyError> for ApiError {
    fn from(e: aims_policy::service::ApplyError) -> Self {
        match e {
            aims_policy::service::ApplyError::Store(s) => s.into(),
            aims_policy::service::ApplyError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            aims_policy::service::ApplyError::Invalid(p) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_policy", p.to_string())
            }
        }
    }
}

async fn current_policy(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.policy.current().document())
}

async fn apply_policy(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<aims_admin::api::ApplyPolicyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let author = req.author.as_deref().unwrap_or("admin API");
    Ok(Json(
        s.policy
            .apply(&req.text, req.application, author, req.dry_run)
            .await?,
    ))
}

async fn policy_history(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().policy_history().await?))
}

async fn policy_followers(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.policy.followers().await?))
}

async fn policy_version(
    State(s): State<AppState>,
    UrlPath(version): UrlPath<u64>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.issuer.store().policy_version(version).await?))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_audit_limit")]
    limit: u64,
}

fn default_audit_limit() -> u64 {
    100
}

/// Audit log entries `from..from+limit` (at most 10,000 per call), with their exact bytes.
async fn audit_records(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        aims_audit::read_entries(&s.log.store, q.from, q.limit.min(10_000)).await?,
    ))
}

/// AIMS CO-1: evaluates compliance rules (the shipped ones unless the request brings its own)
/// over the evidence in the store.
async fn compliance_report(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<aims_admin::api::ComplianceRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let text = req
        .rules
        .as_deref()
        .unwrap_or(aims_compliance::DEFAULT_RULES);
    let rules =
        aims_compliance::RuleSet::parse(text).map_err(|e| ApiError::invalid(e.to_string()))?;
    let evidence = aims_compliance::Evidence::collect(&s.log.store, &s.log.vkey).await?;
    let now = aims_core::unix_seconds(std::time::SystemTime::now());
    Ok(Json(aims_compliance::Report::build(&rules, &evidence, now)))
}

async fn list_revocations(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.remediation.list().await?))
}

async fn revoke_principal(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<aims_admin::api::RemediationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    req.check()?;
    Ok(Json(
        s.remediation
            .revoke(&req.principal, &req.cause, Initiator::Operator)
            .await?,
    ))
}

async fn lift_revocation(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<aims_admin::api::RemediationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    req.check()?;
    match s
        .remediation
        .lift(&req.principal, &req.cause, Initiator::Operator)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no revocation of {} stands", req.principal),
        )),
    }
}

async fn remediate_entry(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<aims_admin::api::EntryRemediationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    aims_admin::api::RemediationRequest {
        principal: req.entry_id.clone(),
        cause: req.cause.clone(),
    }
    .check()?;
    let entry = s
        .remediation
        .set_entry_disabled(
            &req.entry_id,
            req.disabled,
            &req.cause,
            &Initiator::Operator.to_string(),
        )
        .await?;
    s.changes.poke();
    Ok(Json(entry))
}

/// The newest signed checkpoint and the key that verifies it.
async fn audit_checkpoint(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let note = s.log.store.latest_audit_checkpoint().await?.map(|c| c.note);
    Ok(Json(aims_admin::api::AuditCheckpoint {
        note,
        vkey: s.log.vkey.clone(),
    }))
}

/// What the audit log takes in the store.
async fn audit_storage(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.log.store.audit_storage().await?))
}

/// The entries of one task (AIMS MO-11).
async fn audit_trace(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        aims_audit::read_task(&s.log.store, &id, 10_000).await?,
    ))
}
