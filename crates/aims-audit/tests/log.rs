//! The audit log on both backends (AIMS MO-1, MO-8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aims_audit::{
    AuditLog, AuditRecord, Checkpoint, Checkpointer, LogEntry, LogVerifier, NoteSigner,
    NoteVerifier, Outcome, RecordKind, TreeError, TreeReader, Verified, VerifyError, leaf_hash,
    merkle,
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
        let rows = db.store.audit_rows(0, 200).await.unwrap();
        for (row, (start, task)) in rows.chunks(4).zip(&seen) {
            assert_eq!(row[0].idx, *start);
            let stored: AuditRecord = serde_json::from_str(&row[0].record).unwrap();
            assert_eq!(stored, record(task * 4));
            assert_eq!(
                row[0].leaf_hash,
                hex::encode(leaf_hash(row[0].record.as_bytes()))
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
    store
        .audit_rows(0, n + 10)
        .await
        .unwrap()
        .into_iter()
        .map(LogEntry::from)
        .collect()
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
        let cp = Checkpointer::new(db.store.clone(), signer, "aims.test/audit".into());
        assert!(cp.step(1).await.unwrap().is_none(), "nothing to sign yet");
        let mut heads = Vec::new();
        for (k, n) in [37usize, 1, 64, 100].into_iter().enumerate() {
            let batch: Vec<_> = (0..n).map(|i| record(k * 1000 + i)).collect();
            log.append(&batch).await.unwrap();
            let row = cp.step(2).await.unwrap().unwrap();
            heads.push(Checkpoint::open(&row.note, &verifier).unwrap());
        }
        let sizes: Vec<u64> = heads.iter().map(|h| h.size).collect();
        assert_eq!(sizes, vec![37, 38, 102, 202]);
        let tree = TreeReader::new(db.store.clone());
        let rows = db.store.audit_rows(0, 300).await.unwrap();
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
        assert!(tree.inclusion_proof(202, 202).await.is_err());

        // The whole log verifies offline against the newest checkpoint.
        let note = db
            .store
            .latest_audit_checkpoint()
            .await
            .unwrap()
            .unwrap()
            .note;
        let entries = export(&db.store).await;
        assert_eq!(verify(&note, &vkey, &entries).unwrap().entries, 202);
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
        assert_eq!(bad_index(verify(&note, &vkey, &truncated)), 201);
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

        // A record edited in the store after its append is never signed.
        log.append(&[record(5000), record(5001)]).await.unwrap();
        sqlx::query("UPDATE audit_log SET record = '{\"forged\":true}' WHERE idx = 203")
            .execute(db.store.pool())
            .await
            .unwrap();
        assert!(matches!(
            cp.step(3).await,
            Err(TreeError::Tampered { index: 203 })
        ));
        drop(log);
        writer.await.unwrap();
        db.cleanup().await;
    }
}

fn signer_vkey_other() -> String {
    signer().vkey()
}
