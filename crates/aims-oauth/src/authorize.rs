//! A user delegates to an agent (AIMS AZ-10…AZ-13): the authorization code grant (RFC 6749
//! §4.1) with PKCE S256 required (RFC 7636, RFC 9700 §2.1.1), pushed authorization requests
//! (RFC 9126; requirable per client and server-wide), resource indicators (RFC 8707),
//! authorization details (RFC 9396), the `iss` response parameter (RFC 9207), exact redirect
//! URI matching (RFC 9700 §2.1), and a consent page the user can remember and later withdraw.
//! The agent redeems the code with its own client authentication (its SVID, AZ-12), never a
//! secret; a code used twice revokes what it issued (RFC 6749 §4.1.2).

use std::sync::Arc;

use aims_credentials::jose::sha256_b64url;
use aims_people::pages::{self, render};
use aims_people::{People, SignedIn};
use aims_store::{CodeRow, CodeUse};
use aims_token::ErrorCode;
use aims_token::wire::{OFFLINE_ACCESS_SCOPE, OPENID_SCOPE};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AuthorizationServer;
use crate::client::KnownClient;
use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::issue::{Binding, Grant, Issued, TokenResponse, random_token};
use crate::rar;

/// Where an authorization request waits for sign-in and consent.
pub(crate) const CONTINUE_PATH: &str = "/oauth2/authorize/continue";
/// Where the consent form posts.
pub(crate) const DECIDE_PATH: &str = "/oauth2/authorize/decide";
/// RFC 9126 §2.2.
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request may wait for the authorization request naming it.
const PAR_TTL: i64 = 60;
/// How long an authorization request may wait for sign-in and consent.
const PENDING_TTL: i64 = 900;
const PAR_FLOW: &str = "par";
const PENDING_FLOW: &str = "authorization";

/// A validated authorization request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct AuthzRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    /// Whether the request named the redirect URI (then the token request must too).
    redirect_uri_given: bool,
    state: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) authorization_details: Option<Value>,
    code_challenge: String,
    nonce: Option<String>,
    prompt: Option<String>,
}

/// What the user approved, kept with the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Approved {
    request: AuthzRequest,
    auth_time: i64,
    amr: String,
}

/// Where a failed request is answered.
enum Failure {
    /// On our own page: the redirect URI is not (yet) known to be the client's.
    Page(OAuthError),
    /// At the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The `redirect_uri` a response may go to: exactly one the client registered (RFC 9700 §2.1);
/// when the request names none and exactly one is registered, that one.
fn redirect_target(client: &KnownClient, given: Option<&str>) -> Result<String, OAuthError> {
    let registered = client.metadata.redirect_uris.as_deref().unwrap_or_default();
    match (given, registered) {
        (_, []) => Err(OAuthError::unauthorized_client(
            "the client registered no redirect_uris",
        )),
        (Some(uri), list) if list.iter().any(|r| r == uri) => Ok(uri.to_owned()),
        (Some(_), _) => Err(OAuthError::invalid_request(
            "redirect_uri does not exactly match one the client registered",
        )),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(OAuthError::invalid_request(
            "redirect_uri is required: the client registered several",
        )),
    }
}

/// `uri` with the authorization response parameters added to its query.
fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // Registered URIs are validated absolute URIs; this cannot happen.
        Err(_) => uri.to_owned(),
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    csrf: &'a str,
    handle: &'a str,
    agent: &'a str,
    agent_id: &'a str,
    spiffe_id: Option<&'a str>,
    /// Whether an operator registered the client (its name and SPIFFE ID are vouched for).
    verified: bool,
    /// The name a self-registered client gives itself.
    claimed_name: Option<&'a str>,
    user: &'a str,
    username: &'a str,
    scopes: &'a [String],
    resources: &'a [String],
    details: Vec<String>,
    decide_path: &'a str,
}

/// One authorization detail in plain words: what may be done, where.
pub(crate) fn describe_detail(d: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        d.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = d.get("type").and_then(Value::as_str).unwrap_or("access");
    let mut s = kind.to_owned();
    let actions = list("actions");
    if !actions.is_empty() {
        s.push_str(&format!(": {}", actions.join(", ")));
    }
    let locations = list("locations");
    if !locations.is_empty() {
        s.push_str(&format!(" at {}", locations.join(", ")));
    }
    for (k, v) in d.as_object().into_iter().flatten() {
        if !["type", "actions", "locations"].contains(&k.as_str()) {
            s.push_str(&format!("; {k} = {v}"));
        }
    }
    s
}

