//! A tower layer that authenticates workloads on an HTTP server in one line:
//!
//! ```ignore
//! let app = Router::new().route("/orders", post(handler))
//!     .layer(WorkloadAuthLayer::new(config));
//! // handler: Extension(who): Extension<VerifiedWorkload>
//! ```
//!
//! Each request is authenticated by whichever mechanism it carries: a WPT
//! (`Authorization: WPT`), a WIMSE HTTP signature (`Signature-Input` with the WIMSE tag), or the
//! X509-SVID of an mTLS connection. The authenticated workload goes into the request's
//! extensions; a failure is answered with the right status, `WWW-Authenticate: WPT` on a 401,
//! and an RFC 9457 problem document.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use aims_credentials::PrivateKey;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use tower::{Layer, Service};

use crate::error::AuthnError;
use crate::httpsig::RequestParts;
use crate::transport::ConnectionInfo;
use crate::wimse_sig::{WimseSigVerifier, sign_response};
use crate::wpt::{Mechanism, VerifiedWorkload, WptVerifier, wpt_from_headers};

/// How the expected audience of a request is decided. Never from `Host` or
/// `X-Forwarded-Host` (WPT-02 §4.3): from configuration only.
#[derive(Debug, Clone)]
pub enum AudiencePolicy {
    /// One deployment-wide audience value.
    Fixed(String),
    /// This base URL (scheme and authority, e.g. `https://tool.example.org`) plus the request
    /// path: the target URI without query or fragment.
    BaseUrl(String),
}

impl AudiencePolicy {
    fn for_path(&self, path: &str) -> String {
        match self {
            AudiencePolicy::Fixed(a) => a.clone(),
            AudiencePolicy::BaseUrl(base) => format!("{}{path}", base.trim_end_matches('/')),
        }
    }
}

/// The server's own WIT and key, to sign responses when a client asks (`wimse-sign-response`).
pub struct ResponseSigner {
    /// The server's WIT.
    pub wit: String,
    /// The WIT's `cnf` key.
    pub key: Arc<PrivateKey>,
}

/// What the layer accepts.
pub struct WorkloadAuthConfig {
    /// WPT verification, if WPTs are accepted.
    pub wpt: Option<WptVerifier>,
    /// HTTP-signature verification, if signatures are accepted.
    pub http_signature: Option<WimseSigVerifier>,
    /// Whether an mTLS-authenticated peer (SPIFFE ID on the connection) is accepted.
    pub mtls: bool,
    /// The expected audience.
    pub audience: AudiencePolicy,
    /// The largest request body buffered to check a signature's digest (default 1 MiB).
    pub max_body: usize,
    /// Signs responses when asked.
    pub response_signer: Option<ResponseSigner>,
    /// The scheme the server is reached over (for signature components).
    pub scheme: &'static str,
}

impl WorkloadAuthConfig {
    /// A configuration accepting nothing yet, with `audience` and a 1 MiB body limit.
    pub fn new(audience: AudiencePolicy) -> Self {
        Self {
            wpt: None,
            http_signature: None,
            mtls: false,
            audience,
            max_body: 1 << 20,
            response_signer: None,
            scheme: "https",
        }
    }
}

/// The layer.
#[derive(Clone)]
pub struct WorkloadAuthLayer {
    config: Arc<WorkloadAuthConfig>,
}

