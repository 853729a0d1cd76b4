//! Authentication failures, with the HTTP answer each deserves.

use aims_credentials::VerifyError;
use http::StatusCode;

use crate::replay::ReplayError;

/// Why a caller could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No credential was presented.
    #[error("no workload credential presented")]
    Missing,
    /// The request carries credentials in a form the scheme forbids (two Authorization fields,
    /// a WIT without a proof, a WIT in `Authorization`, …).
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The Workload Identity Token did not verify.
    #[error("workload identity token rejected: {0}")]
    InvalidWit(VerifyError),
    /// The proof (WPT or HTTP signature) did not verify.
    #[error("proof rejected: {0}")]
    InvalidProof(String),
    /// The proof is addressed to another recipient.
    #[error("proof audience {found:?} is not {expected:?}")]
    WrongAudience {
        /// What this recipient expects.
        expected: String,
        /// What the proof names.
        found: String,
    },
    /// The proof expired or is not valid yet.
    #[error("proof expired or not yet valid")]
    Expired,
    /// The proof lives longer than this recipient accepts.
    #[error("proof lifetime exceeds the {0} s maximum")]
    LifetimeTooLong(i64),
    /// The proof's one-time value was seen before (AIMS AU-11).
    #[error("proof replayed")]
    Replayed,
    /// A token hash in the proof does not match the token sent with it (`wth`, `tth`, `oth`).
    #[error("token binding mismatch: {0}")]
    BindingMismatch(String),
    /// The message changed after signing (body digest or a covered component).
    #[error("message integrity check failed: {0}")]
    Tampered(String),
    /// A component the profile requires is not covered by the signature.
    #[error("required component not signed: {0}")]
    MissingComponent(String),
    /// The caller authenticated but is not one this endpoint accepts.
    #[error("workload {0} is not authorized here")]
    NotAuthorized(String),
    /// A request part is larger than accepted.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The replay cache is full; the request cannot be safely admitted now.
    #[error("temporarily unable to admit new proofs")]
    Unavailable,
}

impl From<ReplayError> for AuthnError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => AuthnError::Replayed,
            ReplayError::Full => AuthnError::Unavailable,
        }
    }
}

impl AuthnError {
    /// A short machine-readable code, for problem details and logs.
    pub fn code(&self) -> &'static str {
        match self {
            AuthnError::Missing => "missing_credentials",
            AuthnError::Malformed(_) => "invalid_request",
            AuthnError::InvalidWit(_) => "invalid_wit",
            AuthnError::InvalidProof(_) => "invalid_proof",
            AuthnError::WrongAudience { .. } => "invalid_audience",
            AuthnError::Expired => "expired",
            AuthnError::LifetimeTooLong(_) => "lifetime_too_long",
            AuthnError::Replayed => "replayed",
            AuthnError::BindingMismatch(_) => "token_binding_mismatch",
            AuthnError::Tampered(_) => "tampered",
            AuthnError::MissingComponent(_) => "missing_component",
            AuthnError::NotAuthorized(_) => "not_authorized",
            AuthnError::TooLarge(_) => "too_large",
            AuthnError::Unavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status: 401 for credentials that fail (WPT-02 §4.4), 400 for requests that are
    /// malformed independently of credentials, 403 for an authenticated but unauthorized
    /// workload, 413 and 503 where they apply.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthnError::Malformed(_) => StatusCode::BAD_REQUEST,
            AuthnError::NotAuthorized(_) => StatusCode::FORBIDDEN,
            AuthnError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AuthnError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}
