//! The HTTP endpoints: discovery (RFC 8414, OpenID Connect Discovery), the JWK Set, token
//! (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009) and dynamic client
//! registration (RFC 7591).

use aims_token::wire::{
    INTROSPECTION_PATH, JWKS_PATH, REGISTRATION_PATH, REVOCATION_PATH, TOKEN_PATH,
};
use std::sync::Arc;

use aims_authn::replay::ReplayKind;
use aims_authn::transport::ConnectionInfo;
use aims_credentials::jose::sha256_b64url;
use aims_store::{ClientSource, OAuthClientRow, StoreError, TokenKind};
use aims_token::claims::AccessClaims;
use aims_token::wire::{OFFLINE_ACCESS_SCOPE, OPENID_SCOPE};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use crate::AuthorizationServer;
use crate::client::{ClientMetadata, GRANT_TYPES};
use crate::client_auth::{AuthenticatedClient, PublicClients};
use crate::error::OAuthError;
use crate::form::Form;
use crate::issue::{Binding, random_token};

/// Largest request body (form or JSON).
const MAX_BODY: usize = 64 * 1024;

type S = State<Arc<AuthorizationServer>>;

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response {
    no_store((status, Json(v)).into_response())
}

/// The routes of the authorization server (served on the HTTPS listener, and the token,
/// introspection and revocation routes again on the mutual-TLS listener).
pub fn router(server: Arc<AuthorizationServer>) -> Router {
    Router::new()
        .route(aims_token::wire::AS_METADATA_PATH, get(metadata))
        .route(aims_token::wire::OPENID_CONFIGURATION_PATH, get(metadata))
        .route(JWKS_PATH, get(jwks))
        .route(TOKEN_PATH, post(token))
        .route(INTROSPECTION_PATH, post(introspect))
        .route(REVOCATION_PATH, post(revoke))
        .route(REGISTRATION_PATH, post(register))
        .route(aims_token::wire::PAR_PATH, post(push_request))
        .route(aims_token::wire::BACKCHANNEL_PATH, post(backchannel))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(server)
}

/// The pages people use (served on the HTTPS listener at the issuer, where their cookies
/// live): sign-in, enrolment and account ([`aims_people::pages`]), the authorization endpoint
/// with its consent page, and the approvals page. Empty without a people layer.
pub fn people_router(server: Arc<AuthorizationServer>) -> Router {
    let Some(people) = server.people.clone() else {
        return Router::new();
    };
    Router::new()
        .route(
            aims_token::wire::AUTHORIZE_PATH,
            get(crate::authorize::authorize),
        )
        .route(
            crate::authorize::CONTINUE_PATH,
            get(crate::authorize::continue_request),
        )
        .route(
            crate::authorize::DECIDE_PATH,
            post(crate::authorize::decide),
        )
        .merge(crate::ciba::page_routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(server)
        .merge(aims_people::pages::router(people))
}

/// A request a client makes with its authentication, answered with JSON (`status` on success).
async fn client_request<F, Fut>(
    s: Arc<AuthorizationServer>,
    conn: Option<Extension<ConnectionInfo>>,
    (headers, body): (HeaderMap, Bytes),
    public: PublicClients,
    status: StatusCode,
    f: F,
) -> Response
where
    F: FnOnce(Arc<AuthorizationServer>, Form, AuthenticatedClient) -> Fut,
    Fut: std::future::Future<Output = Result<Value, OAuthError>>,
{
    let conn = conn.map(|Extension(c)| c);
    let result = async {
        let (form, client) = authenticated(&s, &headers, &body, conn.as_ref(), public).await?;
        f(s.clone(), form, client).await
    }
    .await;
    match result {
        Ok(v) => json_response(status, &v),
        Err(e) => {
            tracing::debug!(error = %e, "client request refused");
            e.into_response()
        }
    }
}

async fn push_request(
    State(s): S,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // RFC 9126 §2.2: 201 Created.
    client_request(
        s,
        conn,
        (headers, body),
        PublicClients::Accepted,
        StatusCode::CREATED,
        |s, form, client| async move { s.push_request(&form, &client).await },
    )
    .await
}

async fn backchannel(
    State(s): S,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    client_request(
        s,
        conn,
        (headers, body),
        PublicClients::Refused,
        StatusCode::OK,
        |s, form, client| async move { s.backchannel_authentication(&form, &client).await },
    )
    .await
}

async fn metadata(State(s): S) -> Response {
    let doc = s.metadata();
    ([(header::CACHE_CONTROL, "max-age=300")], Json(doc)).into_response()
}

async fn jwks(State(s): S) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        s.keys.jwks().as_ref().clone(),
    )
        .into_response()
}

fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Form::parse(body)
}

/// The URLs a DPoP proof's `htu` may name for `path`.
fn targets(s: &AuthorizationServer, path: &str) -> Vec<String> {
    let mut t = vec![format!("{}{path}", s.settings.issuer)];
    if let Some(m) = &s.settings.mtls_base {
        t.push(format!("{m}{path}"));
    }
    t
}

async fn token(
    State(s): S,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(c)| c);
    let started = std::time::Instant::now();
    let result = async {
        let form = form_body(&headers, &body)?;
        let client = s
            .authenticate(&headers, &form, conn.as_ref(), PublicClients::Accepted)
            .await?;
        let binding = s.dpop_binding(&headers, &client.client_id).await?;
        s.grant(&form, &client, &binding, conn.as_ref()).await
    }
    .await;
    metrics::histogram!("aims_oauth_token_request_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => {
            metrics::counter!("aims_oauth_token_requests_total", "outcome" => "issued")
                .increment(1);
            json_response(StatusCode::OK, &r)
        }
        Err(e) => {
            metrics::counter!("aims_oauth_token_requests_total", "outcome" => e.code.as_str())
                .increment(1);
            tracing::debug!(error = %e, "token request refused");
            e.into_response()
        }
    }
}

impl AuthorizationServer {
    /// The DPoP key `client` proved (RFC 9449 §5), if it sent a proof. Its `jti` is admitted
    /// once across every replica (RFC 9449 §11.1), as a client assertion's is: a proof
    /// replayed to another replica is refused too.
    async fn dpop_binding(&self, headers: &HeaderMap, client: &str) -> Result<Binding, OAuthError> {
        let mut proofs = headers.get_all("dpop").iter();
        let Some(proof) = proofs.next() else {
            return Ok(Binding::default());
        };
        if proofs.next().is_some() {
            return Err(OAuthError::invalid_dpop_proof("more than one DPoP header"));
        }
        let proof = proof
            .to_str()
            .map_err(|_| OAuthError::invalid_dpop_proof("DPoP header is not text"))?;
        let now = self.now();
        let proof = self.dpop.verify_proof(
            proof,
            "POST",
            &targets(self, aims_token::wire::TOKEN_PATH),
            None,
            client,
            now,
        )?;
        self.first_use_everywhere(
            ReplayKind::Dpop,
            &proof.jkt,
            &proof.jti,
            proof.remember_until,
            now,
        )
        .await
        .map_err(|e| e.refusal(|m| OAuthError::invalid_dpop_proof(format!("jti: {m}"))))?;
        Ok(Binding {
            jkt: Some(proof.jkt),
        })
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> Value {
        let st = &self.settings;
        let mut methods = vec![
            "spiffe_jwt",
            "spiffe_wit",
            "private_key_jwt",
            "attest_jwt_client_auth",
        ];
        if st.mtls_base.is_some() {
            methods.insert(2, "spiffe_x509");
            methods.push("tls_client_auth");
        }
        if st.allow_client_secret {
            methods.extend(["client_secret_basic", "client_secret_post"]);
        }
        // Public clients exist only where people authorize them (the code grant).
        let mut public_methods = methods.clone();
        if self.people.is_some() {
            public_methods.push("none");
        }
        let mut doc = json!({
            "issuer": st.issuer,
            "token_endpoint": st.token_endpoint(),
            "jwks_uri": format!("{}{JWKS_PATH}", st.issuer),
            "introspection_endpoint": format!("{}{INTROSPECTION_PATH}", st.issuer),
            "revocation_endpoint": format!("{}{REVOCATION_PATH}", st.issuer),
            "response_types_supported": [],
            "grant_types_supported": GRANT_TYPES,
            "token_endpoint_auth_methods_supported": public_methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": public_methods,
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
            "client_attestation_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256"],
            "client_attestation_pop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
            "client_attestation_pop_methods_supported": ["attestation_pop_jwt"],
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
            "tls_client_certificate_bound_access_tokens": st.mtls_base.is_some(),
            "authorization_details_types_supported": [],
            "identity_chaining_requested_token_types_supported": [aims_token::wire::JWT_TOKEN_TYPE],
            // ID-JAG §7.2: redeemed by the JWT bearer grant from the issuers configured.
            "authorization_grant_profiles_supported": [aims_token::wire::ID_JAG_GRANT_PROFILE],
            "scopes_supported": [OFFLINE_ACCESS_SCOPE],
            // OpenID Discovery requires these; AIMS issues no ID tokens yet.
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        if self.people.is_some() {
            let par = aims_token::wire::PAR_PATH;
            let bc = aims_token::wire::BACKCHANNEL_PATH;
            for (k, v) in [
                (
                    "authorization_endpoint",
                    json!(format!("{}{}", st.issuer, aims_token::wire::AUTHORIZE_PATH)),
                ),
                (
                    "pushed_authorization_request_endpoint",
                    json!(format!("{}{par}", st.issuer)),
                ),
                (
                    "require_pushed_authorization_requests",
                    json!(st.require_par),
                ),
                ("response_types_supported", json!(["code"])),
                ("response_modes_supported", json!(["query"])),
                ("code_challenge_methods_supported", json!(["S256"])),
                (
                    "authorization_response_iss_parameter_supported",
                    json!(true),
                ),
                ("prompt_values_supported", json!(["none", "consent"])),
                (
                    "backchannel_authentication_endpoint",
                    json!(format!("{}{bc}", st.issuer)),
                ),
                (
                    "backchannel_token_delivery_modes_supported",
                    json!(["poll", "ping"]),
                ),
                ("backchannel_user_code_parameter_supported", json!(false)),
                (
                    "scopes_supported",
                    json!([OPENID_SCOPE, OFFLINE_ACCESS_SCOPE]),
                ),
                (
                    "claims_supported",
                    json!([
                        "sub",
                        "iss",
                        "aud",
                        "exp",
                        "iat",
                        "auth_time",
                        "nonce",
                        "amr"
                    ]),
                ),
            ] {
                doc[k] = v;
            }
        } else {
            doc["grant_types_supported"] = json!(
                GRANT_TYPES
                    .iter()
                    .filter(|g| !["authorization_code", aims_token::wire::CIBA_GRANT].contains(g))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(m) = &st.mtls_base {
            doc["mtls_endpoint_aliases"] = json!({
                "token_endpoint": format!("{m}{}", TOKEN_PATH),
                "introspection_endpoint": format!("{m}{INTROSPECTION_PATH}"),
                "revocation_endpoint": format!("{m}{REVOCATION_PATH}"),
            });
            if self.people.is_some() {
                doc["mtls_endpoint_aliases"]["pushed_authorization_request_endpoint"] =
                    json!(format!("{m}{}", aims_token::wire::PAR_PATH));
                doc["mtls_endpoint_aliases"]["backchannel_authentication_endpoint"] =
                    json!(format!("{m}{}", aims_token::wire::BACKCHANNEL_PATH));
            }
        }
        if st.client_id_metadata_documents {
            doc["client_id_metadata_document_supported"] = json!(true);
        }
        // ID-JAG §7.1: issued for the ID tokens of the people who sign in here.
        if self.people.is_some() {
            doc["identity_chaining_requested_token_types_supported"] = json!([
                aims_token::wire::JWT_TOKEN_TYPE,
                aims_token::wire::ID_JAG_TOKEN_TYPE
            ]);
        }
        if st.dynamic_registration {
            doc["registration_endpoint"] = json!(format!("{}{REGISTRATION_PATH}", st.issuer));
        }
        doc
    }

    /// An access token presented as a bearer credential to another API of this server (RFC
    /// 6750; the AuthZEN API): its client, if introspection finds it active, it names
    /// `audience`, and it is bound to no key (a sender-constrained token needs its proof,
    /// which a bearer header is not: RFC 9449 §7.1, RFC 8705 §3).
    pub async fn bearer_client(&self, token: &str, audience: &str) -> Result<String, String> {
        let v = self
            .introspection(token)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the token is not active")?;
        if v["token_type"] != "Bearer" || v.get("cnf").is_some() {
            return Err("not an unbound access token (a bound one needs its proof)".into());
        }
        let aud: Option<aims_credentials::jose::Audience> =
            serde_json::from_value(v["aud"].clone()).ok();
        if !aud.is_some_and(|a| a.values().iter().any(|v| v == audience)) {
            return Err(format!("the token is not for {audience}"));
        }
        v["client_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the token names no client".into())
    }

    /// What introspection says of `token` (RFC 7662 §2.2); `None` means inactive.
    async fn introspection(&self, token: &str) -> Result<Option<Value>, OAuthError> {
        let now = self.now();
        if token.matches('.').count() == 2 {
            if let Ok(c) = self.own_access_token(token, now) {
                if self.store.is_jti_revoked(&c.jti).await? {
                    return Ok(None);
                }
                // AIMS MO-5: a revocation of its client or subject ends every token issued
                // before it.
                let revoked = self
                    .store
                    .revocations_of(&[&c.client_id, &c.sub])
                    .await?
                    .iter()
                    .any(|r| r.revoked_at >= c.iat);
                if revoked {
                    return Ok(None);
                }
                return Ok(Some(access_introspection(c)));
            }
            if let Ok(c) =
                self.txn_services
                    .verify(token, self.keys.as_ref(), &self.settings.issuer, now)
            {
                let mut v = serde_json::to_value(c)
                    .map_err(|e| OAuthError::server_error("introspection", e))?;
                v["active"] = true.into();
                v["token_type"] = "N_A".into();
                return Ok(Some(v));
            }
            return Ok(None);
        }
        let rec = match self.store.get_token(&sha256_b64url(token.as_bytes())).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A rotated refresh token is spent: only its successor is active.
        if rec.revoked_at.is_some() || rec.used_at.is_some() || rec.expires_at <= now {
            return Ok(None);
        }
        let c: AccessClaims = serde_json::from_value(rec.claims)
            .map_err(|e| OAuthError::server_error("stored token claims", e))?;
        Ok(Some(match rec.kind {
            TokenKind::Access => access_introspection(c),
            TokenKind::Refresh => json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": c.client_id,
                "sub": c.sub,
                "scope": c.scope,
                "exp": rec.expires_at,
                "iss": c.iss,
            }),
        }))
    }
}

fn access_introspection(c: AccessClaims) -> Value {
    let token_type = if c.cnf.as_ref().is_some_and(|x| x.jkt.is_some()) {
        "DPoP"
    } else {
        "Bearer"
    };
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    v["active"] = true.into();
    v["token_type"] = token_type.into();
    v
}

async fn authenticated(
    s: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
    conn: Option<&ConnectionInfo>,
    public: PublicClients,
) -> Result<(Form, AuthenticatedClient), OAuthError> {
    let form = form_body(headers, body)?;
    let client = s.authenticate(headers, &form, conn, public).await?;
    Ok((form, client))
}

async fn introspect(
    State(s): S,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(c)| c);
    let result = async {
        let (form, client) =
            authenticated(&s, &headers, &body, conn.as_ref(), PublicClients::Refused).await?;
        let token = form.require("token")?;
        // RFC 7662 §4: a token's claims are for those it concerns; to anyone else it is
        // inactive.
        let answer = s
            .introspection(token)
            .await?
            .filter(|v| s.may_introspect(&client, v));
        tracing::debug!(caller = %client.client_id, active = answer.is_some(), "introspection");
        Ok::<_, OAuthError>(answer.unwrap_or_else(|| json!({"active": false})))
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    State(s): S,
    conn: Option<Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(c)| c);
    let result = async {
        let (form, client) =
            authenticated(&s, &headers, &body, conn.as_ref(), PublicClients::Accepted).await?;
        let token = form.require("token")?;
        if let Some(hint) = form.get("token_type_hint")
            && !["access_token", "refresh_token"].contains(&hint)
        {
            return Err(OAuthError::unsupported_token_type(format!(
                "token_type_hint {hint:?} is not supported"
            )));
        }
        s.revoke_token(&client, token).await
    }
    .await;
    match result {
        // RFC 7009 §2.2: 200 whether or not the token was known.
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

impl AuthorizationServer {
    /// Whether `client` may learn what introspection says of a token (RFC 7662 §4): a
    /// transaction token, any workload of its trust domain (where it travels); any other, its
    /// client, an audience or an audience's registered server (the same clients that may
    /// exchange it).
    fn may_introspect(&self, client: &AuthenticatedClient, answer: &Value) -> bool {
        if answer["token_type"] == "N_A" {
            return client
                .spiffe_id
                .as_ref()
                .is_some_and(|id| id.is_member_of(&self.settings.trust_domain));
        }
        let aud: Vec<String> = match &answer["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let view = crate::audience::SubjectView {
            sub: answer["sub"].as_str().unwrap_or_default(),
            client_id: answer["client_id"].as_str(),
            aud: &aud,
            may_act: None,
            locations: None,
        };
        crate::audience::check_entitled(&self.resources, client, &view).is_ok()
    }

    /// Revokes a token issued to `client` (RFC 7009 §2.1): a JWT access token by its `jti`,
    /// an opaque token by its record, a refresh token with its whole family.
    async fn revoke_token(
        &self,
        client: &AuthenticatedClient,
        token: &str,
    ) -> Result<(), OAuthError> {
        let now = self.now();
        if token.matches('.').count() == 2 {
            if let Ok(c) = self.own_access_token(token, now) {
                if c.client_id != client.client_id {
                    return Err(OAuthError::unauthorized_client(
                        "the token was issued to another client",
                    ));
                }
                self.store.revoke_jti(&c.jti, c.exp).await?;
                tracing::info!(client = %client.client_id, jti = %c.jti, "access token revoked");
            }
            return Ok(());
        }
        let hash = sha256_b64url(token.as_bytes());
        let rec = match self.store.get_token(&hash).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if rec.client_id != client.client_id {
            return Err(OAuthError::unauthorized_client(
                "the token was issued to another client",
            ));
        }
        match (&rec.kind, &rec.family) {
            (TokenKind::Refresh, Some(family)) => {
                self.store.revoke_family(family, now).await?;
            }
            _ => {
                self.store.revoke_token(&hash, now).await?;
            }
        }
        tracing::info!(client = %client.client_id, jti = %rec.jti, "token revoked");
        Ok(())
    }

    /// Forgets the cached copy of a client deleted or changed in the store: its next request is
    /// judged on the store's state at once on this server.
    pub fn forget_client(&self, client_id: &str) {
        self.clients.forget(client_id);
    }

    /// Forgets every cached client: another replica changed one (its next use is read from the
    /// store).
    pub fn forget_clients(&self) {
        self.clients.clear();
    }

    /// Registers a client (the admin API and RFC 7591 share this). Returns the stored
    /// metadata, with `client_id` and, for a legacy secret client, the one-time secret.
    pub async fn register_client(
        &self,
        mut metadata: ClientMetadata,
        client_id: Option<String>,
        source: ClientSource,
    ) -> Result<Value, OAuthError> {
        let method = metadata.validate(self.settings.allow_client_secret)?;
        // CIMD §7.1: identifiers this server assigns never look like metadata document URLs.
        let client_id = match client_id {
            Some(id) if crate::cimd::is_document_url(&id) || id.starts_with("spiffe://") => {
                return Err(OAuthError::invalid_client_metadata(
                    "client_id must not be a URL or a SPIFFE ID: SPIFFE workloads need no registration",
                ));
            }
            Some(id) if id.is_empty() || id.len() > 255 => {
                return Err(OAuthError::invalid_client_metadata(
                    "client_id must be 1–255 characters",
                ));
            }
            Some(id) => id,
            None => uuid::Uuid::new_v4().to_string(),
        };
        let secret = if method.is_secret() {
            Some(random_token()?)
        } else {
            None
        };
        metadata.token_endpoint_auth_method = Some(method.as_str().into());
        let now = self.now();
        let stored = serde_json::to_value(&metadata)
            .map_err(|e| OAuthError::server_error("client metadata", e))?;
        self.store
            .put_client(&OAuthClientRow {
                client_id: client_id.clone(),
                metadata: stored.clone(),
                secret_hash: secret.as_deref().map(|s| sha256_b64url(s.as_bytes())),
                source,
                created_at: now,
            })
            .await?;
        self.clients.forget(&client_id);
        tracing::info!(client = %client_id, method = method.as_str(), ?source, "OAuth client registered");
        let mut out = stored;
        out["client_id"] = client_id.into();
        out["client_id_issued_at"] = now.into();
        if let Some(secret) = secret {
            out["client_secret"] = secret.into();
            out["client_secret_expires_at"] = 0.into();
        }
        Ok(out)
    }
}

async fn register(State(s): S, body: Bytes) -> Response {
    let result = async {
        if !s.settings.dynamic_registration {
            return Err(OAuthError::access_denied(
                "dynamic client registration is disabled",
            ));
        }
        let metadata: ClientMetadata = serde_json::from_slice(&body).map_err(|e| {
            OAuthError::invalid_client_metadata(format!("not client metadata: {e}"))
        })?;
        s.register_client(metadata, None, ClientSource::Dynamic)
            .await
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}
