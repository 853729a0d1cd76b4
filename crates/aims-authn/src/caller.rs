//! Callers of a mutual-TLS listener's workload endpoints (AuthZEN, the policy feed, audit
//! appends, SSF streams): workloads of this trust domain, authenticated by their X509-SVIDs.
//! Each component's HTTP surface checks its callers with this one rule.

use crate::transport::ConnectionInfo;
use aims_core::{SpiffeId, TrustDomain};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refused call: a status and a message string (AuthZEN §10.1.2); a 401 carries
/// `WWW-Authenticate` (AuthZEN §11.3).
pub struct Refusal(pub StatusCode, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = (self.0, self.1).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Mutual-TLS realm=\"aims\""),
            );
        }
        resp
    }
}

/// The caller's SPIFFE ID, if it is a workload of `trust_domain`.
pub fn require_workload(
    trust_domain: &TrustDomain,
    conn: Option<&ConnectionInfo>,
) -> Result<SpiffeId, Refusal> {
    match conn.and_then(|c| c.peer_spiffe_id.as_ref()) {
        Some(id) if id.is_member_of(trust_domain) => Ok(id.clone()),
        Some(id) => Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("{id} is not a workload of trust domain {trust_domain}"),
        )),
        None => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "present an X509-SVID of this trust domain (mutual TLS)".into(),
        )),
    }
}

/// Checks an access token a caller presents as `Authorization: Bearer` (RFC 6750 §2.1) to an
/// API of the server that takes one besides mutual TLS (the AuthZEN API): the authorization
/// server behind it says whom the token speaks for if it is active, issued for `audience`, and
/// bound to no key (a sender-constrained token needs its proof, which a bearer header is not).
pub trait BearerCheck: Send + Sync {
    /// The token's client, or why it is refused.
    fn check<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>;
}

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive, RFC 9110
/// §11.1); `None` without one, or with any other scheme.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// A 401 asking for a bearer token or mutual TLS; with `why`, the presented token was refused
/// (RFC 6750 §3.1 `invalid_token`), without, none was presented (§3: no error code).
pub fn bearer_refusal(why: Option<&str>) -> Response {
    let message = why.unwrap_or(
        "present an X509-SVID of this trust domain (mutual TLS) or a bearer access token for this API",
    );
    let mut resp = (StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    let challenge = match why {
        Some(why) => format!(
            "Bearer realm=\"aims\", error=\"invalid_token\", error_description=\"{}\"",
            why.replace(['"', '\\'], "'")
        ),
        None => "Bearer realm=\"aims\"".to_owned(),
    };
    if let Ok(v) = header::HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp.headers_mut().append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Mutual-TLS realm=\"aims\""),
    );
    resp
}
