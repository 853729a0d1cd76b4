//! # aims-gateway
//!
//! The AIMS enforcement point (draft §10.8, §10.10.2; AIMS AZ-7, AZ-8, AZ-34, AZ-37, AZ-38,
//! MO-8): an HTTP/1.1 and HTTP/2 reverse proxy in front of tools and MCP servers. Per request
//! it authenticates the agent (access token with DPoP or certificate binding, WPT, WIMSE HTTP
//! signature or X509-SVID), validates the token for this resource (no passthrough), decides
//! with the Cedar PDP at the policy version the server has in force, records the decision in
//! the server's audit log, and forwards with a transaction token instead of the caller's
//! credentials. MCP routes authorize each `tools/call` and filter `tools/list`; every route
//! serves its RFC 9728 protected resource metadata.
#![forbid(unsafe_code)]

pub mod audit_sink;
pub mod decision_cache;
pub mod identity;
pub mod mcp;
pub mod proxy;
pub mod recent;
pub mod scopes;
pub mod server_client;
pub mod settings;
pub mod signals;
pub mod token_cache;
pub mod trace;
mod txn;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aims_authn::ReplayCache;
use aims_authn::layer::{AudiencePolicy, WorkloadAuthConfig};
use aims_authn::mtls::{Authorizer, ClientAuth, SpiffeClientVerifier};
use aims_authn::wimse_sig::WimseSigVerifier;
use aims_authn::wpt::WptVerifier;
use aims_core::SystemClock;
use aims_policy::Pdp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use aims_token::wire::PROTECTED_RESOURCE_METADATA_PATH;
pub use settings::{AuditMode, GatewaySettings, GatewayTls, Route, RouteKind, TxnTokenIssuer};

use crate::proxy::{CompiledRoute, Gateway};
use crate::server_client::{PolicyAnswer, ServerClient};

