//! Change notification for the agents' `Sync` streams.
//!
//! A change made through this replica's admin API is announced at once ([`ChangeFeed::poke`]);
//! a change made by another replica sharing the store is seen by re-reading the store's change
//! counters and the stored bundle's sequence ([`ChangeFeed::watch_store`]) when the store
//! notifies a change (PostgreSQL `LISTEN/NOTIFY`, issue 18), and every 200 ms by default
//! besides. Either way the replica's registration state catches up on the change log
//! ([`crate::issuance::registrations`]) and every open `Sync` stream sends its agent what
//! changed under it, so a new entry or bundle reaches agents well within a second (AIMS PR-7).

use std::sync::Arc;
use std::time::Duration;

use aims_store::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::issuance::issuer::Issuer;

/// A generation number that moves whenever registration entries or bundles may have changed.
#[derive(Debug)]
pub struct ChangeFeed {
    tx: watch::Sender<u64>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeFeed {
    /// A feed at generation 0.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(0),
        }
    }

    /// Announces a change.
    pub fn poke(&self) {
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Re-reads the store's change counters and the published bundle whenever the store
    /// notifies a change and every `interval`, until `stop`, announcing what other replicas
    /// (or this one's CA rotation) changed.
    pub async fn watch_store(
        self: Arc<Self>,
        issuer: Arc<Issuer>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut last: Option<(i64, i64, u64)> = None;
        let mut changes = aims_store::ChangeWaiter::new(issuer.store(), interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = changes.next() => {}
            }
            let store = issuer.store();
            let counters = tokio::try_join!(
                store.counter(Counter::Registration),
                store.counter(Counter::Federation),
                store.get_bundle(issuer.trust_domain().name())
            );
            let (registration, federation, stored) = match counters {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read change counters; will retry");
                    continue;
                }
            };
            // Another replica published a bundle (its own CA slot, issue 18): take it at once,
            // so agents synced here can verify that replica too.
            let published = i64::try_from(issuer.published().bundle.sequence()).unwrap_or(i64::MAX);
            if stored.sequence > published
                && let Err(e) = issuer.republish().await
            {
                tracing::warn!(error = %e, "cannot take the trust bundle another replica published; will retry");
            }
            let now = (
                registration,
                federation,
                issuer.published().bundle.sequence(),
            );
            // The first read counts as a change too: what another replica committed before it
            // (after this replica loaded its state) would otherwise go unannounced.
            if last.as_ref() != Some(&now) {
                self.poke();
            }
            last = Some(now);
        }
    }
}
