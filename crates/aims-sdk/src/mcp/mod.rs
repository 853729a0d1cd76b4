//! An MCP client's side of MCP authorization (MCP 2025-11-25 and 2026-07-28, Authorization;
//! the `oauth-client-credentials`, workload identity federation, enterprise-managed
//! authorization and DPoP extensions), under the official Rust MCP SDK (`rmcp`).
//!
//! [`AuthorizedHttp`] is the HTTP side of rmcp's streamable HTTP client transport. When the
//! MCP server answers 401, it reads the challenge ([`challenge`]), finds the authorization
//! server ([`discovery`]), obtains a token by the configured [`Grant`] for exactly that
//! resource (RFC 8707), and sends the request again; a 403 `insufficient_scope` asks once
//! for the union of the scopes (step-up). When the authorization server supports DPoP the
//! token is bound to a key this process generates and never exports, every request carries a
//! fresh proof (RFC 9449 §7), and a `use_dpop_nonce` challenge is answered once with the
//! server's nonce (§9). The model an agent runs sees tool results, never the token (AIMS
//! PR-10).

pub mod authorize;
pub mod challenge;
pub mod discovery;
pub mod grant;
mod transport;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tokio::sync::Mutex;

pub use authorize::Browser;
pub use grant::{Assertion, ClientAuth, Grant};
pub use transport::AuthorizedHttp;

use crate::SdkError;
use crate::dpop::DpopKey;
use crate::oauth::Token;
use challenge::Challenge;
use discovery::{AuthorizationServer, ProtectedResource};

/// The authorization state of one client of one MCP server.
pub struct McpAuth {
    http: reqwest::Client,
    grant: Grant,
    /// The only authorization server this client's credentials may go to, when pinned.
    issuer: Option<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for McpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpAuth")
            .field("grant", &self.grant)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    found: Option<(ProtectedResource, AuthorizationServer)>,
    /// The client an authorization code grant registered at the server found.
    registered: Option<ClientAuth>,
    dpop: Option<DpopKey>,
    token: Option<Token>,
    scope: Option<String>,
    /// The resource server's latest DPoP nonce (RFC 9449 §9).
    nonce: Option<String>,
    /// Bumped with each token, so concurrent 401s fetch one token, not one each.
    generation: u64,
}

impl McpAuth {
    /// A client obtaining its tokens by `grant`; `http` reaches the authorization servers
    /// (and the IdP) and must not follow redirects to other hosts blindly.
    pub fn new(http: reqwest::Client, grant: Grant) -> Arc<Self> {
        Self::pinned(http, grant, None)
    }

