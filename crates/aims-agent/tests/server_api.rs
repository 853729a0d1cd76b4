//! The server's agent API under misuse: every call but `Attest` needs an attested agent's
//! SVID, an agent gets only its own entries, bad CSRs and keys are refused with the right gRPC
//! codes, join tokens and x509pop proofs work once (AIMS PR-4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_agent::connection::{AgentClient, ServerAddresses, connect};
use aims_authn::mtls::{Authorizer, SvidStore};
use aims_credentials::ca::svid_csr;
use aims_credentials::{BundleSet, KeyType, PrivateKey, TrustBundle};
use aims_provisioning::node::create_x509pop_proof;
use aims_provisioning::proto::{
    AttestRequest, RenewAgentRequest, SignJwtSvidRequest, SignWitSvidRequest, SignX509SvidsRequest,
    SyncRequest, X509PopProof, X509SvidCsr, attest_request,
};
use common::{AGENT, Options, Stack, id, td};
use rustls_pki_types::CertificateDer;
use tonic::Code;

fn bundles(stack: &Stack) -> Arc<BundleSet> {
    let doc = stack.server().issuer.published().document.clone();
    Arc::new(BundleSet::with([TrustBundle::from_jwks(
        td(),
        doc.as_bytes(),
    )
    .unwrap()]))
}

fn client(stack: &Stack, svid: Arc<SvidStore>) -> AgentClient {
    connect(
        Arc::new(ServerAddresses::parse(&stack.server().agent_addr.to_string()).unwrap()),
        svid,
        bundles(stack),
        Authorizer::Exact(id("spiffe://example.org/aims/server")),
    )
    .unwrap()
}

fn csr(key: &PrivateKey, spiffe_id: Option<&str>) -> Vec<u8> {
    svid_csr(key, spiffe_id.map(id).as_ref(), &[]).unwrap()
}

