//! Policy versions (AIMS PO-2): append-only, numbered from 1; the newest is in force.

use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::{Store, StoreError};

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionRow {
    /// Monotonic version.
    pub version: u64,
    /// `sha256:` content hash.
    pub hash: String,
    /// The Cedar text.
    pub text: String,
    /// When it was put in force, Unix seconds.
    pub created_at: i64,
    /// Who put it in force.
    pub author: String,
}

fn row_to_policy(r: &sqlx::any::AnyRow) -> Result<PolicyVersionRow, StoreError> {
    let version: i64 = r.try_get("version")?;
    Ok(PolicyVersionRow {
        version: u64::try_from(version)
            .map_err(|_| StoreError::Invalid(format!("policy version {version}")))?,
        hash: r.try_get("hash")?,
        text: r.try_get("text")?,
        created_at: r.try_get("created_at")?,
        author: r.try_get("author")?,
    })
}

fn to_i64(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Invalid(format!("policy version {version}")))
}

impl Store {
    /// The newest policy version, if any.
    pub async fn latest_policy(&self) -> Result<Option<PolicyVersionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT version, hash, text, created_at, author FROM policy_versions \
             ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_policy).transpose()
    }

    /// The newest version number, if any (cheap, for polling).
    pub async fn latest_policy_version(&self) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM policy_versions")
            .fetch_one(&self.pool)
            .await?;
        version
            .map(|v| u64::try_from(v).map_err(|_| StoreError::Invalid(format!("version {v}"))))
            .transpose()
    }

    /// One version.
    pub async fn policy_version(&self, version: u64) -> Result<PolicyVersionRow, StoreError> {
        let row = sqlx::query(
            "SELECT version, hash, text, created_at, author FROM policy_versions WHERE version = $1",
        )
        .bind(to_i64(version)?)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("policy version {version}")))?;
        row_to_policy(&row)
    }

    /// Every version, oldest first, without their texts.
    pub async fn policy_history(&self) -> Result<Vec<PolicyVersionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, hash, '' AS text, created_at, author FROM policy_versions ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_policy).collect()
    }

    /// Records a new version. Fails with `Conflict` when that version exists (another replica
    /// put one in force first): the caller re-reads and decides again.
    pub async fn insert_policy(&self, row: &PolicyVersionRow) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO policy_versions (version, hash, text, created_at, author) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
        )
        .bind(to_i64(row.version)?)
        .bind(&row.hash)
        .bind(&row.text)
        .bind(row.created_at)
        .bind(&row.author)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "policy version {} exists",
                row.version
            )));
        }
        Ok(())
    }
}
