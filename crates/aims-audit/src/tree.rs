//! The log's Merkle tree in the store: a checkpointer that hashes new records into stored tiles
//! and signs a checkpoint (AIMS MO-7), and proofs read back from those tiles — a proof at any
//! size is one indexed query for a few dozen tiles.
//!
//! The tiles are C2SP tlog-tiles (height 8): a tile of level `L` holds the hashes of tree level
//! `8·L`, 256 to a full tile; level-0 tiles are the certified leaf hashes. A perfect subtree of
//! any level is hashed from at most 128 hashes of one tile, as a tlog-tiles client does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aims_store::{
    AUDIT_TILE_WIDTH, CheckpointRow, Lease, LeaseName, Store, StoreError, audit_tile_id,
};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, NoteError, NoteSigner};
use crate::leaf_hash;
use crate::merkle::{self, Frontier, Hash, Subtree};
use crate::stored;
use crate::tile_path::TilePath;

/// Records hashed into one checkpoint at most (a backlog takes several).
const MAX_LEAVES_PER_CHECKPOINT: u64 = 100_000;
/// Rows read per query while hashing.
const READ_CHUNK: u64 = 10_000;
/// Tree levels a tile spans (C2SP tlog-tiles: 2^8 = [`AUDIT_TILE_WIDTH`] hashes a tile).
const TILE_HEIGHT: u32 = 8;
/// The bytes of one hash in a tile.
const HASH_LEN: usize = std::mem::size_of::<Hash>();

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

/// Where a node's hash is found: the tile holding the nodes it is hashed from, and their span
/// in that tile (in hashes).
fn tile_span(s: Subtree) -> (i64, std::ops::Range<usize>) {
    let below = s.level % TILE_HEIGHT;
    let first = s.index << below;
    let at = (first % AUDIT_TILE_WIDTH) as usize;
    (
        audit_tile_id(s.level / TILE_HEIGHT, first / AUDIT_TILE_WIDTH),
        at..at + (1 << below),
    )
}

/// The rightmost tile of tile level `level` in a tree of `size` leaves and the bytes of hashes
/// it holds (0 when that level's tiles are all full); `None` when the level has no node yet.
fn right_tile(size: u64, level: u32) -> Option<(i64, usize)> {
    let nodes = size.checked_shr(level * TILE_HEIGHT).unwrap_or(0);
    (nodes > 0).then(|| {
        (
            audit_tile_id(level, nodes / AUDIT_TILE_WIDTH),
            (nodes % AUDIT_TILE_WIDTH) as usize * HASH_LEN,
        )
    })
}

/// The hashes of a stored tile, if it is whole hashes.
fn tile_hashes(tile: &[u8]) -> Option<Vec<Hash>> {
    let chunks = tile.chunks_exact(HASH_LEN);
    if !chunks.remainder().is_empty() {
        return None;
    }
    chunks.map(|c| Hash::try_from(c).ok()).collect()
}

/// The right edge of the tree with its partial tiles: what the checkpointer extends. Pushing
/// leaves completes nodes; those of every eighth level go into their tiles.
#[derive(Debug, Clone, Default)]
pub struct TiledFrontier {
    frontier: Frontier,
    /// Per tile level, the rightmost tile's hashes (fewer than a full tile).
    partial: Vec<Vec<u8>>,
    /// Per tile level, whether its partial tile grew since [`TiledFrontier::take_tiles`].
    grown: Vec<bool>,
    /// Tiles filled since [`TiledFrontier::take_tiles`].
    full: Vec<(i64, Vec<u8>)>,
}

