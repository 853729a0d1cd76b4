//! Client authentication at the token, introspection and revocation endpoints, with no static
//! secret by default (AIMS AZ-12, CR-9). In order of preference:
//!
//! * `spiffe_jwt`: a JWT-SVID as `client_assertion`, type
//!   `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`, `aud` exactly the issuer
//!   (draft-ietf-oauth-spiffe-client-auth-02 §3.1). A JWT-SVID may be presented again until it
//!   expires: no `jti` rule; its verification is remembered until then or until a bundle
//!   changes ([`aims_authn::verified_cache::JwtSvidVerifier`]).
//! * `spiffe_wit`: a WIT-SVID in `OAuth-Client-Attestation` and a PoP JWT signed with its `cnf`
//!   key in `OAuth-Client-Attestation-PoP` (§3.3; draft-ietf-oauth-attestation-based-client-auth-11
//!   §5.1, §7.2): PoP `aud` = issuer, a one-time `jti`, a recent `iat`.
//! * `spiffe_x509`: the X509-SVID of the mutual TLS connection (RFC 8705 §2.1), `client_id` equal
//!   to its SPIFFE ID (§3.2).
//! * `private_key_jwt`: an RFC 7523 assertion signed with a registered key, one-time `jti`,
//!   `aud` the issuer (rfc7523bis) or the token endpoint.
//! * `client_secret_basic` / `client_secret_post`: only when enabled for legacy clients.
//!
//! SPIFFE keys come from the trust bundles (ours and federated), so SPIFFE workloads need no
//! registration: their SPIFFE ID is their `client_id`. One method per request (RFC 6749 §2.3).

use std::sync::Arc;

use aims_authn::replay::ReplayKind;
use aims_authn::transport::ConnectionInfo;
use aims_core::SpiffeId;
use aims_credentials::jose::{
    ASYMMETRIC_ALGORITHMS, Audience, CompactJws, check_time, sha256_b64url,
};
use aims_credentials::{WitProfile, verify_wit};
use aims_token::wire::{JWT_BEARER_ASSERTION, JWT_BEARER_GRANT, JWT_SPIFFE_ASSERTION};
use axum::http::HeaderMap;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::AuthorizationServer;
use crate::client::{AuthMethod, ClientMetadata, KnownClient};
use crate::error::OAuthError;
use crate::form::Form;

/// The attestation header (ABCA-11 §4).
pub const ATTESTATION_HEADER: &str = "oauth-client-attestation";
/// The attestation PoP header (ABCA-11 §5.1).
pub const ATTESTATION_POP_HEADER: &str = "oauth-client-attestation-pop";
/// `typ` of an attestation PoP JWT.
pub const ATTESTATION_POP_TYP: &str = "oauth-client-attestation-pop+jwt";
/// The largest client JWK Set fetched from a `jwks_uri`.
const MAX_JWKS: usize = 64 * 1024;
/// How old a PoP or client assertion may be.
const ASSERTION_WINDOW: i64 = 300;

/// Why a one-time value (an assertion's `jti`) was not admitted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OneTimeError {
    /// Seen before, or the replay cache cannot hold it.
    #[error(transparent)]
    Replay(#[from] aims_authn::ReplayError),
    /// The store could not record it, so it cannot be known to be fresh (fail closed).
    #[error("the one-time value cannot be checked now")]
    Unavailable,
}

impl OneTimeError {
    /// The answer: `refuse` (the caller's code and context) for a replay,
    /// `temporarily_unavailable` when the store failed — the client may retry, it did nothing
    /// wrong.
    pub(crate) fn refusal(self, refuse: impl FnOnce(String) -> OAuthError) -> OAuthError {
        match self {
            Self::Replay(e) => refuse(e.to_string()),
            Self::Unavailable => OAuthError::unavailable(self.to_string()),
        }
    }
}

