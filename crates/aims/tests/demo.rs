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

/// What must never appear in a log line, a console page or an audit export: any JWT (access,
/// ID, transaction and refresh-bound tokens, JWT-SVIDs, client assertions, DPoP proofs, SETs),
/// a PEM private key, a private JWK, a password, a session cookie's value, a code or request
/// handle given here.
fn leaks(text: &str, known: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    // A compact JWS: base64url of `{"` twice, then a signature.
    for (i, _) in text.match_indices("eyJ") {
        let rest = &text[i..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() >= 3 && parts[1].starts_with("eyJ") && parts[1].len() > 10 {
            found.push(format!("a JWT: {}…", &token[..token.len().min(40)]));
        }
    }
    for marker in [
        "PRIVATE KEY-----",
        "\"d\":\"",
        "demo password ",
        "__Host-aims-session=",
        "__Host-aims-csrf=",
    ] {
        if text.contains(marker) {
            found.push(format!("{marker:?}"));
        }
    }
    for secret in known {
        if text.contains(secret) {
            found.push(format!("a secret this test handled: {}…", &secret[..8]));
        }
    }
    found
}

/// Issue 16: the demo with debug logs everywhere leaks no credential into a log line, a console
/// page or the audit export.
#[test]
fn no_secret_reaches_a_log_a_console_page_or_the_audit_export() {
    let aims = Aims::start("up", &["--register-self", "--log-level", "debug"]);
    let demo = aims.cli(&["demo", "--auto-approve", "--log-level", "debug"]);
    assert!(
        demo.status.success(),
        "{}\n{}",
        stdout(&demo),
        stderr(&demo)
    );
    // An administrator, to read every console page.
    let password = format!("console password {}", uuid_like());
    let mut create = std::process::Command::new(common::aims_bin())
        .args([
            "user",
            "create",
            "auditor",
            "--admin-user",
            "--password-stdin",
        ])
        .arg("--data-dir")
        .arg(&aims.data_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = create.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let issuer = aims.up["server"]["oauth_issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca = std::fs::read(aims.web_ca()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pages: Vec<String> = rt.block_on(async {
        let page = http
            .get(format!("{issuer}/login?return_to=/console"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Issue 19: a newcomer's stack offers passkeys (its URLs name localhost, which
        // WebAuthn accepts), the password stays as the fallback.
        assert!(issuer.starts_with("https://localhost:"), "{issuer}");
        assert!(page.contains("data-passkey-sign-in"), "{page}");
        assert!(page.contains("/login/password"), "{page}");
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        let signed_in = http
            .post(format!("{issuer}/login/password"))
            .header("origin", issuer.as_str())
            .form(&[
                ("username", "auditor"),
                ("password", password.as_str()),
                ("csrf", csrf.as_str()),
                ("return_to", "/console"),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            signed_in.status().is_success() || signed_in.status().is_redirection(),
            "{}",
            signed_in.status()
        );
        let mut pages = Vec::new();
        for path in [
            "/console",
            "/console/agents",
            "/console/credentials",
            "/console/approvals",
            "/console/decisions",
            "/console/signals",
            "/console/compliance",
            "/console/policy",
        ] {
            let resp = http.get(format!("{issuer}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            pages.push(resp.text().await.unwrap());
        }
        pages
    });
    assert!(
        pages[4].contains("call_tool"),
        "the decisions page shows the demo's decisions"
    );
    let export = common::assert_ok(&aims.cli(&["audit", "export"]));
    assert!(export.lines().count() > 10, "{export}");
    let logs = aims.logs();
    assert!(
        logs.contains("DEBUG"),
        "the server logged at debug level: {}",
        &logs[..logs.len().min(500)]
    );
    for (what, text) in [
        ("the stack's log", logs),
        (
            "the demo's output",
            format!("{}{}", stdout(&demo), stderr(&demo)),
        ),
        ("the console", pages.join("\n")),
        ("the audit export", export),
    ] {
        let found = leaks(&text, &[password.as_str()]);
        assert!(found.is_empty(), "{what} leaks {found:?}");
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
