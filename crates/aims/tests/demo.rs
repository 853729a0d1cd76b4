//! `aims demo` against `aims up` (issue 9): every step of the narrated scenario — identities
//! from the Workload API, tokens, delegation with PKCE and PAR, an agent-to-agent exchange, a
//! transaction token, a person's approval through CIBA, a revocation, the audit trail — runs
//! and checks itself; a second run against the same stack starts afresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Aims, stderr, stdout};

#[test]
fn the_demo_runs_every_step_and_runs_again() {
    let aims = Aims::start("up", &[]);
    for run in 1..=2 {
        let out = aims.cli(&["demo", "--auto-approve"]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "run {run}:\n{text}\n{}\n{}",
            stderr(&out),
            aims.logs()
        );
        for step in [
            "[8/8]",
            "delegation chain: spiffe://aims.local/demo/agent-b ← demo-agent-a",
            "allows this only with a person's approval",
            "tools/call delete_file allowed with the approval",
            "after the revocation",
            "audit log verified",
            "The demo ran every step",
        ] {
            assert!(text.contains(step), "run {run} lacks {step:?}:\n{text}");
        }
    }
}
