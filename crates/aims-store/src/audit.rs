//! Audit log rows (AIMS MO-1): appended in batches, each batch one transaction that numbers its
//! rows after the last one. Several replicas on PostgreSQL serialize their appends with a table
//! lock, so indexes never collide or leave gaps. Beside them: the Merkle tree's hashes in C2SP
//! tlog-tiles (level-0 tiles are the leaf hashes a checkpoint certified), the signed checkpoints
//! and the strings records share (the audit crate owns their meaning and the record's encoding).

use std::collections::HashMap;

use sqlx::Row as _;

use crate::{Backend, Store, StoreError};

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the log, from 0.
    pub idx: u64,
    /// The RFC 9162 leaf hash of the record's bytes, computed at its append.
    pub leaf_hash: Vec<u8>,
    /// The record as stored (the audit crate's encoding).
    pub record: String,
    /// When it was appended, Unix milliseconds.
    pub appended_at: i64,
    /// The task's correlation id, if the record has one.
    pub correlation_id: Option<String>,
    /// The leaf hash a checkpoint certified for this index (from its level-0 tile), once one
    /// covers it.
    pub certified_hash: Option<Vec<u8>>,
}

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRow {
    /// The RFC 9162 leaf hash of the record's bytes.
    pub leaf_hash: [u8; 32],
    /// The record as stored (the audit crate's encoding).
    pub record: String,
    /// The task's correlation id, for lookups.
    pub correlation_id: Option<String>,
}

/// What the audit log takes in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditStorage {
    /// Records in the log.
    pub records: u64,
    /// Bytes of the log's tables (records, shared strings, tree nodes, checkpoints) and their
    /// indexes.
    pub bytes: u64,
}

/// The audit log's tables.
const AUDIT_TABLES: &str = "'audit_log', 'audit_strings', 'audit_tiles', 'audit_checkpoints'";

/// Hashes in a full tile (C2SP tlog-tiles: tiles of height 8). A tile of level `L` holds the
/// hashes of tree level `8·L`, nodes `256·N` onwards, 32 bytes each, concatenated; the
/// rightmost tile of a level is partial (fewer hashes) until its level grows past it.
pub const AUDIT_TILE_WIDTH: u64 = 256;

/// The bytes of one hash in a tile.
const HASH_LEN: usize = 32;

/// The store key of the tile of `level`, `index`: `level · 2^48 + index` (levels stay below 8
/// and indexes below 2^48, far beyond any log, so it fits an i64).
pub fn audit_tile_id(level: u32, index: u64) -> i64 {
    (i64::from(level) << 48) | (index as i64 & ((1 << 48) - 1))
}

/// A stored signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The tree size it signs.
    pub size: u64,
    /// The signed note.
    pub note: String,
    /// When it was signed, Unix milliseconds.
    pub created_at: i64,
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("audit index {v}")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Invalid(format!("audit index {v}")))
}

/// Multi-row `INSERT … VALUES ($1, $2 …), (…)` text for `rows` rows of `width` values.
fn values_sql(head: &str, rows: usize, width: usize, tail: &str) -> sqlx::AssertSqlSafe<String> {
    let tuples: Vec<String> = (0..rows)
        .map(|i| format!("({})", crate::placeholders(i * width + 1, width)))
        .collect();
    sqlx::AssertSqlSafe(format!("{head}{}{tail}", tuples.join(",")))
}

fn audit_row(r: &sqlx::any::AnyRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        idx: to_u64(r.try_get("idx")?)?,
        leaf_hash: r.try_get("leaf_hash")?,
        record: r.try_get("record")?,
        appended_at: r.try_get("appended_at")?,
        correlation_id: r.try_get("correlation_id")?,
        certified_hash: None,
    })
}

const AUDIT_SELECT: &str =
    "SELECT l.idx, l.leaf_hash, l.record, l.appended_at, l.correlation_id FROM audit_log l";

/// Rows per INSERT statement. Small on purpose: SQLite names a statement's parameters in a
/// list that sqlx searches once per parameter, so binding costs grow with the square of a
/// statement's width (issue 17: with 400-row statements, binding took about 3 % of the gateway's
/// core).
const ROWS_PER_STATEMENT: usize = 64;

