//! `replicas` (issue 18): the token endpoint served by 1, 2 and 3 `aims server` replicas on one
//! PostgreSQL, the load spread over them (16 connections, closed loop, JWT-SVID client
//! authentication), against one replica in the same run; with each figure the CPU every replica
//! and PostgreSQL used. Then Workload API FetchJWTSVID calls (a new audience each, so the
//! agent's replica mints every one) through 1, 2 and 3 `aims agent`s, each attested to a
//! replica of its own (agents on CPU 0 with the load). Also one replica deciding with
//! `server.audit = "sync"` (each grant waits
//! for its decision record to be durable) against the default `async`, and a single server on
//! SQLite. Replicas are pinned to CPU 1, the load to CPU 0; PostgreSQL runs where the kernel
//! puts it. On a 2-core machine this measures what replication costs, not how it scales.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use aims_admin::client::AdminClient;
use aims_token::wire::JWT_SPIFFE_ASSERTION;
use anyhow::Context as _;

use super::cpu::CpuWatch;
use super::oauth::{fixed, form};
use super::process::{Proc, https_target, median_run, postgres_run, start_named};
use crate::load::{Pace, Target};
use crate::measure::Timing;
use crate::report::{Row, ScenarioReport};

const TD: &str = "bench.example";
/// The issuer every replica advertises (a balancer's name; the load goes to each replica).
const PUBLIC_URL: &str = "https://aims.bench.example";
const RESOURCE: &str = "https://tool.bench.example/api";
const CONNS: usize = 16;

/// A running replica: its process, its token endpoint and its pid.
struct Replica {
    proc: Proc,
    token_endpoint: Target,
    admin: AdminClient,
    /// Its agent API, `host:port`.
    agent_api: String,
}

/// Starts replica `name` on `database` (with `first`'s audit log key), pinned to CPU 1.
fn start_replica(
    dir: &Path,
    name: &str,
    config: &Path,
    database: Option<&str>,
    first: Option<&Path>,
) -> anyhow::Result<Replica> {
    let data = dir.join(name);
    if let Some(first) = first {
        aims_core::files::private_dir(&data.join("keys"))?;
        let key = Path::new("keys").join("audit-log.key.pem");
        std::fs::copy(first.join(&key), data.join(&key)).context("copy the audit log key")?;
    }
    let mut extra = vec![
        "--public-url",
        PUBLIC_URL,
        "--public-mtls-url",
        "https://aims.bench.example:8444",
    ];
    if let Some(url) = database {
        extra.extend(["--database", url]);
    }
    let (proc, up) = start_named(dir, name, "server", TD, Some(config), Some("1"), &extra)?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("up.json");
    let base = format!("https://{}", text(&up["server"]["listeners"]["https"])?);
    let ca = text(&up["server"]["web_ca_file"])?;
    Ok(Replica {
        proc,
        token_endpoint: https_target(&base, Path::new(&ca), "/oauth2/token")?,
        admin: AdminClient::new(text(&up["admin_socket"])?),
        agent_api: text(&up["server"]["listeners"]["agent_api"])?,
    })
}

/// A client_credentials grant of agent A authenticated by a JWT-SVID `admin` mints for the
/// replicas' issuer (reused: a cache hit after the first).
fn svid_body(
    rt: &tokio::runtime::Runtime,
    admin: &AdminClient,
) -> anyhow::Result<crate::load::BodyFn> {
    let svid = rt
        .block_on(admin.mint_jwt(&aims_admin::api::MintJwtRequest {
            spiffe_id: aims_core::SpiffeId::parse(&format!("spiffe://{TD}/agent/a"))?,
            audience: vec![PUBLIC_URL.into()],
            ttl_seconds: Some(3600),
        }))?
        .token;
    Ok(fixed(form(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
        ("client_assertion", &svid),
        ("scope", "api:read"),
        ("resource", RESOURCE),
    ])?))
}

/// The configuration every replica of one run shares.
fn config(dir: &Path, audit: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("aims-{audit}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\naudit = \"{audit}\"\n\n[server.oauth]\naccess_token_ttl = \"1h\"\n\n\
             [[server.oauth.resources]]\nresource = \"{RESOURCE}\"\n"
        ),
    )?;
    Ok(path)
}

