//! Federation end to end (SPIFFE Federation §4–§6): the server fetches foreign bundles over
//! both endpoint profiles, follows their rotations at the pace of `spiffe_refresh_hint`, refuses
//! endpoints it cannot authenticate, and workloads receive the bundles as federated bundles
//! through the Rust `spiffe` crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aims_core::TrustDomain;
use aims_provisioning::issuance::federation::{EndpointProfile, Federation};
use common::{Options, Stack, eventually, server_settings};
use spiffe::WorkloadApiClient;

/// A foreign AIMS server for `td`, its bundle refreshed every second and its CA short-lived so
/// its bundle changes during the test.
async fn foreign(td: &str, dir: &std::path::Path) -> aims_server::RunningServer {
    let mut s = server_settings(dir, &Options::default());
    s.trust_domain = TrustDomain::new(td).unwrap();
    s.data_dir = dir.join(td);
    s.bundle_refresh_hint = Duration::from_secs(1);
    s.ca.ca_ttl = Duration::from_secs(8);
    s.x509_svid_ttl = Duration::from_secs(2);
    s.tick_interval = Duration::from_millis(200);
    aims_server::start(s).await.unwrap()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_bundles_reach_workloads_over_both_profiles_and_follow_rotation() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let web = foreign("other.org", dir.path()).await;
    let spiffe_ep = foreign("third.org", dir.path()).await;
    let third_bootstrap = dir.path().join("third.pem");
    std::fs::write(
        &third_bootstrap,
        spiffe_ep.issuer.published().bundle.to_pem(),
    )
    .unwrap();
    let https_spiffe_url = format!("https://{}/bundle", spiffe_ep.agent_addr);

    let federation = vec![
        Federation {
            trust_domain: td("other.org"),
            url: web.bundle_url.clone(),
            profile: EndpointProfile::HttpsWeb {
                ca_file: web.web_ca_file.clone(),
            },
        },
        Federation {
            trust_domain: td("third.org"),
            url: https_spiffe_url.clone(),
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: common::id("spiffe://third.org/aims/server"),
                bootstrap_bundle: Some(third_bootstrap.clone()),
            },
        },
        // Refused: the endpoint presents spiffe://third.org/aims/server, not this ID.
        Federation {
            trust_domain: td("fourth.org"),
            url: https_spiffe_url,
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: common::id("spiffe://fourth.org/aims/server"),
                bootstrap_bundle: Some(third_bootstrap),
            },
        },
        // Refused: Web PKI without the endpoint's CA.
        Federation {
            trust_domain: td("fifth.org"),
            url: web.bundle_url.clone(),
            profile: EndpointProfile::HttpsWeb { ca_file: None },
        },
    ];
    let stack = Stack::start(Options {
        federation,
        ..Options::default()
    })
    .await;
    stack
        .register_self("spiffe://example.org/agent/federated")
        .await;
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();

    // The workload's X.509 context carries both foreign bundles, with the keys their servers
    // publish now.
    let context = eventually(Duration::from_secs(20), || async {
        let c = client.fetch_x509_context().await.ok()?;
        let set = c.bundle_set();
        (set.get(&spiffe::TrustDomain::new("other.org").unwrap())
            .is_some()
            && set
                .get(&spiffe::TrustDomain::new("third.org").unwrap())
                .is_some())
        .then_some(c)
    })
    .await;
    assert!(
        context
            .bundle_set()
            .get(&spiffe::TrustDomain::new("example.org").unwrap())
            .is_some()
    );
    let jwt = client.fetch_jwt_bundles().await.unwrap();
    assert!(
        jwt.get(&spiffe::TrustDomain::new("other.org").unwrap())
            .is_some()
    );

    // The foreign CA rotates (a new authority is prepared at half its 8 s life): the new key
    // reaches the workload, polled at the 1 s refresh hint.
    let rotated = web.issuer.published().bundle.sequence();
    eventually(Duration::from_secs(20), || async {
        let now = web.issuer.published();
        if now.bundle.sequence() == rotated {
            return None;
        }
        let c = client.fetch_x509_context().await.ok()?;
        let held = c
            .bundle_set()
            .get(&spiffe::TrustDomain::new("other.org").unwrap())?;
        let held: Vec<Vec<u8>> = held
            .authorities()
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let published: Vec<Vec<u8>> = now
            .bundle
            .x509_authorities()
            .iter()
            .map(|a| a.to_vec())
            .collect();
        (published.iter().all(|p| held.contains(p))).then_some(())
    })
    .await;

    // The endpoints that could not be authenticated gave nothing.
    let stored = stack.admin.federated_bundles().await.unwrap();
    let names: Vec<&str> = stored.iter().map(|r| r.trust_domain.as_str()).collect();
    assert_eq!(names, vec!["other.org", "third.org"]);
    stack.stop().await;
    web.stop().await;
    spiffe_ep.stop().await;
}

