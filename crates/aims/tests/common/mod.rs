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

/// The MCP conformance suite (`interop/mcp-conformance`: `@modelcontextprotocol/conformance`
/// on Node 22 from npm) with `args`, run in its directory.
pub fn mcp_conformance(args: &[&str]) -> Command {
    let dir = repo_root().join("interop/mcp-conformance");
    let index = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        index.exists(),
        "interop/mcp-conformance has no node_modules: run `npm ci` there (scripts/test does)"
    );
    let mut cmd = Command::new(dir.join("node_modules/.bin/node"));
    cmd.arg(index).args(args).current_dir(dir);
    cmd
}

/// A child process with its stderr in a log file; killed if dropped while running.
pub struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stderr to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("AIMS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        Self {
            name,
            child: Some(child),
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("{} exited early ({status}):\n{}", self.name, self.logs());
        }
    }

    /// Sends SIGKILL (a crash: nothing is flushed or closed cleanly).
    pub fn kill(&mut self) {
        self.child.as_mut().unwrap().kill().unwrap();
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
                    "{} exited with {status}:\n{}",
                    self.name,
                    self.logs()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop on SIGTERM:\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `aims server` (or `aims up`) with its own data directory.
pub struct Aims {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub up: serde_json::Value,
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
        let log = dir.path().join(format!("{subcommand}-{}.log", unique()));
        let mut cmd = Command::new(aims_bin());
        cmd.arg(subcommand)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        for flag in ["--agent-listen", "--oauth-mtls-listen"] {
            if !extra.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        if subcommand == "up" && !extra.contains(&"--gateway-listen") {
            cmd.args(["--gateway-listen", "127.0.0.1:0"]);
        }
        let mut aims = Self {
            proc: Proc::spawn("aims", cmd, log),
            dir,
            data_dir,
            up: serde_json::Value::Null,
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
                && v["pid"].as_u64() == Some(u64::from(self.proc.pid()))
            {
                self.up = v;
                return;
            }
            self.proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "aims did not come up:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
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

    /// `aims api fetch x509 --write DIR` against the stack's Workload API, as this process:
    /// whether an X509-SVID was written.
    pub fn fetch_x509(&self, dir: &Path) -> bool {
        let socket = format!("unix://{}", self.workload_socket().display());
        run(&[
            "api",
            "fetch",
            "x509",
            "--socket",
            &socket,
            "--write",
            dir.to_str().unwrap(),
        ])
        .status
        .success()
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
        self.proc.stop();
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

/// Writes the server's bundle (PEM) into `dir` for agents to bootstrap with.
pub fn bundle_file(server: &Aims, dir: &Path) -> PathBuf {
    let pem = assert_ok(&server.cli(&["bundle", "show", "--format", "pem"]));
    let path = dir.join("bundle.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// A join token for `spiffe_id` from the server.
pub fn join_token(server: &Aims, spiffe_id: &str) -> String {
    assert_ok(&server.cli(&["token", "generate", "--spiffe-id", spiffe_id]))
        .trim()
        .to_owned()
}

/// `aims agent` against `server_address`, trusting `bundle`, on `data_dir`.
pub fn agent_command(server_address: &str, bundle: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(aims_bin());
    cmd.args([
        "agent",
        "--trust-domain",
        TD,
        "--server-address",
        server_address,
    ])
    .arg("--trust-bundle")
    .arg(bundle)
    .arg("--data-dir")
    .arg(data_dir);
    cmd
}

/// A running `aims agent` process.
pub struct AgentProc {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl AgentProc {
    /// Starts `aims agent` against `server_address` and waits until it is ready (or gave up
    /// reaching the server).
    pub fn start(
        server_address: &str,
        bundle: &Path,
        data_dir: &Path,
        socket: &Path,
        extra: &[&str],
    ) -> Self {
        let log = data_dir.with_extension(format!("{}.log", unique()));
        let mut cmd = agent_command(server_address, bundle, data_dir);
        cmd.arg("--socket").arg(socket).args(extra);
        let mut agent = Self {
            proc: Proc::spawn("aims agent", cmd, log),
            socket: socket.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = agent.logs();
            if logs.contains("agent ready") || logs.contains("agent started without reaching") {
                break;
            }
            agent.proc.assert_running();
            assert!(Instant::now() < deadline, "agent did not start:\n{logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A free TCP port on 127.0.0.1 (for a server that must come back on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// This process's uid.
pub fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Runs `aims api …` against `socket`, as the given program (default: the aims binary).
pub fn api(program: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .arg("api")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap()
}

/// Polls `f` every 100 ms until it returns `Some`, for up to `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client holding an X509-SVID of `server`'s trust domain, minted by `server`, that trusts
/// the web CAs of `server` and of `others` (replicas).
pub fn workload_client(server: &Aims, name: &str, others: &[&Aims]) -> reqwest::Client {
    let dir = server.dir.path().join(name);
    let td = server.up["trust_domain"].as_str().unwrap();
    assert_ok(&server.cli(&[
        "svid",
        "mint",
        "x509",
        "--spiffe-id",
        &format!("spiffe://{td}/gateway/{name}"),
        "--out",
        dir.to_str().unwrap(),
    ]));
    let mut pem = std::fs::read(dir.join("svid.pem")).unwrap();
    pem.extend(std::fs::read(dir.join("key.pem")).unwrap());
    let mut builder =
        reqwest::Client::builder().identity(reqwest::Identity::from_pem(&pem).unwrap());
    for s in std::iter::once(server).chain(others.iter().copied()) {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(s.web_ca()).unwrap()).unwrap(),
        );
    }
    builder.timeout(Duration::from_secs(10)).build().unwrap()
}

/// The whole audit log as `server` exports it, once a checkpoint covers every entry; every
/// index present once (no gap, no duplicate).
pub fn whole_log(server: &Aims) -> Vec<aims_audit::LogEntry> {
    let export = server.dir.path().join("log.jsonl");
    let entries: Vec<aims_audit::LogEntry> = eventually(
        Duration::from_secs(15),
        "a checkpoint covering the whole log",
        || {
            assert_ok(&server.cli(&["audit", "export", "--out", export.to_str().unwrap()]));
            let entries: Vec<aims_audit::LogEntry> = std::fs::read_to_string(&export)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            entries
                .iter()
                .all(|e| e.certified_hash.is_some())
                .then_some(entries)
        },
    );
    for (k, e) in entries.iter().enumerate() {
        assert_eq!(e.index, k as u64, "an index missing or doubled");
    }
    entries
}
