//! Tokens from the AIMS authorization server, the agent authenticating with its JWT-SVID
//! (draft-ietf-oauth-spiffe-client-auth: `client_assertion_type` jwt-spiffe, audience the
//! issuer): never a static secret (AIMS AZ-12). Tokens are DPoP-bound when a key is given, and
//! a server that asks for a DPoP nonce gets the request again with it (RFC 9449 §8).
//!
//! For itself (client credentials), along agent chains (token exchange, transaction tokens)
//! and for a person: the agent pushes an authorization request (RFC 9126) and redeems the
//! code with its PKCE verifier (RFC 6749 §4.1.3, RFC 7636), or asks the person's approval out
//! of band and polls for it (OpenID CIBA Core 1.0, poll mode). With a task's trace id, every
//! request carries a W3C `traceparent` so the audit log joins them into one trace (AIMS MO-9).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aims_token::wire::{
    ACCESS_TOKEN_TYPE, BACKCHANNEL_PATH, CIBA_GRANT, JWT_SPIFFE_ASSERTION, PAR_PATH,
    TOKEN_EXCHANGE_GRANT, TOKEN_PATH, TXN_TOKEN_TYPE,
};
use serde::Deserialize;
use serde_json::Value;

use crate::SdkError;
use crate::dpop::DpopKey;
use crate::source::JwtSource;

/// A token response (RFC 6749 §5.1, RFC 8693 §2.2.1). `Debug` shows no token.
#[derive(Clone, Deserialize)]
pub struct Token {
    /// The token.
    pub access_token: String,
    /// `Bearer`, `DPoP` or `N_A`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// What was issued (token exchange).
    #[serde(default)]
    pub issued_token_type: Option<String>,
    /// Granted RFC 9396 details.
    #[serde(default)]
    pub authorization_details: Option<Value>,
    /// A refresh token (RFC 6749 §6), when one was issued.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A pushed authorization request's answer (RFC 9126 §2.2).
#[derive(Debug, Clone, Deserialize)]
pub struct PushedRequest {
    /// What the person's browser takes to the authorization endpoint.
    pub request_uri: String,
    /// Seconds it stays good.
    pub expires_in: i64,
}

/// A backchannel authentication request's answer (CIBA Core §7.3).
#[derive(Debug, Clone, Deserialize)]
pub struct BackchannelRequest {
    /// What the client polls with.
    pub auth_req_id: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// The longest wait between polls this client accepts, whatever the server says.
const MAX_POLL_INTERVAL: u64 = 60;
/// The longest a request is polled for (CIBA Core §7.3 `expires_in` is the server's to set;
/// a broken or hostile one cannot make the client poll forever or overflow its clock).
const MAX_POLL_LIFETIME: u64 = 24 * 3600;

/// The interval (at least 1 s, at most a minute) and the deadline of polling `request`.
fn poll_bounds(request: &BackchannelRequest, now: Instant) -> (u64, Instant) {
    let interval = request.interval.clamp(1, MAX_POLL_INTERVAL);
    let lifetime = Duration::from_secs(request.expires_in.min(MAX_POLL_LIFETIME));
    (interval, now.checked_add(lifetime).unwrap_or(now))
}

/// A client of the AIMS authorization server for one agent.
#[derive(Debug, Clone)]
pub struct TokenClient {
    issuer: String,
    http: reqwest::Client,
    svids: Arc<JwtSource>,
    /// The `client_id` of a registered client whose identity is the agent's (its
    /// `token_endpoint_auth_method` spiffe_jwt); `None`: the SPIFFE ID is the client.
    client_id: Option<String>,
    /// The task's W3C trace id, sent as `traceparent` on every request.
    trace_id: Option<String>,
}

impl TokenClient {
    /// A client of the authorization server `issuer`, authenticating with JWT-SVIDs from
    /// `svids`. `http` must trust the server's certificate.
    pub fn new(issuer: impl Into<String>, http: reqwest::Client, svids: Arc<JwtSource>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            http,
            svids,
            client_id: None,
            trace_id: None,
        }
    }

