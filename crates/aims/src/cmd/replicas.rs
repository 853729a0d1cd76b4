//! `aims up --replicas N` (issue 18): N server replicas on one PostgreSQL behind a small local
//! TCP load balancer, to try scale-out and fail-over on one machine. This process runs the first
//! replica (with the agent and the gateway); the others are `aims server` child processes with
//! data directories of their own under `DATA_DIR/replicas/`, holding the first replica's audit
//! log key and web certificate, and every replica advertises the balancer's URLs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aims_server::{RunningServer, ServerSettings};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::balancer::Backends;
use tokio_util::sync::CancellationToken;

use crate::config::ServerFlags;
use crate::up_file::{UP_FILE, UpFile};

/// Replicas `aims up` runs at most.
pub const MAX_REPLICAS: u8 = 8;
/// How long a replica may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The balancer's listeners, bound before any replica starts so the public URLs are known.
pub struct Cluster {
    https: TcpListener,
    agent: TcpListener,
    mtls: TcpListener,
    agent_addr: SocketAddr,
    database: String,
    count: u8,
}

/// One replica in a child process.
pub struct Replica {
    child: tokio::process::Child,
    /// What `up.json` lists about it.
    pub info: ReplicaInfo,
}

/// A replica as `up.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its id.
    pub server_id: String,
    /// Its process (this process for the first replica).
    pub pid: u32,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its own listeners (behind the balancer).
    pub listeners: crate::up_file::Listeners,
    /// Its log (child replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("the load balancer cannot listen on {addr} ({what})"))?;
    let bound = l.local_addr()?;
    Ok((l, bound))
}

impl Cluster {
    /// Binds the balancer at the configured listen addresses and points `settings` at it: the
    /// first replica listens on loopback ports of its own, and advertises the balancer's URLs.
    pub async fn bind(settings: &mut ServerSettings, count: u8) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (2..=MAX_REPLICAS).contains(&count),
            "--replicas takes 1 to {MAX_REPLICAS}"
        );
        let database = settings
            .database_url
            .clone()
            .filter(|u| u.starts_with("postgres:") || u.starts_with("postgresql:"))
            .context(
                "--replicas needs --database postgres://…: the replicas share one PostgreSQL store",
            )?;
        anyhow::ensure!(
            settings.server_id.is_none(),
            "server.server_id names one replica; remove it to run several"
        );
        let (https, https_addr) = bind(settings.listen, "HTTPS").await?;
        let (agent, agent_addr) = bind(settings.agent_listen, "agent API").await?;
        let (mtls, mtls_addr) = bind(settings.oauth_mtls_listen, "OAuth mTLS").await?;
        // The balancer's URLs, unless the operator named the public ones (a balancer of their
        // own in front, or a DNS name).
        let host = aims_server::url_host(&settings.public_host);
        settings
            .public_url
            .get_or_insert_with(|| format!("https://{host}:{}", https_addr.port()));
        settings
            .public_mtls_url
            .get_or_insert_with(|| format!("https://{host}:{}", mtls_addr.port()));
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.listen = loopback;
        settings.agent_listen = loopback;
        settings.oauth_mtls_listen = loopback;
        Ok(Self {
            https,
            agent,
            mtls,
            agent_addr,
            database,
            count,
        })
    }

    /// Starts balancing connections to `first`, the replica in this process; the others join
    /// by [`Balanced::start_replicas`].
    pub fn balance(self, first: &RunningServer, shutdown: &CancellationToken) -> Balanced {
        let backends = [first.https_addr, first.agent_addr, first.oauth_mtls_addr]
            .map(|addr| Backends::new(vec![addr]));
        for (listener, backends) in [self.https, self.agent, self.mtls]
            .into_iter()
            .zip(backends.iter().cloned())
        {
            tokio::spawn(crate::balancer::serve(
                listener,
                backends,
                shutdown.child_token(),
            ));
        }
        Balanced {
            backends,
            agent_addr: self.agent_addr,
            database: self.database,
            count: self.count,
        }
    }
}

