//! The HTTP side of rmcp's streamable HTTP client transport (MCP Basic §Transports,
//! "Streamable HTTP"), with MCP authorization underneath: each request carries the current
//! token (and DPoP proof), and 401 / 403 challenges are answered here, below the protocol.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ErrorData, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, SseError, StreamableHttpClient,
    StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use super::McpAuth;
use super::challenge::Challenge;
use crate::SdkError;
use crate::oauth::read_limited;

/// The largest JSON answer read, and the largest server-sent event.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
const SESSION_ID: &str = "mcp-session-id";
const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

type HttpError = StreamableHttpError<SdkError>;

/// An HTTP client for rmcp's `StreamableHttpClientTransport` that authorizes its requests.
#[derive(Debug, Clone)]
pub struct AuthorizedHttp {
    http: reqwest::Client,
    auth: Arc<McpAuth>,
}

impl AuthorizedHttp {
    /// Requests go out on `http` (it must trust the MCP server's certificate), authorized by
    /// `auth`.
    pub fn new(http: reqwest::Client, auth: Arc<McpAuth>) -> Self {
        Self { http, auth }
    }

    /// Sends one request built by `build`, answering the server's challenges: a DPoP nonce
    /// once, a 401 with one new token, a 403 `insufficient_scope` with one token for more
    /// scopes (step-up). A challenge still standing after that is the caller's error: a
    /// server cannot make the client ask again and again. `build` may be called more than
    /// once; each call starts from a fresh request to `uri`.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HttpError> {
        let (mut nonce_sent, mut authorized, mut stepped_up) = (false, false, false);
        loop {
            let (headers, generation) = self
                .auth
                .headers(method.as_str(), uri)
                .await
                .map_err(StreamableHttpError::Client)?;
            let mut req = build(self.http.request(method.clone(), uri));
            for (name, value) in headers {
                req = req.header(name, value);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| StreamableHttpError::Client(e.into()))?;
            let nonce = resp
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(n) = &nonce {
                self.auth.remember_nonce(n).await;
            }
            let status = resp.status();
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(resp);
            }
            let Some(header) = resp
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(resp);
            };
            let challenge = Challenge::first(&header).unwrap_or_default();
            if challenge.wants_nonce() && nonce.is_some() && !nonce_sent {
                nonce_sent = true;
                continue;
            }
            let answer = if status == StatusCode::UNAUTHORIZED {
                &mut authorized
            } else if challenge.insufficient_scope() {
                &mut stepped_up
            } else {
                &mut true
            };
            if !*answer {
                *answer = true;
                self.auth
                    .authorize(uri, &challenge, generation)
                    .await
                    .map_err(StreamableHttpError::Client)?;
                continue;
            }
            return Err(if status == StatusCode::UNAUTHORIZED {
                StreamableHttpError::AuthRequired(AuthRequiredError::new(header))
            } else {
                StreamableHttpError::InsufficientScope(InsufficientScopeError::new(
                    header,
                    challenge.scope,
                ))
            });
        }
    }
}

/// The error for an answer that is neither success nor a challenge.
fn status_error(resp: &reqwest::Response) -> HttpError {
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64)
            .map(str::to_owned);
        return HttpStatusError::new(status.as_u16(), retry_after).into();
    }
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {status}")))
}

/// A POST answered with neither success nor a challenge: its JSON-RPC error when it carries
/// one, so the protocol layer sees it (and an earlier revision's refusal of `server/discover`
/// lets the client fall back to `initialize`), else the HTTP status.
async fn rejected(
    resp: reqwest::Response,
    message: &ClientJsonRpcMessage,
    session_attached: bool,
) -> Result<StreamableHttpPostResponse, HttpError> {
    let status = resp.status();
    let discover = match message {
        ClientJsonRpcMessage::Request(r)
            if matches!(r.request, ClientRequest::DiscoverRequest(_))
                && status.is_client_error()
                && !session_attached =>
        {
            Some(r.id.clone())
        }
        _ => None,
    };
    let error =
        if media_type(&resp).as_deref() == Some(JSON) && status != StatusCode::TOO_MANY_REQUESTS {
            let body = read_limited(resp, MAX_MESSAGE)
                .await
                .map_err(StreamableHttpError::Client)?;
            match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(ServerJsonRpcMessage::Error(e)) => Some(e),
                _ => None,
            }
        } else if discover.is_some() {
            None
        } else {
            return Err(status_error(&resp));
        };
    Ok(StreamableHttpPostResponse::Json(
        match (discover, error) {
            (Some(id), Some(e)) => ServerJsonRpcMessage::error(e.error, Some(id)),
            (Some(id), None) => ServerJsonRpcMessage::error(
                ErrorData::invalid_request(
                    format!("server/discover refused with HTTP {status}"),
                    None,
                ),
                Some(id),
            ),
            (None, Some(e)) => ServerJsonRpcMessage::Error(e),
            (None, None) => {
                return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                    format!("HTTP {status}"),
                )));
            }
        },
        None,
    ))
}

