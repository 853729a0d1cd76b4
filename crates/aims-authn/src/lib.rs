//! # aims-authn
//!
//! The authentication layer of the AIMS stack (draft-ietf-wimse-aims §9): how an agent proves
//! who it is to a tool, a gateway, an authorization server or another agent.
//!
//! * Transport (AIMS AU-2): rustls verifiers that validate X509-SVIDs against the bundle of the
//!   peer's trust domain and authorize the peer by SPIFFE ID, with the local SVID swappable
//!   without dropping live connections ([`mtls`], [`transport`]).
//! * Application layer (AIMS AU-4…AU-9): WIMSE Workload Proof Tokens, draft-ietf-wimse-wpt-02
//!   ([`wpt`]), and WIMSE HTTP Message Signatures, draft-ietf-wimse-http-signature-07
//!   ([`wimse_sig`]), on an RFC 9421 implementation ([`httpsig`]) with RFC 9530 digests.
//! * Replay protection (AIMS AU-10, AU-11): a bounded replay cache shared by every one-time
//!   value ([`replay`]).
//! * Integration: a tower layer for servers ([`layer`]) and a reqwest signer for clients
//!   ([`client`]).
#![forbid(unsafe_code)]

pub mod caller;
pub mod client;
pub mod error;
pub mod httpsig;
pub mod layer;
pub mod mtls;
pub mod replay;
pub mod transport;
pub mod verified_cache;
pub mod wimse_sig;
pub mod wpt;

pub use error::AuthnError;
pub use replay::{ReplayCache, ReplayError, ReplayKind};