/// The balancer running, in front of the replicas that joined so far.
pub struct Balanced {
    /// HTTPS, agent API, OAuth mTLS.
    backends: [Backends; 3],
    /// The balancer's agent API address (what local agents connect to).
    pub agent_addr: SocketAddr,
    database: String,
    count: u8,
}

impl Balanced {
    /// Starts the other replicas one after another, each serving `resources` as the first
    /// does (the gateway's routes), and adds each to the balancer once it is up.
    pub async fn start_replicas(
        &self,
        first: &RunningServer,
        flags: &ServerFlags,
        data_dir: &Path,
        metrics: bool,
        resources: &[aims_oauth::ResourceServer],
    ) -> anyhow::Result<Vec<Replica>> {
        let mut replicas = Vec::new();
        for n in 2..=self.count {
            let dir = data_dir.join("replicas").join(n.to_string());
            let started = prepare(first, data_dir, &dir)
                .and_then(|()| write_config(flags, resources, &dir))
                .and_then(|config| spawn(first, &config, &self.database, &dir, metrics));
            let replica = match started {
                Ok(child) => wait_up(child, &dir)
                    .await
                    .map_err(|e| e.context(format!("replica {n} did not start"))),
                Err(e) => Err(e.context(format!("replica {n} could not be started"))),
            };
            match replica {
                Ok(r) => {
                    let l = r.info.listeners;
                    for (b, addr) in self
                        .backends
                        .iter()
                        .zip([l.https, l.agent_api, l.oauth_mtls])
                    {
                        b.add(addr);
                    }
                    replicas.push(r);
                }
                Err(e) => {
                    stop_all(replicas).await;
                    return Err(e);
                }
            }
        }
        Ok(replicas)
    }
}

