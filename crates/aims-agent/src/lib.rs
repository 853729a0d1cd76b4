//! # aims-agent
//!
//! The node agent of AIMS, one per host (draft-ietf-wimse-aims §8): it attests its node to the
//! server (join token or x509pop), receives the registration entries the server authorized for
//! the node, keeps an X509-SVID issued for each of them (fresh key every rotation, renewed at
//! half life: AIMS PR-7, PR-9), and hands them out on the SPIFFE Workload API to the local
//! processes whose attested selectors match (AIMS PR-2, PR-3). It composes
//! [`aims_provisioning`] (attestation, matching, rotation), [`aims_workload_api`] (delivery) and
//! [`aims_authn`] (mutual TLS to the server).
//!
//! * [`settings`]: what `aims agent` is configured with.
//! * [`identity`]: the agent's own SVID and bundle, attestation and renewal, saved across
//!   restarts.
//! * [`cache`]: entries, bundles and workload SVIDs, with change notification.
//! * [`agent`]: the session loop with the server.
//! * [`provider`]: the Workload API's view of the agent.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cache;
pub mod connection;
pub mod error;
pub mod identity;
pub mod provider;
pub mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use aims_provisioning::attest::AttestorSet;
use aims_provisioning::attest::unix::UnixAttestor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use agent::Agent;
pub use error::AgentError;
pub use settings::{AgentSettings, NodeAttestation, TrustBootstrap};

/// A running agent.
pub struct RunningAgent {
    /// The agent.
    pub agent: Arc<Agent>,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// Stops the session loop and the Workload API and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&self.socket_path);
        tracing::info!("agent stopped");
    }
}

/// Whether an agent with `settings` has no valid saved SVID and must attest.
pub fn needs_attestation(settings: &AgentSettings) -> Result<bool, AgentError> {
    let now = settings.clock.now();
    let identity = identity::AgentIdentity::open(
        settings.trust_domain.clone(),
        settings.state_dir(),
        settings.trust_bootstrap.as_ref(),
        now,
    )?;
    Ok(!identity.valid(now))
}

/// Starts the agent: loads or obtains its SVID, connects to the server, and serves the
/// Workload API. Returns once the first sync completed (or after `first_sync_wait`, with a
/// warning, when the server is unreachable: cached state, if any, is served meanwhile).
pub async fn start(
    settings: AgentSettings,
    first_sync_wait: std::time::Duration,
) -> Result<RunningAgent, AgentError> {
    let socket_path = settings.socket_path();
    // The data directory holds the agent's key; by default also the socket, which makes the
    // Workload API reachable by the agent's own user (and root) only. Serving other users
    // takes a socket path in a directory they can reach.
    aims_core::files::private_dir(&settings.data_dir).map_err(|e| {
        AgentError::io(
            format!("create data directory {}", settings.data_dir.display()),
            e,
        )
    })?;
    let agent = Arc::new(Agent::open(settings)?);
    agent.attest_if_needed().await?;
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut tasks = vec![tokio::spawn(agent.clone().run(shutdown.clone(), ready_tx))];
    // The Workload API opens once the first sync is done (or given up on), so an early caller
    // does not get PermissionDenied merely because the agent has not heard from the server yet.
    let synced = matches!(
        tokio::time::timeout(first_sync_wait, ready_rx).await,
        Ok(Ok(()))
    );
    let provider = Arc::new(provider::AgentProvider::new(
        agent.clone(),
        AttestorSet::new().with(UnixAttestor::new()),
    ));
    let api = aims_workload_api::server::serve(&socket_path, provider, shutdown.clone())
        .await
        .map_err(|e| AgentError::io(format!("Workload API socket {}", socket_path.display()), e));
    match api {
        Ok(t) => tasks.push(t),
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    }
    // Logged once the socket is bound: "ready" means a workload can connect now.
    if synced {
        tracing::info!(
            agent = %agent.spiffe_id().map(|i| i.to_string()).unwrap_or_default(),
            entries = agent.cache().entry_count(),
            socket = %socket_path.display(),
            "agent ready"
        );
    } else {
        tracing::warn!(
            socket = %socket_path.display(),
            "agent started without reaching the server; it keeps retrying"
        );
    }
    Ok(RunningAgent {
        agent,
        socket_path,
        shutdown,
        tasks,
    })
}
