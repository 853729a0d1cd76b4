//! Server errors.

use aims_store::StoreError;

/// Why the server could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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
    /// The issuance service failed.
    #[error(transparent)]
    Issuance(#[from] aims_provisioning::issuance::IssuanceError),
    /// A policy set was refused.
    #[error(transparent)]
    Policy(#[from] aims_policy::PolicyError),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A listener's TLS configuration from PEM files failed.
    #[error(transparent)]
    TlsConfig(#[from] aims_authn::transport::TlsConfigError),
    /// The audit log refused a record: the act it records did not complete its trail.
    #[error(transparent)]
    Audit(#[from] aims_audit::AppendError),
}

impl From<aims_policy::service::StartError> for ServerError {
    fn from(e: aims_policy::service::StartError) -> Self {
        use aims_policy::service::StartError;
        match e {
            StartError::Invalid(e) => Self::Policy(e),
            StartError::Store(e) => Self::Store(e),
            StartError::Empty => Self::Config(e.to_string()),
        }
    }
}

impl From<aims_signals::remediation::RemediationError> for ServerError {
    fn from(e: aims_signals::remediation::RemediationError) -> Self {
        use aims_signals::remediation::RemediationError;
        match e {
            RemediationError::Store(e) => Self::Store(e),
            RemediationError::Audit(e) => Self::Audit(e),
        }
    }
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }
}
