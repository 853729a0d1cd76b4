//! Real processes the scenarios drive: the `aims` binary and baselines.

use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let data = dir.join("server");
    let mut cmd = match cpus {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", c]).arg(aims_bin()?);
            t
        }
        None => Command::new(aims_bin()?),
    };
    cmd.arg("server");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let proc = Proc(
        cmd.args(["--trust-domain", td, "--listen", "127.0.0.1:0"])
            .args(["--agent-listen", "127.0.0.1:0"])
            .args(["--oauth-mtls-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log"))?)
            .spawn()?,
    );
    let up = data.join("up.json");
    wait_for("aims server", Duration::from_secs(30), || up.exists())?;
    Ok((proc, serde_json::from_slice(&std::fs::read(&up)?)?))
}
