//! OAuth error responses (RFC 6749 §5.2, and the codes RFC 8693, RFC 8707, RFC 9396 and
//! RFC 9449 add). Every failure a client can cause is one of these; none is a 500.

use aims_token::{ErrorCode, TokenError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An OAuth error answer.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// The `error` code.
    pub code: ErrorCode,
    /// `error_description`.
    pub description: String,
    /// The HTTP status.
    pub status: StatusCode,
    /// A fresh DPoP nonce to send (`use_dpop_nonce`, RFC 9449 §8).
    pub dpop_nonce: Option<String>,
    /// `WWW-Authenticate`, for 401 answers.
    pub www_authenticate: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    error_description: &'a str,
}

impl OAuthError {
    fn new(code: ErrorCode, status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status,
            dpop_nonce: None,
            www_authenticate: None,
        }
    }

    /// A 400 answer with a code another specification defines (OpenID Connect Core §3.1.2.6,
    /// RFC 9126 §2.3, RFC 6749 §4.1.2.1).
    pub fn coded(code: ErrorCode, d: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_request` (400).
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_client` (401): client authentication failed.
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, StatusCode::UNAUTHORIZED, d)
    }

    /// `invalid_grant` (400).
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, StatusCode::BAD_REQUEST, d)
    }

    /// `unauthorized_client` (400).
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, StatusCode::BAD_REQUEST, d)
    }

    /// `unsupported_grant_type` (400).
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedGrantType, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_scope` (400).
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_target` (400, RFC 8707 §2; RFC 8693 §2.2.2).
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidTarget, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_authorization_details` (400, RFC 9396 §5).
    pub fn invalid_authorization_details(d: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::InvalidAuthorizationDetails,
            StatusCode::BAD_REQUEST,
            d,
        )
    }

    /// `invalid_dpop_proof` (400, RFC 9449 §5).
    pub fn invalid_dpop_proof(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, StatusCode::BAD_REQUEST, d)
    }

    /// `use_dpop_nonce` (400) with the nonce to use (RFC 9449 §8).
    pub fn use_dpop_nonce(nonce: String) -> Self {
        let mut e = Self::new(
            ErrorCode::UseDpopNonce,
            StatusCode::BAD_REQUEST,
            "Authorization server requires nonce in DPoP proof",
        );
        e.dpop_nonce = Some(nonce);
        e
    }

    /// `invalid_client_metadata` (400, RFC 7591 §3.2.2).
    pub fn invalid_client_metadata(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClientMetadata, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_redirect_uri` (400, RFC 7591 §3.2.2).
    pub fn invalid_redirect_uri(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRedirectUri, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_token` (401), for endpoints that take a bearer token.
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, StatusCode::UNAUTHORIZED, d)
    }

    /// `unsupported_token_type` (400, RFC 7009 §2.2.1).
    pub fn unsupported_token_type(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedTokenType, StatusCode::BAD_REQUEST, d)
    }

    /// `interaction_required` (400): policy allows this only with a person's approval, which
    /// a direct grant cannot carry; the client asks for it through CIBA (AIMS AZ-28).
    pub fn interaction_required(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InteractionRequired, StatusCode::BAD_REQUEST, d)
    }

    /// `authorization_pending` (400, CIBA Core §11).
    pub fn authorization_pending() -> Self {
        Self::new(
            ErrorCode::AuthorizationPending,
            StatusCode::BAD_REQUEST,
            "the user has not decided yet",
        )
    }

    /// `slow_down` (400, CIBA Core §11): the client polled before its interval passed.
    pub fn slow_down(interval: i64) -> Self {
        Self::new(
            ErrorCode::SlowDown,
            StatusCode::BAD_REQUEST,
            format!("polled too fast: wait {interval} s between polls"),
        )
    }

    /// `expired_token` (400, CIBA Core §11).
    pub fn expired_token(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::ExpiredToken, StatusCode::BAD_REQUEST, d)
    }

    /// `unknown_user_id` (400, CIBA Core §13).
    pub fn unknown_user_id(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownUserId, StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_binding_message` (400, CIBA Core §13).
    pub fn invalid_binding_message(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidBindingMessage, StatusCode::BAD_REQUEST, d)
    }

    /// `access_denied` (400) at the token endpoint: the user denied the request (CIBA Core §11).
    pub fn denied_by_user() -> Self {
        Self::new(
            ErrorCode::AccessDenied,
            StatusCode::BAD_REQUEST,
            "the user denied the request",
        )
    }

    /// `access_denied` (403).
    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::AccessDenied, StatusCode::FORBIDDEN, d)
    }

    /// `temporarily_unavailable` (503): the store or a dependency failed; the client may retry.
    pub fn unavailable(d: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            d,
        )
    }

    /// A failed fetch of a URL a client named: `temporarily_unavailable` when too many fetches
    /// are in flight (the client may retry), else what `refused` makes of it.
    pub fn fetch_failed(
        e: aims_outbound::fetch::FetchError,
        refused: impl FnOnce(aims_outbound::fetch::FetchError) -> Self,
    ) -> Self {
        match e {
            aims_outbound::fetch::FetchError::Busy { .. } => Self::unavailable(e.to_string()),
            other => refused(other),
        }
    }

    /// `server_error` (500): a fault of ours, logged; the client learns nothing more.
    pub fn server_error(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Self::new(
            ErrorCode::ServerError,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }

    /// Adds `WWW-Authenticate`.
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl From<aims_store::StoreError> for OAuthError {
    fn from(e: aims_store::StoreError) -> Self {
        match e {
            aims_store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable in the authorization server");
                OAuthError::unavailable("the store is unavailable; retry")
            }
            other => OAuthError::server_error("store failure in the authorization server", other),
        }
    }
}

/// A refused token or DPoP proof, with the code the token core gives it.
impl From<TokenError> for OAuthError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::UseDpopNonce(nonce) => Self::use_dpop_nonce(nonce),
            TokenError::Random => Self::server_error("token core", e),
            other => {
                let code = other.code();
                let status = if code == ErrorCode::InvalidToken {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                };
                Self::new(code, status, other.to_string())
            }
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: self.code.as_str(),
            error_description: &self.description,
        })
        .unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(n) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            h.insert("dpop-nonce", n);
        }
        if let Some(c) = self
            .www_authenticate
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}
