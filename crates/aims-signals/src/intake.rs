//! Signals from outside (AIMS MO-2, MO-3): the server as an RFC 8935 push receiver for the
//! transmitters an operator configured (an IdP, an EDR, another AIMS). Each SET is verified with
//! its transmitter's JWKS and acted on once: a revoking event (session-revoked,
//! credential-compromise, account-disabled …) revokes the subject's access here — recorded with
//! the signal as its cause and passed on to every receiver of ours — account-enabled lifts it,
//! and a change to re-evaluate is passed on as it is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aims_credentials::PublicKey;
use aims_credentials::jose::CompactJws;
use aims_outbound::{FetchError, FetchSettings, Fetcher};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::event::{self, Effect};
use crate::remediation::{Initiator, Remediation};
use crate::{SET_MEDIA_TYPE, SecEvent, SetError, Transmitter, verify_set};

/// Where transmitters push SETs (RFC 8935).
pub const RECEIVE_PATH: &str = "/ssf/v1/receive";
/// A JWKS document's size, at most.
const MAX_JWKS: usize = 64 << 10;
/// A pushed SET's size, at most.
const MAX_SET: usize = 16 << 10;
/// How old a SET may be (RFC 8417 §2.2 `iat`): a transmitter retries a push for a while, but a
/// SET older than this is refused, and ids are remembered (in the store, so across restarts
/// and replicas) for as long, so no SET is acted on twice.
const SET_WINDOW: i64 = 24 * 3600;
/// How far in the future a SET's `iat` may be (clock skew).
const SET_SKEW: i64 = 60;

/// A transmitter whose signals this server acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSource {
    /// Its issuer (SETs' `iss`).
    pub issuer: String,
    /// Its signing keys (HTTPS).
    pub jwks_uri: String,
    /// The `aud` its SETs carry for us [default: our issuer].
    #[serde(default)]
    pub audience: Option<String>,
    /// Extra CA certificates (PEM) for its HTTPS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether its JWKS may be on a loopback or private address.
    #[serde(default)]
    pub allow_private_networks: bool,
}

struct Source {
    config: SignalSource,
    fetcher: Fetcher,
}

/// The intake of external signals.
pub struct SignalIntake {
    sources: Vec<Source>,
    our_issuer: String,
    remediation: Arc<Remediation>,
    signals: Arc<Transmitter>,
    store: aims_store::Store,
    clock: aims_core::SharedClock,
}

impl SignalIntake {
    /// An intake for `sources`; SETs are for `our_issuer` unless a source says otherwise.
    pub fn new(
        sources: &[SignalSource],
        our_issuer: String,
        remediation: Arc<Remediation>,
        signals: Arc<Transmitter>,
        store: aims_store::Store,
        clock: aims_core::SharedClock,
    ) -> Result<Self, FetchError> {
        let sources = sources
            .iter()
            .map(|c| {
                let fetcher = Fetcher::new(&FetchSettings {
                    ca_file: c.ca_file.clone(),
                    allow_private_networks: c.allow_private_networks,
                })?;
                Ok(Source {
                    config: c.clone(),
                    fetcher,
                })
            })
            .collect::<Result<_, FetchError>>()?;
        Ok(Self {
            sources,
            our_issuer,
            remediation,
            signals,
            store,
            clock,
        })
    }

