//! Starting and stopping `aims server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aims_authn::mtls::{Authorizer, ClientAuth};
use aims_authn::transport::serve_tls;
use aims_credentials::{CaManager, DiskKeyManager, UpstreamAuthority};
use aims_oauth::AuthorizationServer;
use aims_policy::service::PolicyService;
use aims_provisioning::issuance::IssuanceError;
use aims_provisioning::issuance::agent_api::AgentApi;
use aims_provisioning::issuance::bundle_endpoint;
use aims_provisioning::issuance::changes::ChangeFeed;
use aims_provisioning::issuance::issuer::{IssuanceLimits, Issuer};
use aims_provisioning::issuance::registrations::Registrations;
use aims_provisioning::issuance::server_svid::ServerSvid;
use aims_provisioning::node::X509PopVerifier;
use aims_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::error::ServerError;
use crate::settings::ServerSettings;
use crate::tls::LocalWebPki;
use crate::token_policy::TokenPolicy;

/// A running server.
pub struct RunningServer {
    /// The HTTPS address actually bound.
    pub https_addr: SocketAddr,
    /// The agent API address actually bound.
    pub agent_addr: SocketAddr,
    /// The OAuth mutual-TLS address actually bound.
    pub oauth_mtls_addr: SocketAddr,
    /// The authorization server.
    pub authorization_server: Arc<AuthorizationServer>,
    /// The policy in force and its decision point.
    pub policy: Arc<PolicyService>,
    /// The audit log.
    pub audit: Arc<aims_audit::AuditLog>,
    /// The Shared Signals transmitter.
    pub signals: Arc<aims_signals::Transmitter>,
    /// The bundle endpoint URL.
    pub bundle_url: String,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// The local web CA certificate, when the server made its own TLS certificate.
    pub web_ca_file: Option<PathBuf>,
    /// The HTTPS certificate chain and key (PEM files): `aims up` serves its gateway with them.
    pub web_tls: (PathBuf, PathBuf),
    /// This replica's id.
    pub server_id: String,
    /// The issuance service.
    pub issuer: Arc<Issuer>,
    /// Announces changes to agents.
    pub changes: Arc<ChangeFeed>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    audit_writer: JoinHandle<()>,
    colocated: Colocated,
}

impl RunningServer {
    /// An X509-SVID for `path` in this trust domain, for a component in this process (no
    /// attestation: the server vouches for itself), renewed with the server's own.
    pub async fn colocated_svid(&self, path: &str) -> Result<Arc<ServerSvid>, ServerError> {
        let id = self
            .issuer
            .trust_domain()
            .id_with_path(path)
            .map_err(|e| ServerError::Config(format!("SPIFFE ID path {path}: {e}")))?;
        let svid = Arc::new(ServerSvid::for_id(id));
        svid.refresh(&self.issuer, std::time::SystemTime::now())
            .await?;
        if let Ok(mut list) = self.colocated.lock() {
            list.push(svid.clone());
        }
        Ok(svid)
    }

    /// Stops every listener and task and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        // The writer commits what it was handed, then ends.
        self.audit.close();
        let _ = self.audit_writer.await;
        self.issuer.store().close().await;
        let _ = std::fs::remove_file(&self.admin_socket);
        tracing::info!("server stopped");
    }
}

/// Creates `dir` (and parents) with mode 0700, or tightens an existing one to 0700: it holds
/// keys and the store.
pub fn ensure_private_dir(dir: &Path) -> Result<(), ServerError> {
    aims_core::files::private_dir(dir)
        .map_err(|e| ServerError::io(format!("create data directory {}", dir.display()), e))
}

fn server_id(settings: &ServerSettings) -> Result<String, ServerError> {
    if let Some(id) = &settings.server_id {
        return Ok(id.clone());
    }
    let path = settings.data_dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id)
                .map_err(|e| ServerError::io(format!("write {}", path.display()), e))?;
            Ok(id)
        }
    }
}