impl TiledFrontier {
    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// §2.1.1: the tree head.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        for (subtree, hash) in self.frontier.push(leaf) {
            if subtree.level % TILE_HEIGHT != 0 {
                continue;
            }
            let level = (subtree.level / TILE_HEIGHT) as usize;
            if self.partial.len() <= level {
                self.partial.resize(level + 1, Vec::new());
                self.grown.resize(level + 1, false);
            }
            self.partial[level].extend_from_slice(&hash);
            self.grown[level] = true;
            if self.partial[level].len() == AUDIT_TILE_WIDTH as usize * HASH_LEN {
                let id = audit_tile_id(
                    subtree.level / TILE_HEIGHT,
                    subtree.index / AUDIT_TILE_WIDTH,
                );
                self.full
                    .push((id, std::mem::take(&mut self.partial[level])));
                self.grown[level] = false;
            }
        }
    }

    /// The tiles that changed since the last call, each whole (a partial one as far as it
    /// goes), by store id.
    pub fn take_tiles(&mut self) -> Vec<(i64, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.full);
        for (level, grown) in self.grown.iter_mut().enumerate() {
            if std::mem::take(grown)
                && !self.partial[level].is_empty()
                && let Some((id, _)) = right_tile(self.frontier.size(), level as u32)
            {
                out.push((id, self.partial[level].clone()));
            }
        }
        out
    }
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

    /// The tree hashes of `ranges`, each folded from its perfect subtrees, each of those
    /// hashed from its span of one stored tile (one query).
    async fn range_hashes(&self, ranges: &[std::ops::Range<u64>]) -> Result<Vec<Hash>, TreeError> {
        let parts: Vec<Vec<Subtree>> = ranges.iter().map(|r| merkle::subtrees(r.clone())).collect();
        let mut ids: Vec<i64> = parts.iter().flatten().map(|s| tile_span(*s).0).collect();
        ids.sort_unstable();
        ids.dedup();
        let tiles: HashMap<i64, Vec<Hash>> = self
            .store
            .audit_tiles(&ids)
            .await?
            .into_iter()
            .filter_map(|(id, tile)| Some((id, tile_hashes(&tile)?)))
            .collect();
        parts
            .iter()
            .map(|p| {
                let hashes = p
                    .iter()
                    .map(|s| {
                        let (id, span) = tile_span(*s);
                        tiles
                            .get(&id)
                            .and_then(|t| t.get(span))
                            .map(merkle::root)
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

    /// C2SP tlog-tiles: the hashes of tile `tile`, if the stored tree has them. A partial tile
    /// is the first `width` hashes of what is stored (tiles only grow, so that prefix never
    /// changes); a full tile is served only once it is full.
    pub async fn tile(&self, tile: TilePath) -> Result<Option<Vec<u8>>, TreeError> {
        // Store ids keep 48 bits of index: a larger one names no tile (and must not alias one).
        if tile.index >= 1 << 48 {
            return Ok(None);
        }
        let id = audit_tile_id(u32::from(tile.level), tile.index);
        let len = usize::from(tile.width) * HASH_LEN;
        Ok(self
            .store
            .audit_tiles(&[id])
            .await?
            .remove(&id)
            .filter(|t| t.len() % HASH_LEN == 0)
            .and_then(|mut t| {
                (t.len() >= len).then(|| {
                    t.truncate(len);
                    t
                })
            }))
    }

    /// The right edge of the stored tree of `size` leaves, with its partial tiles.
    async fn frontier(&self, size: u64) -> Result<TiledFrontier, TreeError> {
        let parts = merkle::subtrees(0..size);
        let ranges: Vec<_> = parts
            .iter()
            .map(|s| (s.index << s.level)..((s.index + 1) << s.level))
            .collect();
        let hashes = self.range_hashes(&ranges).await?;
        let missing = || TreeError::Missing(format!("frontier {size}"));
        let frontier = Frontier::new(size, &hashes).ok_or_else(missing)?;
        let widths: Vec<(i64, usize)> = (0..).map_while(|level| right_tile(size, level)).collect();
        let ids: Vec<i64> = widths
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(id, _)| *id)
            .collect();
        let stored = self.store.audit_tiles(&ids).await?;
        let partial = widths
            .iter()
            .map(|(id, width)| match width {
                0 => Ok(Vec::new()),
                w => stored
                    .get(id)
                    .and_then(|t| t.get(..*w))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(missing),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TiledFrontier {
            frontier,
            grown: vec![false; partial.len()],
            partial,
            full: Vec::new(),
        })
    }
}

/// Hashes appended records into the stored tree and signs checkpoints over it.
#[derive(Debug)]
pub struct Checkpointer {
    store: Store,
    signer: NoteSigner,
    origin: String,
    /// The right edge after the last step (read from the store when another replica moved on).
    frontier: tokio::sync::Mutex<TiledFrontier>,
}

impl Checkpointer {
    /// A checkpointer for the log named `origin`, signing with `signer` (named `origin` too).
    pub fn new(store: Store, signer: NoteSigner, origin: String) -> Self {
        Self {
            store,
            signer,
            origin,
            frontier: tokio::sync::Mutex::new(TiledFrontier::default()),
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
                frontier.push(leaf);
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
        self.store
            .put_audit_tree(&frontier.take_tiles(), &row)
            .await?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    /// C2SP tlog-tiles: whatever the batches, the tiles written are the leaves 256 to a tile,
    /// then the level-8 nodes (each the root of 256 leaves) 256 to a tile, partial tiles last
    /// and only grown; every node a proof needs is in one tile.
    /// The tiles a checkpointer writes for `n` leaves, taken at uneven batch ends.
    fn grown(n: u64) -> (Vec<Hash>, HashMap<i64, Vec<u8>>) {
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        let mut tree = TiledFrontier::default();
        let mut stored: HashMap<i64, Vec<u8>> = HashMap::new();
        for (i, l) in leaves.iter().enumerate() {
            tree.push(*l);
            if i % 997 == 0 || i % 65_536 == 65_535 || i + 1 == n as usize {
                for (id, tile) in tree.take_tiles() {
                    if let Some(old) = stored.get(&id) {
                        assert!(tile.len() > old.len(), "tile {id} only grows");
                        assert_eq!(tile[..old.len()], old[..]);
                    }
                    stored.insert(id, tile);
                }
            }
        }
        assert!(tree.take_tiles().is_empty(), "nothing changed since");
        assert_eq!(tree.root(), merkle::root(&leaves));
        (leaves, stored)
    }

    #[test]
    fn tiles_hold_every_eighth_level_whatever_the_batches() {
        let n = 70_000u64;
        let (leaves, stored) = grown(n);
        let level0: Vec<u8> = (0..n.div_ceil(256))
            .flat_map(|t| stored[&audit_tile_id(0, t)].clone())
            .collect();
        assert_eq!(level0, leaves.concat());
        let level8: Vec<Hash> = leaves.chunks_exact(256).map(merkle::root).collect();
        assert_eq!(level8.len(), 273);
        assert_eq!(stored[&audit_tile_id(1, 0)], level8[..256].concat());
        assert_eq!(stored[&audit_tile_id(1, 1)], level8[256..].concat());
        // 274 leaf tiles, 2 of level-8 nodes, 1 holding the one level-16 node.
        assert_eq!(stored.len(), 274 + 2 + 1);
        // Any perfect subtree is hashed from its span of one tile.
        for s in [
            Subtree {
                level: 0,
                index: 69_999,
            },
            Subtree {
                level: 3,
                index: 17,
            },
            Subtree {
                level: 7,
                index: 545,
            },
            Subtree {
                level: 8,
                index: 272,
            },
            Subtree {
                level: 12,
                index: 3,
            },
            Subtree {
                level: 16,
                index: 0,
            },
        ] {
            let (id, span) = tile_span(s);
            let tile = tile_hashes(&stored[&id]).unwrap();
            let first = (s.index << s.level) as usize;
            assert_eq!(
                merkle::root(&tile[span]),
                merkle::root(&leaves[first..first + (1 << s.level)]),
                "{s:?}"
            );
        }
        assert_eq!(tile_hashes(&[0; 33]), None);
    }

    /// Tiles as a C2SP tlog-tiles server serves them: a partial tile is a prefix of the stored one.
    struct Served<'a>(&'a HashMap<i64, Vec<u8>>);

    impl tlog_tiles::TileReader for Served<'_> {
        fn height(&self) -> u8 {
            8
        }
        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::Tile],
        ) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
            tiles
                .iter()
                .map(|t| {
                    let id = audit_tile_id(u32::from(t.level()), t.level_index());
                    let len = t.width() as usize * HASH_LEN;
                    self.0
                        .get(&id)
                        .and_then(|tile| tile.get(..len))
                        .map(<[u8]>::to_vec)
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect()
        }
        fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
    }

    /// An implementation we did not write (Go's sumdb `tlog`, ported) reads our tiles: it
    /// authenticates them against the tree hash, proves records from them and checks the
    /// proofs, at the full size and at a smaller one whose right tiles are partial prefixes;
    /// one hash changed in a stored tile and it refuses.
    #[test]
    fn an_independent_tlog_client_proves_records_from_the_tiles() {
        use tlog_tiles::{Hash as TlogHash, TileHashReader, check_record, check_tree};
        let n = 70_000u64;
        let (leaves, mut stored) = grown(n);
        for size in [n, 65_536 + 300, 1_000] {
            let root = TlogHash(merkle::root(&leaves[..size as usize]));
            let tiles = Served(&stored);
            let reader = TileHashReader::new(size, root, &tiles);
            assert_eq!(tlog_tiles::tree_hash(size, &reader).unwrap(), root);
            for i in [0, 1, 255, 256, size / 2, size - 1] {
                let proof = tlog_tiles::prove_record(size, i, &reader).unwrap();
                check_record(&proof, size, root, i, TlogHash(leaves[i as usize])).unwrap();
                assert!(check_record(&proof, size, root, i, TlogHash(leaf(n + 1))).is_err());
            }
            let old = 999.min(size - 1);
            let proof = tlog_tiles::prove_tree(size, old, &reader).unwrap();
            let old_root = TlogHash(merkle::root(&leaves[..old as usize]));
            check_tree(&proof, size, root, old, old_root).unwrap();
        }
        // A hash a proof is built from, changed in a full tile: the proof no longer checks
        // (sumdb's reader authenticates some full tiles only through the final check).
        let root = TlogHash(merkle::root(&leaves));
        let changed = |stored: &HashMap<i64, Vec<u8>>, at: u64| {
            let tiles = Served(stored);
            let reader = TileHashReader::new(n, root, &tiles);
            tlog_tiles::prove_record(n, at, &reader).map_or(true, |p| {
                check_record(&p, n, root, at, TlogHash(leaves[at as usize])).is_err()
            })
        };
        assert!(!changed(&stored, 100 * 256 + 1));
        stored.get_mut(&audit_tile_id(0, 100)).unwrap()[0] ^= 1;
        assert!(changed(&stored, 100 * 256 + 1));
        // One in the right edge's partial tile: the tiles no longer give the tree hash.
        stored.get_mut(&audit_tile_id(0, 273)).unwrap()[0] ^= 1;
        let tiles = Served(&stored);
        let reader = TileHashReader::new(n, root, &tiles);
        assert!(tlog_tiles::tree_hash(n, &reader).is_err());
    }
}
