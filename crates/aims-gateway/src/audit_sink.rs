//! Decision records on their way to the server's audit log (AIMS MO-1, MO-8), in batches: one
//! flusher posts whatever queued while the previous post was in flight (group commit across
//! requests). In sync mode a request waits for its record's durable append; in async mode it
//! waits only for room in the bounded queue, and the flusher lets records gather for 2 ms
//! before it posts. A failed post is retried with backoff; records
//! are never dropped.

use std::sync::Arc;
use std::time::Duration;

use aims_audit::AuditRecord;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::GatewayError;
use crate::server_client::ServerClient;
use crate::settings::AuditMode;

/// Records waiting to be flushed, at most (requests beyond wait).
const QUEUE: usize = 10_000;
/// Records per post (the server's limit).
const MAX_BATCH: usize = 1_000;
/// How long a sync request waits for its record before it is refused.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Async mode: how long the flusher lets records gather after the first before it posts. No
/// request waits for it; at moderate rates it turns one post per call into one per few
/// milliseconds, which is most of what the server's audit appends cost.
const ASYNC_LINGER: Duration = Duration::from_millis(2);

struct Item {
    record: AuditRecord,
    ack: Option<oneshot::Sender<()>>,
}

/// The sink.
pub struct AuditSink {
    queue: mpsc::Sender<Item>,
    mode: AuditMode,
}

impl AuditSink {
    /// Starts the flusher. It ends, after flushing, when the last handle is dropped.
    pub fn start(server: Arc<ServerClient>, mode: AuditMode) -> (Arc<Self>, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let linger = match mode {
            AuditMode::Async => ASYNC_LINGER,
            AuditMode::Sync => Duration::ZERO,
        };
        let flusher = tokio::spawn(flush_loop(server, rx, linger));
        (Arc::new(Self { queue, mode }), flusher)
    }

    /// Records `record`: in sync mode, returns once it is durable in the log.
    pub async fn record(&self, record: AuditRecord) -> Result<(), GatewayError> {
        match self.mode {
            AuditMode::Async => self
                .queue
                .send(Item { record, ack: None })
                .await
                .map_err(|_| GatewayError::AuditClosed),
            AuditMode::Sync => {
                let (ack, done) = oneshot::channel();
                self.queue
                    .send(Item {
                        record,
                        ack: Some(ack),
                    })
                    .await
                    .map_err(|_| GatewayError::AuditClosed)?;
                tokio::time::timeout(SYNC_WAIT, done)
                    .await
                    .map_err(|_| GatewayError::AuditTimeout)?
                    .map_err(|_| GatewayError::AuditClosed)
            }
        }
    }
}

async fn flush_loop(server: Arc<ServerClient>, mut rx: mpsc::Receiver<Item>, linger: Duration) {
    while let Some(first) = rx.recv().await {
        if !linger.is_zero() && rx.len() < MAX_BATCH {
            tokio::time::sleep(linger).await;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (records, acks): (Vec<AuditRecord>, Vec<_>) =
            batch.into_iter().map(|i| (i.record, i.ack)).unzip();
        let mut backoff = Duration::from_millis(50);
        loop {
            match server.append_audit(&records).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, records = records.len(), retry_in = ?backoff, "audit append failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(());
        }
    }
}