impl Store {
    /// Appends `rows` in one durable transaction and returns the index of the first.
    pub async fn append_audit(
        &self,
        rows: &[NewAuditRow],
        appended_at: i64,
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let first = self.append_rows(&mut tx, rows, appended_at).await?;
        tx.commit().await?;
        Ok(first)
    }

    /// Appends in one durable transaction the rows `rows` makes once `strings` are in the
    /// log's shared strings: the strings not there yet are added in the same transaction (one
    /// commit for both; a failed append leaves none of them behind), and `rows` gets the ids of
    /// all of `strings` (what another replica added meanwhile is kept; values are compared
    /// exactly). Returns the first row's index and those ids.
    pub async fn append_audit_with_strings(
        &self,
        strings: &[&str],
        rows: impl FnOnce(&HashMap<String, i64>) -> Result<Vec<NewAuditRow>, StoreError>,
        appended_at: i64,
    ) -> Result<(u64, HashMap<String, i64>), StoreError> {
        // Sorted, so concurrent writers on PostgreSQL wait for each other's new strings in one
        // order (no deadlock) before the log's table lock.
        let mut strings = strings.to_vec();
        strings.sort_unstable();
        strings.dedup();
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        let ids = Self::intern_strings(&mut tx, &strings).await?;
        let first = self.append_rows(&mut tx, &rows(&ids)?, appended_at).await?;
        tx.commit().await?;
        Ok((first, ids))
    }

