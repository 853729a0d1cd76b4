//! The audit log end to end through `aims server` (AIMS MO-6, MO-7): records appended over the
//! mutual-TLS API, signed checkpoints, `aims audit verify` naming the first bad index after a
//! stored record is altered, deleted or two are swapped, and no acknowledged record lost to
//! kill -9.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

const TD: &[&str] = &["--trust-domain", "aims.local"];

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Aims, assert_ok, eventually, stderr};
use serde_json::{Value, json};

fn workload_client(server: &Aims, name: &str) -> reqwest::Client {
    common::workload_client(server, name, &[])
}

fn record(marker: &str) -> Value {
    json!({"time_ms": 1_700_000_000_000i64, "kind": "decision", "action": "call",
           "agent": "spiffe://aims.local/agent/a", "resource": marker, "decision": "allow",
           "correlation_id": "task-1"})
}

/// Appends `records`; the first index once they are durable.
async fn append(client: &reqwest::Client, server: &Aims, records: &[Value]) -> Result<u64, String> {
    let url = format!(
        "{}/audit/v1/records",
        server.up["server"]["oauth_mtls"].as_str().unwrap()
    );
    let r = client
        .post(url)
        .json(&records)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("status {}", r.status()));
    }
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(body["first"].as_u64().unwrap())
}

/// `aims audit verify` once a checkpoint covers `size` entries.
fn verified(server: &Aims, size: u64) -> String {
    eventually(
        Duration::from_secs(10),
        "a checkpoint covering the log",
        || {
            let out = server.cli(&["audit", "verify"]);
            let text = common::stdout(&out);
            (out.status.success() && text.contains(&format!("at size {size} "))).then_some(text)
        },
    )
}

fn db(data_dir: &Path, rt: &tokio::runtime::Runtime) -> aims_store::Store {
    rt.block_on(aims_store::Store::connect(&format!(
        "sqlite://{}?mode=rw",
        data_dir.join("aims.db").display()
    )))
    .unwrap()
}

fn sql(rt: &tokio::runtime::Runtime, store: &aims_store::Store, q: &str) {
    rt.block_on(sqlx::query(sqlx::AssertSqlSafe(q.to_owned())).execute(store.pool()))
        .unwrap();
}

fn verify_fails_at(server: &Aims, index: u64) {
    let out = server.cli(&["audit", "verify"]);
    assert!(!out.status.success(), "verify passed a tampered log");
    let err = stderr(&out);
    assert!(err.contains(&format!("entry {index}:")), "{err}");
}

