//! Audit log rows (AIMS MO-1): appended in batches, each batch one transaction that numbers its
//! rows after the last one. Several replicas on PostgreSQL serialize their appends with a table
//! lock, so indexes never collide or leave gaps.

use sqlx::Row as _;

use crate::{Backend, Store, StoreError};

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the log, from 0.
    pub idx: u64,
    /// RFC 9162 leaf hash, hex.
    pub leaf_hash: String,
    /// The record's bytes (JSON).
    pub record: String,
    /// When it was appended, Unix milliseconds.
    pub appended_at: i64,
}

/// Rows per INSERT statement (4 parameters each, well under every engine's limit).
const ROWS_PER_STATEMENT: usize = 500;

impl Store {
    /// Appends `(leaf_hash, record)` pairs in one durable transaction and returns the index of
    /// the first.
    pub async fn append_audit(
        &self,
        rows: &[(String, String)],
        appended_at: i64,
    ) -> Result<u64, StoreError> {
        // The writer lock comes first: on SQLite a read that later upgrades to a write could
        // deadlock with another writer (SQLITE_BUSY at once, not after busy_timeout).
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx), -1) + 1 FROM audit_log")
            .fetch_one(&mut *tx)
            .await?;
        let mut idx = next;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql =
                String::from("INSERT INTO audit_log (idx, leaf_hash, record, appended_at) VALUES ");
            for i in 0..chunk.len() {
                let p = i * 4;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
            }
            // Only placeholders are formatted into the text; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (leaf, record) in chunk {
                q = q.bind(idx).bind(leaf).bind(record).bind(appended_at);
                idx += 1;
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        u64::try_from(next).map_err(|_| StoreError::Invalid(format!("audit index {next}")))
    }

    /// How many records the log holds.
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Invalid(format!("audit length {n}")))
    }

    /// Rows `from..from+limit`, in order.
    pub async fn audit_rows(&self, from: u64, limit: u64) -> Result<Vec<AuditRow>, StoreError> {
        let to_i64 =
            |v: u64| i64::try_from(v).map_err(|_| StoreError::Invalid(format!("index {v}")));
        let rows = sqlx::query(
            "SELECT idx, leaf_hash, record, appended_at FROM audit_log \
             WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(to_i64(from)?)
        .bind(to_i64(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let idx: i64 = r.try_get("idx")?;
                Ok(AuditRow {
                    idx: u64::try_from(idx)
                        .map_err(|_| StoreError::Invalid(format!("audit index {idx}")))?,
                    leaf_hash: r.try_get("leaf_hash")?,
                    record: r.try_get("record")?,
                    appended_at: r.try_get("appended_at")?,
                })
            })
            .collect()
    }
}
