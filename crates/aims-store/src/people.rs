//! People in the loop (AIMS AZ-10…AZ-14, AZ-27…AZ-33): users, their passkeys and sessions,
//! short-lived flow state, authorization codes, remembered consent and CIBA requests. Every
//! secret handle (session cookie, code, `auth_req_id`, flow handle) is kept by its hash.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;

use crate::{Store, StoreError};

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// Stable identifier, never reused: the `sub` of the tokens the user delegates.
    pub user_id: String,
    /// The name the user signs in with.
    pub username: String,
    /// The name pages show.
    pub display_name: String,
    /// argon2id PHC string, if the user has a password.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    /// May use the console and approve for others' agents' administration.
    pub is_admin: bool,
    /// Disabled users cannot sign in; their sessions end.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the cookie value.
    pub session_hash: String,
    /// Who.
    pub user_id: String,
    /// How they signed in (RFC 8176 `amr` value).
    pub method: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// An authorization code's record.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRow {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who approved.
    pub user_id: String,
    /// What was approved.
    pub request: Value,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What presenting a code found.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeUse {
    /// First use: it is now spent.
    Fresh(Box<CodeRow>),
    /// Used before (RFC 6749 §4.1.2: the tokens it issued should be revoked): what it issued.
    Reused(Option<Value>),
    /// Unknown or expired.
    Invalid,
}

/// The state of a CIBA request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CibaStatus {
    /// Waiting for the user.
    Pending,
    /// Approved, token not yet issued.
    Approved,
    /// Denied by the user.
    Denied,
    /// Approved and its token issued.
    Redeemed,
}

impl CibaStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Redeemed => "redeemed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "denied" => Ok(Self::Denied),
            "redeemed" => Ok(Self::Redeemed),
            other => Err(StoreError::Invalid(format!("CIBA status {other:?}"))),
        }
    }
}

/// A CIBA backchannel authentication request.
#[derive(Debug, Clone, PartialEq)]
pub struct CibaRow {
    /// SHA-256 of `auth_req_id`.
    pub id_hash: String,
    /// The approval's public reference.
    pub approval_id: String,
    /// The requesting client.
    pub client_id: String,
    /// The user asked.
    pub user_id: String,
    /// What is asked, JSON.
    pub request: Value,
    /// Where it stands.
    pub status: CibaStatus,
    /// The poll interval, seconds.
    pub interval_secs: i64,
    /// The last poll, Unix seconds.
    pub last_polled_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When the user decided.
    pub decided_at: Option<i64>,
}

const USER_COLUMNS: &str =
    "user_id, username, display_name, password_hash, is_admin, disabled, created_at";
const CIBA_COLUMNS: &str = "id_hash, approval_id, client_id, user_id, request, status, \
     interval_secs, last_polled_at, created_at, expires_at, decided_at";

fn json_of(r: &sqlx::any::AnyRow, column: &str) -> Result<Value, StoreError> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Invalid(format!("stored {column}: {e}")))
}

fn row_to_user(r: &sqlx::any::AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        password_hash: r.try_get("password_hash")?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

fn row_to_ciba(r: &sqlx::any::AnyRow) -> Result<CibaRow, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(CibaRow {
        id_hash: r.try_get("id_hash")?,
        approval_id: r.try_get("approval_id")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        request: json_of(r, "request")?,
        status: CibaStatus::parse(&status)?,
        interval_secs: r.try_get("interval_secs")?,
        last_polled_at: r.try_get("last_polled_at")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        decided_at: r.try_get("decided_at")?,
    })
}

impl Store {
    /// Creates a user; a taken username is a conflict.
    pub async fn create_user(&self, u: &UserRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO users (user_id, username, display_name, password_hash, is_admin, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&u.user_id)
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(u.password_hash.clone())
        .bind(i64::from(u.is_admin))
        .bind(i64::from(u.disabled))
        .bind(u.created_at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user {} exists", u.username)));
        }
        Ok(())
    }

