//! # aims-outbound
//!
//! Every request AIMS sends to a URL someone else chose goes through here (RFC 7591 §5,
//! draft-ietf-oauth-client-id-metadata-document §6.5, SSF 1.0 §8.1.1, RFC 8935 §2): HTTPS only,
//! no redirects, a timeout, a size bound enforced while the body arrives, and no connection to
//! a special-use address unless the operator allows private networks.
#![forbid(unsafe_code)]

pub mod fetch;

pub use fetch::{FetchError, FetchSettings, Fetcher, guarded_client, is_special_use, read_limited};