impl AuthorizationServer {
    pub(crate) fn signing_in(&self) -> Result<&Arc<People>, OAuthError> {
        self.people
            .as_ref()
            .ok_or_else(|| OAuthError::access_denied("this server has no user sign-in"))
    }

    /// Validates an authorization request's parameters for `client` (the authorization
    /// endpoint and PAR share this).
    async fn validate_request(
        &self,
        params: &Form,
        client_id: &str,
    ) -> Result<AuthzRequest, Failure> {
        let client = self.registered(client_id).await.map_err(Failure::Page)?;
        let redirect_uri =
            redirect_target(&client, params.get("redirect_uri")).map_err(Failure::Page)?;
        let state = params.get("state").map(str::to_owned);
        let fail = |error: OAuthError| Failure::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
        };
        if params.get("request").is_some() {
            return Err(fail(OAuthError::coded(
                ErrorCode::RequestNotSupported,
                "request objects are not supported: push the request (PAR) instead",
            )));
        }
        match params.get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(fail(OAuthError::coded(
                    ErrorCode::UnsupportedResponseType,
                    format!("response_type {other:?} is not supported: use code"),
                )));
            }
            None => return Err(fail(OAuthError::invalid_request("missing response_type"))),
        }
        if params.get("response_mode").is_some_and(|m| m != "query") {
            return Err(fail(OAuthError::invalid_request(
                "only response_mode query is supported",
            )));
        }
        if !client.metadata.allows_grant("authorization_code") {
            return Err(fail(OAuthError::unauthorized_client(
                "the client is not registered for authorization_code",
            )));
        }
        // RFC 9700 §2.1.1: PKCE with S256, always.
        let code_challenge = match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (Some(c), Some("S256")) if c.len() == 43 => c.to_owned(),
            (Some(_), Some("S256")) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge must be a base64url SHA-256 (43 characters)",
                )));
            }
            (None, _) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge is required (PKCE, RFC 7636)",
                )));
            }
            (Some(_), _) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                )));
            }
        };
        let scopes = params.scopes().map_err(&fail)?.unwrap_or_default();
        client
            .metadata
            .check_scopes(client_id, &scopes)
            .map_err(&fail)?;
        let resources = crate::grants::resources(params).map_err(&fail)?;
        let authorization_details = params
            .get("authorization_details")
            .map(rar::parse)
            .transpose()
            .map_err(&fail)?;
        if resources.is_empty()
            && authorization_details
                .as_ref()
                .and_then(rar::locations)
                .is_none()
        {
            return Err(fail(OAuthError::invalid_target(
                "name the resource the token is for (resource, RFC 8707)",
            )));
        }
        Ok(AuthzRequest {
            client_id: client_id.to_owned(),
            redirect_uri,
            redirect_uri_given: params.get("redirect_uri").is_some(),
            state,
            scopes,
            resources,
            authorization_details,
            code_challenge,
            nonce: params.get("nonce").map(str::to_owned),
            prompt: params.get("prompt").map(str::to_owned),
        })
    }

    /// The pushed authorization request endpoint (RFC 9126 §2): the client authenticates as
    /// at the token endpoint, and gets a single-use `request_uri`.
    pub(crate) async fn push_request(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
    ) -> Result<Value, OAuthError> {
        self.signing_in()?;
        if form.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request(
                "request_uri is not allowed in a pushed request (RFC 9126 §2.1)",
            ));
        }
        if form
            .get("client_id")
            .is_some_and(|id| id != client.client_id)
        {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ));
        }
        let request = match self.validate_request(form, &client.client_id).await {
            Ok(r) => r,
            Err(Failure::Page(e) | Failure::Redirect { error: e, .. }) => return Err(e),
        };
        let handle = random_token()?;
        self.store
            .put_flow(
                &sha256_b64url(handle.as_bytes()),
                PAR_FLOW,
                &serde_json::to_value(&request)
                    .map_err(|e| OAuthError::server_error("pushed request", e))?,
                self.now() + PAR_TTL,
            )
            .await?;
        Ok(json!({"request_uri": format!("{REQUEST_URI_PREFIX}{handle}"), "expires_in": PAR_TTL}))
    }

    /// Where the browser goes for an authorization request: its error page or the client's
    /// redirect URI with an error, or on to sign-in and consent.
    async fn authorization_request(&self, params: &Form) -> Result<String, Failure> {
        let client_id = params
            .get("client_id")
            .ok_or_else(|| Failure::Page(OAuthError::invalid_request("missing client_id")))?;
        let request = match params.get("request_uri") {
            Some(uri) => {
                let handle = uri.strip_prefix(REQUEST_URI_PREFIX).ok_or_else(|| {
                    Failure::Page(OAuthError::coded(
                        ErrorCode::InvalidRequestUri,
                        "request_uri was not issued by this server",
                    ))
                })?;
                let stored = self
                    .store
                    .take_flow(&sha256_b64url(handle.as_bytes()), PAR_FLOW, self.now())
                    .await
                    .map_err(|e| Failure::Page(e.into()))?
                    .ok_or_else(|| {
                        Failure::Page(OAuthError::coded(
                            ErrorCode::InvalidRequestUri,
                            "request_uri is unknown, expired or already used",
                        ))
                    })?;
                let r: AuthzRequest = serde_json::from_value(stored)
                    .map_err(|e| Failure::Page(OAuthError::server_error("pushed request", e)))?;
                // RFC 9126 §4: the request_uri is bound to the client that pushed it.
                if r.client_id != client_id {
                    return Err(Failure::Page(OAuthError::coded(
                        ErrorCode::InvalidRequestUri,
                        "request_uri belongs to another client",
                    )));
                }
                r
            }
            None => {
                let r = self.validate_request(params, client_id).await?;
                let client = self.registered(client_id).await.map_err(Failure::Page)?;
                if self.settings.require_par
                    || client
                        .metadata
                        .require_pushed_authorization_requests
                        .unwrap_or(false)
                {
                    return Err(Failure::Redirect {
                        redirect_uri: r.redirect_uri,
                        state: r.state,
                        error: OAuthError::invalid_request(
                            "authorization requests must be pushed first (PAR, RFC 9126)",
                        ),
                    });
                }
                r
            }
        };
        let handle = random_token().map_err(Failure::Page)?;
        self.store
            .put_flow(
                &sha256_b64url(handle.as_bytes()),
                PENDING_FLOW,
                &serde_json::to_value(&request).map_err(|e| {
                    Failure::Page(OAuthError::server_error("authorization request", e))
                })?,
                self.now() + PENDING_TTL,
            )
            .await
            .map_err(|e| Failure::Page(e.into()))?;
        Ok(format!("{CONTINUE_PATH}?id={handle}"))
    }

    async fn pending(&self, handle: &str, take: bool) -> Result<AuthzRequest, OAuthError> {
        let hash = sha256_b64url(handle.as_bytes());
        let now = self.now();
        let stored = if take {
            self.store.take_flow(&hash, PENDING_FLOW, now).await?
        } else {
            self.store.get_flow(&hash, PENDING_FLOW, now).await?
        };
        let stored = stored.ok_or_else(|| {
            OAuthError::invalid_request("this authorization request expired or was answered: start again from the application")
        })?;
        serde_json::from_value(stored)
            .map_err(|e| OAuthError::server_error("authorization request", e))
    }

    /// Whether the user's remembered consent covers `r`.
    async fn consented(&self, user_id: &str, r: &AuthzRequest) -> Result<bool, OAuthError> {
        let consents = self.store.consents_of(user_id).await?;
        let Some((_, grant, _)) = consents.iter().find(|(c, _, _)| *c == r.client_id) else {
            return Ok(false);
        };
        let has = |k: &str, wanted: &[String]| {
            let held: Vec<&str> = grant[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            wanted.iter().all(|w| held.contains(&w.as_str()))
        };
        let details_ok = match (&r.authorization_details, grant.get("authorization_details")) {
            (None, _) => true,
            (Some(d), Some(held)) if !held.is_null() => rar::is_within(held, d),
            (Some(_), _) => false,
        };
        Ok(has("scopes", &r.scopes) && has("resources", &r.resources) && details_ok)
    }

    /// Issues the code for an approved request; returns the redirect to the client.
    async fn issue_code(&self, who: &SignedIn, r: AuthzRequest) -> Result<String, OAuthError> {
        let code = random_token()?;
        let approved = Approved {
            auth_time: who.auth_time,
            amr: who.method.clone(),
            request: r.clone(),
        };
        self.store
            .put_code(&CodeRow {
                code_hash: sha256_b64url(code.as_bytes()),
                client_id: r.client_id.clone(),
                user_id: who.user.user_id.clone(),
                request: serde_json::to_value(&approved)
                    .map_err(|e| OAuthError::server_error("authorization code", e))?,
                expires_at: self.now() + self.ttl(self.settings.code_ttl),
            })
            .await?;
        tracing::info!(user = %who.user.username, client = %r.client_id, "authorization code issued");
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &r.state {
            params.push(("state", s));
        }
        // RFC 9207 §2.
        params.push(("iss", &self.settings.issuer));
        Ok(with_params(&r.redirect_uri, &params))
    }

    fn error_redirect(&self, redirect_uri: &str, state: Option<&str>, e: &OAuthError) -> String {
        let mut params = vec![
            ("error", e.code.as_str()),
            ("error_description", e.description.as_str()),
        ];
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", &self.settings.issuer));
        with_params(redirect_uri, &params)
    }

    /// The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
    pub(crate) async fn authorization_code(
        &self,
        form: &Form,
        client: &AuthenticatedClient,
        binding: &Binding,
    ) -> Result<TokenResponse, OAuthError> {
        let code = form.require("code")?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing (PKCE)"))?;
        if !valid_verifier(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier must be 43–128 unreserved characters",
            ));
        }
        let hash = sha256_b64url(code.as_bytes());
        let row = match self
            .store
            .use_code(&hash, &client.client_id, self.now())
            .await?
        {
            CodeUse::Fresh(row) => *row,
            CodeUse::Reused(issued) => {
                // RFC 6749 §4.1.2: a code presented twice may have been stolen; what it
                // issued is revoked.
                if let Some(issued) = issued.and_then(|v| serde_json::from_value::<Issued>(v).ok())
                {
                    self.revoke_issued(&issued).await?;
                }
                tracing::warn!(client = %client.client_id, "authorization code reused: the tokens issued from it are revoked");
                return Err(OAuthError::invalid_grant(
                    "the code was already used; the tokens issued from it are revoked",
                ));
            }
            CodeUse::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "unknown or expired code, or issued to another client",
                ));
            }
        };
        let approved: Approved = serde_json::from_value(row.request)
            .map_err(|e| OAuthError::server_error("stored authorization code", e))?;
        let r = approved.request;
        match form.get("redirect_uri") {
            Some(uri) if uri != r.redirect_uri => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request's",
                ));
            }
            None if r.redirect_uri_given => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri is required: the authorization request named one",
                ));
            }
            _ => {}
        }
        if sha256_b64url(verifier.as_bytes()) != r.code_challenge {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let g = Grant {
            grant_type: "authorization_code".into(),
            act: Self::actor_chain(client, &row.user_id, None)?,
            subject: row.user_id.clone(),
            scopes: r.scopes.clone(),
            audience: r.resources.clone(),
            authorization_details: r.authorization_details.clone(),
            may_act: None,
            not_after: None,
            refresh: r
                .scopes
                .iter()
                .any(|s| s == OFFLINE_ACCESS_SCOPE)
                .then_some(None),
            approval: None,
        };
        let mut response = self.issue_access_token(client, g, binding, None).await?;
        if let Some(issued) = &response.issued {
            self.store
                .set_code_issued(
                    &hash,
                    &serde_json::to_value(issued)
                        .map_err(|e| OAuthError::server_error("code", e))?,
                )
                .await?;
        }
        if r.scopes.iter().any(|s| s == OPENID_SCOPE) {
            response.id_token = Some(self.id_token(
                &client.client_id,
                &row.user_id,
                Some(approved.auth_time),
                r.nonce,
                Some(approved.amr),
                None,
            )?);
        }
        Ok(response)
    }

    /// Revokes what one token response issued: the access token and its refresh family.
    pub(crate) async fn revoke_issued(&self, issued: &Issued) -> Result<(), OAuthError> {
        let now = self.now();
        self.store.revoke_jti(&issued.jti, issued.exp).await?;
        self.store.revoke_tokens_with_jti(&issued.jti, now).await?;
        if let Some(family) = &issued.family {
            self.store.revoke_family(family, now).await?;
        }
        Ok(())
    }
}

