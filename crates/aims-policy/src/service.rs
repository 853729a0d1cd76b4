//! The policy service (AIMS §12, PO-2, PO-3): the versioned policy set in the store, put in
//! force on every replica (woken by the store's change notification, polled besides), decided
//! on by the authorization server, pushed to gateways by long poll ([`crate::http`]), and
//! exposed as the OpenID AuthZEN Authorization API 1.0.

use std::sync::Arc;
use std::time::Duration;

use aims_core::SharedClock;
use aims_store::{ChangeWaiter, PolicyFollower, PolicyVersionRow, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    Application, CompiledPolicy, DEFAULT_POLICY, Pdp, PolicyDiff, PolicyDocument, PolicyError,
};

/// How long past a held poll's longest hold a silent gateway still counts as following.
const FOLLOWER_MARGIN: Duration = Duration::from_secs(15);

/// What applying a policy text did (or would do, on a dry run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// The version in force afterwards (or that would be).
    pub document: PolicyDocument,
    /// What changed from the version in force before.
    pub diff: PolicyDiff,
    /// Whether a new version went live.
    pub applied: bool,
}

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The text does not parse or validate.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// Another replica put a version in force first.
    #[error("another replica put policy version {0} in force first: review it and apply again")]
    Conflict(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stored version does not compile.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no version even after the default was put in.
    #[error("the policy store is empty")]
    Empty,
}

/// The policy service.
pub struct PolicyService {
    pdp: Arc<Pdp>,
    store: Store,
    pub(crate) clock: SharedClock,
    /// The version in force, for the long polls of gateways waiting for a newer one.
    version: watch::Sender<u64>,
    /// The followers' reports last written.
    reports: crate::followers::FollowerReports,
}

impl PolicyService {
    /// Loads the newest version from the store, or puts the default policy in force as version
    /// 1 on a new store.
    pub async fn start(store: Store, clock: SharedClock) -> Result<Arc<Self>, StartError> {
        let row = match store.latest_policy().await? {
            Some(row) => row,
            None => {
                let doc = PolicyDocument::new(1, DEFAULT_POLICY);
                let row = to_row(
                    &doc,
                    aims_core::unix_seconds(clock.now()),
                    "aims (default policy)",
                );
                match store.insert_policy(&row).await {
                    // Another replica seeded it at the same moment: take theirs.
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                store.latest_policy().await?.ok_or(StartError::Empty)?
            }
        };
        let version = row.version;
        let pdp = Pdp::new(&stored_document(&row))?;
        tracing::info!(version, "policy in force");
        Ok(Arc::new(Self {
            pdp: Arc::new(pdp),
            store,
            clock,
            version: watch::Sender::new(version),
            reports: crate::followers::FollowerReports::default(),
        }))
    }

    /// The decision point.
    pub fn pdp(&self) -> &Arc<Pdp> {
        &self.pdp
    }

    /// The policy set in force.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.pdp.current()
    }

    /// The policy set in force once it is newer than `known`, or after `wait` (AIMS PO-3: a
    /// gateway's long poll, answered the moment a new version is in force here).
    pub async fn newer_than(&self, known: u64, wait: Duration) -> Arc<CompiledPolicy> {
        let mut version = self.version.subscribe();
        let _ = tokio::time::timeout(wait, version.wait_for(|v| *v > known)).await;
        self.pdp.current()
    }

    /// Tells long polls what is in force now (installs may finish out of order: the newest
    /// wins).
    fn announce(&self) {
        let now = self.pdp.current().version;
        self.version.send_if_modified(|v| {
            let newer = now > *v;
            if newer {
                *v = now;
            }
            newer
        });
    }

    /// The enforcement points following the policy: those heard from within a held poll and a
    /// margin (a live gateway asks again at least that often), with the version each holds.
    pub async fn followers(&self) -> Result<Vec<PolicyFollower>, StoreError> {
        let now = aims_core::unix_seconds(self.clock.now());
        let silence =
            i64::try_from((crate::http::MAX_WAIT + FOLLOWER_MARGIN).as_secs()).unwrap_or(i64::MAX);
        self.store
            .policy_followers(now.saturating_sub(silence))
            .await
    }

