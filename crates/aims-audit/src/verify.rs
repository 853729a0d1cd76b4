//! Offline verification of a whole log against a signed checkpoint (AIMS MO-7): every entry
//! present, in order, its bytes hashing to the leaf the checkpoint certified, and the certified
//! leaves reproducing the signed root. The first bad index is named.

use crate::checkpoint::{Checkpoint, NoteError, NoteVerifier};
use crate::export::LogEntry;
use crate::leaf_hash;
use crate::merkle::{Frontier, Hash};

/// Why a log failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The checkpoint is not validly signed by the log's key.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// An entry is missing, out of place, or not what was certified.
    #[error("entry {index}: {problem}")]
    Bad {
        /// The first bad index.
        index: u64,
        /// What is wrong there.
        problem: String,
    },
    /// Every record matches its listed leaf hash, but those do not reproduce the signed root:
    /// the certified hashes themselves were rewritten.
    #[error("the log's leaf hashes do not reproduce the checkpoint's root")]
    Root,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The checkpoint checked against.
    pub checkpoint: Checkpoint,
    /// Entries read.
    pub entries: u64,
}

/// Checks a log entry by entry, in order, against one signed checkpoint.
#[derive(Debug)]
pub struct LogVerifier {
    checkpoint: Checkpoint,
    frontier: Frontier,
    next: u64,
}

fn bad(index: u64, problem: impl Into<String>) -> VerifyError {
    VerifyError::Bad {
        index,
        problem: problem.into(),
    }
}

fn parse_hash(h: &str) -> Option<Hash> {
    hex::decode(h).ok()?.try_into().ok()
}

impl LogVerifier {
    /// Opens the signed checkpoint `note` with `verifier`.
    pub fn new(note: &str, verifier: &NoteVerifier) -> Result<Self, VerifyError> {
        Ok(Self {
            checkpoint: Checkpoint::open(note, verifier)?,
            frontier: Frontier::default(),
            next: 0,
        })
    }

    /// Checks the next entry.
    pub fn check(&mut self, e: &LogEntry) -> Result<(), VerifyError> {
        let at = self.next;
        if e.index > at {
            return Err(bad(at, "missing"));
        }
        if e.index < at {
            return Err(bad(e.index, "duplicated or out of order"));
        }
        let leaf = leaf_hash(e.record.as_bytes());
        if at < self.checkpoint.size {
            let certified = e
                .certified_hash
                .as_deref()
                .and_then(parse_hash)
                .ok_or_else(|| bad(at, "has no certified leaf hash"))?;
            if leaf != certified {
                return Err(bad(
                    at,
                    "record altered: its bytes do not hash to the certified leaf",
                ));
            }
            self.frontier.push(certified);
        } else if parse_hash(&e.leaf_hash) != Some(leaf) {
            // Past the checkpoint only the append-time hash vouches for the record.
            return Err(bad(
                at,
                "record altered: its bytes do not hash to its leaf hash",
            ));
        }
        self.next += 1;
        Ok(())
    }

    /// Ends the check: every certified entry seen and the root reproduced.
    pub fn finish(self) -> Result<Verified, VerifyError> {
        if self.next < self.checkpoint.size {
            return Err(bad(self.next, "missing"));
        }
        if self.frontier.root() != self.checkpoint.root {
            return Err(VerifyError::Root);
        }
        Ok(Verified {
            checkpoint: self.checkpoint,
            entries: self.next,
        })
    }
}
