//! # aims-audit
//!
//! The AIMS audit log (AIMS §11, MO-1, MO-6…MO-8, MO-11): every decision, issuance and
//! remediation as an [`AuditRecord`] of plain fields (the log knows no policy types; the PDP's
//! verdicts become records in `aims-policy`), appended to the
//! store in order and durably — an append returns only after its transaction committed, and
//! concurrent appends share one commit (group commit). Each record is an RFC 9162 Merkle tree
//! leaf: a [`Checkpointer`] hashes new records into stored subtrees and signs C2SP
//! checkpoints; [`TreeReader`] serves inclusion and consistency proofs and the tree's C2SP
//! tlog-tiles ([`tile_path`]); [`LogVerifier`] checks
//! a whole exported log offline; [`render_trace`] rebuilds a task's execution chain.
#![forbid(unsafe_code)]

pub mod api;
mod checkpoint;
mod export;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "store")]
mod log;
pub mod merkle;
mod record;
#[cfg(feature = "store")]
mod stored;
pub mod tile_path;
mod trace;
#[cfg(feature = "store")]
mod tree;
mod verify;

pub use api::RECORDS_PATH;
pub use checkpoint::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use export::{LogEntry, otlp_logs};
#[cfg(feature = "store")]
pub use log::{AppendError, Appended, AuditLog};
pub use merkle::leaf_hash;
pub use record::{AuditMode, AuditRecord, Outcome, RecordKind};
#[cfg(feature = "store")]
pub use stored::{read_entries, read_task};
pub use trace::render_trace;
#[cfg(feature = "store")]
pub use tree::{Checkpointer, TiledFrontier, TreeError, TreeReader};
pub use verify::{LogVerifier, Verified, VerifyError};
