//! Errors of the policy layer.

/// Why a policy set or a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text does not parse.
    #[error("policy does not parse: {0}")]
    Parse(String),
    /// The policy set does not validate against the AIMS schema.
    #[error("policy does not validate against the AIMS schema: {0}")]
    Invalid(String),
    /// A request could not be expressed against the schema.
    #[error("request does not fit the AIMS schema: {0}")]
    Request(String),
    /// A version is older than (or the same as) the one in force.
    #[error("policy version {offered} is not newer than version {current} in force")]
    Stale {
        /// The version offered.
        offered: u64,
        /// The version in force.
        current: u64,
    },
    /// The built-in schema does not parse (a defect of this build).
    #[error("the AIMS schema does not parse: {0}")]
    Schema(String),
}
