//! The audit log on both backends (AIMS MO-1, MO-8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aims_audit::{AuditLog, AuditRecord, Outcome, RecordKind, leaf_hash};
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