/// AIMS MO-7: the log verifies; an altered, a deleted and two swapped stored records each make
/// `aims audit verify` fail and name the first bad index; an export verifies offline.
#[test]
fn verify_names_the_first_altered_deleted_or_reordered_record() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Aims::start("server", TD);
    let client = workload_client(&server, "auditor");
    let records: Vec<Value> = (0..40).map(|i| record(&format!("tool-{i}"))).collect();
    assert_eq!(rt.block_on(append(&client, &server, &records)).unwrap(), 0);
    let text = verified(&server, 40);
    assert!(text.contains("40 entries"), "{text}");
    // What they take in the store.
    let stats: Value = serde_json::from_str(&assert_ok(
        &server.cli(&["audit", "stats", "--output", "json"]),
    ))
    .unwrap();
    assert_eq!(stats["records"], 40, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() >= 40 * 100, "{stats}");
    assert_eq!(
        stats["bytes_per_record"].as_u64().unwrap(),
        stats["bytes"].as_u64().unwrap() / 40
    );

    // Offline: the export, the checkpoint and the key are all a verifier needs.
    let dir = server.dir.path();
    let log = dir.join("log.jsonl");
    let cp = dir.join("checkpoint");
    assert_ok(&server.cli(&["audit", "export", "--out", log.to_str().unwrap()]));
    std::fs::write(&cp, assert_ok(&server.cli(&["audit", "checkpoint"]))).unwrap();
    let vkey = assert_ok(&server.cli(&["audit", "checkpoint", "--vkey"]));
    let offline = |log: &Path| {
        common::run(&[
            "audit",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--checkpoint",
            cp.to_str().unwrap(),
            "--vkey",
            vkey.trim(),
        ])
    };
    assert_ok(&offline(&log));
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut cut = lines.clone();
    cut.remove(12);
    let cut_file = dir.join("cut.jsonl");
    std::fs::write(&cut_file, cut.join("\n") + "\n").unwrap();
    let out = offline(&cut_file);
    assert!(
        !out.status.success() && stderr(&out).contains("entry 12: missing"),
        "{}",
        stderr(&out)
    );
    // The OpenTelemetry export carries one log record per entry.
    let otlp: Value = serde_json::from_str(&assert_ok(
        &server.cli(&["audit", "export", "--format", "otlp"]),
    ))
    .unwrap();
    assert_eq!(
        otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .len(),
        40
    );

    let store = db(&server.data_dir, &rt);
    // Altered: a decision flipped, then the resource's shared string rewritten.
    sql(
        &rt,
        &store,
        "UPDATE audit_log SET record = replace(record, '\"allow\"', '\"deny\"') WHERE idx = 5",
    );
    verify_fails_at(&server, 5);
    sql(
        &rt,
        &store,
        "UPDATE audit_log SET record = replace(record, '\"deny\"', '\"allow\"') WHERE idx = 5",
    );
    verified(&server, 40);
    sql(
        &rt,
        &store,
        "UPDATE audit_strings SET value = 'tool-x' WHERE value = 'tool-6'",
    );
    verify_fails_at(&server, 6);
    sql(
        &rt,
        &store,
        "UPDATE audit_strings SET value = 'tool-6' WHERE value = 'tool-x'",
    );
    verified(&server, 40);
    // Deleted.
    sql(
        &rt,
        &store,
        "CREATE TABLE saved AS SELECT * FROM audit_log WHERE idx = 7",
    );
    sql(&rt, &store, "DELETE FROM audit_log WHERE idx = 7");
    verify_fails_at(&server, 7);
    sql(&rt, &store, "INSERT INTO audit_log SELECT * FROM saved");
    verified(&server, 40);
    // Two swapped (their hashes with them).
    sql(&rt, &store, "UPDATE audit_log SET idx = -1 WHERE idx = 3");
    sql(&rt, &store, "UPDATE audit_log SET idx = 3 WHERE idx = 4");
    sql(&rt, &store, "UPDATE audit_log SET idx = 4 WHERE idx = -1");
    verify_fails_at(&server, 3);

    // The task's execution chain.
    let trace = assert_ok(&server.cli(&["audit", "trace", "task-1"]));
    assert!(trace.starts_with("task task-1: 40 records"), "{trace}");
    assert!(trace.contains("spiffe://aims.local/agent/a"), "{trace}");
    assert!(
        !server
            .cli(&["audit", "trace", "no-such-task"])
            .status
            .success()
    );
}

