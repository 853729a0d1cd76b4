//! One-time values remembered across restarts and replicas (issue 16; RFC 7523 §3, RFC 8417
//! §2.2, AIMS AU-11): a client assertion's or a received SET's `jti` is admitted once per scope
//! until it expires, whichever replica sees it, before or after a restart.

use crate::{Store, StoreError};

impl Store {
    /// Admits `jti` in `scope` once: `true` the first time, `false` while it is remembered
    /// (until `expires_at`, Unix seconds). Expired values are swept now and then.
    pub async fn first_use(
        &self,
        scope: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        // A sweep on about one insert in 256 keeps the table to the live window without a
        // scan per request.
        if jti.bytes().fold(0u8, |a, b| a.wrapping_add(b)) == 0 {
            sqlx::query("DELETE FROM used_jtis WHERE expires_at < $1")
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        let done = sqlx::query(
            "INSERT INTO used_jtis (scope, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, jti) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE used_jtis.expires_at < $4",
        )
        .bind(scope)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
