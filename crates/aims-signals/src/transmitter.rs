//! The SSF transmitter (SSF 1.0 §7–§8; AIMS MO-2): streams owned by the receivers that made
//! them, every event signed once per interested stream into the store's outbox, delivered by
//! push (RFC 8935: in order per stream, retried with exponential backoff, never dropped) or
//! poll (RFC 8936: acknowledged by `jti`, long polling wakes the moment an event is emitted).

use std::sync::Arc;
use std::time::Duration;

use aims_outbound::FetchError;
use aims_store::{PendingSet, Store, StoreError, StreamRow};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::event;
use crate::set::{SET_MEDIA_TYPE, SecEvent, SetError};
use crate::stream::{
    POLL, PUSH, PollRequest, PollResponse, Status, StreamConfiguration, StreamStatus,
};
use crate::subject::SubjectId;

/// Why a push delivery (RFC 8935 §2) did not complete; the SET is retried with backoff.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The stream is gone or its configuration unreadable.
    #[error("stream unreadable")]
    StreamUnreadable,
    /// The stream is not a push stream.
    #[error("stream has no delivery")]
    NoDelivery,
    /// The push stream names no endpoint.
    #[error("no endpoint_url")]
    NoEndpoint,
    /// The endpoint is refused (SSRF guard) or could not be reached.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// 400 without the `err` member RFC 8935 §2.3 asks for.
    #[error("400 without an RFC 8935 error")]
    Unexplained400,
    /// Any other status.
    #[error("status {0}")]
    Status(u16),
}

/// SETs per poll response, at most.
const MAX_POLL: u32 = 256;
/// How long a long poll waits for an event before answering empty.
const LONG_POLL: Duration = Duration::from_secs(20);
/// A push attempt's lease: no other replica sends the SET meanwhile.
const PUSH_LEASE_MS: i64 = 30_000;
/// Push retries back off exponentially up to this.
const MAX_BACKOFF_MS: i64 = 300_000;
/// How long a push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams per receiver, at most.
const MAX_STREAMS_PER_OWNER: usize = 16;
/// SSF 1.0 §8.1.4: the shortest interval between verification requests we promise to honour.
const MIN_VERIFICATION_INTERVAL: u64 = 1;

/// Signs SETs with the transmitter's key (published at its `jwks_uri`).
pub trait SetSigner: Send + Sync {
    /// The signed SET.
    fn sign(&self, set: &SecEvent) -> Result<String, SetError>;
}

/// The authenticated receiver calling the management API; a stream is its owner's alone, and
/// SETs on it carry the owner as `aud`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOwner(pub String);

/// Why a management or poll call failed (the HTTP layer maps these to SSF status codes).
#[derive(Debug, thiserror::Error)]
pub enum TransmitterError {
    /// 404: no such stream (or not the caller's).
    #[error("no such stream")]
    NotFound,
    /// 400: the request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// 409: too many streams.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SetError),
}

/// The last path segment of an event type URI (`session-revoked`), for metric labels; only
/// the event types AIMS knows, so the label set stays bounded.
fn short_name(event_type: &str) -> &'static str {
    event::SUPPORTED
        .iter()
        .chain([event::VERIFICATION, event::STREAM_UPDATED].iter())
        .find(|e| **e == event_type)
        .and_then(|e| e.rsplit('/').next())
        .unwrap_or("other")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The transmitter.
