//! What the server's integration tests share: a server on 127.0.0.1 with a manual clock, and
//! clients holding X509-SVIDs of its trust domain.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub use aims_token::wire::JWT_SPIFFE_ASSERTION;
use std::sync::Arc;

use aims_authn::mtls::SvidStore;
use aims_core::{Clock as _, ManualClock, SharedClock, SpiffeId, TrustDomain};
use aims_credentials::{KeyType, PrivateKey, SubjectKey};
use aims_server::{RunningServer, ServerSettings};
use aims_token::claims::{AT_TYP, AccessClaims};
use aims_token::presentation::{SenderProof, verify_access_token};
use serde_json::{Value, json};

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
    // The resources the tests' tokens are for, each served by a tool workload (which may
    // introspect and exchange the tokens it receives).
    s.oauth.resources = ["api", "search"]
        .iter()
        .map(|name| aims_oauth::ResourceServer {
            resource: format!("https://tool.example/{name}"),
            server: Some(format!("spiffe://{td}/tool/{name}")),
            exchange_to: Vec::new(),
        })
        .collect();
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

/// The resource the tests' tokens are for.
pub const RESOURCE: &str = "https://tool.example/api";

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub fn dpop_verifier() -> aims_token::dpop::DpopVerifier {
    aims_token::dpop::DpopVerifier::new(
        Arc::new(aims_authn::replay::ReplayCache::new(1000, 60)),
        false,
        60,
    )
    .unwrap()
}

impl As {
    /// The RFC 8414 metadata document.
    pub async fn metadata(&self) -> Value {
        self.http
            .get(format!(
                "{}/.well-known/oauth-authorization-server",
                self.issuer
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }

    pub async fn jwt_svid(&self, spiffe_id: &str) -> String {
        self.server
            .issuer
            .mint_jwt_svid(&id(spiffe_id), std::slice::from_ref(&self.issuer), None)
            .await
            .unwrap()
            .token
    }

    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.post_with(&self.http, &format!("{}{path}", self.issuer), form, &[])
            .await
    }

    pub async fn post_with(
        &self,
        http: &reqwest::Client,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = http.post(url).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::Null),
            headers,
        )
    }

    /// client_credentials with a JWT-SVID assertion.
    pub async fn cc(&self, agent: &str, scope: &str) -> (u16, Value) {
        let a = self.jwt_svid(agent).await;
        let (s, v, _) = self
            .post(
                "/oauth2/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                    ("client_assertion", &a),
                    ("scope", scope),
                    ("resource", RESOURCE),
                ],
            )
            .await;
        (s, v)
    }

    pub fn verify(&self, token: &str, resource: &str) -> AccessClaims {
        verify_access_token(
            self.server.issuer.as_ref(),
            &self.issuer,
            resource,
            token,
            &SenderProof::default(),
            &dpop_verifier(),
            aims_core::unix_seconds(self.clock.now()),
        )
        .unwrap()
    }

    /// Signs an access token with the server's own key (for states no grant produces).
    pub fn forge(&self, claims: &AccessClaims) -> String {
        aims_oauth::sign_token(self.server.issuer.as_ref(), AT_TYP, claims).unwrap()
    }

    pub fn now(&self) -> i64 {
        aims_core::unix_seconds(self.clock.now())
    }

    /// A person's delegation (as the authorization code grant issues it): alice@example.com
    /// delegates `scope` on [`RESOURCE`] to `client` for ten minutes.
    pub fn delegation(&self, jti: &str, client: &str, scope: &str) -> String {
        let now = self.now();
        self.forge(&AccessClaims {
            iss: self.issuer.clone(),
            sub: "alice@example.com".into(),
            aud: aims_credentials::jose::Audience::One(RESOURCE.into()),
            exp: now + 600,
            iat: now,
            jti: jti.into(),
            client_id: client.into(),
            scope: Some(scope.into()),
            authorization_details: None,
            act: None,
            may_act: None,
            cnf: None,
            approval: None,
        })
    }

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
            .issue_x509(
                agent,
                &SubjectKey::of(&key),
                &[],
                aims_provisioning::issuance::issuer::X509Lifetime::Workload(None),
            )
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
    https_site_on(dir, 0, app).await
}

/// [`https_site`] on `port` of 127.0.0.1.
pub async fn https_site_on(
    dir: &std::path::Path,
    port: u16,
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
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
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

/// A data directory for a second replica joining `first_dir`'s (a `start_as_in` directory)
/// on a shared store: the first replica's audit log key copied in, mode 0600 (issue 18).
pub fn joining_replica_dir(first_dir: &std::path::Path) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    aims_core::files::private_dir(&dir.path().join("data/keys")).unwrap();
    let key = std::path::Path::new("data/keys/audit-log.key.pem");
    std::fs::copy(first_dir.join(key), dir.path().join(key)).unwrap();
    std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// An RFC 9449 DPoP proof for a POST to `url`.
pub fn dpop_proof(
    key: &aims_credentials::PrivateKey,
    url: &str,
    jti: &str,
    iat: i64,
    nonce: Option<&str>,
) -> String {
    let mut h = aims_credentials::jose::JwsHeader::new(key, Some("dpop+jwt"), None);
    h.jwk = Some(key.public_key().jwk());
    let mut c = json!({"jti": jti, "htm": "POST", "htu": url, "iat": iat});
    if let Some(n) = nonce {
        c["nonce"] = n.into();
    }
    aims_credentials::jose::sign(key, &h, &c).unwrap()
}

/// An authorization server of trust domain `td` that federates `home`'s bundle (so `home`'s
/// agents authenticate with their JWT-SVIDs) and trusts `home`'s AS for JWT grants.
pub async fn start_trusting(td: &str, home: &As) -> As {
    let (ca, issuer) = (
        home.server.web_ca_file.clone().unwrap(),
        home.issuer.clone(),
    );
    let bundle = home.server.bundle_url.clone();
    let home_td = home.server.issuer.trust_domain().clone();
    start_as(td, move |s| {
        s.federation
            .push(aims_provisioning::issuance::federation::Federation {
                trust_domain: home_td,
                url: bundle,
                profile: aims_provisioning::issuance::federation::EndpointProfile::HttpsWeb {
                    ca_file: Some(ca.clone()),
                },
            });
        s.oauth.trusted_issuers.push(aims_oauth::TrustedIssuer {
            issuer: issuer.clone(),
            jwks_uri: format!("{issuer}/oauth2/jwks"),
            ca_file: Some(ca),
            subjects: Vec::new(),
        });
    })
    .await
}
