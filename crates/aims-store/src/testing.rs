//! Test support: a fresh, isolated store on each backend.
//!
//! The PostgreSQL server is shared between test runs (and between parallel tests), so every
//! test gets its own database, named `aims_t_<unix time>_<random>`, dropped when the test cleans
//! up; databases left behind by a crashed run are swept after two hours. When PostgreSQL cannot
//! be reached the PostgreSQL half is skipped with a warning, except under `CI=true`, where it
//! is a failure: CI must prove both backends.

use std::path::PathBuf;

use sqlx::{AssertSqlSafe, Connection as _, Row as _};

use crate::{Backend, Store};

/// Where tests find PostgreSQL unless `AIMS_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const PREFIX: &str = "aims_t_";
const SWEEP_AFTER_SECS: i64 = 2 * 3600;

/// A store created for one test.
pub struct TestDatabase {
    /// The store, migrated.
    pub store: Store,
    /// The URL it was opened with (to hand to a server process).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(PathBuf),
    Postgres { name: String },
}

impl TestDatabase {
    /// `sqlite` or `postgres`, for test messages.
    pub fn label(&self) -> &'static str {
        match self.store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Closes the store and removes the database.
    pub async fn cleanup(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { name } => drop_postgres_database(&name).await,
        }
    }
}

/// The PostgreSQL URL tests and benchmarks make their databases from
/// (`AIMS_TEST_POSTGRES_URL`, default the local `test` database).
pub fn admin_url() -> String {
    std::env::var("AIMS_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh SQLite store in its own temporary directory.
pub async fn fresh_sqlite() -> TestDatabase {
    let dir = std::env::temp_dir().join(format!("aims-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.join("aims.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open SQLite: {e}"));
    TestDatabase {
        store,
        url,
        cleanup: Cleanup::Sqlite(dir),
    }
}

/// The URL of a fresh, empty PostgreSQL database, or `None` (with a warning) when PostgreSQL
/// is unreachable outside CI. The caller owns the database; [`drop_postgres_database`] removes
/// it.
pub async fn fresh_postgres_url() -> Option<(String, String)> {
    sqlx::any::install_default_drivers();
    let admin = admin_url();
    let mut conn = match sqlx::AnyConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if in_ci() => panic!(
            "PostgreSQL is required under CI=true but {} is unreachable: {e}",
            crate::redact_url(&admin)
        ),
        Err(e) => {
            eprintln!(
                "warning: skipping the PostgreSQL half of this test ({}: {e})",
                crate::redact_url(&admin)
            );
            return None;
        }
    };
    let now = crate::now_unix();
    sweep(&mut conn, now).await;
    let name = format!(
        "{PREFIX}{now}_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("x")
    );
    // The name is ours (prefix, digits, hex), never input: safe to splice.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("AIMS_TEST_POSTGRES_URL has no database path"),
    };
    Some((url, name))
}

/// Drops a database made by [`fresh_postgres_url`].
pub async fn drop_postgres_database(name: &str) {
    if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url()).await {
        drop_database(&mut conn, name).await;
    }
}

async fn drop_database(conn: &mut sqlx::AnyConnection, name: &str) {
    if !name.starts_with(PREFIX) || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return;
    }
    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(conn)
    .await;
}

/// A fresh PostgreSQL store, or `None` when PostgreSQL is unreachable outside CI.
pub async fn fresh_postgres() -> Option<TestDatabase> {
    let (url, name) = fresh_postgres_url().await?;
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open PostgreSQL test database: {e}"));
    Some(TestDatabase {
        store,
        url,
        cleanup: Cleanup::Postgres { name },
    })
}

/// One fresh store per available backend: SQLite always, PostgreSQL when reachable.
pub async fn fresh_stores() -> Vec<TestDatabase> {
    let mut out = vec![fresh_sqlite().await];
    if let Some(pg) = fresh_postgres().await {
        out.push(pg);
    }
    out
}

/// Drops test databases older than two hours, left by runs that crashed before cleaning up.
async fn sweep(conn: &mut sqlx::AnyConnection, now: i64) {
    let Ok(rows) = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'aims_t_%'")
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<i64>().ok());
        if created.is_some_and(|t| now - t > SWEEP_AFTER_SECS) {
            drop_database(conn, &name).await;
        }
    }
}

/// Brings the empty database at `url` to schema `version` and no further (migration tests
/// write rows in an older schema, then open a [`Store`], which migrates the rest).
pub async fn migrate_to(url: &str, version: i64) {
    sqlx::any::install_default_drivers();
    let migrator = if url.starts_with("sqlite:") {
        &crate::SQLITE_MIGRATIONS
    } else {
        &crate::POSTGRES_MIGRATIONS
    };
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect for migration: {e}"));
    migrator
        .run_to(version, &mut conn)
        .await
        .unwrap_or_else(|e| panic!("migrate to {version}: {e}"));
    let _ = conn.close().await;
}