fn read(path: &Path, what: &str) -> Result<String, ServerError> {
    std::fs::read_to_string(path)
        .map_err(|e| ServerError::io(format!("read {what} {}", path.display()), e))
}

async fn bind(
    addr: SocketAddr,
    what: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::io(format!("{what}: listen on {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::io("local address", e))?;
    Ok((listener, bound))
}

/// `host` as it goes in a URL (an IPv6 address in brackets).
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The URLs clients reach this server at: the HTTPS listener's (the OAuth issuer) and the
/// mutual-TLS listener's. Configured ones (a load balancer's, issue 18) win over the listeners'.
struct PublicUrls {
    issuer: String,
    mtls_base: String,
}

impl PublicUrls {
    fn new(
        settings: &ServerSettings,
        https_addr: SocketAddr,
        oauth_mtls_addr: SocketAddr,
    ) -> Result<Self, ServerError> {
        let host = url_host(&settings.public_host);
        let url = |configured: &Option<String>, what: &str, port: u16| match configured {
            Some(u) => public_url(u, what),
            None => Ok(format!("https://{host}:{port}")),
        };
        Ok(Self {
            issuer: url(&settings.public_url, "public_url", https_addr.port())?,
            mtls_base: url(
                &settings.public_mtls_url,
                "public_mtls_url",
                oauth_mtls_addr.port(),
            )?,
        })
    }
}

/// A configured public URL, checked and without a trailing slash: an OAuth issuer is an
/// `https` URL with no query or fragment (RFC 8414 §2), and clients compare it as a string.
fn public_url(configured: &str, what: &str) -> Result<String, ServerError> {
    let bad = |why: &str| ServerError::Config(format!("{what} {configured:?}: {why}"));
    let parsed = url::Url::parse(configured).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(bad("must be an https URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(bad("must have no query, fragment or user"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The hosts of the configured public URLs (names the local Web PKI certificate must cover).
fn public_url_hosts(settings: &ServerSettings) -> Vec<String> {
    [&settings.public_url, &settings.public_mtls_url]
        .into_iter()
        .flatten()
        .filter_map(|u| url::Url::parse(u).ok()?.host_str().map(str::to_owned))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .collect()
}

/// How often new audit records are hashed and a checkpoint signed (AIMS MO-7): four times a
/// second, so each step stays small and a record is covered well within a second of its append
/// even under load (a step that runs long is followed by the next at once).
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// The key that signs audit checkpoints, in the server's key directory.
const AUDIT_LOG_KEY: &str = "audit-log";

/// Where the store pins the verifier key of the audit log's signing key.
const AUDIT_LOG_VKEY: &str = "audit-log-vkey";

/// The audit log's origin (and checkpoint key name): `<trust domain>/audit`.
fn audit_log_origin(td: &aims_core::TrustDomain) -> String {
    format!("{td}/audit")
}

/// The Ed25519 key that signs audit checkpoints, created on first start. Replicas sharing a
/// store sign one log with one key (issue 18): copy `keys/audit-log.key.pem` to each.
fn audit_log_signer(
    keys: &DiskKeyManager,
    td: &aims_core::TrustDomain,
) -> Result<aims_audit::NoteSigner, ServerError> {
    use aims_credentials::KeyManager as _;
    let key_err =
        |e: aims_credentials::KeyError| ServerError::Config(format!("audit log key: {e}"));
    let key = match keys.get(AUDIT_LOG_KEY).map_err(key_err)? {
        Some(k) => k,
        None => keys
            .generate(AUDIT_LOG_KEY, aims_credentials::KeyType::Ed25519)
            .map_err(key_err)?,
    };
    aims_audit::NoteSigner::new(&audit_log_origin(td), key)
        .map_err(|e| ServerError::Config(format!("audit log key: {e}")))
}

/// Checks that `signer` is the key this store's audit log is signed with (issue 18): the first
/// replica to start pins its verifier key in the store; another replica with a key of its own
/// would sign checkpoints no verifier of the log accepts, so it refuses to start, saying which
/// file to copy. A log signed before keys were pinned must verify under `signer` too.
async fn pin_audit_log_key(
    store: &Store,
    signer: &aims_audit::NoteSigner,
    key_file: &Path,
) -> Result<(), ServerError> {
    let ours = signer.vkey();
    let latest = store.latest_audit_checkpoint().await?;
    let refuse = |theirs: &str| {
        ServerError::Config(format!(
            "this store's audit log is signed with the key {theirs}, but this replica's {} is {ours}: \
             replicas sharing a store sign one log with one key; copy that file from a replica \
             already serving this store (mode 0600) and start again",
            key_file.display()
        ))
    };
    // A log signed before keys were pinned: its newest checkpoint names the key (checked
    // first, so a refused replica pins nothing).
    if let Some(latest) = latest {
        let verifier = aims_audit::NoteVerifier::from_vkey(&ours)
            .map_err(|e| ServerError::Config(format!("audit log key: {e}")))?;
        if verifier.open(&latest.note).is_err() {
            return Err(refuse("that signed its newest checkpoint"));
        }
    }
    let pinned = store
        .pinned(AUDIT_LOG_VKEY, ours.clone().into_bytes())
        .await?;
    if pinned != ours.as_bytes() {
        return Err(refuse(&String::from_utf8_lossy(&pinned)));
    }
    Ok(())
}

/// The store, the keys, the CA (chained to an upstream, if one) and the issuance service; and
/// the audit log's signing key.
async fn start_issuer(
    settings: &ServerSettings,
    server_id: &str,
) -> Result<(Arc<Issuer>, aims_audit::NoteSigner), ServerError> {
    let store = Store::connect(&settings.database_url()).await?;
    let keys = Arc::new(
        DiskKeyManager::open(settings.data_dir.join("keys")).map_err(IssuanceError::from)?,
    );
    let upstream = match &settings.upstream {
        None => None,
        Some(files) => Some(
            UpstreamAuthority::from_pem(
                &read(&files.cert_file, "upstream certificate")?,
                &read(&files.key_file, "upstream key")?,
                files
                    .bundle_file
                    .as_ref()
                    .map(|p| read(p, "upstream bundle"))
                    .transpose()?
                    .as_deref(),
            )
            .map_err(IssuanceError::from)?,
        ),
    };
    let log_signer = audit_log_signer(keys.as_ref(), &settings.trust_domain)?;
    pin_audit_log_key(&store, &log_signer, &keys.path(AUDIT_LOG_KEY)).await?;
    let ca = CaManager::new(settings.trust_domain.clone(), settings.ca, keys, upstream);
    let issuer = Arc::new(
        Issuer::start(
            ca,
            store,
            server_id.to_owned(),
            settings.clock.clone(),
            IssuanceLimits {
                x509_svid_ttl: settings.x509_svid_ttl,
                agent_svid_ttl: settings.agent_svid_ttl.unwrap_or(settings.x509_svid_ttl),
                jwt_svid_ttl: settings.jwt_svid_ttl,
                wit_svid_ttl: settings.wit_svid_ttl,
                refresh_hint: settings.bundle_refresh_hint,
            },
        )
        .await?,
    );
    Ok((issuer, log_signer))
}

/// The HTTPS listeners' TLS: the configured certificate, or a local Web PKI made once.
struct WebTls {
    tls: rustls::ServerConfig,
    mtls_tls: rustls::ServerConfig,
    web_tls: (PathBuf, PathBuf),
    web_ca_file: Option<PathBuf>,
}

fn web_tls(settings: &ServerSettings, issuer: &Issuer) -> Result<WebTls, ServerError> {
    let (web_cert, web_key, web_ca_file) = match &settings.tls {
        Some(files) => (files.cert_file.clone(), files.key_file.clone(), None),
        None => {
            let mut hosts = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            for h in std::iter::once(settings.public_host.clone()).chain(public_url_hosts(settings))
            {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            let pki = LocalWebPki::load_or_create(&settings.data_dir.join("tls"), &hosts)?;
            (pki.cert_file, pki.key_file, Some(pki.ca_file))
        }
    };
    let tls = aims_authn::transport::web_server_config(&web_cert, &web_key, None)?;
    let web_tls = (web_cert.clone(), web_key.clone());
    // RFC 8705 mutual-TLS aliases: a Web PKI server certificate (SPIFFE client auth -02 §3.2:
    // clients check it against their system trust store), any trusted X509-SVID as client
    // certificate, and clients without one still served (they authenticate otherwise).
    let mtls_tls = aims_authn::transport::web_server_config(
        &web_cert,
        &web_key,
        Some(Arc::new(
            aims_authn::mtls::SpiffeClientVerifier::new(issuer.bundles(), Authorizer::Any)
                .optional(),
        )),
    )?;
    Ok(WebTls {
        tls,
        mtls_tls,
        web_tls,
        web_ca_file,
    })
}

/// SVIDs of processes colocated with the server (`aims up`'s gateway), renewed with its own.
pub(crate) type Colocated = Arc<std::sync::Mutex<Vec<Arc<ServerSvid>>>>;

/// Every tick: CA rotation and bundle publication, the server's and colocated SVIDs renewed,
/// expired OAuth and people state pruned.
fn spawn_maintenance(
    settings: &ServerSettings,
    issuer: Arc<Issuer>,
    server_svid: Arc<ServerSvid>,
    colocated: Colocated,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let ticker_colocated = colocated;
    let ticker_issuer = issuer;
    let ticker_stop = shutdown;
    let interval = settings.tick_interval;
    let clock = settings.clock.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = ticker_stop.cancelled() => break,
                _ = ticker.tick() => {
                    if let Err(e) = ticker_issuer.tick().await {
                        tracing::error!(error = %e, "CA rotation or bundle publication failed; will retry");
                    }
                    if let Err(e) = server_svid.refresh(&ticker_issuer, clock.now()).await {
                        tracing::error!(error = %e, "server SVID renewal failed; will retry");
                    }
                    let others: Vec<_> = ticker_colocated.lock().map(|l| l.clone()).unwrap_or_default();
                    for svid in others {
                        if let Err(e) = svid.refresh(&ticker_issuer, clock.now()).await {
                            tracing::error!(error = %e, "SVID renewal failed; will retry");
                        }
                    }
                    let now = aims_core::unix_seconds(clock.now());
                    if let Err(e) = ticker_issuer.store().prune_oauth(now).await {
                        tracing::warn!(error = %e, "cannot prune expired OAuth tokens; will retry");
                    }
                    if let Err(e) = ticker_issuer.store().prune_people(now).await {
                        tracing::warn!(error = %e, "cannot prune expired sessions and requests; will retry");
                    }
                }
            }
        }
    })
}

/// The shared secret DPoP nonces are keyed with (RFC 9449 §8).
const DPOP_NONCE_SECRET: &str = "dpop-nonce";

/// How long a replica on a shared store may decide grants on revocations the store has not
/// confirmed current: ten change polls, at least two seconds.
fn revocation_staleness(poll: std::time::Duration) -> std::time::Duration {
    (poll * 10).max(std::time::Duration::from_secs(2))
}

/// Follows what other replicas sharing the store change in the authorization server's
/// in-memory state, at once when the store notifies a change (issue 18) and every `interval`
/// besides: reloads the revocations (issue 17) when their counter moved, and drops the cached
/// registered clients when theirs did.
async fn watch_authorization_state(
    store: Store,
    authorization_server: Arc<AuthorizationServer>,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut changes = aims_store::ChangeWaiter::new(&store, interval);
    let mut clients = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changes.next() => {}
        }
        match store.refresh_revocations().await {
            Ok(true) => tracing::debug!("revocations changed in the store; reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the store for revocations; will retry");
            }
        }
        match store.counter(aims_store::Counter::Clients).await {
            Ok(now) => {
                if clients.is_some_and(|before| before != now) {
                    tracing::debug!("registered clients changed in the store; cache dropped");
                    authorization_server.forget_clients();
                }
                clients = Some(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the store for client changes; will retry");
            }
        }
    }
}