/// One closed-loop run over `replicas`; the result and a note of the CPU each process used.
fn measure(
    rt: &tokio::runtime::Runtime,
    timing: Timing,
    replicas: &[&Replica],
    body: &crate::load::BodyFn,
) -> anyhow::Result<(crate::measure::Measurement, String)> {
    let targets: Vec<Target> = replicas.iter().map(|r| r.token_endpoint.clone()).collect();
    let cpu = CpuWatch::start(replicas.iter().map(|r| r.proc.0.id()).collect());
    let counter = Arc::new(AtomicU64::new(0));
    let r = rt.block_on(median_run(
        timing,
        &targets,
        CONNS,
        Pace::Closed,
        body,
        &counter,
    ))?;
    let (each, pg) = cpu.shares();
    let note = format!(
        "{} replica(s): {:.0} tokens/s; CPU replicas {each}, PostgreSQL {pg}",
        replicas.len(),
        r.m.ops_per_sec,
    );
    Ok((r.m, note))
}

/// Starts an `aims agent` (on CPU 0, beside the load) attested to `replica` alone, with one
/// entry for this process's uid; returns it and its Workload API socket once it holds the SVID.
fn start_agent(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    replica: &Replica,
    n: usize,
) -> anyhow::Result<(Proc, std::path::PathBuf)> {
    use std::os::unix::fs::MetadataExt as _;
    let agent_id = aims_core::SpiffeId::parse(&format!("spiffe://{TD}/aims/agent/bench-{n}"))?;
    let uid = std::fs::metadata("/proc/self")?.uid();
    let (bundle, token) = rt.block_on(async {
        replica
            .admin
            .create_entry(&aims_store::NewEntry::new(
                aims_core::SpiffeId::parse(&format!("spiffe://{TD}/bench/wl-{n}"))?,
                agent_id.clone(),
                vec![format!("unix:uid:{uid}").parse()?],
            ))
            .await?;
        let token = replica
            .admin
            .create_join_token(&aims_admin::api::CreateJoinTokenRequest {
                spiffe_id: Some(agent_id),
                ttl_seconds: None,
            })
            .await?
            .token;
        anyhow::Ok((replica.admin.bundle().await?.pem, token))
    })?;
    let bundle_file = dir.join(format!("bundle-{n}.pem"));
    std::fs::write(&bundle_file, bundle)?;
    let socket = dir.join(format!("agent-{n}.sock"));
    let log = dir.join(format!("agent-{n}.log"));
    let proc = Proc(
        std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(super::process::aims_bin()?)
            .args([
                "agent",
                "--trust-domain",
                TD,
                "--server-address",
                &replica.agent_api,
            ])
            .arg("--trust-bundle")
            .arg(&bundle_file)
            .arg("--data-dir")
            .arg(dir.join(format!("agent-{n}")))
            .arg("--socket")
            .arg(&socket)
            .args(["--join-token", &token])
            .env("AIMS_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    super::process::wait_for(
        &format!("agent {n}'s SVID"),
        std::time::Duration::from_secs(60),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("cached=1")),
    )?;
    Ok((proc, socket))
}

/// Closed-loop FetchJWTSVID calls, a new audience each (so each is minted by the agent's
/// replica), over `CONNS` connections spread across `sockets`: the median repetition.
fn workload_fetches(
    rt: &tokio::runtime::Runtime,
    timing: Timing,
    sockets: &[std::path::PathBuf],
) -> anyhow::Result<crate::measure::Measurement> {
    let mut reps = Vec::with_capacity(timing.reps);
    for rep in 0..timing.reps {
        let samples = rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            let warm = Instant::now() + timing.warmup;
            let end = warm + timing.measure;
            for c in 0..CONNS {
                let socket = sockets[c % sockets.len()].clone();
                tasks.spawn(async move {
                    let mut client =
                        aims_workload_api::client::WorkloadApiClient::connect_path(&socket)?;
                    let mut samples = Vec::new();
                    for i in 0u64.. {
                        let start = Instant::now();
                        if start >= end {
                            break;
                        }
                        let aud = format!("https://tool-{rep}-{c}-{i}.bench.example");
                        client.fetch_jwt_svid(vec![aud], None).await?;
                        if start >= warm {
                            samples.push(
                                u32::try_from(start.elapsed().as_nanos()).unwrap_or(u32::MAX),
                            );
                        }
                    }
                    anyhow::Ok(samples)
                });
            }
            let mut all = Vec::new();
            while let Some(done) = tasks.join_next().await {
                all.extend(done??);
            }
            anyhow::Ok(all)
        })?;
        reps.push(crate::measure::summarize(
            samples,
            timing.measure.as_secs_f64(),
        ));
    }
    reps.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    reps.into_iter()
        .nth(timing.reps / 2)
        .context("no repetition")
}

