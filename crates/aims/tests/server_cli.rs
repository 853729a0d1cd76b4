//! End to end: `aims server` as a real process, driven by the `aims` CLI, checked by openssl and
//! by independent JOSE libraries (AIMS ID-4, CR-1, CR-2, CR-4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use aims_admin::api::MintX509Request;
use aims_admin::client::{AdminClient, AdminError};
use common::{Aims, TD, assert_ok, repo_root, require, stderr, stdout};
use http::{Method, StatusCode};

fn server() -> Aims {
    Aims::start("server", &["--trust-domain", TD])
}

#[test]
fn minted_x509_svid_passes_openssl_verify_and_has_the_svid_profile() {
    if !require(&["openssl", "version"], "openssl") {
        return;
    }
    let aims = server();
    let out = aims.dir.path().join("svid");
    let out_s = out.to_str().unwrap();
    assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "x509",
        "--spiffe-id",
        "spiffe://example.org/agent/planner",
        "--ttl",
        "10m",
        "--out",
        out_s,
    ]));
    let svid = out.join("svid.pem");
    assert_eq!(
        std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The chain (leaf + intermediate) verifies against the bundle with openssl.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(out.join("bundle.pem"))
        .arg("-untrusted")
        .arg(&svid)
        .arg(&svid)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert!(stdout(&verify).contains(": OK"));
    // Without the intermediate it does not.
    let leaf_only = Command::new("openssl")
        .args(["x509", "-in"])
        .arg(&svid)
        .output()
        .unwrap();
    let leaf_path = aims.dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, &leaf_only.stdout).unwrap();
    let no_chain = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(out.join("bundle.pem"))
        .arg(&leaf_path)
        .output()
        .unwrap();
    assert!(!no_chain.status.success());

    // The leaf has exactly one URI SAN, critical keyUsage digitalSignature, CA:FALSE and both EKUs.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&svid)
        .output()
        .unwrap();
    let text = stdout(&text);
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    assert!(text.contains("URI:spiffe://example.org/agent/planner"));
    assert!(
        text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"));
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    assert!(!text.contains("Certificate Sign"));

    // The intermediate is a CA with keyCertSign and the trust domain's own ID.
    let all = std::fs::read_to_string(&svid).unwrap();
    let second = all
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap();
    let inter = aims.dir.path().join("intermediate.pem");
    std::fs::write(&inter, second).unwrap();
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&inter)
        .output()
        .unwrap();
    let text = stdout(&text);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");
    assert!(text.contains("URI:spiffe://example.org\n"), "{text}");
}