/// What the server's routers are made of.
struct Components {
    issuer: Arc<Issuer>,
    authorization_server: Arc<AuthorizationServer>,
    people: Arc<aims_people::People>,
    policy: Arc<PolicyService>,
    audit: Arc<aims_audit::AuditLog>,
    log_view: aims_audit::http::LogView,
    signals: Arc<aims_signals::Transmitter>,
    intake: Arc<aims_signals::intake::SignalIntake>,
    mtls_base: String,
}

impl Components {
    /// The HTTPS listener: the bundle endpoint, the authorization server and its pages, the
    /// console, SSF discovery and the push intake.
    fn https_router(&self) -> axum::Router {
        bundle_endpoint::router(self.issuer.clone())
            .merge(aims_oauth::router(self.authorization_server.clone()))
            .merge(aims_oauth::people_router(self.authorization_server.clone()))
            .merge(aims_console::router(aims_console::Console {
                people: self.people.clone(),
                policy: self.policy.clone(),
                log: self.log_view.clone(),
            }))
            .merge(aims_signals::http::metadata_router(
                self.authorization_server.settings.issuer.clone(),
                self.mtls_base.clone(),
            ))
            .merge(aims_signals::intake::router(self.intake.clone()))
    }

    /// The mutual-TLS listener: the authorization server's RFC 8705 aliases, and for the trust
    /// domain's enforcement points (authenticated by their X509-SVIDs) the AuthZEN API, the
    /// policy in force, audit appends and SSF streams.
    fn mtls_router(&self, settings: &ServerSettings) -> axum::Router {
        aims_oauth::router(self.authorization_server.clone())
            .merge(aims_policy::http::router(
                self.policy.clone(),
                settings.trust_domain.clone(),
                self.mtls_base.clone(),
                Some(Arc::new(TokenBearer(self.authorization_server.clone()))),
            ))
            .merge(aims_audit::http::router(
                self.audit.clone(),
                self.log_view.clone(),
                settings.trust_domain.clone(),
                settings.audit_writers.clone(),
            ))
            .merge(aims_signals::http::router(
                self.signals.clone(),
                settings.trust_domain.clone(),
            ))
    }
}

