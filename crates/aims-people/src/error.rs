//! Errors of the people layer.

use aims_store::StoreError;

/// Why an operation on users or sessions failed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// Misconfiguration.
    #[error("configuration: {0}")]
    Config(String),
    /// Passkeys cannot work with this public URL.
    #[error("passkeys unavailable: {0}")]
    PasskeysUnavailable(String),
    /// Bad input from a person or an operator.
    #[error("{0}")]
    Invalid(String),
    /// Sign-in failed (the message never says which part was wrong).
    #[error("sign-in failed")]
    SignInFailed,
    /// A form or request without a valid CSRF token, or from another origin.
    #[error("the request did not come from this site's own page (CSRF check failed)")]
    Csrf,
    /// The request needs a signed-in user.
    #[error("sign-in required")]
    SignInRequired,
    /// An enrolment link or ceremony that expired or was used.
    #[error("{0} expired or was already used: start again")]
    Expired(&'static str),
    /// A WebAuthn ceremony failed.
    #[error("passkey: {0}")]
    WebAuthn(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}
