//! The authorization code grant of an MCP client that a person runs (MCP Authorization
//! §"Authorization Code Grant"): a client registered beforehand or dynamically (RFC 7591
//! §3), PKCE with S256 (RFC 7636 §4; refused when the server does not list it), the
//! `resource` of the MCP server (RFC 8707 §2.1), the person's browser sent to the
//! authorization endpoint and back to a loopback redirect URI on any port (RFC 8252 §7.3),
//! and the answer's `state` and `iss` checked before the code is redeemed (RFC 6749 §10.12,
//! RFC 9207 §2.4).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use aims_credentials::jose::sha256_b64url;
use aims_token::wire::OFFLINE_ACCESS_SCOPE;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::SdkError;
use crate::mcp::discovery::parse;
use crate::mcp::grant::{ClientAuth, Target};
use crate::oauth::read_limited;

/// How long the person has to sign in and consent.
const PERSON_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest callback query and registration answer read.
const MAX_REGISTRATION: usize = 64 * 1024;

/// Where the authorization request goes for the person.
#[derive(Debug, Clone, Default)]
pub enum Browser {
    /// Printed on stderr for the person to open.
    #[default]
    Print,
    /// Given as the one argument to this program (a browser, `xdg-open`, or a headless
    /// agent of the person in tests).
    Program(PathBuf),
}

/// A client registered by RFC 7591 (§3.2.1: its `client_id`, and a secret if it got one).
#[derive(Debug, Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Runs the front-channel part for `target`: the form that redeems the code at the token
/// endpoint, and the client registered for it when `client` was `None`.
pub(crate) async fn authorization_code(
    http: &reqwest::Client,
    client: Option<&ClientAuth>,
    client_name: &str,
    metadata_url: Option<&str>,
    browser: &Browser,
    target: &Target<'_>,
) -> Result<(Vec<(&'static str, String)>, Option<ClientAuth>), SdkError> {
    let server = target.server;
    let endpoint = server.authorization_endpoint.as_deref().ok_or_else(|| {
        SdkError::Authorization("the authorization server has no authorization endpoint".into())
    })?;
    if !server
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(SdkError::Authorization(
            "the authorization server does not list PKCE S256 (code_challenge_methods_supported)"
                .into(),
        ));
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| SdkError::Authorization(format!("loopback redirect listener: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| SdkError::Authorization(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let registered = match (client, metadata_url) {
        (Some(_), _) => None,
        // The URL is the client_id; the server fetches the document (no registration).
        (None, Some(url)) if server.client_id_metadata_document_supported => {
            Some(ClientAuth::Public {
                client_id: url.to_owned(),
            })
        }
        (None, _) => Some(register(http, server, client_name, &redirect_uri).await?),
    };
    let client_id = registered
        .as_ref()
        .or(client)
        .map(ClientAuth::client_id)
        .unwrap_or_default();
    let verifier = random_b64url();
    let state = random_b64url();
    // The URL goes to the person's browser: http(s) only, so an authorization server cannot
    // have it open a `file:`, `javascript:` or other URL.
    let mut url = parse(endpoint)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &sha256_b64url(verifier.as_bytes()))
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", target.resource);
        // SEP-2207: a person's client asks for a refresh token where the server offers
        // `offline_access`, so a rejected token does not send the person back to the browser.
        let offline = server
            .scopes_supported
            .iter()
            .any(|s| s == OFFLINE_ACCESS_SCOPE)
            && !target
                .scope
                .is_some_and(|s| s.split(' ').any(|s| s == OFFLINE_ACCESS_SCOPE));
        let scope = match (target.scope, offline) {
            (Some(scope), true) => Some(format!("{scope} {OFFLINE_ACCESS_SCOPE}")),
            (Some(scope), false) => Some(scope.to_owned()),
            (None, true) => Some(OFFLINE_ACCESS_SCOPE.to_owned()),
            (None, false) => None,
        };
        if let Some(scope) = scope {
            q.append_pair("scope", &scope);
        }
    }
    let callback = serve_callback(listener);
    open(browser, url.as_str())?;
    let params = tokio::time::timeout(PERSON_TIMEOUT, callback)
        .await
        .map_err(|_| {
            SdkError::Authorization("no authorization answer within 5 minutes".into())
        })??;
    let code = check_answer(&params, &state, server)?;
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    Ok((form, registered))
}

/// The `code` of an authorization answer, once its `state` and `iss` are the ones expected.
fn check_answer(
    params: &HashMap<String, String>,
    state: &str,
    server: &crate::mcp::discovery::AuthorizationServer,
) -> Result<String, SdkError> {
    if params.get("state").map(String::as_str) != Some(state) {
        return Err(SdkError::Authorization(
            "the authorization answer's state is not this request's (RFC 6749 §10.12)".into(),
        ));
    }
    // RFC 9207 §2.4: compared as strings, required when the server says it sends one.
    match params.get("iss") {
        Some(iss) if *iss != server.issuer => {
            return Err(SdkError::Authorization(format!(
                "the authorization answer comes from issuer {iss}, not {} (RFC 9207)",
                server.issuer
            )));
        }
        None if server.authorization_response_iss_parameter_supported => {
            return Err(SdkError::Authorization(
                "the authorization answer lacks the iss the server promises (RFC 9207)".into(),
            ));
        }
        _ => {}
    }
    if let Some(error) = params.get("error") {
        return Err(SdkError::OAuth {
            status: 0,
            error: error.clone(),
            description: params.get("error_description").cloned().unwrap_or_default(),
        });
    }
    params
        .get("code")
        .cloned()
        .ok_or_else(|| SdkError::Authorization("the authorization answer has no code".into()))
}

