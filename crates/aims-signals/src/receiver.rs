//! An SSF poll receiver (RFC 8936; AIMS MO-2, MO-3): discovers the transmitter, reuses or
//! creates its own poll stream, and long-polls it, verifying every SET before handing it on and
//! acknowledging it only after it was handled.

use std::future::Future;
use std::time::Duration;

use aims_credentials::PublicKey;
use tokio_util::sync::CancellationToken;

use crate::set::{SecEvent, verify_set};
use crate::stream::{
    METADATA_PATH, POLL, PollRequest, PollResponse, SetErr, StreamConfiguration,
    TransmitterMetadata,
};

/// Why the receiver could not connect or poll.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The transmitter could not be reached or answered with an error.
    #[error("SSF transmitter: {0}")]
    Http(String),
    /// The transmitter answered something SSF does not allow.
    #[error("SSF transmitter: {0}")]
    Protocol(String),
}

/// Backoff after a failed poll, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// SETs asked for per poll.
const MAX_EVENTS: u32 = 100;

/// A receiver bound to one poll stream.
#[derive(Debug, Clone)]
pub struct PollReceiver {
    http: reqwest::Client,
    metadata: TransmitterMetadata,
    stream: StreamConfiguration,
    audience: String,
}

impl PollReceiver {
    /// Reads the metadata of transmitter `issuer` (SSF §7.2: at `issuer` +
    /// `/.well-known/ssf-configuration`; its `issuer` must be the one asked for), then takes this
    /// receiver's existing poll stream or creates one asking for `events`. `audience` is the
    /// receiver's own name, as SETs must carry it (its SPIFFE ID).
    pub async fn connect(
        http: reqwest::Client,
        issuer: &str,
        audience: &str,
        events: &[&str],
        description: &str,
    ) -> Result<Self, ReceiverError> {
        let metadata: TransmitterMetadata =
            json_of(http.get(format!("{}{METADATA_PATH}", issuer.trim_end_matches('/')))).await?;
        if metadata.issuer != issuer {
            return Err(ReceiverError::Protocol(format!(
                "metadata names issuer {:?}, not {issuer:?}",
                metadata.issuer
            )));
        }
        let config_url = metadata
            .configuration_endpoint
            .clone()
            .ok_or_else(|| ReceiverError::Protocol("no configuration_endpoint".into()))?;
        let streams: Vec<StreamConfiguration> = json_of(http.get(&config_url)).await?;
        let wanted: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
        let existing = streams.into_iter().find(|s| {
            s.delivery.as_ref().is_some_and(|d| d.method == POLL)
                && s.description.as_deref() == Some(description)
        });
        let stream = match existing {
            Some(s) if s.events_requested == wanted => s,
            Some(s) => {
                let change = StreamConfiguration {
                    stream_id: s.stream_id,
                    events_requested: wanted,
                    ..StreamConfiguration::default()
                };
                json_of(http.patch(&config_url).json(&change)).await?
            }
            None => {
                let create = StreamConfiguration {
                    events_requested: wanted,
                    description: Some(description.to_owned()),
                    ..StreamConfiguration::default()
                };
                json_of(http.post(&config_url).json(&create)).await?
            }
        };
        if stream.iss != issuer {
            return Err(ReceiverError::Protocol(format!(
                "stream names issuer {:?}, not {issuer:?}",
                stream.iss
            )));
        }
        Ok(Self {
            http,
            metadata,
            stream,
            audience: audience.to_owned(),
        })
    }

    /// The stream's id.
    pub fn stream_id(&self) -> &str {
        &self.stream.stream_id
    }

    /// The transmitter's metadata.
    pub fn metadata(&self) -> &TransmitterMetadata {
        &self.metadata
    }

    /// One poll: acknowledges `ack` and refuses `errs`, then waits (long poll) for SETs.
    pub async fn poll_once(
        &self,
        ack: Vec<String>,
        set_errs: std::collections::BTreeMap<String, SetErr>,
        wait: bool,
    ) -> Result<PollResponse, ReceiverError> {
        let url = self
            .stream
            .delivery
            .as_ref()
            .and_then(|d| d.endpoint_url.clone())
            .ok_or_else(|| ReceiverError::Protocol("poll stream without endpoint_url".into()))?;
        let req = PollRequest {
            max_events: Some(MAX_EVENTS),
            return_immediately: Some(!wait),
            ack,
            set_errs,
        };
        json_of(self.http.post(url).json(&req)).await
    }

    /// Long-polls until `shutdown`: every SET is verified with the key `keys` finds for its
    /// `kid` (`refresh` is awaited once when none does — a rotated key); each valid one is
    /// handed to `handle`, and acknowledged on the next poll after `handle` returned; invalid
    /// ones are refused with their RFC 8935 error. Failures back off and retry.
    pub async fn run<K, R, RF, H, HF>(
        self,
        keys: K,
        refresh: R,
        handle: H,
        shutdown: CancellationToken,
    ) where
        K: Fn(&str) -> Option<PublicKey> + Send,
        R: Fn() -> RF + Send,
        RF: Future<Output = ()> + Send,
        H: Fn(SecEvent) -> HF + Send,
        HF: Future<Output = ()> + Send,
    {
        let mut ack = Vec::new();
        let mut errs = std::collections::BTreeMap::new();
        let mut backoff = Duration::from_millis(250);
        loop {
            let polled = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.poll_once(std::mem::take(&mut ack), std::mem::take(&mut errs), true) => r,
            };
            let resp = match polled {
                Ok(r) => {
                    backoff = Duration::from_millis(250);
                    r
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "SSF poll failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            for (jti, token) in resp.sets {
                let mut verified = verify_set(&token, &self.metadata.issuer, &self.audience, &keys);
                if matches!(&verified, Err(crate::SetError::InvalidKey(_))) {
                    refresh().await;
                    verified = verify_set(&token, &self.metadata.issuer, &self.audience, &keys);
                }
                match verified {
                    Ok(set) => {
                        handle(set).await;
                        ack.push(jti);
                    }
                    Err(e) => {
                        tracing::warn!(%jti, error = %e, "SSF: SET refused");
                        errs.insert(
                            jti,
                            SetErr {
                                err: e.code().to_owned(),
                                description: e.to_string(),
                            },
                        );
                    }
                }
            }
        }
    }
}

/// The largest answer read from a transmitter (a poll response of many SETs).
const MAX_RESPONSE: usize = 4 << 20;

/// Sends `req` and reads a JSON answer, bounded while it arrives; an error status is an error.
async fn json_of<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<T, ReceiverError> {
    let http = |e: reqwest::Error| ReceiverError::Http(e.to_string());
    let resp = req
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http)?;
    let url = resp.url().to_string();
    let body = aims_outbound::read_limited(&url, resp, MAX_RESPONSE)
        .await
        .map_err(|e| ReceiverError::Http(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| ReceiverError::Http(format!("{url}: {e}")))
}