    /// Numbers `rows` after the last row and inserts them in `tx`; the index of the first.
    async fn append_rows(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        rows: &[NewAuditRow],
        appended_at: i64,
    ) -> Result<u64, StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_log")
            .fetch_one(&mut **tx)
            .await?;
        let mut idx = next;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(values_sql(
                "INSERT INTO audit_log (idx, leaf_hash, record, appended_at, correlation_id) VALUES ",
                chunk.len(),
                5,
                "",
            ));
            for row in chunk {
                q = q
                    .bind(idx)
                    .bind(row.leaf_hash.to_vec())
                    .bind(&row.record)
                    .bind(appended_at)
                    .bind(&row.correlation_id);
                idx += 1;
            }
            q.execute(&mut **tx).await?;
        }
        u64::try_from(next).map_err(|_| StoreError::Invalid(format!("audit index {next}")))
    }

    /// How many records the log holds (one past the highest index).
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        // The highest index, not a count: an index lookup at any size.
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Invalid(format!("audit length {n}")))
    }

    /// Rows `from..from+limit`, in order.
    pub async fn audit_rows(&self, from: u64, limit: u64) -> Result<Vec<AuditRow>, StoreError> {
        let sql = format!("{AUDIT_SELECT} WHERE l.idx >= $1 ORDER BY l.idx LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(from)?)
            .bind(to_i64(limit)?)
            .fetch_all(&self.pool)
            .await?;
        self.certified(rows.iter().map(audit_row).collect::<Result<_, _>>()?)
            .await
    }

    /// The rows of one task (AIMS MO-11), in log order, at most `limit`.
    pub async fn audit_by_correlation(
        &self,
        correlation_id: &str,
        limit: u64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql = format!("{AUDIT_SELECT} WHERE l.correlation_id = $1 ORDER BY l.idx LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(correlation_id)
            .bind(to_i64(limit)?)
            .fetch_all(&self.pool)
            .await?;
        self.certified(rows.iter().map(audit_row).collect::<Result<_, _>>()?)
            .await
    }

    /// `rows` (in log order) with the leaf hashes a checkpoint certified for them, from their
    /// level-0 tiles, read a statement's worth at a time: a task's rows can fall in thousands
    /// of tiles of 8 KB each.
    async fn certified(&self, mut rows: Vec<AuditRow>) -> Result<Vec<AuditRow>, StoreError> {
        let tile_of = |idx: u64| audit_tile_id(0, idx / AUDIT_TILE_WIDTH);
        let mut ids: Vec<i64> = rows.iter().map(|r| tile_of(r.idx)).collect();
        ids.dedup();
        let mut rest = rows.as_mut_slice();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let tiles = self.audit_tiles(chunk).await?;
            let last = chunk.last().copied().unwrap_or(i64::MIN);
            let n = rest.iter().take_while(|r| tile_of(r.idx) <= last).count();
            let (these, later) = rest.split_at_mut(n);
            for row in these {
                let at = (row.idx % AUDIT_TILE_WIDTH) as usize * HASH_LEN;
                row.certified_hash = tiles
                    .get(&tile_of(row.idx))
                    .and_then(|t| t.get(at..at + HASH_LEN))
                    .map(<[u8]>::to_vec);
            }
            rest = later;
        }
        Ok(rows)
    }

    /// The ids of `values` in the log's shared strings, adding in `tx` those not there yet.
    async fn intern_strings(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        values: &[&str],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut out = HashMap::with_capacity(values.len());
        for chunk in values.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(values_sql(
                "INSERT INTO audit_strings (value) VALUES ",
                chunk.len(),
                1,
                " ON CONFLICT (value) DO NOTHING",
            ));
            for v in chunk {
                q = q.bind(*v);
            }
            q.execute(&mut **tx).await?;
            let sql = format!(
                "SELECT id, value FROM audit_strings WHERE value IN ({})",
                crate::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in chunk {
                q = q.bind(*v);
            }
            for r in q.fetch_all(&mut **tx).await? {
                out.insert(r.try_get("value")?, r.try_get("id")?);
            }
        }
        Ok(out)
    }

    /// The shared strings among `ids`, by id.
    pub async fn audit_strings(&self, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        self.values_by_id("SELECT id, value AS v FROM audit_strings", ids)
            .await
    }

    /// The stored tiles among `ids` (see [`audit_tile_id`]), by id.
    pub async fn audit_tiles(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<u8>>, StoreError> {
        self.values_by_id("SELECT id, hashes AS v FROM audit_tiles", ids)
            .await
    }

    /// `select` (`id` and `v` columns) for the rows among `ids`, by id.
    async fn values_by_id<T>(
        &self,
        select: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, T>, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{select} WHERE id IN ({})",
                crate::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get("id")?, r.try_get("v")?);
            }
        }
        Ok(out)
    }

    /// Stores tiles (by id, each whole: a partial tile as far as it goes now) and, in the same
    /// transaction, the signed checkpoint they complete. Both are deterministic, so what
    /// another replica stored is kept unless this write extends it: a tile only grows.
    pub async fn put_audit_tree(
        &self,
        tiles: &[(i64, Vec<u8>)],
        checkpoint: &CheckpointRow,
    ) -> Result<(), StoreError> {
        // On SQLite the tree write waits its turn behind the appender's commits (fairly), then
        // takes the write lock first instead of racing for it mid-transaction.
        let _turn = self.write_turn().await;
        let mut tx = self.begin_write().await?;
        for chunk in tiles.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(values_sql(
                "INSERT INTO audit_tiles (id, hashes) VALUES ",
                chunk.len(),
                2,
                " ON CONFLICT (id) DO UPDATE SET hashes = excluded.hashes \
                 WHERE length(excluded.hashes) > length(audit_tiles.hashes)",
            ));
            for (id, hashes) in chunk {
                q = q.bind(*id).bind(hashes.as_slice());
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(to_i64(checkpoint.size)?)
        .bind(&checkpoint.note)
        .bind(checkpoint.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The records of the log and the bytes its tables and indexes take (SQLite: the pages
    /// `dbstat` counts; PostgreSQL: `pg_total_relation_size`, TOAST included). SQLite's count
    /// walks every page of the log: seconds for millions of records.
    pub async fn audit_storage(&self) -> Result<AuditStorage, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "SELECT CAST(COALESCE(SUM(s.pgsize), 0) AS BIGINT) FROM dbstat s \
                 JOIN sqlite_master m ON m.name = s.name WHERE m.tbl_name IN ({AUDIT_TABLES})"
            ),
            Backend::Postgres => format!(
                "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r' \
                 AND c.relname IN ({AUDIT_TABLES})"
            ),
        };
        let bytes: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?;
        Ok(AuditStorage {
            records: self.audit_len().await?,
            bytes: to_u64(bytes)?,
        })
    }

    /// The newest signed checkpoint, if any.
    pub async fn latest_audit_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CheckpointRow {
                size: to_u64(r.try_get("size")?)?,
                note: r.try_get("note")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}
