//! The registration change log (issue 18, incremental sync): what each move of the
//! `registration` counter changed, so that a replica, and from it an agent, can catch up on the
//! changes since the last one it applied instead of re-listing every entry (SPIRE's full entry
//! scans on every sync).
//!
//! The counter's row is locked by the writing transaction until it commits, so sequence
//! numbers commit in order and without gaps: a reader that has applied every change up to `N`
//! reads `seq > N` and misses nothing. A change names what moved (an entry, an agent); the
//! reader takes its current row in the same statement, so replaying a change twice converges.

use aims_core::SpiffeId;
use sqlx::Row as _;

use crate::entries::{RegistrationEntry, row_to_entry};
use crate::{Counter, Store, StoreError, now_unix};

/// How many of the newest changes the log keeps; a reader further behind reloads the entries.
pub const MAX_RETAINED_CHANGES: i64 = 100_000;
/// Pruning runs on every this many changes, not on each.
const PRUNE_EVERY: i64 = 1024;

/// One change of the registration state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationChange {
    /// The entry `id` was created, updated or deleted: `entry` is its current row, `None` once
    /// deleted.
    Entry {
        /// The entry's id.
        id: String,
        /// Its row as the read found it.
        entry: Option<RegistrationEntry>,
    },
    /// The agent was banned or evicted: its streams must re-check it.
    Node(SpiffeId),
}

/// The changes after a sequence number, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationChanges {
    /// The sequence number of the last change read (the one asked from if there were none).
    pub sequence: i64,
    /// The changes, oldest first.
    pub changes: Vec<RegistrationChange>,
    /// Whether more changes follow than `limit` allowed.
    pub more: bool,
}

/// What the store can say about the changes after a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangesSince {
    /// Every change after it, or the first `limit` of them.
    Changes(RegistrationChanges),
    /// The log no longer reaches back that far: reload with [`Store::registration_snapshot`].
    Gone,
}

impl Store {
    /// Records, in the writing transaction, that the change now at counter value `seq` moved
    /// the entry `entry_id` or the agent `node_id`.
    pub(crate) async fn record_registration_change(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        seq: i64,
        entry_id: Option<&str>,
        node_id: Option<&SpiffeId>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO registration_changes (seq, entry_id, node_id, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(seq)
        .bind(entry_id)
        .bind(node_id.map(SpiffeId::as_str))
        .bind(now_unix())
        .execute(&mut **tx)
        .await?;
        if seq % PRUNE_EVERY == 0 {
            sqlx::query("DELETE FROM registration_changes WHERE seq <= $1")
                .bind(seq - MAX_RETAINED_CHANGES)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Moves the `registration` counter and records what moved it, in `tx`.
    pub(crate) async fn registration_changed(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        entry_id: Option<&str>,
        node_id: Option<&SpiffeId>,
    ) -> Result<i64, StoreError> {
        let seq = Self::bump(&mut **tx, Counter::Registration).await?;
        Self::record_registration_change(tx, seq, entry_id, node_id).await?;
        Ok(seq)
    }

    /// The changes after `since`, oldest first, at most `limit` of them; one statement.
    pub async fn registration_changes_since(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<ChangesSince, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT c.seq, c.entry_id, c.node_id, ",
            crate::entries::entry_columns!(),
            " FROM registration_changes c LEFT JOIN registration_entries e ON e.id = c.entry_id \
             WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
        ))
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut sequence = since;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            if seq != sequence + 1 {
                // Pruned (or never recorded, before this log existed): a gap is not "nothing".
                return Ok(ChangesSince::Gone);
            }
            sequence = seq;
            let entry_id: Option<String> = row.try_get("entry_id")?;
            let node_id: Option<String> = row.try_get("node_id")?;
            changes.push(match (entry_id, node_id) {
                (Some(id), _) => {
                    let present: Option<String> = row.try_get("id")?;
                    RegistrationChange::Entry {
                        entry: present.map(|_| row_to_entry(row)).transpose()?,
                        id,
                    }
                }
                (None, Some(node)) => RegistrationChange::Node(
                    SpiffeId::parse(&node)
                        .map_err(|e| StoreError::Invalid(format!("stored change node ID: {e}")))?,
                ),
                (None, None) => {
                    return Err(StoreError::Invalid(format!("change {seq} names nothing")));
                }
            });
        }
        Ok(ChangesSince::Changes(RegistrationChanges {
            sequence,
            more: rows.len() >= usize::try_from(limit).unwrap_or(usize::MAX),
            changes,
        }))
    }

    /// Every entry and a sequence number to read changes after: the entries reflect at least
    /// every change up to it (replaying a later change onto them converges).
    pub async fn registration_snapshot(&self) -> Result<(i64, Vec<RegistrationEntry>), StoreError> {
        let sequence = self.counter(Counter::Registration).await?;
        let entries = self.list_entries(&crate::EntryFilter::default()).await?;
        Ok((sequence, entries))
    }
}
