//! A person approves what an agent is about to do (AIMS AZ-27…AZ-33): OpenID CIBA Core 1.0.
//! The agent, authenticated as at the token endpoint, asks at the backchannel authentication
//! endpoint for a named user's approval (`login_hint` or `id_token_hint`, a `binding_message`,
//! `requested_expiry`, scope, resources and authorization details). The user is told (the
//! pending-approvals page, and a [`Notifier`]: a webhook), signs in and approves or denies. The
//! agent polls the token endpoint (`authorization_pending`, `slow_down`, `expired_token`,
//! `access_denied`) or is pinged. The token then carries the approved authorization details
//! and the approval's reference, which the audit log records with the decision (AZ-30).

use std::sync::Arc;

use aims_credentials::jose::sha256_b64url;
use aims_people::pages::{self, render};
use aims_store::{CibaRow, CibaStatus, StoreError};
use aims_token::ErrorCode;
use aims_token::claims::{ID_TYP, IdClaims, verify_own};
use aims_token::wire::CIBA_GRANT;
use aims_token::wire::{OFFLINE_ACCESS_SCOPE, OPENID_SCOPE};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AuthorizationServer;
use crate::authorize::{describe_detail, oauth_error_page, page_user};
use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::fetch::{FetchError, Fetcher};
use crate::form::Form;
use crate::issue::{Binding, Grant, TokenResponse, random_token};
use crate::policy::ApprovalDecision;
use crate::rar;

/// The pending-approvals page.
pub const APPROVALS_PATH: &str = "/approvals";
/// Where its forms post.
const DECIDE_PATH: &str = "/approvals/decide";
/// The longest `binding_message` (characters): it must fit on a phone's notification.
const MAX_BINDING_MESSAGE: usize = 64;
/// CIBA Core §11: `slow_down` adds this to the interval.
const SLOW_DOWN_STEP: i64 = 5;

/// What a CIBA request asks, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Asked {
    scopes: Vec<String>,
    resources: Vec<String>,
    authorization_details: Option<Value>,
    binding_message: Option<String>,
    /// `poll` or `ping`.
    mode: String,
    /// Ping mode: the bearer token to present, the endpoint, and the `auth_req_id` to name
    /// (the one place it is kept in the clear: a ping must carry it).
    ping: Option<Ping>,
    /// The task the request belongs to (the agent's W3C trace id), for the approval's record.
    #[serde(default)]
    trace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    endpoint: String,
    token: String,
    auth_req_id: String,
}

/// What people are told when an approval waits for them.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalNotice {
    /// The user asked (username).
    pub user: String,
    /// The approval's reference.
    pub approval_id: String,
    /// The agent asking.
    pub client_id: String,
    /// The message the agent also shows.
    pub binding_message: Option<String>,
    /// Where to decide.
    pub approvals_url: String,
    /// Until when, Unix seconds.
    pub expires_at: i64,
}

/// A channel that tells a person an approval waits for them (AIMS AZ-29: "for example a push
/// to an authenticator app").
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Tells the user; an error is logged, the request stays pending on the approvals page.
    async fn approval_requested(&self, notice: &ApprovalNotice) -> Result<(), FetchError>;
}

/// Posts each notice as JSON to a URL (through the SSRF-guarded fetcher).
pub struct WebhookNotifier {
    url: String,
    fetcher: Arc<Fetcher>,
}

