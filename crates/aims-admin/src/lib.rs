//! The AIMS admin API: its JSON request and response types ([`api`]) and the client the CLI
//! uses ([`client`]), over the server's 0600 Unix socket (as `spire-server`'s CLI speaks to its
//! admin socket). The server serves it; both sides use these types.
#![forbid(unsafe_code)]

pub mod api;
pub mod client;

pub use client::{AdminClient, AdminError};