/// Whether an endpoint serves public clients (RFC 7591 `none`): the token endpoint (whose
/// grants then allow only the code and refresh grants), PAR (RFC 9126 §2.1) and revocation
/// (RFC 7009 §2.1) do; introspection and CIBA, which act on a client's own authority, do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicClients {
    /// A `client_id` alone names a public client.
    Accepted,
    /// Every client authenticates.
    Refused,
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    /// `client_id`: the SPIFFE ID of a SPIFFE workload, or the registered identifier.
    pub client_id: String,
    /// The SPIFFE ID it proved, if it authenticated with an SVID.
    pub spiffe_id: Option<SpiffeId>,
    /// How.
    pub method: AuthMethod,
    /// `x5t#S256` of the TLS client certificate, when the client authenticated with it.
    pub certificate_thumbprint: Option<String>,
    /// Registered metadata, for registered clients.
    pub metadata: Option<Arc<KnownClient>>,
    /// The W3C trace id the request came with (`traceparent`): the task's id in the audit
    /// records this request makes (AIMS MO-9).
    pub trace_id: Option<String>,
}

impl AuthenticatedClient {
    /// Whether this client may use `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.metadata
            .as_ref()
            .is_none_or(|m| m.metadata.allows_grant(grant_type))
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

fn invalid(m: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client(m)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, OAuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(invalid(format!("{name} appears more than once")));
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid(format!("{name} is not text")))
        })
        .transpose()
}

impl AuthorizationServer {
    /// The audiences a client assertion may carry: the issuer (rfc7523bis) or, for older
    /// clients, a token endpoint URL — always as the single value.
    fn assertion_audience_ok(&self, aud: Option<&Audience>) -> bool {
        let Some([one]) = aud.map(Audience::values) else {
            return false;
        };
        *one == self.settings.issuer
            || *one == self.settings.token_endpoint()
            || self.settings.mtls_token_endpoint().as_deref() == Some(one.as_str())
    }

