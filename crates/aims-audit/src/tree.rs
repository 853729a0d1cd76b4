//! The log's Merkle tree in the store: a checkpointer that hashes new records into stored
//! perfect subtrees and signs a checkpoint (AIMS MO-7), and proofs read back from those
//! subtrees — a proof at any size is one indexed query for a few dozen hashes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aims_store::{CheckpointRow, Lease, LeaseName, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, NoteError, NoteSigner};
use crate::leaf_hash;
use crate::merkle::{self, Frontier, Hash, Subtree};
use crate::stored;

/// Records hashed into one checkpoint at most (a backlog takes several).
const MAX_LEAVES_PER_CHECKPOINT: u64 = 100_000;
/// Rows read per query while hashing.
const READ_CHUNK: u64 = 10_000;

/// Why the tree could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored hash is missing or malformed: the tree does not cover what was asked.
    #[error("the audit tree has no hash for {0}")]
    Missing(String),
    /// A record no longer decodes or matches the leaf hash it was appended with, or an index
    /// is missing: nothing past it is signed (fail closed).
    #[error("audit record {index} was altered or removed after it was appended")]
    Tampered {
        /// The first bad index.
        index: u64,
    },
    /// The proof asked for is outside the tree.
    #[error("no proof for {0}")]
    OutOfRange(String),
    /// Signing failed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// The store key of a subtree's hash: `level · 2^48 + index`.
pub fn node_id(s: Subtree) -> i64 {
    // Levels stay below 64 and indexes below 2^48 (far beyond any log), so this fits an i64.
    ((i64::from(s.level)) << 48) | (s.index as i64 & ((1 << 48) - 1))
}

/// Reads the stored tree.
#[derive(Debug, Clone)]
pub struct TreeReader {
    store: Store,
}

