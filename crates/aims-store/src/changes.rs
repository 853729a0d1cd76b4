//! Change notification between replicas sharing one PostgreSQL store (issue 18).
//!
//! Every write that moves a change counter (registration, federation, revocation), adds a
//! policy version or publishes the trust bundle fires a trigger that sends `NOTIFY aims_changes` (migration 0014);
//! PostgreSQL delivers it when the writing transaction commits, to every replica that listens,
//! the writer's own included. Each replica keeps one `LISTEN` connection and turns what it
//! hears into a generation number its followers wait on ([`Store::changes`]), so a change made
//! on one replica is acted on by the others within milliseconds instead of at their next poll.
//!
//! A notification says only that something changed: the followers still read the store's
//! counters and versions, which stay the truth. Notifications sent while the listening
//! connection is down are lost, so every (re)connection counts as a change too, and followers
//! keep a slow poll besides. A SQLite store has one server, which announces its own changes in
//! process, so its generation never moves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::{Backend, Store};

/// The channel the triggers of migration 0014 notify.
pub const CHANNEL: &str = "aims_changes";

/// Reconnection delays of the listening connection, first and at most.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The listener's generation, started on first subscription in the runtime of that
/// subscription (and again once every subscriber of the last one has gone).
#[derive(Default)]
pub(crate) struct ChangeListener {
    generation: Mutex<Option<watch::Sender<u64>>>,
}

impl Store {
    /// A receiver whose value moves whenever another replica (or this one) may have changed
    /// registration entries, federated bundles, revocations, the policy in force or the
    /// published trust bundle.
    pub fn changes(&self) -> watch::Receiver<u64> {
        let mut slot = self
            .changes
            .generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        if let (Backend::Postgres, Some(url)) = (self.backend, self.url.clone()) {
            tokio::spawn(listen(url, tx.clone()));
        }
        *slot = Some(tx);
        rx
    }
}

/// Listens on [`CHANNEL`] until every receiver of `generation` has gone, reconnecting with
/// growing delays.
async fn listen(url: Arc<str>, generation: watch::Sender<u64>) {
    let mut retry = FIRST_RETRY;
    loop {
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = generation.closed() => return,
            r = connected => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "cannot listen for store changes; polling meanwhile");
                    tokio::select! {
                        () = generation.closed() => return,
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            },
        };
        retry = FIRST_RETRY;
        // Whatever was notified while no connection listened is caught up by a re-read.
        generation.send_modify(|g| *g = g.wrapping_add(1));
        loop {
            tokio::select! {
                () = generation.closed() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => {
                        tracing::trace!(change = n.payload(), "store change notified");
                        generation.send_modify(|g| *g = g.wrapping_add(1));
                    }
                    // The connection dropped: the next loop reconnects and counts a change.
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "store change listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Waits for the next store change or the next tick of a slow poll, whichever comes first:
/// the loop of a follower that re-reads what the store holds.
pub struct ChangeWaiter {
    changes: watch::Receiver<u64>,
    ticker: tokio::time::Interval,
}

impl ChangeWaiter {
    /// Wakes on `store`'s changes and every `poll`.
    pub fn new(store: &Store, poll: Duration) -> Self {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            changes: store.changes(),
            ticker,
        }
    }

    /// Returns at the next change or tick.
    pub async fn next(&mut self) {
        tokio::select! {
            r = self.changes.changed() => {
                if r.is_err() {
                    // The listener has gone (its runtime stopped): polling alone remains.
                    self.ticker.tick().await;
                }
            }
            _ = self.ticker.tick() => {}
        }
    }
}
