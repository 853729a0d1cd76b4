//! Values every replica sharing the store must hold alike (issue 18): random secrets such as the
//! key of DPoP nonces, made by whichever replica asks first and then read by all; and pinned
//! values, such as the audit log's verifier key, that a replica compares with its own. They
//! guard freshness and agreement, not identity; signing keys stay files (SECURITY.md).

use crate::{Store, StoreError};

/// The length of a shared secret, in bytes.
pub const SHARED_SECRET_LEN: usize = 32;

impl Store {
    /// The shared secret `name`, made now if no replica made it yet.
    pub async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut fresh = vec![0u8; SHARED_SECRET_LEN];
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| StoreError::Unavailable("no randomness for a shared secret".into()))?;
        let value = self.pinned(name, fresh).await?;
        if value.len() != SHARED_SECRET_LEN {
            return Err(StoreError::Invalid(format!(
                "shared secret {name} holds {} bytes, not {SHARED_SECRET_LEN}",
                value.len()
            )));
        }
        Ok(value)
    }

    /// The value stored under `name`: `proposed` if no replica stored one yet (the first writer
    /// wins), else what is there, for the caller to compare with its own.
    pub async fn pinned(&self, name: &str, proposed: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(proposed)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM shared_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
