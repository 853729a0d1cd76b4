//! CA slots and published bundles. Slot records are opaque JSON to the store: the credentials
//! layer owns their shape and the store never sees a private key.

use sqlx::Row as _;

use crate::{Store, StoreError, now_unix};

/// The state of a CA slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStatus {
    /// Published in the bundle, not yet signing.
    Prepared,
    /// Signing.
    Active,
    /// Replaced; published until it expires.
    Retired,
}

impl SlotStatus {
    fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Prepared => "prepared",
            SlotStatus::Active => "active",
            SlotStatus::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "prepared" => Ok(SlotStatus::Prepared),
            "active" => Ok(SlotStatus::Active),
            "retired" => Ok(SlotStatus::Retired),
            other => Err(StoreError::Invalid(format!("slot status {other:?}"))),
        }
    }
}

/// A stored CA slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    /// The server (replica) that owns the slot.
    pub server_id: String,
    /// The slot id.
    pub slot_id: String,
    /// Its state.
    pub status: SlotStatus,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// The slot record, JSON.
    pub record: String,
}

/// A published bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRow {
    /// Trust domain name.
    pub trust_domain: String,
    /// `spiffe_sequence`.
    pub sequence: i64,
    /// The SPIFFE bundle document.
    pub document: String,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

fn row_to_slot(r: &sqlx::any::AnyRow) -> Result<SlotRow, StoreError> {
    Ok(SlotRow {
        server_id: r.try_get("server_id")?,
        slot_id: r.try_get("slot_id")?,
        status: SlotStatus::parse(&r.try_get::<String, _>("status")?)?,
        not_after: r.try_get("not_after")?,
        record: r.try_get("record")?,
    })
}

impl Store {
    /// Inserts or updates a slot of `server_id`. Activating a slot retires that server's
    /// previously active one, in the same transaction.
    pub async fn put_slot(&self, row: &SlotRow) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if row.status == SlotStatus::Active {
            sqlx::query(
                "UPDATE ca_slots SET status = 'retired', updated_at = $1 \
                 WHERE server_id = $2 AND status = 'active' AND slot_id <> $3",
            )
            .bind(now_unix())
            .bind(&row.server_id)
            .bind(&row.slot_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO ca_slots (server_id, slot_id, status, not_after, record, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (server_id, slot_id) DO UPDATE SET status = $3, not_after = $4, record = $5, updated_at = $6",
        )
        .bind(&row.server_id)
        .bind(&row.slot_id)
        .bind(row.status.as_str())
        .bind(row.not_after)
        .bind(&row.record)
        .bind(now_unix())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every slot of every server that has not expired by `now`.
    pub async fn live_slots(&self, now: i64) -> Result<Vec<SlotRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT server_id, slot_id, status, not_after, record FROM ca_slots \
             WHERE not_after > $1 ORDER BY not_after, server_id, slot_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_slot).collect()
    }

    /// Deletes slots that expired before `now`, returning them (so their keys can be dropped).
    pub async fn prune_slots(&self, server_id: &str, now: i64) -> Result<Vec<SlotRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT server_id, slot_id, status, not_after, record FROM ca_slots WHERE server_id = $1 AND not_after <= $2",
        )
        .bind(server_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query("DELETE FROM ca_slots WHERE server_id = $1 AND not_after <= $2")
            .bind(server_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        rows.iter().map(row_to_slot).collect()
    }

    /// Publishes the bundle of `trust_domain` if its keys (named by `keys_digest`) differ from
    /// the stored ones, incrementing `spiffe_sequence` (SPIFFE bundle §4.1.1: it changes on
    /// every update). `render` is given the new sequence and returns the document. Returns the
    /// bundle now stored.
    pub async fn publish_bundle(
        &self,
        trust_domain: &str,
        keys_digest: &str,
        render: impl Fn(i64) -> String,
    ) -> Result<BundleRow, StoreError> {
        let mut tx = self.begin_write().await?;
        // Replicas sharing PostgreSQL publish concurrently: lock the row so each change gets
        // its own sequence number.
        let select: &'static str = match self.backend {
            crate::Backend::Postgres => {
                "SELECT sequence, document, keys_digest, updated_at FROM bundles WHERE trust_domain = $1 FOR UPDATE"
            }
            crate::Backend::Sqlite => {
                "SELECT sequence, document, keys_digest, updated_at FROM bundles WHERE trust_domain = $1"
            }
        };
        let current = sqlx::query(select)
            .bind(trust_domain)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = &current {
            let document: String = row.try_get("document")?;
            if row.try_get::<String, _>("keys_digest")? == keys_digest {
                tx.commit().await?;
                return Ok(BundleRow {
                    trust_domain: trust_domain.to_owned(),
                    sequence: row.try_get("sequence")?,
                    document,
                    updated_at: row.try_get("updated_at")?,
                });
            }
        }
        let sequence = match &current {
            Some(row) => row.try_get::<i64, _>("sequence")? + 1,
            None => 1,
        };
        let document = render(sequence);
        let now = now_unix();
        sqlx::query(
            "INSERT INTO bundles (trust_domain, sequence, document, keys_digest, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (trust_domain) DO UPDATE SET sequence = $2, document = $3, keys_digest = $4, updated_at = $5",
        )
        .bind(trust_domain)
        .bind(sequence)
        .bind(&document)
        .bind(keys_digest)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BundleRow {
            trust_domain: trust_domain.to_owned(),
            sequence,
            document,
            updated_at: now,
        })
    }

    /// The published bundle of `trust_domain`.
    pub async fn get_bundle(&self, trust_domain: &str) -> Result<BundleRow, StoreError> {
        let row = sqlx::query(
            "SELECT sequence, document, updated_at FROM bundles WHERE trust_domain = $1",
        )
        .bind(trust_domain)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("bundle of {trust_domain}")))?;
        Ok(BundleRow {
            trust_domain: trust_domain.to_owned(),
            sequence: row.try_get("sequence")?,
            document: row.try_get("document")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}