    /// Records, beside the caller's request, that the enforcement point `spiffe_id` decides
    /// with `version` (AIMS PO-3): a new version at once, the same one at most every 10 s. A
    /// slow store write must not delay the answer when the next version goes live.
    pub fn follower_reports(self: &Arc<Self>, spiffe_id: &str, version: u64) {
        let now = aims_core::unix_seconds(self.clock.now());
        if !self.reports.due(spiffe_id, version, now) {
            return;
        }
        let (service, spiffe_id) = (self.clone(), spiffe_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = service
                .store
                .record_policy_follower(&spiffe_id, version, now)
                .await
            {
                tracing::warn!(follower = %spiffe_id, error = %e, "cannot record the policy version a gateway holds");
            }
        });
    }

    /// Validates `text` (and `application`, whose schema joins the AIMS schema) and, unless
    /// `dry_run` or unchanged, records it as the next version and puts it in force. An invalid
    /// text or application changes nothing.
    pub async fn apply(
        &self,
        text: &str,
        application: Option<Application>,
        author: &str,
        dry_run: bool,
    ) -> Result<ApplyOutcome, ApplyError> {
        let current = self.pdp.current();
        let doc = PolicyDocument::with_application(current.version + 1, text, application);
        let compiled = self.pdp.compile(&doc)?;
        let diff = PolicyDiff::between(&current, &compiled);
        if dry_run || compiled.hash == current.hash {
            return Ok(ApplyOutcome {
                document: if dry_run { doc } else { current.document() },
                diff,
                applied: false,
            });
        }
        let row = to_row(&doc, aims_core::unix_seconds(self.clock.now()), author);
        match self.store.insert_policy(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                self.refresh().await?;
                return Err(ApplyError::Conflict(doc.version));
            }
            Err(e) => return Err(e.into()),
        }
        match self.pdp.install(&doc) {
            Ok(_) => {}
            // Committed: the store's change watcher installed this version (or a newer one)
            // between the commit and here. The policy was applied all the same.
            Err(PolicyError::Stale { current, .. }) if current >= doc.version => {}
            Err(e) => return Err(e.into()),
        }
        self.announce();
        tracing::info!(version = doc.version, hash = %doc.hash, author, "policy applied");
        Ok(ApplyOutcome {
            document: doc,
            diff,
            applied: true,
        })
    }

    /// Puts in force a newer version another replica recorded, if there is one.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let current = self.pdp.current().version;
        if self.store.latest_policy_version().await? <= Some(current) {
            return Ok(());
        }
        let Some(row) = self.store.latest_policy().await? else {
            return Ok(());
        };
        let doc = stored_document(&row);
        match self.pdp.install(&doc) {
            Ok(_) => {
                self.announce();
                tracing::info!(version = doc.version, "policy in force (from the store)");
            }
            Err(PolicyError::Stale { .. }) => {}
            Err(e) => {
                tracing::error!(version = doc.version, error = %e, "stored policy refused; the old version stays in force");
            }
        }
        Ok(())
    }

    /// Puts in force the versions other replicas record, as the store notifies them and at
    /// least every `interval`.
    pub async fn watch_store(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut changes = ChangeWaiter::new(&self.store, interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = changes.next() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "cannot read the policy version; will retry");
                    }
                }
            }
        }
    }
}

/// A version as the store keeps it.
fn to_row(doc: &PolicyDocument, created_at: i64, author: &str) -> PolicyVersionRow {
    PolicyVersionRow {
        version: doc.version,
        hash: doc.hash.clone(),
        text: doc.text.clone(),
        created_at,
        author: author.to_owned(),
        application_schema: doc.application.as_ref().map(|a| a.schema.clone()),
        application_entities: doc.application.as_ref().map(|a| a.entities.clone()),
    }
}

/// A stored version as a document (its hash is recomputed when it is compiled).
pub fn stored_document(row: &PolicyVersionRow) -> PolicyDocument {
    let application = row.application_schema.as_ref().map(|schema| Application {
        schema: schema.clone(),
        entities: row.application_entities.clone().unwrap_or_default(),
    });
    PolicyDocument {
        version: row.version,
        hash: row.hash.clone(),
        text: row.text.clone(),
        application,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// AIMS PO-3: an apply whose commit the store watcher installs before the apply does (the
    /// watcher polls the store every 200 ms in a server) is applied, not answered "not newer".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_racing_the_store_watcher_is_applied() {
        let db = aims_store::testing::fresh_sqlite().await;
        let svc = PolicyService::start(db.store.clone(), aims_core::SystemClock::shared())
            .await
            .unwrap();
        let watcher = {
            let svc = svc.clone();
            tokio::spawn(async move {
                loop {
                    let _ = svc.refresh().await;
                    tokio::task::yield_now().await;
                }
            })
        };
        for i in 0..200 {
            let text = format!("{DEFAULT_POLICY}\n// revision {i}\n");
            let out = svc.apply(&text, None, "test", false).await.unwrap();
            assert!(out.applied, "revision {i}");
            assert_eq!(svc.current().version, out.document.version);
        }
        watcher.abort();
        db.cleanup().await;
    }
}
