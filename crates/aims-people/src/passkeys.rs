//! Passkeys (WebAuthn Level 3 through `webauthn-rs`; AIMS AZ-11): registration and sign-in
//! ceremonies. The ceremony state waits in the store between its two steps (any replica can
//! finish what another started), keyed by the hash of a handle the page holds.

use aims_credentials::jose::{random_b64url, sha256_b64url};
use aims_store::UserRow;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::{People, PeopleError};

const REGISTRATION: &str = "webauthn-registration";
const AUTHENTICATION: &str = "webauthn-authentication";
/// How long a ceremony may take (WebAuthn's recommended timeout is 5 minutes).
const CEREMONY_TTL: i64 = 300;

/// The WebAuthn relying party.
pub struct Passkeys {
    webauthn: Webauthn,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys").finish_non_exhaustive()
    }
}

impl Passkeys {
    /// The relying party for pages at `public_url`: its host is the RP ID (WebAuthn §5.1.4
    /// forbids IP addresses), its origin the only one accepted.
    pub fn new(public_url: &str, rp_name: &str) -> Result<Self, PeopleError> {
        let unavailable = |m: String| PeopleError::PasskeysUnavailable(m);
        let origin =
            Url::parse(public_url).map_err(|e| unavailable(format!("{public_url}: {e}")))?;
        let host = match origin.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(_) => {
                return Err(unavailable(
                    "the public URL names an IP address; WebAuthn needs a host name (for a local stack, localhost)".into(),
                ));
            }
            None => return Err(unavailable("the public URL has no host".into())),
        };
        let webauthn = WebauthnBuilder::new(&host, &origin)
            .and_then(|b| b.rp_name(rp_name).build())
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Self { webauthn })
    }
}

/// A passkey's credential ID as the browser names it (base64url).
fn credential_id(p: &Passkey) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        p.cred_id().as_slice(),
    )
}

fn webauthn_err(e: impl std::fmt::Display) -> PeopleError {
    PeopleError::WebAuthn(e.to_string())
}

fn to_json(v: &impl serde::Serialize) -> Result<Value, PeopleError> {
    serde_json::to_value(v).map_err(|e| PeopleError::Internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, PeopleError> {
    serde_json::from_value(v).map_err(|e| PeopleError::Invalid(format!("{what}: {e}")))
}

impl People {
    fn passkeys(&self) -> Result<&Passkeys, PeopleError> {
        self.passkeys.as_ref().ok_or_else(|| {
            PeopleError::PasskeysUnavailable("this server's public URL names no host".into())
        })
    }

    async fn stored_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, PeopleError> {
        self.store
            .passkeys_of(user_id)
            .await?
            .into_iter()
            .map(|v| from_json(v, "stored passkey"))
            .collect()
    }

    async fn keep_ceremony(&self, kind: &str, data: Value) -> Result<String, PeopleError> {
        let handle = random_b64url().map_err(|_| PeopleError::Internal("random".into()))?;
        self.store
            .put_flow(
                &sha256_b64url(handle.as_bytes()),
                kind,
                &data,
                self.now() + CEREMONY_TTL,
            )
            .await?;
        Ok(handle)
    }

    async fn take_ceremony(&self, kind: &str, handle: &str) -> Result<Value, PeopleError> {
        self.store
            .take_flow(&sha256_b64url(handle.as_bytes()), kind, self.now())
            .await?
            .ok_or(PeopleError::Expired("the passkey ceremony"))
    }

    /// Starts registering a passkey for `user`: the handle to finish with, and the options for
    /// `navigator.credentials.create()`.
    pub(crate) async fn registration_options(
        &self,
        user: &UserRow,
    ) -> Result<(String, Value), PeopleError> {
        let rp = self.passkeys()?;
        let existing = self.stored_passkeys(&user.user_id).await?;
        let exclude = existing
            .iter()
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let unique =
            Uuid::parse_str(&user.user_id).map_err(|e| PeopleError::Internal(e.to_string()))?;
        let (options, state) = rp
            .webauthn
            .start_passkey_registration(unique, &user.username, &user.display_name, Some(exclude))
            .map_err(webauthn_err)?;
        let handle = self
            .keep_ceremony(
                REGISTRATION,
                json!({"user_id": user.user_id, "state": to_json(&state)?}),
            )
            .await?;
        Ok((handle, to_json(&options)?))
    }

    /// Finishes a registration: verifies the attestation and stores the passkey. Returns the
    /// user it belongs to.
    pub(crate) async fn finish_registration(
        &self,
        handle: &str,
        credential: Value,
    ) -> Result<String, PeopleError> {
        let rp = self.passkeys()?;
        let ceremony = self.take_ceremony(REGISTRATION, handle).await?;
        let user_id = ceremony["user_id"].as_str().unwrap_or_default().to_owned();
        let state: PasskeyRegistration = from_json(ceremony["state"].clone(), "ceremony")?;
        let credential: RegisterPublicKeyCredential = from_json(credential, "credential")?;
        let passkey = rp
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(webauthn_err)?;
        let id = credential_id(&passkey);
        self.store
            .put_passkey(&id, &user_id, &to_json(&passkey)?, self.now())
            .await?;
        tracing::info!(user_id = %user_id, credential = %id, "passkey registered");
        Ok(user_id)
    }

    /// Starts a passkey sign-in for `username`.
    pub(crate) async fn sign_in_options(
        &self,
        username: &str,
    ) -> Result<(String, Value), PeopleError> {
        let rp = self.passkeys()?;
        let user = match self.store.get_user(username).await {
            Ok(u) if !u.disabled => u,
            Ok(_) | Err(aims_store::StoreError::NotFound(_)) => {
                return Err(PeopleError::SignInFailed);
            }
            Err(e) => return Err(e.into()),
        };
        let keys = self.stored_passkeys(&user.user_id).await?;
        if keys.is_empty() {
            return Err(PeopleError::SignInFailed);
        }
        let (options, state) = rp
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(webauthn_err)?;
        let handle = self
            .keep_ceremony(
                AUTHENTICATION,
                json!({"user_id": user.user_id, "state": to_json(&state)?}),
            )
            .await?;
        Ok((handle, to_json(&options)?))
    }

    /// Finishes a passkey sign-in: verifies the assertion against the user's passkeys and
    /// keeps the authenticator's new signature counter.
    pub(crate) async fn finish_sign_in(
        &self,
        handle: &str,
        credential: Value,
    ) -> Result<UserRow, PeopleError> {
        let rp = self.passkeys()?;
        let ceremony = self.take_ceremony(AUTHENTICATION, handle).await?;
        let user_id = ceremony["user_id"].as_str().unwrap_or_default().to_owned();
        let state: PasskeyAuthentication = from_json(ceremony["state"].clone(), "ceremony")?;
        let credential: PublicKeyCredential = from_json(credential, "credential")?;
        let result = rp
            .webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(|e| {
                tracing::info!(user_id = %user_id, error = %e, "passkey sign-in refused");
                PeopleError::SignInFailed
            })?;
        for mut key in self.stored_passkeys(&user_id).await? {
            if key.update_credential(&result).is_some() {
                let id = credential_id(&key);
                self.store
                    .put_passkey(&id, &user_id, &to_json(&key)?, self.now())
                    .await?;
            }
        }
        let user = self.store.get_user(&user_id).await?;
        if user.disabled {
            return Err(PeopleError::SignInFailed);
        }
        Ok(user)
    }
}
