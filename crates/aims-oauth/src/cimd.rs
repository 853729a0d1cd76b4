//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02): a client
//! that is neither a SPIFFE workload nor registered names itself by an HTTPS URL, and the
//! document at that URL is its metadata. On by default (MCP 2026-07-28 makes it the way an MCP
//! client introduces itself); fetched through the SSRF-guarded [`crate::fetch::Fetcher`]. A
//! document may declare a public client (`none`): it then only redeems PKCE-bound codes.
//!
//! * §3: the `client_id` URL is `https`, has a path, no dot segments, no fragment, no user
//!   information — checked here on the exact string, before anything is fetched.
//! * §4: the document is a JSON object whose `client_id` equals the URL (simple string
//!   comparison, RFC 3986 §6.2.1); it carries no `client_secret` and no symmetric
//!   authentication method; it is served `200 OK`, and we bound it at 5 KB (§6.6).
//! * The rest is RFC 7591 client metadata, validated as for any registered client.

use crate::AuthorizationServer;
use crate::client::ClientMetadata;
use crate::error::OAuthError;

/// The largest document accepted (§6.6 recommends 5 kilobytes).
pub const MAX_DOCUMENT: usize = 5 * 1024;

/// Whether `client_id` names a metadata document rather than a registered client.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// §3: whether `client_id` is an acceptable client identifier URL.
pub fn check_client_id_url(client_id: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(client_id).map_err(|_| "not a URL")?;
    if url.scheme() != "https" {
        return Err("not an https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("carries user information");
    }
    if url.fragment().is_some() {
        return Err("carries a fragment");
    }
    if url.path() == "/" {
        return Err("has no path");
    }
    // The parser resolves dot segments and normalizes case and default ports: a client_id that
    // is not already in that form is refused rather than silently rewritten.
    if url.as_str() != client_id {
        return Err("is not in normal form (dot segments, case, default port or escaping)");
    }
    Ok(())
}

fn invalid(client_id: &str, why: impl std::fmt::Display) -> OAuthError {
    OAuthError::invalid_client(format!("client metadata document {client_id}: {why}"))
}

impl AuthorizationServer {
    /// The metadata of the client `client_id` names (a URL).
    pub(crate) async fn metadata_document(
        &self,
        client_id: &str,
    ) -> Result<ClientMetadata, OAuthError> {
        if !self.settings.client_id_metadata_documents {
            return Err(OAuthError::invalid_client(format!(
                "unknown client {client_id} (client ID metadata documents are disabled on this server)"
            )));
        }
        check_client_id_url(client_id).map_err(|why| invalid(client_id, why))?;
        let doc = self
            .fetcher
            .json(client_id, MAX_DOCUMENT)
            .await
            .map_err(|e| OAuthError::fetch_failed(e, |e| invalid(client_id, e)))?;
        document_metadata(client_id, &doc)
    }
}

/// §4: the metadata a fetched document declares.
fn document_metadata(
    client_id: &str,
    doc: &serde_json::Value,
) -> Result<ClientMetadata, OAuthError> {
    if doc.get("client_id").and_then(|v| v.as_str()) != Some(client_id) {
        return Err(invalid(
            client_id,
            "its client_id is not the document's URL",
        ));
    }
    for forbidden in ["client_secret", "client_secret_expires_at"] {
        if doc.get(forbidden).is_some() {
            return Err(invalid(
                client_id,
                format!("it must not contain {forbidden}"),
            ));
        }
    }
    let metadata: ClientMetadata =
        serde_json::from_value(doc.clone()).map_err(|e| invalid(client_id, e))?;
    // Symmetric methods (client_secret_*) are refused whatever the server allows for
    // registered clients: there is no way to share a secret through a public document.
    metadata
        .validate(false)
        .map_err(|e| invalid(client_id, e.description))?;
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_id_urls() {
        assert!(check_client_id_url("https://client.example/oauth/metadata.json").is_ok());
        assert!(check_client_id_url("https://client.example:8443/c?v=1").is_ok());
        for bad in [
            "http://client.example/c",
            "https://client.example",
            "https://client.example/",
            "https://client.example/a/../c",
            "https://client.example/./c",
            "https://client.example/c#frag",
            "https://user:pw@client.example/c",
            "https://CLIENT.example/c",
            "https://client.example:443/c",
            "client.example/c",
        ] {
            assert!(check_client_id_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents() {
        let id = "https://client.example/c";
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
        let ok =
            json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks});
        assert!(document_metadata(id, &ok).is_ok());
        let mut other = ok.clone();
        other["client_id"] = json!("https://client.example/other");
        assert!(document_metadata(id, &other).is_err());
        let mut secret = ok.clone();
        secret["client_secret"] = json!("s");
        assert!(document_metadata(id, &secret).is_err());
        for symmetric in [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
        ] {
            let mut d = ok.clone();
            d["token_endpoint_auth_method"] = json!(symmetric);
            assert!(document_metadata(id, &d).is_err(), "{symmetric}");
        }
    }
}
