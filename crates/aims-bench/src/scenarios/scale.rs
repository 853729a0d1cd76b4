//! `scale`: how the token endpoint's cost grows with the work (issue 17). JWT-SVID
//! client_credentials and token exchange at 16 connections, with `aims server` on one core and
//! on two, first over an empty store and then over one holding 10,000 registered clients and
//! 100,000 revoked principals (held in memory by the server, so a request's cost should not
//! grow with them); also the server's start time and resident memory in each case.
//!
//! With two vCPUs, "two cores" means the server shares CPU 0 with the load generator: the row
//! says what one more (shared) core buys, not what a dedicated second core would.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use aims_store::Store;

use crate::load::Pace;
use crate::measure::Timing;
use crate::report::{Row, ScenarioReport};
use crate::scenarios::oauth::AimsServer;
use crate::scenarios::process::{median_run, pin_self};

/// Registered clients in the loaded store.
const CLIENTS: usize = 10_000;
/// Revoked principals in the loaded store.
const REVOKED: usize = 100_000;
/// Rows per seeding statement.
const SEED_CHUNK: usize = 500;

/// One seeded row's SQL values, by number.
pub type RowFn<'a> = dyn Fn(usize) -> String + 'a;

/// Inserts rows `0..n` into `table` (with its column list), a few hundred per statement: bench
/// fixtures whose values the bench makes up itself, so no input reaches this SQL.
pub async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    n: usize,
    row: &RowFn<'_>,
) -> anyhow::Result<()> {
    for start in (0..n).step_by(SEED_CHUNK) {
        let rows: Vec<String> = (start..(start + SEED_CHUNK).min(n)).map(row).collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES {}",
            rows.join(",")
        )))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes `CLIENTS` registered clients and `REVOKED` revoked principals into the store the
/// server will open from `data_dir` (bench fixtures, written once, in a few transactions).
async fn seed(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open_sqlite(&data_dir.join("aims.db")).await?;
    let now = aims_core::unix_seconds(std::time::SystemTime::now());
    let metadata = r#"{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks_uri":"https://clients.bench.example/jwks"}"#;
    let mut tx = store.pool().begin().await?;
    // Literal values the bench makes up itself: no input reaches this SQL.
    let tables: [(&str, usize, &RowFn<'_>); 2] = [
        (
            "oauth_clients (client_id, metadata, secret_hash, source, created_at, updated_at)",
            CLIENTS,
            &|i| format!("('bench-client-{i}', '{metadata}', NULL, 'admin', {now}, {now})"),
        ),
        (
            "revoked_principals (principal, revoked_at, cause, lifted_at)",
            REVOKED,
            &|i| format!("('spiffe://bench.example/agent/retired-{i}', {now}, 'bench', NULL)"),
        ),
    ];
    for (table, n, row) in tables {
        insert_rows(&mut tx, table, n, row).await?;
    }
    tx.commit().await?;
    store.close().await;
    Ok(())
}

/// The resident memory of process `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs the scenario.
pub fn scale(timing: Timing) -> anyhow::Result<ScenarioReport> {
    pin_self(0)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let counter = Arc::new(AtomicU64::new(0));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut base: Option<(f64, f64)> = None;
    for loaded in [false, true] {
        let dir = tempfile::tempdir()?;
        let store_label = if loaded {
            format!("{CLIENTS} clients, {REVOKED} revoked principals")
        } else {
            "empty store".to_owned()
        };
        if loaded {
            eprintln!("  seeding {store_label}…");
            rt.block_on(seed(&dir.path().join("server")))?;
        }
        for (cpus, cores) in [
            ("1", "1 core"),
            ("0,1", "2 cores (one shared with the load)"),
        ] {
            eprintln!("  aims server on {cores}, {store_label}…");
            let started = Instant::now();
            let server = AimsServer::start(dir.path(), &rt, cpus)?;
            let start_s = started.elapsed().as_secs_f64();
            let svid = server.svid_body()?;
            let (exchange, _) = server.delegation_bodies(&rt)?;
            let target = std::slice::from_ref(&server.token_endpoint);
            let mut measured = Vec::new();
            for (what, body) in [
                ("JWT-SVID client_credentials", &svid),
                ("token exchange", &exchange),
            ] {
                let m = rt
                    .block_on(median_run(timing, target, 16, Pace::Closed, body, &counter))?
                    .m;
                measured.push((what, m));
            }
            notes.push(format!(
                "{cores}, {store_label}: started in {start_s:.2} s, {:.0} MiB resident after the runs",
                rss_mib(server.proc.0.id())
            ));
            for (what, m) in measured {
                let label = format!("{what}, 16 conn, {cores}, {store_label}");
                let reference = match (what, base) {
                    ("token exchange", Some((_, e))) => Some(e),
                    (_, Some((c, _))) => Some(c),
                    (_, None) => None,
                };
                match reference {
                    Some(r) => rows.push(Row::against(
                        &label,
                        m,
                        &format!("{what}, 1 core, empty store"),
                        r,
                        None,
                    )),
                    None => rows.push(Row::baseline(&label, m)),
                }
            }
            if base.is_none() {
                let ops: Vec<f64> = rows.iter().map(|r| r.m.ops_per_sec).collect();
                base = Some((ops[0], ops[1]));
            }
        }
    }
    Ok(ScenarioReport {
        scenario: "scale".into(),
        description: "token endpoint cost as the work grows: 1 and 2 cores, empty and loaded store"
            .into(),
        rows,
        notes,
    })
}