/// The child replica's configuration file: the operator's (if any) with `resources` added to
/// `[[server.oauth.resources]]`, so every replica knows the gateway's routes.
fn write_config(
    flags: &ServerFlags,
    resources: &[aims_oauth::ResourceServer],
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut doc: toml::Table = match &flags.common.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        )
        .with_context(|| format!("parse {}", p.display()))?,
        None => toml::Table::new(),
    };
    let table = |v: &mut toml::Table, key: &str| -> anyhow::Result<toml::Table> {
        match v.remove(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => anyhow::bail!("{key} is not a table"),
        }
    };
    let mut server = table(&mut doc, "server")?;
    let mut oauth = table(&mut server, "oauth")?;
    let mut list = match oauth.remove("resources") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => anyhow::bail!("server.oauth.resources is not a list"),
    };
    for r in resources {
        let mut t = toml::Table::new();
        t.insert("resource".into(), r.resource.clone().into());
        if let Some(s) = &r.server {
            t.insert("server".into(), s.clone().into());
        }
        t.insert(
            "exchange_to".into(),
            toml::Value::Array(r.exchange_to.iter().cloned().map(Into::into).collect()),
        );
        list.push(toml::Value::Table(t));
    }
    oauth.insert("resources".into(), toml::Value::Array(list));
    server.insert("oauth".into(), toml::Value::Table(oauth));
    doc.insert("server".into(), toml::Value::Table(server));
    let path = dir.join("aims.toml");
    aims_core::files::write_atomic(&path, toml::to_string(&doc)?.as_bytes(), 0o600)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Creates a child replica's data directory with the first replica's audit log key (replicas
/// sign one log with one key) and, when AIMS made its own web certificate, that certificate
/// (clients behind the balancer must meet one).
fn prepare(first: &RunningServer, first_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut copies = vec![PathBuf::from("keys/audit-log.key.pem")];
    if first.web_ca_file.is_some() {
        for entry in std::fs::read_dir(first_dir.join("tls"))
            .with_context(|| format!("read {}", first_dir.join("tls").display()))?
        {
            copies.push(Path::new("tls").join(entry?.file_name()));
        }
    }
    for rel in copies {
        let (from, to) = (first_dir.join(&rel), dir.join(&rel));
        if let Some(parent) = to.parent() {
            aims_core::files::private_dir(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        // Modes go along (0600 for keys).
        std::fs::copy(&from, &to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// `aims server` for the replica in `dir`, its stderr to `dir/server.log`.
fn spawn(
    first: &RunningServer,
    config: &Path,
    database: &str,
    dir: &Path,
    metrics: bool,
) -> anyhow::Result<tokio::process::Child> {
    let settings = &first.authorization_server.settings;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .with_context(|| format!("open {}", dir.join("server.log").display()))?;
    let exe = std::env::current_exe().context("cannot find the aims executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir)
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .args(["--trust-domain", &first.issuer.trust_domain().to_string()])
        .args(["--database", database])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--agent-listen", "127.0.0.1:0"])
        .args(["--oauth-mtls-listen", "127.0.0.1:0"])
        .args(["--public-url", &settings.issuer])
        .args([
            "--public-mtls-url",
            settings.mtls_base.as_deref().unwrap_or(&settings.issuer),
        ]);
    cmd.arg("--config").arg(config);
    if metrics {
        cmd.args(["--metrics-listen", "127.0.0.1:0"]);
    }
    cmd.env(
        super::server::EXIT_WITH_PARENT_ENV,
        std::process::id().to_string(),
    )
    .env_remove("AIMS_METRICS_LISTEN")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(log)
    .kill_on_drop(true);
    cmd.spawn().context("cannot start aims server")
}

/// Waits for the child's `up.json`.
async fn wait_up(mut child: tokio::process::Child, dir: &Path) -> anyhow::Result<Replica> {
    let pid = child.id().context("the replica exited at once")?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(UP_FILE))
            && let Ok(up) = serde_json::from_str::<UpFile>(&text)
            && up.pid == pid
            && let Some(listeners) = up.server.listeners
        {
            return Ok(Replica {
                child,
                info: ReplicaInfo {
                    server_id: up.server.server_id,
                    pid,
                    data_dir: dir.to_path_buf(),
                    listeners,
                    log: Some(dir.join("server.log")),
                },
            });
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "it exited ({status}); see {}",
                dir.join("server.log").display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            anyhow::bail!("not up after {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops every replica: SIGTERM to all, then SIGKILL for any still running after a while.
pub async fn stop_all(mut replicas: Vec<Replica>) {
    for r in &mut replicas {
        let termed = rustix::process::Pid::from_raw(r.info.pid as i32).is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
        if !termed {
            let _ = r.child.start_kill();
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for mut r in replicas {
        if tokio::time::timeout_at(deadline, r.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = r.info.pid, "replica did not stop; killing it");
            let _ = r.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(public_url: Option<&str>) -> ServerSettings {
        let mut s = ServerSettings::new(
            aims_core::TrustDomain::new("example.org").unwrap(),
            std::env::temp_dir(),
        );
        s.database_url = Some("postgres://127.0.0.1/none".into());
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        (s.listen, s.agent_listen, s.oauth_mtls_listen) = (any, any, any);
        s.public_url = public_url.map(str::to_owned);
        s
    }

    #[tokio::test]
    async fn the_balancer_is_the_public_url_unless_the_operator_named_one() {
        let mut ours = settings(None);
        let cluster = Cluster::bind(&mut ours, 2).await.unwrap();
        let https = cluster.https.local_addr().unwrap().port();
        assert_eq!(
            ours.public_url.as_deref(),
            Some(format!("https://127.0.0.1:{https}").as_str())
        );
        assert_eq!(
            ours.listen.port(),
            0,
            "the first replica listens on a port of its own"
        );

        let mut named = settings(Some("https://aims.example.org"));
        Cluster::bind(&mut named, 2).await.unwrap();
        assert_eq!(
            named.public_url.as_deref(),
            Some("https://aims.example.org")
        );

        // SQLite cannot be shared.
        let mut sqlite = settings(None);
        sqlite.database_url = None;
        let err = Cluster::bind(&mut sqlite, 2).await.err().unwrap();
        assert!(err.to_string().contains("--database postgres://"), "{err}");
    }
}
