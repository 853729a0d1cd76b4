//! The tower layer and the reqwest signer over real sockets on 127.0.0.1: WPT, HTTP signatures
//! (with signed responses), mTLS with SPIFFE authorization, and SVID rotation without dropping
//! live connections (AIMS AU-2, AU-4…AU-11).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_authn::ReplayCache;
use aims_authn::client::{ProofMode, WimseSigner, WorkloadCredentials};
use aims_authn::httpsig::RequestParts;
use aims_authn::layer::{AudiencePolicy, ResponseSigner, WorkloadAuthConfig, WorkloadAuthLayer};
use aims_authn::mtls::{Authorizer, ClientAuth, SvidStore, client_config, server_config_with};
use aims_authn::transport::serve_tls;
use aims_authn::wimse_sig::{SignaturePolicy, WimseSigVerifier, verify_response_signature};
use aims_authn::wpt::{VerifiedWorkload, WptVerifier};
use aims_core::{SpiffeId, SystemClock, TrustDomain, WorkloadIdentifier};
use aims_credentials::authority::bundle_from_slots;
use aims_credentials::{
    AuthorityPolicy, BundleSet, CaManager, KeyType, MemoryKeyManager, PrivateKey,
};
use axum::routing::post;
use axum::{Extension, Json, Router};
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

struct Domain {
    ca: CaManager,
    bundles: Arc<BundleSet>,
}

fn domain() -> Domain {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = CaManager::new(
        TrustDomain::new("example.org").unwrap(),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now()).unwrap();
    let slot = ca.active().unwrap();
    let bundle = bundle_from_slots(ca.trust_domain(), [slot.record()], SystemTime::now()).unwrap();
    Domain {
        ca,
        bundles: Arc::new(BundleSet::with([bundle])),
    }
}

impl Domain {
    fn creds(&self, id: &str) -> WorkloadCredentials {
        let key = Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap());
        let wit = self
            .ca
            .active()
            .unwrap()
            .wit
            .mint_wit(
                &WorkloadIdentifier::parse(id).unwrap(),
                key.public_key(),
                key.jws_algorithm(),
                Duration::from_secs(600),
                SystemTime::now(),
                None,
            )
            .unwrap()
            .token;
        WorkloadCredentials { wit, key }
    }

    fn svid(&self, id: &str) -> (Vec<CertificateDer<'static>>, PrivateKey) {
        aims_credentials::testing::x509_svid(
            &self.ca.active().unwrap(),
            &SpiffeId::parse(id).unwrap(),
        )
        .unwrap()
    }
}

async fn whoami(
    Extension(w): Extension<VerifiedWorkload>,
    body: String,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({"id": w.id.as_str(), "mechanism": w.mechanism, "body": body}))
}

fn app(d: &Domain, base: &str, server_creds: Option<WorkloadCredentials>) -> Router {
    let replay = Arc::new(ReplayCache::new(100_000, 60));
    let clock = SystemClock::shared();
    let mut config = WorkloadAuthConfig::new(AudiencePolicy::BaseUrl(base.to_owned()));
    config.wpt = Some(WptVerifier::new(
        d.bundles.clone(),
        replay.clone(),
        clock.clone(),
    ));
    config.http_signature = Some(WimseSigVerifier::new(d.bundles.clone(), replay, clock));
    config.mtls = true;
    config.max_body = 64 * 1024;
    config.scheme = if base.starts_with("https") {
        "https"
    } else {
        "http"
    };
    config.response_signer = server_creds.map(|c| ResponseSigner {
        wit: c.wit,
        key: c.key,
    });
    Router::new()
        .route("/api/whoami", post(whoami).get(whoami))
        .layer(WorkloadAuthLayer::new(config))
}

