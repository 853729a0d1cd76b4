//! `<data-dir>/up.json`: every endpoint the local stack serves, for scripts, tests and
//! `aims demo` to find.

use std::path::{Path, PathBuf};

use aims_agent::RunningAgent;
use aims_server::RunningServer;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The file name inside the data directory.
pub const UP_FILE: &str = "up.json";

/// What `up.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpFile {
    /// AIMS version.
    pub version: String,
    /// Process id of the running stack.
    pub pid: u32,
    /// The trust domain.
    pub trust_domain: String,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// The admin API socket.
    pub admin_socket: PathBuf,
    /// The server's endpoints.
    pub server: ServerEndpoints,
    /// The local agent, when this process runs one.
    pub agent: Option<AgentEndpoints>,
    /// The gateway, when this process runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayEndpoints>,
    /// Prometheus metrics, when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Every replica behind the load balancer (`aims up --replicas`), the first being this
    /// process's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::cmd::replicas::ReplicaInfo>,
}

/// A server's own listeners (behind a load balancer, its advertised URLs are the balancer's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Listeners {
    /// The HTTPS listener.
    pub https: std::net::SocketAddr,
    /// The agent API.
    pub agent_api: std::net::SocketAddr,
    /// The OAuth mutual-TLS listener.
    pub oauth_mtls: std::net::SocketAddr,
}

/// The gateway and what it guards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayEndpoints {
    /// Its base URL.
    pub url: String,
    /// Its SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// The built-in demo tool behind it, when it runs (plain HTTP on loopback).
    pub demo_tool: Option<String>,
    /// Each route: name, URL at the gateway, the resource to ask tokens for, and its RFC 9728
    /// metadata.
    pub routes: Vec<RouteEndpoints>,
}

/// One route of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteEndpoints {
    /// Its name.
    pub name: String,
    /// Its URL at the gateway.
    pub url: String,
    /// The resource identifier tokens must name.
    pub resource: String,
    /// Its protected resource metadata.
    pub resource_metadata: String,
}

/// The local agent's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentEndpoints {
    /// The SPIFFE Workload API socket (`SPIFFE_ENDPOINT_SOCKET` is `unix://` + this).
    pub workload_api_socket: PathBuf,
    /// The agent's own SPIFFE ID.
    pub spiffe_id: Option<String>,
}

