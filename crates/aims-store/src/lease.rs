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

/// A held lease; dropping it gives it up.
#[derive(Debug)]
pub struct Lease {
    name: LeaseName,
    /// The connection holding the lock (PostgreSQL); closing it releases the lock.
    conn: Option<sqlx::postgres::PgConnection>,
}

impl Store {
    /// Takes the lease `name` if no other replica holds it; `None` if one does.
    pub async fn try_lease(&self, name: LeaseName) -> Result<Option<Lease>, StoreError> {
        let (Backend::Postgres, Some(url)) = (self.backend, self.url.as_deref()) else {
            return Ok(Some(Lease { name, conn: None }));
        };
        let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(name.key())
            .fetch_one(&mut conn)
            .await?;
        if !taken {
            // Nothing to release: the connection closes with the lock untaken.
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Lease {
            name,
            conn: Some(conn),
        }))
    }
}

impl Lease {
    /// What the lease is for.
    pub fn name(&self) -> LeaseName {
        self.name
    }

    /// Whether the lease is still held: its connection still answers (a lost connection lost
    /// the lock with it).
    pub async fn held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }
}