/// Bearer access tokens for the server's own APIs, checked by its authorization server.
struct TokenBearer(Arc<aims_oauth::AuthorizationServer>);

impl aims_authn::caller::BearerCheck for TokenBearer {
    fn check<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(self.0.bearer_client(token, audience))
    }
}

/// The people service and the authorization server, its decisions on record (the Cedar PDP
/// through the token-policy adapter), its issuer the HTTPS listener's URL.
fn authorization_server(
    settings: &ServerSettings,
    issuer: &Arc<Issuer>,
    policy: &PolicyService,
    audit: &Arc<aims_audit::AuditLog>,
    urls: &PublicUrls,
    dpop_nonce_secret: &[u8],
) -> Result<(Arc<aims_people::People>, Arc<AuthorizationServer>), ServerError> {
    let mut as_settings = settings.oauth.clone();
    as_settings.issuer = urls.issuer.clone();
    as_settings.mtls_base = Some(urls.mtls_base.clone());
    as_settings.trust_domain = settings.trust_domain.clone();
    let mut people_settings = settings.people.clone();
    people_settings.public_url = as_settings.issuer.clone();
    let people = aims_people::People::new(
        people_settings,
        issuer.store().clone(),
        settings.clock.clone(),
    )
    .map_err(|e| ServerError::Config(format!("user sign-in: {e}")))?;
    let authorization_server = Arc::new(
        AuthorizationServer::new(
            as_settings,
            issuer.clone(),
            issuer.bundles(),
            issuer.store().clone(),
            Arc::new(TokenPolicy::new(
                policy.pdp().clone(),
                (audit.clone(), settings.audit),
                aims_provisioning::issuance::server_svid::server_spiffe_id(&settings.trust_domain)?
                    .to_string(),
                settings.clock.clone(),
            )),
            settings.clock.clone(),
        )
        .map_err(|e| ServerError::Config(format!("authorization server: {e}")))?
        .with_people(people.clone())
        .with_dpop_nonce_secret(dpop_nonce_secret),
    );
    Ok((people, authorization_server))
}

