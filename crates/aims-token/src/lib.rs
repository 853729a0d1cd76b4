//! The AIMS token core: what a party that issues or checks AIMS access tokens needs, and no
//! more — claims (RFC 9068, transaction tokens), reading a token the authorization server
//! signed, transaction tokens signed at the trust domain's edge, the published token keys, the sender constraint a presenter must prove (RFC 8705
//! certificate binding, RFC 9449 DPoP), OAuth error codes and the wire names.
//!
//! The authorization server (`aims-oauth`) issues with it; the gateway, a resource server
//! beside every tool, checks with it and so links no authorization server, store or people
//! service (AIMS AZ-7, AZ-9).

#![forbid(unsafe_code)]

pub mod claims;
pub mod dpop;
pub mod error;
pub mod keys;
pub mod presentation;
pub mod txn;
pub mod wire;

pub use error::{ErrorCode, TokenError};
