//! Attested nodes: the agents the server has admitted (AIMS PR-4, node attestation).

use aims_core::SpiffeId;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::entries::Selector;
use crate::{Store, StoreError, now_unix};

/// An attested node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedNode {
    /// The node's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// How it attested (`join_token`, `x509pop`).
    pub attestation_type: String,
    /// Serial (hex) of its current SVID.
    pub cert_serial: String,
    /// Expiry of its current SVID, Unix seconds.
    pub cert_not_after: i64,
    /// Selectors the attestation produced.
    pub selectors: Vec<Selector>,
    /// A banned node may not renew or re-attest.
    pub banned: bool,
}

fn row_to_node(row: &sqlx::any::AnyRow) -> Result<AttestedNode, StoreError> {
    let id: String = row.try_get("spiffe_id")?;
    let selectors: String = row.try_get("selectors")?;
    Ok(AttestedNode {
        spiffe_id: SpiffeId::parse(&id)
            .map_err(|e| StoreError::Invalid(format!("stored node ID: {e}")))?,
        attestation_type: row.try_get("attestation_type")?,
        cert_serial: row.try_get("cert_serial")?,
        cert_not_after: row.try_get("cert_not_after")?,
        selectors: serde_json::from_str(&selectors)
            .map_err(|e| StoreError::Invalid(format!("stored node selectors: {e}")))?,
        banned: row.try_get::<i64, _>("banned")? != 0,
    })
}

impl Store {
    /// Records a node (or replaces its record after re-attestation or renewal).
    pub async fn upsert_node(&self, node: &AttestedNode) -> Result<(), StoreError> {
        let now = now_unix();
        let selectors = serde_json::to_string(&node.selectors)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO nodes (spiffe_id, attestation_type, cert_serial, cert_not_after, selectors, banned, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (spiffe_id) DO UPDATE SET attestation_type = $2, cert_serial = $3, \
             cert_not_after = $4, selectors = $5, banned = $6, updated_at = $7",
        )
        .bind(node.spiffe_id.as_str())
        .bind(&node.attestation_type)
        .bind(&node.cert_serial)
        .bind(node.cert_not_after)
        .bind(selectors)
        .bind(i64::from(node.banned))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The node with this SPIFFE ID.
    pub async fn get_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        let row = sqlx::query(
            "SELECT spiffe_id, attestation_type, cert_serial, cert_not_after, selectors, banned FROM nodes WHERE spiffe_id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("node {id}")))?;
        row_to_node(&row)
    }

    /// Every node.
    pub async fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        let rows = sqlx::query(
            "SELECT spiffe_id, attestation_type, cert_serial, cert_not_after, selectors, banned FROM nodes ORDER BY spiffe_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_node).collect()
    }

    /// Bans a node: it may not renew or re-attest, and its sync streams end on every replica
    /// (the ban is a registration change, issue 18).
    pub async fn ban_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE nodes SET banned = 1, updated_at = $2 WHERE spiffe_id = $1 \
             RETURNING spiffe_id, attestation_type, cert_serial, cert_not_after, selectors, banned",
        )
        .bind(id.as_str())
        .bind(now_unix())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("node {id}")))?;
        Self::registration_changed(&mut tx, None, Some(id)).await?;
        tx.commit().await?;
        row_to_node(&row)
    }

    /// Deletes a node (its sync streams end on every replica, as for a ban).
    pub async fn delete_node(&self, id: &SpiffeId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM nodes WHERE spiffe_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("node {id}")));
        }
        Self::registration_changed(&mut tx, None, Some(id)).await?;
        tx.commit().await?;
        Ok(())
    }
}
