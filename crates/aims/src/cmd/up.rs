//! `aims up`: the local stack on one data directory: the server and an agent in one process.

use std::time::Duration;

use aims_agent::{AgentSettings, NodeAttestation, TrustBootstrap};
use aims_core::{SpiffeId, TrustDomain};
use aims_server::RunningServer;
use aims_store::{NewEntry, Selector, StoreError};
use anyhow::Context as _;

use crate::config::{self, DEFAULT_TRUST_DOMAIN, FileConfig, ServerFlags};
use crate::up_file::UpFile;

/// The path of the local agent's SPIFFE ID: entries for this host's workloads name it as parent.
pub const LOCAL_AGENT_PATH: &str = "/aims/agent/local";

/// Arguments of `aims up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub flags: ServerFlags,
    /// Give the current user's processes an identity: registers
    /// spiffe://TRUST_DOMAIN/user/<name> for selector unix:uid:<your uid>.
    #[arg(long)]
    pub register_self: bool,
    /// Workload API socket [default: DATA_DIR/agent.sock].
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
    /// The gateway's listen address [default: 127.0.0.1:8445].
    #[arg(long)]
    pub gateway_listen: Option<std::net::SocketAddr>,
    /// Run this many server replicas on one PostgreSQL store (--database postgres://…) behind
    /// a local TCP load balancer on the listen addresses: this process is the first replica,
    /// the others are `aims server` processes with data directories under DATA_DIR/replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=super::replicas::MAX_REPLICAS as i64))]
    pub replicas: u8,
}

/// The host `aims up` names in its URLs by default.
const LOCAL_PUBLIC_HOST: &str = "localhost";

/// The path of the local gateway's SPIFFE ID.
pub const GATEWAY_PATH: &str = "/aims/gateway";

/// The local agent's settings: it talks to the server in this process over loopback mTLS,
/// exactly as a remote agent would, and attests with a join token the server makes for it
/// when it has no valid SVID of its own.
async fn local_agent_settings(
    server: &RunningServer,
    server_address: String,
    file: &FileConfig,
    data_dir: &std::path::Path,
    socket: Option<std::path::PathBuf>,
) -> anyhow::Result<AgentSettings> {
    let td = server.issuer.trust_domain().clone();
    let mut s = AgentSettings::new(td.clone(), data_dir.to_path_buf(), server_address);
    s.trust_bootstrap = Some(TrustBootstrap::Document(
        server.issuer.published().document.clone(),
    ));
    s.socket_path = socket.or_else(|| file.agent.socket_path.clone());
    if let Some(kt) = file.agent.workload_key_type {
        s.workload_key_type = kt;
    }
    if aims_agent::needs_attestation(&s)? {
        let (token, _, _) = aims_provisioning::issuance::agent_api::create_join_token(
            &server.issuer,
            Some(td.id_with_path(LOCAL_AGENT_PATH)?),
            Duration::from_secs(600),
        )
        .await?;
        s.attestation = NodeAttestation::JoinToken(token);
    }
    Ok(s)
}

/// The uid of this process (the owner of `/proc/self`).
fn own_uid() -> anyhow::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/self")
        .context("cannot read /proc/self")?
        .uid())
}

