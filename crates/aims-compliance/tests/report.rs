//! Compliance reports over a real store (AIMS CO-1): each rule passes on clean evidence and
//! fails, naming the audit entries, on evidence that breaks it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aims_audit::{AuditLog, AuditRecord, Checkpointer, NoteSigner, Outcome, RecordKind};
use aims_compliance::{DEFAULT_RULES, Evidence, Report, RuleSet, Status};
use aims_credentials::{KeyType, PrivateKey};
use aims_store::{ClientSource, CredentialKind, IssuedCredential, OAuthClientRow};

fn decision(t: i64, agent: &str, resource: &str, allow: bool) -> AuditRecord {
    let mut r = AuditRecord::new(RecordKind::Decision, "call", t);
    r.agent = Some(agent.into());
    r.resource = Some(resource.into());
    r.decision = Some(if allow { Outcome::Allow } else { Outcome::Deny });
    r.policy_version = Some(1);
    r
}

fn remediation(t: i64, action: &str, agent: &str) -> AuditRecord {
    let mut r = AuditRecord::new(RecordKind::Remediation, action, t);
    r.agent = Some(agent.into());
    r.remediation_cause = Some("test".into());
    r
}

const RULES: &str = r#"
version = "test-7"

[[rule]]
id = "ttl"
title = "X509-SVIDs at most an hour"
check = "max_credential_ttl"
kind = "x509-svid"
max = "1h"

[[rule]]
id = "secrets"
title = "no secrets"
check = "no_client_secret"

[[rule]]
id = "decided"
title = "tool calls decided"
check = "tool_calls_have_decisions"

[[rule]]
id = "approved"
title = "payments approved"
check = "high_risk_actions_have_approval"
resources = ["payments*"]

[[rule]]
id = "revoked"
title = "revocations within 100 ms"
check = "revocations_enforced_within"
max = "100ms"

[[rule]]
id = "log"
title = "log consistent"
check = "audit_log_consistent"
"#;

#[tokio::test]
async fn every_rule_passes_on_clean_evidence_and_names_what_breaks_it() {
    let db = aims_store::testing::fresh_sqlite().await;
    let store = db.store.clone();
    let (log, writer) = AuditLog::start(store.clone());
    let a = "spiffe://td/agent/a";
    let mut approved = decision(1_000, a, "payments/send", true);
    approved.approval = Some("ciba:req-1".into());
    let mut undecided = decision(1_001, a, "weather", true);
    undecided.policy_version = None;
    let records = vec![
        decision(900, a, "weather", true),         // 0
        approved,                                  // 1
        decision(1_002, a, "payments/send", true), // 2: no approval
        remediation(2_000, "revoke", a),           // 3
        decision(2_050, a, "weather", true),       // 4: within 100 ms
        decision(2_500, a, "weather", true),       // 5: too late
        decision(2_600, a, "weather", false),      // 6: denied, fine
        remediation(3_000, "lift_revocation", a),  // 7
        decision(3_500, a, "weather", true),       // 8: after the lift, fine
        undecided,                                 // 9: no policy version
    ];
    log.append(&records).await.unwrap();
    let key = Arc::new(PrivateKey::generate(KeyType::Ed25519).unwrap());
    let signer = NoteSigner::new("td/audit", key).unwrap();
    let vkey = signer.vkey();
    Checkpointer::new(store.clone(), signer, "td/audit".into())
        .step(1)
        .await
        .unwrap()
        .unwrap();
    let id = aims_core::SpiffeId::parse(a).unwrap();
    for (serial, life) in [("01", 3_600), ("02", 7_200)] {
        store
            .record_issued(&IssuedCredential {
                kind: CredentialKind::X509Svid,
                serial: serial.into(),
                spiffe_id: id.clone(),
                issued_at: 100,
                expires_at: 100 + life,
                issuer: "slot".into(),
            })
            .await
            .unwrap();
    }
    store
        .put_client(&OAuthClientRow {
            client_id: "legacy".into(),
            metadata: serde_json::json!({}),
            secret_hash: Some("h".into()),
            source: ClientSource::Admin,
            created_at: 0,
        })
        .await
        .unwrap();

    let rules = RuleSet::parse(RULES).unwrap();
    let ev = Evidence::collect(&store, &vkey).await.unwrap();
    let report = Report::build(&rules, &ev, 42);
    assert_eq!(report.rules_version, "test-7");
    assert_eq!(report.rules_sha256.len(), 64);
    assert_eq!(report.evidence.audit_entries, 10);
    assert_eq!(report.evidence.checkpoint.as_ref().unwrap().0, 10);
    let by_id = |id: &str| report.results.iter().find(|r| r.id == id).unwrap().clone();
    let ttl = by_id("ttl");
    assert_eq!(
        (ttl.status, ttl.evaluated, ttl.findings.len()),
        (Status::Fail, 2, 1)
    );
    assert!(ttl.findings[0].message.contains("02"), "{:?}", ttl.findings);
    assert_eq!(
        by_id("secrets").findings[0].message,
        "client legacy has a shared secret"
    );
    let decided = by_id("decided");
    assert_eq!(decided.findings.len(), 1);
    assert_eq!(decided.findings[0].audit_indexes, vec![9]);
    let approved = by_id("approved");
    assert_eq!((approved.evaluated, approved.findings.len()), (2, 1));
    assert_eq!(approved.findings[0].audit_indexes, vec![2]);
    let revoked = by_id("revoked");
    assert_eq!(revoked.findings.len(), 1, "{:?}", revoked.findings);
    assert_eq!(revoked.findings[0].audit_indexes, vec![3, 5]);
    assert_eq!(by_id("log").status, Status::Pass);
    assert_eq!((report.passed, report.failed), (1, 5));
    // The HTML links each finding to its entries, which it quotes.
    let html = report.html();
    assert!(html.contains("<a href=\"#entry-5\">entry 5</a>"));
    assert!(html.contains("<h3 id=\"entry-5\">Entry 5</h3>"));
    assert!(
        !html.contains("<h3 id=\"entry-0\">"),
        "uncited entries are not quoted"
    );

    // A record altered in the store (its decision flipped): the log rule fails and names it.
    sqlx::query(
        "UPDATE audit_log SET record = replace(record, '\"allow\"', '\"deny\"') WHERE idx = 4",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let ev = Evidence::collect(&store, &vkey).await.unwrap();
    let log_rule = Report::build(&rules, &ev, 43)
        .results
        .into_iter()
        .find(|r| r.id == "log")
        .unwrap();
    assert_eq!(log_rule.status, Status::Fail);
    assert_eq!(log_rule.findings[0].audit_indexes, vec![4]);

    // The shipped rules parse; bad documents do not.
    assert!(RuleSet::parse(DEFAULT_RULES).unwrap().rules.len() >= 6);
    assert!(
        RuleSet::parse("version = \"x\"\n[[rule]]\nid = \"a\"\ntitle = \"t\"\ncheck = \"nope\"\n")
            .is_err()
    );
    assert!(RuleSet::parse("version = \"x\"\n[[rule]]\nid = \"a\"\ntitle = \"t\"\ncheck = \"no_client_secret\"\n[[rule]]\nid = \"a\"\ntitle = \"t\"\ncheck = \"no_client_secret\"\n").is_err());
    assert!(RuleSet::parse("version = \"\"\n").is_err());
    drop(log);
    writer.await.unwrap();
    db.cleanup().await;
}
