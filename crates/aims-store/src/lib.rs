//! # aims-store
//!
//! AIMS persistence on sqlx: embedded SQLite by default (a file in the data directory), and
//! PostgreSQL when several server replicas share one store. The same repository code runs on
//! both through `sqlx::AnyPool`; only the migrations differ per backend (column types and
//! auto-increment). Times are integer Unix seconds, JSON is text, booleans are integers, so
//! every value crosses the `Any` driver the same way on both backends.
#![forbid(unsafe_code)]

mod agents;
mod audit;
mod ca;
mod changes;
mod entries;
mod error;
mod issued;
mod lease;
mod nodes;
mod oauth;
mod one_time;
mod people;
mod policy;
mod registration_changes;
mod remediation;
mod secrets;
mod signals;
mod standing;
pub mod testing;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Connection as _, Executor as _};

pub use agents::{Counter, FederatedBundleRow};
pub use audit::{
    AUDIT_TILE_WIDTH, AuditRow, AuditStorage, CheckpointRow, NewAuditRow, audit_tile_id,
};
pub use ca::{BundleRow, SlotRow, SlotStatus};
pub use changes::ChangeWaiter;
pub use entries::{EntryFilter, EntryUpdate, NewEntry, RegistrationEntry, Selector, SelectorError};
pub use error::StoreError;
pub use issued::{CredentialKind, IssuedCredential};
pub use lease::{Lease, LeaseName};
pub use nodes::AttestedNode;
pub use oauth::{ClientSource, OAuthClientRow, RefreshUse, TokenKind, TokenRecord};
pub use people::{CibaRow, CibaStatus, CodeRow, CodeUse, SessionRow, UserRow};
pub use policy::{PolicyFollower, PolicyVersionRow};
pub use registration_changes::{
    ChangesSince, MAX_RETAINED_CHANGES, RegistrationChange, RegistrationChanges,
};
pub use remediation::Revocation;
pub use secrets::SHARED_SECRET_LEN;
pub use signals::{PendingSet, StreamRow};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The AIMS store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time, and a writer that loses the race polls with growing
    /// sleeps: this process's long write transactions (audit appends, the audit tree) take
    /// turns here, first come first served, instead.
    write_turns: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Standing revocations, in memory.
    standing: std::sync::Arc<standing::Standing>,
    /// The group-committing writer of one-time values.
    one_time: std::sync::Arc<one_time::OneTimeWriter>,
    /// What other replicas changed, heard on PostgreSQL's `LISTEN` connection.
    changes: std::sync::Arc<changes::ChangeListener>,
    /// The database URL (PostgreSQL only, for that connection; never logged).
    url: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// [`Store::begin_write`] on `pool`, for writers that hold the pool apart from the store.
pub(crate) async fn begin_write(
    pool: &AnyPool,
    backend: Backend,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
    Ok(match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    })
}

impl Store {
    /// This process's turn to write, on SQLite (see `write_turns`); PostgreSQL needs none.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_turns.lock().await),
            Backend::Postgres => None,
        }
    }

    /// A write transaction: on SQLite `BEGIN IMMEDIATE`, so the write lock is taken first (a
    /// read that later upgrades could deadlock with another writer: SQLITE_BUSY at once, not
    /// after busy_timeout). Callers take their [`Store::write_turn`] before it.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        begin_write(&self.pool, self.backend).await
    }

    /// Opens (creating if needed) the SQLite store at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL scheme (expected sqlite:// or postgres://): {}",
                redact_url(url)
            )));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // A file on this machine: a pooled connection cannot go stale, so no ping (a round
            // trip to the connection's thread) before each use.
            pool_options = pool_options
                .max_connections(8)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL: readers never block the writer. FULL: an acknowledged commit survives
                        // a crash or power loss. busy_timeout: writers queue instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                });
        } else {
            pool_options = pool_options.max_connections(16);
        }
        // One direct connection first: an unreachable or misconfigured database fails at once
        // with the driver's own error, instead of after the pool's acquire timeout.
        let probe = sqlx::AnyConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", redact_url(url))))?;
        let _ = probe.close().await;
        let pool = pool_options.connect_lazy_with(options);
        let store = Self {
            pool,
            backend,
            write_turns: std::sync::Arc::default(),
            standing: std::sync::Arc::default(),
            one_time: std::sync::Arc::default(),
            changes: std::sync::Arc::default(),
            url: (backend == Backend::Postgres).then(|| url.into()),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for crates that keep their own tables (the audit log).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A database URL with any password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn now_unix() -> i64 {
    aims_core::unix_seconds(std::time::SystemTime::now())
}

/// `$first,$first+1,…` for `n` bound values: the only text ever formatted into SQL.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
