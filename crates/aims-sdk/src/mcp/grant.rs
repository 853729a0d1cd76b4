//! How an MCP client obtains its access token once it knows the authorization server: the
//! grants of MCP's authorization extensions, each with the resource indicator of the MCP
//! server (RFC 8707 §2) and, when the server supports it, a DPoP proof (RFC 9449 §5).

use std::time::SystemTime;

use aims_credentials::PrivateKey;
use aims_credentials::jose::{JwsHeader, sign};
use aims_token::wire::{
    ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_BEARER_ASSERTION, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT,
};
use base64::Engine as _;
use serde_json::json;

use crate::SdkError;
use crate::dpop::DpopKey;
use crate::mcp::authorize::{Browser, authorization_code};
use crate::mcp::discovery::AuthorizationServer;
use crate::oauth::{Token, post_form};
use crate::source::JwtSource;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3).
pub enum ClientAuth {
    /// A client with no credentials of its own: only its `client_id` (RFC 6749 §2.1).
    Public {
        /// Its `client_id`.
        client_id: String,
    },
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    SecretBasic {
        /// Its `client_id`.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// `client_secret_post` (RFC 6749 §2.3.1).
    SecretPost {
        /// Its `client_id`.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a short assertion signed
    /// with the client's key, audience the issuer.
    PrivateKeyJwt {
        /// Its `client_id`: the assertion's `iss` and `sub`.
        client_id: String,
        /// The key (its public half registered with the server).
        key: Box<PrivateKey>,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (method, client_id) = match self {
            Self::Public { client_id } => ("none", client_id),
            Self::SecretBasic { client_id, .. } => ("client_secret_basic", client_id),
            Self::SecretPost { client_id, .. } => ("client_secret_post", client_id),
            Self::PrivateKeyJwt { client_id, .. } => ("private_key_jwt", client_id),
        };
        f.debug_struct("ClientAuth")
            .field("method", &method)
            .field("client_id", client_id)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Its `client_id`.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Public { client_id }
            | Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// Adds this client's authentication to a request to `issuer`'s token endpoint.
    fn apply(
        &self,
        issuer: &str,
        form: &mut Vec<(&'static str, String)>,
        headers: &mut Vec<(&'static str, String)>,
    ) -> Result<(), SdkError> {
        match self {
            Self::Public { client_id } => form.push(("client_id", client_id.clone())),
            Self::SecretBasic { client_id, secret } => {
                // RFC 6749 §2.3.1: each part form-encoded before the Basic encoding.
                let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.push(("authorization", format!("Basic {b64}")));
            }
            Self::SecretPost { client_id, secret } => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            Self::PrivateKeyJwt { client_id, key } => {
                let now = aims_core::unix_seconds(SystemTime::now());
                let claims = json!({
                    "iss": client_id,
                    "sub": client_id,
                    "aud": issuer,
                    "jti": uuid::Uuid::new_v4().to_string(),
                    "iat": now,
                    "exp": now + 60,
                });
                let header = JwsHeader::new(key, Some("JWT"), None);
                let assertion =
                    sign(key, &header, &claims).map_err(|e| SdkError::Key(e.to_string()))?;
                form.push(("client_id", client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION.to_owned()));
                form.push(("client_assertion", assertion));
            }
        }
        Ok(())
    }
}

/// `application/x-www-form-urlencoded` encoding of `s` (RFC 6749 Appendix B).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The grant an MCP client uses.
#[derive(Debug)]
pub enum Grant {
    /// Client credentials (RFC 6749 §4.4; MCP extension
    /// `io.modelcontextprotocol/oauth-client-credentials`, SEP-1046).
    ClientCredentials(ClientAuth),
    /// A workload's own JWT presented as an authorization grant (RFC 7523 §2.1; MCP workload
    /// identity federation, SEP-1933): e.g. a JWT-SVID for the authorization server.
    JwtBearer {
        /// The assertion.
        assertion: Assertion,
        /// The client, if the server knows one.
        client: Option<ClientAuth>,
    },
    /// Enterprise-managed authorization (MCP extension
    /// `io.modelcontextprotocol/enterprise-managed-authorization`, SEP-990;
    /// draft-ietf-oauth-identity-assertion-authz-grant §4–§5): the person's ID token is
    /// exchanged at their enterprise IdP for an ID-JAG naming this authorization server and
    /// the MCP server, which the client then redeems by the JWT bearer grant.
    IdJag {
        /// The IdP's token endpoint.
        idp_token_endpoint: String,
        /// This client's `client_id` at the IdP.
        idp_client_id: String,
        /// The person's ID token from their sign-in at the IdP.
        id_token: String,
        /// This client at the MCP server's authorization server.
        client: ClientAuth,
    },
    /// The authorization code grant with PKCE, for a person at a browser (RFC 6749 §4.1,
    /// RFC 7636).
    AuthorizationCode {
        /// The registered client; `None`: dynamic registration (RFC 7591).
        client: Option<ClientAuth>,
        /// The `client_name` it registers with.
        client_name: String,
        /// The URL of this client's metadata document: its `client_id` where the server
        /// supports Client ID Metadata Documents, instead of registering.
        metadata_url: Option<String>,
        /// Where the person's authorization request goes.
        browser: Browser,
    },
}

/// The JWT a workload presents by the JWT bearer grant.
#[derive(Debug)]
pub enum Assertion {
    /// A JWT obtained elsewhere.
    Jwt(String),
    /// A JWT-SVID for the authorization server found, fresh from the Workload API: the
    /// workload needs no other credential (AIMS AZ-15).
    JwtSvid(std::sync::Arc<JwtSource>),
}

impl Assertion {
    async fn for_issuer(&self, issuer: &str) -> Result<String, SdkError> {
        match self {
            Self::Jwt(jwt) => Ok(jwt.clone()),
            Self::JwtSvid(source) => source.token(issuer).await,
        }
    }
}

/// What a token is asked for.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub server: &'a AuthorizationServer,
    /// The resource identifier as the resource's metadata wrote it.
    pub resource: &'a str,
    pub scope: Option<&'a str>,
}

impl Grant {
    /// The client this grant authenticates as at the token endpoint, when it is configured.
    pub(crate) fn client(&self) -> Option<&ClientAuth> {
        match self {
            Self::ClientCredentials(client) | Self::IdJag { client, .. } => Some(client),
            Self::JwtBearer { client, .. } | Self::AuthorizationCode { client, .. } => {
                client.as_ref()
            }
        }
    }

    /// A token for `target`, DPoP-bound to `dpop` when given; `registered` is the client an
    /// earlier authorization code grant registered at this server. Returns the client this
    /// grant registered, if it did.
    pub(crate) async fn obtain(
        &self,
        http: &reqwest::Client,
        target: &Target<'_>,
        dpop: Option<&DpopKey>,
        registered: Option<&ClientAuth>,
    ) -> Result<(Token, Option<ClientAuth>), SdkError> {
        let mut form: Vec<(&'static str, String)> = Vec::new();
        let mut with_scope = true;
        let mut new_client = None;
        match self {
            Self::ClientCredentials(_) => {
                form.push(("grant_type", "client_credentials".to_owned()));
            }
            Self::JwtBearer { assertion, .. } => {
                form.push(("grant_type", JWT_BEARER_GRANT.to_owned()));
                form.push((
                    "assertion",
                    assertion.for_issuer(&target.server.issuer).await?,
                ));
            }
            Self::IdJag {
                idp_token_endpoint,
                idp_client_id,
                id_token,
                ..
            } => {
                let id_jag =
                    id_jag(http, idp_token_endpoint, idp_client_id, id_token, target).await?;
                form.push(("grant_type", JWT_BEARER_GRANT.to_owned()));
                form.push(("assertion", id_jag));
            }
            Self::AuthorizationCode {
                client,
                client_name,
                metadata_url,
                browser,
            } => {
                let fixed = client.as_ref().or(registered);
                let code = authorization_code(
                    http,
                    fixed,
                    client_name,
                    metadata_url.as_deref(),
                    browser,
                    target,
                )
                .await?;
                form = code.0;
                new_client = code.1;
                // The scope was the authorization request's.
                with_scope = false;
            }
        }
        if let (true, Some(scope)) = (with_scope, target.scope) {
            form.push(("scope", scope.to_owned()));
        }
        let client = new_client.as_ref().or(self.client()).or(registered);
        let token = redeem(http, target, form, client, dpop).await?;
        Ok((token, new_client))
    }
}

/// A fresh token for `target` from `refresh_token` (RFC 6749 §6), with the same scope.
pub(crate) async fn refresh(
    http: &reqwest::Client,
    target: &Target<'_>,
    client: Option<&ClientAuth>,
    refresh_token: &str,
    dpop: Option<&DpopKey>,
) -> Result<Token, SdkError> {
    let form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.to_owned()),
    ];
    redeem(http, target, form, client, dpop).await
}

/// Sends `form` to the token endpoint with the resource (RFC 8707 §2.2) and `client`'s
/// authentication.
async fn redeem(
    http: &reqwest::Client,
    target: &Target<'_>,
    mut form: Vec<(&'static str, String)>,
    client: Option<&ClientAuth>,
    dpop: Option<&DpopKey>,
) -> Result<Token, SdkError> {
    let mut headers = Vec::new();
    form.push(("resource", target.resource.to_owned()));
    if let Some(client) = client {
        client.apply(&target.server.issuer, &mut form, &mut headers)?;
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let v = post_form(http, &target.server.token_endpoint, &form, &headers, dpop).await?;
    serde_json::from_value(v).map_err(|e| SdkError::Authorization(format!("token response: {e}")))
}

/// The ID-JAG for `target` from the IdP (draft-ietf-oauth-identity-assertion-authz-grant §4.3:
/// token exchange of the ID token, audience the authorization server's issuer, resource the
/// MCP server).
async fn id_jag(
    http: &reqwest::Client,
    idp_token_endpoint: &str,
    idp_client_id: &str,
    id_token: &str,
    target: &Target<'_>,
) -> Result<String, SdkError> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("requested_token_type", ID_JAG_TOKEN_TYPE),
        ("subject_token", id_token),
        ("subject_token_type", ID_TOKEN_TYPE),
        ("audience", target.server.issuer.as_str()),
        ("resource", target.resource),
        ("client_id", idp_client_id),
    ];
    if let Some(scope) = target.scope {
        form.push(("scope", scope));
    }
    let v = post_form(http, idp_token_endpoint, &form, &[], None).await?;
    if v["issued_token_type"] != ID_JAG_TOKEN_TYPE {
        return Err(SdkError::Authorization(format!(
            "the IdP issued {} where an ID-JAG was asked for",
            v["issued_token_type"]
        )));
    }
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SdkError::Authorization("the IdP's answer has no access_token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
        let auth = ClientAuth::SecretBasic {
            client_id: "id:1".into(),
            secret: "s%".into(),
        };
        let (mut form, mut headers) = (Vec::new(), Vec::new());
        auth.apply("https://as.example", &mut form, &mut headers)
            .unwrap();
        let b64 = headers[0].1.strip_prefix("Basic ").unwrap();
        let pair = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(pair, b"id%3A1:s%25");
        assert!(form.is_empty());
        assert!(
            !format!("{auth:?}").contains("s%"),
            "secrets stay out of Debug"
        );
    }
}