pub struct Transmitter {
    store: Store,
    issuer: String,
    poll_base: String,
    signer: Arc<dyn SetSigner>,
    emitted: tokio::sync::watch::Sender<u64>,
    http: reqwest::Client,
    /// Whether push endpoints may be loopback or private addresses (development only).
    allow_private: bool,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The largest answer read from a push endpoint (an RFC 8935 §2.3 error object).
const MAX_PUSH_ANSWER: usize = 64 << 10;

impl Transmitter {
    /// A transmitter issuing SETs as `issuer`, serving polls under `poll_base`. A receiver
    /// names its push endpoint, so pushes are guarded like every URL others name
    /// (`aims_outbound`): HTTPS only, no redirects, no loopback or private address unless
    /// `push.allow_private_networks`; `push.ca_file` is trusted beside the system's roots.
    pub fn new(
        store: Store,
        issuer: String,
        poll_base: String,
        signer: Arc<dyn SetSigner>,
        push: &aims_outbound::FetchSettings,
    ) -> Result<Self, TransmitterError> {
        let http = aims_outbound::guarded_client(push, PUSH_TIMEOUT)
            .map_err(|e| TransmitterError::Invalid(format!("push client: {e}")))?;
        Ok(Self {
            store,
            issuer,
            poll_base,
            signer,
            emitted: tokio::sync::watch::channel(0).0,
            http,
            allow_private: push.allow_private_networks,
        })
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where a poll stream's SETs are fetched.
    fn poll_url(&self, stream_id: &str) -> String {
        format!("{}/ssf/v1/poll/{stream_id}", self.poll_base)
    }

    async fn owned(
        &self,
        owner: &StreamOwner,
        stream_id: &str,
    ) -> Result<StreamRow, TransmitterError> {
        match self.store.get_stream(stream_id).await {
            Ok(s) if s.owner == owner.0 => Ok(s),
            Ok(_) | Err(StoreError::NotFound(_)) => Err(TransmitterError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    fn config_of(row: &StreamRow) -> Result<StreamConfiguration, TransmitterError> {
        serde_json::from_str(&row.config)
            .map_err(|e| TransmitterError::Store(StoreError::Invalid(e.to_string())))
    }

    /// Completes a receiver's configuration with what the transmitter decides (SSF §8.1.1).
    fn settle(
        &self,
        owner: &StreamOwner,
        stream_id: &str,
        mut c: StreamConfiguration,
    ) -> Result<StreamConfiguration, TransmitterError> {
        let mut delivery = c.delivery.take().unwrap_or(crate::stream::Delivery {
            method: POLL.into(),
            endpoint_url: None,
            authorization_header: None,
        });
        match delivery.method.as_str() {
            POLL => delivery.endpoint_url = Some(self.poll_url(stream_id)),
            PUSH => {
                let url = delivery.endpoint_url.as_deref().ok_or_else(|| {
                    TransmitterError::Invalid("push delivery needs an https endpoint_url".into())
                })?;
                aims_outbound::fetch::check_url(url, self.allow_private).map_err(|e| {
                    TransmitterError::Invalid(format!("push endpoint_url refused: {e}"))
                })?;
            }
            other => {
                return Err(TransmitterError::Invalid(format!(
                    "unsupported delivery method {other:?}"
                )));
            }
        }
        c.stream_id = stream_id.to_owned();
        c.iss = self.issuer.clone();
        c.aud = Some(owner.0.clone());
        c.events_supported = event::SUPPORTED.iter().map(|s| (*s).to_owned()).collect();
        c.events_delivered = c
            .events_requested
            .iter()
            .filter(|e| event::SUPPORTED.contains(&e.as_str()))
            .cloned()
            .collect();
        c.delivery = Some(delivery);
        c.min_verification_interval = Some(MIN_VERIFICATION_INTERVAL);
        Ok(c)
    }

    fn row(
        &self,
        owner: &StreamOwner,
        c: &StreamConfiguration,
        status: Status,
        reason: Option<String>,
    ) -> Result<StreamRow, TransmitterError> {
        Ok(StreamRow {
            stream_id: c.stream_id.clone(),
            owner: owner.0.clone(),
            method: c
                .delivery
                .as_ref()
                .map_or(POLL, |d| d.method.as_str())
                .to_owned(),
            status: status.as_str().to_owned(),
            reason,
            config: serde_json::to_string(c)
                .map_err(|e| TransmitterError::Invalid(e.to_string()))?,
            created_at: now_ms() / 1000,
        })
    }

    /// SSF §8.1.1.1: creates a stream.
    pub async fn create(
        &self,
        owner: &StreamOwner,
        requested: StreamConfiguration,
    ) -> Result<StreamConfiguration, TransmitterError> {
        if self.store.streams(Some(&owner.0)).await?.len() >= MAX_STREAMS_PER_OWNER {
            return Err(TransmitterError::Conflict(format!(
                "at most {MAX_STREAMS_PER_OWNER} streams per receiver"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let c = self.settle(owner, &id, requested)?;
        self.store
            .put_stream(&self.row(owner, &c, Status::Enabled, None)?)
            .await?;
        tracing::info!(stream = %id, receiver = %owner.0, "SSF stream created");
        Ok(c)
    }

    /// SSF §8.1.1.2: one stream.
    pub async fn get(
        &self,
        owner: &StreamOwner,
        id: &str,
    ) -> Result<StreamConfiguration, TransmitterError> {
        Self::config_of(&self.owned(owner, id).await?)
    }

    /// SSF §8.1.1.2: every stream of the caller.
    pub async fn list(
        &self,
        owner: &StreamOwner,
    ) -> Result<Vec<StreamConfiguration>, TransmitterError> {
        self.store
            .streams(Some(&owner.0))
            .await?
            .iter()
            .map(Self::config_of)
            .collect()
    }

    /// SSF §8.1.1.3 (PATCH, `replace` false: given receiver fields change, the rest stay) and
    /// §8.1.1.4 (PUT, `replace` true: every receiver field as given).
    pub async fn update(
        &self,
        owner: &StreamOwner,
        changes: StreamConfiguration,
        replace: bool,
    ) -> Result<StreamConfiguration, TransmitterError> {
        let row = self.owned(owner, &changes.stream_id).await?;
        let mut c = Self::config_of(&row)?;
        if replace {
            c.events_requested = changes.events_requested;
            c.description = changes.description;
            c.delivery = changes.delivery;
        } else {
            if !changes.events_requested.is_empty() {
                c.events_requested = changes.events_requested;
            }
            if changes.description.is_some() {
                c.description = changes.description;
            }
            if changes.delivery.is_some() {
                c.delivery = changes.delivery;
            }
        }
        let c = self.settle(owner, &row.stream_id, c)?;
        let status = Status::parse(&row.status).unwrap_or(Status::Enabled);
        let mut new_row = self.row(owner, &c, status, row.reason)?;
        new_row.created_at = row.created_at;
        self.store.update_stream(&new_row).await?;
        Ok(c)
    }

    /// SSF §8.1.1.5: deletes a stream and what waits on it.
    pub async fn delete(&self, owner: &StreamOwner, id: &str) -> Result<(), TransmitterError> {
        self.owned(owner, id).await?;
        self.store.delete_stream(id).await?;
        tracing::info!(stream = %id, receiver = %owner.0, "SSF stream deleted");
        Ok(())
    }

    /// SSF §8.1.2.1: a stream's status.
    pub async fn status(
        &self,
        owner: &StreamOwner,
        id: &str,
    ) -> Result<StreamStatus, TransmitterError> {
        let row = self.owned(owner, id).await?;
        Ok(StreamStatus {
            stream_id: row.stream_id,
            status: Status::parse(&row.status).unwrap_or(Status::Disabled),
            reason: row.reason,
        })
    }

    /// SSF §8.1.2.2: changes a stream's status; the receiver hears of it by a stream-updated
    /// event (sent before pausing or disabling, after enabling).
    pub async fn set_status(
        &self,
        owner: &StreamOwner,
        s: StreamStatus,
    ) -> Result<StreamStatus, TransmitterError> {
        let mut row = self.owned(owner, &s.stream_id).await?;
        let body = json!({"status": s.status.as_str(), "reason": s.reason});
        let subject = SubjectId::Opaque {
            id: row.stream_id.clone(),
        };
        if s.status != Status::Enabled {
            self.send_to(&row, event::STREAM_UPDATED, &subject, body.clone())
                .await?;
        }
        row.status = s.status.as_str().to_owned();
        row.reason = s.reason.clone();
        self.store.update_stream(&row).await?;
        if s.status == Status::Enabled {
            self.send_to(&row, event::STREAM_UPDATED, &subject, body)
                .await?;
        }
        self.wake();
        Ok(s)
    }

    /// SSF §8.1.4: sends a verification event (with `state`) on the stream.
    pub async fn verify(
        &self,
        owner: &StreamOwner,
        id: &str,
        state: Option<String>,
    ) -> Result<(), TransmitterError> {
        let row = self.owned(owner, id).await?;
        let body = match state {
            Some(s) => json!({"state": s}),
            None => json!({}),
        };
        self.send_to(
            &row,
            event::VERIFICATION,
            &SubjectId::Opaque { id: id.to_owned() },
            body,
        )
        .await?;
        self.wake();
        Ok(())
    }

    /// Signs one SET for `row`'s receiver and puts it in the outbox.
    async fn send_to(
        &self,
        row: &StreamRow,
        event_type: &str,
        subject: &SubjectId,
        body: Value,
    ) -> Result<(), TransmitterError> {
        let set = SecEvent::new(
            &self.issuer,
            &row.owner,
            subject.clone(),
            event_type,
            body,
            None,
            now_ms() / 1000,
        );
        let token = self.signer.sign(&set)?;
        self.store
            .enqueue_sets(&[(row.stream_id.clone(), set.jti, token)], now_ms())
            .await?;
        Ok(())
    }

    fn wake(&self) {
        self.emitted.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Emits an event about `subject` to every stream that asked for its type and is not
    /// disabled (a paused stream holds it); `txn` ties SETs of one cause together. Returns how
    /// many streams got it. The SETs are durable before this returns.
    pub async fn emit(
        &self,
        event_type: &str,
        subject: &SubjectId,
        body: Value,
        txn: Option<String>,
    ) -> Result<usize, TransmitterError> {
        let now = now_ms();
        let mut sets = Vec::new();
        for row in self.store.streams(None).await? {
            if row.status == Status::Disabled.as_str() {
                continue;
            }
            let Ok(c) = Self::config_of(&row) else {
                continue;
            };
            if !c.events_delivered.iter().any(|e| e == event_type) {
                continue;
            }
            let set = SecEvent::new(
                &self.issuer,
                &row.owner,
                subject.clone(),
                event_type,
                body.clone(),
                txn.clone(),
                now / 1000,
            );
            let token = self.signer.sign(&set)?;
            sets.push((row.stream_id, set.jti, token));
        }
        let n = sets.len();
        metrics::counter!("aims_ssf_sets_queued_total", "event" => short_name(event_type))
            .increment(n as u64);
        if n > 0 {
            self.store.enqueue_sets(&sets, now).await?;
            self.wake();
        }
        tracing::info!(event = event_type, streams = n, "SSF event emitted");
        Ok(n)
    }

    /// RFC 8936 §2.4: acknowledges, then returns what waits (waiting up to [`LONG_POLL`] for
    /// something when `returnImmediately` is false). A paused stream returns nothing.
    pub async fn poll(
        &self,
        owner: &StreamOwner,
        id: &str,
        req: PollRequest,
    ) -> Result<PollResponse, TransmitterError> {
        let row = self.owned(owner, id).await?;
        if row.method != POLL {
            return Err(TransmitterError::Invalid(
                "this stream delivers by push".into(),
            ));
        }
        // A receiver that could not use a SET says so; it is delivered either way.
        let mut done = req.ack;
        for (jti, e) in &req.set_errs {
            tracing::warn!(stream = %id, %jti, err = %e.err, description = %e.description, "receiver refused a SET");
            done.push(jti.clone());
        }
        self.store.ack_sets(id, &done, now_ms()).await?;
        let max = req.max_events.unwrap_or(MAX_POLL).min(MAX_POLL);
        if max == 0 {
            return Ok(PollResponse::default());
        }
        let mut woken = self.emitted.subscribe();
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            woken.borrow_and_update();
            let status = self.store.get_stream(id).await?.status;
            let sets = if status == Status::Enabled.as_str() {
                self.store.pending_sets(id, max).await?
            } else {
                Vec::new()
            };
            if !sets.is_empty() || req.return_immediately.unwrap_or(true) {
                let more_available = sets.len() == max as usize;
                return Ok(PollResponse {
                    sets: sets.into_iter().map(|s| (s.jti, s.set_jwt)).collect(),
                    more_available,
                });
            }
            if tokio::time::timeout_at(deadline, woken.changed())
                .await
                .is_err()
            {
                return Ok(PollResponse::default());
            }
        }
    }

    /// Delivers push streams' SETs until `shutdown` (RFC 8935 §2): one in flight per stream,
    /// in order; 202 delivers it; a 400 with an RFC 8935 error means the receiver refused it
    /// for good (logged, and the stream moves on); anything else is retried with exponential
    /// backoff, so a receiver that is down loses nothing.
    pub async fn run_push(self: Arc<Self>, shutdown: CancellationToken) {
        let mut woken = self.emitted.subscribe();
        loop {
            woken.borrow_and_update();
            match self.store.due_pushes(now_ms(), PUSH).await {
                Ok(due) => {
                    // Streams are independent: a slow receiver holds up only its own.
                    let mut sends = tokio::task::JoinSet::new();
                    for p in due {
                        let me = self.clone();
                        sends.spawn(async move { me.push_one(p).await });
                    }
                    let mut delivered = false;
                    while let Some(done) = sends.join_next().await {
                        delivered |= done.unwrap_or(false);
                    }
                    if delivered {
                        // The next SET of those streams may be due at once.
                        continue;
                    }
                }
                Err(e) => tracing::error!(error = %e, "SSF push: store failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = woken.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// One push attempt; whether the SET is done with.
    async fn push_one(&self, p: PendingSet) -> bool {
        let now = now_ms();
        match self.store.lease_set(p.seq, now, now + PUSH_LEASE_MS).await {
            Ok(true) => {}
            _ => return false,
        }
        let outcome = match self
            .store
            .get_stream(&p.stream_id)
            .await
            .map(|r| Self::config_of(&r))
        {
            Ok(Ok(c)) => match c.delivery {
                Some(d) => self.send(&d, &p.set_jwt).await,
                None => Err(PushError::NoDelivery),
            },
            _ => Err(PushError::StreamUnreadable),
        };
        let now = now_ms();
        let label = if outcome.is_ok() {
            "delivered"
        } else {
            "retry"
        };
        metrics::counter!("aims_ssf_pushes_total", "outcome" => label).increment(1);
        let failure = outcome.as_ref().err().map(|e| {
            let backoff = (1000i64 << p.attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
            tracing::warn!(stream = %p.stream_id, jti = %p.jti, attempts = p.attempts + 1, error = %e, retry_in_ms = backoff, "SSF push failed; will retry");
            (e.to_string(), now + backoff)
        });
        let result = match &failure {
            None => Ok(()),
            Some((why, retry_at)) => Err((why.as_str(), *retry_at)),
        };
        if let Err(e) = self.store.push_outcome(p.seq, now, result).await {
            tracing::error!(error = %e, "SSF push: store failed");
            return false;
        }
        outcome.is_ok()
    }

    /// POSTs one SET (RFC 8935 §2): `Ok` when it is done with (accepted, or refused for good).
    async fn send(&self, d: &crate::stream::Delivery, set: &str) -> Result<(), PushError> {
        let url = d.endpoint_url.as_deref().ok_or(PushError::NoEndpoint)?;
        // Checked again at each push: a stream stored before this guard is held to it too.
        let checked = aims_outbound::fetch::check_url(url, self.allow_private)?;
        let mut req = self
            .http
            .post(checked)
            .header(reqwest::header::CONTENT_TYPE, SET_MEDIA_TYPE)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(set.to_owned());
        if let Some(h) = &d.authorization_header {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(|e| FetchError::Transport {
            url: url.to_owned(),
            why: e.to_string(),
        })?;
        match resp.status().as_u16() {
            202 | 200 | 204 => Ok(()),
            400 => {
                let body: Value = aims_outbound::read_limited(url, resp, MAX_PUSH_ANSWER)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                if body["err"].is_string() {
                    tracing::warn!(%url, err = %body["err"], description = %body["description"], "SSF push: the receiver refused the SET");
                    Ok(())
                } else {
                    Err(PushError::Unexplained400)
                }
            }
            s => Err(PushError::Status(s)),
        }
    }
}