impl TreeReader {
    /// A reader over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The tree hashes of `ranges`, each folded from its stored subtrees (one query).
    async fn range_hashes(&self, ranges: &[std::ops::Range<u64>]) -> Result<Vec<Hash>, TreeError> {
        let parts: Vec<Vec<Subtree>> = ranges.iter().map(|r| merkle::subtrees(r.clone())).collect();
        let mut ids: Vec<i64> = parts.iter().flatten().map(|s| node_id(*s)).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored: HashMap<i64, Vec<u8>> = self.store.audit_nodes(&ids).await?;
        parts
            .iter()
            .map(|p| {
                let hashes = p
                    .iter()
                    .map(|s| {
                        stored
                            .get(&node_id(*s))
                            .and_then(|h| Hash::try_from(h.as_slice()).ok())
                            .ok_or_else(|| TreeError::Missing(format!("{s:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(merkle::fold(&hashes))
            })
            .collect()
    }

    /// The certified leaf hash at `index` and its RFC 9162 §2.1.3 inclusion proof in the tree
    /// of `size` leaves.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), TreeError> {
        let ranges = merkle::inclusion_ranges(index, size)
            .ok_or_else(|| TreeError::OutOfRange(format!("leaf {index} in a tree of {size}")))?;
        let mut all = Vec::with_capacity(ranges.len() + 1);
        all.push(index..index + 1);
        all.extend(ranges);
        let mut hashes = self.range_hashes(&all).await?;
        let leaf = hashes.remove(0);
        Ok((leaf, hashes))
    }

    /// The RFC 9162 §2.1.4 consistency proof between the trees of `m` and `n` leaves.
    pub async fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, TreeError> {
        let ranges = merkle::consistency_ranges(m, n)
            .ok_or_else(|| TreeError::OutOfRange(format!("from {m} to {n}")))?;
        self.range_hashes(&ranges).await
    }

    /// The right edge of the stored tree of `size` leaves.
    async fn frontier(&self, size: u64) -> Result<Frontier, TreeError> {
        let parts = merkle::subtrees(0..size);
        let ranges: Vec<_> = parts
            .iter()
            .map(|s| (s.index << s.level)..((s.index + 1) << s.level))
            .collect();
        let hashes = self.range_hashes(&ranges).await?;
        Frontier::new(size, &hashes).ok_or_else(|| TreeError::Missing(format!("frontier {size}")))
    }
}

/// Hashes appended records into the stored tree and signs checkpoints over it.
#[derive(Debug)]
pub struct Checkpointer {
    store: Store,
    signer: NoteSigner,
    origin: String,
    /// The right edge after the last step (read from the store when another replica moved on).
    frontier: tokio::sync::Mutex<Frontier>,
}

impl Checkpointer {
    /// A checkpointer for the log named `origin`, signing with `signer` (named `origin` too).
    pub fn new(store: Store, signer: NoteSigner, origin: String) -> Self {
        Self {
            store,
            signer,
            origin,
            frontier: tokio::sync::Mutex::new(Frontier::default()),
        }
    }

    /// Hashes what was appended since the last checkpoint (up to a bound) and signs a
    /// checkpoint for it; `None` when there was nothing new.
    pub async fn step(&self, now_ms: i64) -> Result<Option<CheckpointRow>, TreeError> {
        let last = self.store.latest_audit_checkpoint().await?;
        let from = last.as_ref().map_or(0, |c| c.size);
        let len = self.store.audit_len().await?;
        if len <= from {
            return Ok(None);
        }
        let to = len.min(from + MAX_LEAVES_PER_CHECKPOINT);
        let mut cached = self.frontier.lock().await;
        let mut frontier = if cached.size() == from {
            cached.clone()
        } else {
            TreeReader::new(self.store.clone()).frontier(from).await?
        };
        let mut nodes = Vec::new();
        let mut at = from;
        while at < to {
            let rows = self.store.audit_rows(at, READ_CHUNK.min(to - at)).await?;
            if rows.is_empty() {
                return Err(TreeError::Tampered { index: at });
            }
            for (row, json) in stored::rebuild(&self.store, rows).await? {
                // The record's rebuilt bytes, not the stored hash, go into the tree: a gap, or a
                // record that no longer decodes or no longer hashes to its append-time leaf, is
                // refused here, before anything signs it.
                let leaf = match json {
                    Ok(json) if row.idx == at => leaf_hash(json.as_bytes()),
                    _ => return Err(TreeError::Tampered { index: at }),
                };
                if leaf[..] != row.leaf_hash[..] {
                    return Err(TreeError::Tampered { index: at });
                }
                for (subtree, hash) in frontier.push(leaf) {
                    nodes.push((node_id(subtree), hash));
                }
                at += 1;
            }
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: to,
            root: frontier.root(),
        };
        let row = CheckpointRow {
            size: to,
            note: self.signer.sign(&checkpoint.to_text())?,
            created_at: now_ms,
        };
        self.store.put_audit_tree(&nodes, &row).await?;
        *cached = frontier;
        Ok(Some(row))
    }

    /// Runs [`Checkpointer::step`] every `interval` (a fixed rate: a step that takes long is
    /// followed by the next at once, so checkpoints stay at most `interval` apart while records
    /// arrive) until `shutdown`; a backlog larger than one step is worked off without waiting;
    /// a failure (a tampered record) is logged and retried, never skipped.
    ///
    /// Replicas sharing a store take turns by the [`LeaseName::AuditSequencer`] lease: its
    /// holder signs, the others stand by and take it when the holder dies. A standby that sees
    /// records left uncovered for [`STANDBY_AFTER`] by a holder that still has the lease (cut
    /// off, not dead) signs too: steps are deterministic (the same tree, and Ed25519 signatures
    /// of the same checkpoint with the log's one key are the same bytes), so two signers write
    /// the same rows and the log cannot fork.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = Turn::new(&self.store);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !turn.ours(&self.store).await {
                continue;
            }
            loop {
                let now_ms = aims_core::unix_millis(std::time::SystemTime::now());
                match self.step(now_ms).await {
                    Ok(Some(row)) => {
                        turn.signed = Some(row.size);
                        tracing::debug!(size = row.size, "audit checkpoint signed");
                        metrics::gauge!("aims_audit_checkpoint_size").set(row.size as f64);
                        // A backlog beyond one bounded step is worked off at once; otherwise the
                        // next tick takes what arrives meanwhile.
                        let len = self.store.audit_len().await.unwrap_or(0);
                        if len < row.size + MAX_LEAVES_PER_CHECKPOINT {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        metrics::counter!("aims_audit_checkpoint_failures_total").increment(1);
                        tracing::error!(error = %e, "audit checkpoint failed");
                        break;
                    }
                }
            }
        }
    }
}

/// How long a standby lets records stay uncovered by a lease holder that makes no progress
/// before it signs them itself.
pub const STANDBY_AFTER: Duration = Duration::from_secs(5);

/// Whose turn it is to sign: this replica's while it holds the sequencer lease.
#[derive(Debug)]
struct Turn {
    lease: Lease,
    /// Whether this replica held the lease at the last tick.
    holding: bool,
    /// A standby's view of the holder: the checkpoint size it last saw, and since when.
    seen: Option<(u64, Instant)>,
    /// The size of the last checkpoint this replica signed.
    signed: Option<u64>,
}

impl Turn {
    fn new(store: &Store) -> Self {
        Self {
            lease: store.lease(LeaseName::AuditSequencer),
            holding: false,
            seen: None,
            signed: None,
        }
    }

    /// Whether this replica signs at this tick.
    async fn ours(&mut self, store: &Store) -> bool {
        let holds = match self.lease.hold().await {
            Ok(holds) => holds,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask for the audit sequencer lease");
                false
            }
        };
        if holds != self.holding {
            self.holding = holds;
            metrics::gauge!("aims_audit_sequencer").set(if holds { 1.0 } else { 0.0 });
            if holds {
                tracing::info!("this replica now signs the audit log's checkpoints");
                self.seen = None;
            } else {
                tracing::warn!("lost the audit sequencer lease (its connection failed)");
            }
        }
        holds || self.holder_stalled(store).await
    }

    /// Whether records have waited [`STANDBY_AFTER`] with no new checkpoint from the holder.
    async fn holder_stalled(&mut self, store: &Store) -> bool {
        let (Ok(latest), Ok(len)) = (
            store.latest_audit_checkpoint().await,
            store.audit_len().await,
        ) else {
            return false;
        };
        let size = latest.map_or(0, |c| c.size);
        if len <= size {
            self.seen = None;
            return false;
        }
        if self.signed == Some(size) {
            // The newest checkpoint is still the one this standby signed: the holder is silent.
            return true;
        }
        match self.seen {
            Some((seen, since)) if seen == size => {
                let stalled = since.elapsed() >= STANDBY_AFTER;
                if stalled {
                    tracing::warn!(
                        size,
                        "the audit sequencer's holder signed nothing for {STANDBY_AFTER:?}; signing here too"
                    );
                }
                stalled
            }
            _ => {
                self.seen = Some((size, Instant::now()));
                false
            }
        }
    }
}