// --- the browser side ---

type S = State<Arc<AuthorizationServer>>;

fn failure_response(s: &AuthorizationServer, headers: &HeaderMap, f: Failure) -> Response {
    match f {
        Failure::Page(e) => oauth_error_page(s, headers, &e),
        Failure::Redirect {
            redirect_uri,
            state,
            error,
        } => {
            Redirect::to(&s.error_redirect(&redirect_uri, state.as_deref(), &error)).into_response()
        }
    }
}

/// An error shown on our own page (never sent to an unverified redirect URI).
pub(crate) fn oauth_error_page(
    s: &AuthorizationServer,
    headers: &HeaderMap,
    e: &OAuthError,
) -> Response {
    match &s.people {
        Some(p) => pages::message(
            p,
            headers,
            if e.status.is_server_error() {
                e.status
            } else {
                StatusCode::BAD_REQUEST
            },
            "Cannot continue",
            &format!("{}: {}", e.code, e.description),
            None,
        ),
        None => e.clone().into_response(),
    }
}

/// GET the authorization endpoint (RFC 6749 §3.1).
pub(crate) async fn authorize(
    State(s): S,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let query = raw.unwrap_or_default();
    let params = match Form::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => return oauth_error_page(&s, &headers, &e),
    };
    match s.authorization_request(&params).await {
        Ok(next) => Redirect::to(&next).into_response(),
        Err(f) => failure_response(&s, &headers, f),
    }
}