    /// Authenticates the client of a request. A public client (no credential) is refused
    /// unless `public` accepts it.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        form: &Form,
        connection: Option<&ConnectionInfo>,
        public: PublicClients,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let basic = header(headers, "authorization")?.and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        });
        let attestation = header(headers, ATTESTATION_HEADER)?;
        let assertion = form.get("client_assertion");
        let secret = form.get("client_secret");
        let used = [
            basic.is_some(),
            attestation.is_some(),
            assertion.is_some(),
            secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if used > 1 {
            return Err(invalid(
                "more than one client authentication method in one request",
            ));
        }
        // MCP workload identity federation (SEP-1933), AIMS AZ-15: a workload's JWT-SVID for
        // this issuer, presented as the JWT bearer grant with no other credential,
        // authenticates the workload as the SPIFFE client assertion would (same checks: the
        // issuer the only audience). An assertion that is no such JWT-SVID (an ID-JAG of a
        // public client) goes on to the checks below.
        let svid_grant_client = match form.get("assertion") {
            Some(grant)
                if used == 0
                    && form.get("grant_type") == Some(JWT_BEARER_GRANT)
                    && connection.and_then(|c| c.peer_spiffe_id.as_ref()).is_none() =>
            {
                self.jwt_svid_client(grant, form.get("client_id"))
                    .await
                    .ok()
            }
            _ => None,
        };
        let mut client = if let Some(assertion) = assertion {
            match form.require("client_assertion_type")? {
                JWT_SPIFFE_ASSERTION => {
                    self.jwt_svid_client(assertion, form.get("client_id"))
                        .await?
                }
                JWT_BEARER_ASSERTION => {
                    self.private_key_jwt_client(assertion, form.get("client_id"))
                        .await?
                }
                other => {
                    return Err(invalid(format!(
                        "client_assertion_type {other:?} is not supported"
                    )));
                }
            }
        } else if let Some(wit) = attestation {
            let pop = header(headers, ATTESTATION_POP_HEADER)?
                .ok_or_else(|| invalid("OAuth-Client-Attestation-PoP is missing"))?;
            self.wit_svid_client(wit, pop, form.get("client_id"))
                .await?
        } else if let Some(b) = basic {
            let (id, secret) = decode_basic(b)?;
            self.secret_client(&id, &secret, AuthMethod::ClientSecretBasic)
                .await
                .map_err(|e| e.with_challenge("Basic realm=\"aims\"".into()))?
        } else if let Some(secret) = secret {
            let id = form
                .require("client_id")
                .map_err(|_| invalid("client_id is missing"))?;
            self.secret_client(id, secret, AuthMethod::ClientSecretPost)
                .await?
        } else if let Some(svid_client) = svid_grant_client {
            svid_client
        } else if public == PublicClients::Accepted
            && connection.and_then(|c| c.peer_spiffe_id.as_ref()).is_none()
            && let Some(id) = form.get("client_id")
        {
            self.public_client(id).await?
        } else {
            self.tls_client(form.get("client_id"), connection)?
        };
        client.trace_id = header(headers, "traceparent")?
            .and_then(aims_core::trace_context::parse_traceparent)
            .map(|(t, _)| t.to_owned());
        // Bind to the TLS client certificate when the client proved the same identity with it.
        if let Some(conn) = connection
            && let (Some(peer), Some(id)) = (&conn.peer_spiffe_id, &client.spiffe_id)
            && peer == id
        {
            client.certificate_thumbprint = conn
                .peer_certificates
                .as_deref()
                .and_then(|c| c.first())
                .map(|leaf| sha256_b64url(leaf));
        }
        Ok(client)
    }

    /// A SPIFFE workload, or a registered client associated with its SPIFFE ID (§5.1).
    async fn spiffe_client(
        &self,
        id: SpiffeId,
        client_id: Option<&str>,
        method: AuthMethod,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let (client_id, metadata) = match client_id {
            None => (id.to_string(), None),
            Some(c) if c == id.as_str() => (id.to_string(), None),
            Some(c) => {
                let metadata = self.registered(c).await?;
                if !metadata.metadata.allows_spiffe_id(&id) {
                    return Err(invalid(format!("client {c} is not associated with {id}")));
                }
                (c.to_owned(), Some(metadata))
            }
        };
        Ok(AuthenticatedClient {
            client_id,
            spiffe_id: Some(id),
            method,
            certificate_thumbprint: None,
            metadata,
            trace_id: None,
        })
    }

    async fn jwt_svid_client(
        &self,
        assertion: &str,
        client_id: Option<&str>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let svid = self
            .svids
            .verify(assertion, self.now(), self.leeway())
            .map_err(|e| invalid(format!("JWT-SVID client assertion rejected: {e}")))?;
        // rfc7523bis: the issuer is the only audience.
        if svid.audience.len() != 1 {
            return Err(invalid(
                "JWT-SVID client assertion: aud must be the issuer alone",
            ));
        }
        self.spiffe_client(svid.spiffe_id.clone(), client_id, AuthMethod::SpiffeJwt)
            .await
    }

    async fn wit_svid_client(
        &self,
        wit: &str,
        pop: &str,
        client_id: Option<&str>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let now = self.now();
        let wit = verify_wit(
            wit,
            self.bundles.as_ref(),
            WitProfile::WitSvid,
            now,
            self.leeway(),
        )
        .map_err(|e| invalid(format!("WIT-SVID client attestation rejected: {e}")))?;
        let id = wit
            .subject
            .as_spiffe()
            .cloned()
            .ok_or_else(|| invalid("the WIT-SVID subject is not a SPIFFE ID"))?;
        let jws = CompactJws::parse(pop).map_err(|e| invalid(format!("attestation PoP: {e}")))?;
        jws.header
            .require_typ(ATTESTATION_POP_TYP)
            .and_then(|()| jws.header.require_alg(ASYMMETRIC_ALGORITHMS))
            .map_err(|e| invalid(format!("attestation PoP: {e}")))?;
        if jws.header.alg != wit.cnf_alg {
            return Err(invalid("attestation PoP: alg differs from the WIT's cnf"));
        }
        jws.verify(&wit.cnf_key)
            .map_err(|e| invalid(format!("attestation PoP: {e}")))?;
        let c: AssertionClaims = jws
            .claims()
            .map_err(|e| invalid(format!("attestation PoP: {e}")))?;
        let aud_ok = matches!(c.aud.as_ref().map(Audience::values), Some([one]) if *one == self.settings.issuer);
        if !aud_ok {
            return Err(invalid("attestation PoP: aud must be the issuer"));
        }
        let iat = c
            .iat
            .ok_or_else(|| invalid("attestation PoP: iat is missing"))?;
        if iat > now + self.leeway() || iat < now - ASSERTION_WINDOW - self.leeway() {
            return Err(invalid(
                "attestation PoP: iat outside the acceptable window",
            ));
        }
        let jti = c
            .jti
            .ok_or_else(|| invalid("attestation PoP: jti is missing"))?;
        self.used_once(
            ReplayKind::ClientAssertion,
            &format!("pop:{id}"),
            &jti,
            iat.saturating_add(ASSERTION_WINDOW),
            now,
        )
        .await
        .map_err(|e| e.refusal(|m| invalid(format!("attestation PoP: {m}"))))?;
        // ABCA-11 §7.1(7): client_id, when given, is the attestation's subject.
        if client_id.is_some_and(|c| c != id.as_str()) {
            return Err(invalid("client_id differs from the WIT-SVID's SPIFFE ID"));
        }
        Ok(AuthenticatedClient {
            client_id: id.to_string(),
            spiffe_id: Some(id),
            method: AuthMethod::SpiffeWit,
            certificate_thumbprint: None,
            metadata: None,
            trace_id: None,
        })
    }

    /// A client that presented no credential: only one registered (or described by its
    /// metadata document) as public.
    async fn public_client(&self, client_id: &str) -> Result<AuthenticatedClient, OAuthError> {
        let known = self.registered(client_id).await?;
        if known.metadata.auth_method()? != AuthMethod::None {
            return Err(invalid("client authentication is required"));
        }
        Ok(AuthenticatedClient {
            client_id: client_id.to_owned(),
            spiffe_id: None,
            method: AuthMethod::None,
            certificate_thumbprint: None,
            metadata: Some(known),
            trace_id: None,
        })
    }

    fn tls_client(
        &self,
        client_id: Option<&str>,
        connection: Option<&ConnectionInfo>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let peer = connection
            .and_then(|c| c.peer_spiffe_id.clone())
            .ok_or_else(|| invalid("client authentication is required"))?;
        let client_id = client_id.ok_or_else(|| invalid("client_id is missing"))?;
        if client_id != peer.as_str() {
            return Err(invalid(
                "client_id differs from the SPIFFE ID of the TLS client certificate",
            ));
        }
        Ok(AuthenticatedClient {
            client_id: peer.to_string(),
            spiffe_id: Some(peer),
            method: AuthMethod::SpiffeX509,
            certificate_thumbprint: None,
            metadata: None,
            trace_id: None,
        })
    }

    /// A registered client, from the cache or the store. A client named by a metadata document
    /// URL resolves to that document (CIMD).
    pub(crate) async fn registered(&self, client_id: &str) -> Result<Arc<KnownClient>, OAuthError> {
        if let Some(known) = self.clients.get(client_id) {
            return Ok(known);
        }
        let (metadata, operator_registered) = if crate::cimd::is_document_url(client_id) {
            (self.metadata_document(client_id).await?, false)
        } else {
            match self.store.get_client(client_id).await {
                Ok(row) => (
                    serde_json::from_value(row.metadata)
                        .map_err(|e| OAuthError::server_error("stored client metadata", e))?,
                    row.source == aims_store::ClientSource::Admin,
                ),
                Err(aims_store::StoreError::NotFound(_)) => {
                    return Err(invalid(format!("unknown client {client_id}")));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let known = Arc::new(KnownClient {
            keys: metadata.keys()?,
            metadata,
            operator_registered,
        });
        self.clients.put(client_id, known.clone());
        Ok(known)
    }

    async fn private_key_jwt_client(
        &self,
        assertion: &str,
        client_id: Option<&str>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let now = self.now();
        let jws =
            CompactJws::parse(assertion).map_err(|e| invalid(format!("client assertion: {e}")))?;
        jws.header
            .require_alg(ASYMMETRIC_ALGORITHMS)
            .map_err(|e| invalid(format!("client assertion: {e}")))?;
        if jws.header.typ.is_some()
            && !jws.header.typ_is("client-authentication+jwt")
            && !jws.header.typ_is("JWT")
        {
            return Err(invalid("client assertion: unexpected typ"));
        }
        let c: AssertionClaims = jws
            .claims()
            .map_err(|e| invalid(format!("client assertion: {e}")))?;
        // RFC 7523 §3: iss and sub are the client_id.
        let id = match (&c.iss, &c.sub) {
            (Some(i), Some(s)) if i == s => i.clone(),
            _ => {
                return Err(invalid(
                    "client assertion: iss and sub must both be the client_id",
                ));
            }
        };
        if client_id.is_some_and(|c| c != id) {
            return Err(invalid("client_id differs from the assertion's subject"));
        }
        let known = self.registered(&id).await?;
        if known.metadata.auth_method()? != AuthMethod::PrivateKeyJwt {
            return Err(invalid(format!("client {id} does not use private_key_jwt")));
        }
        let fetched;
        let keys = match (&known.metadata.jwks, &known.metadata.jwks_uri) {
            (None, Some(uri)) => {
                fetched = self.jwks_uri_keys(uri).await?;
                &fetched
            }
            _ => &known.keys,
        };
        let key = match jws.header.kid.as_deref() {
            Some(kid) => keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
        .map(|(_, k)| k)
        .ok_or_else(|| invalid("client assertion: no registered key matches"))?;
        jws.verify(key)
            .map_err(|e| invalid(format!("client assertion: {e}")))?;
        if !self.assertion_audience_ok(c.aud.as_ref()) {
            return Err(invalid("client assertion: aud must be the issuer alone"));
        }
        check_time(c.exp, c.nbf, now, self.leeway())
            .map_err(|e| invalid(format!("client assertion: {e}")))?;
        let exp = c.exp.unwrap_or_default();
        // Measured from our clock, not the client's `iat` (which could claim any time): an
        // assertion is usable for at most the window, so its jti need be kept no longer.
        if exp.saturating_sub(now) > ASSERTION_WINDOW + self.leeway()
            || c.iat
                .is_some_and(|iat| iat > now.saturating_add(self.leeway()))
        {
            return Err(invalid(
                "client assertion: expires more than 5 minutes from now, or issued in the future",
            ));
        }
        let jti = c
            .jti
            .ok_or_else(|| invalid("client assertion: jti is required"))?;
        self.used_once(ReplayKind::ClientAssertion, &id, &jti, exp, now)
            .await
            .map_err(|e| e.refusal(|m| invalid(format!("client assertion: {m}"))))?;
        Ok(AuthenticatedClient {
            client_id: id,
            spiffe_id: None,
            method: AuthMethod::PrivateKeyJwt,
            certificate_thumbprint: None,
            metadata: Some(known),
            trace_id: None,
        })
    }

    /// Admits a one-time value of `client` once (RFC 7523 §3 `jti`): in this process's replay
    /// cache, then in the store, so a replay is refused after a restart and on another replica
    /// too.
    pub(crate) async fn used_once(
        &self,
        kind: ReplayKind,
        client: &str,
        jti: &str,
        exp: i64,
        now: i64,
    ) -> Result<(), OneTimeError> {
        self.replay.check_and_insert(kind, client, jti, exp, now)?;
        self.first_use_everywhere(kind, client, jti, exp.saturating_add(self.leeway()), now)
            .await
    }

    /// Admits a one-time value of `client` in the store, which every replica shares (after
    /// this process's own replay check).
    pub(crate) async fn first_use_everywhere(
        &self,
        kind: ReplayKind,
        client: &str,
        jti: &str,
        remember_until: i64,
        now: i64,
    ) -> Result<(), OneTimeError> {
        match self
            .store
            .first_use(&format!("{kind:?}:{client}"), jti, remember_until, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(OneTimeError::Replay(aims_authn::ReplayError::Replayed)),
            Err(e) => {
                tracing::error!(error = %e, "one-time value not recorded; refusing");
                Err(OneTimeError::Unavailable)
            }
        }
    }

    /// The keys at a private_key_jwt client's `jwks_uri` (fetched through the guarded fetcher,
    /// cached).
    async fn jwks_uri_keys(
        &self,
        uri: &str,
    ) -> Result<Vec<(Option<String>, aims_credentials::PublicKey)>, OAuthError> {
        let doc = self.fetcher.json(uri, MAX_JWKS).await.map_err(|e| {
            OAuthError::fetch_failed(e, |e| invalid(format!("client jwks_uri: {e}")))
        })?;
        let set: JwkSet = serde_json::from_value((*doc).clone())
            .map_err(|e| invalid(format!("client jwks_uri {uri}: {e}")))?;
        ClientMetadata::keys_of(&set)
            .map_err(|e| invalid(format!("client jwks_uri {uri}: {}", e.description)))
    }

    async fn secret_client(
        &self,
        client_id: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<AuthenticatedClient, OAuthError> {
        if !self.settings.allow_client_secret {
            return Err(invalid(
                "client secrets are disabled on this server: use SPIFFE client authentication or private_key_jwt",
            ));
        }
        let row = match self.store.get_client(client_id).await {
            Ok(r) => r,
            Err(aims_store::StoreError::NotFound(_)) => {
                return Err(invalid("unknown client or wrong secret"));
            }
            Err(e) => return Err(e.into()),
        };
        let expected = row.secret_hash.unwrap_or_default();
        let ok = aws_lc_rs::constant_time::verify_slices_are_equal(
            sha256_b64url(secret.as_bytes()).as_bytes(),
            expected.as_bytes(),
        )
        .is_ok();
        if !ok {
            return Err(invalid("unknown client or wrong secret"));
        }
        let operator_registered = row.source == aims_store::ClientSource::Admin;
        let metadata: ClientMetadata = serde_json::from_value(row.metadata)
            .map_err(|e| OAuthError::server_error("stored client metadata", e))?;
        let metadata = Arc::new(KnownClient {
            keys: Vec::new(),
            metadata,
            operator_registered,
        });
        if metadata.metadata.auth_method()? != method {
            return Err(invalid(format!(
                "client {client_id} is registered for another method"
            )));
        }
        Ok(AuthenticatedClient {
            client_id: client_id.to_owned(),
            spiffe_id: None,
            method,
            certificate_thumbprint: None,
            metadata: Some(metadata),
            trace_id: None,
        })
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id):urlencode(secret))`.
fn decode_basic(b64: &str) -> Result<(String, String), OAuthError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| invalid("malformed Basic credentials"))?;
    let text = String::from_utf8(raw).map_err(|_| invalid("malformed Basic credentials"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| invalid("malformed Basic credentials"))?;
    let decode = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or_else(|| invalid("malformed Basic credentials"))
    };
    Ok((decode(id)?, decode(secret)?))
}
