//! Test harness: real `aims` processes on 127.0.0.1 and real Unix sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TD: &str = "example.org";

pub fn aims_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aims")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `aims server` (or `aims up`) with its own data directory.
pub struct Aims {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub up: serde_json::Value,
    log: PathBuf,
}

impl Aims {
    /// Starts `aims <subcommand> --data-dir … --listen 127.0.0.1:0 --agent-listen 127.0.0.1:0
    /// <extra>` and waits for its up.json.
    pub fn start(subcommand: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Self::start_in(dir, data_dir, subcommand, extra)
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        subcommand: &str,
        extra: &[&str],
    ) -> Self {
        let log = dir
            .path()
            .join(format!("{subcommand}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(aims_bin());
        cmd.arg(subcommand)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"])
            .args(extra)
            .env("AIMS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd.spawn().unwrap();
        let mut aims = Self {
            child: Some(child),
            dir,
            data_dir,
            up: serde_json::Value::Null,
            log,
        };
        aims.wait_up();
        aims
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let path = self.data_dir.join("up.json");
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() == Some(u64::from(self.child.as_ref().unwrap().id()))
            {
                self.up = v;
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("aims exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "aims did not come up:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn admin_socket(&self) -> PathBuf {
        PathBuf::from(self.up["admin_socket"].as_str().unwrap())
    }

    pub fn bundle_url(&self) -> String {
        self.up["server"]["bundle_endpoint"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn agent_api(&self) -> String {
        self.up["server"]["agent_api"].as_str().unwrap().to_owned()
    }

    /// The Workload API socket of the stack's local agent (`aims up`).
    pub fn workload_socket(&self) -> PathBuf {
        PathBuf::from(
            self.up["agent"]["workload_api_socket"]
                .as_str()
                .expect("no local agent"),
        )
    }

    pub fn web_ca(&self) -> PathBuf {
        PathBuf::from(self.up["server"]["web_ca_file"].as_str().unwrap())
    }

    /// Runs `aims <args…> --data-dir <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let dd = self.data_dir.to_str().unwrap().to_owned();
        full.push("--data-dir");
        full.push(&dd);
        run(&full)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "aims exited with {status}:\n{}",
                    self.logs()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("aims did not stop on SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Aims {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the aims binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(aims_bin()).args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Whether a tool is present; under CI=true a missing tool is a failure, not a skip.
pub fn require(tool_check: &[&str], what: &str) -> bool {
    let ok = Command::new(tool_check[0])
        .args(&tool_check[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} is required under CI=true (.ci/run installs it)");
        }
        eprintln!("warning: skipping: {what} is not installed");
    }
    ok
}
