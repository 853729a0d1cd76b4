//! Tokens from the AIMS authorization server, the agent authenticating with its JWT-SVID
//! (draft-ietf-oauth-spiffe-client-auth: `client_assertion_type` jwt-spiffe, audience the
//! issuer): never a static secret (AIMS AZ-12). Tokens are DPoP-bound when a key is given, and
//! a server that asks for a DPoP nonce gets the request again with it (RFC 9449 §8).

use aims_token::wire::{
    ACCESS_TOKEN_TYPE, JWT_SPIFFE_ASSERTION, TOKEN_EXCHANGE_GRANT, TXN_TOKEN_TYPE,
};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::SdkError;
use crate::dpop::DpopKey;
use crate::source::JwtSource;

/// A token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Deserialize)]
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
}

/// A client of the AIMS token endpoint for one agent.
#[derive(Debug, Clone)]
pub struct TokenClient {
    issuer: String,
    http: reqwest::Client,
    svids: Arc<JwtSource>,
}

impl TokenClient {
    /// A client of the authorization server `issuer`, authenticating with JWT-SVIDs from
    /// `svids`. `http` must trust the server's certificate.
    pub fn new(issuer: impl Into<String>, http: reqwest::Client, svids: Arc<JwtSource>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            http,
            svids,
        }
    }

    fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }

    /// Sends a token request; retries once with the server's DPoP nonce when asked.
    async fn request(
        &self,
        form: &[(&str, &str)],
        dpop: Option<&DpopKey>,
    ) -> Result<Token, SdkError> {
        let assertion = self.svids.token(&self.issuer).await?;
        let mut body: Vec<(&str, &str)> = form.to_vec();
        body.push(("client_assertion_type", JWT_SPIFFE_ASSERTION));
        body.push(("client_assertion", &assertion));
        let url = self.token_endpoint();
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let mut req = self.http.post(&url).form(&body);
            if let Some(key) = dpop {
                req = req.header("DPoP", key.proof("POST", &url, None, nonce.as_deref())?);
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let server_nonce = resp
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let v: Value = resp.json().await?;
            if status == 200 {
                return serde_json::from_value(v)
                    .map_err(|e| SdkError::Invalid(format!("token response: {e}")));
            }
            let error = v["error"].as_str().unwrap_or("invalid_response").to_owned();
            if error == "use_dpop_nonce" && nonce.is_none() && server_nonce.is_some() {
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
        self.request(
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", subject_token),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("resource", resource),
                ("scope", scope),
            ],
            dpop,
        )
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
