//! One-time values remembered across restarts and replicas (issue 16; RFC 7523 §3, RFC 8417
//! §2.2, AIMS AU-11): a client assertion's or a received SET's `jti` is admitted once per scope
//! until it expires, whichever replica sees it, before or after a restart.
//!
//! Admissions are group-committed (issue 17): callers hand them to one writer task, which
//! records whatever is waiting in one transaction (one fsync) and then answers each caller.
//! Nothing is answered before it is durable; a full queue makes callers wait.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot};

use crate::{Backend, Store, StoreError};

/// Admissions waiting for the writer, at most (callers beyond wait for room).
const QUEUE: usize = 4096;
/// Admissions recorded in one transaction, at most.
const MAX_BATCH: usize = 1024;
/// Rows per INSERT statement (3 values each, plus the time): small, as the audit appender's
/// (binding cost grows with the square of a statement's width).
const ROWS_PER_STATEMENT: usize = 64;
/// Expired values are swept at most this often (seconds).
const SWEEP_EVERY: i64 = 60;

/// One value asking to be admitted.
struct Admission {
    scope: String,
    jti: String,
    expires_at: i64,
    now: i64,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The writer's queue, started on first use in the runtime of that use (and again if that
/// runtime has gone).
#[derive(Default)]
pub(crate) struct OneTimeWriter {
    queue: std::sync::Mutex<Option<mpsc::Sender<Admission>>>,
}

impl std::fmt::Debug for OneTimeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeWriter").finish_non_exhaustive()
    }
}

/// What the writer needs of the store (not the store itself: its queue would keep it alive).
#[derive(Clone)]
struct Writer {
    pool: sqlx::AnyPool,
    backend: Backend,
    write_turns: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Admits `jti` in `scope` once: `true` the first time, `false` while it is remembered
    /// (until `expires_at`, Unix seconds). Expired values are swept now and then.
    pub async fn first_use(
        &self,
        scope: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let queue = self.one_time_queue()?;
        let (reply, answer) = oneshot::channel();
        let admission = Admission {
            scope: scope.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            now,
            reply,
        };
        queue
            .send(admission)
            .await
            .map_err(|_| StoreError::Unavailable("the one-time value writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the one-time value writer stopped".into()))?
    }

    fn one_time_queue(&self) -> Result<mpsc::Sender<Admission>, StoreError> {
        let mut slot = self
            .one_time
            .queue
            .lock()
            .map_err(|_| StoreError::Unavailable("one-time value queue poisoned".into()))?;
        if let Some(q) = slot.as_ref().filter(|q| !q.is_closed()) {
            return Ok(q.clone());
        }
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            pool: self.pool.clone(),
            backend: self.backend,
            write_turns: self.write_turns.clone(),
        };
        tokio::spawn(writer.run(rx));
        *slot = Some(queue.clone());
        Ok(queue)
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Admission>) {
        let mut last_sweep = i64::MIN;
        while let Some(first) = rx.recv().await {
            // Everything that queued while the last commit ran goes in this one.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let now = batch.iter().map(|a| a.now).min().unwrap_or_default();
            let sweep = now.saturating_sub(last_sweep) >= SWEEP_EVERY;
            match self.commit(&batch, now, sweep).await {
                Ok(mut admitted) => {
                    if sweep {
                        last_sweep = now;
                    }
                    for a in batch {
                        // Taken out as answered: the same pair again in this batch is a replay.
                        let first = admitted.remove(&(a.scope, a.jti));
                        let _ = a.reply.send(Ok(first));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, values = batch.len(), "one-time values not recorded");
                    for a in batch {
                        let _ = a.reply.send(Err(StoreError::Unavailable(e.to_string())));
                    }
                }
            }
        }
    }

    /// Records `batch` in one transaction and returns the (scope, jti) pairs admitted: each
    /// new, or remembered only past its expiry. A pair twice in one batch is admitted once.
    async fn commit(
        &self,
        batch: &[Admission],
        now: i64,
        sweep: bool,
    ) -> Result<HashSet<(String, String)>, StoreError> {
        let mut seen = HashSet::with_capacity(batch.len());
        let unique: Vec<&Admission> = batch
            .iter()
            .filter(|a| seen.insert((a.scope.as_str(), a.jti.as_str())))
            .collect();
        let _turn = match self.backend {
            Backend::Sqlite => Some(self.write_turns.lock().await),
            Backend::Postgres => None,
        };
        let mut tx = crate::begin_write(&self.pool, self.backend).await?;
        if sweep {
            sqlx::query("DELETE FROM used_jtis WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let mut admitted = HashSet::with_capacity(unique.len());
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", crate::placeholders(2 + i * 3, 3)))
                .collect();
            let sql = format!(
                "INSERT INTO used_jtis (scope, jti, expires_at) VALUES {} \
                 ON CONFLICT (scope, jti) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE used_jtis.expires_at < $1 RETURNING scope, jti",
                tuples.join(",")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for a in chunk {
                q = q.bind(&a.scope).bind(&a.jti).bind(a.expires_at);
            }
            for row in q.fetch_all(&mut *tx).await? {
                admitted.insert((row.try_get("scope")?, row.try_get("jti")?));
            }
        }
        tx.commit().await?;
        Ok(admitted)
    }
}
