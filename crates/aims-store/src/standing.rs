//! Standing revocations held in memory (issue 17): every grant asks whether its client, subject
//! or actors are revoked (AIMS MO-4), every exchange and introspection whether a token's `jti`
//! is (RFC 7009). Those answers come from this index, not from a query per request. It is
//! loaded from the tables on first use and written through by this store's own revocation
//! writes, after their commit and before they return: once a revocation call has returned,
//! no grant of this process is decided without it.
//!
//! Every revocation write also bumps the `revocation` change counter in its transaction; a
//! replica sharing the store sees the counter move at its next [`Store::refresh_revocations`]
//! (on change notification, and every 200 ms) and reloads, as replicas learn of new
//! registration entries.
//!
//! Bounded staleness (issue 18): a replica cut off from a shared store cannot learn of another
//! replica's revocations. Once [`Store::bound_revocation_staleness`] is set, an index not
//! confirmed current by a counter read within the bound answers `Unavailable` instead: grants
//! fail closed (503) until the store answers again, rather than being decided on revocations
//! that may be out of date.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use sqlx::Row as _;

use crate::remediation::{REVOCATION_COLUMNS, Revocation, revocation_row};
use crate::{Counter, Store, StoreError};

/// What is revoked, by principal and by `jti`.
#[derive(Debug)]
struct Index {
    /// The revocation counter when it was loaded.
    revision: i64,
    /// When the store last confirmed the index current (the counter read that did so began).
    confirmed: Instant,
    /// Every revocation ever made, lifted or not, by principal (a lifted one still ends the
    /// tokens issued before it).
    principals: HashMap<String, Revocation>,
    /// Revoked self-contained tokens: `jti` → when the token would have expired.
    jtis: HashMap<String, i64>,
}

impl Index {
    /// A write of this store moved the counter to `revision` and is now in the index: if no
    /// other store moved it in between, the index is current at `revision` and the next refresh
    /// need not reload; otherwise it stays behind, and the refresh reloads.
    fn written_through(&mut self, revision: i64) {
        if self.revision == revision - 1 {
            self.revision = revision;
        }
    }
}

/// The index, loaded once.
#[derive(Debug, Default)]
pub(crate) struct Standing {
    index: tokio::sync::OnceCell<RwLock<Index>>,
    /// Changes to the index take turns: a reload's snapshot, read before a revocation
    /// committed, must not replace the index after that revocation was written through.
    changes: tokio::sync::Mutex<()>,
    /// How stale the index may be before it answers `Unavailable` (unset: no bound).
    max_staleness: OnceLock<Duration>,
}

impl Store {
    /// Bounds how long revocation answers may rest on an index the store has not confirmed
    /// current (a server sharing the store with other replicas sets it once, at start).
    pub fn bound_revocation_staleness(&self, bound: Duration) {
        let _ = self.standing.max_staleness.set(bound);
    }

    async fn standing(&self) -> Result<&RwLock<Index>, StoreError> {
        self.standing
            .index
            .get_or_try_init(|| async { self.load_index().await.map(RwLock::new) })
            .await
    }