/// Why the gateway could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The gateway's own identity is missing.
    #[error("identity: {0}")]
    Identity(String),
    /// The AIMS server could not be used.
    #[error("AIMS server: {0}")]
    Server(String),
    /// The AIMS server refused what it was asked (a 4xx: the credential it was shown is not
    /// good), as opposed to being unavailable.
    #[error("AIMS server refused: {0}")]
    Refused(String),
    /// The decision record was not handed to the audit sink (it stopped): the request is
    /// refused, as no decision may go unrecorded (AIMS MO-8).
    #[error("audit: the audit sink is closed")]
    AuditClosed,
    /// In `sync` audit mode, the log did not acknowledge the record in time.
    #[error("audit: the audit log did not acknowledge in time")]
    AuditTimeout,
    /// The policy could not be loaded.
    #[error("policy: {0}")]
    Policy(String),
    /// The policy in force does not compile here.
    #[error("policy: {0}")]
    PolicyInvalid(#[from] aims_policy::PolicyError),
    /// The TLS configuration of the listener.
    #[error("TLS: {0}")]
    Tls(#[from] aims_authn::transport::TlsConfigError),
    /// A socket could not be bound or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl GatewayError {
    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// A running gateway.
pub struct RunningGateway {
    /// The address bound.
    pub addr: SocketAddr,
    /// The URL clients use.
    pub public_url: String,
    /// Its state (for revocation hooks and tests).
    pub gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// Stops listening, flushes the decision records and waits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        drop(self.gateway);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn first_policy(server: &ServerClient) -> Result<Pdp, GatewayError> {
    let mut last = String::new();
    for _ in 0..60 {
        match server.current_policy(None, Duration::ZERO).await {
            Ok(PolicyAnswer {
                document: Some(doc),
                ..
            }) => {
                return Ok(Pdp::new(&doc)?);
            }
            Ok(_) => last = "no policy".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(GatewayError::Policy(format!(
        "cannot load the policy in force: {last}"
    )))
}

/// How long the server is asked to hold a policy poll.
const POLICY_HOLD: Duration = Duration::from_secs(25);

/// Keeps the local PDP at the version the server has in force (AIMS PO-3): a long poll the
/// server answers the moment a new version is in force, asked again at once; `retry` apart
/// after an error, or when the server does not hold polls.
async fn follow_policy(
    server: Arc<ServerClient>,
    pdp: Arc<Pdp>,
    retry: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let known = pdp.current().version;
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            a = server.current_policy(Some(known), POLICY_HOLD) => a,
        };
        let held = match answer {
            Ok(PolicyAnswer { document, held }) => {
                if let Some(doc) = document.filter(|d| d.version > known) {
                    match pdp.install(&doc) {
                        Ok(_) => tracing::info!(version = doc.version, "policy in force"),
                        Err(e) => {
                            tracing::error!(version = doc.version, error = %e, "policy refused; the old version stays")
                        }
                    }
                }
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the policy version; will retry");
                false
            }
        };
        if !held {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }
}

fn compile_routes(
    settings: &GatewaySettings,
    public_url: &str,
) -> Result<Vec<CompiledRoute>, GatewayError> {
    let mut routes = Vec::with_capacity(settings.routes.len());
    for route in &settings.routes {
        if !route.path_prefix.starts_with('/') {
            return Err(GatewayError::Config(format!(
                "route {}: path_prefix must start with /",
                route.name
            )));
        }
        let upstream = upstream::Upstream::parse(&route.upstream)
            .map_err(|e| GatewayError::Config(format!("route {}: {e}", route.name)))?;
        let prefix = route.path_prefix.trim_end_matches('/');
        let metadata_path = format!("{PROTECTED_RESOURCE_METADATA_PATH}{prefix}");
        routes.push(CompiledRoute {
            resource: route
                .resource
                .clone()
                .unwrap_or_else(|| format!("{public_url}{prefix}")),
            metadata_url: format!("{public_url}{metadata_path}"),
            metadata_path,
            upstream,
            scopes: scopes::ScopeHierarchy::new(&route.scope_implies),
            route: route.clone(),
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.route.path_prefix.trim_end_matches('/').len()));
    Ok(routes)
}

/// Starts the gateway with its identity from the Workload API.
pub async fn start(settings: GatewaySettings) -> Result<RunningGateway, GatewayError> {
    let shutdown = CancellationToken::new();
    let identity = identity::WorkloadIdentity::connect(
        settings.workload_socket.as_deref(),
        settings.spiffe_id.clone(),
        Duration::from_secs(30),
        shutdown.clone(),
    )
    .await?;
    start_with_identity(settings, identity, shutdown).await
}

/// Starts the gateway with `identity`: the AS's keys, the policy in force, the audit sink and
/// the listener. `shutdown` stops it (and whatever keeps the identity current).
pub async fn start_with_identity(
    settings: GatewaySettings,
    identity: Arc<identity::WorkloadIdentity>,
    shutdown: CancellationToken,
) -> Result<RunningGateway, GatewayError> {
    let stop_on_error = shutdown.clone().drop_guard();
    let http = server_client::mtls_http_client(
        &identity,
        settings.server_ca_file.as_deref(),
        server_client::REQUEST_TIMEOUT,
    )?;
    let server = Arc::new(
        ServerClient::discover(
            &settings.issuer,
            settings.trust_domain.name(),
            http,
            identity.clone(),
        )
        .await?,
    );
    let pdp = Arc::new(first_policy(&server).await?);
    let (audit, flusher) = audit_sink::AuditSink::start(server.clone(), settings.audit);
    let tls = match &settings.tls {
        GatewayTls::Svid => aims_authn::mtls::server_config_with(
            identity.svid.clone(),
            identity.x509_bundles.clone(),
            Authorizer::Any,
            ClientAuth::Optional,
        )
        .map_err(|e| GatewayError::Config(format!("TLS: {e}")))?,
        GatewayTls::Files {
            cert_file,
            key_file,
        } => aims_authn::transport::web_server_config(
            cert_file,
            key_file,
            Some(Arc::new(
                SpiffeClientVerifier::new(identity.x509_bundles.clone(), Authorizer::Any)
                    .optional(),
            )),
        )?,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(GatewayError::io(format!("listen on {}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(GatewayError::io("local address"))?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| {
            let host = settings.public_host.as_deref().unwrap_or("localhost");
            format!("https://{host}:{}", addr.port())
        })
        .trim_end_matches('/')
        .to_owned();
    let routes = compile_routes(&settings, &public_url)?;
    let clock = SystemClock::shared();
    let replay = Arc::new(ReplayCache::new(100_000, 60));
    let mut workload_auth = WorkloadAuthConfig::new(AudiencePolicy::BaseUrl(public_url.clone()));
    workload_auth.wpt = Some(WptVerifier::new(
        identity.wit_bundles.clone(),
        replay.clone(),
        clock.clone(),
    ));
    workload_auth.http_signature = Some(WimseSigVerifier::new(
        identity.wit_bundles.clone(),
        replay.clone(),
        clock,
    ));
    workload_auth.mtls = true;
    workload_auth.max_body = settings.max_json_body;
    let upstream = upstream::client(server_client::mtls_client_config(
        &identity,
        settings.server_ca_file.as_deref(),
    )?);
    let txn = txn::TxnTokens::new(&settings, server.clone(), &identity)?;
    let gateway = Arc::new(Gateway {
        txn,
        routes,
        public_url: public_url.clone(),
        server: server.clone(),
        pdp: pdp.clone(),
        audit,
        upstream,
        dpop: aims_token::dpop::DpopVerifier::new(replay, false, 60)
            .map_err(|e| GatewayError::Config(e.to_string()))?,
        workload_auth,
        tokens: token_cache::TokenCache::new(settings.token_cache, settings.token_recheck),
        decisions: decision_cache::DecisionCache::new(settings.token_cache, settings.decision_ttl),
        max_json_body: settings.max_json_body,
        max_body: settings.max_body,
        upstream_timeout: settings.upstream_timeout,
        spiffe_id: identity.spiffe_id(),
    });
    let router = axum::Router::new()
        .fallback(proxy::handle)
        .with_state(gateway.clone());
    let own_id = identity
        .spiffe_id()
        .map(|id| id.to_string())
        .ok_or_else(|| GatewayError::Config("the gateway has no X509-SVID".into()))?;
    // Long polls outlast the server client's request timeout.
    let signals_http = server_client::mtls_http_client(
        &identity,
        settings.server_ca_file.as_deref(),
        Duration::from_secs(60),
    )?;
    let mut tasks = vec![
        tokio::spawn(aims_authn::transport::serve_tls(
            listener,
            Arc::new(tls),
            router,
            shutdown.clone(),
        )),
        tokio::spawn(follow_policy(
            server.clone(),
            pdp,
            settings.policy_poll,
            shutdown.clone(),
        )),
        tokio::spawn(signals::follow(
            server,
            gateway.clone(),
            signals_http,
            own_id,
            shutdown.clone(),
        )),
    ];
    // The flusher ends when the last sink handle (the gateway's) is gone.
    tasks.push(flusher);
    tracing::info!(%addr, %public_url, routes = settings.routes.len(), audit = ?settings.audit, "AIMS gateway started");
    stop_on_error.disarm();
    Ok(RunningGateway {
        addr,
        public_url,
        gateway,
        shutdown,
        tasks,
    })
}
