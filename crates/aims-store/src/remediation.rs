//! Revoked principals (AIMS MO-3…MO-5): a revocation kills the principal's remembered tokens
//! at once, marks every self-contained token issued before it inactive, and refuses new tokens
//! until it is lifted.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// A stored revocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// The principal (SPIFFE ID, client id or user).
    pub principal: String,
    /// When, Unix seconds: tokens issued at or before it are inactive.
    pub revoked_at: i64,
    /// Why (operator's words or the signal that caused it).
    pub cause: String,
    /// When it was lifted, if it was: new tokens may be issued again.
    pub lifted_at: Option<i64>,
    /// Who revoked: the issuer of the signal that did, or empty for the operator (or for
    /// several sources at once: then only the operator lifts it).
    pub revoked_by: String,
}

/// The columns [`revocation_row`] reads.
pub(crate) const REVOCATION_COLUMNS: &str = "principal, revoked_at, cause, lifted_at, revoked_by";

pub(crate) fn revocation_row(r: &sqlx::any::AnyRow) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        principal: r.try_get("principal")?,
        revoked_at: r.try_get("revoked_at")?,
        cause: r.try_get("cause")?,
        lifted_at: r.try_get("lifted_at")?,
        revoked_by: r.try_get("revoked_by")?,
    })
}

impl Store {
    /// Revokes `principal` at `now` (Unix seconds) for `cause`, in one transaction: the
    /// revocation stands (again) and every remembered token to or for it (opaque access tokens,
    /// refresh tokens and so their families) is revoked. Returns how many tokens were.
    /// `by` is the revoking signal's issuer, empty for the operator; a revocation standing from
    /// another source becomes the operator's to lift.
    pub async fn revoke_principal(
        &self,
        principal: &str,
        cause: &str,
        by: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO revoked_principals (principal, revoked_at, cause, lifted_at, revoked_by) \
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (principal) DO UPDATE SET \
             revoked_at = excluded.revoked_at, cause = excluded.cause, lifted_at = NULL, \
             revoked_by = CASE WHEN revoked_principals.lifted_at IS NULL \
             AND revoked_principals.revoked_by <> excluded.revoked_by THEN '' \
             ELSE excluded.revoked_by END",
        )
        .bind(principal)
        .bind(now)
        .bind(cause)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $1 \
             WHERE (client_id = $2 OR subject = $2) AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(principal)
        .execute(&mut *tx)
        .await?;
        let revision = Self::bump(&mut *tx, crate::Counter::Revocation).await?;
        tx.commit().await?;
        self.refresh_revocation(principal, revision).await?;
        Ok(done.rows_affected())
    }

    /// Lifts the revocation of `principal` at `now`: new tokens may be issued again; tokens
    /// from before the revocation stay inactive. `by` the operator (`None`) lifts any; a
    /// signal's issuer only what it revoked itself. Returns whether one was lifted.
    pub async fn lift_revocation(
        &self,
        principal: &str,
        by: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE revoked_principals SET lifted_at = $1 \
             WHERE principal = $2 AND lifted_at IS NULL AND ($3 IS NULL OR revoked_by = $3)",
        )
        .bind(now)
        .bind(principal)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        let revision = Self::bump(&mut *tx, crate::Counter::Revocation).await?;
        tx.commit().await?;
        self.refresh_revocation(principal, revision).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every revocation, newest first.
    pub async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let sql =
            format!("SELECT {REVOCATION_COLUMNS} FROM revoked_principals ORDER BY revoked_at DESC");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(revocation_row)
            .collect()
    }
}
