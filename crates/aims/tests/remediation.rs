//! Remediation of a registration entry through `aims up` (AIMS MO-3…MO-6): disabled, its SVIDs
//! leave the local agent's Workload API and none is renewed; enabled, they come back; both acts
//! are in the audit log with their cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Aims, assert_ok, eventually};
use serde_json::Value;

fn fetch_x509(aims: &Aims) -> bool {
    aims.fetch_x509(&aims.dir.path().join("svid"))
}

#[test]
fn a_disabled_entry_loses_its_svids_at_the_agent_and_gets_them_back_when_enabled() {
    let aims = Aims::start("up", &["--register-self"]);
    eventually(Duration::from_secs(15), "an X509-SVID for the test", || {
        fetch_x509(&aims).then_some(())
    });
    let entries: Value = serde_json::from_str(&assert_ok(
        &aims.cli(&["entry", "list", "--output", "json"]),
    ))
    .unwrap();
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["spiffe_id"].as_str().unwrap().contains("/user/"))
        .unwrap();
    let id = entry["id"].as_str().unwrap();
    let out = assert_ok(&aims.cli(&["revoke", "entry", id, "--cause", "workload compromised"]));
    assert!(out.contains("disabled entry"), "{out}");
    eventually(
        Duration::from_secs(10),
        "the agent drops the entry's SVIDs",
        || (!fetch_x509(&aims)).then_some(()),
    );
    let shown = assert_ok(&aims.cli(&["entry", "show", id]));
    assert!(shown.contains("Disabled      : true"), "{shown}");

    assert_ok(&aims.cli(&["revoke", "entry", id, "--enable", "--cause", "rebuilt"]));
    eventually(Duration::from_secs(15), "the SVID is back", || {
        fetch_x509(&aims).then_some(())
    });

    let log = assert_ok(&aims.cli(&["audit", "list", "--output", "json"]));
    let acts: Vec<(String, String)> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"].clone())
        .filter(|r| r["kind"] == "remediation")
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["remediation_cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        vec![
            (
                "disable_entry".to_owned(),
                "workload compromised".to_owned()
            ),
            ("enable_entry".to_owned(), "rebuilt".to_owned())
        ]
    );
}
