//! Random values every replica sharing the store must hold alike (issue 18), such as the key of
//! DPoP nonces: made by whichever replica asks first, then read by all. They guard freshness,
//! not identity; signing keys stay files (SECURITY.md).

use crate::{Store, StoreError};

/// The length of a shared secret, in bytes.
pub const SHARED_SECRET_LEN: usize = 32;

impl Store {
    /// The shared secret `name`, made now if no replica made it yet.
    pub async fn shared_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut fresh = vec![0u8; SHARED_SECRET_LEN];
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| StoreError::Unavailable("no randomness for a shared secret".into()))?;
        sqlx::query(
            "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM shared_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        if value.len() != SHARED_SECRET_LEN {
            return Err(StoreError::Invalid(format!(
                "shared secret {name} holds {} bytes, not {SHARED_SECRET_LEN}",
                value.len()
            )));
        }
        Ok(value)
    }
}