/// Creates `entry` unless an entry for its SPIFFE ID and selectors exists.
async fn ensure_entry(server: &RunningServer, entry: NewEntry) -> anyhow::Result<()> {
    let spiffe_id = entry.spiffe_id.clone();
    match server.issuer.store().create_entry(entry).await {
        Ok(_) => {
            server.changes.poke();
            tracing::info!(spiffe_id = %spiffe_id, "registered");
        }
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Starts the gateway in front of the configured routes, or of the demo tool.
async fn start_gateway(
    server: &RunningServer,
    file: &FileConfig,
    listen: Option<std::net::SocketAddr>,
    td: &TrustDomain,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<(
    aims_gateway::RunningGateway,
    Option<String>,
    Vec<aims_oauth::ResourceServer>,
)> {
    // The gateway runs in the server's process: the server issues its SVID directly (no
    // Workload API entry, so no other program of this user can obtain the gateway's identity).
    let svid = server.colocated_svid(GATEWAY_PATH).await?;
    let identity =
        aims_gateway::identity::WorkloadIdentity::provided(svid.store(), server.issuer.bundles());
    let issuer = server.authorization_server.settings.issuer.clone();
    let mut settings = file.gateway.settings(td.clone(), Some(issuer.clone()))?;
    settings.listen = listen.or(file.gateway.listen).unwrap_or(settings.listen);
    if settings.server_ca_file.is_none() {
        settings.server_ca_file = server.web_ca_file.clone();
    }
    if settings.tls == aims_gateway::GatewayTls::Svid {
        // The server's HTTPS certificate, so OAuth and MCP clients can check the host name.
        settings.tls = aims_gateway::GatewayTls::Files {
            cert_file: server.web_tls.0.clone(),
            key_file: server.web_tls.1.clone(),
        };
    }
    let mut demo = None;
    if file.gateway.demo_tool.unwrap_or(settings.routes.is_empty()) {
        let listen = file
            .gateway
            .demo_tool_listen
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let (addr, _task) = crate::demo_tool::serve(listen, shutdown.clone()).await?;
        let upstream = format!("http://{addr}");
        settings.routes.extend(crate::demo_tool::routes(&upstream));
        demo = Some(upstream);
    }
    // The issuer's host, the gateway's port: names the server certificate covers.
    settings.public_host = reqwest::Url::parse(&issuer)?.host_str().map(str::to_owned);
    let gateway =
        aims_gateway::start_with_identity(settings, identity, shutdown.child_token()).await?;
    let resources = register_routes(server, &gateway, td)?;
    Ok((gateway, demo, resources))
}

/// Tells the AS which resources the gateway serves (AIMS AZ-6): its routes, which only the
/// gateway may exchange tokens of, and their upstreams' audiences. Returns what it registered
/// (other replicas are told the same).
fn register_routes(
    server: &RunningServer,
    gateway: &aims_gateway::RunningGateway,
    td: &TrustDomain,
) -> anyhow::Result<Vec<aims_oauth::ResourceServer>> {
    let gateway_id = td.id_with_path(GATEWAY_PATH)?.to_string();
    let mut registered = Vec::new();
    for r in gateway.gateway.routes() {
        let upstream: Vec<String> = r.route.exchange_audience.iter().cloned().collect();
        registered.extend(
            upstream
                .iter()
                .cloned()
                .map(aims_oauth::ResourceServer::new),
        );
        registered.push(aims_oauth::ResourceServer {
            resource: r.resource.clone(),
            server: Some(gateway_id.clone()),
            exchange_to: upstream,
        });
    }
    for r in &registered {
        server.authorization_server.resources.register(r.clone());
    }
    Ok(registered)
}

/// Registers `spiffe://TD/user/<name>` for the current uid, unless it exists.
async fn register_self(server: &RunningServer, td: &TrustDomain) -> anyhow::Result<SpiffeId> {
    let uid = own_uid()?;
    let name = std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
        })
        .unwrap_or_else(|| format!("uid-{uid}"));
    let spiffe_id = td.id_with_path(&format!("/user/{name}"))?;
    ensure_entry(
        server,
        NewEntry::new(
            spiffe_id.clone(),
            td.id_with_path(LOCAL_AGENT_PATH)?,
            vec![Selector::new("unix", &format!("uid:{uid}"))?],
        ),
    )
    .await?;
    Ok(spiffe_id)
}

/// Runs the stack until Ctrl-C or SIGTERM, printing its endpoints.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let file = config::load_file(&args.flags.common)?;
    let mut settings = config::server_settings(&args.flags, &file, Some(DEFAULT_TRUST_DOMAIN))?;
    // Passkeys out of the box: WebAuthn refuses IP addresses, so a local stack is `localhost`
    // unless the operator named its public host or URL (the local certificate covers both).
    if file.server.public_host.is_none() && settings.public_url.is_none() {
        settings.public_host = LOCAL_PUBLIC_HOST.into();
    }
    let data_dir = settings.data_dir.clone();
    let td = settings.trust_domain.clone();
    let cluster = match args.replicas {
        1 => None,
        n => Some(super::replicas::Cluster::bind(&mut settings, n).await?),
    };
    let metrics = crate::telemetry::start(&args.flags.common, &file).await?;
    let server = aims_server::start(settings)
        .await
        .context("AIMS could not start")?;
    let balancer = tokio_util::sync::CancellationToken::new();
    let balanced = cluster.map(|c| c.balance(&server, &balancer));
    let agent_address = balanced
        .as_ref()
        .map_or(server.agent_addr, |b| b.agent_addr)
        .to_string();
    let self_id = if args.register_self {
        Some(register_self(&server, &td).await?)
    } else {
        None
    };
    let agent_settings = local_agent_settings(
        &server,
        agent_address.clone(),
        &file,
        &data_dir,
        args.socket,
    )
    .await?;
    let agent = match aims_agent::start(agent_settings, super::agent::FIRST_SYNC_WAIT).await {
        Ok(a) => a,
        Err(e) => {
            server.stop().await;
            return Err(anyhow::Error::new(e).context("the local agent could not start"));
        }
    };
    let tool_shutdown = tokio_util::sync::CancellationToken::new();
    let (gateway, demo, resources) =
        match start_gateway(&server, &file, args.gateway_listen, &td, &tool_shutdown).await {
            Ok(g) => g,
            Err(e) => {
                agent.stop().await;
                server.stop().await;
                return Err(e.context("the gateway could not start"));
            }
        };
    let replicas = match &balanced {
        None => Vec::new(),
        Some(b) => {
            let started = b
                .start_replicas(
                    &server,
                    &args.flags,
                    &data_dir,
                    metrics.is_some(),
                    &resources,
                )
                .await;
            match started {
                Ok(r) => r,
                Err(e) => {
                    gateway.stop().await;
                    tool_shutdown.cancel();
                    agent.stop().await;
                    server.stop().await;
                    return Err(e);
                }
            }
        }
    };
    let mut up = UpFile::new(&data_dir, &server, Some(&agent))?
        .with_gateway(&gateway, demo)
        .with_metrics(metrics);
    if !replicas.is_empty() {
        let first = super::replicas::ReplicaInfo {
            server_id: server.server_id.clone(),
            pid: std::process::id(),
            data_dir: up.data_dir.clone(),
            listeners: up.server.listeners.context("the server's listeners")?,
            log: None,
        };
        let all = std::iter::once(first)
            .chain(replicas.iter().map(|r| r.info.clone()))
            .collect();
        up = up.with_replicas(agent_address, all);
    }
    let path = up.write(&data_dir)?;
    println!("{}", up.table());
    if let Some(id) = self_id {
        println!("Processes of your user get {id}: try `aims api fetch x509`.");
    }
    println!(
        "Endpoints written to {}. Press Ctrl-C to stop.",
        path.display()
    );
    super::shutdown_signal().await;
    gateway.stop().await;
    tool_shutdown.cancel();
    agent.stop().await;
    super::replicas::stop_all(replicas).await;
    balancer.cancel();
    server.stop().await;
    UpFile::remove(&data_dir);
    Ok(())
}
