//! An in-process trust domain for agent tests: a real `aims-server` (SQLite in a temporary
//! directory, listeners on 127.0.0.1) and a real agent attested to it with a join token over
//! mutual TLS, serving the Workload API on a real Unix socket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use aims_admin::client::AdminClient;
use aims_agent::{AgentSettings, NodeAttestation, RunningAgent, TrustBootstrap};
use aims_core::{SpiffeId, TrustDomain};
use aims_server::{RunningServer, ServerSettings};
use aims_store::{NewEntry, RegistrationEntry};

pub const TD: &str = "example.org";
pub const AGENT: &str = "spiffe://example.org/aims/agent/test-node";

pub fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// This process's uid: the selector test workloads (this test process) present.
pub fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

pub struct Options {
    pub x509_svid_ttl: Duration,
    pub ca_ttl: Duration,
    pub tick: Duration,
    pub federation: Vec<aims_provisioning::issuance::federation::Federation>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            x509_svid_ttl: Duration::from_secs(3600),
            ca_ttl: Duration::from_secs(24 * 3600),
            tick: Duration::from_millis(250),
            federation: Vec::new(),
        }
    }
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub server: Option<RunningServer>,
    pub agent: Option<RunningAgent>,
    pub admin: AdminClient,
    pub socket: PathBuf,
    pub agent_settings: AgentSettings,
}

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

pub fn server_settings(dir: &std::path::Path, o: &Options) -> ServerSettings {
    let mut s = ServerSettings::new(td(), dir.join("server"));
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.agent_listen = "127.0.0.1:0".parse().unwrap();
    s.oauth_mtls_listen = "127.0.0.1:0".parse().unwrap();
    s.x509_svid_ttl = o.x509_svid_ttl;
    s.wit_svid_ttl = o.x509_svid_ttl;
    s.ca.ca_ttl = o.ca_ttl;
    s.tick_interval = o.tick;
    s.federation = o.federation.clone();
    s
}

impl Stack {
    pub async fn start(o: Options) -> Self {
        init();
        let dir = tempfile::tempdir().unwrap();
        let server = aims_server::start(server_settings(dir.path(), &o))
            .await
            .unwrap();
        let (token, agent_id, _) = aims_provisioning::issuance::agent_api::create_join_token(
            &server.issuer,
            Some(id(AGENT)),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        assert_eq!(agent_id, id(AGENT));
        let mut a = AgentSettings::new(
            td(),
            dir.path().join("agent"),
            server.agent_addr.to_string(),
        );
        a.trust_bootstrap = Some(TrustBootstrap::Document(
            server.issuer.published().document.clone(),
        ));
        a.attestation = NodeAttestation::JoinToken(token);
        a.check_interval = Duration::from_millis(200);
        a.retry = (Duration::from_millis(100), Duration::from_secs(1));
        let agent = aims_agent::start(a.clone(), Duration::from_secs(10))
            .await
            .unwrap();
        Self {
            admin: AdminClient::new(&server.admin_socket),
            socket: agent.socket_path.clone(),
            server: Some(server),
            agent: Some(agent),
            dir,
            agent_settings: a,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The bundles the agent holds now (ours and federated).
    pub fn agent_bundles(&self) -> aims_credentials::BundleSet {
        aims_credentials::BundleSet::with(
            self.agent
                .as_ref()
                .unwrap()
                .agent
                .cache()
                .bundles()
                .iter()
                .map(|b| (**b).clone()),
        )
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// Registers `spiffe_id` under the test agent for `selectors`.
    pub async fn register(&self, spiffe_id: &str, selectors: &[String]) -> RegistrationEntry {
        self.admin
            .create_entry(&NewEntry {
                spiffe_id: id(spiffe_id),
                parent_id: id(AGENT),
                selectors: selectors.iter().map(|s| s.parse().unwrap()).collect(),
                x509_svid_ttl: 0,
                jwt_svid_ttl: 0,
                dns_names: vec![],
                admin: false,
                hint: None,
            })
            .await
            .unwrap()
    }

    /// Registers `spiffe_id` for this test process's uid.
    pub async fn register_self(&self, spiffe_id: &str) -> RegistrationEntry {
        self.register(spiffe_id, &[format!("unix:uid:{}", own_uid())])
            .await
    }

    pub async fn stop(mut self) {
        if let Some(a) = self.agent.take() {
            a.stop().await;
        }
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// Waits (up to `within`) until `f` returns `Some`.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
