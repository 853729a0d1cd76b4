//! # aims-audit
//!
//! The AIMS audit log (AIMS §11, MO-1, MO-8): every decision (of the PDP: [`AuditRecord::decision`]),
//! issuance and remediation as an
//! [`AuditRecord`], appended to the store in order and durably — an append returns only after
//! its transaction committed, and concurrent appends share one commit (group commit). Each
//! record is an RFC 9162 Merkle tree leaf: its exact bytes are stored with their leaf hash, so
//! signed checkpoints and inclusion and consistency proofs can be built over the log.
#![forbid(unsafe_code)]

mod log;
pub mod merkle;
mod record;

pub use log::{AppendError, Appended, AuditLog, leaf_hash};
pub use record::{AuditRecord, Outcome, RecordKind};