    /// Everything, read after the change counter (a change racing the read bumps it again, so
    /// the next refresh loads once more).
    async fn load_index(&self) -> Result<Index, StoreError> {
        let confirmed = Instant::now();
        let revision = self.counter(Counter::Revocation).await?;
        let sql = format!("SELECT {REVOCATION_COLUMNS} FROM revoked_principals");
        let principals = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| revocation_row(r).map(|v| (v.principal.clone(), v)))
            .collect::<Result<_, StoreError>>()?;
        let jtis = sqlx::query("SELECT jti, expires_at FROM oauth_revoked")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("jti")?, r.try_get("expires_at")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(Index {
            revision,
            confirmed,
            principals,
            jtis,
        })
    }

    /// Reloads the index if another store (a replica sharing this database) revoked or lifted
    /// something since it was loaded: one counter read when nothing changed. Returns whether it
    /// reloaded. The server calls it every 200 ms.
    pub async fn refresh_revocations(&self) -> Result<bool, StoreError> {
        let Some(lock) = self.standing.index.get() else {
            // Not loaded yet: the first use loads what is current.
            return Ok(false);
        };
        let _turn = self.standing.changes.lock().await;
        let asked = Instant::now();
        let current = self.counter(Counter::Revocation).await?;
        {
            let mut index = lock
                .write()
                .map_err(|_| StoreError::Unavailable("revocation index poisoned".into()))?;
            if current == index.revision {
                index.confirmed = asked;
                return Ok(false);
            }
        }
        let fresh = self.load_index().await?;
        *lock
            .write()
            .map_err(|_| StoreError::Unavailable("revocation index poisoned".into()))? = fresh;
        Ok(true)
    }

    /// Reads the index. A poisoned lock (a panic while writing it), or an index older than the
    /// staleness bound, fails closed.
    async fn read_standing<T>(&self, f: impl FnOnce(&Index) -> T) -> Result<T, StoreError> {
        let lock = self.standing().await?;
        let index = lock
            .read()
            .map_err(|_| StoreError::Unavailable("revocation index poisoned".into()))?;
        if let Some(bound) = self.standing.max_staleness.get() {
            let age = index.confirmed.elapsed();
            if age > *bound {
                return Err(StoreError::Unavailable(format!(
                    "revocations last confirmed with the store {} ms ago (bound {} ms)",
                    age.as_millis(),
                    bound.as_millis()
                )));
            }
        }
        Ok(f(&index))
    }

    async fn write_standing(&self, f: impl FnOnce(&mut Index)) -> Result<(), StoreError> {
        let lock = self.standing().await?;
        let mut index = lock
            .write()
            .map_err(|_| StoreError::Unavailable("revocation index poisoned".into()))?;
        f(&mut index);
        Ok(())
    }

    /// The revocations of any of `principals`, newest first.
    pub async fn revocations_of(&self, principals: &[&str]) -> Result<Vec<Revocation>, StoreError> {
        let mut found: Vec<Revocation> = self
            .read_standing(|index| {
                let mut found: Vec<Revocation> = Vec::new();
                for p in principals {
                    if let Some(r) = index.principals.get(*p)
                        && !found.iter().any(|f| f.principal == r.principal)
                    {
                        found.push(r.clone());
                    }
                }
                found
            })
            .await?;
        found.sort_by_key(|r| std::cmp::Reverse(r.revoked_at));
        Ok(found)
    }

    /// Whether a self-contained token's `jti` was revoked.
    pub async fn is_jti_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.read_standing(|index| index.jtis.contains_key(jti))
            .await
    }

    /// Re-reads `principal`'s revocation into the index after a write committed that moved the
    /// change counter to `revision`.
    pub(crate) async fn refresh_revocation(
        &self,
        principal: &str,
        revision: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.standing.changes.lock().await;
        let sql =
            format!("SELECT {REVOCATION_COLUMNS} FROM revoked_principals WHERE principal = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(principal)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| revocation_row(&r))
            .transpose()?;
        self.write_standing(|index| {
            match row {
                Some(r) => {
                    index.principals.insert(principal.to_owned(), r);
                }
                None => {
                    index.principals.remove(principal);
                }
            }
            index.written_through(revision);
        })
        .await
    }

    /// Notes a revoked `jti` in the index after its write committed (moving the counter to
    /// `revision`).
    pub(crate) async fn note_revoked_jti(
        &self,
        jti: &str,
        expires_at: i64,
        revision: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.standing.changes.lock().await;
        self.write_standing(|index| {
            index.jtis.insert(jti.to_owned(), expires_at);
            index.written_through(revision);
        })
        .await
    }

    /// Drops `jti`s past their expiry from the index (their tokens no longer verify anyway).
    pub(crate) async fn forget_revoked_jtis(&self, now: i64) -> Result<(), StoreError> {
        let _turn = self.standing.changes.lock().await;
        self.write_standing(|index| index.jtis.retain(|_, exp| *exp > now))
            .await
    }
}
