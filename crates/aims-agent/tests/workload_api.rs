//! The agent's Workload API as a real third-party SPIFFE client sees it: the Rust `spiffe`
//! crate (crates.io; we did not write it) against a real server and agent (AIMS PR-1, PR-7,
//! PR-9; SPIFFE Workload API §5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aims_credentials::bundle::certs_from_concat_der;
use aims_credentials::x509_svid::SvidUsage;
use aims_credentials::{BundleSet, TrustBundle, WitProfile, verify_wit, verify_x509_svid};
use aims_workload_api::client::WorkloadApiClient as OurClient;
use common::{Options, Stack, eventually, id, td};
use futures::StreamExt as _;
use spiffe::{JwtSvid, WorkloadApiClient, WorkloadApiError, X509Source};

fn leaf_der(svid: &spiffe::X509Svid) -> Vec<u8> {
    svid.leaf().as_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spiffe_crate_fetches_x509_and_jwt_svids_and_validates_them() {
    let stack = Stack::start(Options::default()).await;
    stack
        .register_self("spiffe://example.org/agent/planner")
        .await;
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();

    // AIMS PR-1: the workload's X509-SVID, chained to the bundle it is given.
    let svid = eventually(Duration::from_secs(10), || async {
        client.fetch_x509_svid().await.ok()
    })
    .await;
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/agent/planner"
    );
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let bundle = bundles
        .get(&spiffe::TrustDomain::new("example.org").unwrap())
        .unwrap();
    let mut ours = TrustBundle::new(td());
    for a in bundle.authorities() {
        ours.add_x509_authority(a.as_bytes().to_vec().into())
            .unwrap();
    }
    let chain: Vec<_> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec().into())
        .collect();
    let v = verify_x509_svid(
        &chain,
        &BundleSet::with([ours]),
        SystemTime::now(),
        SvidUsage::Client,
    )
    .unwrap();
    assert_eq!(v.spiffe_id, id("spiffe://example.org/agent/planner"));

    // A JWT-SVID, verified by the crate itself against the JWT bundles we serve.
    let jwt = client
        .fetch_jwt_svid(["https://tool.example"], None)
        .await
        .unwrap();
    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let parsed =
        JwtSvid::parse_and_validate(jwt.token(), &jwt_bundles, &["https://tool.example"]).unwrap();
    assert_eq!(
        parsed.spiffe_id().to_string(),
        "spiffe://example.org/agent/planner"
    );
    assert!(
        JwtSvid::parse_and_validate(jwt.token(), &jwt_bundles, &["https://other.example"]).is_err(),
        "wrong audience"
    );
    // ValidateJWTSVID on the agent: good token, wrong audience, tampered signature.
    let validated = client
        .validate_jwt_token("https://tool.example", jwt.token())
        .await
        .unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://example.org/agent/planner"
    );
    assert!(
        client
            .validate_jwt_token("https://other.example", jwt.token())
            .await
            .is_err()
    );
    let mut tampered = jwt.token().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        client
            .validate_jwt_token("https://tool.example", &tampered)
            .await
            .is_err()
    );

    // AIMS PR-7: JWT-SVIDs are cached per audience until half life.
    let again = client
        .fetch_jwt_svid(["https://tool.example"], None)
        .await
        .unwrap();
    assert_eq!(again.token(), jwt.token());
    let other = client
        .fetch_jwt_svid(["https://other.example"], None)
        .await
        .unwrap();
    assert_ne!(other.token(), jwt.token());
    // Asking for an identity the caller does not have.
    let err = client
        .fetch_jwt_svid(
            ["https://tool.example"],
            Some(&spiffe::SpiffeId::new("spiffe://example.org/agent/other").unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_matching_no_entry_is_denied_and_the_security_header_is_required() {
    let stack = Stack::start(Options::default()).await;
    // An entry exists, but for another uid (AIMS PR-2: no match, no identity, no detail).
    stack
        .register(
            "spiffe://example.org/agent/someone-else",
            &["unix:uid:54321".into()],
        )
        .await;
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();
    let err = client.fetch_x509_svid().await.unwrap_err();
    assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err:?}");
    let err = client.fetch_jwt_svid(["aud"], None).await.unwrap_err();
    assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err:?}");
    // Bundles need no identity.
    assert!(!client.fetch_x509_bundles().await.unwrap().is_empty());

    // Without `workload.spiffe.io: true`: InvalidArgument (SPIFFE Workload Endpoint §4).
    let mut channel = OurClient::connect_path(&stack.socket).unwrap();
    let mut raw = channel.raw().clone();
    let status = raw
        .fetch_x509svid(aims_workload_api::proto::X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reaches_open_streams_and_the_x509_source_stays_valid() {
    // SVIDs live 4 s: renewed at 2 s (half life), with a fresh key each time (AIMS PR-9).
    let stack = Stack::start(Options {
        x509_svid_ttl: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    stack
        .register_self("spiffe://example.org/agent/rotating")
        .await;
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let source = X509Source::builder()
        .endpoint(stack.endpoint())
        .build()
        .await
        .unwrap();
    let mut updates = source.updated();

    // The open stream receives the renewed SVID: same ID, new certificate, new key.
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no rotation pushed on the open stream")
        .unwrap()
        .unwrap();
    assert_eq!(second.spiffe_id(), first.spiffe_id());
    assert_ne!(leaf_der(&second), leaf_der(&first));
    assert_ne!(
        second.private_key().as_ref(),
        first.private_key().as_ref(),
        "a fresh key at every rotation"
    );

    // The X509Source follows rotations and never holds an expired SVID.
    let before = leaf_der(&source.svid().unwrap());
    tokio::time::timeout(Duration::from_secs(10), updates.changed())
        .await
        .expect("the X509Source saw no rotation")
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = HashSet::from([before]);
    while tokio::time::Instant::now() < deadline {
        let svid = source.svid().unwrap();
        let chain: Vec<_> = svid
            .cert_chain()
            .iter()
            .map(|c| c.as_bytes().to_vec().into())
            .collect();
        let bundles = stack.agent_bundles();
        verify_x509_svid(&chain, &bundles, SystemTime::now(), SvidUsage::Client)
            .expect("the X509Source served an SVID that does not verify now");
        seen.insert(leaf_der(&svid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 2, "the source rotated");
    source.shutdown().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_created_and_deleted_reach_an_open_stream() {
    let stack = Stack::start(Options::default()).await;
    let a = stack.register_self("spiffe://example.org/agent/a").await;
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let ids = |ctx: &spiffe::X509Context| -> Vec<String> {
        ctx.svids()
            .iter()
            .map(|s| s.spiffe_id().to_string())
            .collect()
    };
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(ids(&first), vec!["spiffe://example.org/agent/a"]);

    // `aims entry create` → the server's sync push → the agent issues → the open stream.
    let b = stack.register_self("spiffe://example.org/agent/b").await;
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("new entry not pushed")
        .unwrap()
        .unwrap();
    assert_eq!(
        ids(&next),
        vec![
            "spiffe://example.org/agent/a",
            "spiffe://example.org/agent/b"
        ]
    );
    // Deleted: gone from the stream (AIMS PR-6).
    stack.admin.delete_entry(&a.id).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ids(&next), vec!["spiffe://example.org/agent/b"]);
    // The last identity gone: the stream ends with PermissionDenied (SPIFFE Workload API §5.3).
    stack.admin.delete_entry(&b.id).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(end, Err(WorkloadApiError::NoIdentityIssued)),
        "{end:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_reaches_every_bundle_before_the_new_ca_signs() {
    // A 12 s CA: the next one is prepared (and published) at 6 s, activated at 10 s.
    let stack = Stack::start(Options {
        x509_svid_ttl: Duration::from_secs(2),
        ca_ttl: Duration::from_secs(12),
        tick: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    stack
        .register_self("spiffe://example.org/agent/watcher")
        .await;
    let mut client = OurClient::connect_path(&stack.socket).unwrap();
    let mut stream = client.fetch_x509_svid().await.unwrap();
    let mut previous_bundle: Option<BundleSet> = None;
    let mut intermediates = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(16);
    while tokio::time::Instant::now() < deadline {
        let Ok(msg) = tokio::time::timeout(Duration::from_secs(3), stream.message()).await else {
            continue;
        };
        let msg = msg.unwrap().unwrap();
        let svid = &msg.svids[0];
        let chain = certs_from_concat_der(&svid.x509_svid).unwrap();
        let mut bundle = TrustBundle::new(td());
        for root in certs_from_concat_der(&svid.bundle).unwrap() {
            bundle.add_x509_authority(root).unwrap();
        }
        let now = SystemTime::now();
        // The SVID verifies against the bundle this workload already held before it (the
        // new CA was in the bundle before it signed anything), and against its own.
        if let Some(prev) = &previous_bundle {
            verify_x509_svid(&chain, prev, now, SvidUsage::Client)
                .expect("an SVID signed by a CA the workload's previous bundle did not have");
        }
        let current = BundleSet::with([bundle]);
        verify_x509_svid(&chain, &current, now, SvidUsage::Client).unwrap();
        intermediates.insert(chain[1].to_vec());
        previous_bundle = Some(current);
    }
    assert!(
        intermediates.len() >= 2,
        "the CA rotated during the test ({} intermediates seen)",
        intermediates.len()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wit_svids_are_minted_on_demand_with_a_key_for_the_workload() {
    let stack = Stack::start(Options::default()).await;
    stack
        .register_self("spiffe://example.org/agent/prover")
        .await;
    let mut client = OurClient::connect_path(&stack.socket).unwrap();
    let msg = client
        .fetch_wit_svid(None)
        .await
        .unwrap()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.svids.len(), 1);
    let w = &msg.svids[0];
    let bundles = stack.agent_bundles();
    let wit = verify_wit(
        &w.wit_svid,
        &bundles,
        WitProfile::WitSvid,
        aims_core::unix_seconds(SystemTime::now()),
        0,
    )
    .unwrap();
    assert_eq!(wit.subject.to_string(), "spiffe://example.org/agent/prover");
    // The private JWK handed to the workload is the key the WIT binds.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&w.wit_svid_key).unwrap();
    let public = aims_credentials::PublicKey::from_jwk(&jwk).unwrap();
    assert_eq!(public, wit.cnf_key);
    assert!(
        w.wit_svid_key.contains("\"d\""),
        "the workload gets its private key"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_and_workloads_dying_mid_stream() {
    let stack = Stack::start(Options::default()).await;
    stack
        .register_self("spiffe://example.org/agent/crowd")
        .await;
    let probe = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        probe.fetch_x509_svid().await.ok()
    })
    .await;
    // 1,000 workloads, each on its own connection with an open FetchX509SVID stream.
    let mut streams = Vec::with_capacity(1000);
    for chunk in 0..10 {
        let opened = futures::future::join_all((0..100).map(|_| {
            let socket = stack.socket.clone();
            async move {
                let mut c = OurClient::connect_path(&socket).unwrap();
                let mut s = c.fetch_x509_svid().await.expect("open stream");
                let first = s.message().await.unwrap().unwrap();
                assert_eq!(first.svids[0].spiffe_id, "spiffe://example.org/agent/crowd");
                (c, s)
            }
        }))
        .await;
        streams.extend(opened);
        eprintln!("{} streams open", (chunk + 1) * 100);
    }
    // Half of them die abruptly (connection dropped mid-stream).
    let survivors: Vec<_> = streams.split_off(500);
    drop(streams);
    // A change must reach every surviving stream.
    stack
        .register_self("spiffe://example.org/agent/crowd-2")
        .await;
    let updated = futures::future::join_all(survivors.into_iter().map(|(_c, mut s)| async move {
        let msg = tokio::time::timeout(Duration::from_secs(30), s.message())
            .await
            .expect("update not delivered")
            .unwrap()
            .unwrap();
        msg.svids.len()
    }))
    .await;
    assert!(
        updated.iter().all(|n| *n == 2),
        "every survivor got both SVIDs"
    );
    // The agent still serves new callers.
    let client = WorkloadApiClient::connect_to(stack.endpoint())
        .await
        .unwrap();
    assert!(client.fetch_x509_svid().await.is_ok());
    stack.stop().await;
}
