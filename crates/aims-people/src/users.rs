//! The local user directory: create, disable, delete, enrol; argon2id passwords.

use aims_credentials::jose::{random_b64url, sha256_b64url};
use aims_store::{StoreError, UserRow};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use serde_json::json;

use crate::{People, PeopleError};

/// Flow-state kind of enrolment links.
pub(crate) const ENROLMENT: &str = "enrolment";
/// The shortest password accepted (NIST SP 800-63B §3.1.1.2).
const MIN_PASSWORD: usize = 12;
/// Longer inputs are refused before hashing.
const MAX_PASSWORD: usize = 256;

/// A new user as an operator describes it.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The sign-in name: 1–64 of `a-z A-Z 0-9 . _ @ -`.
    pub username: String,
    /// The name pages show; default the username.
    pub display_name: Option<String>,
    /// May sign in to the console.
    pub is_admin: bool,
    /// An initial password (only if the password fallback is on).
    pub password: Option<String>,
}

/// A user just created, with a link that lets them register their first passkey.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    /// The user.
    pub user: UserRow,
    /// The enrolment URL (single use).
    pub enrolment_url: String,
}

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

impl People {
    /// Creates a user and an enrolment link for them.
    pub async fn create_user(&self, new: NewUser) -> Result<Created, PeopleError> {
        if !valid_username(&new.username) {
            return Err(PeopleError::Invalid(
                "a username is 1–64 characters of letters, digits, '.', '_', '@' and '-'".into(),
            ));
        }
        let password_hash = match &new.password {
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let display_name = new
            .display_name
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| new.username.clone());
        if display_name.chars().count() > 128 {
            return Err(PeopleError::Invalid(
                "display name over 128 characters".into(),
            ));
        }
        let user = UserRow {
            user_id: uuid::Uuid::new_v4().to_string(),
            username: new.username,
            display_name,
            password_hash,
            is_admin: new.is_admin,
            disabled: false,
            created_at: self.now(),
        };
        self.store.create_user(&user).await?;
        tracing::info!(user = %user.username, user_id = %user.user_id, admin = user.is_admin, "user created");
        let enrolment_url = self.enrolment_link(&user.user_id).await?;
        Ok(Created {
            user,
            enrolment_url,
        })
    }

    /// A new single-use link with which `user` registers a passkey (or sets a password).
    pub async fn enrolment_link(&self, user: &str) -> Result<String, PeopleError> {
        let user = self.store.get_user(user).await?;
        let token = random_b64url().map_err(|_| PeopleError::Internal("random".into()))?;
        let ttl = i64::try_from(self.settings.enrolment_ttl.as_secs()).unwrap_or(86_400);
        self.store
            .put_flow(
                &sha256_b64url(token.as_bytes()),
                ENROLMENT,
                &json!({"user_id": user.user_id}),
                self.now() + ttl,
            )
            .await?;
        Ok(format!("{}/enroll?token={token}", self.settings.public_url))
    }

    /// The user an enrolment token is for (the token stays valid until used).
    pub(crate) async fn enrolling_user(&self, token: &str) -> Result<UserRow, PeopleError> {
        let state = self
            .store
            .get_flow(&sha256_b64url(token.as_bytes()), ENROLMENT, self.now())
            .await?
            .ok_or(PeopleError::Expired("the enrolment link"))?;
        let id = state["user_id"].as_str().unwrap_or_default();
        let user = self.store.get_user(id).await?;
        if user.disabled {
            return Err(PeopleError::Expired("the enrolment link"));
        }
        Ok(user)
    }

    /// Uses up an enrolment token.
    pub(crate) async fn finish_enrolment(&self, token: &str) -> Result<(), PeopleError> {
        self.store
            .take_flow(&sha256_b64url(token.as_bytes()), ENROLMENT, self.now())
            .await?
            .map(|_| ())
            .ok_or(PeopleError::Expired("the enrolment link"))
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, PeopleError> {
        Ok(self.store.list_users().await?)
    }

    /// Disables (ending their sessions) or enables a user.
    pub async fn set_disabled(&self, user: &str, disabled: bool) -> Result<UserRow, PeopleError> {
        let u = self.store.get_user(user).await?;
        self.store.set_user_disabled(&u.user_id, disabled).await?;
        tracing::info!(user = %u.username, disabled, "user updated");
        Ok(self.store.get_user(&u.user_id).await?)
    }

    /// Deletes a user with their passkeys, sessions, consents and pending approvals.
    pub async fn delete_user(&self, user: &str) -> Result<(), PeopleError> {
        let u = self.store.get_user(user).await?;
        self.store.delete_user(&u.user_id).await?;
        tracing::info!(user = %u.username, "user deleted");
        Ok(())
    }

    /// Sets a user's password.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), PeopleError> {
        let u = self.store.get_user(user).await?;
        let hash = self.hash_password(password).await?;
        self.store
            .set_password_hash(&u.user_id, Some(&hash))
            .await?;
        Ok(())
    }

    async fn hash_password(&self, password: &str) -> Result<String, PeopleError> {
        if !self.settings.password_sign_in {
            return Err(PeopleError::Invalid(
                "passwords are turned off on this server: use a passkey".into(),
            ));
        }
        let n = password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
            return Err(PeopleError::Invalid(format!(
                "a password is {MIN_PASSWORD}–{MAX_PASSWORD} characters"
            )));
        }
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| PeopleError::Internal("hashing closed".into()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            // argon2id v1.3, m=19 MiB, t=2, p=1 (the crate's defaults, OWASP's recommendation),
            // with a random 128-bit salt.
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| PeopleError::Internal(format!("argon2: {e}")))
        })
        .await
        .map_err(|e| PeopleError::Internal(e.to_string()))?
    }

    /// Checks a username and password; the same error whatever was wrong.
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRow, PeopleError> {
        if !self.settings.password_sign_in || password.len() > MAX_PASSWORD * 4 {
            return Err(PeopleError::SignInFailed);
        }
        let user = match self.store.get_user(username).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        // An unknown user costs the same hash as a known one: timing does not tell them apart.
        let stored = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| PeopleError::Internal("hashing closed".into()))?;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| PeopleError::Internal(e.to_string()))?;
        match user {
            Some(u) if ok && !u.disabled && u.password_hash.is_some() => Ok(u),
            _ => Err(PeopleError::SignInFailed),
        }
    }
}

/// An argon2id hash of a random password nobody knows, verified against when the user does not
/// exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3wdrWdcLduJ2TZcd8h8W/4BcGnw/h0lYCl+bTmHQgZE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b_c@d-e"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username("<script>"));
        assert!(!valid_username(&"a".repeat(65)));
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
