//! Typed errors for credential issuance and verification.
//!
//! Verification errors are precise so that callers can answer with the right protocol error
//! (`invalid_token`, `invalid_client`, gRPC `PermissionDenied`, …) and an operator can tell an
//! expired credential from a forged one. They never carry the credential itself.

use aims_core::SpiffeIdError;

use crate::keys::KeyError;

/// Why a credential failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The credential is not well formed.
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The credential exceeds the size AIMS parses.
    #[error("credential too large")]
    TooLarge,
    /// The `alg` is not allowed for this credential type or key (including `none` and HMAC).
    #[error("algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    /// The explicit type (`typ`) is wrong or missing.
    #[error("wrong token type: expected {expected}, found {}", found.as_deref().unwrap_or("none"))]
    WrongType {
        /// The media type required.
        expected: &'static str,
        /// The `typ` present, if any.
        found: Option<String>,
    },
    /// A header parameter the format forbids.
    #[error("unexpected header parameter {0:?}")]
    UnexpectedHeaderParameter(String),
    /// A `crit` entry naming a parameter AIMS does not understand (RFC 7515 §4.1.11).
    #[error("unsupported critical header parameter {0:?}")]
    UnsupportedCritical(String),
    /// No key with this `kid` in the trust domain's bundle.
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// A `kid` is required but absent.
    #[error("key id (kid) is required")]
    MissingKeyId,
    /// No trust bundle is known for the credential's trust domain (not ours, not federated).
    #[error("no trust bundle for trust domain {0}")]
    UntrustedDomain(String),
    /// The chain does not lead to an authority in its trust domain's bundle.
    #[error("the certificate chain does not lead to an X.509 authority in the bundle")]
    UnknownIssuer,
    /// The trust domain is not the one expected.
    #[error("trust domain {found} is not {expected}")]
    WrongTrustDomain {
        /// The trust domain required.
        expected: String,
        /// The trust domain presented.
        found: String,
    },
    /// The signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// `exp` has passed (AIMS CR-4).
    #[error("credential expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("credential not yet valid")]
    NotYetValid,
    /// A required claim is absent.
    #[error("missing required claim {0}")]
    MissingClaim(&'static str),
    /// A claim the format forbids is present.
    #[error("forbidden claim {0}")]
    ForbiddenClaim(&'static str),
    /// The audience does not include the verifier.
    #[error("audience mismatch")]
    WrongAudience,
    /// The subject is not a valid identifier.
    #[error("invalid subject: {0}")]
    InvalidSubject(String),
    /// X.509 path validation or SVID rules failed.
    #[error("certificate rejected: {0}")]
    Certificate(String),
}

impl From<SpiffeIdError> for VerifyError {
    fn from(e: SpiffeIdError) -> Self {
        VerifyError::InvalidSubject(e.to_string())
    }
}

/// Why a credential could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The certificate signing request is malformed or its signature does not verify.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    /// The request asks for something the issuer will not put in a credential.
    #[error("request refused: {0}")]
    Refused(String),
    /// The requested identity is not valid.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidId(#[from] SpiffeIdError),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No CA is active yet.
    #[error("no active certificate authority")]
    NoActiveAuthority,
    /// Certificate encoding failed.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
}

impl From<rcgen::Error> for IssueError {
    fn from(e: rcgen::Error) -> Self {
        IssueError::Certificate(e.to_string())
    }
}
