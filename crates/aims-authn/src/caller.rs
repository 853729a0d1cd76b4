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