    /// A user by id or by username.
    pub async fn get_user(&self, id_or_name: &str) -> Result<UserRow, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE user_id = $1 OR username = $1"
        )))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {id_or_name}")))?;
        row_to_user(&row)
    }

    /// Every user, by username.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_user).collect()
    }

    /// Disables or enables a user; disabling ends their sessions.
    pub async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE users SET disabled = $1 WHERE user_id = $2")
            .bind(i64::from(disabled))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        if disabled {
            sqlx::query("DELETE FROM user_sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Sets or clears a user's password hash.
    pub async fn set_password_hash(
        &self,
        user_id: &str,
        hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// Deletes a user with their passkeys, sessions, consents and pending requests.
    pub async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM users WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        for table in [
            "user_passkeys",
            "user_sessions",
            "consents",
            "ciba_requests",
            "authorization_codes",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_id = $1"
            )))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores (or updates) a passkey.
    pub async fn put_passkey(
        &self,
        credential_id: &str,
        user_id: &str,
        passkey: &Value,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_passkeys (credential_id, user_id, passkey, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (credential_id) DO UPDATE SET \
             passkey = $3, last_used_at = $4 WHERE user_passkeys.user_id = $2",
        )
        .bind(credential_id)
        .bind(user_id)
        .bind(passkey.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's passkeys.
    pub async fn passkeys_of(&self, user_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows =
            sqlx::query("SELECT passkey FROM user_passkeys WHERE user_id = $1 ORDER BY created_at")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| json_of(r, "passkey")).collect()
    }

    /// Starts a session.
    pub async fn put_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_sessions (session_hash, user_id, method, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.session_hash)
        .bind(&s.user_id)
        .bind(&s.method)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A live session and its (enabled) user.
    pub async fn live_session(
        &self,
        session_hash: &str,
        now: i64,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.session_hash, s.method, s.created_at AS s_created_at, s.expires_at, \
             {cols} FROM user_sessions s JOIN users u ON u.user_id = s.user_id \
             WHERE s.session_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
            cols = USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(session_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let user = row_to_user(&r)?;
            Ok((
                SessionRow {
                    session_hash: r.try_get("session_hash")?,
                    user_id: user.user_id.clone(),
                    method: r.try_get("method")?,
                    created_at: r.try_get("s_created_at")?,
                    expires_at: r.try_get("expires_at")?,
                },
                user,
            ))
        })
        .transpose()
    }

    /// Ends a session.
    pub async fn delete_session(&self, session_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM user_sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps flow state until `expires_at`.
    pub async fn put_flow(
        &self,
        state_hash: &str,
        kind: &str,
        data: &Value,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO flow_states (state_hash, kind, data, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(state_hash)
        .bind(kind)
        .bind(data.to_string())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Flow state of `kind`, unexpired, left in place.
    pub async fn get_flow(
        &self,
        state_hash: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<Value>, StoreError> {
        sqlx::query(
            "SELECT data FROM flow_states WHERE state_hash = $1 AND kind = $2 AND expires_at > $3",
        )
        .bind(state_hash)
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| json_of(&r, "data"))
        .transpose()
    }

    /// Flow state of `kind`, unexpired, consumed: a second take finds nothing.
    pub async fn take_flow(
        &self,
        state_hash: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<Value>, StoreError> {
        sqlx::query(
            "DELETE FROM flow_states WHERE state_hash = $1 AND kind = $2 RETURNING data, expires_at",
        )
        .bind(state_hash)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?
        .filter(|r| r.try_get::<i64, _>("expires_at").is_ok_and(|e| e > now))
        .map(|r| json_of(&r, "data"))
        .transpose()
    }

    /// Stores an authorization code.
    pub async fn put_code(&self, c: &CodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, request, expires_at, used_at, issued) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(c.request.to_string())
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a code for `client_id`: once, before expiry (RFC 6749 §4.1.2). A code presented
    /// by another client is neither spent nor reported reused: a thief holding some client's
    /// credentials cannot burn it or revoke what it issued.
    pub async fn use_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<CodeUse, StoreError> {
        let spent = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND client_id = $3 \
             AND used_at IS NULL AND expires_at > $1 RETURNING code_hash, client_id, user_id, request, expires_at",
        )
        .bind(now)
        .bind(code_hash)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = spent {
            return Ok(CodeUse::Fresh(Box::new(CodeRow {
                code_hash: r.try_get("code_hash")?,
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                request: json_of(&r, "request")?,
                expires_at: r.try_get("expires_at")?,
            })));
        }
        let again =
            sqlx::query("SELECT issued, used_at FROM authorization_codes WHERE code_hash = $1 AND client_id = $2")
                .bind(code_hash)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        match again {
            Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                let issued: Option<String> = r.try_get("issued")?;
                Ok(CodeUse::Reused(
                    issued.and_then(|s| serde_json::from_str(&s).ok()),
                ))
            }
            _ => Ok(CodeUse::Invalid),
        }
    }

    /// Records what redeeming a code issued.
    pub async fn set_code_issued(&self, code_hash: &str, issued: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE authorization_codes SET issued = $1 WHERE code_hash = $2")
            .bind(issued.to_string())
            .bind(code_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remembers a user's consent to a client.
    pub async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        grant: &Value,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, grant_data, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET grant_data = $3, granted_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(grant.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's remembered consents: (client_id, grant, granted_at).
    pub async fn consents_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, Value, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, grant_data, granted_at FROM consents WHERE user_id = $1 ORDER BY client_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("client_id")?,
                    json_of(r, "grant_data")?,
                    r.try_get("granted_at")?,
                ))
            })
            .collect()
    }

    /// Withdraws a consent; returns whether there was one.
    pub async fn delete_consent(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Stores a new CIBA request.
    pub async fn put_ciba(&self, c: &CibaRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ciba_requests (id_hash, approval_id, client_id, user_id, request, status, \
             interval_secs, last_polled_at, created_at, expires_at, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&c.id_hash)
        .bind(&c.approval_id)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(c.request.to_string())
        .bind(c.status.as_str())
        .bind(c.interval_secs)
        .bind(c.last_polled_at)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.decided_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A CIBA request by the hash of its `auth_req_id`, or by its approval id.
    pub async fn get_ciba(&self, id_hash_or_approval: &str) -> Result<CibaRow, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CIBA_COLUMNS} FROM ciba_requests WHERE id_hash = $1 OR approval_id = $1"
        )))
        .bind(id_hash_or_approval)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound("CIBA request".into()))?;
        row_to_ciba(&row)
    }

    /// Records a poll and the interval from now on.
    pub async fn ciba_polled(
        &self,
        id_hash: &str,
        now: i64,
        interval_secs: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE ciba_requests SET last_polled_at = $1, interval_secs = $2 WHERE id_hash = $3",
        )
        .bind(now)
        .bind(interval_secs)
        .bind(id_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user's decision on a pending, unexpired request addressed to them; returns whether
    /// it took effect.
    pub async fn decide_ciba(
        &self,
        approval_id: &str,
        user_id: &str,
        approve: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let status = if approve {
            CibaStatus::Approved
        } else {
            CibaStatus::Denied
        };
        let r = sqlx::query(
            "UPDATE ciba_requests SET status = $1, decided_at = $2 WHERE approval_id = $3 \
             AND user_id = $4 AND status = 'pending' AND expires_at > $2",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(approval_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Marks an approved request redeemed; returns whether this call did (a token is issued
    /// once).
    pub async fn redeem_ciba(&self, id_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE ciba_requests SET status = 'redeemed' WHERE id_hash = $1 AND status = 'approved'",
        )
        .bind(id_hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Requests awaiting `user_id`'s decision, oldest first.
    pub async fn pending_ciba(&self, user_id: &str, now: i64) -> Result<Vec<CibaRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CIBA_COLUMNS} FROM ciba_requests WHERE user_id = $1 AND status = 'pending' \
             AND expires_at > $2 ORDER BY created_at"
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_ciba).collect()
    }

    /// Deletes expired sessions, flow state, codes and CIBA requests (a day after expiry, so a
    /// late poll still hears `expired_token`); returns how many went.
    pub async fn prune_people(&self, now: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for (table, horizon) in [
            ("user_sessions", now),
            ("flow_states", now),
            ("authorization_codes", now - 86_400),
            ("ciba_requests", now - 86_400),
        ] {
            n += sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE expires_at <= $1"
            )))
            .bind(horizon)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(n)
    }
}