#[test]
fn jwt_svid_and_wit_verify_with_independent_jose_libraries() {
    if !require(
        &["python3", "-c", "import jwt, jwcrypto"],
        "Python pyjwt and jwcrypto",
    ) {
        return;
    }
    let aims = server();
    let script = repo_root().join("tests/interop/verify_jose.py");
    let py = |kind: &str, token: &std::path::Path, extra: &[&str]| {
        Command::new("python3")
            .arg(&script)
            .arg(kind)
            .args(["--bundle-url", &aims.bundle_url()])
            .arg("--ca")
            .arg(aims.web_ca())
            .arg("--token")
            .arg(token)
            .args(["--spiffe-id", "spiffe://example.org/agent/a"])
            .args(extra)
            .output()
            .unwrap()
    };

    let jwt_dir = aims.dir.path().join("jwt");
    assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "jwt",
        "--spiffe-id",
        "spiffe://example.org/agent/a",
        "-a",
        "https://tool.example.org",
        "--out",
        jwt_dir.to_str().unwrap(),
    ]));
    let token = jwt_dir.join("svid.jwt");
    let ok = py(
        "jwt-svid",
        &token,
        &["--audience", "https://tool.example.org"],
    );
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).starts_with("VERIFIED"));
    // The same library rejects the wrong audience and a tampered token.
    let wrong_aud = py("jwt-svid", &token, &["--audience", "https://other"]);
    assert!(!wrong_aud.status.success(), "{}", stdout(&wrong_aud));
    let tampered = jwt_dir.join("tampered.jwt");
    let t = std::fs::read_to_string(&token).unwrap();
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    std::fs::write(&tampered, parts.join(".")).unwrap();
    let bad = py(
        "jwt-svid",
        &tampered,
        &["--audience", "https://tool.example.org"],
    );
    assert!(!bad.status.success());

    let wit_dir = aims.dir.path().join("wit");
    assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "wit",
        "--spiffe-id",
        "spiffe://example.org/agent/a",
        "--out",
        wit_dir.to_str().unwrap(),
    ]));
    let key = wit_dir.join("key.pem");
    let ok = py(
        "wit",
        &wit_dir.join("wit.jwt"),
        &["--key", key.to_str().unwrap()],
    );
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    // A WIT is bound to its key: another key file does not match cnf.
    let other_dir = aims.dir.path().join("wit2");
    assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "wit",
        "--spiffe-id",
        "spiffe://example.org/agent/a",
        "--out",
        other_dir.to_str().unwrap(),
    ]));
    let mismatch = py(
        "wit",
        &wit_dir.join("wit.jwt"),
        &["--key", other_dir.join("key.pem").to_str().unwrap()],
    );
    assert!(!mismatch.status.success(), "{}", stdout(&mismatch));
}

#[test]
fn entries_are_managed_through_the_cli() {
    let aims = server();
    let created = assert_ok(&aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/agent/a",
        "--parent-id",
        "spiffe://example.org/aims/agent/node1",
        "-s",
        "unix:uid:1000",
        "-s",
        "unix:gid:1000",
        "--x509-svid-ttl",
        "30m",
        "--dns-name",
        "a.example.org",
        "--hint",
        "primary",
        "--output",
        "json",
    ]));
    let entry: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = entry["id"].as_str().unwrap();
    assert_eq!(entry["x509_svid_ttl"], 1800);
    assert_eq!(entry["selectors"].as_array().unwrap().len(), 2);

    let listed = assert_ok(&aims.cli(&["entry", "list"]));
    assert!(listed.contains("Found 1 entry"), "{listed}");
    assert!(listed.contains("spiffe://example.org/agent/a"));
    let shown = assert_ok(&aims.cli(&["entry", "show", id]));
    assert!(shown.contains("Selector      : unix:gid:1000"), "{shown}");

    let updated = assert_ok(&aims.cli(&[
        "entry",
        "update",
        id,
        "-s",
        "unix:uid:2000",
        "--admin",
        "true",
        "--output",
        "json",
    ]));
    let updated: serde_json::Value = serde_json::from_str(&updated).unwrap();
    assert_eq!(updated["selectors"], serde_json::json!(["unix:uid:2000"]));
    assert_eq!(updated["admin"], true);
    assert_eq!(updated["revision"], 2);

    // Errors are clear and typed; nothing panics.
    let dup = aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/agent/b",
        "-s",
        "unix:uid:1",
        "--parent-id",
        "spiffe://other.org/x",
    ]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("not in trust domain example.org"),
        "{}",
        stderr(&dup)
    );
    let bad_id = aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/a/../b",
        "-s",
        "unix:uid:1",
    ]);
    assert!(
        stderr(&bad_id).contains("dot segments"),
        "{}",
        stderr(&bad_id)
    );
    let bad_sel = aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/b",
        "-s",
        "nocolon",
    ]);
    assert!(
        stderr(&bad_sel).contains("expected type:value"),
        "{}",
        stderr(&bad_sel)
    );

    assert_ok(&aims.cli(&["entry", "delete", id]));
    let gone = aims.cli(&["entry", "show", id]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("not_found"), "{}", stderr(&gone));
    for o in [&dup, &bad_id, &bad_sel, &gone] {
        assert!(!stderr(o).contains("panicked"));
    }
}

