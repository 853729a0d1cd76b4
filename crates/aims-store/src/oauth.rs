//! OAuth state: registered clients, the tokens the authorization server must remember (opaque
//! access tokens, refresh tokens with their rotation families) and revoked JWT access tokens.
//! Tokens are kept by their SHA-256 only.

use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::{Store, StoreError, now_unix};

/// How a client came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    /// By an operator through the admin API.
    Admin,
    /// By RFC 7591 dynamic registration.
    Dynamic,
    /// Fetched as a client ID metadata document.
    MetadataDocument,
}

impl ClientSource {
    fn as_str(self) -> &'static str {
        match self {
            ClientSource::Admin => "admin",
            ClientSource::Dynamic => "dynamic",
            ClientSource::MetadataDocument => "metadata_document",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(ClientSource::Admin),
            "dynamic" => Ok(ClientSource::Dynamic),
            "metadata_document" => Ok(ClientSource::MetadataDocument),
            other => Err(StoreError::Invalid(format!("client source {other:?}"))),
        }
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthClientRow {
    /// `client_id`.
    pub client_id: String,
    /// RFC 7591 client metadata.
    pub metadata: serde_json::Value,
    /// SHA-256 of a legacy client secret, if the client has one.
    pub secret_hash: Option<String>,
    /// How it was registered.
    pub source: ClientSource,
    /// Registration time, Unix seconds.
    pub created_at: i64,
}

/// What kind of token a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An opaque access token.
    Access,
    /// A refresh token.
    Refresh,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "access" => Ok(TokenKind::Access),
            "refresh" => Ok(TokenKind::Refresh),
            other => Err(StoreError::Invalid(format!("token kind {other:?}"))),
        }
    }
}

/// A token the server remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// SHA-256 of the token (base64url).
    pub token_hash: String,
    /// Its kind.
    pub kind: TokenKind,
    /// Its `jti`.
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its subject.
    pub subject: String,
    /// What introspection answers (and a refresh reissues), JSON.
    pub claims: serde_json::Value,
    /// Refresh tokens: the rotation family.
    pub family: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Refresh tokens: when it was spent (rotated); a spent one is no longer active.
    pub used_at: Option<i64>,
}

/// What happened when a refresh token was presented.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshUse {
    /// First use: here is the record; it is now spent.
    Fresh(Box<TokenRecord>),
    /// It had been used before: the whole family was revoked (RFC 9700 §4.14.2).
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

fn row_to_token(r: &sqlx::any::AnyRow) -> Result<TokenRecord, StoreError> {
    let claims: String = r.try_get("claims")?;
    let kind: String = r.try_get("kind")?;
    Ok(TokenRecord {
        token_hash: r.try_get("token_hash")?,
        kind: TokenKind::parse(&kind)?,
        jti: r.try_get("jti")?,
        client_id: r.try_get("client_id")?,
        subject: r.try_get("subject")?,
        claims: serde_json::from_str(&claims)
            .map_err(|e| StoreError::Invalid(format!("stored token claims: {e}")))?,
        family: r.try_get("family")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        used_at: r.try_get("used_at")?,
    })
}

const TOKEN_COLUMNS: &str =
    "token_hash, kind, jti, client_id, subject, claims, family, expires_at, revoked_at, used_at";

impl Store {
    /// Registers (or replaces) a client.
    pub async fn put_client(&self, client: &OAuthClientRow) -> Result<(), StoreError> {
        let now = now_unix();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO oauth_clients (client_id, metadata, secret_hash, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id) DO UPDATE SET \
             metadata = $2, secret_hash = $3, source = $4, updated_at = $6",
        )
        .bind(&client.client_id)
        .bind(client.metadata.to_string())
        .bind(client.secret_hash.clone())
        .bind(client.source.as_str())
        .bind(client.created_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::bump(&mut *tx, crate::Counter::Clients).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A registered client.
    pub async fn get_client(&self, client_id: &str) -> Result<OAuthClientRow, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, metadata, secret_hash, source, created_at FROM oauth_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
        row_to_client(&row)
    }

    /// Every registered client.
    pub async fn list_clients(&self) -> Result<Vec<OAuthClientRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, metadata, secret_hash, source, created_at FROM oauth_clients ORDER BY client_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_client).collect()
    }

    /// Deletes a client.
    pub async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("client {client_id}")));
        }
        Self::bump(&mut *tx, crate::Counter::Clients).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remembers a token.
    pub async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_tokens (token_hash, kind, jti, client_id, subject, claims, family, \
             expires_at, used_at, revoked_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10)",
        )
        .bind(&t.token_hash)
        .bind(t.kind.as_str())
        .bind(&t.jti)
        .bind(&t.client_id)
        .bind(&t.subject)
        .bind(t.claims.to_string())
        .bind(t.family.clone())
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A remembered token by its hash (revoked and expired ones included: the caller decides).
    pub async fn get_token(&self, token_hash: &str) -> Result<TokenRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound("token".into()))?;
        row_to_token(&row)
    }

    /// Spends a refresh token: once, before expiry, unrevoked. A second use revokes its whole
    /// family, so a stolen refresh token is worth one use at most to either party.
    pub async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<RefreshUse, StoreError> {
        let spent = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE oauth_tokens SET used_at = $1 WHERE token_hash = $2 AND kind = 'refresh' \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = spent {
            return Ok(RefreshUse::Fresh(Box::new(row_to_token(&row)?)));
        }
        let again: Option<(Option<String>, Option<i64>)> = sqlx::query(
            "SELECT family, used_at FROM oauth_tokens WHERE token_hash = $1 AND kind = 'refresh'",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("family")?, r.try_get("used_at")?)))
        .transpose()?;
        match again {
            Some((Some(family), Some(_))) => {
                self.revoke_family(&family, now).await?;
                Ok(RefreshUse::Reused)
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    /// Revokes a remembered token; returns whether one was found.
    pub async fn revoke_token(&self, token_hash: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Revokes the remembered (opaque) tokens with `jti`.
    pub async fn revoke_tokens_with_jti(&self, jti: &str, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(jti)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Revokes every token of a refresh family.
    pub async fn revoke_family(&self, family: &str, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Revokes a self-contained token by `jti` until it would have expired.
    pub async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO oauth_revoked (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let revision = Self::bump(&mut *tx, crate::Counter::Revocation).await?;
        tx.commit().await?;
        self.note_revoked_jti(jti, expires_at, revision).await
    }

    /// Deletes tokens and revocations past their expiry; returns how many went.
    pub async fn prune_oauth(&self, now: i64) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM oauth_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let b = sqlx::query("DELETE FROM oauth_revoked WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.forget_revoked_jtis(now).await?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}

fn row_to_client(r: &sqlx::any::AnyRow) -> Result<OAuthClientRow, StoreError> {
    let metadata: String = r.try_get("metadata")?;
    let source: String = r.try_get("source")?;
    Ok(OAuthClientRow {
        client_id: r.try_get("client_id")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Invalid(format!("stored client metadata: {e}")))?,
        secret_hash: r.try_get("secret_hash")?,
        source: ClientSource::parse(&source)?,
        created_at: r.try_get("created_at")?,
    })
}
