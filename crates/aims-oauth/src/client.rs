//! Registered clients (RFC 7591 client metadata), and which SPIFFE IDs a registered client may
//! authenticate as (draft-ietf-oauth-spiffe-client-auth-02 §5.1: `spiffe_id`, exact or a
//! `/*` path prefix).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aims_core::SpiffeId;
use aims_credentials::PublicKey;
use aims_token::wire::CIBA_GRANT;
use aims_token::wire::OPENID_SCOPE;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

use crate::error::OAuthError;

/// The client authentication methods AIMS knows (RFC 8414 `token_endpoint_auth_methods_supported`
/// names; SPIFFE ones from draft-ietf-oauth-spiffe-client-auth-02 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A JWT-SVID as client assertion.
    SpiffeJwt,
    /// A WIT-SVID with an attestation PoP.
    SpiffeWit,
    /// An X509-SVID over mutual TLS (RFC 8705 `tls_client_auth` with the SPIFFE ID as URI SAN).
    SpiffeX509,
    /// RFC 7523 JWT client assertion signed with a registered key.
    PrivateKeyJwt,
    /// Legacy shared secret in HTTP Basic (off by default).
    ClientSecretBasic,
    /// Legacy shared secret in the body (off by default).
    ClientSecretPost,
    /// RFC 7591 §2 `none`: a public client (a native or browser app, an MCP client named by a
    /// metadata document) that holds no credential. It may only redeem authorization codes,
    /// which PKCE binds to the instance that asked for them, and the refresh tokens they bring,
    /// which rotate (OAuth 2.1 §4.3.1); never a grant that acts on the client's own authority.
    None,
}

/// The grants a public client may use.
pub const PUBLIC_CLIENT_GRANTS: &[&str] = &["authorization_code", "refresh_token"];

impl AuthMethod {
    /// Its metadata name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::SpiffeJwt => "spiffe_jwt",
            AuthMethod::SpiffeWit => "spiffe_wit",
            AuthMethod::SpiffeX509 => "spiffe_x509",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    /// Whether the method rests on a shared secret.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// The client metadata AIMS acts on (RFC 7591 §2); other members are kept as registered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// How the client authenticates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// Its public keys (private_key_jwt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,
    /// Where its public keys are (fetched by the guarded fetcher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The SPIFFE ID (or `…/*` prefix) it authenticates as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// Grant types it may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// Scopes it may request (space-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// RFC 9449 §5.2: every access token for it is DPoP-bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens: Option<bool>,
    /// Where authorization responses may go, matched exactly (RFC 9700 §2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    /// RFC 9126 §6: its authorization requests must be pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_pushed_authorization_requests: Option<bool>,
    /// CIBA Core §4: `poll` (default) or `ping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_token_delivery_mode: Option<String>,
    /// CIBA Core §4: where pings go (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_client_notification_endpoint: Option<String>,
    /// Everything else it registered.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The grant types this server implements.
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    CIBA_GRANT,
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];

