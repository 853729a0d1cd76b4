//! Agent errors.

use aims_credentials::{IssueError, KeyError, VerifyError};

/// Why the agent could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
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
    /// Node attestation is impossible or was refused.
    #[error("node attestation: {0}")]
    Attestation(String),
    /// The server could not be reached.
    #[error("cannot reach the server at {address}: {reason}")]
    Unreachable {
        /// The server address.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error (or could not be reached: `Unavailable`).
    #[error("server: {:?}: {}", .0.code(), .0.message())]
    Server(#[from] tonic::Status),
    /// A credential from the server, or one saved on disk, is not valid.
    #[error("credential: {0}")]
    Credential(#[from] VerifyError),
    /// A CSR could not be built.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io {
            context: context.into(),
            source,
        }
    }
}
