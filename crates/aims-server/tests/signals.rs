//! The Shared Signals transmitter over real HTTPS (SSF 1.0, RFC 8935, RFC 8936; AIMS MO-2…MO-4):
//! metadata, stream management owned by the receiver's SPIFFE ID, poll delivery that catches
//! up and long-polls, pause and verification, and push delivery that retries with backoff
//! while the receiver is down and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aims_signals::stream::{POLL, PUSH};
use aims_signals::{PollReceiver, SecEvent, SubjectId, event, verify_set};
use aims_token::keys::TokenKeys as _;
use common::{As, id, start_as, start_as_in};
use serde_json::{Value, json};

const RECEIVER: &str = "spiffe://example.org/gateway/g1";

impl As {
    fn ssf_url(&self, path: &str) -> String {
        format!("{}/ssf/v1/{path}", self.mtls_base())
    }

    fn check(&self, set: &str, audience: &str) -> SecEvent {
        let keys = |kid: &str| self.server.issuer.verifying_key(kid);
        verify_set(set, &self.issuer, audience, &keys).unwrap()
    }

    async fn revoke_signal(&self, who: &str) -> usize {
        self.server
            .signals
            .emit(
                event::SESSION_REVOKED,
                &SubjectId::for_principal(who),
                json!({"initiating_entity": "admin", "reason_admin": {"en": "test"}}),
                None,
            )
            .await
            .unwrap()
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn metadata_and_streams_owned_by_their_receiver() {
    let a = start_as("example.org", |_| {}).await;
    let meta = send(
        a.http
            .get(format!("{}/.well-known/ssf-configuration", a.issuer)),
    )
    .await
    .1;
    assert_eq!(meta["spec_version"], "1_0");
    assert_eq!(meta["issuer"], a.issuer.as_str());
    assert_eq!(meta["jwks_uri"], format!("{}/oauth2/jwks", a.issuer));
    assert_eq!(meta["delivery_methods_supported"], json!([PUSH, POLL]));
    assert_eq!(meta["configuration_endpoint"], a.ssf_url("stream"));

    let (mine, _) = a.mtls_client(&id(RECEIVER)).await;
    let (other, _) = a.mtls_client(&id("spiffe://example.org/gateway/g2")).await;
    let (status, created) = send(mine.post(a.ssf_url("stream")).json(&json!({
        "events_requested": [event::SESSION_REVOKED, event::ACCOUNT_ENABLED, "https://unknown/event"],
        "description": "test receiver"
    })))
    .await;
    assert_eq!(status, 201, "{created}");
    let stream_id = created["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(created["iss"], a.issuer.as_str());
    assert_eq!(created["aud"], RECEIVER);
    // Delivered: what was asked for and is supported; poll by default, at our endpoint.
    assert_eq!(
        created["events_delivered"],
        json!([event::SESSION_REVOKED, event::ACCOUNT_ENABLED])
    );
    assert_eq!(created["delivery"]["method"], POLL);
    assert_eq!(
        created["delivery"]["endpoint_url"],
        a.ssf_url(&format!("poll/{stream_id}"))
    );

    let by_id = format!("{}?stream_id={stream_id}", a.ssf_url("stream"));
    assert_eq!(send(mine.get(&by_id)).await, (200, created.clone()));
    assert_eq!(
        send(mine.get(a.ssf_url("stream"))).await.1,
        json!([created])
    );
    // Another receiver sees nothing of it; no SVID, no answer; junk is a 400.
    assert_eq!(send(other.get(&by_id)).await.0, 404);
    assert_eq!(send(other.get(a.ssf_url("stream"))).await.1, json!([]));
    assert_eq!(send(other.delete(&by_id)).await.0, 404);
    assert_eq!(send(a.http.get(a.ssf_url("stream"))).await.0, 401);
    assert_eq!(
        send(mine.post(a.ssf_url("stream")).body("{not json"))
            .await
            .0,
        400
    );
    assert_eq!(
        send(
            mine.post(a.ssf_url("stream")).json(
                &json!({"delivery": {"method": PUSH, "endpoint_url": "http://example.com/x"}})
            )
        )
        .await
        .0,
        400,
        "push to plain HTTP off loopback"
    );
    // Issue 16: a receiver names the push endpoint, so it is guarded like every URL others
    // name: no loopback, private or metadata address, no plain HTTP even on loopback.
    for url in [
        "http://127.0.0.1:9/events",
        "http://localhost:9/events",
        "https://127.0.0.1:9/events",
        "https://[::1]:9/events",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/events",
    ] {
        let (s, v) = send(mine.post(a.ssf_url("stream")).json(
            &json!({"delivery": {"method": PUSH, "endpoint_url": url, "authorization_header": "Bearer x"}}),
        ))
        .await;
        assert_eq!(s, 400, "{url}: {v}");
    }

    // PATCH changes what is given; status and verification.
    let (status, patched) = send(mine.patch(a.ssf_url("stream")).json(&json!({
        "stream_id": stream_id, "description": "renamed"
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["description"], "renamed");
    assert_eq!(patched["events_delivered"], created["events_delivered"]);
    let status_url = format!("{}?stream_id={stream_id}", a.ssf_url("status"));
    assert_eq!(send(mine.get(&status_url)).await.1["status"], "enabled");
    let (s, _) = send(
        mine.post(a.ssf_url("verify"))
            .json(&json!({"stream_id": stream_id, "state": "abc"})),
    )
    .await;
    assert_eq!(s, 204);
    let receiver = PollReceiver::connect(
        mine.clone(),
        &a.issuer,
        RECEIVER,
        &[event::SESSION_REVOKED, event::ACCOUNT_ENABLED],
        "renamed",
    )
    .await
    .unwrap();
    assert_eq!(
        receiver.stream_id(),
        stream_id,
        "the receiver reuses its stream"
    );
    let got = receiver
        .poll_once(vec![], BTreeMap::new(), false)
        .await
        .unwrap();
    let sets: Vec<SecEvent> = got.sets.values().map(|s| a.check(s, RECEIVER)).collect();
    assert_eq!(sets.len(), 1);
    assert_eq!(
        sets[0].event().unwrap(),
        (event::VERIFICATION, &json!({"state": "abc"}))
    );
    assert_eq!(
        sets[0].sub_id,
        SubjectId::Opaque {
            id: stream_id.clone()
        }
    );

    assert_eq!(send(mine.delete(&by_id)).await.0, 204);
    assert_eq!(send(mine.get(&by_id)).await.0, 404);
}

#[tokio::test]
async fn a_poll_receiver_catches_up_long_polls_and_a_paused_stream_holds_events() {
    let a = start_as("example.org", |_| {}).await;
    let (client, _) = a.mtls_client(&id(RECEIVER)).await;
    let receiver = PollReceiver::connect(
        client.clone(),
        &a.issuer,
        RECEIVER,
        event::SUPPORTED,
        "poller",
    )
    .await
    .unwrap();
    // Five signals while nobody polls: all wait for the receiver.
    for i in 0..5 {
        assert_eq!(
            a.revoke_signal(&format!("spiffe://example.org/agent/{i}"))
                .await,
            1
        );
    }
    let got = receiver
        .poll_once(vec![], BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(got.sets.len(), 5);
    assert!(!got.more_available);
    let mut subjects: Vec<String> = got
        .sets
        .values()
        .flat_map(|s| a.check(s, RECEIVER).sub_id.principals(&a.issuer))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..5)
            .map(|i| format!("spiffe://example.org/agent/{i}"))
            .collect::<Vec<_>>()
    );
    // Unacknowledged SETs come again; acknowledged ones do not.
    assert_eq!(
        receiver
            .poll_once(vec![], BTreeMap::new(), false)
            .await
            .unwrap()
            .sets
            .len(),
        5
    );
    let acks: Vec<String> = got.sets.keys().cloned().collect();
    assert!(
        receiver
            .poll_once(acks, BTreeMap::new(), false)
            .await
            .unwrap()
            .sets
            .is_empty()
    );

    // A long poll answers the moment a signal is emitted.
    let waiting = tokio::spawn({
        let r = receiver.clone();
        async move {
            let t = Instant::now();
            (r.poll_once(vec![], BTreeMap::new(), true).await.unwrap(), t)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.revoke_signal("spiffe://example.org/agent/late").await;
    let (got, started) = waiting.await.unwrap();
    assert_eq!(got.sets.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let late: Vec<String> = got.sets.keys().cloned().collect();
    receiver
        .poll_once(late, BTreeMap::new(), false)
        .await
        .unwrap();

    // Paused: held (after a stream-updated event); enabled again: delivered.
    let stream_id = receiver.stream_id().to_owned();
    let (s, _) = send(
        client
            .post(a.ssf_url("status"))
            .json(&json!({"stream_id": stream_id, "status": "paused", "reason": "maintenance"})),
    )
    .await;
    assert_eq!(s, 200);
    let updated = receiver
        .poll_once(vec![], BTreeMap::new(), false)
        .await
        .unwrap();
    assert!(updated.sets.is_empty(), "a paused stream delivers nothing");
    a.revoke_signal("spiffe://example.org/agent/held").await;
    assert!(
        receiver
            .poll_once(vec![], BTreeMap::new(), false)
            .await
            .unwrap()
            .sets
            .is_empty()
    );
    send(
        client
            .post(a.ssf_url("status"))
            .json(&json!({"stream_id": stream_id, "status": "enabled"})),
    )
    .await;
    let got = receiver
        .poll_once(vec![], BTreeMap::new(), false)
        .await
        .unwrap();
    let types: Vec<String> = got
        .sets
        .values()
        .map(|s| a.check(s, RECEIVER).event().unwrap().0.to_owned())
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == event::STREAM_UPDATED).count(),
        2,
        "{types:?}"
    );
    assert!(
        types.iter().any(|t| t == event::SESSION_REVOKED),
        "the held event"
    );
    // A SET the receiver refuses is reported and not sent again.
    let errs: BTreeMap<_, _> = got
        .sets
        .keys()
        .map(|j| {
            (
                j.clone(),
                aims_signals::stream::SetErr {
                    err: "invalid_request".into(),
                    description: "test".into(),
                },
            )
        })
        .collect();
    assert!(
        receiver
            .poll_once(vec![], errs, false)
            .await
            .unwrap()
            .sets
            .is_empty()
    );
}

#[tokio::test]
async fn push_retries_with_backoff_while_the_receiver_is_down_and_loses_nothing() {
    // An RFC 8935 receiver that checks every SET and answers 202 once it is up (503 before).
    let dir = tempfile::tempdir().unwrap();
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The transmitter's issuer and keys, once the server is up.
    type Transmitter = Option<(String, Arc<aims_provisioning::issuance::issuer::Issuer>)>;
    let keys_of: Arc<Mutex<Transmitter>> = Arc::default();
    let (seen, is_up, keys) = (received.clone(), up.clone(), keys_of.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (seen, is_up, keys) = (seen.clone(), is_up.clone(), keys.clone());
            async move {
                if !is_up.load(std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                assert_eq!(headers["content-type"], "application/secevent+jwt");
                assert_eq!(headers["authorization"], "Bearer receiver-secret");
                let (issuer, keys_of) = keys.lock().unwrap().clone().unwrap();
                let keys = |kid: &str| keys_of.verifying_key(kid);
                let set = verify_set(&body, &issuer, RECEIVER, &keys).unwrap();
                seen.lock()
                    .unwrap()
                    .push((set.jti.clone(), set.sub_id.principals(&issuer)[0].clone()));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let (site, site_ca, _site) = common::https_site(dir.path(), |_| app).await;
    // Push endpoints are guarded like any URL a client names: a loopback receiver needs the
    // operator's allow_private_networks (tests, development), and its CA.
    let a = start_as("example.org", |s| {
        s.oauth.fetch.ca_file = Some(site_ca);
        s.oauth.fetch.allow_private_networks = true;
    })
    .await;
    *keys_of.lock().unwrap() = Some((a.issuer.clone(), a.server.issuer.clone()));
    let (client, _) = a.mtls_client(&id(RECEIVER)).await;
    let (s, created) = send(client.post(a.ssf_url("stream")).json(&json!({
        "events_requested": [event::SESSION_REVOKED],
        "delivery": {"method": PUSH, "endpoint_url": format!("{site}/events"),
                     "authorization_header": "Bearer receiver-secret"}
    })))
    .await;
    assert_eq!(s, 201, "{created}");
    // The receiver is down: three signals wait in the outbox.
    for i in 0..3 {
        a.revoke_signal(&format!("spiffe://example.org/agent/{i}"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(received.lock().unwrap().is_empty());
    // Now it comes up.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "push did not recover: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // In order, each once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|(_, who)| who.as_str()).collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!("spiffe://example.org/agent/{i}"))
            .collect::<Vec<_>>()
    );
    let stream_id = created["stream_id"].as_str().unwrap();
    assert_eq!(
        a.server
            .issuer
            .store()
            .pending_count(stream_id)
            .await
            .unwrap(),
        0
    );
    // Once up, a new signal is pushed at once.
    let t = Instant::now();
    a.revoke_signal("spiffe://example.org/agent/now").await;
    while received.lock().unwrap().len() < 4 {
        assert!(t.elapsed() < Duration::from_secs(2), "not pushed promptly");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// AIMS MO-2, MO-3: another AIMS (trust domain partner.org) is a configured transmitter of this
/// one; its account-disabled SET, pushed to `/ssf/v1/receive`, revokes the subject here with
/// the signal as cause; account-enabled lifts it; forged, foreign and mistargeted SETs get RFC
/// 8935 errors and change nothing.
#[tokio::test]
async fn the_server_acts_on_signals_pushed_by_a_configured_transmitter() {
    // Our web CA exists before either server starts, so the partner can trust our endpoint.
    let ours = tempfile::tempdir().unwrap();
    let our_ca = aims_server::tls::LocalWebPki::load_or_create(
        &ours.path().join("data").join("tls"),
        &["localhost".to_owned()],
    )
    .unwrap()
    .ca_file;
    // Its push endpoint is ours on loopback: the partner's operator allows private networks.
    let partner = start_as("partner.org", |s| {
        s.oauth.fetch.ca_file = Some(our_ca);
        s.oauth.fetch.allow_private_networks = true;
    })
    .await;
    let audience = "spiffe://partner.org/receiver/example";
    let source = aims_signals::intake::SignalSource {
        issuer: partner.issuer.clone(),
        jwks_uri: format!("{}/oauth2/jwks", partner.issuer),
        audience: Some(audience.into()),
        ca_file: partner.server.web_ca_file.clone(),
        allow_private_networks: true,
    };
    let a = start_as_in(ours, "example.org", move |s| {
        s.signal_sources = vec![source]
    })
    .await;
    let receive = format!("{}/ssf/v1/receive", a.issuer);
    // The partner's operator points a push stream at us.
    let (client, _) = partner.mtls_client(&id(audience)).await;
    let (s, _) = send(client.post(partner.ssf_url("stream")).json(&json!({
        "events_requested": [event::ACCOUNT_DISABLED, event::ACCOUNT_ENABLED],
        "delivery": {"method": PUSH, "endpoint_url": receive}
    })))
    .await;
    assert_eq!(s, 201);
    let store = a.server.issuer.store().clone();
    let emit = |t: &'static str| {
        let p = &partner;
        async move {
            p.server
                .signals
                .emit(
                    t,
                    &SubjectId::Email {
                        email: "alice@example.org".into(),
                    },
                    json!({"reason": "hijacking", "reason_admin": {"en": "account takeover"}}),
                    None,
                )
                .await
                .unwrap()
        }
    };
    emit(event::ACCOUNT_DISABLED).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let revocation = loop {
        let r = store.revocations_of(&["alice@example.org"]).await.unwrap();
        if let Some(r) = r.into_iter().next() {
            break r;
        }
        assert!(Instant::now() < deadline, "the signal was not acted on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(revocation.lifted_at, None);
    assert_eq!(
        revocation.cause,
        format!(
            "account-disabled signal from {}: account takeover",
            partner.issuer
        )
    );
    emit(event::ACCOUNT_ENABLED).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.revocations_of(&["alice@example.org"]).await.unwrap()[0]
        .lifted_at
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "account-enabled was not acted on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refusals, each with its RFC 8935 code.
    let push = |body: String, ct: &'static str| {
        let http = a.http.clone();
        let url = receive.clone();
        async move { send(http.post(url).header("content-type", ct).body(body)).await }
    };
    let key = aims_credentials::PrivateKey::generate(aims_credentials::KeyType::EcP256).unwrap();
    let now = aims_core::unix_seconds(aims_core::Clock::now(a.clock.as_ref()));
    let set_at = |iss: &str, aud: &str, sub: SubjectId, event_type: &str, iat: i64| {
        SecEvent::new(iss, aud, sub, event_type, json!({}), None, iat)
    };
    let set = |iss: &str, aud: &str| {
        set_at(
            iss,
            aud,
            SubjectId::for_principal("bob"),
            event::ACCOUNT_DISABLED,
            now,
        )
    };
    let forged = set(&partner.issuer, audience).sign(&key, "nope").unwrap();
    assert_eq!(
        push(forged, "application/secevent+jwt").await,
        (
            400,
            json!({"err": "invalid_key", "description": "invalid_key: unknown kid \"nope\""})
        )
    );
    let foreign = set("https://elsewhere", audience).sign(&key, "k").unwrap();
    assert_eq!(
        push(foreign, "application/secevent+jwt").await.1["err"],
        "invalid_issuer"
    );
    let slot = partner.server.issuer.signing_key().unwrap();
    let mistargeted = set(&partner.issuer, "https://someone-else")
        .sign(&slot.key, &slot.kid)
        .unwrap();
    assert_eq!(
        push(mistargeted, "application/secevent+jwt").await.1["err"],
        "invalid_audience"
    );
    let good = set(&partner.issuer, audience)
        .sign(&slot.key, &slot.kid)
        .unwrap();
    assert_eq!(
        push(good.clone(), "application/json").await.1["err"],
        "invalid_request"
    );
    assert_eq!(
        push("junk".into(), "application/secevent+jwt").await.1["err"],
        "invalid_request"
    );
    assert!(store.revocations_of(&["bob"]).await.unwrap().is_empty());
    // A valid one is acted on once, however often it comes.
    assert_eq!(push(good.clone(), "application/secevent+jwt").await.0, 202);
    assert_eq!(push(good, "application/secevent+jwt").await.0, 202);
    let log = a
        .server
        .issuer
        .store()
        .audit_by_correlation("nope", 1)
        .await
        .unwrap();
    assert!(log.is_empty());
    let revoked = store.revocations_of(&["bob"]).await.unwrap();
    assert_eq!(revoked.len(), 1);

    // Issue 16. A SET older than the window (or from the future) is refused: a replay of an
    // old "restore" cannot reopen access.
    for iat in [now - 2 * 24 * 3600, now + 3600] {
        let stale = set_at(
            &partner.issuer,
            audience,
            SubjectId::for_principal("bob"),
            event::ACCOUNT_ENABLED,
            iat,
        )
        .sign(&slot.key, &slot.kid)
        .unwrap();
        assert_eq!(
            push(stale, "application/secevent+jwt").await.1["err"],
            "invalid_request"
        );
    }
    assert!(
        store.revocations_of(&["bob"]).await.unwrap()[0]
            .lifted_at
            .is_none()
    );
    // An operator's ban is not the partner's to lift.
    store
        .revoke_principal("mallory@example.org", "operator ban", "", now)
        .await
        .unwrap();
    let restore = set_at(
        &partner.issuer,
        audience,
        SubjectId::for_principal("mallory@example.org"),
        event::ACCOUNT_ENABLED,
        now,
    )
    .sign(&slot.key, &slot.kid)
    .unwrap();
    assert_eq!(push(restore, "application/secevent+jwt").await.0, 202);
    assert!(
        store
            .revocations_of(&["mallory@example.org"])
            .await
            .unwrap()[0]
            .lifted_at
            .is_none(),
        "a partner's account-enabled lifted an operator's ban"
    );
    // An iss_sub subject of another issuer names nobody here.
    let elsewhere = set_at(
        &partner.issuer,
        audience,
        SubjectId::IssSub {
            iss: "https://other-idp.example".into(),
            sub: "carol".into(),
        },
        event::ACCOUNT_DISABLED,
        now,
    )
    .sign(&slot.key, &slot.kid)
    .unwrap();
    assert_eq!(push(elsewhere, "application/secevent+jwt").await.0, 202);
    let own = set_at(
        &partner.issuer,
        audience,
        SubjectId::IssSub {
            iss: partner.issuer.clone(),
            sub: "dave".into(),
        },
        event::ACCOUNT_DISABLED,
        now,
    )
    .sign(&slot.key, &slot.kid)
    .unwrap();
    assert_eq!(push(own, "application/secevent+jwt").await.0, 202);
    assert!(store.revocations_of(&["carol"]).await.unwrap().is_empty());
    assert_eq!(store.revocations_of(&["dave"]).await.unwrap().len(), 1);
}

/// Issue 18: a push stream made at one replica is served by both replicas sharing PostgreSQL:
/// signals raised at either are pushed exactly once each, in order (a lease per SET, one
/// pusher at a time), and when the replica that made the stream stops, the other goes on
/// pushing. Skipped without PostgreSQL outside CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stream_is_served_by_every_replica_once_per_signal() {
    let Some((url, name)) = aims_store::testing::fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    type Issuers = Arc<Mutex<Vec<Arc<aims_provisioning::issuance::issuer::Issuer>>>>;
    let issuers: Issuers = Arc::default();
    let issuer_url: Arc<Mutex<String>> = Arc::default();
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (seen, keys, iss) = (received.clone(), issuers.clone(), issuer_url.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: String| {
            let (seen, keys, iss) = (seen.clone(), keys.clone(), iss.clone());
            async move {
                let keys = keys.lock().unwrap().clone();
                // Either replica's token key: both publish theirs in one JWKS.
                let key = |kid: &str| keys.iter().find_map(|i| i.verifying_key(kid));
                let issuer = iss.lock().unwrap().clone();
                let set = verify_set(&body, &issuer, RECEIVER, &key).unwrap();
                seen.lock()
                    .unwrap()
                    .push((set.jti.clone(), set.sub_id.principals(&issuer)[0].clone()));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let (site, site_ca, _site) = common::https_site(dir.path(), |_| app).await;
    let shared = |s: &mut aims_server::ServerSettings| {
        s.database_url = Some(url.clone());
        s.oauth.fetch.ca_file = Some(site_ca.clone());
        s.oauth.fetch.allow_private_networks = true;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let first = dir_a.path().to_path_buf();
    let a = start_as_in(dir_a, "example.org", shared).await;
    // B: the same store, the first replica's audit log key, the same public URLs.
    let dir_b = common::joining_replica_dir(&first);
    let (public, public_mtls) = (a.issuer.clone(), a.mtls_base());
    let b = start_as_in(dir_b, "example.org", |s| {
        shared(s);
        s.public_url = Some(public);
        s.public_mtls_url = Some(public_mtls);
    })
    .await;
    assert_eq!(a.issuer, b.issuer);
    *issuer_url.lock().unwrap() = a.issuer.clone();
    issuers
        .lock()
        .unwrap()
        .extend([a.server.issuer.clone(), b.server.issuer.clone()]);
    let (client, _) = a.mtls_client(&id(RECEIVER)).await;
    let (s, created) = send(client.post(a.ssf_url("stream")).json(&json!({
        "events_requested": [event::SESSION_REVOKED],
        "delivery": {"method": PUSH, "endpoint_url": format!("{site}/events")}
    })))
    .await;
    assert_eq!(s, 201, "{created}");

    let wait_for = |n: usize| {
        let received = received.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            while received.lock().unwrap().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "{n} pushes expected: {:?}",
                    received.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Anything pushed twice would arrive meanwhile.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            received.lock().unwrap().clone()
        }
    };
    let who = |i: usize| format!("spiffe://example.org/agent/{i}");
    for i in 0..10 {
        let replica = if i % 2 == 0 { &a } else { &b };
        replica.revoke_signal(&who(i)).await;
    }
    let got = wait_for(10).await;
    assert_eq!(
        got.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(),
        (0..10).map(who).collect::<Vec<_>>(),
        "each once, in order"
    );
    // The replica that made the stream stops; the other pushes what is raised after.
    a.server.stop().await;
    for i in 10..13 {
        b.revoke_signal(&who(i)).await;
    }
    let got = wait_for(13).await;
    assert_eq!(
        got.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(),
        (0..13).map(who).collect::<Vec<_>>()
    );
    let jtis: std::collections::BTreeSet<_> = got.iter().map(|(j, _)| j.clone()).collect();
    assert_eq!(jtis.len(), 13, "every SET its own jti");
    b.server.stop().await;
    aims_store::testing::drop_postgres_database(&name).await;
}
