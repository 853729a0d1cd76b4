//! Join tokens, change counters and federated bundles.

use aims_core::SpiffeId;
use sqlx::Row as _;

use crate::{Store, StoreError};

/// A change counter.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// Registration entries (bumped by every create, update and delete).
    Registration,
    /// Federated bundles.
    Federation,
    /// Revoked principals and tokens (bumped by every revocation and lift).
    Revocation,
    /// Registered OAuth clients (bumped by every registration, replacement and deletion).
    Clients,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Registration => "registration",
            Counter::Federation => "federation",
            Counter::Revocation => "revocation",
            Counter::Clients => "clients",
        }
    }
}

/// A federated bundle as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FederatedBundleRow {
    /// The foreign trust domain.
    pub trust_domain: String,
    /// Its SPIFFE bundle document.
    pub document: String,
    /// The endpoint it came from.
    pub endpoint: String,
    /// Its `spiffe_sequence`.
    pub sequence: i64,
    /// When it was last fetched.
    pub refreshed_at: i64,
}

impl Store {
    /// Moves `counter` on by one and returns its new value.
    pub(crate) async fn bump<'e, E>(executor: E, counter: Counter) -> Result<i64, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        Ok(sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value",
        )
        .bind(counter.name())
        .fetch_one(executor)
        .await?)
    }

    /// The current value of a change counter.
    pub async fn counter(&self, counter: Counter) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
                .bind(counter.name())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Stores a join token by its digest.
    pub async fn create_join_token(
        &self,
        digest: &str,
        spiffe_id: Option<&SpiffeId>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO join_tokens (digest, spiffe_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(digest)
        .bind(spiffe_id.map(|s| s.as_str().to_owned()))
        .bind(expires_at)
        .bind(crate::now_unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a join token: succeeds once, before expiry, atomically (two agents racing with the
    /// same token: one wins). Returns the agent ID the operator chose, if any.
    pub async fn consume_join_token(
        &self,
        digest: &str,
        now: i64,
    ) -> Result<Option<SpiffeId>, StoreError> {
        let row = sqlx::query(
            "UPDATE join_tokens SET used_at = $1 WHERE digest = $2 AND used_at IS NULL AND expires_at > $1 RETURNING spiffe_id",
        )
        .bind(now)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound("join token (unknown, used or expired)".into()))?;
        let id: Option<String> = row.try_get("spiffe_id")?;
        id.map(|s| {
            SpiffeId::parse(&s).map_err(|e| StoreError::Invalid(format!("stored agent ID: {e}")))
        })
        .transpose()
    }

    /// Stores a federated bundle, bumping the federation counter when it changed.
    pub async fn put_federated_bundle(&self, row: &FederatedBundleRow) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT document FROM federated_bundles WHERE trust_domain = $1")
                .bind(&row.trust_domain)
                .fetch_optional(&mut *tx)
                .await?;
        let changed = current.as_deref() != Some(row.document.as_str());
        sqlx::query(
            "INSERT INTO federated_bundles (trust_domain, document, endpoint, sequence, refreshed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (trust_domain) DO UPDATE SET document = $2, endpoint = $3, sequence = $4, refreshed_at = $5",
        )
        .bind(&row.trust_domain)
        .bind(&row.document)
        .bind(&row.endpoint)
        .bind(row.sequence)
        .bind(row.refreshed_at)
        .execute(&mut *tx)
        .await?;
        if changed {
            Self::bump(&mut *tx, Counter::Federation).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Every federated bundle.
    pub async fn federated_bundles(&self) -> Result<Vec<FederatedBundleRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT trust_domain, document, endpoint, sequence, refreshed_at FROM federated_bundles ORDER BY trust_domain",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FederatedBundleRow {
                    trust_domain: r.try_get("trust_domain")?,
                    document: r.try_get("document")?,
                    endpoint: r.try_get("endpoint")?,
                    sequence: r.try_get("sequence")?,
                    refreshed_at: r.try_get("refreshed_at")?,
                })
            })
            .collect()
    }
}
