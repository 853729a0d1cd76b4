//! `aims agent` as real processes beside `aims server`: join-token attestation, restarts,
//! server outages, and who may obtain which identity (AIMS PR-1…PR-9).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use common::{
    AgentProc, Aims, TD, agent_command, aims_bin, api, assert_ok, bundle_file, eventually,
    free_port, join_token, own_uid, stderr, stdout,
};

const NODE: &str = "spiffe://example.org/aims/agent/node-a";

fn server(extra: &[&str]) -> Aims {
    let mut args = vec!["--trust-domain", TD];
    args.extend_from_slice(extra);
    Aims::start("server", &args)
}

fn create_entry(server: &Aims, spiffe_id: &str, parent: &str, selectors: &[&str]) {
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        parent,
    ];
    for s in selectors {
        args.push("--selector");
        args.push(s);
    }
    assert_ok(&server.cli(&args));
}

/// A world-traversable directory for a Workload API socket other uids may reach.
fn public_dir(base: &Path) -> std::path::PathBuf {
    let dir = base.join("public");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn x509_ids(out: &std::process::Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["spiffe_id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn x509_expiry(out: &std::process::Output) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["expires_at"].as_i64().unwrap()
}

#[test]
fn a_join_token_attests_one_agent_once_and_the_agent_serves_its_entries() {
    let srv = server(&[]);
    let work = tempfile::tempdir().unwrap();
    let bundle = bundle_file(&srv, work.path());
    let token = join_token(&srv, NODE);
    let socket = work.path().join("a.sock");
    let mut agent = AgentProc::start(
        &srv.agent_api(),
        &bundle,
        &work.path().join("agent-a"),
        &socket,
        &["--join-token", &token],
    );
    let uid = format!("unix:uid:{}", own_uid());
    create_entry(&srv, "spiffe://example.org/agent/planner", NODE, &[&uid]);
    // An entry under another agent is not this agent's to issue.
    create_entry(
        &srv,
        "spiffe://example.org/agent/elsewhere",
        "spiffe://example.org/aims/agent/node-b",
        &[&uid],
    );
    let out = eventually(Duration::from_secs(10), "SVID served", || {
        let o = api(
            Path::new(aims_bin()),
            &socket,
            &["fetch", "x509", "--output", "json"],
        );
        o.status.success().then_some(o)
    });
    assert_eq!(x509_ids(&out), vec!["spiffe://example.org/agent/planner"]);
    // Written out as spire-agent does: the key 0600.
    let dir = work.path().join("creds");
    assert_ok(&api(
        Path::new(aims_bin()),
        &socket,
        &["fetch", "x509", "--write", dir.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::metadata(dir.join("svid.0.key")).unwrap().mode() & 0o777,
        0o600
    );
    // openssl, independently: leaf → intermediate → the bundle's root.
    let pem = std::fs::read_to_string(dir.join("svid.0.pem")).unwrap();
    let split = pem.find("-----BEGIN CERTIFICATE-----\n").unwrap();
    let second = pem[split + 1..]
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap()
        + split
        + 1;
    std::fs::write(dir.join("leaf.pem"), &pem[..second]).unwrap();
    std::fs::write(dir.join("inter.pem"), &pem[second..]).unwrap();
    if common::require(&["openssl", "version"], "openssl") {
        let v = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("bundle.0.pem"))
            .arg("-untrusted")
            .arg(dir.join("inter.pem"))
            .arg(dir.join("leaf.pem"))
            .output()
            .unwrap();
        assert!(stdout(&v).contains(": OK"), "{}{}", stdout(&v), stderr(&v));
    }
    // A JWT-SVID, validated by the same agent.
    let jwt = assert_ok(&api(
        Path::new(aims_bin()),
        &socket,
        &["fetch", "jwt", "--audience", "https://tool.example"],
    ));
    let ok = api(
        Path::new(aims_bin()),
        &socket,
        &[
            "validate",
            "--audience",
            "https://tool.example",
            "--svid",
            jwt.trim(),
        ],
    );
    assert!(stdout(&ok).contains("valid: spiffe://example.org/agent/planner"));

    // The token was single-use: a second agent cannot attest with it.
    let second = agent_command(&srv.agent_api(), &bundle, &work.path().join("agent-b"))
        .args(["--join-token", &token])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("invalid join token"),
        "{}",
        stderr(&second)
    );
    // No token and no saved SVID: a clear error, not a hang.
    let none = agent_command(&srv.agent_api(), &bundle, &work.path().join("agent-c"))
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(stderr(&none).contains("--join-token"), "{}", stderr(&none));

    let nodes = assert_ok(&srv.cli(&["node", "list"]));
    assert!(
        nodes.contains(NODE) && nodes.contains("join_token"),
        "{nodes}"
    );
    // A banned agent can no longer obtain anything from the server.
    assert_ok(&srv.cli(&["node", "ban", NODE]));
    let denied = eventually(Duration::from_secs(10), "ban takes effect", || {
        let o = api(
            Path::new(aims_bin()),
            &socket,
            &["fetch", "jwt", "--audience", "https://new-audience.example"],
        );
        (!o.status.success()).then_some(o)
    });
    assert!(
        stderr(&denied).contains("Unavailable"),
        "{}",
        stderr(&denied)
    );
    agent.stop();
}

#[test]
fn a_restarted_agent_keeps_its_identity_and_connected_workloads_reconnect() {
    let srv = server(&[]);
    let work = tempfile::tempdir().unwrap();
    let bundle = bundle_file(&srv, work.path());
    let token = join_token(&srv, NODE);
    let socket = work.path().join("agent.sock");
    let data = work.path().join("agent");
    let mut agent = AgentProc::start(
        &srv.agent_api(),
        &bundle,
        &data,
        &socket,
        &["--join-token", &token],
    );
    create_entry(
        &srv,
        "spiffe://example.org/agent/steady",
        NODE,
        &[&format!("unix:uid:{}", own_uid())],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = agent.endpoint();
    let source = rt.block_on(async {
        spiffe::X509Source::builder()
            .endpoint(&endpoint)
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
            .build()
            .await
            .unwrap()
    });
    let before = source.svid().unwrap();
    assert_eq!(
        before.spiffe_id().to_string(),
        "spiffe://example.org/agent/steady"
    );
    let mut updates = source.updated();

    // The agent restarts from its saved SVID, without a new join token.
    agent.stop();
    let mut agent = AgentProc::start(&srv.agent_api(), &bundle, &data, &socket, &[]);
    assert!(
        agent.logs().contains("agent SVID loaded from disk"),
        "{}",
        agent.logs()
    );
    // The workload's source reconnects by itself and gets the same identity, newly keyed.
    let after = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                updates.changed().await.unwrap();
                if let Ok(svid) = source.svid()
                    && svid.leaf().as_bytes() != before.leaf().as_bytes()
                {
                    return svid;
                }
            }
        })
        .await
        .expect("the X509Source did not reconnect")
    });
    assert_eq!(after.spiffe_id(), before.spiffe_id());
    assert_ne!(after.leaf().as_bytes(), before.leaf().as_bytes());
    // Still one attested node: the restart did not attest again.
    let nodes: serde_json::Value =
        serde_json::from_str(&assert_ok(&srv.cli(&["node", "list", "--output", "json"]))).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    rt.block_on(source.shutdown());
    agent.stop();
}