fn media_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// The server-sent events of `resp`, each at most [`MAX_MESSAGE`] bytes.
fn events(resp: reqwest::Response) -> BoxStream<'static, Result<Sse, SseError>> {
    // Bytes since the last blank line: the size of the event being read.
    let mut since_blank = 0usize;
    let mut newline = false;
    let bounded = resp.bytes_stream().map(move |chunk| {
        let chunk: Bytes = chunk.map_err(SdkError::from)?;
        for &b in chunk.iter() {
            match b {
                b'\n' if newline => since_blank = 0,
                b'\n' => newline = true,
                b'\r' => {}
                _ => {
                    newline = false;
                    since_blank += 1;
                }
            }
            if since_blank > MAX_MESSAGE {
                return Err(SdkError::Authorization(format!(
                    "a server-sent event longer than {MAX_MESSAGE} bytes"
                )));
            }
        }
        Ok(chunk)
    });
    SseStream::from_bytes_stream(bounded).boxed()
}

fn apply(
    mut req: reqwest::RequestBuilder,
    session_id: Option<&str>,
    custom: &HashMap<HeaderName, HeaderValue>,
) -> reqwest::RequestBuilder {
    for (name, value) in custom {
        req = req.header(name, value);
    }
    if let Some(id) = session_id {
        req = req.header(SESSION_ID, id);
    }
    req
}

impl StreamableHttpClient for AuthorizedHttp {
    type Error = SdkError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let body = Bytes::from(serde_json::to_vec(&message)?);
        let resp = self
            .send(Method::POST, &uri, |req| {
                apply(req, session_id.as_deref(), &custom_headers)
                    .header(http::header::ACCEPT, format!("{JSON}, {EVENT_STREAM}"))
                    .header(http::header::CONTENT_TYPE, JSON)
                    .body(body.clone())
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return rejected(resp, &message, session_id.is_some()).await;
        }
        let session = resp
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match media_type(&resp).as_deref() {
            Some(EVENT_STREAM) => Ok(StreamableHttpPostResponse::Sse(events(resp), session)),
            Some(JSON) => {
                let body = read_limited(resp, MAX_MESSAGE)
                    .await
                    .map_err(StreamableHttpError::Client)?;
                let message: ServerJsonRpcMessage = serde_json::from_slice(&body)?;
                Ok(StreamableHttpPostResponse::Json(message, session))
            }
            other => Err(StreamableHttpError::UnexpectedContentType(
                other.map(str::to_owned),
            )),
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let resp = self
            .send(Method::DELETE, &uri, |req| {
                apply(req, Some(&session_id), &custom_headers)
            })
            .await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        Err(status_error(&resp))
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let resp = self
            .send(Method::GET, &uri, |req| {
                let mut req = apply(req, session_id.as_deref(), &custom_headers)
                    .header(http::header::ACCEPT, EVENT_STREAM);
                if let Some(id) = &last_event_id {
                    req = req.header("last-event-id", id);
                }
                req
            })
            .await?;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !resp.status().is_success() {
            return Err(status_error(&resp));
        }
        match media_type(&resp).as_deref() {
            Some(EVENT_STREAM) => Ok(events(resp)),
            other => Err(StreamableHttpError::UnexpectedContentType(
                other.map(str::to_owned),
            )),
        }
    }
}