    /// As [`new`](Self::new), but the credentials go to the authorization server `issuer`
    /// alone: a resource whose metadata names another is refused before anything is sent.
    /// An MCP server chooses the authorization server, so a client with a reusable credential
    /// (a secret) should pin the one it was registered with.
    pub fn pinned(http: reqwest::Client, grant: Grant, issuer: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            http,
            grant,
            issuer,
            state: Mutex::new(State::default()),
        })
    }

    /// The headers that authorize `method uri` now (`Authorization`, and `DPoP` for a
    /// DPoP-bound token) and the token generation they carry.
    pub(crate) async fn headers(
        &self,
        method: &str,
        uri: &str,
    ) -> Result<(Vec<(HeaderName, HeaderValue)>, u64), SdkError> {
        let state = self.state.lock().await;
        let mut out = Vec::new();
        if let Some(token) = &state.token {
            let bound = token.token_type.eq_ignore_ascii_case("dpop");
            let scheme = if bound { "DPoP" } else { "Bearer" };
            out.push((
                http::header::AUTHORIZATION,
                header_value(&format!("{scheme} {}", token.access_token))?,
            ));
            if let (true, Some(key)) = (bound, &state.dpop) {
                let proof = key.proof(
                    method,
                    uri,
                    Some(&token.access_token),
                    state.nonce.as_deref(),
                )?;
                out.push((HeaderName::from_static("dpop"), header_value(&proof)?));
            }
        }
        Ok((out, state.generation))
    }

    /// Keeps the resource server's DPoP nonce for the next proofs.
    pub(crate) async fn remember_nonce(&self, nonce: &str) {
        self.state.lock().await.nonce = Some(nonce.to_owned());
    }

    /// Answers `challenge` from the MCP server at `server` with a new token, unless one
    /// newer than `generation` arrived meanwhile.
    pub(crate) async fn authorize(
        &self,
        server: &str,
        challenge: &Challenge,
        generation: u64,
    ) -> Result<(), SdkError> {
        let mut state = self.state.lock().await;
        tracing::debug!(
            ?challenge,
            generation,
            held = state.generation,
            "MCP challenge"
        );
        if state.generation != generation {
            return Ok(());
        }
        // A token refused outright (not for its scope): the resource may have moved to
        // another authorization server since (SEP-2352), so discovery starts over.
        let rejected = state.token.is_some() && !challenge.insufficient_scope();
        if rejected || state.found.is_none() {
            let prm = discovery::protected_resource(
                &self.http,
                server,
                challenge.resource_metadata.as_deref(),
            )
            .await?;
            let issuer = prm.authorization_servers.first().ok_or_else(|| {
                SdkError::Authorization(
                    "the protected resource names no authorization server".into(),
                )
            })?;
            if let Some(pin) = self.issuer.as_deref().filter(|pin| *pin != issuer) {
                return Err(SdkError::Authorization(format!(
                    "the MCP server sends this client to {issuer}, not to {pin}; nothing was sent"
                )));
            }
            let server_meta = match state.found.take() {
                Some((_, known)) if known.issuer == *issuer => known,
                _ => {
                    // Clients, keys and tokens are bound to the server that issued them.
                    let server_meta = discovery::authorization_server(&self.http, issuer).await?;
                    state.dpop = server_meta
                        .supports_dpop()
                        .then(DpopKey::generate)
                        .transpose()?;
                    state.registered = None;
                    state.token = None;
                    server_meta
                }
            };
            state.found = Some((prm, server_meta));
        }
        let (prm, server_meta) = state
            .found
            .clone()
            .ok_or_else(|| SdkError::Authorization("no authorization server".into()))?;
        // The scope: what the challenge names (joined with what was held, on step-up), else
        // what the resource supports, else none (MCP §"Scope Selection Strategy").
        let scope = match (&challenge.scope, &state.scope) {
            (Some(asked), Some(held)) if challenge.insufficient_scope() => Some(union(held, asked)),
            (Some(asked), _) => Some(asked.clone()),
            (None, Some(held)) => Some(held.clone()),
            (None, None) if !prm.scopes_supported.is_empty() => {
                Some(prm.scopes_supported.join(" "))
            }
            (None, None) => None,
        };
        let target = grant::Target {
            server: &server_meta,
            resource: &prm.resource,
            scope: scope.as_deref(),
        };
        let client = self.grant.client().or(state.registered.as_ref());
        // A rejected token with a refresh token: refreshed first (RFC 6749 §6), the person
        // is asked again only when that fails.
        let refreshed = match state
            .token
            .as_ref()
            .and_then(|t| t.refresh_token.as_deref())
        {
            Some(refresh_token) if rejected => grant::refresh(
                &self.http,
                &target,
                client,
                refresh_token,
                state.dpop.as_ref(),
            )
            .await
            .ok(),
            _ => None,
        };
        let token = match refreshed {
            Some(token) => token,
            None => {
                let (token, registered) = self
                    .grant
                    .obtain(
                        &self.http,
                        &target,
                        state.dpop.as_ref(),
                        state.registered.as_ref(),
                    )
                    .await?;
                if registered.is_some() {
                    state.registered = registered;
                }
                token
            }
        };
        tracing::debug!(
            issuer = %server_meta.issuer,
            token_type = %token.token_type,
            scope = scope.as_deref().unwrap_or(""),
            "MCP access token obtained"
        );
        state.token = Some(token);
        state.scope = scope;
        state.generation += 1;
        Ok(())
    }
}

fn header_value(s: &str) -> Result<HeaderValue, SdkError> {
    HeaderValue::from_str(s)
        .map_err(|_| SdkError::Authorization("a token that is no header value".into()))
}

/// The scopes of `a` and `b`, each once, in order.
fn union(a: &str, b: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in a.split_whitespace().chain(b.split_whitespace()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_up_asks_for_the_union_of_the_scopes() {
        assert_eq!(super::union("a b", "b c"), "a b c");
        assert_eq!(super::union("", "x"), "x");
    }
}
