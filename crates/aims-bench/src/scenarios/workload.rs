//! `workload-api`: the node agent as workloads meet it, against real `aims server` and
//! `aims agent` processes on this machine.
//!
//! The agent holds 10,000 registration entries (9,999 for other uids, one for the bench's
//! own uid), so every figure is taken with a full cache. Measured:
//! * first-response latency of FetchX509SVID from the cache, a new stream per call on one
//!   connection, against FetchX509Bundles (same path, no attestation, no SVID) as baseline;
//!   and with a new connection per call;
//! * FetchJWTSVID: cached (same audience), and minted by the server (a new audience per call);
//! * propagation: `aims entry create` (admin API) until the new SVID arrives on a stream that
//!   is already open;
//! * the agent's resident memory with 10,000 entries, idle and with 1,000 open streams.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aims_admin::client::AdminClient;
use aims_store::NewEntry;
use aims_workload_api::client::WorkloadApiClient;
use anyhow::Context as _;

use super::process::{Proc, aims_bin, rss_kib, start_server, wait_for};
use crate::measure::{Timing, run_interleaved, summarize};
use crate::report::{Row, ScenarioReport};

const TD: &str = "bench.example";
const AGENT: &str = "spiffe://bench.example/aims/agent/bench";
const ENTRIES: usize = 10_000;
const STREAMS: usize = 1_000;

fn own_uid() -> anyhow::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

fn entry(spiffe_id: &str, selector: String) -> anyhow::Result<NewEntry> {
    Ok(NewEntry {
        spiffe_id: aims_core::SpiffeId::parse(spiffe_id)?,
        parent_id: aims_core::SpiffeId::parse(AGENT)?,
        selectors: vec![selector.parse()?],
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        dns_names: vec![],
        admin: false,
        hint: None,
    })
}

