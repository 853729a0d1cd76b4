//! # aims-policy
//!
//! The AIMS policy decision point (AIMS §12, PO-1…PO-3): Cedar policies over the AIMS schema
//! (`cedar/aims.cedarschema`), in versioned policy sets that are validated against the schema
//! before they go live and swapped atomically, so that the authorization server and every
//! gateway decide at the same version and every decision names it. The OpenID AuthZEN
//! Authorization API 1.0 types expose the same decisions to other enforcement points.
#![forbid(unsafe_code)]

pub mod application;
pub mod authzen;
mod error;
#[cfg(feature = "server")]
mod followers;
#[cfg(feature = "server")]
pub mod http;
pub mod pdp;
pub mod policy_set;
pub mod query;
mod record;
mod schema;
#[cfg(feature = "server")]
pub mod service;

pub use application::{AppEntity, AppQuery, Application};
pub use error::PolicyError;

/// Where gateways fetch the policy set in force, over mutual TLS (AIMS's own: no standard
/// distributes Cedar policy). The server serves it.
pub const CURRENT_POLICY_PATH: &str = "/policy/v1/current";
pub use pdp::{Pdp, Verdict};
pub use policy_set::{CompiledPolicy, PolicyDiff, PolicyDocument};
pub use query::{Action, Detail, Facts, Principal, Query, Target};
pub use schema::SCHEMA_TEXT;

/// The policy set a new server starts with (version 1).
pub const DEFAULT_POLICY: &str = include_str!("../cedar/default.cedar");