impl WebhookNotifier {
    /// A notifier posting to `url`.
    pub fn new(url: String, fetcher: Arc<Fetcher>) -> Self {
        Self { url, fetcher }
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    async fn approval_requested(&self, notice: &ApprovalNotice) -> Result<(), FetchError> {
        // A struct of strings and integers: serializing it cannot fail.
        let body = serde_json::to_value(notice).unwrap_or_default();
        self.fetcher.post_json(&self.url, None, &body).await
    }
}

impl AuthorizationServer {
    /// The backchannel authentication request (CIBA Core §7).
    pub(crate) async fn backchannel_authentication(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
    ) -> Result<Value, OAuthError> {
        self.signing_in()?;
        if !client.allows_grant(CIBA_GRANT) {
            return Err(OAuthError::unauthorized_client(
                "the client is not registered for CIBA",
            ));
        }
        let scopes = form.scopes()?.unwrap_or_default();
        // CIBA Core §7.1: an OpenID request.
        if !scopes.iter().any(|s| s == OPENID_SCOPE) {
            return Err(OAuthError::invalid_scope("scope must include openid"));
        }
        Self::registered_scopes(client, &scopes)?;
        let user = self.hinted_user(form).await?;
        let binding_message = form.get("binding_message").map(str::to_owned);
        if let Some(m) = &binding_message
            && (m.chars().count() > MAX_BINDING_MESSAGE || m.chars().any(char::is_control))
        {
            return Err(OAuthError::invalid_binding_message(format!(
                "at most {MAX_BINDING_MESSAGE} printable characters"
            )));
        }
        if form.get("user_code").is_some() {
            return Err(OAuthError::coded(
                ErrorCode::InvalidUserCode,
                "user codes are not supported",
            ));
        }
        let default_expiry = self.ttl(self.settings.ciba_expiry);
        let expiry = match form.get("requested_expiry") {
            None => default_expiry,
            Some(e) => match e.parse::<i64>() {
                Ok(n) if n > 0 && n <= self.ttl(self.settings.ciba_max_expiry) => n,
                _ => {
                    return Err(OAuthError::invalid_request(format!(
                        "requested_expiry must be 1–{} seconds",
                        self.ttl(self.settings.ciba_max_expiry)
                    )));
                }
            },
        };
        let resources = crate::grants::resources(form)?;
        let authorization_details = form
            .get("authorization_details")
            .map(rar::parse)
            .transpose()?;
        if resources.is_empty() {
            return Err(OAuthError::invalid_target(
                "name the resource the token is for (resource, RFC 8707)",
            ));
        }
        let auth_req_id = random_token()?;
        let metadata = client.metadata.as_ref().map(|m| &m.metadata);
        let mode = metadata
            .and_then(|m| m.backchannel_token_delivery_mode.clone())
            .unwrap_or_else(|| "poll".into());
        let ping = if mode == "ping" {
            let token = form.require("client_notification_token").map_err(|_| {
                OAuthError::invalid_request("client_notification_token is required in ping mode")
            })?;
            if token.len() > 1024 {
                return Err(OAuthError::invalid_request(
                    "client_notification_token is too long",
                ));
            }
            Some(Ping {
                endpoint: metadata
                    .and_then(|m| m.backchannel_client_notification_endpoint.clone())
                    .ok_or_else(|| {
                        OAuthError::invalid_request(
                            "the client registered no notification endpoint",
                        )
                    })?,
                token: token.to_owned(),
                auth_req_id: auth_req_id.clone(),
            })
        } else {
            None
        };
        let now = self.now();
        let interval = self.ttl(self.settings.ciba_interval).max(1);
        let row = CibaRow {
            id_hash: sha256_b64url(auth_req_id.as_bytes()),
            approval_id: uuid::Uuid::new_v4().to_string(),
            client_id: client.client_id.clone(),
            user_id: user.user_id.clone(),
            request: serde_json::to_value(Asked {
                scopes,
                resources,
                authorization_details,
                binding_message: binding_message.clone(),
                mode,
                ping,
                trace_id: client.trace_id.clone(),
            })
            .map_err(|e| OAuthError::server_error("CIBA request", e))?,
            status: CibaStatus::Pending,
            interval_secs: interval,
            last_polled_at: None,
            created_at: now,
            expires_at: now + expiry,
            decided_at: None,
        };
        self.store.put_ciba(&row).await?;
        tracing::info!(client = %client.client_id, user = %user.username, approval = %row.approval_id, "approval requested (CIBA)");
        if let Some(notifier) = &self.notifier {
            let notifier = notifier.clone();
            let notice = ApprovalNotice {
                user: user.username.clone(),
                approval_id: row.approval_id.clone(),
                client_id: client.client_id.clone(),
                binding_message,
                approvals_url: format!("{}{APPROVALS_PATH}", self.settings.issuer),
                expires_at: row.expires_at,
            };
            tokio::spawn(async move {
                if let Err(e) = notifier.approval_requested(&notice).await {
                    tracing::warn!(error = %e, approval = %notice.approval_id, "approval notification failed; the request waits on the approvals page");
                }
            });
        }
        Ok(json!({"auth_req_id": auth_req_id, "expires_in": expiry, "interval": interval}))
    }

