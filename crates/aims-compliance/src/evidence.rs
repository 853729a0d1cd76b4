//! The recorded evidence a report is evaluated over (AIMS CO-1): every audit log entry, the
//! issued-credential records, the registered OAuth clients and the newest signed checkpoint.

use aims_audit::{AuditRecord, LogEntry};
use aims_store::{IssuedCredential, OAuthClientRow, Store, StoreError};

/// Entries read per query.
const PAGE: u64 = 10_000;
/// Issued-credential records considered, newest first, at most.
const MAX_ISSUED: u32 = 1_000_000;

/// What was recorded.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The audit log, in order, with each record parsed where it parses.
    pub entries: Vec<(LogEntry, Option<AuditRecord>)>,
    /// Issued credentials (serials and hashes, never the credentials).
    pub issued: Vec<IssuedCredential>,
    /// Registered OAuth clients.
    pub clients: Vec<OAuthClientRow>,
    /// The newest signed checkpoint, if one was signed.
    pub checkpoint: Option<String>,
    /// The key that verifies checkpoints.
    pub vkey: String,
}

impl Evidence {
    /// Reads the evidence from `store`; `vkey` verifies its checkpoints.
    pub async fn collect(store: &Store, vkey: &str) -> Result<Self, StoreError> {
        let mut entries = Vec::new();
        loop {
            let page = aims_audit::read_entries(store, entries.len() as u64, PAGE).await?;
            let n = page.len() as u64;
            entries.extend(page.into_iter().map(|e| {
                let r = e.parsed().ok();
                (e, r)
            }));
            if n < PAGE {
                break;
            }
        }
        Ok(Self {
            entries,
            issued: store.list_issued(None, MAX_ISSUED).await?,
            clients: store.list_clients().await?,
            checkpoint: store.latest_audit_checkpoint().await?.map(|c| c.note),
            vkey: vkey.to_owned(),
        })
    }

    /// The parsed records with their indexes.
    pub fn records(&self) -> impl Iterator<Item = (u64, &AuditRecord)> {
        self.entries
            .iter()
            .filter_map(|(e, r)| r.as_ref().map(|r| (e.index, r)))
    }
}