impl ClientMetadata {
    /// The registered method.
    pub fn auth_method(&self) -> Result<AuthMethod, OAuthError> {
        // RFC 7591 §2: the default is client_secret_basic.
        let name = self
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
            OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method {name:?} is not supported"
            ))
        })
    }

    /// Checks metadata before registration (RFC 7591 §2, CIMD §4.1).
    pub fn validate(&self, allow_secret: bool) -> Result<AuthMethod, OAuthError> {
        let method = self.auth_method()?;
        if method.is_secret() && !allow_secret {
            return Err(OAuthError::invalid_client_metadata(
                "client secrets are disabled on this server: use private_key_jwt or SPIFFE client authentication",
            ));
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Err(OAuthError::invalid_client_metadata(
                "jwks and jwks_uri must not both be present",
            ));
        }
        match method {
            AuthMethod::PrivateKeyJwt => match &self.jwks_uri {
                Some(uri) => {
                    if !uri.starts_with("https://") {
                        return Err(OAuthError::invalid_client_metadata(
                            "jwks_uri must be an https URL",
                        ));
                    }
                }
                None if self.jwks.is_none() => {
                    return Err(OAuthError::invalid_client_metadata(
                        "private_key_jwt needs jwks or jwks_uri",
                    ));
                }
                None => {
                    self.keys()?;
                }
            },
            AuthMethod::SpiffeJwt | AuthMethod::SpiffeWit | AuthMethod::SpiffeX509 => {
                let id = self.spiffe_id.as_deref().ok_or_else(|| {
                    OAuthError::invalid_client_metadata(
                        "SPIFFE client authentication needs spiffe_id",
                    )
                })?;
                SpiffeId::parse(id.strip_suffix("/*").unwrap_or(id))
                    .map_err(|e| OAuthError::invalid_client_metadata(format!("spiffe_id: {e}")))?;
            }
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {}
            AuthMethod::None => {
                if self.redirect_uris.as_ref().is_none_or(Vec::is_empty) {
                    return Err(OAuthError::invalid_client_metadata(
                        "a public client (token_endpoint_auth_method none) needs redirect_uris",
                    ));
                }
            }
        }
        if let Some(grants) = &self.grant_types {
            if let Some(g) = grants.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "grant type {g:?} is not supported"
                )));
            }
            if method == AuthMethod::None
                && let Some(g) = grants
                    .iter()
                    .find(|g| !PUBLIC_CLIENT_GRANTS.contains(&g.as_str()))
            {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "a public client (token_endpoint_auth_method none) may not use {g:?}"
                )));
            }
        }
        for uri in self.redirect_uris.iter().flatten() {
            check_redirect_uri(uri)?;
        }
        match self.backchannel_token_delivery_mode.as_deref() {
            None | Some("poll") => {}
            Some("ping") => match &self.backchannel_client_notification_endpoint {
                Some(e) if e.starts_with("https://") => {}
                _ => {
                    return Err(OAuthError::invalid_client_metadata(
                        "ping mode needs an https backchannel_client_notification_endpoint",
                    ));
                }
            },
            Some(other) => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "backchannel_token_delivery_mode {other:?} is not supported (poll, ping)"
                )));
            }
        }
        if let Some(scope) = &self.scope {
            crate::form::parse_scope(scope)
                .map_err(|e| OAuthError::invalid_client_metadata(e.description))?;
        }
        Ok(method)
    }

    /// The registered public keys with their `kid`s.
    pub fn keys(&self) -> Result<Vec<(Option<String>, PublicKey)>, OAuthError> {
        self.jwks.as_ref().map_or(Ok(Vec::new()), Self::keys_of)
    }

    /// The public keys of a JWK Set with their `kid`s.
    pub fn keys_of(set: &JwkSet) -> Result<Vec<(Option<String>, PublicKey)>, OAuthError> {
        set.keys
            .iter()
            .map(|k| {
                PublicKey::from_jwk(k)
                    .map(|p| (k.common.key_id.clone(), p))
                    .map_err(|e| OAuthError::invalid_client_metadata(format!("jwks: {e}")))
            })
            .collect()
    }

    /// Whether `id` is a SPIFFE ID this client may authenticate as.
    pub fn allows_spiffe_id(&self, id: &SpiffeId) -> bool {
        match self.spiffe_id.as_deref() {
            Some(p) if p.ends_with("/*") => id
                .as_str()
                .strip_prefix(p.trim_end_matches('*'))
                .is_some_and(|rest| !rest.is_empty()),
            Some(exact) => exact == id.as_str(),
            None => false,
        }
    }

    /// Checks `scopes` against the scopes the client registered (`scope`; none registered:
    /// any). `openid` asks for an ID token, not an access right, and is never checked.
    pub fn check_scopes(&self, client_id: &str, scopes: &[String]) -> Result<(), OAuthError> {
        let Some(registered) = self.scope.as_deref() else {
            return Ok(());
        };
        let allowed: Vec<&str> = registered.split(' ').filter(|t| !t.is_empty()).collect();
        match scopes
            .iter()
            .find(|s| *s != OPENID_SCOPE && !allowed.contains(&s.as_str()))
        {
            Some(s) => Err(OAuthError::invalid_scope(format!(
                "client {client_id} is not registered for scope {s:?}"
            ))),
            None => Ok(()),
        }
    }

    /// Whether the client may use `grant_type` (RFC 7591 §2: default authorization_code only;
    /// AIMS's default for registered clients is every grant it implements, for public clients
    /// [`PUBLIC_CLIENT_GRANTS`], whatever they registered).
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        if self.auth_method().is_ok_and(|m| m == AuthMethod::None)
            && !PUBLIC_CLIENT_GRANTS.contains(&grant_type)
        {
            return false;
        }
        self.grant_types
            .as_ref()
            .is_none_or(|g| g.iter().any(|x| x == grant_type))
    }
}