/// Runs the scenario.
pub fn workload_api(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Channels spawn their connection tasks on the current runtime.
    let _enter = rt.enter();
    let bin = aims_bin()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let (_server, up) = start_server(dir.path(), TD, None, None)?;
    let admin = AdminClient::new(data.join("admin.sock"));
    let agent_api = up["server"]["agent_api"]
        .as_str()
        .context("no agent API")?
        .to_owned();

    eprintln!("  registering {ENTRIES} entries…");
    let uid = own_uid()?;
    rt.block_on(async {
        admin
            .create_entry(&entry(
                "spiffe://bench.example/bench/me",
                format!("unix:uid:{uid}"),
            )?)
            .await?;
        let mut pending = Vec::new();
        for i in 1..ENTRIES {
            let e = entry(
                &format!("spiffe://bench.example/bench/w{i}"),
                format!("unix:uid:{}", 100_000 + i),
            )?;
            let admin = admin.clone();
            pending.push(async move { admin.create_entry(&e).await });
            if pending.len() == 32 {
                for r in futures::future::join_all(std::mem::take(&mut pending)).await {
                    r?;
                }
            }
        }
        for r in futures::future::join_all(pending).await {
            r?;
        }
        anyhow::Ok(())
    })?;

    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, rt.block_on(admin.bundle())?.pem)?;
    let token = rt
        .block_on(
            admin.create_join_token(&aims_admin::api::CreateJoinTokenRequest {
                spiffe_id: Some(aims_core::SpiffeId::parse(AGENT)?),
                ttl_seconds: None,
            }),
        )?
        .token;
    let socket = dir.path().join("agent.sock");
    let agent_log_path = dir.path().join("agent.log");
    let agent_log = std::fs::File::create(&agent_log_path)?;
    eprintln!("  starting the agent; it issues {ENTRIES} X509-SVIDs…");
    let started = Instant::now();
    let agent = Proc(
        Command::new(&bin)
            .args([
                "agent",
                "--trust-domain",
                TD,
                "--server-address",
                &agent_api,
            ])
            .arg("--trust-bundle")
            .arg(&bundle)
            .arg("--data-dir")
            .arg(dir.path().join("agent"))
            .arg("--socket")
            .arg(&socket)
            .args(["--join-token", &token])
            .env("AIMS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()?,
    );
    let full = format!("cached={ENTRIES}");
    wait_for("all SVIDs issued", Duration::from_secs(300), || {
        std::fs::read_to_string(&agent_log_path).is_ok_and(|l| l.contains(&full))
    })?;
    let issue_all = started.elapsed();
    let agent_pid = agent.0.id();
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_kib(agent_pid)?;

    // Memory with 1,000 open streams, each on its own connection.
    eprintln!("  {STREAMS} open streams…");
    let streams = rt.block_on(async {
        let mut open = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let mut c = WorkloadApiClient::connect_path(&socket)?;
            let mut s = c.fetch_x509_svid().await?;
            s.message().await?.context("no SVID")?;
            open.push((c, s));
        }
        anyhow::Ok(open)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let streams_rss = rss_kib(agent_pid)?;
    drop(streams);

    // Latency rows, interleaved.
    let mut client = WorkloadApiClient::connect_path(&socket)?;
    let mut bundles_op = || -> anyhow::Result<()> {
        rt.block_on(async {
            let mut s = client.fetch_x509_bundles().await?;
            s.message().await?.context("no bundles")?;
            anyhow::Ok(())
        })
    };
    let mut client2 = WorkloadApiClient::connect_path(&socket)?;
    let mut x509_op = || -> anyhow::Result<()> {
        rt.block_on(async {
            let mut s = client2.fetch_x509_svid().await?;
            let m = s.message().await?.context("no SVID")?;
            anyhow::ensure!(m.svids.len() == 1, "expected one SVID");
            anyhow::Ok(())
        })
    };
    let mut x509_fresh_op = || -> anyhow::Result<()> {
        rt.block_on(async {
            let mut c = WorkloadApiClient::connect_path(&socket)?;
            let mut s = c.fetch_x509_svid().await?;
            s.message().await?.context("no SVID")?;
            anyhow::Ok(())
        })
    };
    let mut client3 = WorkloadApiClient::connect_path(&socket)?;
    let mut jwt_cached_op = || -> anyhow::Result<()> {
        rt.block_on(async {
            client3
                .fetch_jwt_svid(vec!["https://tool.bench.example".into()], None)
                .await?;
            anyhow::Ok(())
        })
    };
    let mut client4 = WorkloadApiClient::connect_path(&socket)?;
    let mut n = 0u64;
    let mut jwt_minted_op = || -> anyhow::Result<()> {
        n += 1;
        let aud = format!("https://tool-{n}.bench.example");
        rt.block_on(async {
            client4.fetch_jwt_svid(vec![aud], None).await?;
            anyhow::Ok(())
        })
    };
    eprintln!("  latencies…");
    let m = run_interleaved(
        timing,
        &mut [
            &mut bundles_op,
            &mut x509_op,
            &mut x509_fresh_op,
            &mut jwt_cached_op,
            &mut jwt_minted_op,
        ],
    )?;
    let [bundles_m, x509_m, fresh_m, jwt_cached_m, jwt_minted_m]: [_; 5] = m
        .try_into()
        .map_err(|_| anyhow::anyhow!("five measurements expected"))?;
    let base = "FetchX509Bundles";
    let base_ops = bundles_m.ops_per_sec;
    let (x509_p50_ms, x509_p99_ms) = (x509_m.p50_us / 1000.0, x509_m.p99_us / 1000.0);
    let rows = vec![
        Row::baseline("FetchX509Bundles (first response)", bundles_m),
        Row::against(
            "FetchX509SVID (first response, cached)",
            x509_m,
            base,
            base_ops,
            None,
        ),
        Row::against(
            "FetchX509SVID (new connection each call)",
            fresh_m,
            base,
            base_ops,
            None,
        ),
        Row::against(
            "FetchJWTSVID (cached audience)",
            jwt_cached_m,
            base,
            base_ops,
            None,
        ),
        Row::against(
            "FetchJWTSVID (minted, new audience)",
            jwt_minted_m,
            base,
            base_ops,
            None,
        ),
    ];

    // Propagation: entry created → SVID on an already open stream.
    eprintln!("  propagation…");
    let propagation = rt.block_on(async {
        let mut c = WorkloadApiClient::connect_path(&socket)?;
        let mut s = c.fetch_x509_svid().await?;
        s.message().await?.context("no SVID")?;
        let mut samples = Vec::new();
        for i in 0..20 {
            let t = Instant::now();
            let created = admin
                .create_entry(&entry(
                    &format!("spiffe://bench.example/bench/extra{i}"),
                    format!("unix:uid:{uid}"),
                )?)
                .await?;
            loop {
                let m = s.message().await?.context("stream ended")?;
                if m.svids.len() == 2 {
                    break;
                }
            }
            samples.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
            admin.delete_entry(&created.id).await?;
            loop {
                let m = s.message().await?.context("stream ended")?;
                if m.svids.len() == 1 {
                    break;
                }
            }
        }
        anyhow::Ok(summarize(samples, 1.0))
    })?;

    let check = |ok: bool| if ok { "✔" } else { "✘" };
    let rss_mb = streams_rss as f64 / 1024.0;
    Ok(ScenarioReport {
        scenario: "workload-api".into(),
        description: format!(
            "the agent's Workload API with {ENTRIES} entries (real aims server and aims agent processes)"
        ),
        rows,
        notes: vec![
            format!(
                "FetchX509SVID first response from cache: p50 {x509_p50_ms:.2} ms, p99 {x509_p99_ms:.2} ms (target p99 < 2 ms) {}",
                check(x509_p99_ms < 2.0)
            ),
            format!(
                "propagation from `aims entry create` to the SVID on an open stream: p50 {:.1} ms, max {:.1} ms over 20 entries (target < 1 s) {}",
                propagation.p50_us / 1000.0,
                propagation.p999_us / 1000.0,
                check(propagation.p999_us < 1_000_000.0)
            ),
            format!(
                "agent RSS with {ENTRIES} entries: {:.1} MB idle, {rss_mb:.1} MB with {STREAMS} open streams (target < 100 MB) {}",
                idle_rss as f64 / 1024.0,
                check(rss_mb < 100.0)
            ),
            format!(
                "the agent issued all {ENTRIES} X509-SVIDs (fresh P-256 key each) {:.1} s after start",
                issue_all.as_secs_f64()
            ),
            "the bench client, the agent and the server share this machine's cores".into(),
        ],
    })
}