#[test]
fn during_a_server_outage_longer_than_half_an_svid_life_the_agent_serves_its_cache() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = work.path().join("aims.toml");
    // Workload SVIDs live 10 s; the agent's own identity an hour (SPIRE's `agent_ttl`), so
    // that the outage outlives the workload SVID's half life but not the agent's identity,
    // which its spent join token could not win back.
    std::fs::write(
        &config,
        "[server]\nx509_svid_ttl = \"10s\"\nagent_svid_ttl = \"1h\"\n",
    )
    .unwrap();
    let server_dir = work.path().join("server");
    let start_server = |dir: tempfile::TempDir| {
        Aims::start_in(
            dir,
            server_dir.clone(),
            "server",
            &[
                "--trust-domain",
                TD,
                "--agent-listen",
                &listen,
                "--config",
                config.to_str().unwrap(),
            ],
        )
    };
    let mut srv = start_server(tempfile::tempdir().unwrap());
    let bundle = bundle_file(&srv, work.path());
    let token = join_token(&srv, NODE);
    let socket = work.path().join("agent.sock");
    let mut agent = AgentProc::start(
        &listen,
        &bundle,
        &work.path().join("agent"),
        &socket,
        &["--join-token", &token],
    );
    create_entry(
        &srv,
        "spiffe://example.org/agent/patient",
        NODE,
        &[&format!("unix:uid:{}", own_uid())],
    );
    let fetch = || {
        api(
            Path::new(aims_bin()),
            &socket,
            &["fetch", "x509", "--output", "json"],
        )
    };
    let first = eventually(Duration::from_secs(10), "SVID served", || {
        let o = fetch();
        o.status.success().then_some(o)
    });
    let expiry = x509_expiry(&first);

    // The server goes away for 6 s: past the SVID's half life (5 s), short of its end.
    srv.stop();
    std::thread::sleep(Duration::from_secs(6));
    let cached = fetch();
    assert_ok(&cached);
    assert_eq!(x509_expiry(&cached), expiry, "the cached SVID is served");
    assert!(
        agent.logs().contains("lost contact with the server"),
        "{}",
        agent.logs()
    );
    // The server comes back on the same address; the agent renews on its next retry, which
    // its backoff (doubling up to 30 s, jittered) may put up to half a minute away.
    let srv = start_server(tempfile::tempdir().unwrap());
    eventually(Duration::from_secs(45), "SVID renewed", || {
        let o = fetch();
        (o.status.success() && x509_expiry(&o) > expiry).then_some(())
    });
    drop(srv);
    agent.stop();
}