    /// The user a request names: exactly one of `login_hint` (username), `id_token_hint` (an
    /// ID token this server issued; it may have expired) or `login_hint_token` (CIBA Core §7.1).
    async fn hinted_user(&self, form: &Form) -> Result<aims_store::UserRow, OAuthError> {
        let hints = ["login_hint", "id_token_hint", "login_hint_token"]
            .iter()
            .filter(|h| form.get(h).is_some())
            .count();
        if hints != 1 {
            return Err(OAuthError::invalid_request(
                "exactly one of login_hint, id_token_hint and login_hint_token is required",
            ));
        }
        let name = if let Some(h) = form.get("login_hint") {
            h.to_owned()
        } else if let Some(t) = form.get("id_token_hint") {
            // Expired hints are fine (CIBA Core §7.1): checked at their own issue time.
            let claims: IdClaims =
                verify_own(self.keys.as_ref(), &self.settings.issuer, t, ID_TYP, 0)
                    .map_err(|e| OAuthError::invalid_request(format!("id_token_hint: {e}")))?;
            claims.sub
        } else {
            return Err(OAuthError::invalid_request(
                "login_hint_token is not supported: use login_hint or id_token_hint",
            ));
        };
        match self.store.get_user(&name).await {
            Ok(u) if !u.disabled => Ok(u),
            Ok(_) | Err(StoreError::NotFound(_)) => {
                Err(OAuthError::unknown_user_id("no such user can approve"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The CIBA grant (CIBA Core §10, §11).
    pub(crate) async fn ciba_grant(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
    ) -> Result<TokenResponse, OAuthError> {
        let id = form.require("auth_req_id")?;
        let hash = sha256_b64url(id.as_bytes());
        let row = match self.store.get_ciba(&hash).await {
            Ok(r) if r.client_id == client.client_id && r.id_hash == hash => r,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(OAuthError::invalid_grant("unknown auth_req_id"));
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        match row.status {
            CibaStatus::Redeemed => {
                return Err(OAuthError::invalid_grant(
                    "auth_req_id was already redeemed",
                ));
            }
            CibaStatus::Denied => return Err(OAuthError::denied_by_user()),
            _ if now >= row.expires_at => {
                return Err(OAuthError::expired_token(
                    "the request expired before the user decided",
                ));
            }
            CibaStatus::Pending => {
                if let Some(last) = row.last_polled_at
                    && now - last < row.interval_secs
                {
                    let interval = row.interval_secs + SLOW_DOWN_STEP;
                    self.store.ciba_polled(&hash, now, interval).await?;
                    return Err(OAuthError::slow_down(interval));
                }
                self.store
                    .ciba_polled(&hash, now, row.interval_secs)
                    .await?;
                return Err(OAuthError::authorization_pending());
            }
            CibaStatus::Approved => {}
        }
        if !self.store.redeem_ciba(&hash).await? {
            return Err(OAuthError::invalid_grant(
                "auth_req_id was already redeemed",
            ));
        }
        let asked: Asked = serde_json::from_value(row.request)
            .map_err(|e| OAuthError::server_error("stored CIBA request", e))?;
        let g = Grant {
            grant_type: CIBA_GRANT.into(),
            act: Self::actor_chain(client, &row.user_id, None)?,
            subject: row.user_id.clone(),
            scopes: asked.scopes.clone(),
            audience: asked.resources,
            authorization_details: asked.authorization_details,
            may_act: None,
            not_after: None,
            refresh: asked
                .scopes
                .iter()
                .any(|s| s == OFFLINE_ACCESS_SCOPE)
                .then_some(None),
            approval: Some(row.approval_id.clone()),
        };
        let mut response = self.issue_access_token(client, g, binding, None).await?;
        response.id_token = Some(self.id_token(
            &client.client_id,
            &row.user_id,
            row.decided_at,
            None,
            None,
            Some(id.to_owned()),
        )?);
        tracing::info!(client = %client.client_id, approval = %row.approval_id, "token issued on a person's approval");
        Ok(response)
    }

    /// A signed-in user's decision on an approval addressed to them; recorded in the audit log
    /// before it takes effect (fail closed). `Ok(false)`: no such request waits for this user.
    pub async fn decide_approval(
        &self,
        user: &aims_store::UserRow,
        approval_id: &str,
        approve: bool,
    ) -> Result<bool, OAuthError> {
        let row = match self.store.get_ciba(approval_id).await {
            Ok(r) if r.approval_id == approval_id => r,
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        if row.user_id != user.user_id || row.status != CibaStatus::Pending || now >= row.expires_at
        {
            return Ok(false);
        }
        let asked: Asked = serde_json::from_value(row.request)
            .map_err(|e| OAuthError::server_error("stored CIBA request", e))?;
        self.pdp
            .record_approval(&ApprovalDecision {
                approval_id: approval_id.to_owned(),
                client_id: row.client_id.clone(),
                user_id: user.user_id.clone(),
                approved: approve,
                scopes: asked.scopes.clone(),
                audience: asked.resources.clone(),
                authorization_details: asked.authorization_details.clone(),
                correlation_id: asked.trace_id.clone(),
            })
            .await
            .map_err(|e| OAuthError::unavailable(e.to_string()))?;
        if !self
            .store
            .decide_ciba(approval_id, &user.user_id, approve, now)
            .await?
        {
            return Ok(false);
        }
        tracing::info!(user = %user.username, approval = %approval_id, approve, "approval decided");
        if let Some(ping) = asked.ping {
            let fetcher = self.fetcher.clone();
            tokio::spawn(async move {
                // CIBA Core §10.2.
                let body = json!({"auth_req_id": ping.auth_req_id});
                if let Err(e) = fetcher
                    .post_json(&ping.endpoint, Some(&ping.token), &body)
                    .await
                {
                    tracing::warn!(error = %e, "CIBA ping failed; the client can still poll");
                }
            });
        }
        Ok(true)
    }
}

// --- the approvals page ---

struct ApprovalView {
    id: String,
    agent: String,
    client_id: String,
    binding_message: Option<String>,
    scopes: Vec<String>,
    resources: Vec<String>,
    details: Vec<String>,
    asked: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage<'a> {
    csrf: &'a str,
    requests: Vec<ApprovalView>,
}

type S = State<Arc<AuthorizationServer>>;

/// The requests waiting for the signed-in user.
pub(crate) async fn approvals(State(s): S, headers: HeaderMap) -> Response {
    let (people, me) = match page_user(&s, &headers, None, APPROVALS_PATH).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let rows = match s.store.pending_ciba(&me.user.user_id, s.now()).await {
        Ok(r) => r,
        Err(e) => return oauth_error_page(&s, &headers, &e.into()),
    };
    let mut requests = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(asked) = serde_json::from_value::<Asked>(r.request) else {
            continue;
        };
        let agent = s
            .registered(&r.client_id)
            .await
            .ok()
            .and_then(|c| c.metadata.client_name.clone())
            .unwrap_or_else(|| r.client_id.clone());
        requests.push(ApprovalView {
            id: r.approval_id,
            agent,
            client_id: r.client_id,
            binding_message: asked.binding_message,
            scopes: asked.scopes,
            resources: asked.resources,
            details: asked
                .authorization_details
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| a.iter().map(describe_detail).collect())
                .unwrap_or_default(),
            asked: aims_core::format_unix(r.created_at),
            expires: aims_core::format_unix(r.expires_at),
        });
    }
    pages::layout(
        &people,
        &headers,
        StatusCode::OK,
        "Approvals",
        Some(&me),
        |csrf| render(&ApprovalsPage { csrf, requests }),
    )
}

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    id: String,
    decision: String,
    csrf: Option<String>,
}

/// The user's answer to one request.
pub(crate) async fn decide(
    State(s): S,
    headers: HeaderMap,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    let (people, me) = match page_user(&s, &headers, Some(f.csrf.as_deref()), APPROVALS_PATH).await
    {
        Ok(u) => u,
        Err(r) => return r,
    };
    let approve = f.decision == "approve";
    match s.decide_approval(&me.user, &f.id, approve).await {
        Ok(true) => Redirect::to(APPROVALS_PATH).into_response(),
        Ok(false) => pages::message(
            &people,
            &headers,
            StatusCode::NOT_FOUND,
            "Not found",
            "No such request is waiting for your decision: it expired, was decided, or is addressed to someone else.",
            Some(APPROVALS_PATH),
        ),
        Err(e) => oauth_error_page(&s, &headers, &e),
    }
}

/// The routes people use: the approvals page and its form.
pub(crate) fn page_routes() -> axum::Router<Arc<AuthorizationServer>> {
    axum::Router::new()
        .route(APPROVALS_PATH, axum::routing::get(approvals))
        .route(DECIDE_PATH, axum::routing::post(decide))
}