/// AIMS MO-6: kill -9 during a stream of appends loses no acknowledged record; after a restart
/// the log verifies.
#[test]
fn kill_9_during_appends_loses_no_acknowledged_record() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join("data");
    let mut server = Aims::start_in(tempfile::tempdir().unwrap(), data_dir.clone(), "server", TD);
    let client = workload_client(&server, "writer");
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let url = server.up["server"]["oauth_mtls"]
        .as_str()
        .unwrap()
        .to_owned();
    // Four writers append one record per request until the server dies.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acked, url) = (client.clone(), acked.clone(), url.clone());
            rt.spawn(async move {
                for i in 0.. {
                    let marker = format!("w{w}-{i}");
                    let r = client
                        .post(format!("{url}/audit/v1/records"))
                        .json(&[record(&marker)])
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push((body["first"].as_u64().unwrap(), marker));
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(10), "appends under way", || {
        (acked.lock().unwrap().len() > 200).then_some(())
    });
    server.proc.kill();
    for w in writers {
        rt.block_on(w).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    drop(server);

    let server = Aims::start_in(tempfile::tempdir().unwrap(), data_dir, "server", TD);
    let entries: Vec<Value> =
        assert_ok(&server.cli(&["audit", "list", "--limit", "100000", "--output", "json"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for (index, marker) in &acked {
        let e = &entries[*index as usize];
        assert_eq!(
            e["record"]["resource"],
            marker.as_str(),
            "acknowledged record {index}"
        );
    }
    verified(&server, entries.len() as u64);
}

/// AIMS CO-1: `aims compliance report` evaluates the shipped rules over the server's evidence
/// and writes JSON and HTML; records without a policy version fail "tool-calls-decided", each
/// finding linked to its entry; `--strict` turns failures into the exit status.
#[test]
fn compliance_reports_are_built_from_the_recorded_evidence() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Aims::start("server", TD);
    let client = workload_client(&server, "gw");
    let mut decided = record("tool-ok");
    decided["policy_version"] = json!(3);
    let undecided = record("tool-undecided");
    rt.block_on(append(&client, &server, &[decided, undecided]))
        .unwrap();
    verified(&server, 2);
    let out = server.dir.path().join("report");
    let run = |strict: bool| {
        let mut args = vec!["compliance", "report", "--out", out.to_str().unwrap()];
        if strict {
            args.push("--strict");
        }
        server.cli(&args)
    };
    let text = assert_ok(&run(false));
    assert!(text.contains("FAIL  tool-calls-decided"), "{text}");
    assert!(text.contains("PASS  audit-log-consistent"), "{text}");
    assert!(text.contains("PASS  no-client-secrets"), "{text}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compliance-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["rules_version"], "aims-default-1");
    let decided_rule = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "tool-calls-decided")
        .unwrap();
    assert_eq!(decided_rule["evaluated"], 2);
    assert_eq!(decided_rule["findings"][0]["audit_indexes"], json!([1]));
    let html = std::fs::read_to_string(out.join("compliance-report.html")).unwrap();
    assert!(html.contains("<a href=\"#entry-1\">entry 1</a>"), "{html}");
    assert!(html.contains("tool-undecided"));
    assert!(!run(true).status.success(), "--strict fails on findings");
    // A rule file of one's own, versioned.
    let rules = server.dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "version = \"acme-2\"\n[[rule]]\nid = \"log\"\ntitle = \"log\"\ncheck = \"audit_log_consistent\"\n",
    )
    .unwrap();
    let text = assert_ok(&server.cli(&[
        "compliance",
        "report",
        "--strict",
        "--rules",
        rules.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("rules acme-2 (1 passed, 0 failed)"), "{text}");
}

/// The log's C2SP tlog-tiles, read over the mutual-TLS API by any workload of the domain.
struct Tiles<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a reqwest::Client,
    base: &'a str,
}

impl Tiles<'_> {
    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.rt.block_on(async {
            let r = self
                .client
                .get(format!("{}/{path}", self.base))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
    }
}

impl tlog_tiles::TileReader for Tiles<'_> {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                // Their path is Go sumdb's, `tile/H/…`; C2SP fixes the height at 8 and omits it.
                let path = t.path().replacen("tile/8/", "tile/", 1);
                match self.get(&path) {
                    (200, body) => Ok(body),
                    _ => Err(tlog_tiles::Error::IndexesNotInTree),
                }
            })
            .collect()
    }
    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

/// Issue 19, independent verification of the audit log (AIMS MO-7): an implementation we did
/// not write (`signed_note` and `tlog_tiles`, Cloudflare's port of Go's sumdb `note` and
/// `tlog`) checks the log through the workload API: each checkpoint's signature under the
/// published vkey; the tiles against it (at an older checkpoint, the right tiles as partial
/// prefixes); every exported record's inclusion, proved from the tiles; AIMS's own inclusion
/// and consistency proofs. A tile rewritten in the store is caught; bad tile paths get 404.
#[test]
fn a_verifier_we_did_not_write_checks_the_log_from_its_tiles() {
    use signed_note::{Note, StandardVerifier, VerifierList};
    use tlog_tiles::{Checkpoint, Hash, TileHashReader, check_record, check_tree, record_hash};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Aims::start("server", TD);
    let client = workload_client(&server, "auditor");
    let base = format!(
        "{}/audit/v1",
        server.up["server"]["oauth_mtls"].as_str().unwrap()
    );
    let tiles = Tiles {
        rt: &rt,
        client: &client,
        base: &base,
    };
    let (status, vkey) = tiles.get("vkey");
    assert_eq!(status, 200);
    let vkey = String::from_utf8(vkey).unwrap();
    let verifiers = VerifierList::new(vec![Box::new(
        StandardVerifier::new(vkey.trim()).expect("a C2SP signed-note vkey"),
    )]);
    // The newest checkpoint once it covers `size` records, opened with their code.
    let checkpoint = |size: u64| -> Checkpoint {
        eventually(Duration::from_secs(10), "a checkpoint", || {
            let (status, note) = tiles.get("checkpoint");
            if status != 200 {
                return None;
            }
            let note = Note::from_bytes(&note).expect("a signed note");
            let (verified, unverified) = note.verify(&verifiers).expect("signed by the vkey");
            assert_eq!((verified.len(), unverified.len()), (1, 0));
            let cp = Checkpoint::from_bytes(note.text()).expect("a C2SP checkpoint");
            (cp.size() == size).then_some(cp)
        })
    };
    let records: Vec<Value> = (0..300).map(|i| record(&format!("tool-{i}"))).collect();
    assert_eq!(rt.block_on(append(&client, &server, &records)).unwrap(), 0);
    let old = checkpoint(300);
    assert_eq!(
        rt.block_on(append(&client, &server, &records)).unwrap(),
        300
    );
    let new = checkpoint(600);
    assert_eq!(old.origin(), new.origin());

    // Tiles: the right edge's partial ones by width, full ones only when full, cacheable.
    assert_eq!(tiles.get("tile/0/000").1.len(), 256 * 32);
    assert_eq!(tiles.get("tile/0/002.p/88").1.len(), 88 * 32);
    assert_eq!(
        tiles.get("tile/0/001.p/44").1,
        tiles.get("tile/0/001").1[..44 * 32]
    );
    assert_eq!(tiles.get("tile/1/000.p/2").1.len(), 2 * 32);
    for missing in [
        "tile/0/002",
        "tile/0/002.p/89",
        "tile/1/000",
        "tile/2/000.p/1",
        "tile/0/0002",
        "tile/0/x000/002",
        "tile/8/000",
        "tile/0/x281/x474/x976/x710/656",
        "tile/entries/000",
        "tile/0/000.p/0",
    ] {
        assert_eq!(tiles.get(missing).0, 404, "{missing}");
    }
    let cache = rt.block_on(async {
        let r = client
            .get(format!("{base}/tile/0/000"))
            .send()
            .await
            .unwrap();
        r.headers()["cache-control"].to_str().unwrap().to_owned()
    });
    assert!(cache.contains("immutable"), "{cache}");
    // Only workloads of the trust domain read the tree.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(server.web_ca()).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let refused = rt.block_on(anonymous.get(format!("{base}/tile/0/000")).send());
    assert!(
        refused.map_or(true, |r| r.status() == 401),
        "an anonymous reader"
    );

    // Their reader authenticates the tiles against each signed tree hash.
    for cp in [&old, &new] {
        let reader = TileHashReader::new(cp.size(), *cp.hash(), &tiles);
        assert_eq!(
            tlog_tiles::tree_hash(cp.size(), &reader).unwrap(),
            *cp.hash()
        );
    }
    // Every exported record is in the tree: their leaf hash of its exact bytes, proved from
    // the tiles; AIMS's own proofs check under their code.
    let entries = common::whole_log(&server);
    assert_eq!(entries.len(), 600);
    let reader = TileHashReader::new(new.size(), *new.hash(), &tiles);
    let b64 = |s: &Value| -> Hash {
        Hash(
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                s.as_str().unwrap(),
            )
            .unwrap()
            .try_into()
            .unwrap(),
        )
    };
    let json = |path: &str| -> Value { serde_json::from_slice(&tiles.get(path).1).unwrap() };
    for e in &entries {
        let leaf = record_hash(e.record.as_bytes());
        let proof = tlog_tiles::prove_record(600, e.index, &reader).unwrap();
        check_record(&proof, 600, *new.hash(), e.index, leaf).unwrap();
        if e.index % 37 == 0 {
            let theirs = json(&format!(
                "proof/inclusion?leaf_index={}&tree_size=600",
                e.index
            ));
            assert_eq!(b64(&theirs["leaf_hash"]), leaf);
            let path: Vec<Hash> = theirs["audit_path"]
                .as_array()
                .unwrap()
                .iter()
                .map(b64)
                .collect();
            check_record(&path, 600, *new.hash(), e.index, leaf).unwrap();
            let wrong = record_hash(b"another record");
            assert!(check_record(&path, 600, *new.hash(), e.index, wrong).is_err());
        }
    }
    let consistency: Vec<Hash> = json("proof/consistency?first=300&second=600")["consistency"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64)
        .collect();
    check_tree(&consistency, 600, *new.hash(), 300, *old.hash()).unwrap();
    assert!(check_tree(&consistency, 600, *new.hash(), 300, *new.hash()).is_err());

    // A leaf tile rewritten in the store (every hash zeroed): their reader refuses it.
    let store = db(&server.data_dir, &rt);
    sql(
        &rt,
        &store,
        "UPDATE audit_tiles SET hashes = zeroblob(length(hashes)) WHERE id = 1",
    );
    let reader = TileHashReader::new(new.size(), *new.hash(), &tiles);
    let leaf = record_hash(entries[300].record.as_bytes());
    let caught = tlog_tiles::prove_record(600, 300, &reader).map_or(true, |p| {
        check_record(&p, 600, *new.hash(), 300, leaf).is_err()
    });
    assert!(caught, "a rewritten tile went unnoticed");
    // The level-8 nodes' tile, which the tree hash is built from.
    sql(
        &rt,
        &store,
        &format!(
            "UPDATE audit_tiles SET hashes = zeroblob(length(hashes)) WHERE id = {}",
            1u64 << 48
        ),
    );
    let reader = TileHashReader::new(new.size(), *new.hash(), &tiles);
    assert!(tlog_tiles::tree_hash(600, &reader).is_err());
}
