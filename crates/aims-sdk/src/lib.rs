//! # aims-sdk
//!
//! The agent's side of AIMS (draft-ietf-wimse-aims §7–§10) in one crate. Standard SPIFFE and
//! OAuth libraries work against AIMS unchanged; this crate puts the pieces an agent needs
//! together, with the keys kept in the agent's own process and never handed to a model
//! (AIMS PR-10):
//!
//! * [`source`]: an [`X509Source`](source::X509Source) that follows the Workload API stream
//!   and always holds the current X509-SVID (rotation needs no code of the agent's), a
//!   [`JwtSource`](source::JwtSource) that caches JWT-SVIDs per audience until half their life,
//!   and [`wit_signer`](source::wit_signer) for WPT or HTTP-signature requests with a WIT-SVID.
//! * [`oauth`]: tokens from the authorization server with the SVID as client authentication:
//!   client credentials, token exchange (delegation chains), transaction tokens; DPoP-bound
//!   when a [`DpopKey`](dpop::DpopKey) is given.
//! * [`dpop`]: RFC 9449 proofs.
//! * [`txn`]: forwarding a transaction token along the calls of one task.
//! * [`mcp`]: MCP authorization under the Rust MCP SDK: discovery, the grants of MCP's
//!   authorization extensions, DPoP, step-up.
#![forbid(unsafe_code)]

pub mod dpop;
pub mod mcp;
pub mod oauth;
pub mod source;
pub mod txn;

pub use aims_authn::client::{ProofMode, WimseSigner, WorkloadCredentials};

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The Workload API could not be reached or refused.
    #[error("Workload API: {0}")]
    WorkloadApi(String),
    /// The Workload API or a server answered something this SDK cannot use.
    #[error("unusable answer: {0}")]
    Invalid(String),
    /// MCP authorization could not go on: discovery failed, or an answer did not pass a check
    /// (a resource, issuer, `state` or `iss` that is not the one expected).
    #[error("authorization: {0}")]
    Authorization(String),
    /// The authorization server answered with an OAuth error (RFC 6749 §5.2).
    #[error("{error}: {description}")]
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// `error_description`.
        description: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// A key or signature operation failed.
    #[error("key: {0}")]
    Key(String),
}
