//! The audit log on both backends (AIMS MO-1, MO-8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aims_audit::{
    AuditLog, AuditRecord, Checkpoint, Checkpointer, LogEntry, LogVerifier, NoteSigner,
    NoteVerifier, Outcome, RecordKind, TreeError, TreeReader, Verified, VerifyError, leaf_hash,
    merkle, read_entries, read_task,
};
use aims_credentials::{KeyType, PrivateKey};
use aims_store::testing::fresh_stores;

#[test]
fn leaf_hashes_follow_rfc_9162() {
    // RFC 6962/9162 test vector: the hash of the empty leaf.
    assert_eq!(
        hex::encode(leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(RecordKind::Decision, "call", 1_000 + i as i64);
    r.agent = Some("spiffe://aims.test/agent/a".into());
    r.resource = Some(format!("tool-{i}"));
    r.decision = Some(Outcome::Allow);
    r.policy_version = Some(1);
    r
}

#[tokio::test]
async fn concurrent_appends_are_durable_contiguous_and_hashed() {
    for db in fresh_stores().await {
        let (log, writer) = AuditLog::start(db.store.clone());
        let mut tasks = Vec::new();
        for t in 0..50 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let batch: Vec<_> = (0..4).map(|i| record(t * 4 + i)).collect();
                (t, log.append(&batch).await.unwrap())
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            let (task, appended) = t.await.unwrap();
            assert_eq!(appended.indexes.end - appended.indexes.start, 4);
            seen.push((appended.indexes.start, task));
        }
        seen.sort();
        // Every batch contiguous, no index twice, no gap.
        for (k, (start, _)) in seen.iter().enumerate() {
            assert_eq!(*start, k as u64 * 4, "{}", db.label());
        }
        assert_eq!(db.store.audit_len().await.unwrap(), 200);
        let entries = read_entries(&db.store, 0, 200).await.unwrap();
        for (e, (start, task)) in entries.chunks(4).zip(&seen) {
            assert_eq!(e[0].index, *start);
            let stored: AuditRecord = e[0].parsed().unwrap();
            assert_eq!(stored, record(task * 4));
            assert_eq!(
                e[0].record,
                serde_json::to_string(&record(task * 4)).unwrap()
            );
            assert_eq!(
                e[0].leaf_hash,
                hex::encode(leaf_hash(e[0].record.as_bytes()))
            );
        }
        drop(log);
        writer.await.unwrap();
        db.cleanup().await;
    }
}

#[tokio::test]
async fn closing_commits_what_was_queued_and_refuses_the_rest() {
    let dbs = fresh_stores().await;
    let db = dbs.into_iter().next().unwrap();
    let (log, writer) = AuditLog::start(db.store.clone());
    let appends: Vec<_> = (0..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&[record(i)]).await })
        })
        .collect();
    let mut ok = 0;
    for a in appends {
        ok += usize::from(a.await.unwrap().is_ok());
    }
    // Submitted without waiting: committed before the writer stops.
    log.submit(&[record(50)]).await.unwrap();
    log.close();
    writer.await.unwrap();
    assert!(matches!(
        log.append(&[record(99)]).await,
        Err(aims_audit::AppendError::Closed)
    ));
    // Every acknowledged or submitted record is there, and nothing else.
    assert_eq!(db.store.audit_len().await.unwrap(), ok as u64 + 1);
    assert_eq!(ok, 20);
    db.cleanup().await;
}

fn signer() -> NoteSigner {
    let key = Arc::new(PrivateKey::generate(KeyType::Ed25519).unwrap());
    NoteSigner::new("aims.test/audit", key).unwrap()
}

async fn export(store: &aims_store::Store) -> Vec<LogEntry> {
    let n = store.audit_len().await.unwrap();
    read_entries(store, 0, n + 10).await.unwrap()
}