#[derive(Deserialize)]
pub(crate) struct Handle {
    id: String,
}

/// The signed-in user of a page request, after the CSRF check of a form post (`Some(token)`),
/// or the response to send instead: the sign-in page coming back to `back`, or a refusal.
pub(crate) async fn page_user(
    s: &AuthorizationServer,
    headers: &HeaderMap,
    form_csrf: Option<Option<&str>>,
    back: &str,
) -> Result<(Arc<People>, SignedIn), Response> {
    let people = s.signing_in().map_err(|e| e.into_response())?.clone();
    if let Some(token) = form_csrf
        && let Err(e) = people.check_csrf(headers, token)
    {
        return Err(pages::error_page(&people, headers, &e));
    }
    match people.signed_in(headers).await {
        Ok(Some(me)) => Ok((people, me)),
        Ok(None) => Err(pages::sign_in_redirect(back)),
        Err(e) => Err(pages::error_page(&people, headers, &e)),
    }
}

/// After sign-in: consent, unless remembered consent covers the request.
pub(crate) async fn continue_request(
    State(s): S,
    headers: HeaderMap,
    Query(h): Query<Handle>,
) -> Response {
    let r = match s.pending(&h.id, false).await {
        Ok(r) => r,
        Err(e) => return oauth_error_page(&s, &headers, &e),
    };
    let back = format!("{CONTINUE_PATH}?id={}", h.id);
    let me = match s.signing_in() {
        Ok(p) => match p.signed_in(&headers).await {
            Ok(Some(me)) => me,
            // OpenID Connect Core §3.1.2.6.
            Ok(None) if r.prompt.as_deref() == Some("none") => {
                return Redirect::to(&s.error_redirect(
                    &r.redirect_uri,
                    r.state.as_deref(),
                    &OAuthError::coded(ErrorCode::LoginRequired, "the user is not signed in"),
                ))
                .into_response();
            }
            Ok(None) => return pages::sign_in_redirect(&back),
            Err(e) => return pages::error_page(p, &headers, &e),
        },
        Err(e) => return e.into_response(),
    };
    let remembered = match s.consented(&me.user.user_id, &r).await {
        Ok(c) => c && r.prompt.as_deref() != Some("consent"),
        Err(e) => return oauth_error_page(&s, &headers, &e),
    };
    if remembered {
        let result = async {
            let r = s.pending(&h.id, true).await?;
            s.issue_code(&me, r).await
        }
        .await;
        return match result {
            Ok(to) => Redirect::to(&to).into_response(),
            Err(e) => oauth_error_page(&s, &headers, &e),
        };
    }
    if r.prompt.as_deref() == Some("none") {
        return Redirect::to(&s.error_redirect(
            &r.redirect_uri,
            r.state.as_deref(),
            &OAuthError::coded(ErrorCode::ConsentRequired, "the user has not consented"),
        ))
        .into_response();
    }
    consent_page(&s, &headers, &me, &r, &h.id).await
}

