//! Appending with group commit: callers hand records to one writer task, which commits
//! whatever is waiting in one transaction and then answers every caller (AIMS MO-1). Nothing is
//! acknowledged before it is durable; nothing is dropped: a full queue makes callers wait.

use std::ops::Range;
use std::sync::Arc;

use std::collections::HashMap;

use aims_store::{NewAuditRow, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::merkle::{Hash, leaf_hash};
use crate::record::{AuditMode, AuditRecord};
use crate::stored;

/// Appends waiting for the writer, at most (callers beyond wait for room).
const QUEUE: usize = 4096;
/// Records committed in one transaction, at most.
const MAX_BATCH: usize = 8192;
/// How long records submitted without a waiter may gather before their commit (a waiter's
/// arrival commits at once).
const SUBMIT_FLUSH: std::time::Duration = std::time::Duration::from_millis(10);
/// Shared strings whose ids the writer remembers, at most (beyond, it forgets them all and
/// asks the store again).
const MAX_KNOWN_STRINGS: usize = 16_384;

impl AuditLog {
    /// Appends `records` as `mode` asks: [`AuditLog::append`] for `Sync`, [`AuditLog::submit`]
    /// for `Async`.
    pub async fn record(
        &self,
        records: &[AuditRecord],
        mode: AuditMode,
    ) -> Result<(), AppendError> {
        match mode {
            AuditMode::Sync => self.append(records).await.map(|_| ()),
            AuditMode::Async => self.submit(records).await,
        }
    }
}

/// Why an append failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The store refused the transaction; nothing of the batch was written.
    #[error("audit append failed: {0}")]
    Store(String),
    /// The log is shut down.
    #[error("the audit log is closed")]
    Closed,
    /// A record could not be encoded.
    #[error("audit record: {0}")]
    Encode(String),
}

/// Where appended records landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Their indexes in the log.
    pub indexes: Range<u64>,
}

struct Pending {
    /// The records, each with its JSON's RFC 9162 leaf hash.
    records: Vec<(AuditRecord, Hash)>,
    /// Who waits for the commit (`None`: submitted without waiting).
    reply: Option<oneshot::Sender<Result<Appended, AppendError>>>,
}

/// The audit log.
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
    closing: tokio::sync::watch::Sender<bool>,
    /// Set by [`AuditLog::close`]: appends from then on fail at once, not only once the
    /// writer has seen the signal.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer over `store`. It stops at [`AuditLog::close`] (or when the last handle
    /// is dropped), after committing what was handed to it.
    pub fn start(store: Store) -> (Arc<Self>, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (closing, closed) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_loop(store, rx, closed));
        let closed = std::sync::atomic::AtomicBool::new(false);
        (
            Arc::new(Self {
                queue,
                closing,
                closed,
            }),
            writer,
        )
    }

    /// Stops the writer once what is queued is committed; later appends fail with `Closed`.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.closing.send(true);
    }

    /// Appends `records` (in this order, contiguous) and returns once they are durable.
    pub async fn append(&self, records: &[AuditRecord]) -> Result<Appended, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(records, Some(reply)).await?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Hands `records` to the writer without waiting for their commit (the next group commit
    /// takes them); waits only while the queue is full, so nothing is dropped.
    pub async fn submit(&self, records: &[AuditRecord]) -> Result<(), AppendError> {
        self.enqueue(records, None).await
    }

    async fn enqueue(
        &self,
        records: &[AuditRecord],
        reply: Option<oneshot::Sender<Result<Appended, AppendError>>>,
    ) -> Result<(), AppendError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        let records = records
            .iter()
            .map(|r| {
                let json = serde_json::to_vec(r).map_err(|e| AppendError::Encode(e.to_string()))?;
                Ok((r.clone(), leaf_hash(&json)))
            })
            .collect::<Result<Vec<_>, AppendError>>()?;
        self.queue
            .send(Pending { records, reply })
            .await
            .map_err(|_| AppendError::Closed)
    }
}

/// The ids of shared strings the writer has used (bounded).
#[derive(Default)]
struct KnownStrings(HashMap<String, i64>);

impl KnownStrings {
    /// Appends `records` in their stored form in one durable transaction, adding the shared
    /// strings the store lacks in that same transaction; the index of the first.
    async fn append(
        &mut self,
        store: &Store,
        records: &[(AuditRecord, Hash)],
        appended_at: i64,
    ) -> Result<u64, StoreError> {
        let missing: Vec<&str> = records
            .iter()
            .flat_map(|(r, _)| stored::shared_strings(r))
            .filter(|s| !self.0.contains_key(*s))
            .collect();
        let known = &self.0;
        let rows = |found: &HashMap<String, i64>| {
            records
                .iter()
                .map(|(r, leaf_hash)| {
                    let id_of = |s: &str| known.get(s).or_else(|| found.get(s)).copied();
                    // Fail closed: a record that cannot be encoded fails its batch, never goes
                    // in empty.
                    let record = stored::encode(r, id_of)
                        .map_err(|e| StoreError::Invalid(format!("audit record: {e}")))?;
                    Ok(NewAuditRow {
                        leaf_hash: *leaf_hash,
                        record,
                        correlation_id: r.correlation_id.clone(),
                    })
                })
                .collect()
        };
        let (first, found) = store
            .append_audit_with_strings(&missing, rows, appended_at)
            .await?;
        // Only ids of a committed transaction are remembered.
        if self.0.len() + found.len() > MAX_KNOWN_STRINGS {
            self.0.clear();
        }
        self.0.extend(found);
        Ok(first)
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<Pending>,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    let mut known = KnownStrings::default();
    loop {
        let first = tokio::select! {
            biased;
            next = rx.recv() => next,
            changed = closed.changed() => {
                // Closing (or the log dropped): take nothing new, commit what is queued, stop.
                if changed.is_err() || *closed.borrow() {
                    rx.close();
                }
                continue;
            }
        };
        let Some(first) = first else { break };
        // Group commit: everything that queued while the last commit ran goes in this one.
        let mut batch = vec![first];
        let mut count = batch[0].records.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    count += p.records.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        // Nobody waits for this batch: let more gather for a few milliseconds, so a busy
        // submitter (the AS, an async gateway) pays one fsync per many records.
        let deadline = tokio::time::Instant::now() + SUBMIT_FLUSH;
        while count < MAX_BATCH && batch.iter().all(|p| p.reply.is_none()) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    count += p.records.len();
                    batch.push(p);
                }
                _ => break,
            }
        }
        let mut records = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(batch.len());
        for p in batch {
            waiters.push((p.records.len() as u64, p.reply));
            records.extend(p.records);
        }
        let now_ms = aims_core::unix_millis(std::time::SystemTime::now());
        let started = std::time::Instant::now();
        let committed = known.append(&store, &records, now_ms).await;
        metrics::histogram!("aims_audit_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match committed {
            Ok(first_index) => {
                metrics::counter!("aims_audit_records_appended_total")
                    .increment(records.len() as u64);
                let mut at = first_index;
                for (n, reply) in waiters {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(Appended {
                            indexes: at..at + n,
                        }));
                    }
                    at += n;
                }
            }
            Err(e) => {
                metrics::counter!("aims_audit_append_failures_total").increment(1);
                tracing::error!(error = %e, records = records.len(), "audit append failed");
                for (_, reply) in waiters.into_iter() {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(AppendError::Store(e.to_string())));
                    }
                }
            }
        }
    }
}