    /// Verifies and acts on one pushed SET.
    pub async fn receive(&self, token: &str) -> Result<(), SetError> {
        // Which transmitter: the unverified `iss` only picks the keys that must verify it.
        let claims: serde_json::Value = CompactJws::parse(token)
            .and_then(|j| j.claims())
            .map_err(|e| SetError::InvalidRequest(e.to_string()))?;
        let iss = claims["iss"].as_str().unwrap_or_default();
        let source = self
            .sources
            .iter()
            .find(|s| s.config.issuer == iss)
            .ok_or_else(|| {
                SetError::InvalidIssuer(format!("{iss:?} is not a configured transmitter"))
            })?;
        let jwks = source
            .fetcher
            .json(&source.config.jwks_uri, MAX_JWKS)
            .await
            .map_err(|e| SetError::InvalidKey(format!("transmitter keys: {e}")))?;
        let keys: HashMap<String, PublicKey> =
            serde_json::from_value::<jsonwebtoken::jwk::JwkSet>((*jwks).clone())
                .map_err(|e| SetError::InvalidKey(format!("transmitter JWKS: {e}")))?
                .keys
                .iter()
                .filter_map(|k| Some((k.common.key_id.clone()?, PublicKey::from_jwk(k).ok()?)))
                .collect();
        let audience = source
            .config
            .audience
            .as_deref()
            .unwrap_or(&self.our_issuer);
        let set = verify_set(token, iss, audience, &|kid| keys.get(kid).cloned())?;
        let now = aims_core::unix_seconds(self.clock.now());
        if set.iat < now - SET_WINDOW || set.iat > now + SET_SKEW {
            return Err(SetError::InvalidRequest(format!(
                "iat {} is outside the accepted window (at most {SET_WINDOW} s old)",
                set.iat
            )));
        }
        let first = self
            .store
            .first_use(
                &format!("set:{iss}"),
                &set.jti,
                set.iat + SET_WINDOW + SET_SKEW,
                now,
            )
            .await
            .map_err(|e| SetError::InvalidRequest(format!("cannot record the SET now: {e}")))?;
        if !first {
            tracing::debug!(jti = %set.jti, %iss, "signal already handled");
            return Ok(());
        }
        self.act(&set).await;
        Ok(())
    }

    async fn act(&self, set: &SecEvent) {
        let Some((event_type, body)) = set.event() else {
            return;
        };
        let short = event_type.rsplit('/').next().unwrap_or(event_type);
        let mut cause = format!("{short} signal from {}", set.iss);
        if let Some(reason) = body["reason_admin"]["en"].as_str() {
            cause.push_str(&format!(": {reason}"));
        }
        let effect = event::effect(event_type, body);
        for principal in set.sub_id.principals(&set.iss) {
            let done = match effect {
                Effect::Revoke => self
                    .remediation
                    .revoke(&principal, &cause, Initiator::Signal(&set.iss))
                    .await
                    .map(|_| ()),
                Effect::Restore => self
                    .remediation
                    .lift(&principal, &cause, Initiator::Signal(&set.iss))
                    .await
                    .map(|_| ()),
                Effect::Reevaluate | Effect::None => Ok(()),
            };
            if let Err(e) = done {
                tracing::error!(error = %e, %principal, event = short, "signal not acted on");
            }
        }
        if effect == Effect::Reevaluate {
            // Our receivers (gateways) decide again with what changed.
            if let Err(e) = self
                .signals
                .emit(event_type, &set.sub_id, body.clone(), set.txn.clone())
                .await
            {
                tracing::error!(error = %e, "signal not passed on");
            }
        }
        tracing::info!(event = short, iss = %set.iss, subjects = ?set.sub_id.principals(&set.iss), "external signal handled");
    }
}

/// The RFC 8935 push endpoint.
pub fn router(intake: Arc<SignalIntake>) -> Router {
    Router::new()
        .route(RECEIVE_PATH, post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SET))
        .with_state(intake)
}

/// RFC 8935 §2.2–§2.4: 202 on success, 400 with `err` and `description` otherwise.
async fn receive(
    State(intake): State<Arc<SignalIntake>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(SET_MEDIA_TYPE))
        });
    let result = if typed {
        intake.receive(body.trim()).await
    } else {
        Err(SetError::InvalidRequest(format!(
            "Content-Type must be {SET_MEDIA_TYPE}"
        )))
    };
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "pushed SET refused");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"err": e.code(), "description": e.to_string()})),
            )
                .into_response()
        }
    }
}