impl WorkloadAuthLayer {
    /// A layer applying `config`.
    pub fn new(config: WorkloadAuthConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for WorkloadAuthLayer {
    type Service = WorkloadAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WorkloadAuth {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service the layer wraps around an inner service.
#[derive(Clone)]
pub struct WorkloadAuth<S> {
    inner: S,
    config: Arc<WorkloadAuthConfig>,
}

/// An error answer: status, `WWW-Authenticate: WPT` on 401, RFC 9457 problem details.
pub fn error_response(e: &AuthnError) -> Response<Body> {
    problem(
        e.status(),
        &format!("urn:aims:authn:{}", e.code()),
        &e.to_string(),
    )
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": kind,
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("WPT"),
        );
    }
    resp
}

/// The authenticated request (its body restored), the workload, and the nonce to answer with
/// a signed response, if the client asked for one.
pub type Authenticated = (Request<Body>, VerifiedWorkload, Option<String>);

/// Authenticates `req` by the first mechanism `config` accepts that the request carries: a
/// WPT, a WIMSE HTTP signature, or the connection's X509-SVID. `AuthnError::Missing` when it
/// carries none (the caller may then try other credentials).
pub async fn authenticate(
    config: &WorkloadAuthConfig,
    req: Request<Body>,
) -> Result<Authenticated, AuthnError> {
    let (parts, body) = req.into_parts();
    let audience = config.audience.for_path(parts.uri.path());
    if let Some(v) = &config.wpt
        && wpt_from_headers(&parts.headers)?.is_some()
    {
        let workload = v.verify(&parts.headers, &audience)?;
        return Ok((Request::from_parts(parts, body), workload, None));
    }
    if let Some(v) = &config.http_signature
        && parts.headers.contains_key("signature-input")
    {
        // The digest covers the body, so it is read (within the limit) before verifying.
        let bytes = body_bytes(body, config.max_body).await?;
        let rp = RequestParts::from_http(&parts.method, &parts.uri, &parts.headers, config.scheme);
        let (workload, sig) = v.verify(rp, &bytes, &audience)?;
        let nonce = sig.sign_response.then_some(sig.nonce);
        return Ok((
            Request::from_parts(parts, Body::from(bytes)),
            workload,
            nonce,
        ));
    }
    if config.mtls
        && let Some(id) = parts
            .extensions
            .get::<ConnectionInfo>()
            .and_then(|c| c.peer_spiffe_id.clone())
    {
        let workload = VerifiedWorkload {
            id: id.into(),
            mechanism: Mechanism::Mtls,
            wit: None,
            txn_token: None,
        };
        return Ok((Request::from_parts(parts, body), workload, None));
    }
    Err(AuthnError::Missing)
}

/// Reads a whole body of at most `limit` bytes (`TooLarge` beyond, `Malformed` if it breaks).
pub async fn body_bytes(body: Body, limit: usize) -> Result<Bytes, AuthnError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                AuthnError::TooLarge(format!("body larger than {limit} bytes"))
            } else {
                AuthnError::Malformed(format!("body: {e}"))
            }
        })
}

/// Signs `resp` for the request `(method, uri, headers)` whose nonce was `nonce`.
async fn signed(
    config: &WorkloadAuthConfig,
    resp: Response<Body>,
    request: (http::Method, http::Uri, http::HeaderMap),
    nonce: &str,
) -> Response<Body> {
    let Some(signer) = &config.response_signer else {
        // -07 §4.2: a server that cannot sign answers with an error, never unsigned.
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "about:blank",
            "this server does not sign responses",
        );
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = match body_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let (method, uri, headers) = request;
    let req = RequestParts::from_http(&method, &uri, &headers, config.scheme);
    match sign_response(
        &signer.key,
        &signer.wit,
        parts.status.as_u16(),
        &mut parts.headers,
        &bytes,
        req,
        nonce,
        Duration::from_secs(60),
        SystemTime::now(),
    ) {
        Ok(()) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "signing the response failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "about:blank",
                "response signing failed",
            )
        }
    }
}

impl<S> Service<Request<Body>> for WorkloadAuth<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let config = self.config.clone();
        let clone = self.inner.clone();
        // The inner service that was polled ready handles this request.
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (mut req, workload, nonce) = match authenticate(&config, req).await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::info!(error = %e, code = e.code(), "workload authentication failed");
                    return Ok(error_response(&e));
                }
            };
            let request = nonce.as_ref().map(|_| {
                (
                    req.method().clone(),
                    req.uri().clone(),
                    req.headers().clone(),
                )
            });
            req.extensions_mut().insert(workload);
            let resp = inner.call(req).await?;
            Ok(match (nonce, request) {
                (Some(nonce), Some(request)) => signed(&config, resp, request, &nonce).await,
                _ => resp,
            })
        })
    }
}
