//! `aims mcp proxy`: a local MCP endpoint that forwards to a protected one and authorizes
//! every request on the way (`aims_sdk::mcp::AuthorizedHttp`), for MCP clients that cannot
//! authorize themselves, and so that the token and its DPoP key stay in this process rather
//! than in the client's (AIMS PR-10). Streamable HTTP passes through unchanged: requests,
//! JSON and event-stream answers, sessions and the MCP headers.
//!
//! Anyone who can reach the proxy acts with its authority, so it listens on loopback only
//! and answers only requests whose `Host` (and `Origin`, when sent) is a loopback name (MCP
//! Basic §Transports, "Security Warning": DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;

use aims_sdk::mcp::AuthorizedHttp;
use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::any;
use futures::StreamExt as _;
use serde_json::json;

/// The largest request forwarded.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Headers of the client's request that reach the MCP server (MCP Basic §Transports); its
/// own `Authorization`, cookies and the rest do not.
const REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "last-event-id",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// Headers of the server's answer that reach the client.
const RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "cache-control",
    "mcp-session-id",
    "mcp-protocol-version",
    "retry-after",
];

struct Proxy {
    upstream: String,
    http: AuthorizedHttp,
}

/// Serves `http://LISTEN/mcp`, forwarding to `upstream`, until Ctrl-C or SIGTERM.
pub async fn serve(
    listen: SocketAddr,
    upstream: String,
    http: AuthorizedHttp,
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!("the proxy acts with its own authority: it listens on loopback only, not {listen}");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!("MCP proxy for {upstream} at http://{addr}/mcp");
    let app = Router::new()
        .route("/mcp", any(forward))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(Arc::new(Proxy { upstream, http }));
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::cmd::shutdown_signal())
        .await?;
    Ok(())
}

/// Whether `value` (a `Host` or an `Origin`) names this machine's loopback.
fn is_loopback_name(value: &str) -> bool {
    let host = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or(value);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The headers of the client's request that go on to the MCP server.
fn forwarded(headers: &HeaderMap) -> Vec<(HeaderName, axum::http::HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            REQUEST_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("mcp-param-")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null,
                      "error": {"code": -32000, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !host.is_some_and(is_loopback_name) || origin.is_some_and(|o| !is_loopback_name(o)) {
        return refuse(StatusCode::FORBIDDEN, "only loopback hosts and origins");
    }
    if ![Method::POST, Method::GET, Method::DELETE].contains(&method) {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "POST, GET or DELETE");
    }
    let pass = forwarded(&headers);
    let sent = proxy
        .http
        .send(method, &proxy.upstream, |mut req| {
            for (name, value) in &pass {
                req = req.header(name, value);
            }
            if body.is_empty() {
                req
            } else {
                req.body(body.clone())
            }
        })
        .await;
    let upstream = match sent {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "MCP proxy: the request was not authorized or not sent");
            return refuse(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"));
        }
    };
    let mut out = Response::builder().status(upstream.status().as_u16());
    for name in RESPONSE_HEADERS {
        for value in upstream.headers().get_all(*name) {
            out = out.header(*name, value.as_bytes());
        }
    }
    let stream = upstream
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    out.body(Body::from_stream(stream))
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "an answer that cannot be relayed"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_clients_own_credentials_are_not_forwarded() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer stolen"),
            ("dpop", "eyJ.proof.sig"),
            ("cookie", "session=1"),
            ("host", "127.0.0.1:8790"),
            ("x-forwarded-for", "10.0.0.1"),
            ("mcp-session-id", "s1"),
            ("mcp-method", "tools/call"),
            ("mcp-param-region", "eu"),
            ("content-type", "application/json"),
        ] {
            h.insert(HeaderName::from_static(name), value.parse().unwrap());
        }
        let mut names: Vec<String> = forwarded(&h).iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "content-type",
                "mcp-method",
                "mcp-param-region",
                "mcp-session-id"
            ]
        );
    }

    #[tokio::test]
    async fn it_listens_on_loopback_only() {
        let http = reqwest::Client::new();
        let auth = aims_sdk::mcp::McpAuth::new(
            http.clone(),
            aims_sdk::mcp::Grant::JwtBearer {
                assertion: aims_sdk::mcp::Assertion::Jwt("x".into()),
                client: None,
            },
        );
        let refused = serve(
            "0.0.0.0:0".parse().unwrap(),
            "https://mcp.example/mcp".into(),
            AuthorizedHttp::new(http, auth),
        )
        .await;
        assert!(refused.unwrap_err().to_string().contains("loopback only"));
    }

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "127.0.0.1:8790",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8790",
            "http://127.0.0.1:8790",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8790",
            "127.0.0.1.evil.example",
            "http://attacker.test",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }
}