async fn plain_server(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn wpt_and_http_signatures_through_the_layer() {
    let d = domain();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server_creds = d.creds("spiffe://example.org/tool/whoami");
    let router = app(&d, &base, Some(server_creds.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::new();
    let url = format!("{base}/api/whoami?verbose=1");
    let creds = d.creds("spiffe://example.org/agent/a");

    // WPT.
    let wpt = WimseSigner::new(creds.clone(), ProofMode::Wpt);
    let resp = wpt
        .send(&client, client.post(&url).body("hello"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["id"], "spiffe://example.org/agent/a");
    assert_eq!(v["mechanism"], "wpt");
    assert_eq!(v["body"], "hello");

    // HTTP signature over the body, with a signed response the client verifies.
    let sig = WimseSigner::new(
        creds.clone(),
        ProofMode::HttpSignature {
            sign_response: true,
        },
    );
    let mut req = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("signed body")
        .build()
        .unwrap();
    let nonce = sig.sign(&mut req).unwrap().unwrap();
    let (method, uri, req_headers) = (
        req.method().clone(),
        req.url().as_str().parse::<http::Uri>().unwrap(),
        req.headers().clone(),
    );
    let resp = client.execute(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["mechanism"], "http-signature");
    assert_eq!(v["body"], "signed body");
    verify_response_signature(
        status,
        &headers,
        &body,
        RequestParts::from_http(&method, &uri, &req_headers, "http"),
        &nonce,
        server_creds.key.public_key(),
        server_creds.key.jws_algorithm(),
        aims_core::unix_seconds(SystemTime::now()),
        SignaturePolicy {
            skew: 60,
            max_lifetime: 600,
        },
    )
    .unwrap();

    // No credentials: 401 with WWW-Authenticate: WPT and a problem document.
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "WPT");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:aims:authn:missing_credentials");

    // A replayed proof: the same signed request twice.
    let mut req = client.get(&url).build().unwrap();
    wpt.sign(&mut req).unwrap();
    let again = req.try_clone().unwrap();
    assert_eq!(client.execute(req).await.unwrap().status(), 200);
    let resp = client.execute(again).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("replayed"));

    // The proof is bound to its target: sent to another path, it is refused.
    let mut req = client.get(&url).build().unwrap();
    wpt.sign(&mut req).unwrap();
    let other = reqwest::Url::parse(&format!("{base}/api/other")).unwrap();
    *req.url_mut() = other;
    assert_eq!(client.execute(req).await.unwrap().status(), 401);

    // A body tampered after signing.
    let mut req = client.post(&url).body("original").build().unwrap();
    sig.sign(&mut req).unwrap();
    *req.body_mut() = Some("tampered".into());
    let resp = client.execute(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("tampered"));

    // An oversized signed body.
    let big = WimseSigner::new(
        creds,
        ProofMode::HttpSignature {
            sign_response: false,
        },
    );
    let resp = big
        .send(&client, client.post(&url).body(vec![b'x'; 100 * 1024]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn a_server_that_cannot_sign_refuses_instead_of_answering_unsigned() {
    let d = domain();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(&d, &base, None);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::new();
    let signer = WimseSigner::new(
        d.creds("spiffe://example.org/agent/a"),
        ProofMode::HttpSignature {
            sign_response: true,
        },
    );
    let resp = signer
        .send(&client, client.get(format!("{base}/api/whoami")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 501);
    let _ = plain_server;
}

async fn mtls_server(
    d: &Domain,
    svid: Arc<SvidStore>,
    authorizer: Authorizer,
) -> (String, CancellationToken) {
    mtls_server_with(d, svid, authorizer, ClientAuth::Required).await
}

async fn mtls_server_with(
    d: &Domain,
    svid: Arc<SvidStore>,
    authorizer: Authorizer,
    client_auth: ClientAuth,
) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let tls = server_config_with(svid, d.bundles.clone(), authorizer, client_auth).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_tls(
        listener,
        Arc::new(tls),
        app(d, &base, None),
        stop.clone(),
    ));
    (base, stop)
}

fn mtls_client(d: &Domain, svid: Arc<SvidStore>, server: Authorizer) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(svid, d.bundles.clone(), server).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn mtls_authorizes_by_spiffe_id() {
    let d = domain();
    let (chain, key) = d.svid("spiffe://example.org/tool/whoami");
    let server_svid = Arc::new(SvidStore::with(chain, &key).unwrap());
    let allowed = SpiffeId::parse("spiffe://example.org/agent/a").unwrap();
    let (base, stop) = mtls_server(&d, server_svid, Authorizer::OneOf(vec![allowed.clone()])).await;
    let server_id = Authorizer::Exact(SpiffeId::parse("spiffe://example.org/tool/whoami").unwrap());

    let (chain, key) = d.svid(allowed.as_str());
    let client = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        server_id.clone(),
    );
    let resp = client
        .get(format!("{base}/api/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["id"], allowed.as_str());
    assert_eq!(v["mechanism"], "mtls");

    // A peer whose SPIFFE ID is not authorized fails the handshake.
    let (chain, key) = d.svid("spiffe://example.org/agent/intruder");
    let intruder = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        server_id.clone(),
    );
    assert!(
        intruder
            .get(format!("{base}/api/whoami"))
            .send()
            .await
            .is_err()
    );
    // A client that expects another server identity refuses this server.
    let (chain, key) = d.svid(allowed.as_str());
    let picky = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        Authorizer::Exact(SpiffeId::parse("spiffe://example.org/tool/other").unwrap()),
    );
    assert!(
        picky
            .get(format!("{base}/api/whoami"))
            .send()
            .await
            .is_err()
    );
    // A client of another trust domain (its CA is not in the server's bundles).
    let other = domain_named("other.org");
    let (chain, key) = other.svid("spiffe://other.org/agent/a");
    let foreign = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        server_id,
    );
    assert!(
        foreign
            .get(format!("{base}/api/whoami"))
            .send()
            .await
            .is_err()
    );
    stop.cancel();
}

#[tokio::test]
async fn optional_client_auth_admits_anonymous_clients_but_still_verifies_presented_svids() {
    let d = domain();
    let (chain, key) = d.svid("spiffe://example.org/tool/whoami");
    let server_svid = Arc::new(SvidStore::with(chain, &key).unwrap());
    let (base, stop) = mtls_server_with(
        &d,
        server_svid,
        Authorizer::MemberOf(TrustDomain::new("example.org").unwrap()),
        ClientAuth::Optional,
    )
    .await;
    let server_id = Authorizer::Exact(SpiffeId::parse("spiffe://example.org/tool/whoami").unwrap());
    // No certificate: the handshake succeeds and the application answers 401.
    let anonymous = mtls_client(&d, Arc::new(SvidStore::new()), server_id.clone());
    let resp = anonymous
        .get(format!("{base}/api/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // An SVID is still verified and identifies the client.
    let (chain, key) = d.svid("spiffe://example.org/agent/a");
    let client = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        server_id.clone(),
    );
    let resp = client
        .get(format!("{base}/api/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A certificate from another trust domain fails the handshake, optional or not.
    let other = domain_named("other.org");
    let (chain, key) = other.svid("spiffe://other.org/agent/a");
    let foreign = mtls_client(
        &d,
        Arc::new(SvidStore::with(chain, &key).unwrap()),
        server_id,
    );
    assert!(
        foreign
            .get(format!("{base}/api/whoami"))
            .send()
            .await
            .is_err()
    );
    stop.cancel();
}

fn domain_named(name: &str) -> Domain {
    let ca = CaManager::new(
        TrustDomain::new(name).unwrap(),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now()).unwrap();
    let slot = ca.active().unwrap();
    let bundle = bundle_from_slots(ca.trust_domain(), [slot.record()], SystemTime::now()).unwrap();
    Domain {
        ca,
        bundles: Arc::new(BundleSet::with([bundle])),
    }
}

#[tokio::test]
async fn a_rotated_svid_is_used_by_the_next_handshake_while_old_connections_keep_working() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let d = domain();
    let (chain1, key1) = d.svid("spiffe://example.org/tool/whoami");
    let store = Arc::new(SvidStore::with(chain1.clone(), &key1).unwrap());
    let (base, stop) = mtls_server(
        &d,
        store.clone(),
        Authorizer::MemberOf(TrustDomain::new("example.org").unwrap()),
    )
    .await;
    let addr = base.trim_start_matches("https://").to_owned();
    let (cchain, ckey) = d.svid("spiffe://example.org/agent/a");
    let client_cfg = Arc::new(
        client_config(
            Arc::new(SvidStore::with(cchain, &ckey).unwrap()),
            d.bundles.clone(),
            Authorizer::Any,
        )
        .unwrap(),
    );

    let connect = || {
        let cfg = client_cfg.clone();
        let addr = addr.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut cfg = (*cfg).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect("aims.invalid".try_into().unwrap(), tcp)
                .await
                .unwrap()
        }
    };
    async fn get(conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
        conn.write_all(b"GET /api/whoami HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    let mut old = connect().await;
    assert_eq!(old.get_ref().1.peer_certificates().unwrap()[0], chain1[0]);
    assert!(get(&mut old).await.starts_with("HTTP/1.1 200"));

    let (chain2, key2) = d.svid("spiffe://example.org/tool/whoami");
    store.set(chain2.clone(), &key2).unwrap();
    let mut new = connect().await;
    assert_eq!(
        new.get_ref().1.peer_certificates().unwrap()[0],
        chain2[0],
        "the next handshake presents the rotated SVID"
    );
    assert!(get(&mut new).await.starts_with("HTTP/1.1 200"));
    assert!(
        get(&mut old).await.starts_with("HTTP/1.1 200"),
        "the connection made before the rotation still works"
    );
    stop.cancel();
}
