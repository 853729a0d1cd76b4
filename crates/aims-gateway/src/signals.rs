//! The gateway as a Shared Signals receiver (AIMS MO-3…MO-5): a poll stream at the server's
//! transmitter, long-polled, so a revocation or risk signal reaches the gateway within
//! milliseconds; it drops the cached tokens and decisions of the subject, and the next request
//! is checked with the AS (which already refuses a revoked principal) and decided again.

use std::sync::Arc;
use std::time::Duration;

use aims_signals::event::{self, Effect};
use aims_signals::{PollReceiver, SecEvent};
use aims_token::keys::TokenKeys as _;
use tokio_util::sync::CancellationToken;

use crate::proxy::{Gateway, Revoked};
use crate::server_client::ServerClient;

/// What the gateway does with one verified SET; returns the cached tokens dropped.
pub fn apply(gateway: &Gateway, set: &SecEvent) -> usize {
    let Some((event_type, body)) = set.event() else {
        return 0;
    };
    let principals = set.sub_id.principals(&set.iss);
    let effect = event::effect(event_type, body);
    let label = match effect {
        Effect::Revoke => "revoke",
        Effect::Reevaluate => "reevaluate",
        Effect::Restore => "restore",
        Effect::None => "none",
    };
    metrics::counter!("aims_gateway_signals_applied_total", "effect" => label).increment(1);
    let dropped = match effect {
        // Revoked or changed: nothing cached about the subject may be used again (MO-5).
        Effect::Revoke | Effect::Reevaluate => principals
            .iter()
            .map(|p| {
                gateway.revoke(&Revoked::Client(p.clone()))
                    + gateway.revoke(&Revoked::Subject(p.clone()))
            })
            .sum(),
        // The AS decides again on the next token; nothing cached grants anything.
        Effect::Restore | Effect::None => 0,
    };
    tracing::info!(event = event_type, subjects = ?principals, dropped, jti = %set.jti, "signal applied");
    dropped
}

/// Connects to the server's transmitter (retrying until it answers) and applies every
/// signal until `shutdown`.
pub async fn follow(
    server: Arc<ServerClient>,
    gateway: Arc<Gateway>,
    http: reqwest::Client,
    audience: String,
    shutdown: CancellationToken,
) {
    let description = format!("aims gateway {audience}");
    let mut backoff = Duration::from_millis(250);
    let receiver = loop {
        match PollReceiver::connect(
            http.clone(),
            &server.issuer,
            &audience,
            event::SUPPORTED,
            &description,
        )
        .await
        {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "signals: cannot reach the transmitter");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    tracing::info!(stream = %receiver.stream_id(), "signals: receiving from the server");
    let keys_server = server.clone();
    let refresh_server = server.clone();
    receiver
        .run(
            move |kid| keys_server.keys().verifying_key(kid),
            move || {
                let s = refresh_server.clone();
                async move {
                    if let Err(e) = s.refresh_keys().await {
                        tracing::warn!(error = %e, "signals: JWKS refresh failed");
                    }
                }
            },
            move |set| {
                apply(&gateway, &set);
                async {}
            },
            shutdown,
        )
        .await;
}
