//! What the server's integration tests share: a server on 127.0.0.1 with a manual clock, and
//! clients holding X509-SVIDs of its trust domain.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use aims_authn::mtls::SvidStore;
use aims_core::{ManualClock, SharedClock, SpiffeId, TrustDomain};
use aims_credentials::{KeyType, PrivateKey, SubjectKey};
use aims_server::{RunningServer, ServerSettings};

pub struct As {
    pub _dir: tempfile::TempDir,
    pub server: RunningServer,
    pub http: reqwest::Client,
    pub issuer: String,
    pub clock: Arc<ManualClock>,
}

pub async fn start_as(td: &str, tweak: impl FnOnce(&mut ServerSettings)) -> As {
    start_as_in(tempfile::tempdir().unwrap(), td, tweak).await
}

/// A server whose data directory is `dir/data`.
pub async fn start_as_in(
    dir: tempfile::TempDir,
    td: &str,
    tweak: impl FnOnce(&mut ServerSettings),
) -> As {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let clock = ManualClock::starting_now();
    let mut s = ServerSettings::new(TrustDomain::new(td).unwrap(), dir.path().join("data"));
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.agent_listen = "127.0.0.1:0".parse().unwrap();
    s.oauth_mtls_listen = "127.0.0.1:0".parse().unwrap();
    s.clock = clock.clone() as SharedClock;
    tweak(&mut s);
    let server = aims_server::start(s).await.unwrap();
    let ca = std::fs::read(server.web_ca_file.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    As {
        issuer: server.authorization_server.settings.issuer.clone(),
        _dir: dir,
        server,
        http,
        clock,
    }
}

impl As {
    /// The mutual-TLS listener's base URL.
    pub fn mtls_base(&self) -> String {
        self.server
            .authorization_server
            .settings
            .mtls_base
            .clone()
            .unwrap()
    }

    /// An HTTPS client that checks the server with Web PKI (spiffe-client-auth-02 §3.2) and
    /// presents a fresh X509-SVID for `agent`; and the SVID's leaf.
    pub async fn mtls_client(&self, agent: &SpiffeId) -> (reqwest::Client, Vec<u8>) {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let svid = self
            .server
            .issuer
            .issue_x509(agent, &SubjectKey::of(&key), &[], None)
            .await
            .unwrap();
        let leaf = svid.chain[0].to_vec();
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(self.server.web_ca_file.as_ref().unwrap()).unwrap();
        for c in
            aims_credentials::bundle::certs_from_pem(std::str::from_utf8(&ca).unwrap()).unwrap()
        {
            roots.add(c).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SvidStore::with(svid.chain, &key).unwrap()));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        (client, leaf)
    }
}

/// An HTTPS site of the test's own on 127.0.0.1 (a client's web site, a receiver of
/// notifications) with a CA of its own, written to `dir`: its base URL, the CA file, and a
/// guard that stops it. `app` is built knowing the base URL.
pub async fn https_site(
    dir: &std::path::Path,
    app: impl FnOnce(&str) -> axum::Router,
) -> (String, std::path::PathBuf, tokio_util::sync::DropGuard) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = dir.join(format!("site-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(aims_authn::transport::serve_tls(
        listener,
        Arc::new(tls),
        app(&base),
        stop.clone(),
    ));
    (base, ca_file, stop.drop_guard())
}
