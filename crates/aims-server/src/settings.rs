//! The server's typed settings, filled by the binary from the config file and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aims_core::{SharedClock, SystemClock, TrustDomain};
use aims_credentials::AuthorityPolicy;

/// Files of an upstream CA (SPIRE's `UpstreamAuthority "disk"`).
#[derive(Debug, Clone)]
pub struct UpstreamFiles {
    /// The upstream CA certificate, optionally followed by its chain.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The roots to publish; default: the last certificate of `cert_file`.
    pub bundle_file: Option<PathBuf>,
}

/// A TLS certificate and key for the HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Private key, PEM.
    pub key_file: PathBuf,
}

/// Everything `aims server` needs to run.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The trust domain served.
    pub trust_domain: TrustDomain,
    /// Data directory: store, keys, sockets, TLS material.
    pub data_dir: PathBuf,
    /// Store URL; default `sqlite://<data_dir>/aims.db`.
    pub database_url: Option<String>,
    /// HTTPS listen address (bundle endpoint; later the OAuth AS and console).
    pub listen: SocketAddr,
    /// Agent API listen address (gRPC over mutual TLS; SPIRE's 8081).
    pub agent_listen: SocketAddr,
    /// CA certificates (PEM) of node certificates accepted for x509pop node attestation; x509pop
    /// is off without it.
    pub x509pop_ca_file: Option<PathBuf>,
    /// The OAuth mutual-TLS listener (RFC 8705 endpoint aliases: Web PKI server certificate,
    /// X509-SVID client certificates).
    pub oauth_mtls_listen: SocketAddr,
    /// The authorization server (`issuer`, `mtls_base` and `trust_domain` are filled in from
    /// the listeners at start).
    pub oauth: aims_oauth::AsSettings,
    /// Users' sign-in (`public_url` is filled in with the issuer at start). Passkeys need the
    /// public host to be a name (`localhost` for a local stack), not an IP address.
    pub people: aims_people::PeopleSettings,
    /// Foreign trust domains whose bundles this server fetches and hands to agents.
    pub federation: Vec<aims_provisioning::issuance::federation::Federation>,
    /// Transmitters whose Shared Signals this server receives and acts on (RFC 8935 push to
    /// `/ssf/v1/receive`).
    pub signal_sources: Vec<aims_signals::intake::SignalSource>,
    /// The workloads that may append to the audit log: SPIFFE IDs, each also naming the IDs
    /// under its path (enforcement points) [default: `/aims/gateway` and `/gateway/…` of the
    /// trust domain].
    pub audit_writers: Vec<aims_core::SpiffeId>,
    /// Whether a token grant waits for its decision record to be durable (`Sync`: no token
    /// without its record, even across a crash) or queues it for the next group commit
    /// (`Async`, the default, as the gateway's: a crash loses the last few milliseconds).
    pub audit: aims_audit::AuditMode,
    /// How often the store's change counters are polled for changes other replicas made.
    pub change_poll_interval: Duration,
    /// Host name used in the URLs the server advertises.
    pub public_host: String,
    /// The URL clients reach the HTTPS listener at, and so the OAuth issuer: a load balancer's
    /// in front of several replicas, which must all name the same one (issue 18) [default:
    /// `https://<public_host>:<HTTPS port>`].
    pub public_url: Option<String>,
    /// The URL clients reach the OAuth mutual-TLS listener at (RFC 8705 endpoint aliases)
    /// [default: `https://<public_host>:<mTLS port>`].
    pub public_mtls_url: Option<String>,
    /// Admin API Unix socket; default `<data_dir>/admin.sock`.
    pub admin_socket: Option<PathBuf>,
    /// This replica's identifier; default: generated once and kept in the data directory.
    pub server_id: Option<String>,
    /// CA lifetime and key type.
    pub ca: AuthorityPolicy,
    /// An upstream CA, if the trust domain chains to one.
    pub upstream: Option<UpstreamFiles>,
    /// Default X509-SVID lifetime (1 h, as SPIRE).
    pub x509_svid_ttl: Duration,
    /// Lifetime of an agent's own X509-SVID (SPIRE's `agent_ttl`); `None`: `x509_svid_ttl`,
    /// as SPIRE.
    pub agent_svid_ttl: Option<Duration>,
    /// Default JWT-SVID lifetime (5 min, as SPIRE).
    pub jwt_svid_ttl: Duration,
    /// Default WIT-SVID lifetime (1 h).
    pub wit_svid_ttl: Duration,
    /// `spiffe_refresh_hint` of the published bundle (5 min, as SPIRE).
    pub bundle_refresh_hint: Duration,
    /// TLS certificate for the HTTPS listener; default: a local CA and certificate for
    /// localhost made in the data directory.
    pub tls: Option<TlsFiles>,
    /// How often the CA rotation schedule and the store are checked.
    pub tick_interval: Duration,
    /// The clock.
    pub clock: SharedClock,
}

impl ServerSettings {
    /// Settings with AIMS's defaults for `trust_domain` and `data_dir`.
    pub fn new(trust_domain: TrustDomain, data_dir: PathBuf) -> Self {
        let audit_writers = ["/aims/gateway", "/gateway"]
            .iter()
            .filter_map(|p| trust_domain.id_with_path(p).ok())
            .collect();
        Self {
            oauth: aims_oauth::AsSettings::new(String::new(), trust_domain.clone()),
            people: aims_people::PeopleSettings::new(String::new()),
            trust_domain,
            data_dir,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            agent_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            oauth_mtls_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            x509pop_ca_file: None,
            federation: Vec::new(),
            signal_sources: Vec::new(),
            audit_writers,
            audit: aims_audit::AuditMode::default(),
            change_poll_interval: Duration::from_millis(200),
            public_host: "127.0.0.1".into(),
            public_url: None,
            public_mtls_url: None,
            admin_socket: None,
            server_id: None,
            ca: AuthorityPolicy::default(),
            upstream: None,
            x509_svid_ttl: Duration::from_secs(3600),
            agent_svid_ttl: None,
            jwt_svid_ttl: Duration::from_secs(300),
            wit_svid_ttl: Duration::from_secs(3600),
            bundle_refresh_hint: Duration::from_secs(300),
            tls: None,
            tick_interval: Duration::from_secs(5),
            clock: SystemClock::shared(),
        }
    }

    /// The admin socket path.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// The store URL.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("aims.db").display()
            )
        })
    }
}