/// The SSF transmitter, remediation (recorded, signalled) and the intake of the transmitters
/// an operator configured.
struct SignalServices {
    signals: Arc<aims_signals::Transmitter>,
    remediation: Arc<aims_signals::remediation::Remediation>,
    intake: Arc<aims_signals::intake::SignalIntake>,
}

fn signal_services(
    settings: &ServerSettings,
    issuer: &Arc<Issuer>,
    audit: &Arc<aims_audit::AuditLog>,
    as_issuer: &str,
    mtls_base: &str,
) -> Result<SignalServices, ServerError> {
    let signals = Arc::new(
        aims_signals::Transmitter::new(
            issuer.store().clone(),
            as_issuer.to_owned(),
            mtls_base.to_owned(),
            Arc::new(aims_signals::http::AsSigner(issuer.clone())),
            // Receivers' push endpoints are guarded like the URLs clients name.
            &settings.oauth.fetch,
        )
        .map_err(|e| ServerError::Config(format!("signals: {e}")))?,
    );
    let remediation = Arc::new(aims_signals::remediation::Remediation::new(
        issuer.store().clone(),
        audit.clone(),
        signals.clone(),
        aims_provisioning::issuance::server_svid::server_spiffe_id(&settings.trust_domain)?
            .to_string(),
        settings.clock.clone(),
    ));
    let intake = Arc::new(
        aims_signals::intake::SignalIntake::new(
            &settings.signal_sources,
            as_issuer.to_owned(),
            remediation.clone(),
            signals.clone(),
            issuer.store().clone(),
            settings.clock.clone(),
        )
        .map_err(|e| ServerError::Config(format!("signal source: {e}")))?,
    );
    Ok(SignalServices {
        signals,
        remediation,
        intake,
    })
}

