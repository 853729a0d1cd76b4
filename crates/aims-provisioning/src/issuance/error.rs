//! Why an issuance operation failed.

use aims_credentials::{IssueError, KeyError, VerifyError};
use aims_store::StoreError;

/// Why the issuance service could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Issuance failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Building or reading a bundle failed.
    #[error("bundle: {0}")]
    Bundle(#[from] VerifyError),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
}
