//! The audit log (issue 8): durable appends per second with group commit on SQLite and on
//! PostgreSQL against one durable INSERT per transaction on the same store; how soon a signed
//! checkpoint covers an acknowledged append; inclusion-proof generation at 10 million entries
//! against one indexed lookup of the same table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aims_audit::merkle::{self, Hash};
use aims_audit::{
    AuditLog, AuditRecord, Checkpointer, NoteSigner, Outcome, RecordKind, TiledFrontier,
    TreeReader, leaf_hash,
};
use aims_credentials::{KeyType, PrivateKey};
use aims_store::testing::TestDatabase;
use aims_store::{AUDIT_TILE_WIDTH, CheckpointRow, NewAuditRow, Store, audit_tile_id};

use crate::measure::{Measurement, Timing, summarize};
use crate::report::{Row, ScenarioReport};

/// Concurrent appenders (each waits for its record to be durable before the next).
const APPENDERS: usize = 512;
/// Leaves in the proof benchmark's tree.
const PROOF_LEAVES: u64 = 10_000_000;

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(RecordKind::Decision, "call_tool", 1_764_000_000_000);
    r.source = "spiffe://bench.example/aims/gateway".into();
    r.agent = Some("spiffe://bench.example/agent/planner".into());
    r.delegated_subject = Some("alice@example.org".into());
    // A gateway records its route's resource: a few per gateway, not one per call.
    r.resource = Some(format!("https://tools.example/weather/{}", i % 16));
    r.decision = Some(Outcome::Allow);
    r.reason = Some("allow-weather".into());
    r.correlation_id = Some(format!("{i:032x}"));
    r.posture = Some("unix:uid:1000".into());
    r.policy_version = Some(3);
    // The call's transaction token, minted by the gateway, named by hash.
    r.issued = Some(format!(
        "txn_token:{}",
        aims_credentials::jose::sha256_b64url(&i.to_be_bytes())
    ));
    r
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// One durable INSERT per transaction, one writer: the store's own commit rate.
async fn single_commits(store: &Store, timing: Timing) -> anyhow::Result<Measurement> {
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < timing.measure {
        let bytes = serde_json::to_string(&record(i))?;
        let row = NewAuditRow {
            leaf_hash: leaf_hash(bytes.as_bytes()),
            record: bytes,
            correlation_id: None,
        };
        let t = Instant::now();
        store.append_audit(&[row], 0).await?;
        samples.push(nanos(t.elapsed()));
        i += 1;
    }
    Ok(summarize(samples, start.elapsed().as_secs_f64()))
}