    /// Authenticates as the registered client `client_id` (its identity is this agent's
    /// SPIFFE ID).
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sends `traceparent` with `trace_id` (32 hex digits) and a fresh span on every request
    /// (W3C Trace Context §3.2), so the server records them under the task.
    #[must_use]
    pub fn with_trace(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// Sends a token request; retries once with the server's DPoP nonce when asked.
    async fn request(
        &self,
        form: &[(&str, &str)],
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        let v = self.post(TOKEN_PATH, form, dpop).await?;
        serde_json::from_value(v).map_err(|e| SdkError::Invalid(format!("token response: {e}")))
    }

    /// POSTs `form` to the endpoint at `path`, authenticated with the agent's JWT-SVID; the
    /// JSON answer of a 2xx, else the OAuth error.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        dpop: Option<&DpopKey>,
    ) -> Result<Value, SdkError> {
        let assertion = self.svids.token(&self.issuer).await?;
        let mut body: Vec<(&str, &str)> = form.to_vec();
        body.push(("client_assertion_type", JWT_SPIFFE_ASSERTION));
        body.push(("client_assertion", &assertion));
        if let Some(id) = &self.client_id {
            body.push(("client_id", id));
        }
        let mut headers = Vec::new();
        if let Some(trace) = &self.trace_id {
            let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
            headers.push(("traceparent", format!("00-{trace}-{span}-01")));
        }
        post_form(
            &self.http,
            &format!("{}{path}", self.issuer),
            &body,
            &headers,
            dpop,
        )
        .await
    }

    /// Pushes an authorization request (RFC 9126 §2.1) with `params` (`response_type`,
    /// `redirect_uri`, `scope`, `code_challenge` …); the person's browser then takes the
    /// `request_uri` to the authorization endpoint.
    pub async fn push_authorization_request(
        &self,
        params: &[(&str, &str)],
    ) -> Result<PushedRequest, SdkError> {
        let v = self.post(PAR_PATH, params, None).await?;
        serde_json::from_value(v).map_err(|e| SdkError::Invalid(format!("PAR response: {e}")))
    }

    /// Redeems an authorization `code` (RFC 6749 §4.1.3) with its PKCE `code_verifier`
    /// (RFC 7636 §4.5): a token for the person who consented, the agent as its actor.
    pub async fn authorization_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        self.request(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ],
            dpop,
        )
        .await
    }

    /// Asks a person's approval out of band (CIBA Core §7.1) with `params` (`scope`,
    /// `login_hint`, `binding_message`, `authorization_details` …).
    pub async fn backchannel_authentication(
        &self,
        params: &[(&str, &str)],
    ) -> Result<BackchannelRequest, SdkError> {
        let v = self.post(BACKCHANNEL_PATH, params, None).await?;
        serde_json::from_value(v).map_err(|e| SdkError::Invalid(format!("CIBA response: {e}")))
    }

    /// Polls for the token of an approved `request` (CIBA Core §10.1): waits its interval
    /// between polls, five seconds more after `slow_down` (§11), until it is approved (the
    /// token), denied or expired (the OAuth error).
    pub async fn poll_approval(&self, request: &BackchannelRequest) -> Result<Token, SdkError> {
        let (mut interval, expires) = poll_bounds(request, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            let polled = self
                .request(
                    &[
                        ("grant_type", CIBA_GRANT),
                        ("auth_req_id", &request.auth_req_id),
                    ],
                    None,
                )
                .await;
            match polled {
                Err(SdkError::OAuth { error, .. }) if error == "authorization_pending" => {}
                Err(SdkError::OAuth { error, .. }) if error == "slow_down" => {
                    interval = (interval + 5).min(MAX_POLL_INTERVAL);
                }
                other => return other,
            }
            if Instant::now() >= expires {
                return Err(SdkError::OAuth {
                    status: 400,
                    error: "expired_token".into(),
                    description: "nobody decided before the request expired".into(),
                });
            }
        }
    }

    /// A token for the agent itself (client credentials, RFC 6749 §4.4) for `resource`.
    pub async fn client_credentials(
        &self,
        resource: &str,
        scope: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        self.request(
            &[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ],
            dpop,
        )
        .await
    }

    /// Exchanges `subject_token` (a token another agent or a user's delegation gave this
    /// agent) for one for `resource`, never wider (RFC 8693 §2.1; the agent becomes the newest
    /// `act`).
    pub async fn exchange(
        &self,
        subject_token: &str,
        resource: &str,
        scope: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        self.exchange_to(subject_token, resource, scope, None, dpop)
            .await
    }

    async fn exchange_to(
        &self,
        subject_token: &str,
        resource: &str,
        scope: &str,
        audience: Option<&str>,
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("resource", resource),
            ("scope", scope),
        ];
        if let Some(a) = audience {
            form.push(("audience", a));
        }
        self.request(&form, dpop).await
    }

    /// Hands a task to `next_agent` (RFC 8693 §2.1 `audience`): a token for `resource` that
    /// `next_agent`, named among its audiences, may exchange in turn ([`Self::exchange`]).
    pub async fn hand_off(
        &self,
        subject_token: &str,
        next_agent: &str,
        resource: &str,
        scope: &str,
    ) -> Result<Token, SdkError> {
        self.exchange_to(subject_token, resource, scope, Some(next_agent), None)
            .await
    }

    /// A transaction token for the calls of one request inside `trust_domain`
    /// (draft-ietf-oauth-transaction-tokens-11 §7), from the access token that started it.
    pub async fn transaction_token(
        &self,
        subject_token: &str,
        trust_domain: &str,
        scope: &str,
    ) -> Result<Token, SdkError> {
        self.request(
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("requested_token_type", TXN_TOKEN_TYPE),
                ("subject_token", subject_token),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("audience", trust_domain),
                ("scope", scope),
            ],
            None,
        )
        .await
    }
}

