//! Issued-credential records: what was issued to whom and until when (serial or token digest,
//! SPIFFE ID, expiry), so operators and compliance can account for every credential. A
//! workload's private key is never stored.

use aims_core::SpiffeId;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::{Store, StoreError};

/// The kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// An X509-SVID.
    X509Svid,
    /// A JWT-SVID.
    JwtSvid,
    /// A WIT-SVID.
    WitSvid,
}

impl CredentialKind {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::X509Svid => "x509-svid",
            CredentialKind::JwtSvid => "jwt-svid",
            CredentialKind::WitSvid => "wit-svid",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "x509-svid" => Ok(CredentialKind::X509Svid),
            "jwt-svid" => Ok(CredentialKind::JwtSvid),
            "wit-svid" => Ok(CredentialKind::WitSvid),
            other => Err(StoreError::Invalid(format!("credential kind {other:?}"))),
        }
    }
}

/// A record of one issued credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// Its kind.
    pub kind: CredentialKind,
    /// Certificate serial (hex), or the SHA-256 of a token (base64url): never the token.
    pub serial: String,
    /// The identity it names.
    pub spiffe_id: SpiffeId,
    /// Issuance, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The CA slot that signed it.
    pub issuer: String,
}

impl Store {
    /// Records an issued credential.
    pub async fn record_issued(&self, c: &IssuedCredential) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO issued_credentials (kind, serial, spiffe_id, issued_at, expires_at, issuer) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.kind.as_str())
        .bind(&c.serial)
        .bind(c.spiffe_id.as_str())
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(&c.issuer)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The most recent issued credentials (newest first), optionally for one SPIFFE ID.
    pub async fn list_issued(
        &self,
        spiffe_id: Option<&SpiffeId>,
        limit: u32,
    ) -> Result<Vec<IssuedCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, serial, spiffe_id, issued_at, expires_at, issuer FROM issued_credentials \
             WHERE ($1 = '' OR spiffe_id = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(spiffe_id.map_or("", SpiffeId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("spiffe_id")?;
                Ok(IssuedCredential {
                    kind: CredentialKind::parse(&r.try_get::<String, _>("kind")?)?,
                    serial: r.try_get("serial")?,
                    spiffe_id: SpiffeId::parse(&id)
                        .map_err(|e| StoreError::Invalid(format!("stored SPIFFE ID: {e}")))?,
                    issued_at: r.try_get("issued_at")?,
                    expires_at: r.try_get("expires_at")?,
                    issuer: r.try_get("issuer")?,
                })
            })
            .collect()
    }

    /// Deletes records of credentials that expired before `before`; returns how many.
    pub async fn prune_issued(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM issued_credentials WHERE expires_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
