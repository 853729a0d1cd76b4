//! Leases: work that one replica at a time should do (issue 18), held as a PostgreSQL session
//! advisory lock on a connection of its own. PostgreSQL releases it when that connection or the
//! process holding it dies, so another replica takes the work over at its next try. On SQLite
//! (one server) the lease is always this process's.
//!
//! A lease saves duplicated work; it is not what keeps the work correct. Whoever holds it, what
//! it guards must stay safe if two replicas ever did it at once (a holder cut off from the
//! database keeps its lock until PostgreSQL notices the dead connection).

use sqlx::Connection as _;

use crate::{Backend, Store, StoreError};

/// The work a lease stands for; each is one advisory lock key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseName {
    /// Hashing new audit records into the tree and signing the log's checkpoints.
    AuditSequencer,
}

impl LeaseName {
    /// The advisory lock key: "AIMS" and a number, so other users of the database are unlikely
    /// to collide with it.
    fn key(self) -> i64 {
        const AIMS: i64 = 0x4149_4d53 << 16;
        match self {
            LeaseName::AuditSequencer => AIMS | 1,
        }
    }
}

/// One replica's claim on a lease: a connection of its own that tries the lock and, once it
/// has it, holds it. Dropping it gives the lease up.
#[derive(Debug)]
pub struct Lease {
    name: LeaseName,
    /// The database (PostgreSQL); `None` on SQLite, where the lease is always this process's.
    url: Option<std::sync::Arc<str>>,
    /// The connection asking for (and then holding) the lock.
    conn: Option<sqlx::postgres::PgConnection>,
    held: bool,
}

impl Store {
    /// This replica's claim on the lease `name` (nothing is asked until [`Lease::hold`]).
    pub fn lease(&self, name: LeaseName) -> Lease {
        let url = match self.backend {
            Backend::Postgres => self.url.clone(),
            Backend::Sqlite => None,
        };
        Lease {
            name,
            url,
            conn: None,
            held: false,
        }
    }
}

impl Lease {
    /// Whether this replica holds the lease now: it keeps it while its connection answers
    /// (a lost connection lost the lock with it), and otherwise asks for it on its one
    /// connection (made again only after a failure).
    pub async fn hold(&mut self) -> Result<bool, StoreError> {
        let Some(url) = &self.url else {
            return Ok(true);
        };
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                self.held = false;
                self.conn
                    .insert(sqlx::postgres::PgConnection::connect(url).await?)
            }
        };
        let answer = if self.held {
            conn.ping().await.map(|()| true)
        } else {
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.name.key())
                .fetch_one(&mut *conn)
                .await
        };
        match answer {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(e) => {
                self.conn = None;
                self.held = false;
                Err(e.into())
            }
        }
    }
}
