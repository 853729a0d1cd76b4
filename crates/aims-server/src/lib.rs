//! # aims-server
//!
//! The trust-domain server of AIMS: it holds the CA and issues credentials (draft-ietf-wimse-aims
//! §7, §8), publishes the trust bundle on the SPIFFE bundle endpoint, and serves the local admin
//! API on a Unix socket. Several replicas may share one PostgreSQL store; each keeps its own CA
//! slots and all publish one bundle.
#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod server;
pub mod settings;
pub mod tls;
pub mod token_policy;

pub use error::ServerError;
pub use server::{RunningServer, ensure_private_dir, start, url_host};
pub use settings::{ServerSettings, TlsFiles, UpstreamFiles};
