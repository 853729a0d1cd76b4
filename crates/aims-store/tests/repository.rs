//! The repository suite, run unchanged against SQLite and PostgreSQL (each test in its own
//! database).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aims_core::SpiffeId;
use aims_store::testing::fresh_stores;
use aims_store::{
    AttestedNode, Counter, CredentialKind, EntryFilter, EntryUpdate, FederatedBundleRow,
    IssuedCredential, LeaseName, NewEntry, SlotRow, SlotStatus, Store, StoreError,
};
use aims_store::{
    CheckpointRow, ClientSource, NewAuditRow, OAuthClientRow, PolicyVersionRow, RefreshUse,
    TokenKind, TokenRecord,
};
use aims_store::{CibaRow, CibaStatus, CodeRow, CodeUse, SessionRow, UserRow, audit_tile_id};

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn new_entry(spiffe: &str, selectors: &[&str]) -> NewEntry {
    NewEntry {
        spiffe_id: id(spiffe),
        parent_id: id("spiffe://example.org/agent/node1"),
        selectors: selectors.iter().map(|s| s.parse().unwrap()).collect(),
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        dns_names: vec![],
        admin: false,
        hint: None,
    }
}

async fn entries_suite(store: &Store) {
    let a = store
        .create_entry(new_entry(
            "spiffe://example.org/agent/a",
            &["unix:uid:1000", "unix:gid:1000"],
        ))
        .await
        .unwrap();
    assert_eq!(a.revision, 1);
    // Selectors are kept sorted, so the same set in another order is a duplicate.
    assert_eq!(a.selectors[0].to_string(), "unix:gid:1000");
    let dup = store
        .create_entry(new_entry(
            "spiffe://example.org/agent/a",
            &["unix:gid:1000", "unix:uid:1000"],
        ))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let mut b = new_entry("spiffe://example.org/agent/b", &["unix:uid:1001"]);
    b.dns_names = vec!["b.example.org".into()];
    b.hint = Some("internal".into());
    b.admin = true;
    b.x509_svid_ttl = 600;
    let b = store.create_entry(b).await.unwrap();

    assert_eq!(store.get_entry(&a.id).await.unwrap(), a);
    assert_eq!(store.get_entry(&b.id).await.unwrap(), b);
    assert_eq!(
        store
            .list_entries(&EntryFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
    let only_b = store
        .list_entries(&EntryFilter {
            spiffe_id: Some(id("spiffe://example.org/agent/b")),
            parent_id: None,
        })
        .await
        .unwrap();
    assert_eq!(only_b, vec![b.clone()]);
    let by_parent = store
        .list_entries(&EntryFilter {
            spiffe_id: None,
            parent_id: Some(id("spiffe://example.org/agent/other")),
        })
        .await
        .unwrap();
    assert!(by_parent.is_empty());
    // Each filter shape has a statement of its own (issue 18): both fields, and the parent.
    let parent = id("spiffe://example.org/agent/node1");
    for (spiffe_id, expected) in [
        (Some(id("spiffe://example.org/agent/b")), vec![b.clone()]),
        (Some(id("spiffe://example.org/agent/none")), vec![]),
        (None, vec![a.clone(), b.clone()]),
    ] {
        let found = store
            .list_entries(&EntryFilter {
                spiffe_id,
                parent_id: Some(parent.clone()),
            })
            .await
            .unwrap();
        assert_eq!(found, expected);
    }

    let updated = store
        .update_entry(
            &b.id,
            EntryUpdate {
                selectors: Some(vec!["unix:uid:2000".parse().unwrap()]),
                hint: Some(None),
                jwt_svid_ttl: Some(120),
                ..EntryUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.hint, None);
    assert_eq!(updated.jwt_svid_ttl, 120);
    assert_eq!(updated.x509_svid_ttl, 600);
    assert_eq!(store.get_entry(&b.id).await.unwrap(), updated);

    // Bad input is refused with a typed error.
    let no_selectors = store
        .create_entry(new_entry("spiffe://example.org/x", &[]))
        .await;
    assert!(matches!(no_selectors, Err(StoreError::Invalid(_))));
    let mut bad_dns = new_entry("spiffe://example.org/x", &["unix:uid:1"]);
    bad_dns.dns_names = vec!["not a name".into()];
    assert!(matches!(
        store.create_entry(bad_dns).await,
        Err(StoreError::Invalid(_))
    ));

    store.delete_entry(&a.id).await.unwrap();
    assert!(matches!(
        store.get_entry(&a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_entry(&a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_entry("nope", EntryUpdate::default()).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn nodes_suite(store: &Store) {
    let mut node = AttestedNode {
        spiffe_id: id("spiffe://example.org/spire/agent/join_token/abc"),
        attestation_type: "join_token".into(),
        cert_serial: "01ab".into(),
        cert_not_after: 1_900_000_000,
        selectors: vec!["join_token:abc".parse().unwrap()],
        banned: false,
    };
    store.upsert_node(&node).await.unwrap();
    assert_eq!(store.get_node(&node.spiffe_id).await.unwrap(), node);
    node.cert_serial = "02cd".into();
    node.banned = true;
    store.upsert_node(&node).await.unwrap();
    assert_eq!(store.list_nodes().await.unwrap(), vec![node.clone()]);
    store.delete_node(&node.spiffe_id).await.unwrap();
    assert!(matches!(
        store.get_node(&node.spiffe_id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn ca_suite(store: &Store) {
    let slot = |server: &str, slot: &str, status, not_after| SlotRow {
        server_id: server.into(),
        slot_id: slot.into(),
        status,
        not_after,
        record: format!("{{\"id\":\"{slot}\"}}"),
    };
    store
        .put_slot(&slot("s1", "a", SlotStatus::Active, 2000))
        .await
        .unwrap();
    store
        .put_slot(&slot("s1", "b", SlotStatus::Prepared, 3000))
        .await
        .unwrap();
    store
        .put_slot(&slot("s2", "c", SlotStatus::Active, 2500))
        .await
        .unwrap();
    // Activating b retires a for s1 only.
    store
        .put_slot(&slot("s1", "b", SlotStatus::Active, 3000))
        .await
        .unwrap();
    let live = store.live_slots(1000).await.unwrap();
    let status = |id: &str| live.iter().find(|s| s.slot_id == id).unwrap().status;
    assert_eq!(status("a"), SlotStatus::Retired);
    assert_eq!(status("b"), SlotStatus::Active);
    assert_eq!(status("c"), SlotStatus::Active);
    assert_eq!(store.live_slots(2100).await.unwrap().len(), 2);
    let pruned = store.prune_slots("s1", 2100).await.unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].slot_id, "a");

    // The bundle sequence moves only when the keys change.
    let b1 = store
        .publish_bundle("example.org", "k1", |seq| format!("doc{seq}"))
        .await
        .unwrap();
    assert_eq!((b1.sequence, b1.document.as_str()), (1, "doc1"));
    let same = store
        .publish_bundle("example.org", "k1", |seq| format!("doc{seq}"))
        .await
        .unwrap();
    assert_eq!(same.sequence, 1);
    let b2 = store
        .publish_bundle("example.org", "k2", |seq| format!("doc{seq}"))
        .await
        .unwrap();
    assert_eq!((b2.sequence, b2.document.as_str()), (2, "doc2"));
    assert_eq!(store.get_bundle("example.org").await.unwrap(), b2);
    assert!(matches!(
        store.get_bundle("other.org").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn issued_suite(store: &Store) {
    for (i, kind) in [
        CredentialKind::X509Svid,
        CredentialKind::JwtSvid,
        CredentialKind::WitSvid,
    ]
    .into_iter()
    .enumerate()
    {
        store
            .record_issued(&IssuedCredential {
                kind,
                serial: format!("serial{i}"),
                spiffe_id: id(if i == 0 {
                    "spiffe://example.org/a"
                } else {
                    "spiffe://example.org/b"
                }),
                issued_at: 100,
                expires_at: 200 + i as i64,
                issuer: "slot".into(),
            })
            .await
            .unwrap();
    }
    let all = store.list_issued(None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].kind, CredentialKind::WitSvid, "newest first");
    let a = store
        .list_issued(Some(&id("spiffe://example.org/a")), 10)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].serial, "serial0");
    assert_eq!(store.prune_issued(201).await.unwrap(), 1);
    assert_eq!(store.list_issued(None, 10).await.unwrap().len(), 2);
}

async fn agents_suite(store: &Store) {
    // Every entry change moves the registration counter (replicas poll it), inside the change's
    // own transaction.
    let before = store.counter(Counter::Registration).await.unwrap();
    let e = store
        .create_entry(new_entry("spiffe://example.org/counted", &["unix:uid:7"]))
        .await
        .unwrap();
    assert_eq!(
        store.counter(Counter::Registration).await.unwrap(),
        before + 1
    );
    store
        .update_entry(
            &e.id,
            EntryUpdate {
                jwt_svid_ttl: Some(60),
                ..EntryUpdate::default()
            },
        )
        .await
        .unwrap();
    store.delete_entry(&e.id).await.unwrap();
    assert_eq!(
        store.counter(Counter::Registration).await.unwrap(),
        before + 3
    );
    // A failed change does not move it.
    assert!(store.delete_entry(&e.id).await.is_err());
    assert_eq!(
        store.counter(Counter::Registration).await.unwrap(),
        before + 3
    );

    // Join tokens: once, before expiry.
    let agent = id("spiffe://example.org/aims/agent/host1");
    store
        .create_join_token("d1", Some(&agent), 1000)
        .await
        .unwrap();
    store.create_join_token("d2", None, 1000).await.unwrap();
    store.create_join_token("d3", None, 500).await.unwrap();
    assert_eq!(
        store.consume_join_token("d1", 900).await.unwrap(),
        Some(agent)
    );
    assert!(matches!(
        store.consume_join_token("d1", 900).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.consume_join_token("d2", 999).await.unwrap(), None);
    assert!(matches!(
        store.consume_join_token("d3", 500).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.consume_join_token("unknown", 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Federated bundles: the counter moves only when a document changes.
    let fed = store.counter(Counter::Federation).await.unwrap();
    let mut row = FederatedBundleRow {
        trust_domain: "other.org".into(),
        document: "{\"keys\":[]}".into(),
        endpoint: "https://other.org/bundle".into(),
        sequence: 1,
        refreshed_at: 10,
    };
    assert!(store.put_federated_bundle(&row).await.unwrap());
    row.refreshed_at = 20;
    assert!(!store.put_federated_bundle(&row).await.unwrap());
    assert_eq!(store.counter(Counter::Federation).await.unwrap(), fed + 1);
    row.document = "{\"keys\":[1]}".into();
    row.sequence = 2;
    assert!(store.put_federated_bundle(&row).await.unwrap());
    assert_eq!(store.counter(Counter::Federation).await.unwrap(), fed + 2);
    assert_eq!(store.federated_bundles().await.unwrap(), vec![row]);
}

async fn oauth_suite(store: &Store) {
    let client = OAuthClientRow {
        client_id: "https://tool.example/client".into(),
        metadata: serde_json::json!({"token_endpoint_auth_method": "private_key_jwt"}),
        secret_hash: None,
        source: ClientSource::Admin,
        created_at: 1,
    };
    store.put_client(&client).await.unwrap();
    assert_eq!(store.get_client(&client.client_id).await.unwrap(), client);
    assert_eq!(store.list_clients().await.unwrap(), vec![client.clone()]);
    store.delete_client(&client.client_id).await.unwrap();
    assert!(matches!(
        store.get_client(&client.client_id).await,
        Err(StoreError::NotFound(_))
    ));

    let token = |hash: &str, kind, family: Option<&str>, exp| TokenRecord {
        token_hash: hash.into(),
        kind,
        jti: format!("jti-{hash}"),
        client_id: "spiffe://example.org/agent/a".into(),
        subject: "alice".into(),
        claims: serde_json::json!({"scope": "read"}),
        family: family.map(Into::into),
        expires_at: exp,
        revoked_at: None,
        used_at: None,
    };
    // An opaque access token, revoked.
    let at = token("h-at", TokenKind::Access, None, 1000);
    store.put_token(&at).await.unwrap();
    assert_eq!(store.get_token("h-at").await.unwrap(), at);
    assert!(store.revoke_token("h-at", 50).await.unwrap());
    assert!(!store.revoke_token("h-at", 60).await.unwrap(), "once");
    assert_eq!(store.get_token("h-at").await.unwrap().revoked_at, Some(50));

    // Refresh rotation: r1 spent once; a second use of r1 revokes the family (r2 too).
    store
        .put_token(&token("r1", TokenKind::Refresh, Some("fam"), 1000))
        .await
        .unwrap();
    assert!(matches!(
        store.use_refresh_token("r1", 10).await.unwrap(),
        RefreshUse::Fresh(t) if t.jti == "jti-r1"
    ));
    store
        .put_token(&token("r2", TokenKind::Refresh, Some("fam"), 1000))
        .await
        .unwrap();
    assert_eq!(
        store.use_refresh_token("r1", 11).await.unwrap(),
        RefreshUse::Reused
    );
    assert_eq!(
        store.use_refresh_token("r2", 12).await.unwrap(),
        RefreshUse::Invalid
    );
    assert_eq!(
        store.use_refresh_token("unknown", 12).await.unwrap(),
        RefreshUse::Invalid
    );
    // Expired refresh tokens do not work; an access token is not a refresh token.
    store
        .put_token(&token("r3", TokenKind::Refresh, Some("fam3"), 20))
        .await
        .unwrap();
    assert_eq!(
        store.use_refresh_token("r3", 20).await.unwrap(),
        RefreshUse::Invalid
    );
    assert_eq!(
        store.use_refresh_token("h-at", 1).await.unwrap(),
        RefreshUse::Invalid
    );

    // Revoked JWTs by jti, pruned after expiry.
    store.revoke_jti("j1", 100).await.unwrap();
    store.revoke_jti("j1", 100).await.unwrap();
    assert!(store.is_jti_revoked("j1").await.unwrap());
    assert!(!store.is_jti_revoked("j2").await.unwrap());
    assert!(store.prune_oauth(500).await.unwrap() >= 2);
    assert!(!store.is_jti_revoked("j1").await.unwrap());
    assert!(store.get_token("r3").await.is_err());
    assert!(store.get_token("h-at").await.is_ok());
}

async fn policy_suite(store: &Store) {
    assert_eq!(store.latest_policy().await.unwrap(), None);
    assert_eq!(store.latest_policy_version().await.unwrap(), None);
    let v = |version: u64, text: &str| PolicyVersionRow {
        version,
        hash: format!("sha256:{version}"),
        text: text.into(),
        created_at: 100 + version as i64,
        author: "test".into(),
        application_schema: None,
        application_entities: None,
    };
    store.insert_policy(&v(1, "one")).await.unwrap();
    store.insert_policy(&v(2, "two")).await.unwrap();
    // Another replica got version 2 in first: a conflict, and the first text stays.
    assert!(matches!(
        store.insert_policy(&v(2, "other")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.latest_policy().await.unwrap(), Some(v(2, "two")));
    assert_eq!(store.latest_policy_version().await.unwrap(), Some(2));
    assert_eq!(store.policy_version(1).await.unwrap().text, "one");
    assert!(matches!(
        store.policy_version(9).await,
        Err(StoreError::NotFound(_))
    ));
    let history = store.policy_history().await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(history.iter().all(|r| r.text.is_empty()));
    // A version with an application keeps its schema and entities; the history omits them.
    let with_app = PolicyVersionRow {
        application_schema: Some("namespace Todo { entity user; }".into()),
        application_entities: Some("[]".into()),
        ..v(3, "three")
    };
    store.insert_policy(&with_app).await.unwrap();
    assert_eq!(store.latest_policy().await.unwrap(), Some(with_app.clone()));
    assert_eq!(store.policy_version(3).await.unwrap(), with_app);
    let history = store.policy_history().await.unwrap();
    assert!(history.iter().all(|r| r.application_schema.is_none()));
    // AIMS PO-3: enforcement points, as last heard from; one row each, the latest word wins.
    let (gw1, gw2) = ("spiffe://example.org/gw/1", "spiffe://example.org/gw/2");
    store.record_policy_follower(gw1, 1, 100).await.unwrap();
    store.record_policy_follower(gw2, 2, 150).await.unwrap();
    store.record_policy_follower(gw1, 2, 200).await.unwrap();
    let followers = store.policy_followers(0).await.unwrap();
    assert_eq!(
        followers
            .iter()
            .map(|f| (f.spiffe_id.as_str(), f.version, f.seen_at))
            .collect::<Vec<_>>(),
        vec![(gw1, 2, 200), (gw2, 2, 150)]
    );
    // One not heard from since 160 is no longer following.
    let recent = store.policy_followers(160).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].spiffe_id, gw1);
}

async fn secrets_suite(store: &Store) {
    let first = store.shared_secret("dpop-nonce").await.unwrap();
    assert_eq!(first.len(), aims_store::SHARED_SECRET_LEN);
    assert_eq!(store.shared_secret("dpop-nonce").await.unwrap(), first);
    assert_ne!(store.shared_secret("other").await.unwrap(), first);
    // A pinned value: the first writer's stays; a later proposal gets it back to compare.
    let key = store.pinned("vkey", b"mine".to_vec()).await.unwrap();
    assert_eq!(key, b"mine");
    assert_eq!(
        store.pinned("vkey", b"theirs".to_vec()).await.unwrap(),
        b"mine"
    );
}

async fn remediation_suite(store: &Store) {
    let agent = "spiffe://example.org/agent/r";
    let token = |hash: &str, client: &str, subject: &str| TokenRecord {
        token_hash: hash.into(),
        kind: TokenKind::Access,
        jti: format!("jti-{hash}"),
        client_id: client.into(),
        subject: subject.into(),
        claims: serde_json::json!({}),
        family: None,
        expires_at: 10_000,
        revoked_at: None,
        used_at: None,
    };
    for t in [
        token("rm-1", agent, agent),
        token("rm-2", "other", agent),
        token("rm-3", "other", "bob"),
    ] {
        store.put_token(&t).await.unwrap();
    }
    assert!(store.revocations_of(&[agent]).await.unwrap().is_empty());
    // The agent's own tokens and tokens for it go; others stay.
    assert_eq!(
        store
            .revoke_principal(agent, "compromised", "", 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.get_token("rm-1").await.unwrap().revoked_at, Some(100));
    assert_eq!(store.get_token("rm-2").await.unwrap().revoked_at, Some(100));
    assert_eq!(store.get_token("rm-3").await.unwrap().revoked_at, None);
    let r = store.revocations_of(&["bob", agent]).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].revoked_at, r[0].cause.as_str(), r[0].lifted_at),
        (100, "compromised", None)
    );
    // Lifted once; revoked again, it stands again with the new cause.
    // Issue 16: a signal's issuer lifts only what it revoked; the operator's ban stays.
    assert!(
        !store
            .lift_revocation(agent, Some("https://idp"), 140)
            .await
            .unwrap()
    );
    assert!(store.lift_revocation(agent, None, 150).await.unwrap());
    assert!(!store.lift_revocation(agent, None, 160).await.unwrap());
    assert_eq!(store.revocations().await.unwrap()[0].lifted_at, Some(150));
    store
        .revoke_principal(agent, "again", "https://idp", 200)
        .await
        .unwrap();
    let r = store.revocations_of(&[agent]).await.unwrap();
    assert_eq!(
        (r[0].revoked_at, r[0].cause.as_str(), r[0].lifted_at),
        (200, "again", None)
    );
    assert_eq!(r[0].revoked_by, "https://idp");
    // Another source revoking while it stands makes it the operator's to lift.
    store
        .revoke_principal(agent, "elsewhere too", "https://other", 210)
        .await
        .unwrap();
    for source in ["https://idp", "https://other"] {
        assert!(
            !store
                .lift_revocation(agent, Some(source), 220)
                .await
                .unwrap()
        );
    }
    assert!(store.lift_revocation(agent, None, 230).await.unwrap());
    // Revoked by one source alone, that source lifts it.
    store
        .revoke_principal(agent, "idp", "https://idp", 300)
        .await
        .unwrap();
    assert!(
        store
            .lift_revocation(agent, Some("https://idp"), 310)
            .await
            .unwrap()
    );

    // One-time values: once per scope, across connections, until they expire.
    assert!(
        store
            .first_use("assertion:c", "j1", 500, 400)
            .await
            .unwrap()
    );
    assert!(
        !store
            .first_use("assertion:c", "j1", 500, 450)
            .await
            .unwrap()
    );
    assert!(
        store
            .first_use("assertion:d", "j1", 500, 450)
            .await
            .unwrap()
    );
    assert!(
        store
            .first_use("assertion:c", "j1", 900, 501)
            .await
            .unwrap()
    );
}

async fn audit_suite(store: &Store) {
    assert_eq!(store.audit_len().await.unwrap(), 0);
    let empty = store.audit_storage().await.unwrap();
    assert_eq!(empty.records, 0);
    let rows = |n: usize, tag: &str| -> Vec<NewAuditRow> {
        (0..n)
            .map(|i| NewAuditRow {
                leaf_hash: [i as u8; 32],
                record: format!("{{\"r\":\"{tag}{i}\"}}"),
                correlation_id: Some(format!("task-{tag}")),
            })
            .collect()
    };
    assert_eq!(store.append_audit(&rows(3, "a"), 10).await.unwrap(), 0);
    // More rows than one statement holds, numbered on without a gap.
    assert_eq!(store.append_audit(&rows(1203, "b"), 11).await.unwrap(), 3);
    assert_eq!(store.audit_len().await.unwrap(), 1206);
    let got = store.audit_rows(2, 3).await.unwrap();
    assert_eq!(got.iter().map(|r| r.idx).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(got[0].leaf_hash, vec![2; 32]);
    assert_eq!(got[0].correlation_id.as_deref(), Some("task-a"));
    assert_eq!(got[1].record, "{\"r\":\"b0\"}");
    assert_eq!(got[1].appended_at, 11);
    // Concurrent appends never share an index.
    let (c, d) = (rows(50, "c"), rows(50, "d"));
    let (a, b) = tokio::join!(store.append_audit(&c, 12), store.append_audit(&d, 12));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a + 50 <= b || b + 50 <= a, "{a} {b}");
    assert_eq!(store.audit_len().await.unwrap(), 1306);
    // What the log takes: every record, in bytes that grew with them.
    let st = store.audit_storage().await.unwrap();
    assert_eq!(st.records, 1306);
    assert!(st.bytes >= empty.bytes + 1306 * 20, "{empty:?} → {st:?}");
    // A task's rows, by correlation id, in order.
    let task = store.audit_by_correlation("task-a", 10).await.unwrap();
    assert_eq!(
        task.iter().map(|r| r.idx).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(
        store
            .audit_by_correlation("nope", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Tree hashes and checkpoints: stored once, a replica's second write changes nothing.
    assert_eq!(store.latest_audit_checkpoint().await.unwrap(), None);
    let cp = |size: u64, note: &str| CheckpointRow {
        size,
        note: note.into(),
        created_at: 5,
    };
    let hash = |i: u64| {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&i.to_be_bytes());
        h
    };
    let tile = |from: u64, to: u64| (from..to).flat_map(hash).collect::<Vec<u8>>();
    // 899 leaves: level-0 tiles 0–2 full, tile 3 partial (131 hashes); a level-1 tile.
    let mut tiles: Vec<(i64, Vec<u8>)> = (0..3)
        .map(|t| (audit_tile_id(0, t), tile(t * 256, (t + 1) * 256)))
        .collect();
    tiles.push((audit_tile_id(0, 3), tile(768, 899)));
    tiles.push((audit_tile_id(1, 0), tile(7, 10)));
    store
        .put_audit_tree(&tiles, &cp(899, "first"))
        .await
        .unwrap();
    // A second writer of the same size changes nothing; a tile only grows.
    store
        .put_audit_tree(&[(audit_tile_id(0, 0), tile(5, 6))], &cp(899, "second"))
        .await
        .unwrap();
    assert_eq!(
        store.latest_audit_checkpoint().await.unwrap(),
        Some(cp(899, "first"))
    );
    store
        .put_audit_tree(&[(audit_tile_id(0, 3), tile(768, 900))], &cp(900, "grown"))
        .await
        .unwrap();
    let got = store
        .audit_tiles(&[
            audit_tile_id(0, 0),
            audit_tile_id(0, 3),
            audit_tile_id(1, 0),
            5000,
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[&audit_tile_id(0, 0)], tile(0, 256));
    assert_eq!(got[&audit_tile_id(0, 3)], tile(768, 900));
    assert_eq!(got[&audit_tile_id(1, 0)], tile(7, 10));
    assert_ne!(audit_tile_id(1, 0), audit_tile_id(0, 0));
    // Rows carry the leaf hash their checkpoint certified, from their level-0 tile.
    let r = store.audit_rows(899, 2).await.unwrap();
    assert_eq!(r[0].certified_hash.as_deref(), Some(&hash(899)[..]));
    assert_eq!(r[1].certified_hash, None);
    let r = store.audit_rows(255, 2).await.unwrap();
    assert_eq!(r[0].certified_hash.as_deref(), Some(&hash(255)[..]));
    assert_eq!(r[1].certified_hash.as_deref(), Some(&hash(256)[..]));
    // Rows over more tiles than one statement reads (64) get each its own certified hash.
    let len = store.audit_len().await.unwrap();
    let wide = 70 * 256 - len + 10;
    store
        .append_audit(&rows(wide as usize, "w"), 13)
        .await
        .unwrap();
    let tiles: Vec<(i64, Vec<u8>)> = (0..70)
        .map(|t| (audit_tile_id(0, t), tile(t * 256, (t + 1) * 256)))
        .collect();
    store
        .put_audit_tree(&tiles, &cp(70 * 256, "wide"))
        .await
        .unwrap();
    let all = store.audit_rows(0, 70 * 256 + 10).await.unwrap();
    assert_eq!(all.len() as u64, 70 * 256 + 10);
    for row in &all {
        let want = (row.idx < 70 * 256).then(|| hash(row.idx).to_vec());
        assert_eq!(row.certified_hash, want, "row {}", row.idx);
    }
    // Shared strings, added in the append's own transaction: one id per value, the same on a
    // second call and for a second writer, compared exactly (case and trailing space matter);
    // ids read back; the rows are built with them and numbered after the last row.
    let many: Vec<String> = (0..150).map(|i| format!("spiffe://td/agent/{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let len = store.audit_len().await.unwrap();
    let (at, first) = store
        .append_audit_with_strings(
            &refs,
            |ids| {
                Ok(vec![NewAuditRow {
                    leaf_hash: [9; 32],
                    record: ids["spiffe://td/agent/3"].to_string(),
                    correlation_id: None,
                }])
            },
            13,
        )
        .await
        .unwrap();
    assert_eq!((at, first.len()), (len, 150));
    let row = &store.audit_rows(at, 1).await.unwrap()[0];
    assert_eq!(row.record, first["spiffe://td/agent/3"].to_string());
    let (_, again) = store
        .append_audit_with_strings(
            &[
                "spiffe://td/agent/7",
                "Spiffe://td/agent/7",
                "spiffe://td/agent/7 ",
                "spiffe://td/agent/7",
            ],
            |_| Ok(Vec::new()),
            14,
        )
        .await
        .unwrap();
    assert_eq!(again["spiffe://td/agent/7"], first["spiffe://td/agent/7"]);
    let distinct: std::collections::HashSet<i64> = again.values().copied().collect();
    assert_eq!(distinct.len(), 3);
    let ids: Vec<i64> = first.values().copied().chain([i64::MAX]).collect();
    let back = store.audit_strings(&ids).await.unwrap();
    assert_eq!(back.len(), 150);
    assert_eq!(
        back[&first["spiffe://td/agent/149"]],
        "spiffe://td/agent/149"
    );
    // A batch that fails after its strings were added leaves neither strings nor rows.
    let failed = store
        .append_audit_with_strings(
            &["spiffe://td/agent/never"],
            |_| Err(StoreError::Invalid("unencodable".into())),
            15,
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Invalid(_))));
    assert_eq!(store.audit_len().await.unwrap(), len + 1);
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_strings WHERE value = 'spiffe://td/agent/never'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
}

/// AIMS AZ-10, AZ-11, AZ-29: users, sessions, single-use flow state and codes, CIBA requests
/// decided only by their user.
async fn people_suite(store: &Store) {
    let alice = UserRow {
        user_id: "u-1".into(),
        username: "alice".into(),
        display_name: "Alice".into(),
        password_hash: Some("$argon2id$x".into()),
        is_admin: false,
        disabled: false,
        created_at: 1,
    };
    store.create_user(&alice).await.unwrap();
    let mut twin = alice.clone();
    twin.user_id = "u-2".into();
    assert!(matches!(
        store.create_user(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_user("alice").await.unwrap(), alice);
    assert_eq!(store.get_user("u-1").await.unwrap(), alice);

    store
        .put_passkey("cred-1", "u-1", &serde_json::json!({"k": 1}), 10)
        .await
        .unwrap();
    store
        .put_passkey("cred-1", "u-1", &serde_json::json!({"k": 2}), 11)
        .await
        .unwrap();
    // Another user cannot take over a credential id.
    store
        .put_passkey("cred-1", "u-9", &serde_json::json!({"k": 3}), 12)
        .await
        .unwrap();
    assert_eq!(
        store.passkeys_of("u-1").await.unwrap(),
        vec![serde_json::json!({"k": 2})]
    );

    let session = SessionRow {
        session_hash: "s1".into(),
        user_id: "u-1".into(),
        method: "hwk".into(),
        created_at: 100,
        expires_at: 200,
    };
    store.put_session(&session).await.unwrap();
    let (s, u) = store.live_session("s1", 150).await.unwrap().unwrap();
    assert_eq!((s, u.username.as_str()), (session.clone(), "alice"));
    assert!(
        store.live_session("s1", 200).await.unwrap().is_none(),
        "expired"
    );
    store.set_user_disabled("u-1", true).await.unwrap();
    assert!(
        store.live_session("s1", 150).await.unwrap().is_none(),
        "disabled ends sessions"
    );
    store.set_user_disabled("u-1", false).await.unwrap();

    let data = serde_json::json!({"client_id": "c"});
    store.put_flow("f1", "par", &data, 100).await.unwrap();
    assert_eq!(store.get_flow("f1", "other", 50).await.unwrap(), None);
    assert_eq!(
        store.take_flow("f1", "par", 50).await.unwrap(),
        Some(data.clone())
    );
    assert_eq!(
        store.take_flow("f1", "par", 50).await.unwrap(),
        None,
        "single use"
    );
    store.put_flow("f2", "par", &data, 100).await.unwrap();
    assert_eq!(
        store.take_flow("f2", "par", 100).await.unwrap(),
        None,
        "expired"
    );

    let code = CodeRow {
        code_hash: "c1".into(),
        client_id: "client".into(),
        user_id: "u-1".into(),
        request: serde_json::json!({"scope": "read"}),
        expires_at: 160,
    };
    store.put_code(&code).await.unwrap();
    // Issue 16: another client's attempt neither spends the code nor counts as a reuse.
    assert_eq!(
        store.use_code("c1", "thief", 100).await.unwrap(),
        CodeUse::Invalid
    );
    assert_eq!(
        store.use_code("c1", "client", 100).await.unwrap(),
        CodeUse::Fresh(Box::new(code))
    );
    store
        .set_code_issued("c1", &serde_json::json!({"jti": "j"}))
        .await
        .unwrap();
    assert_eq!(
        store.use_code("c1", "client", 101).await.unwrap(),
        CodeUse::Reused(Some(serde_json::json!({"jti": "j"})))
    );
    assert_eq!(
        store.use_code("nope", "client", 101).await.unwrap(),
        CodeUse::Invalid
    );
    assert_eq!(
        store.use_code("c1", "thief", 101).await.unwrap(),
        CodeUse::Invalid,
        "a spent code presented by another client revokes nothing"
    );

    store
        .put_consent("u-1", "client", &serde_json::json!({"scopes": ["read"]}), 5)
        .await
        .unwrap();
    assert_eq!(store.consents_of("u-1").await.unwrap().len(), 1);
    assert!(store.delete_consent("u-1", "client").await.unwrap());
    assert!(!store.delete_consent("u-1", "client").await.unwrap());

    let ciba = CibaRow {
        id_hash: "h1".into(),
        approval_id: "a1".into(),
        client_id: "client".into(),
        user_id: "u-1".into(),
        request: serde_json::json!({"scope": "openid"}),
        status: CibaStatus::Pending,
        interval_secs: 5,
        last_polled_at: None,
        created_at: 100,
        expires_at: 400,
        decided_at: None,
    };
    store.put_ciba(&ciba).await.unwrap();
    assert_eq!(
        store.pending_ciba("u-1", 150).await.unwrap(),
        vec![ciba.clone()]
    );
    store.ciba_polled("h1", 110, 10).await.unwrap();
    assert!(
        !store.decide_ciba("a1", "u-2", true, 120).await.unwrap(),
        "another user"
    );
    assert!(!store.redeem_ciba("h1").await.unwrap(), "not approved yet");
    assert!(store.decide_ciba("a1", "u-1", true, 120).await.unwrap());
    assert!(
        !store.decide_ciba("a1", "u-1", false, 121).await.unwrap(),
        "decided once"
    );
    let got = store.get_ciba("a1").await.unwrap();
    assert_eq!(
        (got.status, got.interval_secs, got.last_polled_at),
        (CibaStatus::Approved, 10, Some(110))
    );
    assert!(store.redeem_ciba("h1").await.unwrap());
    assert!(!store.redeem_ciba("h1").await.unwrap(), "a token once");
    assert!(store.pending_ciba("u-1", 150).await.unwrap().is_empty());

    store.delete_user("u-1").await.unwrap();
    assert!(matches!(
        store.get_user("alice").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.passkeys_of("u-1").await.unwrap().is_empty());
    assert!(matches!(
        store.get_ciba("h1").await,
        Err(StoreError::NotFound(_))
    ));
    store.put_flow("f3", "par", &data, 100).await.unwrap();
    assert_eq!(store.prune_people(1_000_000).await.unwrap(), 1);
}

#[tokio::test]
async fn repository_suite_on_every_backend() {
    let dbs = fresh_stores().await;
    for db in dbs {
        eprintln!("repository suite on {}", db.label());
        entries_suite(&db.store).await;
        nodes_suite(&db.store).await;
        ca_suite(&db.store).await;
        issued_suite(&db.store).await;
        agents_suite(&db.store).await;
        oauth_suite(&db.store).await;
        policy_suite(&db.store).await;
        secrets_suite(&db.store).await;
        remediation_suite(&db.store).await;
        audit_suite(&db.store).await;
        people_suite(&db.store).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aims.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    let e = store
        .create_entry(new_entry("spiffe://example.org/a", &["unix:uid:1"]))
        .await
        .unwrap();
    store.close().await;
    let again = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(again.get_entry(&e.id).await.unwrap(), e);
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    let err = Store::connect("mysql://x").await.unwrap_err();
    assert!(
        err.to_string().contains("sqlite:// or postgres://"),
        "{err}"
    );
    let err = Store::connect("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
    assert!(!msg.contains("hunter2"), "password leaked: {msg}");
}

/// Issue 17: standing revocations are answered from memory and one-time values are
/// group-committed; neither may lose what another store on the same database (a restart) wrote,
/// and a value handed in twice at once is admitted once (AIMS MO-4, AU-11).
#[tokio::test]
async fn revocations_and_one_time_values_reach_restarts_replicas_and_concurrent_callers() {
    for db in fresh_stores().await {
        let label = db.label();
        let store = &db.store;
        // Asked before anything is revoked: the index loads empty, and a write still lands in it.
        assert!(
            store
                .revocations_of(&["spiffe://t/a"])
                .await
                .unwrap()
                .is_empty()
        );
        store
            .revoke_principal("spiffe://t/a", "compromised", "", 100)
            .await
            .unwrap();
        store.revoke_jti("jti-1", i64::MAX).await.unwrap();
        assert_eq!(
            store.revocations_of(&["spiffe://t/a"]).await.unwrap().len(),
            1
        );
        // Its own writes are in its index already: no reload for them.
        assert!(
            !store.refresh_revocations().await.unwrap(),
            "{label}: own writes reloaded"
        );

        // Another store on the same database (a restart) loads both from the tables.
        let reopened = Store::connect(&db.url).await.unwrap();
        let r = reopened
            .revocations_of(&["spiffe://t/a", "spiffe://t/a", "spiffe://t/b"])
            .await
            .unwrap();
        assert_eq!(r.len(), 1, "{label}: {r:?}");
        assert_eq!((r[0].cause.as_str(), r[0].lifted_at), ("compromised", None));
        assert!(reopened.is_jti_revoked("jti-1").await.unwrap(), "{label}");
        assert!(!reopened.is_jti_revoked("jti-2").await.unwrap(), "{label}");
        // A lift through one store is seen by that store at once…
        assert!(
            reopened
                .lift_revocation("spiffe://t/a", None, 150)
                .await
                .unwrap()
        );
        assert_eq!(
            reopened.revocations_of(&["spiffe://t/a"]).await.unwrap()[0].lifted_at,
            Some(150)
        );
        // …and by the other (a replica) at its next refresh, not before; likewise a revoked jti.
        assert_eq!(
            store.revocations_of(&["spiffe://t/a"]).await.unwrap()[0].lifted_at,
            None
        );
        reopened.revoke_jti("jti-3", i64::MAX).await.unwrap();
        assert!(!store.is_jti_revoked("jti-3").await.unwrap());
        assert!(store.refresh_revocations().await.unwrap(), "{label}");
        assert!(
            !store.refresh_revocations().await.unwrap(),
            "{label}: nothing new"
        );
        assert_eq!(
            store.revocations_of(&["spiffe://t/a"]).await.unwrap()[0].lifted_at,
            Some(150)
        );
        assert!(store.is_jti_revoked("jti-3").await.unwrap(), "{label}");

        // 100 values, each handed in twice at the same moment: one batch or several, every
        // value is admitted exactly once.
        let mut tries = tokio::task::JoinSet::new();
        for i in 0..200 {
            let s = store.clone();
            tries.spawn(async move {
                s.first_use("assertion:load", &format!("j{}", i % 100), 1_000, 10)
                    .await
                    .unwrap()
            });
        }
        let admitted = tries.join_all().await;
        assert_eq!(admitted.iter().filter(|a| **a).count(), 100, "{label}");
        // …and stays refused through the other store, which shares the table.
        assert!(
            !reopened
                .first_use("assertion:load", "j7", 1_000, 20)
                .await
                .unwrap(),
            "{label}"
        );
        reopened.close().await;
        db.cleanup().await;
    }
}

/// Issue 17: a reload of the revocation index (another replica changed something) that read the
/// tables before a local revocation committed must not replace the index after that revocation
/// was written through: once `revoke_principal` returns, the revocation is in the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_racing_a_revocation_never_loses_it() {
    for db in fresh_stores().await {
        let label = db.label();
        let store = db.store.clone();
        let replica = Store::connect(&db.url).await.unwrap();
        assert!(store.revocations_of(&["x"]).await.unwrap().is_empty());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The replica keeps moving the counter; this store keeps reloading.
        let churn = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    replica
                        .revoke_principal(&format!("other-{i}"), "churn", "", 1)
                        .await
                        .unwrap();
                    store.refresh_revocations().await.unwrap();
                    i += 1;
                }
                replica.close().await;
            })
        };
        for i in 0..300 {
            let p = format!("spiffe://t/race-{i}");
            store.revoke_principal(&p, "race", "", 2).await.unwrap();
            assert_eq!(
                store.revocations_of(&[&p]).await.unwrap().len(),
                1,
                "{label}: revocation {i} lost to a reload"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.await.unwrap();
        db.cleanup().await;
    }
}

/// Issue 18: a change committed through one store (a replica) wakes another store on the same
/// PostgreSQL database at once, by LISTEN/NOTIFY: a change counter moving and a new policy
/// version each notify; a rolled-back change does not.
#[tokio::test]
async fn a_change_on_one_replica_wakes_the_others() {
    let Some(db) = aims_store::testing::fresh_postgres().await else {
        return;
    };
    let other = Store::connect(&db.url).await.unwrap();
    let mut changes = other.changes();
    // The first connection of the listener counts as a change (it may have missed some).
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the listener connects")
        .unwrap();
    changes.mark_unchanged();
    let wakes = |changes: &tokio::sync::watch::Receiver<u64>| changes.has_changed().unwrap();
    // Nothing committed, nothing heard.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!wakes(&changes));
    for change in ["entry", "revocation", "policy"] {
        match change {
            "entry" => {
                db.store
                    .create_entry(new_entry("spiffe://example.org/n", &["unix:uid:7"]))
                    .await
                    .unwrap();
            }
            "revocation" => {
                db.store.revoke_jti("n-1", i64::MAX / 2).await.unwrap();
            }
            _ => {
                db.store
                    .insert_policy(&PolicyVersionRow {
                        version: 1,
                        hash: "sha256:1".into(),
                        text: "one".into(),
                        created_at: 1,
                        author: "test".into(),
                        application_schema: None,
                        application_entities: None,
                    })
                    .await
                    .unwrap();
            }
        }
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("{change} notified"))
            .unwrap();
        changes.mark_unchanged();
    }
    // Issue 18: a shared secret is made once, by whichever store asks first, and both read it.
    let secret = other.shared_secret("dpop-nonce").await.unwrap();
    assert_eq!(secret.len(), aims_store::SHARED_SECRET_LEN);
    assert_eq!(db.store.shared_secret("dpop-nonce").await.unwrap(), secret);
    assert_ne!(db.store.shared_secret("another").await.unwrap(), secret);
    // A rolled-back counter move notifies nobody (NOTIFY is delivered at commit).
    {
        let mut tx = db.store.pool().begin().await.unwrap();
        sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'registration'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wakes(&changes));
    // A SQLite store has one server: its generation never moves by itself.
    let sqlite = aims_store::testing::fresh_sqlite().await;
    let local = sqlite.store.changes();
    sqlite
        .store
        .create_entry(new_entry("spiffe://example.org/s", &["unix:uid:8"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!local.has_changed().unwrap());
    other.close().await;
    sqlite.cleanup().await;
    db.cleanup().await;
}

/// Issue 18: a lease is held by one replica at a time; the other gets none until the holder
/// gives it up or its connection dies, then takes it. SQLite's single server always holds it.
#[tokio::test]
async fn a_lease_is_held_by_one_replica_at_a_time() {
    let sqlite = tempfile::tempdir().unwrap();
    let single = Store::open_sqlite(&sqlite.path().join("aims.db"))
        .await
        .unwrap();
    assert!(
        single
            .lease(LeaseName::AuditSequencer)
            .hold()
            .await
            .unwrap()
    );

    let Some(db) = aims_store::testing::fresh_postgres().await else {
        return;
    };
    let other = Store::connect(&db.url).await.unwrap();
    let mut first = db.store.lease(LeaseName::AuditSequencer);
    assert!(first.hold().await.unwrap(), "nobody holds it yet");
    assert!(
        first.hold().await.unwrap(),
        "kept while its connection answers"
    );
    let mut second = other.lease(LeaseName::AuditSequencer);
    for _ in 0..3 {
        assert!(
            !second.hold().await.unwrap(),
            "a second replica took a held lease"
        );
    }
    drop(first);
    // PostgreSQL ends the holder's session once its connection closes, releasing the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !second.hold().await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(second.hold().await.unwrap());
    assert!(
        !db.store
            .lease(LeaseName::AuditSequencer)
            .hold()
            .await
            .unwrap()
    );
}

/// Issue 18 (incremental sync): every registration change is read back in commit order, without
/// gaps, with the entry's current row, from any sequence number a reader holds; concurrent
/// writers cannot leave a hole a reader would skip.
#[tokio::test]
async fn registration_changes_are_read_in_order_without_gaps() {
    use aims_store::{ChangesSince, RegistrationChange};
    for db in fresh_stores().await {
        let store = &db.store;
        let label = db.label();
        let changes = |since, limit| async move {
            match store
                .registration_changes_since(since, limit)
                .await
                .unwrap()
            {
                ChangesSince::Changes(c) => c,
                ChangesSince::Gone => panic!("{label}: log gone at {since}"),
            }
        };
        let (s0, entries) = store.registration_snapshot().await.unwrap();
        assert!(entries.is_empty(), "{label}");
        let a = store
            .create_entry(new_entry("spiffe://example.org/a", &["unix:uid:1"]))
            .await
            .unwrap();
        let b = store
            .create_entry(new_entry("spiffe://example.org/b", &["unix:uid:2"]))
            .await
            .unwrap();
        let a2 = store
            .update_entry(
                &a.id,
                EntryUpdate {
                    disabled: Some(true),
                    ..EntryUpdate::default()
                },
            )
            .await
            .unwrap();
        store.delete_entry(&b.id).await.unwrap();
        let node = AttestedNode {
            spiffe_id: id("spiffe://example.org/agent/n"),
            attestation_type: "join_token".into(),
            cert_serial: "01".into(),
            cert_not_after: 1_900_000_000,
            selectors: vec![],
            banned: false,
        };
        store.upsert_node(&node).await.unwrap();
        assert!(store.ban_node(&node.spiffe_id).await.unwrap().banned);
        assert!(store.get_node(&node.spiffe_id).await.unwrap().banned);
        assert!(matches!(
            store.ban_node(&id("spiffe://example.org/agent/none")).await,
            Err(StoreError::NotFound(_))
        ));

        let all = changes(s0, 100).await;
        assert_eq!(all.sequence, s0 + 5, "{label}");
        assert!(!all.more);
        // Each change carries the entry's row as it is now, so replaying converges.
        let current = |e: &aims_store::RegistrationEntry| RegistrationChange::Entry {
            id: e.id.clone(),
            entry: Some(e.clone()),
        };
        let gone = RegistrationChange::Entry {
            id: b.id.clone(),
            entry: None,
        };
        assert_eq!(
            all.changes,
            vec![
                current(&a2),
                gone.clone(),
                current(&a2),
                gone,
                RegistrationChange::Node(node.spiffe_id.clone()),
            ],
            "{label}"
        );
        // Paged, and resumed exactly where a reader stopped.
        let first = changes(s0, 2).await;
        assert_eq!(
            (first.sequence, first.changes.len(), first.more),
            (s0 + 2, 2, true)
        );
        let rest = changes(first.sequence, 100).await;
        assert_eq!(rest.changes, all.changes[2..].to_vec(), "{label}");
        let none = changes(all.sequence, 100).await;
        assert_eq!((none.sequence, none.changes.len()), (all.sequence, 0));
        // Further back than the log reaches: a reload, never a silent gap.
        assert_eq!(
            store.registration_changes_since(-1, 100).await.unwrap(),
            ChangesSince::Gone,
            "{label}"
        );

        // Twenty writers at once: twenty consecutive sequence numbers, none lost.
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..20 {
            let store = store.clone();
            writes.spawn(async move {
                store
                    .create_entry(new_entry(
                        &format!("spiffe://example.org/w{i}"),
                        &["unix:uid:3"],
                    ))
                    .await
                    .unwrap()
            });
        }
        let created = writes.join_all().await;
        let burst = changes(all.sequence, 100).await;
        assert_eq!(burst.sequence, all.sequence + 20, "{label}");
        let mut seen: Vec<_> = burst
            .changes
            .iter()
            .map(|c| match c {
                RegistrationChange::Entry { id, entry: Some(_) } => id.clone(),
                other => panic!("{label}: {other:?}"),
            })
            .collect();
        let mut ids: Vec<_> = created.iter().map(|e| e.id.clone()).collect();
        seen.sort();
        ids.sort();
        assert_eq!(seen, ids, "{label}");
        let (s1, entries) = store.registration_snapshot().await.unwrap();
        assert_eq!((s1, entries.len()), (burst.sequence, 21), "{label}");
        db.cleanup().await;
    }
}