/// The body of `resp`, refused as soon as it is known to exceed `max` bytes
/// (`aims_outbound::fetch::read_limited`).
pub(crate) async fn read_limited(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, SdkError> {
    let url = resp.url().to_string();
    aims_outbound::fetch::read_limited(&url, resp, max)
        .await
        .map_err(|e| SdkError::Invalid(e.to_string()))
}

/// The largest answer an OAuth endpoint may give.
const MAX_OAUTH_ANSWER: usize = 256 * 1024;

/// POSTs `form` to an OAuth endpoint at `url` with `headers`; the JSON answer of a 2xx, else
/// the OAuth error (RFC 6749 §5.2). With a DPoP key, each attempt carries a fresh proof, and a
/// server that asks for a nonce gets the request once more with it (RFC 9449 §8).
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    headers: &[(&str, String)],
    dpop: Option<&DpopKey>,
) -> Result<Value, SdkError> {
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let mut req = http.post(url).form(form);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some(key) = dpop {
            req = req.header("DPoP", key.proof("POST", url, None, nonce.as_deref())?);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let server_nonce = resp
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp, MAX_OAUTH_ANSWER).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SdkError::Invalid(format!("{url} answered {status} with no JSON: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let error = v["error"].as_str().unwrap_or("invalid_response").to_owned();
        if error == "use_dpop_nonce" && nonce.is_none() && server_nonce.is_some() && dpop.is_some()
        {
            nonce = server_nonce;
            continue;
        }
        return Err(SdkError::OAuth {
            status,
            error,
            description: v["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Err(SdkError::Invalid(
        "the server kept asking for a DPoP nonce".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_cannot_make_the_client_poll_forever_or_overflow_its_clock() {
        let now = Instant::now();
        let hostile = BackchannelRequest {
            auth_req_id: "x".into(),
            expires_in: u64::MAX,
            interval: u64::MAX,
        };
        let (interval, deadline) = poll_bounds(&hostile, now);
        assert_eq!(interval, MAX_POLL_INTERVAL);
        assert_eq!(deadline, now + Duration::from_secs(MAX_POLL_LIFETIME));
        let eager = BackchannelRequest {
            auth_req_id: "x".into(),
            expires_in: 120,
            interval: 0,
        };
        let (interval, deadline) = poll_bounds(&eager, now);
        assert_eq!(interval, 1);
        assert_eq!(deadline, now + Duration::from_secs(120));
    }
}