async fn consent_page(
    s: &AuthorizationServer,
    headers: &HeaderMap,
    me: &SignedIn,
    r: &AuthzRequest,
    handle: &str,
) -> Response {
    let Ok(people) = s.signing_in() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let client = s.registered(&r.client_id).await.ok();
    // A name or SPIFFE ID only an operator's registration vouches for; a client that
    // registered itself (or a metadata document) is shown by its client_id, its claims marked.
    let verified = client.as_ref().is_some_and(|c| c.operator_registered);
    let agent = client
        .as_ref()
        .and_then(|c| c.metadata.client_name.clone())
        .filter(|_| verified)
        .unwrap_or_else(|| r.client_id.clone());
    let claimed_name = client
        .as_ref()
        .and_then(|c| c.metadata.client_name.clone())
        .filter(|_| !verified);
    let spiffe_id = client.as_ref().and_then(|c| c.metadata.spiffe_id.clone());
    let details = r
        .authorization_details
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| a.iter().map(describe_detail).collect())
        .unwrap_or_default();
    let body = |csrf: &str| {
        render(&ConsentPage {
            csrf,
            handle,
            agent: &agent,
            agent_id: &r.client_id,
            spiffe_id: spiffe_id.as_deref(),
            verified,
            claimed_name: claimed_name.as_deref(),
            user: &me.user.display_name,
            username: &me.user.username,
            scopes: &r.scopes,
            resources: &r.resources,
            details,
            decide_path: DECIDE_PATH,
        })
    };
    pages::layout(
        people,
        headers,
        StatusCode::OK,
        "Allow this agent?",
        Some(me),
        body,
    )
}

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    id: String,
    decision: String,
    remember: Option<String>,
    csrf: Option<String>,
}

