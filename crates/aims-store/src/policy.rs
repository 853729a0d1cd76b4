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
    /// The Cedar schema of the application it also decides for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_schema: Option<String>,
    /// That application's entities (Cedar JSON), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_entities: Option<String>,
}

/// An enforcement point following the policy (AIMS PO-3), as last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFollower {
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// The version it decides with.
    pub version: u64,
    /// When it said so, Unix seconds.
    pub seen_at: i64,
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
        application_schema: r.try_get("application_schema")?,
        application_entities: r.try_get("application_entities")?,
    })
}

fn to_i64(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Invalid(format!("policy version {version}")))
}

impl Store {
    /// The newest policy version, if any.
    pub async fn latest_policy(&self) -> Result<Option<PolicyVersionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT version, hash, text, created_at, author, application_schema, \
             application_entities FROM policy_versions ORDER BY version DESC LIMIT 1",
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
            "SELECT version, hash, text, created_at, author, application_schema, \
             application_entities FROM policy_versions WHERE version = $1",
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
            "SELECT version, hash, '' AS text, created_at, author, NULL AS application_schema, \
             NULL AS application_entities FROM policy_versions ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_policy).collect()
    }

    /// Records a new version. Fails with `Conflict` when that version exists (another replica
    /// put one in force first): the caller re-reads and decides again.
    pub async fn insert_policy(&self, row: &PolicyVersionRow) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO policy_versions (version, hash, text, created_at, author, \
             application_schema, application_entities) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (version) DO NOTHING",
        )
        .bind(to_i64(row.version)?)
        .bind(&row.hash)
        .bind(&row.text)
        .bind(row.created_at)
        .bind(&row.author)
        .bind(&row.application_schema)
        .bind(&row.application_entities)
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

    /// Records that the enforcement point `spiffe_id` decides with `version` (AIMS PO-3), as
    /// it said when asking for the policy in force at `now`.
    pub async fn record_policy_follower(
        &self,
        spiffe_id: &str,
        version: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policy_followers (spiffe_id, version, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (spiffe_id) DO UPDATE SET version = excluded.version, seen_at = excluded.seen_at",
        )
        .bind(spiffe_id)
        .bind(to_i64(version)?)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enforcement points heard from at or after `since`, by SPIFFE ID.
    pub async fn policy_followers(&self, since: i64) -> Result<Vec<PolicyFollower>, StoreError> {
        let rows = sqlx::query(
            "SELECT spiffe_id, version, seen_at FROM policy_followers WHERE seen_at >= $1 \
             ORDER BY spiffe_id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                Ok(PolicyFollower {
                    spiffe_id: r.try_get("spiffe_id")?,
                    version: u64::try_from(version)
                        .map_err(|_| StoreError::Invalid(format!("policy version {version}")))?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect()
    }
}