/// A scripted HTTPS bundle endpoint: answers each GET with the next document of `docs` (the
/// last one repeats).
async fn scripted_endpoint(
    docs: Vec<String>,
    dir: &std::path::Path,
) -> (
    String,
    std::path::PathBuf,
    tokio_util::sync::CancellationToken,
) {
    use std::sync::{Arc, Mutex};
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
    let ca_file = dir.join("scripted-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let docs = Arc::new(Mutex::new(docs));
    let app = axum::Router::new().route(
        "/bundle",
        axum::routing::get(move || {
            let docs = docs.clone();
            async move {
                let mut d = docs.lock().unwrap();
                if d.len() > 1 {
                    d.remove(0)
                } else {
                    d[0].clone()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/bundle", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(aims_authn::transport::serve_tls(
        listener,
        std::sync::Arc::new(tls),
        app,
        stop.clone(),
    ));
    (url, ca_file, stop)
}

fn bundle_doc(sequence: u64) -> (String, Vec<u8>) {
    let ca = aims_credentials::CaManager::new(
        td("partner.org"),
        aims_credentials::AuthorityPolicy::default(),
        std::sync::Arc::new(aims_credentials::MemoryKeyManager::new()),
        None,
    );
    ca.tick(std::time::SystemTime::now()).unwrap();
    let root = ca.active().unwrap().x509.roots()[0].clone();
    let mut b = aims_credentials::TrustBundle::new(td("partner.org"));
    b.add_x509_authority(root.clone()).unwrap();
    b.set_sequence(sequence);
    b.set_refresh_hint(Some(1));
    (b.to_jwks().unwrap(), root.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_malformed_foreign_bundle_is_refused() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let (five, root5) = bundle_doc(5);
    let (three, _) = bundle_doc(3);
    let (six, root6) = bundle_doc(6);
    // Sequence 5, then a rollback to 3, then junk, then a too-large body, then 6.
    let (url, ca_file, stop) = scripted_endpoint(
        vec![
            five,
            three,
            "{\"keys\": [{\"kty\": \"EC\", \"use\": \"x509-svid\"}]}".into(),
            format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20)),
            six,
        ],
        dir.path(),
    )
    .await;
    let stack = Stack::start(Options {
        federation: vec![Federation {
            trust_domain: td("partner.org"),
            url,
            profile: EndpointProfile::HttpsWeb {
                ca_file: Some(ca_file),
            },
        }],
        ..Options::default()
    })
    .await;
    let held = || async {
        let rows = stack.admin.federated_bundles().await.unwrap();
        rows.into_iter().find(|r| r.trust_domain == "partner.org")
    };
    let first = eventually(Duration::from_secs(10), || async { held().await }).await;
    assert_eq!(first.sequence, 5);
    let b = aims_credentials::TrustBundle::from_jwks(td("partner.org"), first.document.as_bytes())
        .unwrap();
    assert_eq!(b.x509_authorities()[0].to_vec(), root5);
    // Only sequence 6 replaces it; 3, the junk and the oversized body never did.
    let last = eventually(Duration::from_secs(30), || async {
        let r = held().await?;
        assert!(
            r.sequence == 5 || r.sequence == 6,
            "took sequence {}",
            r.sequence
        );
        (r.sequence == 6).then_some(r)
    })
    .await;
    let b = aims_credentials::TrustBundle::from_jwks(td("partner.org"), last.document.as_bytes())
        .unwrap();
    assert_eq!(b.x509_authorities()[0].to_vec(), root6);
    stop.cancel();
    stack.stop().await;
}