/// Runs the scenario.
pub fn replicas(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let (rt, url, db) = postgres_run("replicas")?;
    let dir = tempfile::tempdir()?;
    let (async_config, sync_config) = (config(dir.path(), "async")?, config(dir.path(), "sync")?);

    eprintln!("  starting replica 1 on PostgreSQL (CPU 1)…");
    let first = start_replica(dir.path(), "replica-1", &async_config, Some(&url), None)?;
    let first_dir = dir.path().join("replica-1");
    let body = svid_body(&rt, &first.admin)?;

    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "rows run one after another as replicas join, each the median of {} repetitions of \
         {:?}; CPU shares cover the repetitions and their warm-ups",
        timing.reps, timing.measure
    )];
    let (one, note) = measure(&rt, timing, &[&first], &body)?;
    notes.push(note);
    let base_label = "1 replica";
    let base = one.ops_per_sec;
    rows.push(Row::baseline(
        "1 replica (PostgreSQL), JWT-SVID, 16 conn (baseline)",
        one,
    ));
    let mut more = Vec::new();
    for n in 2..=3 {
        eprintln!("  starting replica {n}…");
        more.push(start_replica(
            dir.path(),
            &format!("replica-{n}"),
            &async_config,
            Some(&url),
            Some(&first_dir),
        )?);
        let all: Vec<&Replica> = std::iter::once(&first).chain(more.iter()).collect();
        let (m, note) = measure(&rt, timing, &all, &body)?;
        notes.push(note);
        rows.push(Row::against(
            &format!("{n} replicas, load spread, JWT-SVID, 16 conn"),
            m,
            base_label,
            base,
            None,
        ));
    }
    // Workload API (issue 18): one agent per serving replica, FetchJWTSVID minted there.
    let all: Vec<&Replica> = std::iter::once(&first).chain(more.iter()).collect();
    let mut agents = Vec::new();
    let mut sockets = Vec::new();
    let mut wl_base = 0.0;
    for n in 1..=all.len() {
        eprintln!("  Workload API: {n} agent(s), each on its own replica…");
        let (proc, socket) = start_agent(&rt, dir.path(), all[n - 1], n)?;
        agents.push(proc);
        sockets.push(socket);
        let replicas_cpu = CpuWatch::start(all[..n].iter().map(|r| r.proc.0.id()).collect());
        let agents_cpu = CpuWatch::start(agents.iter().map(|a: &Proc| a.0.id()).collect());
        let m = workload_fetches(&rt, timing, &sockets)?;
        let ((replicas_share, pg), (agents_share, _)) =
            (replicas_cpu.shares(), agents_cpu.shares());
        notes.push(format!(
            "Workload API, {n} agent(s) on {n} replica(s): {:.0} FetchJWTSVID/s (new audience \
             per call, minted by the agent's replica); CPU serving replicas {replicas_share}, \
             agents {agents_share}, PostgreSQL {pg}",
            m.ops_per_sec
        ));
        if n == 1 {
            wl_base = m.ops_per_sec;
            rows.push(Row::baseline(
                "Workload API FetchJWTSVID (minted), 1 agent on 1 replica, 16 conn (baseline)",
                m,
            ));
        } else {
            rows.push(Row::against(
                &format!("Workload API FetchJWTSVID (minted), {n} agents on {n} replicas, 16 conn"),
                m,
                "1 agent on 1 replica",
                wl_base,
                None,
            ));
        }
    }
    drop(agents);
    drop(more);

    eprintln!("  one replica with server.audit = \"sync\"…");
    let sync = start_replica(
        dir.path(),
        "replica-sync",
        &sync_config,
        Some(&url),
        Some(&first_dir),
    )?;
    let (m, note) = measure(&rt, timing, &[&sync], &body)?;
    notes.push(format!("audit sync: {note}"));
    rows.push(Row::against(
        "1 replica, server.audit = \"sync\", JWT-SVID, 16 conn",
        m,
        base_label,
        base,
        None,
    ));
    drop(sync);
    drop(first);

    eprintln!("  one server on SQLite…");
    let sqlite = start_replica(dir.path(), "sqlite", &async_config, None, None)?;
    let sqlite_body = svid_body(&rt, &sqlite.admin)?;
    let (m, note) = measure(&rt, timing, &[&sqlite], &sqlite_body)?;
    notes.push(format!("SQLite: {note}"));
    rows.push(Row::against(
        "1 server on SQLite (the default store), JWT-SVID, 16 conn",
        m,
        base_label,
        base,
        None,
    ));
    drop(sqlite);
    rt.block_on(aims_store::testing::drop_postgres_database(&db));
    Ok(ScenarioReport {
        scenario: "replicas".into(),
        description: "token endpoint on 1–3 aims server replicas sharing one PostgreSQL, all \
             replicas pinned to CPU 1, load from CPU 0"
            .into(),
        rows,
        notes,
    })
}