fn append_byte(path: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(b"\0").unwrap();
}

/// Runs `program api fetch x509` as another user through setpriv.
fn fetch_as(uid: u32, program: &Path, socket: &Path) -> std::process::Output {
    std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(program)
        .args(["api", "fetch", "x509", "--output", "json", "--socket"])
        .arg(socket)
        .output()
        .unwrap()
}

#[test]
fn another_uid_and_a_replaced_executable_get_no_identity() {
    if own_uid() != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: this test needs to switch uids"
        );
        eprintln!("warning: skipping: switching uids needs root");
        return;
    }
    let srv = server(&[]);
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let public = public_dir(work.path());
    let bundle = bundle_file(&srv, work.path());
    let token = join_token(&srv, NODE);
    let socket = public.join("agent.sock");
    let mut agent = AgentProc::start(
        &srv.agent_api(),
        &bundle,
        &work.path().join("agent"),
        &socket,
        &["--join-token", &token],
    );
    // The socket is 0666: reaching it is the directory's business, identity is attestation's.
    assert_eq!(std::fs::metadata(&socket).unwrap().mode() & 0o777, 0o666);
    // The agent's own key is 0600 in a 0700 directory.
    let state = work.path().join("agent").join("agent");
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(state.join("svid.key")).unwrap().mode() & 0o777,
        0o600
    );
    // A copy of the CLI every uid can run (one byte longer, so another digest), and one whose
    // digest an entry pins.
    let program = public.join("aims");
    std::fs::copy(aims_bin(), &program).unwrap();
    append_byte(&program);
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pinned = public.join("aims-pinned");
    std::fs::copy(aims_bin(), &pinned).unwrap();
    std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(0o755)).unwrap();
    let digest = {
        let out = std::process::Command::new("sha256sum")
            .arg(&pinned)
            .output()
            .unwrap();
        stdout(&out).split_whitespace().next().unwrap().to_owned()
    };
    create_entry(
        &srv,
        "spiffe://example.org/agent/root-only",
        NODE,
        &["unix:uid:0"],
    );
    create_entry(
        &srv,
        "spiffe://example.org/agent/pinned",
        NODE,
        &["unix:uid:65533", &format!("unix:sha256:{digest}")],
    );
    // Root gets its identity…
    let root = eventually(Duration::from_secs(10), "root SVID", || {
        let o = api(&program, &socket, &["fetch", "x509", "--output", "json"]);
        o.status.success().then_some(o)
    });
    assert_eq!(
        x509_ids(&root),
        vec!["spiffe://example.org/agent/root-only"]
    );
    // …uid 65534 matches nothing: PermissionDenied, with nothing about why.
    let nobody = fetch_as(65534, &program, &socket);
    assert!(!nobody.status.success());
    assert!(
        stderr(&nobody).contains("PermissionDenied: no identity issued"),
        "{}",
        stderr(&nobody)
    );
    // uid 65533 running the pinned binary gets the pinned identity; the same uid running any
    // other binary does not (AIMS PR-3: both selectors must hold).
    let good = eventually(Duration::from_secs(10), "pinned SVID", || {
        let o = fetch_as(65533, &pinned, &socket);
        o.status.success().then_some(o)
    });
    assert_eq!(x509_ids(&good), vec!["spiffe://example.org/agent/pinned"]);
    assert!(!fetch_as(65533, &program, &socket).status.success());
    // The pinned executable is replaced (one byte appended): the identity is gone.
    append_byte(&pinned);
    let replaced = fetch_as(65533, &pinned, &socket);
    assert!(!replaced.status.success(), "{}", stdout(&replaced));
    assert!(
        stderr(&replaced).contains("PermissionDenied"),
        "{}",
        stderr(&replaced)
    );

    // The default socket lives in the 0700 data directory: other uids cannot even connect.
    let default_dir = work.path().join("agent-default");
    let token = join_token(&srv, "spiffe://example.org/aims/agent/node-d");
    let mut private = AgentProc::start(
        &srv.agent_api(),
        &bundle,
        &default_dir,
        &default_dir.join("agent.sock"),
        &["--join-token", &token],
    );
    let blocked = fetch_as(65534, &program, &default_dir.join("agent.sock"));
    assert!(!blocked.status.success());
    assert!(
        stderr(&blocked).contains("Permission denied (os error 13)"),
        "{}",
        stderr(&blocked)
    );
    private.stop();
    agent.stop();
}

#[test]
fn aims_up_register_self_gives_the_current_user_an_identity() {
    let up = Aims::start("up", &["--register-self"]);
    let socket = up.workload_socket();
    assert_eq!(
        up.up["agent"]["spiffe_id"],
        "spiffe://aims.local/aims/agent/local"
    );
    let out = eventually(Duration::from_secs(10), "SVID served", || {
        let o = api(
            Path::new(aims_bin()),
            &socket,
            &["fetch", "x509", "--output", "json"],
        );
        o.status.success().then_some(o)
    });
    let ids = x509_ids(&out);
    assert_eq!(ids.len(), 1);
    assert!(ids[0].starts_with("spiffe://aims.local/user/"), "{ids:?}");
    // SPIFFE_ENDPOINT_SOCKET is honoured.
    let via_env = std::process::Command::new(aims_bin())
        .args(["api", "fetch", "x509"])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(stdout(&assert_ok_out(via_env)).contains(&ids[0]));
}

fn assert_ok_out(o: std::process::Output) -> std::process::Output {
    assert_ok(&o);
    o
}