/// A redirect URI a client may register (RFC 9700 §2.1, RFC 8252 §7): absolute, no fragment,
/// https, or http only to a loopback address, or a private-use scheme of a native app.
fn check_redirect_uri(uri: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| OAuthError::invalid_redirect_uri(format!("{uri}: {why}"));
    let u = reqwest::Url::parse(uri).map_err(|_| bad("not an absolute URI"))?;
    if u.fragment().is_some() {
        return Err(bad("has a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err(bad("http is allowed only to a loopback address")),
        },
        "javascript" | "data" | "file" | "vbscript" => Err(bad("scheme not allowed")),
        s if s.contains('.') => Ok(()),
        _ => Err(bad(
            "a native app's scheme must be a reverse domain name (RFC 8252 §7.1)",
        )),
    }
}

/// A registered client as the token endpoint uses it: its metadata, and its inline keys parsed
/// once.
#[derive(Debug)]
pub struct KnownClient {
    /// The metadata.
    pub metadata: ClientMetadata,
    /// Whether an operator registered it: only then are its name and SPIFFE ID vouched for
    /// (dynamic registration and metadata documents are the client's own word).
    pub operator_registered: bool,
    /// The keys of its inline `jwks`.
    pub keys: Vec<(Option<String>, PublicKey)>,
}

/// How long a client read from the store (or a metadata document) is used before it is read
/// again. A change made through this server takes effect at once; one made through another
/// replica as soon as the store notifies it (the server clears the cache when the `clients`
/// counter moves), and within this time whatever happens.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);
/// How many clients the cache holds.
const CLIENT_CACHE_ENTRIES: usize = 10_000;

/// Registered clients recently read, so a busy client costs no store read and no parsing per
/// token (bounded, short-lived).
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<String, (Instant, Arc<KnownClient>)>>,
}

impl ClientCache {
    /// The cached client, if fresh.
    pub fn get(&self, client_id: &str) -> Option<Arc<KnownClient>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(client_id)
            .filter(|(at, _)| at.elapsed() < CLIENT_CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    /// Remembers a client just read.
    pub fn put(&self, client_id: &str, client: Arc<KnownClient>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CLIENT_CACHE_ENTRIES {
                entries.retain(|_, (at, _)| at.elapsed() < CLIENT_CACHE_TTL);
            }
            if entries.len() >= CLIENT_CACHE_ENTRIES
                && let Some(k) = entries.keys().next().cloned()
            {
                entries.remove(&k);
            }
            entries.insert(client_id.to_owned(), (Instant::now(), client));
        }
    }

    /// Drops every client (another replica changed one).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Drops a client that changed or was deleted.
    pub fn forget(&self, client_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_patterns() {
        let m = |p: &str| ClientMetadata {
            spiffe_id: Some(p.into()),
            ..ClientMetadata::default()
        };
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        assert!(
            m("spiffe://example.org/client/*")
                .allows_spiffe_id(&id("spiffe://example.org/client/123"))
        );
        assert!(
            !m("spiffe://example.org/client/*")
                .allows_spiffe_id(&id("spiffe://example.org/client123"))
        );
        assert!(
            !m("spiffe://example.org/client/*")
                .allows_spiffe_id(&id("spiffe://example.org/client"))
        );
        assert!(m("spiffe://example.org/a").allows_spiffe_id(&id("spiffe://example.org/a")));
        assert!(!m("spiffe://example.org/a").allows_spiffe_id(&id("spiffe://example.org/a/b")));
    }

    #[test]
    fn metadata_validation() {
        let secret = ClientMetadata::default();
        assert_eq!(
            secret.validate(false).unwrap_err().code,
            aims_token::ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            secret.validate(true).unwrap(),
            AuthMethod::ClientSecretBasic
        );
        let pkj = ClientMetadata {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..ClientMetadata::default()
        };
        assert!(pkj.validate(false).is_err(), "no keys");
        let unknown = ClientMetadata {
            token_endpoint_auth_method: Some("tls_client_auth_magic".into()),
            ..ClientMetadata::default()
        };
        assert!(unknown.validate(true).is_err());
        let grants = ClientMetadata {
            token_endpoint_auth_method: Some("spiffe_jwt".into()),
            spiffe_id: Some("spiffe://example.org/a".into()),
            grant_types: Some(vec!["password".into()]),
            ..ClientMetadata::default()
        };
        assert!(
            grants
                .validate(false)
                .unwrap_err()
                .description
                .contains("password")
        );
    }
}
