//! The agent's typed settings, filled by the binary from the config file and flags.

use std::path::PathBuf;
use std::time::Duration;

use aims_core::{SharedClock, SystemClock, TrustDomain};
use aims_credentials::KeyType;

/// How the agent proves which node it runs on when it has no valid SVID (AIMS PR-4).
#[derive(Clone, Default)]
pub enum NodeAttestation {
    /// None configured: the agent can only start from an SVID it saved earlier.
    #[default]
    None,
    /// A single-use join token from `aims token generate`.
    JoinToken(String),
    /// A node certificate and its key (PEM files) issued by a CA the server trusts for x509pop.
    X509Pop {
        /// The node certificate, optionally followed by intermediates.
        cert_file: PathBuf,
        /// Its private key.
        key_file: PathBuf,
    },
}

impl std::fmt::Debug for NodeAttestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeAttestation::None => f.write_str("None"),
            // Never print the token.
            NodeAttestation::JoinToken(_) => f.write_str("JoinToken(…)"),
            NodeAttestation::X509Pop { cert_file, .. } => f
                .debug_struct("X509Pop")
                .field("cert_file", cert_file)
                .finish(),
        }
    }
}

/// Where the agent's first trust in the server comes from, before it has synced a bundle.
#[derive(Debug, Clone)]
pub enum TrustBootstrap {
    /// A bundle file: PEM X.509 authorities or a SPIFFE bundle JWK Set (`aims bundle show`).
    File(PathBuf),
    /// A bundle document in hand (JWK Set), as `aims up` passes its own server's.
    Document(String),
}

/// Everything `aims agent` needs to run.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The trust domain the agent serves.
    pub trust_domain: TrustDomain,
    /// The agent's data directory (its SVID, key and last bundle live in `<data_dir>/agent`).
    pub data_dir: PathBuf,
    /// The server's agent API, `host:port`; several replicas comma separated (tried in turn).
    pub server_address: String,
    /// How to trust the server the first time.
    pub trust_bootstrap: Option<TrustBootstrap>,
    /// How to attest.
    pub attestation: NodeAttestation,
    /// The Workload API socket; default `<data_dir>/agent.sock`.
    pub socket_path: Option<PathBuf>,
    /// Key type of workload SVIDs (fresh keys at every rotation, AIMS PR-9).
    pub workload_key_type: KeyType,
    /// Most JWT-SVIDs cached (per entry and audience).
    pub jwt_cache_size: usize,
    /// How often SVIDs are checked for renewal.
    pub check_interval: Duration,
    /// First and longest wait between attempts to reach the server.
    pub retry: (Duration, Duration),
    /// The clock.
    pub clock: SharedClock,
}

impl AgentSettings {
    /// Settings with AIMS's defaults.
    pub fn new(trust_domain: TrustDomain, data_dir: PathBuf, server_address: String) -> Self {
        Self {
            trust_domain,
            data_dir,
            server_address,
            trust_bootstrap: None,
            attestation: NodeAttestation::None,
            socket_path: None,
            workload_key_type: KeyType::EcP256,
            jwt_cache_size: 10_000,
            check_interval: Duration::from_secs(1),
            retry: (Duration::from_millis(500), Duration::from_secs(30)),
            clock: SystemClock::shared(),
        }
    }

    /// The Workload API socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("agent.sock"))
    }

    /// Where the agent keeps its own state.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}