/// Registers this client with `redirect_uri` (RFC 7591 §3.1).
async fn register(
    http: &reqwest::Client,
    server: &crate::mcp::discovery::AuthorizationServer,
    client_name: &str,
    redirect_uri: &str,
) -> Result<ClientAuth, SdkError> {
    let endpoint = server.registration_endpoint.as_deref().ok_or_else(|| {
        SdkError::Authorization(
            "no --client-id, and the authorization server offers no client registration".into(),
        )
    })?;
    let resp = http
        .post(endpoint)
        .json(&json!({
            "client_name": client_name,
            // SEP-837 and OpenID Connect Dynamic Client Registration §2: a program on the
            // person's machine with a loopback redirect.
            "application_type": "native",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await?;
    let status = resp.status();
    let body = read_limited(resp, MAX_REGISTRATION).await?;
    if !status.is_success() {
        return Err(SdkError::Authorization(format!(
            "client registration refused: {status} {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let r: Registered = serde_json::from_slice(&body)
        .map_err(|e| SdkError::Authorization(format!("registration answer: {e}")))?;
    Ok(
        match (r.client_secret, r.token_endpoint_auth_method.as_deref()) {
            (Some(secret), Some("client_secret_post")) => ClientAuth::SecretPost {
                client_id: r.client_id,
                secret,
            },
            (Some(secret), _) => ClientAuth::SecretBasic {
                client_id: r.client_id,
                secret,
            },
            (None, _) => ClientAuth::Public {
                client_id: r.client_id,
            },
        },
    )
}

/// 32 random bytes, base64url: a PKCE verifier (RFC 7636 §4.1) or a `state`.
fn random_b64url() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn open(browser: &Browser, url: &str) -> Result<(), SdkError> {
    match browser {
        Browser::Print => {
            eprintln!("Open this URL to authorize the MCP client:\n{url}");
        }
        Browser::Program(program) => {
            let mut child = tokio::process::Command::new(program)
                .arg(url)
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| SdkError::Authorization(format!("{}: {e}", program.display())))?;
            tokio::spawn(async move { child.wait().await });
        }
    }
    Ok(())
}

/// The query of the first request to `/callback` on `listener`; the person's browser is told
/// to go back to its work.
async fn serve_callback(listener: TcpListener) -> Result<HashMap<String, String>, SdkError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<HashMap<String, String>>(1);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        if req.uri().path() != "/callback" {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            return Ok::<_, Infallible>(r);
                        }
                        let query = req.uri().query().unwrap_or_default();
                        let params: HashMap<String, String> =
                            form_urlencoded::parse(query.as_bytes())
                                .into_owned()
                                .collect();
                        // The first answer counts; later ones are ignored.
                        let _ = tx.try_send(params);
                        Ok(Response::new(Full::new(Bytes::from_static(
                            b"The MCP client has the answer; this window can be closed.\n",
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let got = rx.recv().await;
    server.abort();
    got.ok_or_else(|| SdkError::Authorization("the redirect listener stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::discovery::AuthorizationServer;

    fn server(iss_supported: bool) -> AuthorizationServer {
        serde_json::from_value(json!({
            "issuer": "https://as.example",
            "token_endpoint": "https://as.example/token",
            "authorization_response_iss_parameter_supported": iss_supported,
        }))
        .unwrap()
    }

    fn answer(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_browser_is_sent_to_web_urls_only() {
        assert!(parse("https://as.example/authorize").is_ok());
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,x",
            "-x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_answer_counts_only_with_its_state_and_its_issuer() {
        let ok = answer(&[("code", "c"), ("state", "s"), ("iss", "https://as.example")]);
        assert_eq!(check_answer(&ok, "s", &server(true)).unwrap(), "c");
        // Another request's state: a forged or mixed-up answer.
        assert!(check_answer(&ok, "other", &server(true)).is_err());
        // RFC 9207: a mix-up attacker's issuer, a trailing slash (string comparison), a
        // missing iss the server promised.
        for iss in ["https://evil.example.com", "https://as.example/"] {
            let a = answer(&[("code", "c"), ("state", "s"), ("iss", iss)]);
            assert!(check_answer(&a, "s", &server(false)).is_err(), "{iss}");
        }
        let no_iss = answer(&[("code", "c"), ("state", "s")]);
        assert!(check_answer(&no_iss, "s", &server(true)).is_err());
        assert_eq!(check_answer(&no_iss, "s", &server(false)).unwrap(), "c");
        // The server's error is the caller's error.
        let denied = answer(&[("error", "access_denied"), ("state", "s")]);
        assert!(matches!(
            check_answer(&denied, "s", &server(false)),
            Err(SdkError::OAuth { error, .. }) if error == "access_denied"
        ));
    }
}
