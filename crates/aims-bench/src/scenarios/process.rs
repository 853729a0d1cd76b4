//! Real processes the scenarios drive: the `aims` binary and baselines.

use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::load::{BodyFn, LoadResult, Pace, Target, run};
use crate::measure::Timing;

use anyhow::{Context as _, bail};

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn aims_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .context("bench binary has no directory")?
        .join("aims");
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p aims`",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() > deadline {
            bail!("{what} not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// `aims server` for `td` on ephemeral ports with its data in `dir/server` (log in
/// `dir/server.log`), optionally with a config file and pinned to CPUs (`taskset -c`). Returns
/// the process and its `up.json`.
pub fn start_server(
    dir: &Path,
    td: &str,
    config: Option<&Path>,
    cpus: Option<&str>,
) -> anyhow::Result<(Proc, serde_json::Value)> {
    start_aims(dir, "server", td, config, cpus)
}

/// `aims <subcommand>` (`server` or `up`) as [`start_server`] describes.
pub fn start_aims(
    dir: &Path,
    subcommand: &str,
    td: &str,
    config: Option<&Path>,
    cpus: Option<&str>,
) -> anyhow::Result<(Proc, serde_json::Value)> {
    start_named(dir, subcommand, subcommand, td, config, cpus, &[])
}

/// `aims <subcommand> <extra…>` with its data in `dir/<name>` (log in `dir/<name>.log`),
/// otherwise as [`start_server`] describes.
pub fn start_named(
    dir: &Path,
    name: &str,
    subcommand: &str,
    td: &str,
    config: Option<&Path>,
    cpus: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<(Proc, serde_json::Value)> {
    let data = dir.join(name);
    let up = data.join("up.json");
    // A previous run on this data directory left its own: wait for this one's.
    match std::fs::remove_file(&up) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut cmd = match cpus {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", c]).arg(aims_bin()?);
            t
        }
        None => Command::new(aims_bin()?),
    };
    cmd.arg(subcommand);
    if subcommand == "up" {
        cmd.args(["--gateway-listen", "127.0.0.1:0"]);
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let proc = Proc(
        cmd.args(["--trust-domain", td, "--listen", "127.0.0.1:0"])
            .args(["--agent-listen", "127.0.0.1:0"])
            .args(["--oauth-mtls-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?)
            .spawn()?,
    );
    wait_for(&format!("aims {name}"), Duration::from_secs(30), || {
        up.exists()
    })?;
    Ok((proc, serde_json::from_slice(&std::fs::read(&up)?)?))
}

/// The set-up of a scenario on PostgreSQL: the load pinned to CPU 0, a single-threaded
/// runtime, and a fresh database (URL, name) the scenario drops when done.
pub fn postgres_run(scenario: &str) -> anyhow::Result<(tokio::runtime::Runtime, String, String)> {
    pin_self(0)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (url, db) = rt
        .block_on(aims_store::testing::fresh_postgres_url())
        .with_context(|| {
            format!("the {scenario} scenario needs PostgreSQL on 127.0.0.1:5432 (trust auth)")
        })?;
    Ok((rt, url, db))
}

/// Pins every thread of this process to `cpu`.
pub fn pin_self(cpu: u32) -> anyhow::Result<()> {
    let ok = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux) is needed to pin the load generator")?
        .success();
    anyhow::ensure!(ok, "taskset failed");
    Ok(())
}

/// Form POSTs to `path` of the HTTPS server at `base` (`https://HOST:PORT`, a name such as
/// `aims up`'s `localhost` resolved once, here), trusting `ca_file`.
pub fn https_target(base: &str, ca_file: &Path, path: &str) -> anyhow::Result<Target> {
    let hostport = base
        .strip_prefix("https://")
        .context("not an https URL")?
        .trim_end_matches('/');
    let host = hostport
        .rsplit_once(':')
        .context("not https://HOST:PORT")?
        .0
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .context("not https://HOST:PORT")?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host} is no TLS server name"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in aims_credentials::bundle::certs_from_pem(&std::fs::read_to_string(ca_file)?)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Target::post(addr, Some((Arc::new(config), name)), path))
}

/// One load run per repetition; the repetition with the median throughput. Any answer other
/// than 200 fails the run.
pub async fn median_run(
    timing: Timing,
    targets: &[Target],
    conns: usize,
    pace: Pace,
    body: &BodyFn,
    counter: &Arc<AtomicU64>,
) -> anyhow::Result<LoadResult> {
    let mut runs = Vec::new();
    for rep in 0..timing.reps.max(1) {
        let warm = if rep == 0 {
            timing.warmup
        } else {
            Duration::from_millis(200)
        };
        let r = run(targets, conns, pace, warm, timing.measure, body, counter).await?;
        if r.errors > 0 {
            anyhow::bail!(
                "{} answers were not 200 at {conns} connections; the first: {}",
                r.errors,
                r.first_error.as_deref().unwrap_or_default()
            );
        }
        runs.push(r);
    }
    runs.sort_by(|a, b| a.m.ops_per_sec.total_cmp(&b.m.ops_per_sec));
    Ok(runs.swap_remove(runs.len() / 2))
}
