//! # aims-people
//!
//! The people in the AIMS loop (draft-ietf-wimse-aims §10.4.1, §10.7): the users who delegate
//! to agents and approve what they do. A local user directory ([`users`]), sign-in with
//! passkeys (WebAuthn, AIMS AZ-11; [`passkeys`]) and an optional argon2id password an operator
//! can turn off, browser sessions in `__Host-` cookies with CSRF protection on every form
//! ([`session`]), and the pages people see ([`pages`]): sign-in, enrolment, their account with
//! passkeys and the consents they gave (which they can withdraw).
//!
//! The authorization server (`aims-oauth`) asks [`People::signed_in`] who is behind a browser
//! request, and wraps its own pages (consent, approvals) in [`pages::layout`].
#![forbid(unsafe_code)]

pub mod error;
pub mod pages;
pub mod passkeys;
pub mod session;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use aims_core::SharedClock;
use aims_store::Store;

pub use error::PeopleError;
pub use session::SignedIn;

/// How people sign in.
#[derive(Debug, Clone)]
pub struct PeopleSettings {
    /// The public origin of the pages (the authorization server's issuer URL): the WebAuthn
    /// relying party's origin, and the only `Origin` a form post may come from.
    pub public_url: String,
    /// The relying party name authenticators show.
    pub rp_name: String,
    /// Whether the password fallback is on (passkeys always are, where the host allows them).
    pub password_sign_in: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// How long an enrolment link stays valid.
    pub enrolment_ttl: Duration,
}

impl PeopleSettings {
    /// Defaults for pages served at `public_url`.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            rp_name: "AIMS".into(),
            password_sign_in: true,
            session_ttl: Duration::from_secs(8 * 3600),
            enrolment_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The people layer: directory, sign-in, sessions and pages.
pub struct People {
    /// Its settings.
    pub settings: PeopleSettings,
    store: Store,
    passkeys: Option<passkeys::Passkeys>,
    /// Password hashing is deliberately slow: a bounded number run at once, so a flood of
    /// sign-in attempts queues instead of starving the server.
    hashing: tokio::sync::Semaphore,
    clock: SharedClock,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People")
            .field("public_url", &self.settings.public_url)
            .finish_non_exhaustive()
    }
}

impl People {
    /// The people layer over `store`. Passkeys need the public URL's host to be a domain name
    /// (WebAuthn forbids IP addresses as relying party IDs): on an IP address they are off,
    /// and a warning says so.
    pub fn new(
        settings: PeopleSettings,
        store: Store,
        clock: SharedClock,
    ) -> Result<Arc<Self>, PeopleError> {
        let passkeys = match passkeys::Passkeys::new(&settings.public_url, &settings.rp_name) {
            Ok(p) => Some(p),
            Err(PeopleError::PasskeysUnavailable(why)) => {
                tracing::warn!(public_url = %settings.public_url, %why, "passkey sign-in is off");
                None
            }
            Err(e) => return Err(e),
        };
        if passkeys.is_none() && !settings.password_sign_in {
            return Err(PeopleError::Config(
                "no way to sign in: passkeys need a host name in the public URL, and the password fallback is off".into(),
            ));
        }
        Ok(Arc::new(Self {
            settings,
            store,
            passkeys,
            hashing: tokio::sync::Semaphore::new(4),
            clock,
        }))
    }

    pub(crate) fn now(&self) -> i64 {
        aims_core::unix_seconds(self.clock.now())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether passkeys can be used here.
    pub fn passkeys_enabled(&self) -> bool {
        self.passkeys.is_some()
    }
}