#[test]
fn the_policy_is_reviewed_and_applied_through_the_cli() {
    // AIMS PO-2: validated against the schema before it goes live, diffable, versioned.
    let aims = server();
    let shown = assert_ok(&aims.cli(&["policy", "show"]));
    assert!(shown.starts_with("// version 1 (sha256:"), "{shown}");
    assert!(shown.contains(r#"@id("scoped-tools")"#), "{shown}");
    let good = aims.dir.path().join("good.cedar");
    std::fs::write(
        &good,
        format!("{}\n@id(\"no-deep-chains\")\nforbid(principal, action, resource) when {{ context.chain_depth > 3 }};\n", aims_policy::DEFAULT_POLICY),
    )
    .unwrap();
    let bad = aims.dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        r#"@id("x") permit(principal, action, resource) when { resource.owner == "me" };"#,
    )
    .unwrap();
    let diff = assert_ok(&aims.cli(&["policy", "diff", good.to_str().unwrap()]));
    assert!(diff.contains("added no-deep-chains:"), "{diff}");
    assert!(diff.contains("+ ") && !diff.contains("removed"), "{diff}");
    let refused = aims.cli(&["policy", "apply", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not validate against the AIMS schema"),
        "{}",
        stderr(&refused)
    );
    let applied = assert_ok(&aims.cli(&[
        "policy",
        "apply",
        good.to_str().unwrap(),
        "--author",
        "alice",
    ]));
    assert!(applied.contains("Policy version 2 (sha256:"), "{applied}");
    let again = assert_ok(&aims.cli(&["policy", "apply", good.to_str().unwrap()]));
    assert!(again.contains("Unchanged: version 2"), "{again}");
    let history = assert_ok(&aims.cli(&["policy", "history"]));
    assert_eq!(history.lines().count(), 2, "{history}");
    assert!(
        history.lines().nth(1).unwrap().ends_with("alice"),
        "{history}"
    );
    assert!(assert_ok(&aims.cli(&["policy", "show", "1"])).starts_with("// version 1"));
    assert!(assert_ok(&common::run(&["policy", "schema"])).contains("namespace Aims"));
    // Issue 19: an application (the AuthZEN interop's Todo app) applied beside the policies,
    // and read back part by part.
    let todo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/authzen-todo");
    let (schema, entities) = (
        todo.join("todo.cedarschema"),
        todo.join("citadel.entities.json"),
    );
    let with_todo = aims.dir.path().join("with-todo.cedar");
    std::fs::write(
        &with_todo,
        format!(
            "{shown}\n{}",
            std::fs::read_to_string(todo.join("todo.cedar")).unwrap()
        ),
    )
    .unwrap();
    let refused = aims.cli(&["policy", "apply", with_todo.to_str().unwrap()]);
    assert!(
        !refused.status.success(),
        "Todo policies without the Todo schema"
    );
    let applied = assert_ok(&aims.cli(&[
        "policy",
        "apply",
        with_todo.to_str().unwrap(),
        "--application-schema",
        schema.to_str().unwrap(),
        "--application-entities",
        entities.to_str().unwrap(),
    ]));
    assert!(applied.contains("Policy version 3 (sha256:"), "{applied}");
    let shown = assert_ok(&aims.cli(&["policy", "show"]));
    assert!(shown.contains("// with an application"), "{shown}");
    assert_eq!(
        assert_ok(&aims.cli(&["policy", "show", "--application-schema"])),
        std::fs::read_to_string(&schema).unwrap()
    );
    assert_eq!(
        assert_ok(&aims.cli(&["policy", "show", "3", "--application-entities"])),
        std::fs::read_to_string(&entities).unwrap()
    );
    let none = aims.cli(&["policy", "show", "1", "--application-schema"]);
    assert!(
        stderr(&none).contains("has no application"),
        "{}",
        stderr(&none)
    );
}

fn csr_with(sans: Vec<rcgen::SanType>) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(s: &str) -> rcgen::SanType {
    rcgen::SanType::URI(s.try_into().unwrap())
}

fn api_error(r: Result<impl std::fmt::Debug, AdminError>) -> (StatusCode, String, String) {
    match r {
        Err(AdminError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn admin_api_answers_bad_input_with_typed_errors() {
    let aims = server();
    let client = AdminClient::new(aims.admin_socket());
    let id: aims_core::SpiffeId = "spiffe://example.org/agent/a".parse().unwrap();
    let mint = |csr_pem: String| MintX509Request {
        spiffe_id: id.clone(),
        csr_pem,
        ttl_seconds: None,
        dns_names: vec![],
    };

    // Good CSR first.
    client
        .mint_x509(&mint(csr_with(vec![uri(id.as_str())])))
        .await
        .unwrap();

    let (status, code, msg) = api_error(
        client
            .mint_x509(&mint(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            ))
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(msg.contains("invalid CSR"), "{msg}");
    let (status, _, msg) = api_error(client.mint_x509(&mint("not pem at all".into())).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("CSR"), "{msg}");
    let (_, _, msg) = api_error(
        client
            .mint_x509(&mint(csr_with(vec![
                uri(id.as_str()),
                uri("spiffe://example.org/agent/b"),
            ])))
            .await,
    );
    assert!(msg.contains("more than one URI SAN"), "{msg}");
    let (_, _, msg) = api_error(
        client
            .mint_x509(&mint(csr_with(vec![uri("spiffe://evil.org/agent/a")])))
            .await,
    );
    assert!(msg.contains("evil.org"), "{msg}");
    let (_, _, msg) = api_error(
        client
            .mint_x509(&mint(csr_with(vec![rcgen::SanType::DnsName(
                "x.example".try_into().unwrap(),
            )])))
            .await,
    );
    assert!(msg.contains("DNS SAN"), "{msg}");

    // An invalid SPIFFE ID in the JSON body.
    let body =
        serde_json::json!({"spiffe_id": "spiffe://Example.org/a", "audience": ["x"]}).to_string();
    let (status, code, msg) = api_error(
        client
            .call_bytes(Method::POST, "/v1/svid/jwt", body.into_bytes())
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(msg.contains("trust domain characters"), "{msg}");
    // Not JSON.
    let (status, _, _) = api_error(
        client
            .call_bytes(Method::POST, "/v1/entries", b"{not json".to_vec())
            .await,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Oversized body.
    let big = format!(
        "{{\"spiffe_id\":\"spiffe://example.org/a\",\"csr_pem\":\"{}\"}}",
        "A".repeat(100 * 1024)
    );
    let (status, code, _) = api_error(
        client
            .call_bytes(Method::POST, "/v1/svid/x509", big.into_bytes())
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // An audience-less JWT-SVID.
    let body =
        serde_json::json!({"spiffe_id": "spiffe://example.org/a", "audience": []}).to_string();
    let (status, _, msg) = api_error(
        client
            .call_bytes(Method::POST, "/v1/svid/jwt", body.into_bytes())
            .await,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("audience"), "{msg}");
    // Unknown endpoint.
    let (status, _, _) = api_error(client.call_bytes(Method::GET, "/v1/nope", vec![]).await);
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The server is still healthy and logged no panic.
    client.health().await.unwrap();
    assert!(!aims.logs().contains("panicked"));

    // Issued credentials were recorded: serial and expiry, for the one good mint.
    let issued = client.issued(Some(&id), 10).await.unwrap();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].kind, aims_store::CredentialKind::X509Svid);
}

#[test]
fn files_and_sockets_are_private() {
    let aims = server();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&aims.admin_socket()), 0o600);
    assert_eq!(mode(&aims.data_dir), 0o700);
    assert_eq!(mode(&aims.data_dir.join("keys")), 0o700);
    for key in std::fs::read_dir(aims.data_dir.join("keys")).unwrap() {
        assert_eq!(mode(&key.unwrap().path()), 0o600);
    }
    assert_eq!(mode(&aims.data_dir.join("tls/web-server.key")), 0o600);
    // CA keys never reach the log.
    let logs = aims.logs();
    for key in std::fs::read_dir(aims.data_dir.join("keys")).unwrap() {
        let pem = std::fs::read_to_string(key.unwrap().path()).unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!logs.contains(body));
    }
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_reuses_the_data() {
    let mut aims = server();
    let before = assert_ok(&aims.cli(&["bundle", "show"]));
    let svid_dir = aims.dir.path().join("svid");
    assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "x509",
        "--spiffe-id",
        "spiffe://example.org/a",
        "--out",
        svid_dir.to_str().unwrap(),
    ]));
    aims.stop();
    assert!(
        !aims.data_dir.join("up.json").exists(),
        "up.json is removed at a clean stop"
    );
    assert!(
        !aims.admin_socket().exists(),
        "the admin socket is removed at a clean stop"
    );

    let dir = std::mem::replace(&mut aims.dir, tempfile::tempdir().unwrap());
    let again = Aims::start_in(
        dir,
        aims.data_dir.clone(),
        "server",
        &["--trust-domain", TD],
    );
    let after = assert_ok(&again.cli(&["bundle", "show"]));
    assert_eq!(
        before, after,
        "same CA, same bundle, same sequence after a restart"
    );
    assert!(again.logs().contains("AIMS server started"));
    assert!(
        !again.logs().contains("CA slot activated"),
        "the slot was restored, not recreated"
    );
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 5] = [
        (
            "trust_domain = \"example.org\"\n[server]\nlisten = \"not-an-address\"\n",
            "listen",
        ),
        (
            "trust_domain = \"example.org\"\n[server]\nx509_svid_tll = \"1h\"\n",
            "unknown field `x509_svid_tll`",
        ),
        (
            "trust_domain = \"Example.org\"\n",
            "trust domain characters",
        ),
        (
            "trust_domain = \"example.org\"\n[server.ca]\nttl = \"forever\"\n",
            "invalid duration",
        ),
        (
            "trust_domain = \"example.org\"\n[server.ca.upstream]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n",
            "/nonexistent.pem",
        ),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let data = dir.path().join(format!("data{i}"));
        let out = common::run(&[
            "server",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert!(!out.status.success(), "{text}");
        let err = stderr(&out);
        assert!(err.contains(expect), "{text}\n=> {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = common::run(&[
        "server",
        "--data-dir",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("--trust-domain"), "{}", stderr(&out));
    let out = common::run(&[
        "server",
        "--trust-domain",
        "spiffe://bad/",
        "--data-dir",
        dir.path().join("y").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("not a valid trust domain"),
        "{}",
        stderr(&out)
    );
    // A CLI command with no server running says what to do.
    let out = common::run(&[
        "entry",
        "list",
        "--data-dir",
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("is `aims server` or `aims up` running"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn runs_on_postgresql() {
    let Some((url, name)) = aims_store::testing::fresh_postgres_url().await else {
        return;
    };
    let aims = Aims::start("server", &["--trust-domain", TD, "--database", &url]);
    assert!(aims.logs().contains("postgres://"));
    let out = assert_ok(&aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/pg",
        "-s",
        "unix:uid:1",
        "--output",
        "json",
    ]));
    assert!(out.contains("spiffe://example.org/pg"));
    let out = assert_ok(&aims.cli(&[
        "svid",
        "mint",
        "jwt",
        "--spiffe-id",
        "spiffe://example.org/pg",
        "-a",
        "x",
    ]));
    assert_eq!(out.trim().split('.').count(), 3);
    drop(aims);
    aims_store::testing::drop_postgres_database(&name).await;
}