/// The consent form's answer.
pub(crate) async fn decide(
    State(s): S,
    headers: HeaderMap,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    let back = format!("{CONTINUE_PATH}?id={}", f.id);
    let me = match page_user(&s, &headers, Some(f.csrf.as_deref()), &back).await {
        Ok((_, me)) => me,
        Err(r) => return r,
    };
    let result = async {
        let r = s.pending(&f.id, true).await?;
        if f.decision != "approve" {
            tracing::info!(user = %me.user.username, client = %r.client_id, "authorization denied by the user");
            return Ok(s.error_redirect(&r.redirect_uri, r.state.as_deref(), &OAuthError::access_denied("the user denied the request")));
        }
        if f.remember.is_some() {
            s.store
                .put_consent(
                    &me.user.user_id,
                    &r.client_id,
                    &json!({"scopes": r.scopes, "resources": r.resources, "authorization_details": r.authorization_details}),
                    s.now(),
                )
                .await?;
        }
        s.issue_code(&me, r).await
    }
    .await;
    match result {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => oauth_error_page(&s, &headers, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_follow_rfc_7636() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"A-._~9".repeat(10)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let client = KnownClient {
            metadata: crate::client::ClientMetadata {
                redirect_uris: Some(vec!["https://app.example/cb".into()]),
                ..Default::default()
            },
            keys: Vec::new(),
            operator_registered: true,
        };
        assert_eq!(
            redirect_target(&client, None).unwrap(),
            "https://app.example/cb"
        );
        assert!(redirect_target(&client, Some("https://app.example/cb")).is_ok());
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example/cb#f",
        ] {
            assert!(redirect_target(&client, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_parameters_are_appended_to_the_query() {
        assert_eq!(
            with_params(
                "https://app.example/cb?x=1",
                &[("code", "c"), ("iss", "https://as.example")]
            ),
            "https://app.example/cb?x=1&code=c&iss=https%3A%2F%2Fas.example"
        );
    }

    #[test]
    fn details_read_as_plain_words() {
        let d = json!({"type": "payment", "actions": ["initiate"], "locations": ["https://bank.example"], "amount": "100 EUR"});
        assert_eq!(
            describe_detail(&d),
            "payment: initiate at https://bank.example; amount = \"100 EUR\""
        );
    }
}