async fn token(stack: &Stack, agent: &str) -> String {
    aims_provisioning::issuance::agent_api::create_join_token(
        &stack.server().issuer,
        Some(id(agent)),
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .0
}

/// Attests a new agent with a join token and returns a client presenting its SVID.
async fn attested(stack: &Stack, agent: &str) -> AgentClient {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut anonymous = client(stack, Arc::new(SvidStore::new()));
    let resp = anonymous
        .attest(AttestRequest {
            csr: csr(&key, None),
            method: Some(attest_request::Method::JoinToken(token(stack, agent).await)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.spiffe_id, agent);
    let chain: Vec<CertificateDer<'static>> =
        resp.chain.into_iter().map(CertificateDer::from).collect();
    client(stack, Arc::new(SvidStore::with(chain, &key).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_an_attested_agent_and_attestation_refuses_bad_input() {
    let stack = Stack::start(Options::default()).await;
    let mut anonymous = client(&stack, Arc::new(SvidStore::new()));
    // Without an SVID only Attest may be called.
    let err = anonymous.sync(SyncRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = anonymous
        .sign_jwt_svid(SignJwtSvidRequest {
            entry_id: "x".into(),
            audience: vec!["a".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A workload SVID of our own trust domain passes TLS but is not an agent.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let svid = stack
        .server()
        .issuer
        .issue_x509(
            &id("spiffe://example.org/workload/not-an-agent"),
            &aims_credentials::SubjectKey::of(&key),
            &[],
            aims_provisioning::issuance::issuer::X509Lifetime::Workload(None),
        )
        .await
        .unwrap();
    let mut workload = client(&stack, Arc::new(SvidStore::with(svid.chain, &key).unwrap()));
    let err = workload.sync(SyncRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Attest: a bad CSR is refused before the token is spent, so the token still works.
    let t = token(&stack, "spiffe://example.org/aims/agent/careful").await;
    let err = anonymous
        .attest(AttestRequest {
            csr: b"not a CSR".to_vec(),
            method: Some(attest_request::Method::JoinToken(t.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A CSR naming another identity is refused too.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let err = anonymous
        .attest(AttestRequest {
            csr: csr(&key, Some("spiffe://example.org/aims/server")),
            method: Some(attest_request::Method::JoinToken(t.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let ok = anonymous
        .attest(AttestRequest {
            csr: csr(&key, None),
            method: Some(attest_request::Method::JoinToken(t.clone())),
        })
        .await
        .unwrap();
    assert_eq!(
        ok.get_ref().spiffe_id,
        "spiffe://example.org/aims/agent/careful"
    );
    // …once.
    let err = anonymous
        .attest(AttestRequest {
            csr: csr(&key, None),
            method: Some(attest_request::Method::JoinToken(t)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "invalid join token");
    // Unknown token, no method, x509pop not enabled.
    for (method, code) in [
        (
            Some(attest_request::Method::JoinToken("made-up".into())),
            Code::PermissionDenied,
        ),
        (None, Code::InvalidArgument),
        (
            Some(attest_request::Method::X509pop(X509PopProof::default())),
            Code::FailedPrecondition,
        ),
    ] {
        let err = anonymous
            .attest(AttestRequest {
                csr: csr(&key, None),
                method,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gets_only_its_own_entries_and_only_for_their_ids() {
    let stack = Stack::start(Options::default()).await;
    let mine = stack.register_self("spiffe://example.org/agent/mine").await;
    let mut other = attested(&stack, "spiffe://example.org/aims/agent/other-node").await;

    // The other agent's sync carries none of the test agent's entries.
    let state = other
        .sync(SyncRequest::default())
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(state.entries.is_empty());
    assert!(!state.bundle.is_empty());
    // Nor may it sign for them: not found, as for an entry that does not exist.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let resp = other
        .sign_x509_svids(SignX509SvidsRequest {
            csrs: vec![X509SvidCsr {
                entry_id: mine.id.clone(),
                csr: csr(&key, Some("spiffe://example.org/agent/mine")),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.svids[0].chain.is_empty());
    assert!(
        resp.svids[0].error.contains("not found"),
        "{:?}",
        resp.svids[0]
    );
    let err = other
        .sign_jwt_svid(SignJwtSvidRequest {
            entry_id: mine.id.clone(),
            audience: vec!["a".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // The owning agent: a CSR for another ID than the entry's is refused per entry.
    let mut owner = attested(&stack, "spiffe://example.org/aims/agent/owner").await;
    let entry = stack
        .register(
            "spiffe://example.org/agent/owned",
            &["unix:uid:4242".to_owned()],
        )
        .await;
    stack
        .admin
        .update_entry(
            &entry.id,
            &aims_store::EntryUpdate {
                parent_id: Some(id("spiffe://example.org/aims/agent/owner")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let resp = owner
        .sign_x509_svids(SignX509SvidsRequest {
            csrs: vec![
                X509SvidCsr {
                    entry_id: entry.id.clone(),
                    csr: csr(&key, Some("spiffe://example.org/agent/mine")),
                },
                X509SvidCsr {
                    entry_id: entry.id.clone(),
                    csr: csr(&key, Some("spiffe://example.org/agent/owned")),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.svids[0].error.contains("is not"),
        "{:?}",
        resp.svids[0]
    );
    assert_eq!(resp.svids[1].error, "");
    assert_eq!(resp.svids[1].chain.len(), 2);
    // Too many CSRs in one call.
    let many = vec![
        X509SvidCsr {
            entry_id: entry.id.clone(),
            csr: vec![],
        };
        aims_provisioning::issuance::agent_api::MAX_CSRS_PER_CALL + 1
    ];
    let err = owner
        .sign_x509_svids(SignX509SvidsRequest { csrs: many })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // JWT: an audience is required.
    let err = owner
        .sign_jwt_svid(SignJwtSvidRequest {
            entry_id: entry.id.clone(),
            audience: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // WIT: a private key, a symmetric algorithm or no alg cannot be bound.
    let jwk = |k: &PrivateKey| {
        serde_json::to_value(k.public_key().to_jwk(None, None, Some(k.jws_algorithm()))).unwrap()
    };
    let mut private = jwk(&key);
    private["d"] = "AAAA".into();
    let mut hmac = jwk(&key);
    hmac["alg"] = "HS256".into();
    let mut no_alg = jwk(&key);
    no_alg.as_object_mut().unwrap().remove("alg");
    for bad in [private, hmac, no_alg] {
        let err = owner
            .sign_wit_svid(SignWitSvidRequest {
                entry_id: entry.id.clone(),
                public_jwk: bad.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    let ok = owner
        .sign_wit_svid(SignWitSvidRequest {
            entry_id: entry.id.clone(),
            public_jwk: jwk(&key).to_string(),
        })
        .await
        .unwrap();
    assert!(!ok.get_ref().token.is_empty());
    // RenewAgent certifies only the agent's own ID.
    let err = owner
        .renew_agent(RenewAgentRequest {
            csr: csr(&key, Some("spiffe://example.org/aims/agent/someone-else")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let renewed = owner
        .renew_agent(RenewAgentRequest {
            csr: csr(&key, Some("spiffe://example.org/aims/agent/owner")),
        })
        .await
        .unwrap();
    assert_eq!(
        renewed.get_ref().spiffe_id,
        "spiffe://example.org/aims/agent/owner"
    );
    // Banned: every call is refused, the open sync stream ends.
    let mut stream = owner
        .sync(SyncRequest::default())
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stack
        .admin
        .ban_agent(&id("spiffe://example.org/aims/agent/owner"))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap();
    assert_eq!(end.unwrap_err().code(), Code::PermissionDenied);
    let err = owner.sync(SyncRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The test agent is untouched.
    assert_eq!(
        stack.agent.as_ref().unwrap().agent.spiffe_id().unwrap(),
        id(AGENT)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509pop_attests_an_agent_with_its_node_certificate_once_per_proof() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    // A node CA (say, the fleet's provisioning CA) and a node certificate it issued.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "node CA");
    let ca_cert = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(p, ca_key);
    let node_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut np = rcgen::CertificateParams::new(vec![]).unwrap();
    np.distinguished_name
        .push(rcgen::DnType::CommonName, "node-7");
    np.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let node_cert = np.signed_by(&node_key, &issuer).unwrap();
    let ca_file = dir.path().join("node-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let cert_file = dir.path().join("node.pem");
    std::fs::write(&cert_file, node_cert.pem()).unwrap();
    let key_file = dir.path().join("node.key");
    std::fs::write(&key_file, node_key.to_pkcs8_pem().as_bytes()).unwrap();

    let mut settings = common::server_settings(dir.path(), &Options::default());
    settings.x509pop_ca_file = Some(ca_file);
    let server = aims_server::start(settings).await.unwrap();
    let doc = server.issuer.published().document.clone();

    // The real agent attests with x509pop.
    let mut a = aims_agent::AgentSettings::new(
        td(),
        dir.path().join("agent"),
        server.agent_addr.to_string(),
    );
    a.trust_bootstrap = Some(aims_agent::TrustBootstrap::Document(doc.clone()));
    a.attestation = aims_agent::NodeAttestation::X509Pop {
        cert_file,
        key_file,
    };
    let agent = aims_agent::start(a, Duration::from_secs(10)).await.unwrap();
    let agent_id = agent.agent.spiffe_id().unwrap();
    assert!(
        agent_id
            .as_str()
            .starts_with("spiffe://example.org/aims/agent/x509pop/"),
        "{agent_id}"
    );
    let nodes = server.issuer.store().list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(
        nodes[0]
            .selectors
            .iter()
            .any(|s| s.to_string() == "x509pop:subject:cn:node-7")
    );

    // A proof is good once: replaying a captured one is refused.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let csr_der = csr(&key, None);
    let proof = create_x509pop_proof(&node_key, &td(), &csr_der, SystemTime::now()).unwrap();
    let request = || AttestRequest {
        csr: csr_der.clone(),
        method: Some(attest_request::Method::X509pop(X509PopProof {
            chain: vec![node_cert.der().to_vec()],
            proof: proof.clone(),
        })),
    };
    let mut anonymous = connect(
        Arc::new(ServerAddresses::parse(&server.agent_addr.to_string()).unwrap()),
        Arc::new(SvidStore::new()),
        Arc::new(BundleSet::with([TrustBundle::from_jwks(
            td(),
            doc.as_bytes(),
        )
        .unwrap()])),
        Authorizer::Exact(id("spiffe://example.org/aims/server")),
    )
    .unwrap();
    anonymous.attest(request()).await.unwrap();
    let err = anonymous.attest(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("replayed"), "{err:?}");
    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_server_it_cannot_verify() {
    let stack = Stack::start(Options::default()).await;
    // An agent bootstrapped with another trust domain's bundle cannot attest: the server's
    // SVID does not verify, and it says so at start-up.
    let other = aims_credentials::CaManager::new(
        aims_core::TrustDomain::new("example.org").unwrap(),
        aims_credentials::AuthorityPolicy::default(),
        Arc::new(aims_credentials::MemoryKeyManager::new()),
        None,
    );
    other.tick(SystemTime::now()).unwrap();
    let foreign = other.active().unwrap().x509.roots()[0].clone();
    let mut bundle = TrustBundle::new(td());
    bundle.add_x509_authority(foreign).unwrap();
    let mut a = aims_agent::AgentSettings::new(
        td(),
        stack.dir.path().join("mistrusting"),
        stack.server().agent_addr.to_string(),
    );
    a.trust_bootstrap = Some(aims_agent::TrustBootstrap::Document(
        bundle.to_jwks().unwrap(),
    ));
    a.attestation = aims_agent::NodeAttestation::JoinToken(
        token(&stack, "spiffe://example.org/aims/agent/mistrusting").await,
    );
    let err = match aims_agent::start(a, Duration::from_secs(5)).await {
        Ok(_) => panic!("attested to an unverified server"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    stack.stop().await;
}

/// Issue 18, incremental sync: an agent that asks for it gets its complete state once, then
/// only what changed under it (nothing for another agent's change), and on reconnecting with the
/// sequence number it holds, exactly what it missed; a number the server cannot vouch for gets
/// the complete state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_sends_changes_and_resumes_from_a_sequence_number() {
    use aims_provisioning::proto::SyncResponse;
    let stack = Stack::start(Options::default()).await;
    let me = "spiffe://example.org/aims/agent/inc";
    let other = "spiffe://example.org/aims/agent/other";
    let mut agent = attested(&stack, me).await;
    attested(&stack, other).await;
    let create = |name: &str, parent: &str| {
        let entry = aims_store::NewEntry {
            spiffe_id: id(&format!("spiffe://example.org/w/{name}")),
            parent_id: id(parent),
            selectors: vec!["unix:uid:7".parse().unwrap()],
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: vec![],
            admin: false,
            hint: None,
        };
        let admin = stack.admin.clone();
        async move { admin.create_entry(&entry).await.unwrap() }
    };
    let update = |entry: &str, update: aims_store::EntryUpdate| {
        let admin = stack.admin.clone();
        let entry = entry.to_owned();
        async move { admin.update_entry(&entry, &update).await.unwrap() }
    };
    let ids = |m: &SyncResponse| {
        let mut v: Vec<_> = m.entries.iter().map(|e| e.id.clone()).collect();
        v.sort();
        v
    };
    let e1 = create("e1", me).await;
    let e2 = create("e2", me).await;
    let e3 = create("e3", me).await;
    let incremental = |since| SyncRequest {
        incremental: true,
        since,
    };
    let mut stream = agent.sync(incremental(0)).await.unwrap().into_inner();
    let mut first = next(&mut stream).await;
    assert!(!first.delta);
    assert!(!first.bundle.is_empty());
    let mut all = vec![e1.id.clone(), e2.id.clone(), e3.id.clone()];
    all.sort();
    // Entries the replica had not read yet when the stream opened follow as deltas.
    let mut have = ids(&first);
    while have != all {
        first = next(&mut stream).await;
        assert!(first.delta && first.removed.is_empty(), "{first:?}");
        have.extend(ids(&first));
        have.sort();
    }

    // Another agent's entry: nothing on this stream. This agent's new entry: that entry alone.
    create("elsewhere", other).await;
    let e4 = create("e4", me).await;
    let m = next(&mut stream).await;
    assert!(m.delta, "{m:?}");
    assert_eq!(ids(&m), vec![e4.id.clone()]);
    assert!(m.removed.is_empty() && m.bundle.is_empty() && m.federated_bundles.is_empty());
    assert!(m.sequence > first.sequence);
    assert_ne!(m.revision, first.revision);
    // Exactly that: the other agent's change sent nothing before it.

    // Disabled, or moved to another agent: removed.
    update(
        &e1.id,
        aims_store::EntryUpdate {
            disabled: Some(true),
            ..Default::default()
        },
    )
    .await;
    let m = next(&mut stream).await;
    assert_eq!((ids(&m), m.removed.clone()), (vec![], vec![e1.id.clone()]));
    update(
        &e2.id,
        aims_store::EntryUpdate {
            parent_id: Some(id(other)),
            ..Default::default()
        },
    )
    .await;
    let m = next(&mut stream).await;
    assert_eq!(m.removed, vec![e2.id.clone()]);
    let held = m.sequence;
    drop(stream);

    // Missed while disconnected: e3 deleted, e5 created, an entry of the other agent changed.
    stack.admin.delete_entry(&e3.id).await.unwrap();
    let e5 = create("e5", me).await;
    update(
        &e2.id,
        aims_store::EntryUpdate {
            x509_svid_ttl: Some(600),
            ..Default::default()
        },
    )
    .await;
    let mut resumed = agent.sync(incremental(held)).await.unwrap().into_inner();
    // The replica catches up on the log a few milliseconds after each write: what it had not
    // read yet when the stream opened follows as another delta.
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    let mut first = true;
    let m = loop {
        let m = next(&mut resumed).await;
        assert!(m.delta, "{m:?}");
        if first {
            // A resumed stream's first message carries the bundles (the replica may differ).
            assert!(!m.bundle.is_empty());
            first = false;
        }
        changed.extend(ids(&m));
        removed.extend(m.removed.clone());
        if changed.contains(&e5.id) && removed.contains(&e3.id) {
            break m;
        }
    };
    assert_eq!(
        (changed, removed),
        (vec![e5.id.clone()], vec![e3.id.clone()])
    );
    // The revision is that of the complete state, whichever way it was reached.
    let mut now = vec![e4.id.clone(), e5.id.clone()];
    now.sort();
    let full = next(&mut agent.sync(incremental(0)).await.unwrap().into_inner()).await;
    assert_eq!((ids(&full), full.delta), (now.clone(), false));
    assert_eq!(full.revision, m.revision);
    assert!(full.sequence >= m.sequence);
    // A sequence number from the future (another store): the complete state, not a delta.
    let future = next(
        &mut agent
            .sync(incremental(m.sequence + 1_000_000))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!((ids(&future), future.delta), (now.clone(), false));
    // A negative one: the same.
    let negative = next(&mut agent.sync(incremental(-5)).await.unwrap().into_inner()).await;
    assert_eq!((ids(&negative), negative.delta), (now.clone(), false));
    // An agent that does not ask for deltas gets complete states, as before.
    let mut plain = agent
        .sync(SyncRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&next(&mut plain).await), now);
    let e6 = create("e6", me).await;
    let m = next(&mut plain).await;
    assert!(!m.delta);
    now.push(e6.id.clone());
    now.sort();
    assert_eq!(ids(&m), now);
    stack.stop().await;
}

async fn next(
    stream: &mut tonic::Streaming<aims_provisioning::proto::SyncResponse>,
) -> aims_provisioning::proto::SyncResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a sync message")
        .unwrap()
        .unwrap()
}
