//! OAuth error codes, and why a token or a proof was refused, as a caller can match it.

use aims_credentials::VerifyError;

/// An OAuth error code: RFC 6749 §5.2 and §4.1.2.1, RFC 6750 §3.1, RFC 7009 §2.2.1,
/// RFC 7591 §3.2.2, RFC 8693 §2.2.2 / RFC 8707 §2, RFC 9126 §2.3, RFC 9396 §5, RFC 9449 §5
/// and §8, OpenID Connect Core §3.1.2.6, CIBA Core §11 and §13. The wire string is
/// [`ErrorCode::as_str`]; nothing else spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`.
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `invalid_scope`.
    InvalidScope,
    /// `access_denied`.
    AccessDenied,
    /// `server_error`.
    ServerError,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// `invalid_token` (RFC 6750 §3.1).
    InvalidToken,
    /// `insufficient_scope` (RFC 6750 §3.1).
    InsufficientScope,
    /// `unsupported_token_type` (RFC 7009 §2.2.1).
    UnsupportedTokenType,
    /// `invalid_client_metadata` (RFC 7591 §3.2.2).
    InvalidClientMetadata,
    /// `invalid_redirect_uri` (RFC 7591 §3.2.2).
    InvalidRedirectUri,
    /// `invalid_target` (RFC 8707 §2).
    InvalidTarget,
    /// `invalid_request_uri` (RFC 9126 §2.3 via OpenID Connect Core §3.1.2.6).
    InvalidRequestUri,
    /// `request_not_supported` (OpenID Connect Core §3.1.2.6).
    RequestNotSupported,
    /// `login_required` (OpenID Connect Core §3.1.2.6).
    LoginRequired,
    /// `consent_required` (OpenID Connect Core §3.1.2.6).
    ConsentRequired,
    /// `interaction_required` (OpenID Connect Core §3.1.2.6).
    InteractionRequired,
    /// `invalid_authorization_details` (RFC 9396 §5).
    InvalidAuthorizationDetails,
    /// `invalid_dpop_proof` (RFC 9449 §5, §7.1).
    InvalidDpopProof,
    /// `use_dpop_nonce` (RFC 9449 §8, §9).
    UseDpopNonce,
    /// `authorization_pending` (CIBA Core §11).
    AuthorizationPending,
    /// `slow_down` (CIBA Core §11).
    SlowDown,
    /// `expired_token` (CIBA Core §11).
    ExpiredToken,
    /// `unknown_user_id` (CIBA Core §13).
    UnknownUserId,
    /// `invalid_user_code` (CIBA Core §13).
    InvalidUserCode,
    /// `invalid_binding_message` (CIBA Core §13).
    InvalidBindingMessage,
}

impl ErrorCode {
    /// The code as it goes on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::RequestNotSupported => "request_not_supported",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::UnknownUserId => "unknown_user_id",
            Self::InvalidUserCode => "invalid_user_code",
            Self::InvalidBindingMessage => "invalid_binding_message",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token, or the proof presented with it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The JWS is malformed, its algorithm not allowed, its signature, claims or time wrong.
    #[error("{0}")]
    Jws(#[from] VerifyError),
    /// The `typ` header is not the one expected (RFC 8725 §3.11).
    #[error("not a {0} token")]
    WrongType(&'static str),
    /// The header names no key.
    #[error("no kid")]
    NoKid,
    /// The key is not (or not yet known to be) published; a verifier may fetch keys again.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// `iss` is not ours.
    #[error("issued by someone else")]
    WrongIssuer,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The resource is not among the audiences (no token passthrough, RFC 9068 §4).
    #[error("the token is not for this resource")]
    WrongAudience,
    /// RFC 8705 §3: a certificate-bound token without a client certificate.
    #[error("certificate-bound token without its client certificate")]
    MissingCertificate,
    /// RFC 8705 §3: a certificate-bound token with another certificate.
    #[error("certificate-bound token with another client certificate")]
    WrongCertificate,
    /// RFC 9449 §7.1: a DPoP-bound token under the Bearer scheme.
    #[error("a DPoP-bound token goes with the DPoP scheme")]
    DpopScheme,
    /// RFC 9449 §7.1: a DPoP-bound token without a proof.
    #[error("DPoP-bound token without a DPoP proof")]
    MissingDpopProof,
    /// RFC 9449 §7.1: the proof is by another key than the token's `cnf.jkt`.
    #[error("the DPoP proof is by another key")]
    DpopKeyMismatch,
    /// RFC 9449 §4.3: the DPoP proof fails a check (which one is said).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// RFC 9449 §8: the proof must carry a nonce; this is the one to use.
    #[error("Authorization server requires nonce in DPoP proof")]
    UseDpopNonce(String),
    /// The random generator failed (no DPoP nonce key).
    #[error("random generator failed")]
    Random,
    /// An `x5c`-signed transaction token from a workload the trust domain does not name as a
    /// transaction-token service.
    #[error("{0} is not a transaction-token service of this trust domain")]
    NotTxnTokenService(String),
    /// A token could not be signed.
    #[error("signing failed: {0}")]
    Signing(String),
}

impl TokenError {
    /// The OAuth error code a resource server or the authorization server answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidDpopProof(_) => ErrorCode::InvalidDpopProof,
            Self::UseDpopNonce(_) => ErrorCode::UseDpopNonce,
            Self::Random | Self::Signing(_) => ErrorCode::ServerError,
            _ => ErrorCode::InvalidToken,
        }
    }
}