/// The server's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerEndpoints {
    /// Base HTTPS URL.
    pub https: String,
    /// SPIFFE bundle endpoint (https_web profile).
    pub bundle_endpoint: String,
    /// The agent API (gRPC over mutual TLS), `host:port`.
    pub agent_api: String,
    /// The OAuth issuer (RFC 8414 metadata at `/.well-known/oauth-authorization-server`).
    pub oauth_issuer: String,
    /// The OAuth mutual-TLS endpoint base (RFC 8705 aliases).
    pub oauth_mtls: String,
    /// The CA to trust for the HTTPS endpoints, when AIMS made its own certificate.
    pub web_ca_file: Option<PathBuf>,
    /// This replica's id.
    pub server_id: String,
    /// The web console (administrators sign in with their user accounts).
    #[serde(default)]
    pub console: String,
    /// Where people approve what agents ask (CIBA).
    #[serde(default)]
    pub approvals: String,
    /// This server's own listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Listeners>,
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl UpFile {
    /// The file for a running server (and agent) on `data_dir`.
    pub fn new(
        data_dir: &Path,
        server: &RunningServer,
        agent: Option<&RunningAgent>,
    ) -> anyhow::Result<Self> {
        let https = server
            .bundle_url
            .strip_suffix(aims_provisioning::issuance::bundle_endpoint::BUNDLE_PATH)
            .unwrap_or(&server.bundle_url)
            .to_owned();
        Ok(Self {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            trust_domain: server.issuer.trust_domain().to_string(),
            data_dir: absolute(data_dir),
            admin_socket: absolute(&server.admin_socket),
            server: ServerEndpoints {
                https,
                bundle_endpoint: server.bundle_url.clone(),
                agent_api: server.agent_addr.to_string(),
                oauth_issuer: server.authorization_server.settings.issuer.clone(),
                oauth_mtls: server
                    .authorization_server
                    .settings
                    .mtls_base
                    .clone()
                    .unwrap_or_default(),
                web_ca_file: server.web_ca_file.as_deref().map(absolute),
                server_id: server.server_id.clone(),
                console: format!(
                    "{}{}",
                    server.authorization_server.settings.issuer,
                    aims_console::CONSOLE_PATH
                ),
                approvals: format!(
                    "{}{}",
                    server.authorization_server.settings.issuer,
                    aims_oauth::APPROVALS_PATH
                ),
                listeners: Some(Listeners {
                    https: server.https_addr,
                    agent_api: server.agent_addr,
                    oauth_mtls: server.oauth_mtls_addr,
                }),
            },
            agent: agent.map(|a| AgentEndpoints {
                workload_api_socket: absolute(&a.socket_path),
                spiffe_id: a.agent.spiffe_id().map(|id| id.to_string()),
            }),
            gateway: None,
            replicas: Vec::new(),
            metrics: None,
        })
    }

    /// Adds the metrics URL, if any.
    pub fn with_metrics(mut self, url: Option<String>) -> Self {
        self.metrics = url;
        self
    }

    /// Adds the gateway and the tool it guards.
    pub fn with_gateway(
        mut self,
        gateway: &aims_gateway::RunningGateway,
        demo_tool: Option<String>,
    ) -> Self {
        self.gateway = Some(GatewayEndpoints {
            url: gateway.public_url.clone(),
            spiffe_id: gateway.gateway.spiffe_id().map(|id| id.to_string()),
            demo_tool,
            routes: gateway
                .gateway
                .routes()
                .iter()
                .map(|r| RouteEndpoints {
                    name: r.route.name.clone(),
                    url: format!(
                        "{}{}",
                        gateway.public_url,
                        r.route.path_prefix.trim_end_matches('/')
                    ),
                    resource: r.resource.clone(),
                    resource_metadata: r.metadata_url.clone(),
                })
                .collect(),
        });
        self
    }

    /// Adds the replicas behind the load balancer, whose agent API address replaces this
    /// replica's own.
    pub fn with_replicas(
        mut self,
        agent_api: String,
        replicas: Vec<crate::cmd::replicas::ReplicaInfo>,
    ) -> Self {
        self.server.agent_api = agent_api;
        self.replicas = replicas;
        self
    }

    /// Writes `up.json` atomically; returns its path.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<PathBuf> {
        let path = data_dir.join(UP_FILE);
        aims_core::files::write_atomic(&path, &serde_json::to_vec_pretty(self)?, 0o644)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Removes `up.json` at a clean stop, so no stale endpoints are left behind.
    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join(UP_FILE));
    }

    /// The endpoint table printed at start.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("Trust domain", self.trust_domain.clone()),
            ("Bundle endpoint", self.server.bundle_endpoint.clone()),
            ("Agent API", self.server.agent_api.clone()),
            ("OAuth issuer", self.server.oauth_issuer.clone()),
            ("Console", self.server.console.clone()),
            ("Approvals", self.server.approvals.clone()),
            ("Admin socket", self.admin_socket.display().to_string()),
        ];
        if let Some(ca) = &self.server.web_ca_file {
            rows.push(("HTTPS trust (CA)", ca.display().to_string()));
        }
        if let Some(agent) = &self.agent {
            rows.push((
                "Workload API",
                format!("unix://{}", agent.workload_api_socket.display()),
            ));
        }
        if let Some(g) = &self.gateway {
            rows.push(("Gateway", g.url.clone()));
            for r in &g.routes {
                rows.push(("  route", format!("{} -> {}", r.name, r.url)));
            }
        }
        if let Some(m) = &self.metrics {
            rows.push(("Metrics", m.clone()));
        }
        if !self.replicas.is_empty() {
            rows.push((
                "Replicas",
                format!(
                    "{} on one PostgreSQL store, behind a load balancer",
                    self.replicas.len()
                ),
            ));
        }
        for r in &self.replicas {
            rows.push((
                "  replica",
                format!(
                    "{} pid {} https {}{}",
                    r.server_id,
                    r.pid,
                    r.listeners.https,
                    r.log
                        .as_ref()
                        .map(|l| format!(" log {}", l.display()))
                        .unwrap_or_default()
                ),
            ));
        }
        rows.push(("Data directory", self.data_dir.display().to_string()));
        let mut out = String::from("AIMS is up.\n");
        for (k, v) in rows {
            out.push_str(&format!("  {k:<18} {v}\n"));
        }
        out
    }
}