/// Starts the server: store, CA, policy, HTTPS listener (bundle endpoint, authorization
/// server), agent API, OAuth mutual-TLS listener (with the AuthZEN API) and admin socket.
pub async fn start(settings: ServerSettings) -> Result<RunningServer, ServerError> {
    ensure_private_dir(&settings.data_dir)?;
    let server_id = server_id(&settings)?;
    let (issuer, log_signer) = start_issuer(&settings, &server_id).await?;
    let WebTls {
        tls,
        mtls_tls,
        web_tls,
        web_ca_file,
    } = web_tls(&settings, &issuer)?;
    let (listener, https_addr) = bind(settings.listen, "HTTPS").await?;
    let (agent_listener, agent_addr) = bind(settings.agent_listen, "agent API").await?;
    let (mtls_listener, oauth_mtls_addr) = bind(settings.oauth_mtls_listen, "OAuth mTLS").await?;
    let urls = PublicUrls::new(&settings, https_addr, oauth_mtls_addr)?;
    let policy = PolicyService::start(issuer.store().clone(), settings.clock.clone()).await?;
    let (audit, audit_writer) = aims_audit::AuditLog::start(issuer.store().clone());
    let log_view = aims_audit::http::LogView {
        store: issuer.store().clone(),
        vkey: log_signer.vkey(),
    };
    let mtls_base = urls.mtls_base.clone();
    // Every replica keys DPoP nonces alike: a client's retry may reach another one.
    let dpop_nonce_secret = issuer.store().shared_secret(DPOP_NONCE_SECRET).await?;
    let (people, authorization_server) = authorization_server(
        &settings,
        &issuer,
        &policy,
        &audit,
        &urls,
        &dpop_nonce_secret,
    )?;
    let shutdown = CancellationToken::new();
    // Whatever was started stops again if a later step fails.
    let stop_on_error = shutdown.clone().drop_guard();
    let as_issuer = &authorization_server.settings.issuer;
    let SignalServices {
        signals,
        remediation,
        intake,
    } = signal_services(&settings, &issuer, &audit, as_issuer, &mtls_base)?;
    let components = Components {
        issuer: issuer.clone(),
        authorization_server: authorization_server.clone(),
        people: people.clone(),
        policy: policy.clone(),
        audit: audit.clone(),
        log_view: log_view.clone(),
        signals: signals.clone(),
        intake,
        mtls_base,
    };
    let mut tasks = vec![tokio::spawn(serve_tls(
        listener,
        Arc::new(tls),
        components.https_router(),
        shutdown.clone(),
    ))];
    tasks.push(tokio::spawn(signals.clone().run_push(shutdown.clone())));
    tasks.push(tokio::spawn(serve_tls(
        mtls_listener,
        Arc::new(mtls_tls),
        components.mtls_router(&settings),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(
        policy
            .clone()
            .watch_store(settings.change_poll_interval, shutdown.clone()),
    ));
    if issuer.store().backend() == aims_store::Backend::Postgres {
        // Issue 18: a replica cut off from the shared store stops deciding grants on
        // revocations it can no longer confirm, instead of issuing from a stale view.
        issuer
            .store()
            .bound_revocation_staleness(revocation_staleness(settings.change_poll_interval));
    }
    tasks.push(tokio::spawn(watch_authorization_state(
        issuer.store().clone(),
        authorization_server.clone(),
        settings.change_poll_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(
        aims_audit::Checkpointer::new(
            issuer.store().clone(),
            log_signer,
            audit_log_origin(&settings.trust_domain),
        )
        .run(CHECKPOINT_INTERVAL, shutdown.clone()),
    ));
    // The agent API: the server presents its own SVID; clients may connect without one only to
    // attest (AIMS PR-4), and every other call checks the agent's SVID and node record.
    let changes = Arc::new(ChangeFeed::new());
    // Issue 18: the agents' sync streams read this replica's registration state from memory,
    // which follows the store's change log on every change the feed announces.
    let registrations = Registrations::load(&issuer).await?;
    tasks.push(tokio::spawn(registrations.clone().follow(
        issuer.clone(),
        changes.clone(),
        shutdown.clone(),
    )));
    let server_svid = Arc::new(ServerSvid::new(&settings.trust_domain)?);
    server_svid.refresh(&issuer, settings.clock.now()).await?;
    let agent_tls = aims_authn::mtls::server_config_with(
        server_svid.store(),
        issuer.bundles(),
        Authorizer::MemberOf(settings.trust_domain.clone()),
        ClientAuth::Optional,
    )
    .map_err(|e| ServerError::Tls(e.to_string()))?;
    let x509pop = settings
        .x509pop_ca_file
        .as_ref()
        .map(|p| {
            X509PopVerifier::from_pem(settings.trust_domain.clone(), &read(p, "x509pop CA")?)
                .map_err(|e| ServerError::Config(format!("x509pop CA {}: {e}", p.display())))
        })
        .transpose()?;
    tasks.push(tokio::spawn(serve_tls(
        agent_listener,
        Arc::new(agent_tls),
        // The same listener serves the https_spiffe bundle endpoint (SPIFFE Federation §5.2.2):
        // GET /bundle, authenticated by the server's SVID, no client certificate needed.
        AgentApi::new(
            issuer.clone(),
            registrations.clone(),
            x509pop,
            shutdown.clone(),
        )
        .into_router()
        .merge(bundle_endpoint::router(issuer.clone())),
        shutdown.clone(),
    )));
    tasks.extend(
        aims_provisioning::issuance::federation::start(
            &settings.federation,
            &issuer,
            &changes,
            &shutdown,
        )
        .await?,
    );
    tasks.push(tokio::spawn(changes.clone().watch_store(
        issuer.clone(),
        settings.change_poll_interval,
        shutdown.clone(),
    )));
    let admin_socket = settings.admin_socket_path();
    tasks.push(
        admin::serve(
            &admin_socket,
            Arc::new(AdminState {
                issuer: issuer.clone(),
                server_id: server_id.clone(),
                changes: changes.clone(),
                authorization_server: authorization_server.clone(),
                policy: policy.clone(),
                log: log_view.clone(),
                remediation: remediation.clone(),
                people: people.clone(),
            }),
            shutdown.clone(),
        )
        .await?,
    );
    let colocated: Colocated = Arc::default();
    tasks.push(spawn_maintenance(
        &settings,
        issuer.clone(),
        server_svid,
        colocated.clone(),
        shutdown.clone(),
    ));
    let bundle_url = format!("{}{}", urls.issuer, bundle_endpoint::BUNDLE_PATH);
    tracing::info!(
        trust_domain = %settings.trust_domain,
        server_id = %server_id,
        https = %https_addr,
        agent_api = %agent_addr,
        oauth_mtls = %oauth_mtls_addr,
        admin_socket = %admin_socket.display(),
        store = %aims_store::redact_url(&settings.database_url()),
        "AIMS server started"
    );
    stop_on_error.disarm();
    Ok(RunningServer {
        https_addr,
        agent_addr,
        oauth_mtls_addr,
        authorization_server,
        policy,
        audit,
        signals,
        bundle_url,
        admin_socket,
        web_ca_file,
        web_tls,
        server_id,
        issuer,
        changes,
        shutdown,
        tasks,
        audit_writer,
        colocated,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Issue 18: a configured issuer is an https URL without query, fragment or user (RFC 8414
    /// §2), kept without a trailing slash so clients comparing it as a string agree.
    #[test]
    fn public_urls_are_checked_and_normalised() {
        assert_eq!(
            public_url("https://aims.example.org/", "public_url").unwrap(),
            "https://aims.example.org"
        );
        assert_eq!(
            public_url("https://aims.example.org:9443/tenant/", "public_url").unwrap(),
            "https://aims.example.org:9443/tenant"
        );
        for bad in [
            "http://aims.example.org",
            "https://aims.example.org/?x=1",
            "https://aims.example.org/#f",
            "https://user@aims.example.org",
            "aims.example.org",
            "",
        ] {
            let e = public_url(bad, "public_url").unwrap_err().to_string();
            assert!(e.contains("public_url"), "{bad}: {e}");
        }
        let mut s = ServerSettings::new(
            aims_core::TrustDomain::new("example.org").unwrap(),
            PathBuf::from("/nonexistent"),
        );
        s.public_url = Some("https://lb.example.org:8443".into());
        s.public_mtls_url = Some("https://[::1]:8444".into());
        let urls = PublicUrls::new(
            &s,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        )
        .unwrap();
        assert_eq!(urls.issuer, "https://lb.example.org:8443");
        assert_eq!(urls.mtls_base, "https://[::1]:8444");
        assert_eq!(public_url_hosts(&s), ["lb.example.org", "::1"]);
        // Unset: the listeners' own URLs.
        s.public_url = None;
        let urls = PublicUrls::new(
            &s,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        )
        .unwrap();
        assert_eq!(urls.issuer, "https://127.0.0.1:1");
    }
}