/// Changes the store behind the log's back, as an attacker with database access would.
async fn edit(store: &aims_store::Store, sql: &'static str) {
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

fn verify(note: &str, vkey: &str, entries: &[LogEntry]) -> Result<Verified, VerifyError> {
    let mut v = LogVerifier::new(note, &NoteVerifier::from_vkey(vkey).unwrap())?;
    for e in entries {
        v.check(e)?;
    }
    v.finish()
}

/// AIMS MO-7: checkpoints sign the stored tree; proofs read from it verify against them; an
/// exported log verifies offline, and a tampered, deleted or reordered entry is named.
#[tokio::test]
async fn checkpoints_proofs_and_offline_verification() {
    for db in fresh_stores().await {
        let (log, writer) = AuditLog::start(db.store.clone());
        let signer = signer();
        let vkey = signer.vkey();
        let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
        let cp = Checkpointer::new(db.store.clone(), signer.clone(), "aims.test/audit".into());
        assert!(cp.step(1).await.unwrap().is_none(), "nothing to sign yet");
        let mut heads = Vec::new();
        // Sizes on both sides of a full tile (256 hashes, C2SP tlog-tiles); the last step by a
        // checkpointer that starts from the stored tree, its partial tiles at two levels.
        for (k, n) in [37usize, 1, 64, 100, 54, 1, 343].into_iter().enumerate() {
            let batch: Vec<_> = (0..n).map(|i| record(k * 1000 + i)).collect();
            log.append(&batch).await.unwrap();
            let row = if k == 6 {
                let cold =
                    Checkpointer::new(db.store.clone(), signer.clone(), "aims.test/audit".into());
                cold.step(2).await.unwrap().unwrap()
            } else {
                cp.step(2).await.unwrap().unwrap()
            };
            heads.push(Checkpoint::open(&row.note, &verifier).unwrap());
        }
        let sizes: Vec<u64> = heads.iter().map(|h| h.size).collect();
        assert_eq!(sizes, vec![37, 38, 102, 202, 256, 257, 600]);
        let tree = TreeReader::new(db.store.clone());
        let rows = read_entries(&db.store, 0, 700).await.unwrap();
        let leaves: Vec<_> = rows
            .iter()
            .map(|r| leaf_hash(r.record.as_bytes()))
            .collect();
        for head in &heads {
            assert_eq!(merkle::root(&leaves[..head.size as usize]), head.root);
        }
        for head in &heads {
            for i in (0..head.size).step_by(7).chain([head.size - 1]) {
                let (leaf, proof) = tree.inclusion_proof(i, head.size).await.unwrap();
                assert_eq!(leaf, leaf_hash(rows[i as usize].record.as_bytes()));
                assert!(merkle::verify_inclusion(
                    i, head.size, &leaf, &proof, &head.root
                ));
            }
        }
        for a in &heads {
            for b in heads.iter().filter(|b| b.size >= a.size) {
                let proof = tree.consistency_proof(a.size, b.size).await.unwrap();
                assert!(merkle::verify_consistency(
                    a.size, b.size, &a.root, &b.root, &proof
                ));
            }
        }
        assert!(tree.inclusion_proof(600, 600).await.is_err());

        // The whole log verifies offline against the newest checkpoint.
        let note = db
            .store
            .latest_audit_checkpoint()
            .await
            .unwrap()
            .unwrap()
            .note;
        let entries = export(&db.store).await;
        assert_eq!(verify(&note, &vkey, &entries).unwrap().entries, 600);
        let bad_index = |r: Result<Verified, VerifyError>| match r {
            Err(VerifyError::Bad { index, .. }) => index,
            other => panic!("{other:?}"),
        };
        let mut altered = entries.clone();
        altered[150].record = altered[150].record.replace("tool-", "tool+");
        assert_eq!(bad_index(verify(&note, &vkey, &altered)), 150);
        let mut deleted = entries.clone();
        deleted.remove(40);
        assert_eq!(bad_index(verify(&note, &vkey, &deleted)), 40);
        let mut truncated = entries.clone();
        truncated.pop();
        assert_eq!(bad_index(verify(&note, &vkey, &truncated)), 599);
        let mut swapped = entries.clone();
        let (a, b) = (swapped[7].record.clone(), swapped[8].record.clone());
        swapped[7].record = b;
        swapped[8].record = a;
        assert_eq!(bad_index(verify(&note, &vkey, &swapped)), 7);
        // Rewriting the certified hash along with the record breaks the signed root.
        let mut rewritten = entries.clone();
        rewritten[3].record = rewritten[3].record.replace("tool-", "tool+");
        rewritten[3].certified_hash = Some(hex::encode(leaf_hash(rewritten[3].record.as_bytes())));
        assert_eq!(verify(&note, &vkey, &rewritten), Err(VerifyError::Root));
        // Another key's checkpoint is refused.
        assert!(matches!(
            verify(&note, &signer_vkey_other(), &entries),
            Err(VerifyError::Checkpoint(_))
        ));

        // A certified hash rewritten in its tile (covering an edit) is named by the export's
        // verification, and a proof read from that tile no longer verifies.
        let id = aims_store::audit_tile_id(0, 1);
        let mut tile = db
            .store
            .audit_tiles(&[id])
            .await
            .unwrap()
            .remove(&id)
            .unwrap();
        tile[(300 - 256) * 32] ^= 1;
        sqlx::query("UPDATE audit_tiles SET hashes = $1 WHERE id = $2")
            .bind(tile)
            .bind(id)
            .execute(db.store.pool())
            .await
            .unwrap();
        assert_eq!(
            bad_index(verify(&note, &vkey, &export(&db.store).await)),
            300
        );
        let (leaf, proof) = tree.inclusion_proof(300, 600).await.unwrap();
        assert!(!merkle::verify_inclusion(
            300,
            600,
            &leaf,
            &proof,
            &heads[6].root
        ));

        // A record edited in the store after its append is never signed.
        log.append(&[record(5000), record(5001)]).await.unwrap();
        edit(
            &db.store,
            "UPDATE audit_log SET record = '{\"forged\":true}' WHERE idx = 601",
        )
        .await;
        assert!(matches!(
            cp.step(3).await,
            Err(TreeError::Tampered { index: 601 })
        ));
        drop(log);
        writer.await.unwrap();
        db.cleanup().await;
    }
}

/// Issue 17: records are stored compactly, their repeated strings once; a shared string
/// edited in the store changes every record naming it, and each of them is named.
#[tokio::test]
async fn shared_strings_are_stored_once_and_their_tampering_is_named() {
    for db in fresh_stores().await {
        let (log, writer) = AuditLog::start(db.store.clone());
        let signer = signer();
        let vkey = signer.vkey();
        let cp = Checkpointer::new(db.store.clone(), signer, "aims.test/audit".into());
        let mut batch: Vec<_> = (0..30).map(|i| record(i % 3)).collect();
        batch[4].correlation_id = Some("task-4".into());
        batch[4].chain = vec!["spiffe://aims.test/agent/planner".into()];
        batch[4].reason = Some("r".repeat(500));
        // A NUL (which PostgreSQL's TEXT refuses) in a writer's string fails nothing.
        batch[5].resource = Some("tool\u{0}nul".into());
        log.append(&batch).await.unwrap();
        cp.step(1).await.unwrap().unwrap();
        let stored = db.store.audit_rows(0, 30).await.unwrap();
        assert!(stored.iter().all(|r| !r.record.contains("spiffe://")));
        let strings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_strings")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        // The agent, three resources, "call", the planner (the long reason stays inline).
        assert_eq!(strings, 6, "{}", db.label());
        let entries = read_entries(&db.store, 0, 30).await.unwrap();
        for (e, r) in entries.iter().zip(&batch) {
            assert_eq!(e.parsed().unwrap(), *r);
        }
        let task = read_task(&db.store, "task-4", 10).await.unwrap();
        assert_eq!(task.len(), 1);
        assert_eq!(task[0].parsed().unwrap(), batch[4]);
        let note = db
            .store
            .latest_audit_checkpoint()
            .await
            .unwrap()
            .unwrap()
            .note;
        assert_eq!(verify(&note, &vkey, &entries).unwrap().entries, 30);

        // "tool-1" is the resource of records 1, 4, 7 …: the first of them is named.
        edit(
            &db.store,
            "UPDATE audit_strings SET value = 'tool-9' WHERE value = 'tool-1'",
        )
        .await;
        let edited = read_entries(&db.store, 0, 30).await.unwrap();
        assert!(matches!(
            verify(&note, &vkey, &edited),
            Err(VerifyError::Bad { index: 1, .. })
        ));
        // A shared string removed: the record reads back as its stored form, named too.
        edit(
            &db.store,
            "DELETE FROM audit_strings WHERE value = 'tool-9'",
        )
        .await;
        let gone = read_entries(&db.store, 0, 30).await.unwrap();
        assert_eq!(gone.len(), 30);
        assert_eq!(gone[1].record, stored[1].record);
        assert!(matches!(
            verify(&note, &vkey, &gone),
            Err(VerifyError::Bad { index: 1, .. })
        ));
        // Before a checkpoint covers them, such records are never signed.
        log.append(&[record(1)]).await.unwrap();
        assert!(matches!(
            cp.step(2).await,
            Err(TreeError::Tampered { index: 30 })
        ));
        drop(log);
        writer.await.unwrap();
        db.cleanup().await;
    }
}

/// The store key of a tree node before tiles: `level · 2^48 + index`.
fn legacy_node_id(s: merkle::Subtree) -> i64 {
    (i64::from(s.level) << 48) | s.index as i64
}

/// Issue 17: a log written before the compact form (JSON text, hex hashes) and before tiles
/// (a row per tree node) reads back byte for byte after the migrations, proves and verifies
/// against its old checkpoint, and grows on from it: its nodes moved into their tiles.
#[tokio::test]
async fn a_log_from_before_the_compact_form_migrates_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![(
        format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display()),
        None,
    )];
    if let Some((url, name)) = aims_store::testing::fresh_postgres_url().await {
        urls.push((url, Some(name)));
    }
    for (url, pg_name) in urls {
        aims_store::testing::migrate_to(&url, 12).await;
        let signer = signer();
        let vkey = signer.vkey();
        let old: Vec<String> = (0..600)
            .map(|i| serde_json::to_string(&record(i)).unwrap())
            .collect();
        {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            let mut frontier = merkle::Frontier::default();
            for (i, json) in old.iter().enumerate() {
                let leaf = leaf_hash(json.as_bytes());
                sqlx::query(
                    "INSERT INTO audit_log (idx, leaf_hash, record, appended_at, correlation_id) \
                     VALUES ($1, $2, $3, 7, $4)",
                )
                .bind(i as i64)
                .bind(hex::encode(leaf))
                .bind(json)
                .bind(format!("task-{}", i % 2))
                .execute(&mut *tx)
                .await
                .unwrap();
                for (subtree, hash) in frontier.push(leaf) {
                    sqlx::query("INSERT INTO audit_nodes (id, hash) VALUES ($1, $2)")
                        .bind(legacy_node_id(subtree))
                        .bind(hex::encode(hash))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
            }
            let head = Checkpoint {
                origin: "aims.test/audit".into(),
                size: 600,
                root: frontier.root(),
            };
            sqlx::query(
                "INSERT INTO audit_checkpoints (size, note, created_at) VALUES (600, $1, 7)",
            )
            .bind(signer.sign(&head.to_text()).unwrap())
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            pool.close().await;
        }
        let store = aims_store::Store::connect(&url).await.unwrap();
        let entries = read_entries(&store, 0, 1000).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
            old
        );
        let note = store.latest_audit_checkpoint().await.unwrap().unwrap().note;
        assert_eq!(verify(&note, &vkey, &entries).unwrap().entries, 600);
        assert_eq!(read_task(&store, "task-1", 1000).await.unwrap().len(), 300);
        let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
        let a = Checkpoint::open(&note, &verifier).unwrap();
        let tree = TreeReader::new(store.clone());
        for i in [0, 255, 256, 300, 511, 512, 599] {
            let (leaf, proof) = tree.inclusion_proof(i, 600).await.unwrap();
            assert!(merkle::verify_inclusion(i, 600, &leaf, &proof, &a.root));
        }
        // New records go in compact; the next checkpoint extends the old tree consistently.
        let (log, writer) = AuditLog::start(store.clone());
        log.append(&[record(100), record(101)]).await.unwrap();
        let cp = Checkpointer::new(store.clone(), signer, "aims.test/audit".into());
        let row = cp.step(8).await.unwrap().unwrap();
        let b = Checkpoint::open(&row.note, &verifier).unwrap();
        let proof = tree.consistency_proof(600, 602).await.unwrap();
        assert!(merkle::verify_consistency(
            600, 602, &a.root, &b.root, &proof
        ));
        let all = read_entries(&store, 0, 1000).await.unwrap();
        assert!(
            store.audit_rows(600, 2).await.unwrap()[0]
                .record
                .starts_with('[')
        );
        assert_eq!(verify(&row.note, &vkey, &all).unwrap().entries, 602);
        drop(log);
        writer.await.unwrap();
        store.close().await;
        if let Some(name) = pg_name {
            aims_store::testing::drop_postgres_database(&name).await;
        }
    }
}

fn signer_vkey_other() -> String {
    signer().vkey()
}
