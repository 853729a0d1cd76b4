//! Finding the authorization server of an MCP server (MCP 2025-11-25 and 2026-07-28,
//! Authorization §"Authorization Server Discovery"): the protected resource metadata
//! (RFC 9728 §3), checked against the server it was fetched for (§3.3, §7.3), then the
//! authorization server's metadata (RFC 8414 §3, OpenID Connect Discovery 1.0 §4), checked
//! against the issuer the resource named (RFC 8414 §3.3). A metadata document that does not
//! match is refused: a hostile server cannot send the client's credentials elsewhere.

use aims_token::wire::{
    AS_METADATA_PATH, OPENID_CONFIGURATION_PATH, PROTECTED_RESOURCE_METADATA_PATH,
};
use reqwest::Url;
use serde::Deserialize;

use crate::SdkError;
use crate::oauth::read_limited;

/// The largest metadata document read.
const MAX_METADATA: usize = 64 * 1024;

/// Protected resource metadata (RFC 9728 §2).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedResource {
    /// The resource identifier: what the client sends as `resource` (RFC 8707), as written.
    pub resource: String,
    /// Issuers of the authorization servers that issue tokens for it.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes it understands.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Authorization server metadata (RFC 8414 §2), the members this client uses.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationServer {
    /// The issuer.
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The authorization endpoint.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The dynamic client registration endpoint (RFC 7591).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// DPoP proof algorithms it accepts (RFC 9449 §5.1): present means DPoP is supported.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// Scopes it issues (RFC 8414 §2).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// It fetches a client's metadata from its URL `client_id` (Client ID Metadata
    /// Documents, draft-ietf-oauth-client-id-metadata-document).
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
    /// PKCE methods (RFC 8414 §2).
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207 §3: authorization responses carry `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl AuthorizationServer {
    /// Whether it takes DPoP proofs signed with ES256, the algorithm of this client's keys.
    pub fn supports_dpop(&self) -> bool {
        self.dpop_signing_alg_values_supported
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a == "ES256"))
    }
}

/// The metadata of the protected resource `server` (an MCP endpoint URL): from
/// `resource_metadata` when its challenge named one, else from the well-known URL with the
/// server's path, then at the root (RFC 9728 §3.1). Its `resource` must be `server` or an
/// ancestor of it on the same origin.
pub async fn protected_resource(
    http: &reqwest::Client,
    server: &str,
    resource_metadata: Option<&str>,
) -> Result<ProtectedResource, SdkError> {
    let server_url = parse(server)?;
    let candidates = match resource_metadata {
        Some(url) => vec![parse(url)?],
        None => well_known(&server_url, PROTECTED_RESOURCE_METADATA_PATH),
    };
    let prm: ProtectedResource = first_found(http, &candidates).await?;
    let resource = parse(&prm.resource)?;
    if !covers(&resource, &server_url) {
        return Err(SdkError::Authorization(format!(
            "the protected resource metadata is for {}, not for {server} (RFC 9728 §3.3)",
            prm.resource
        )));
    }
    Ok(prm)
}

/// The metadata of the authorization server `issuer` (RFC 8414 §3.1 with the path inserted,
/// then OpenID Connect Discovery at both places); its `issuer` must be `issuer`.
pub async fn authorization_server(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<AuthorizationServer, SdkError> {
    let url = parse(issuer)?;
    let mut candidates = well_known(&url, AS_METADATA_PATH);
    candidates.truncate(1);
    candidates.extend(
        well_known(&url, OPENID_CONFIGURATION_PATH)
            .into_iter()
            .take(1),
    );
    let mut appended = url.clone();
    let path = format!(
        "{}{OPENID_CONFIGURATION_PATH}",
        url.path().trim_end_matches('/')
    );
    appended.set_path(&path);
    if !candidates.contains(&appended) {
        candidates.push(appended);
    }
    let meta: AuthorizationServer = first_found(http, &candidates).await?;
    if meta.issuer != issuer {
        return Err(SdkError::Authorization(format!(
            "the authorization server metadata names issuer {}, not {issuer} (RFC 8414 §3.3)",
            meta.issuer
        )));
    }
    Ok(meta)
}

/// `url` parsed, when it is an http(s) URL with a host.
pub(crate) fn parse(url: &str) -> Result<Url, SdkError> {
    let u = Url::parse(url).map_err(|e| SdkError::Authorization(format!("URL {url:?}: {e}")))?;
    if !matches!(u.scheme(), "https" | "http") || u.host().is_none() {
        return Err(SdkError::Authorization(format!(
            "URL {url:?} is not an http(s) URL"
        )));
    }
    Ok(u)
}

/// `base`'s well-known URLs for `suffix`: with `base`'s path after it, then at the root.
fn well_known(base: &Url, suffix: &str) -> Vec<Url> {
    let mut root = base.clone();
    root.set_query(None);
    root.set_fragment(None);
    let path = base.path().trim_end_matches('/').to_owned();
    let mut out = Vec::new();
    if !path.is_empty() {
        let mut with_path = root.clone();
        with_path.set_path(&format!("{suffix}{path}"));
        out.push(with_path);
    }
    root.set_path(suffix);
    out.push(root);
    out
}

/// Whether the resource identifier `resource` names `server`: the same origin, and
/// `server`'s path equal to or under `resource`'s.
fn covers(resource: &Url, server: &Url) -> bool {
    if resource.origin() != server.origin() || resource.fragment().is_some() {
        return false;
    }
    let base = resource.path().trim_end_matches('/');
    let path = server.path().trim_end_matches('/');
    path == base || path.starts_with(&format!("{base}/"))
}

/// The first of `urls` that answers 200 with a JSON document of type `T`; a 4xx moves on,
/// anything else stops.
async fn first_found<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    urls: &[Url],
) -> Result<T, SdkError> {
    let mut last = String::new();
    for url in urls {
        let resp = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        let status = resp.status();
        if status.is_client_error() {
            last = format!("{url}: {status}");
            continue;
        }
        if !status.is_success() {
            return Err(SdkError::Authorization(format!("{url}: {status}")));
        }
        let body = read_limited(resp, MAX_METADATA).await?;
        return serde_json::from_slice(&body)
            .map_err(|e| SdkError::Authorization(format!("{url}: not metadata: {e}")));
    }
    Err(SdkError::Authorization(format!(
        "no metadata found ({last})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_insert_the_suffix_before_the_path() {
        let u = Url::parse("https://mcp.example:8443/tools/mcp?x=1").unwrap();
        let got: Vec<String> = well_known(&u, PROTECTED_RESOURCE_METADATA_PATH)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://mcp.example:8443/.well-known/oauth-protected-resource/tools/mcp",
                "https://mcp.example:8443/.well-known/oauth-protected-resource"
            ]
        );
        let root = Url::parse("https://as.example").unwrap();
        assert_eq!(
            well_known(&root, AS_METADATA_PATH)[0].as_str(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn a_resource_covers_only_its_own_origin_and_paths_under_it() {
        let server = Url::parse("https://mcp.example/mcp").unwrap();
        for ok in [
            "https://mcp.example/mcp",
            "https://mcp.example",
            "https://mcp.example/mcp/",
        ] {
            assert!(covers(&Url::parse(ok).unwrap(), &server), "{ok}");
        }
        for bad in [
            "https://evil.example.com/mcp",
            "http://mcp.example/mcp",
            "https://mcp.example:444/mcp",
            "https://mcp.example/mc",
            "https://mcp.example/mcp/other",
            "https://mcp.example/mcp#f",
        ] {
            assert!(!covers(&Url::parse(bad).unwrap(), &server), "{bad}");
        }
    }
}
