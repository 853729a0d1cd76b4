//! # aims-oauth
//!
//! The authorization layer of the AIMS stack (draft-ietf-wimse-aims §10): an OAuth 2.0
//! authorization server for agents. Agents authenticate with their SVIDs, never a static
//! secret (AIMS AZ-12); obtain tokens for themselves (client credentials, AZ-15), for a subject
//! they act for and along agent-to-agent chains (token exchange with a nested `act` for every
//! hop, AZ-14), transaction tokens for their internal call chains (AZ-19…AZ-22) and JWT
//! authorization grants for other domains (identity chaining, AZ-23…AZ-26). Access tokens are
//! RFC 9068 JWTs (or opaque, AZ-9), sender-constrained by DPoP or mutual TLS whenever the client
//! proves a key. Every grant asks a [`policy::PolicyDecisionPoint`].
//!
//! * [`endpoints`]: discovery, JWKS, token, introspection, revocation, registration.
//! * [`client_auth`]: SPIFFE (JWT-SVID, WIT-SVID, X509-SVID), private_key_jwt, legacy secrets;
//!   [`cimd`]: clients named by metadata document URLs, fetched by [`fetch`].
//! * [`grants`]: the grants; [`issue`]: minting, with [`signing`]; token formats, DPoP proofs
//!   and the resource server's check of a presented token are the token core's (`aims-token`),
//!   shared with the gateway. [`rar`]: authorization details narrowing.
#![forbid(unsafe_code)]

mod audience;
mod authorize;
mod ciba;
mod cimd;
mod client;
mod client_auth;
mod endpoints;
mod error;
mod form;
mod grants;
mod id_jag;
mod issue;
pub mod policy;
mod rar;
mod settings;
mod signing;
mod trusted;

use std::sync::Arc;
use std::time::Duration;

use aims_authn::replay::ReplayCache;
use aims_core::SharedClock;
use aims_credentials::BundleSource;
use aims_store::Store;
use aims_token::dpop::DpopVerifier;
use aims_token::keys::TokenKeys;

pub use aims_outbound::{FetchSettings, fetch};
pub use ciba::{APPROVALS_PATH, ApprovalNotice, Notifier};
pub use endpoints::{people_router, router};
pub use error::OAuthError;
pub use form::Form;
pub use settings::{AsSettings, ResourceServer, TokenFormat, TrustedIssuer};
pub use signing::sign_token;

/// The authorization server.
pub struct AuthorizationServer {
    /// Its settings.
    pub settings: AsSettings,
    keys: Arc<dyn TokenKeys>,
    bundles: Arc<dyn BundleSource>,
    store: Store,
    pdp: Arc<dyn policy::PolicyDecisionPoint>,
    replay: Arc<ReplayCache>,
    dpop: DpopVerifier,
    trusted: trusted::TrustedIssuers,
    fetcher: Arc<fetch::Fetcher>,
    notifier: Option<Arc<dyn ciba::Notifier>>,
    clients: client::ClientCache,
    svids: aims_authn::verified_cache::JwtSvidVerifier,
    access_tokens: aims_token::claims::OwnTokenVerifier<aims_token::claims::AccessClaims>,
    txn_services: aims_token::txn::TxnTokenServices,
    clock: SharedClock,
    /// The resources token exchanges may aim at.
    pub resources: audience::ResourceRegistry,
    /// The users who delegate and approve; without them no user-facing grant is offered.
    people: Option<Arc<aims_people::People>>,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// An authorization server signing with `keys`, trusting SVIDs that chain to `bundles`,
    /// keeping state in `store` and asking `pdp` about every grant.
    pub fn new(
        settings: AsSettings,
        keys: Arc<dyn TokenKeys>,
        bundles: Arc<dyn BundleSource>,
        store: Store,
        pdp: Arc<dyn policy::PolicyDecisionPoint>,
        clock: SharedClock,
    ) -> Result<Self, OAuthError> {
        let replay = Arc::new(ReplayCache::new(
            1_000_000,
            i64::try_from(settings.leeway.as_secs()).unwrap_or(60),
        ));
        let trusted = trusted::TrustedIssuers::new(&settings.trusted_issuers)
            .map_err(|e| OAuthError::server_error("trusted issuers", e))?;
        // A client's JWT-SVID is verified once until it expires or a bundle changes.
        let svids = aims_authn::verified_cache::JwtSvidVerifier::new(
            bundles.clone(),
            settings.issuer.clone(),
            100_000,
        );
        // Its own access tokens presented again (exchange, introspection) are verified once
        // while their key is published.
        let access_tokens =
            aims_token::claims::OwnTokenVerifier::new(aims_token::claims::AT_TYP, 100_000);
        let fetcher = Arc::new(
            fetch::Fetcher::new(&settings.fetch)
                .map_err(|e| OAuthError::server_error("outbound fetches", e))?,
        );
        let notifier = settings.approval_webhook.clone().map(|url| {
            Arc::new(ciba::WebhookNotifier::new(url, fetcher.clone())) as Arc<dyn ciba::Notifier>
        });
        let dpop = DpopVerifier::new(
            replay.clone(),
            settings.require_dpop_nonce,
            i64::try_from(settings.leeway.as_secs()).unwrap_or(60),
        )?;
        let txn_services = aims_token::txn::TxnTokenServices::new(
            settings.trust_domain.clone(),
            settings.txn_token_services.clone(),
            bundles.clone(),
        );
        Ok(Self {
            resources: audience::ResourceRegistry::new(settings.resources.clone()),
            settings,
            keys,
            bundles,
            store,
            pdp,
            replay,
            dpop,
            trusted,
            fetcher,
            notifier,
            clients: client::ClientCache::default(),
            svids,
            access_tokens,
            txn_services,
            clock,
            people: None,
        })
    }

    /// Offers the grants people take part in (authorization code, CIBA), signing them in
    /// through `people`.
    pub fn with_people(mut self, people: Arc<aims_people::People>) -> Self {
        self.people = Some(people);
        self
    }

    /// Keys DPoP nonces with `secret`, which every replica sharing the store holds
    /// ([`aims_store::Store::shared_secret`]), so a nonce one replica issued is good at all.
    pub fn with_dpop_nonce_secret(mut self, secret: &[u8]) -> Self {
        self.dpop = self.dpop.with_nonce_secret(secret);
        self
    }

    pub(crate) fn now(&self) -> i64 {
        aims_core::unix_seconds(self.clock.now())
    }

    /// One of its own access tokens, verified (RFC 9068 §4), or remembered from an earlier
    /// presentation while its key is published; revocation is the caller's check.
    pub(crate) fn own_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<aims_token::claims::AccessClaims, aims_token::TokenError> {
        self.access_tokens
            .verify(self.keys.as_ref(), &self.settings.issuer, token, now)
    }

    pub(crate) fn leeway(&self) -> i64 {
        i64::try_from(self.settings.leeway.as_secs()).unwrap_or(60)
    }

    pub(crate) fn ttl(&self, d: Duration) -> i64 {
        i64::try_from(d.as_secs()).unwrap_or(300)
    }

    /// The people layer, when users can sign in.
    pub fn people(&self) -> Option<&Arc<aims_people::People>> {
        self.people.as_ref()
    }

    /// A DPoP nonce for clients (the `DPoP-Nonce` header).
    pub fn dpop_nonce(&self) -> String {
        self.dpop.nonce(self.now())
    }
}