/// `APPENDERS` tasks appending through the group-committing writer, while a checkpointer signs
/// four times a second (as the server does); returns the appends, the checkpoint lag (ack →
/// covered) and the intervals between signed checkpoints.
async fn group_commits(
    store: &Store,
    timing: Timing,
) -> anyhow::Result<(Measurement, Measurement, Measurement)> {
    let (log, writer) = AuditLog::start(store.clone());
    let key = Arc::new(PrivateKey::generate(KeyType::Ed25519)?);
    let signer = NoteSigner::new("bench.example/audit", key)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let checkpointer = tokio::spawn(
        Checkpointer::new(store.clone(), signer, "bench.example/audit".into())
            .run(Duration::from_millis(250), stop.clone()),
    );
    // Watch checkpoints: when each size was first seen signed.
    let seen: Arc<std::sync::Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (store, seen, watching) = (store.clone(), seen.clone(), watching.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while watching.load(Ordering::Relaxed) {
                if let Ok(Some(cp)) = store.latest_audit_checkpoint().await
                    && cp.size > last
                {
                    last = cp.size;
                    if let Ok(mut s) = seen.lock() {
                        s.push((cp.size, Instant::now()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(timing.warmup).await;
    let deadline = Instant::now() + timing.measure;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..APPENDERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(u32, u64, Instant)> = Vec::new();
            let mut i = a as u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let Ok(done) = log.append(&[record(i)]).await else {
                    break;
                };
                let acked = Instant::now();
                out.push((nanos(acked - t), done.indexes.start, acked));
                i += APPENDERS as u64;
            }
            out
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let the last checkpoint cover the tail, then stop.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    watching.store(false, Ordering::Relaxed);
    watcher.await?;
    stop.cancel();
    checkpointer.await?;
    log.close();
    writer.await?;
    let appends = summarize(acks.iter().map(|a| a.0).collect(), elapsed);
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let lags: Vec<u32> = acks
        .iter()
        .filter_map(|(_, index, acked)| {
            seen.iter()
                .find(|(size, _)| *size > *index)
                .map(|(_, at)| nanos(at.saturating_duration_since(*acked)))
        })
        .collect();
    anyhow::ensure!(
        lags.len() == acks.len(),
        "an acknowledged append was never checkpointed"
    );
    let gaps: Vec<u32> = seen.windows(2).map(|w| nanos(w[1].1 - w[0].1)).collect();
    Ok((appends, summarize(lags, elapsed), summarize(gaps, elapsed)))
}

/// Fills `store` with the tree of `n` synthetic leaves (as the checkpointer stores it: in
/// tiles) and returns the root and the number of tiles.
async fn build_tree(store: &Store, n: u64) -> anyhow::Result<(Hash, usize)> {
    let mut frontier = TiledFrontier::default();
    let mut tiles = std::collections::HashSet::new();
    let started = Instant::now();
    for i in 0..n {
        frontier.push(leaf_hash(&i.to_be_bytes()));
        if i % 200_000 == 199_999 || i + 1 == n {
            let cp = CheckpointRow {
                size: i + 1,
                note: String::new(),
                created_at: 0,
            };
            let batch = frontier.take_tiles();
            tiles.extend(batch.iter().map(|(id, _)| *id));
            store.put_audit_tree(&batch, &cp).await?;
        }
        if i % 1_000_000 == 999_999 {
            eprintln!(
                "    {} M leaves stored ({:.0}s)",
                (i + 1) / 1_000_000,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok((frontier.root(), tiles.len()))
}

/// Inclusion proofs of random leaves at `n` leaves, each checked against the root (outside
/// the timing), against one indexed lookup of a stored tile.
async fn proofs(
    store: &Store,
    n: u64,
    root: Hash,
    timing: Timing,
) -> anyhow::Result<(Measurement, Measurement)> {
    let reader = TreeReader::new(store.clone());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let (mut proof_ns, mut lookup_ns) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < timing.measure {
        let i = next();
        let t = Instant::now();
        let (leaf, path) = reader.inclusion_proof(i, n).await?;
        proof_ns.push(nanos(t.elapsed()));
        anyhow::ensure!(
            merkle::verify_inclusion(i, n, &leaf, &path, &root),
            "proof {i} does not verify"
        );
        let j = next();
        let t = Instant::now();
        let got = store
            .audit_tiles(&[audit_tile_id(0, j / AUDIT_TILE_WIDTH)])
            .await?;
        lookup_ns.push(nanos(t.elapsed()));
        anyhow::ensure!(got.len() == 1, "leaf {j} missing");
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((summarize(proof_ns, secs), summarize(lookup_ns, secs)))
}

/// `audit`.
pub fn audit(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        let dbs: Vec<TestDatabase> = aims_store::testing::fresh_stores().await;
        for db in dbs {
            let label = db.label();
            eprintln!("  audit on {label}: one commit per record, then group commit with {APPENDERS} appenders…");
            let single = single_commits(&db.store, timing).await?;
            let (group, lag, gaps) = group_commits(&db.store, timing).await?;
            // Every record a gateway call's (with its tree nodes and the checkpoints signed
            // meanwhile): what the log costs per call.
            let st = db.store.audit_storage().await?;
            notes.push(format!(
                "{label}: the log holds {} records in {} bytes: {} bytes per record (one record per gateway call), tree nodes, checkpoints and indexes included",
                st.records,
                st.bytes,
                st.bytes.checked_div(st.records).unwrap_or(0)
            ));
            let base = format!("{label}: one durable INSERT per transaction");
            rows.push(Row::baseline(&base, single.clone()));
            rows.push(Row::against(
                &format!("{label}: durable appends, group commit ({APPENDERS} appenders)"),
                group,
                &base,
                single.ops_per_sec,
                None,
            ));
            rows.push(Row::latency(
                &format!("{label}: append acknowledged → covered by a signed checkpoint"),
                lag,
            ));
            rows.push(Row::latency(
                &format!("{label}: interval between signed checkpoints under that load"),
                gaps,
            ));
            db.cleanup().await;
        }
        eprintln!("  audit: building a {PROOF_LEAVES}-leaf tree on SQLite…");
        let db = aims_store::testing::fresh_sqlite().await;
        let t = Instant::now();
        let (root, tiles) = build_tree(&db.store, PROOF_LEAVES).await?;
        notes.push(format!(
            "the {PROOF_LEAVES}-leaf tree ({tiles} stored tiles of up to {AUDIT_TILE_WIDTH} hashes) took {:.0} s to build on SQLite; its checkpoint rows are unsigned (only proof generation is measured)",
            t.elapsed().as_secs_f64()
        ));
        let (proof, lookup) = proofs(&db.store, PROOF_LEAVES, root, timing).await?;
        let base = "sqlite, 10M leaves: one indexed lookup of a stored tile";
        rows.push(Row::baseline(base, lookup.clone()));
        let latency_ratio = proof.p50_us / lookup.p50_us.max(1e-9);
        rows.push(Row::latency("sqlite, 10M leaves: inclusion proof (certified leaf + path from tiles, one query), verified", proof));
        notes.push(format!("an inclusion proof at 10M leaves costs {latency_ratio:.1}× one indexed lookup (p50)"));
        db.cleanup().await;
        notes.push("Tessera publishes about 3,000 appends/s on one node (POSIX; anchors.md §7): not measured here".into());
        Ok(ScenarioReport {
            scenario: "audit".into(),
            description: "durable audit appends (SQLite, PostgreSQL), checkpoint lag, inclusion proofs at 10M entries".into(),
            rows,
            notes,
        })
    })
}
