//! Shared Signals streams and their outbox of SETs (AIMS MO-2): a SET stays until its receiver
//! acknowledges (poll) or accepts (push) it; push attempts are leased so replicas never send
//! one twice at once, and retried later on failure.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// A stored stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    /// Its id.
    pub stream_id: String,
    /// The receiver that made it (its authenticated identity).
    pub owner: String,
    /// `urn:ietf:rfc:8935` (push) or `urn:ietf:rfc:8936` (poll).
    pub method: String,
    /// `enabled`, `paused` or `disabled`.
    pub status: String,
    /// Why the status is what it is.
    pub reason: Option<String>,
    /// The SSF stream configuration, JSON.
    pub config: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A SET waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSet {
    /// Outbox position.
    pub seq: i64,
    /// Its stream.
    pub stream_id: String,
    /// Its `jti`.
    pub jti: String,
    /// The signed SET.
    pub set_jwt: String,
    /// Push attempts so far.
    pub attempts: i64,
}

const STREAM_COLUMNS: &str = "stream_id, owner, method, status, reason, config, created_at";
const SET_COLUMNS: &str = "seq, stream_id, jti, set_jwt, attempts";

fn stream_row(r: &sqlx::any::AnyRow) -> Result<StreamRow, StoreError> {
    Ok(StreamRow {
        stream_id: r.try_get("stream_id")?,
        owner: r.try_get("owner")?,
        method: r.try_get("method")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        config: r.try_get("config")?,
        created_at: r.try_get("created_at")?,
    })
}

fn pending(r: &sqlx::any::AnyRow) -> Result<PendingSet, StoreError> {
    Ok(PendingSet {
        seq: r.try_get("seq")?,
        stream_id: r.try_get("stream_id")?,
        jti: r.try_get("jti")?,
        set_jwt: r.try_get("set_jwt")?,
        attempts: r.try_get("attempts")?,
    })
}

impl Store {
    /// Records a new stream.
    pub async fn put_stream(&self, s: &StreamRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ssf_streams (stream_id, owner, method, status, reason, config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.stream_id)
        .bind(&s.owner)
        .bind(&s.method)
        .bind(&s.status)
        .bind(&s.reason)
        .bind(&s.config)
        .bind(s.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One stream.
    pub async fn get_stream(&self, stream_id: &str) -> Result<StreamRow, StoreError> {
        let sql = format!("SELECT {STREAM_COLUMNS} FROM ssf_streams WHERE stream_id = $1");
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(r) => stream_row(&r),
            None => Err(StoreError::NotFound(format!("stream {stream_id}"))),
        }
    }

    /// Every stream, or those of `owner`, oldest first.
    pub async fn streams(&self, owner: Option<&str>) -> Result<Vec<StreamRow>, StoreError> {
        let rows = match owner {
            Some(o) => {
                let sql = format!(
                    "SELECT {STREAM_COLUMNS} FROM ssf_streams WHERE owner = $1 ORDER BY created_at, stream_id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(o)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {STREAM_COLUMNS} FROM ssf_streams ORDER BY created_at, stream_id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(stream_row).collect()
    }

    /// Rewrites a stream's method, status, reason and configuration.
    pub async fn update_stream(&self, s: &StreamRow) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE ssf_streams SET method = $1, status = $2, reason = $3, config = $4 \
             WHERE stream_id = $5",
        )
        .bind(&s.method)
        .bind(&s.status)
        .bind(&s.reason)
        .bind(&s.config)
        .bind(&s.stream_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("stream {}", s.stream_id)));
        }
        Ok(())
    }

    /// Deletes a stream and its undelivered SETs.
    pub async fn delete_stream(&self, stream_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM ssf_events WHERE stream_id = $1")
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM ssf_streams WHERE stream_id = $1")
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("stream {stream_id}")));
        }
        Ok(())
    }

    /// Puts `(stream_id, jti, set)` SETs in the outbox, due at once, in one transaction.
    pub async fn enqueue_sets(
        &self,
        sets: &[(String, String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (stream, jti, set) in sets {
            sqlx::query(
                "INSERT INTO ssf_events (stream_id, jti, set_jwt, created_at, attempts, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, 0, $4)",
            )
            .bind(stream)
            .bind(jti)
            .bind(set)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` undelivered SETs of a stream, oldest first.
    pub async fn pending_sets(
        &self,
        stream_id: &str,
        limit: u32,
    ) -> Result<Vec<PendingSet>, StoreError> {
        let sql = format!(
            "SELECT {SET_COLUMNS} FROM ssf_events WHERE stream_id = $1 AND delivered_at IS NULL \
             ORDER BY seq LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(pending)
            .collect()
    }

    /// How many SETs of a stream wait.
    pub async fn pending_count(&self, stream_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ssf_events WHERE stream_id = $1 AND delivered_at IS NULL",
        )
        .bind(stream_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Marks SETs of a stream delivered, by `jti`; returns how many were pending.
    pub async fn ack_sets(
        &self,
        stream_id: &str,
        jtis: &[String],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if jtis.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE ssf_events SET delivered_at = $1 WHERE stream_id = $2 \
             AND delivered_at IS NULL AND jti IN ({})",
            crate::placeholders(3, jtis.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(stream_id);
        for j in jtis {
            q = q.bind(j);
        }
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// The oldest undelivered SET of every enabled push stream, if it is due at `now_ms` (a
    /// stream's SETs go in order: one waits for the one before it).
    pub async fn due_pushes(
        &self,
        now_ms: i64,
        push_method: &str,
    ) -> Result<Vec<PendingSet>, StoreError> {
        let sql = format!(
            "SELECT {} FROM ssf_events e JOIN ssf_streams s ON s.stream_id = e.stream_id \
             WHERE s.method = $1 AND s.status = 'enabled' AND e.delivered_at IS NULL \
             AND e.next_attempt_at <= $2 AND e.seq = (SELECT MIN(seq) FROM ssf_events h \
             WHERE h.stream_id = e.stream_id AND h.delivered_at IS NULL)",
            "e.seq, e.stream_id, e.jti, e.set_jwt, e.attempts"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(push_method)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(pending)
            .collect()
    }

    /// Leases a due SET for one push attempt until `lease_until_ms`; false if another replica
    /// holds it or it was delivered meanwhile.
    pub async fn lease_set(
        &self,
        seq: i64,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ssf_events SET next_attempt_at = $1, attempts = attempts + 1 \
             WHERE seq = $2 AND delivered_at IS NULL AND next_attempt_at <= $3",
        )
        .bind(lease_until_ms)
        .bind(seq)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a push's outcome: delivered at `now_ms`, or to be retried at `retry_at_ms`.
    pub async fn push_outcome(
        &self,
        seq: i64,
        now_ms: i64,
        result: Result<(), (&str, i64)>,
    ) -> Result<(), StoreError> {
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE ssf_events SET delivered_at = $1, last_error = NULL WHERE seq = $2",
                )
                .bind(now_ms)
                .bind(seq)
                .execute(&self.pool)
                .await?
            }
            Err((error, retry_at_ms)) => {
                sqlx::query(
                    "UPDATE ssf_events SET next_attempt_at = $1, last_error = $2 WHERE seq = $3",
                )
                .bind(retry_at_ms)
                .bind(error)
                .bind(seq)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(())
    }
}
