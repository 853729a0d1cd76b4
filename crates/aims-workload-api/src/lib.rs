//! # aims-workload-api
//!
//! Credential delivery in the AIMS stack: the SPIFFE Workload API (SPIFFE Workload API and
//! Workload Endpoint standards) served by the node agent on a Unix socket, so any SPIFFE library
//! (go-spiffe, py-spiffe, java-spiffe, the Rust `spiffe` crate) gets its SVIDs without an
//! AIMS-specific client (AIMS PR-1, PR-7).
//!
//! * [`server`]: the gRPC service, generic over an [`IdentityProvider`] (the agent), with the
//!   `workload.spiffe.io: true` security header enforced and the caller identified by the
//!   kernel's peer credentials of the socket, never by anything it sends.
//! * [`client`]: a client for the same API (the `aims api` commands, the SDK, tests).
#![forbid(unsafe_code)]

pub mod client;
pub mod peer;
pub mod provider;
pub mod server;

/// The generated protobuf and gRPC code (`standards/workloadapi.proto`, WIT-SVID profile included).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

pub use provider::{
    IdentityProvider, JwtSvidEntry, PeerCredentials, SvidKind, WitSvidEntry, X509SvidEntry,
};

/// The metadata key every Workload API request must carry with the value `true`
/// (SPIFFE Workload Endpoint §4).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// The environment variable clients read the endpoint from (SPIFFE Workload Endpoint §4).
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";
