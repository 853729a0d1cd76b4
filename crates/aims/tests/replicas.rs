//! Several `aims server` replicas on one PostgreSQL (issue 18), as real processes: agents fail
//! over to another replica and keep serving their workloads; changes made on one replica reach
//! agents connected to another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::{
    AgentProc, Aims, TD, aims_bin, api, assert_ok, bundle_file, eventually, join_token, own_uid,
    whole_log,
};

const NODE: &str = "spiffe://example.org/aims/agent/node-r";

/// The audit log key's file in a server's data directory.
fn audit_key_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("keys").join("audit-log.key.pem")
}

/// A fresh data directory holding `first`'s audit log key, as an operator adding a replica
/// prepares it (replicas sharing a store sign one log with one key).
fn joining(first: Option<&Aims>) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    if let Some(first) = first {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir.join("keys"))
            .unwrap();
        let to = audit_key_file(&data_dir);
        std::fs::copy(audit_key_file(&first.data_dir), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (dir, data_dir)
}

/// A replica on `url`; after the first, each shares `first`'s audit log key.
fn replica(url: &str, first: Option<&Aims>) -> Aims {
    let (dir, data_dir) = joining(first);
    Aims::start_in(
        dir,
        data_dir,
        "server",
        &["--trust-domain", TD, "--database", url],
    )
}

/// A replica whose authorization server knows the resource `https://tool.example`.
fn as_replica(url: &str, first: Option<&Aims>) -> Aims {
    as_replica_with(url, first, &[])
}

/// As [`as_replica`], with more command-line arguments.
fn as_replica_with(url: &str, first: Option<&Aims>, extra: &[&str]) -> Aims {
    let (dir, data_dir) = joining(first);
    let config = dir.path().join("aims.toml");
    std::fs::write(
        &config,
        "[[server.oauth.resources]]\nresource = \"https://tool.example\"\n",
    )
    .unwrap();
    Aims::start_in(
        dir,
        data_dir,
        "server",
        &[
            "--trust-domain",
            TD,
            "--database",
            url,
            "--config",
            config.to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>(),
    )
}

fn issuer_of(server: &Aims) -> String {
    server.up["server"]["oauth_issuer"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An HTTPS client trusting `server`'s web CA, with a connection per request (behind a
/// balancer, each request goes to the replica it picks).
fn https(server: &Aims) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(server.web_ca()).unwrap()).unwrap(),
        )
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The token endpoint's answer to a client credentials grant for `https://tool.example`;
/// status 0 when no answer came (the connection failed).
async fn client_credentials(
    http: &reqwest::Client,
    issuer: &str,
    assertion_type: &str,
    assertion: &str,
) -> (u16, serde_json::Value) {
    let sent = http
        .post(format!("{issuer}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", assertion_type),
            ("client_assertion", assertion),
            ("resource", "https://tool.example"),
            ("scope", "read"),
        ])
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (0, serde_json::json!({ "error": e.to_string() })),
    };
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A private_key_jwt client `client_id` registered through `server` (scope `read`), and its
/// key.
fn jwt_client(server: &Aims, client_id: &str) -> aims_credentials::PrivateKey {
    use aims_credentials::{KeyType, PrivateKey};
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let jwk = key
        .public_key()
        .to_jwk(Some("sig"), Some("k1"), Some(key.jws_algorithm()));
    let jwks = server.dir.path().join(format!("{client_id}.jwks"));
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    assert_ok(&server.cli(&[
        "client",
        "create",
        "--client-id",
        client_id,
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "read",
    ]));
    key
}

/// An RFC 7523 client assertion of `client_id` for `issuer`, unique by `jti`.
fn client_assertion(
    key: &aims_credentials::PrivateKey,
    client_id: &str,
    issuer: &str,
    jti: &str,
) -> String {
    let now = aims_core::unix_seconds(std::time::SystemTime::now());
    aims_credentials::jose::sign(
        key,
        &aims_credentials::jose::JwsHeader::new(key, None, Some("k1")),
        &serde_json::json!({"iss": client_id, "sub": client_id, "aud": issuer,
                            "jti": jti, "iat": now, "exp": now + 60}),
    )
    .unwrap()
}

fn create_entry(server: &Aims, spiffe_id: &str) {
    assert_ok(&server.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        NODE,
        "--selector",
        &format!("unix:uid:{}", own_uid()),
    ]));
}

/// The SPIFFE IDs of the X509-SVIDs the agent's Workload API serves this process.
fn served(socket: &Path) -> Vec<String> {
    let out = api(
        Path::new(aims_bin()),
        socket,
        &["fetch", "x509", "--output", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["spiffe_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Issue 18, fault test: the replica an agent is connected to is killed (SIGKILL). The agent
/// keeps serving the SVIDs it holds, moves to the other replica, and an entry created there
/// reaches its workload.
#[test]
fn an_agent_moves_to_another_replica_when_its_replica_is_killed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let a = replica(&url, None);
    let b = replica(&url, Some(&a));
    assert_ne!(a.up["server"]["server_id"], b.up["server"]["server_id"]);
    // One trust domain: the bundle either replica serves holds both replicas' authorities.
    let work = tempfile::tempdir().unwrap();
    let bundle = bundle_file(&b, work.path());
    let token = join_token(&a, NODE);
    let socket = work.path().join("agent.sock");
    let mut agent = AgentProc::start(
        &format!("{},{}", a.agent_api(), b.agent_api()),
        &bundle,
        &work.path().join("agent"),
        &socket,
        &["--join-token", &token],
    );
    create_entry(&a, "spiffe://example.org/agent/one");
    eventually(
        Duration::from_secs(15),
        "the entry made on A served",
        || (served(&socket) == ["spiffe://example.org/agent/one"]).then_some(()),
    );
    drop(a);
    // While no replica answers it, and after, the agent serves what it holds.
    assert_eq!(served(&socket), ["spiffe://example.org/agent/one"]);
    create_entry(&b, "spiffe://example.org/agent/two");
    let deadline = Instant::now() + Duration::from_secs(30);
    while served(&socket)
        != [
            "spiffe://example.org/agent/one",
            "spiffe://example.org/agent/two",
        ]
    {
        assert!(
            Instant::now() < deadline,
            "the entry made on B was not served:\n{}\n--- B:\n{}",
            agent.logs(),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.stop();
    assert!(
        agent.logs().contains("lost contact with the server"),
        "{}",
        agent.logs()
    );
    // B took the agent from the sequence number it held on A: only what it had missed.
    assert!(b.logs().contains("agent sync resumed"), "{}", b.logs());
    drop(b);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// A TCP relay to PostgreSQL that can stall every connection through it (a network partition
/// that drops nothing: bytes wait until it ends), or go down as a restarting database does:
/// every open connection cut, new ones closed at once, until it is up again.
struct PgRelay {
    port: u16,
    stalled: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    /// Bumped when the relay goes down: every pipe of an earlier generation ends.
    cuts: tokio::sync::watch::Sender<u64>,
}

impl PgRelay {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (flag, is_down, cut) = (stalled.clone(), down.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(Self::pipe(cr, sw, flag.clone(), cut.subscribe()));
                tokio::spawn(Self::pipe(sr, cw, flag.clone(), cut.subscribe()));
            }
        });
        Self {
            port,
            stalled,
            down,
            cuts,
        }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        stalled: Arc<AtomicBool>,
        mut cut: tokio::sync::watch::Receiver<u64>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = tokio::select! {
                r = from.read(&mut buf) => match r {
                    Ok(n) if n > 0 => n,
                    _ => return,
                },
                _ = cut.changed() => return,
            };
            while stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }

    /// Down: every connection cut and new ones closed; up: connections accepted again.
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cuts.send_modify(|g| *g += 1);
        }
    }

    /// `url` with its host and port replaced by this relay's.
    fn relayed(&self, url: &str) -> String {
        let mut relayed = reqwest::Url::parse(url).unwrap();
        relayed.set_host(Some("127.0.0.1")).unwrap();
        relayed.set_port(Some(self.port)).unwrap();
        relayed.to_string()
    }
}

/// A relay in front of the PostgreSQL at `url`; `None` when the URL names no TCP host.
fn pg_relay(rt: &tokio::runtime::Runtime, url: &str) -> Option<PgRelay> {
    let parsed = reqwest::Url::parse(url).unwrap();
    let Some(host) = parsed.host_str().map(str::to_owned) else {
        eprintln!("warning: skipping: the PostgreSQL URL names no TCP host");
        return None;
    };
    Some(rt.block_on(PgRelay::start(format!(
        "{host}:{}",
        parsed.port().unwrap_or(5432)
    ))))
}

/// Issue 18, fault test: a replica cut off from PostgreSQL (its connections stalled) stops
/// issuing once its revocations are older than the staleness bound (503
/// `temporarily_unavailable`), instead of issuing from revocations another replica may have
/// changed; once the store answers again it issues without an operator.
#[test]
fn a_replica_cut_off_from_postgresql_stops_issuing_and_recovers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let Some(relay) = pg_relay(&rt, &url) else {
        return;
    };
    let server = as_replica(&relay.relayed(&url), None);
    let issuer = issuer_of(&server);
    let svid = assert_ok(&server.cli(&[
        "svid",
        "mint",
        "jwt",
        "--spiffe-id",
        "spiffe://example.org/agent/cut-off",
        "-a",
        &issuer,
        "--ttl",
        "5m",
    ]))
    .trim()
    .to_owned();
    let http = https(&server);
    let grant = || {
        rt.block_on(client_credentials(
            &http,
            &issuer,
            aims_token::wire::JWT_SPIFFE_ASSERTION,
            &svid,
        ))
    };
    let (status, body) = grant();
    assert_eq!(status, 200, "{body}");
    relay.stall(true);
    // Within the bound (2 s) plus a poll, grants fail closed, and say why.
    let t = Instant::now();
    let refused = eventually(
        Duration::from_secs(15),
        "grants refused while cut off",
        || {
            let (status, body) = grant();
            (status != 200).then_some((status, body))
        },
    );
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(
        refused.1["error"], "temporarily_unavailable",
        "{}",
        refused.1
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Still cut off: still refused.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(grant().0, 503);
    relay.stall(false);
    eventually(Duration::from_secs(30), "grants issued again", || {
        (grant().0 == 200).then_some(())
    });
    drop(server);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Issue 18 (AIMS PO-3): a policy version applied on one replica reaches the gateway following
/// another. `aims up` (replica A, with its gateway) and `aims server` (replica B) share
/// PostgreSQL; `policy apply --wait` on B returns only once A's gateway reports the new version,
/// which it asks for only after installing it: B's insert notified A, A put the version in force
/// and answered the gateway's held poll.
#[test]
fn a_policy_applied_on_one_replica_reaches_the_gateway_of_another() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let a = Aims::start("up", &["--database", &url]);
    let (dir, data_dir) = joining(Some(&a));
    let b = Aims::start_in(
        dir,
        data_dir,
        "server",
        &["--trust-domain", "aims.local", "--database", &url],
    );
    let followers = || assert_ok(&b.cli(&["policy", "followers"]));
    let gateway = eventually(Duration::from_secs(15), "A's gateway follows", || {
        followers()
            .lines()
            .find(|l| l.ends_with("spiffe://aims.local/aims/gateway"))
            .map(str::to_owned)
    });
    assert!(gateway.trim_start().starts_with("1 "), "{gateway}");
    let file = b.dir.path().join("v2.cedar");
    std::fs::write(
        &file,
        format!(
            "{}\n// version 2, applied on replica B\n",
            include_str!("../../aims-policy/cedar/default.cedar")
        ),
    )
    .unwrap();
    let out = assert_ok(&b.cli(&[
        "policy",
        "apply",
        "--wait",
        "--wait-timeout",
        "20s",
        file.to_str().unwrap(),
    ]));
    assert!(out.contains("1 gateway(s) decide with version 2"), "{out}");
    // A decides with it too (its admin socket answers from its own policy service).
    assert!(
        assert_ok(&a.cli(&["policy", "show"])).starts_with("// version 2 "),
        "{}",
        a.logs()
    );
    drop(b);
    drop(a);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Issue 18: a registered client deleted through one replica is refused by another at once,
/// not after its cache of clients (5 s) runs out: the `clients` counter moved, the store
/// notified, and the other replica dropped its cached copy.
#[test]
fn a_client_deleted_on_one_replica_is_refused_by_another_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let a = as_replica(&url, None);
    let b = as_replica(&url, Some(&a));
    let key = jwt_client(&a, "reporting");
    let (issuer, http) = (issuer_of(&b), https(&b));
    let grant = |n: u32| {
        let assertion = client_assertion(&key, "reporting", &issuer, &format!("j{n}"));
        rt.block_on(client_credentials(
            &http,
            &issuer,
            aims_token::wire::JWT_BEARER_ASSERTION,
            &assertion,
        ))
    };
    // B reads the client (registered on A) and caches it.
    let (status, body) = grant(1);
    assert_eq!(status, 200, "{body}");
    assert_ok(&a.cli(&["client", "delete", "reporting"]));
    let t = Instant::now();
    let mut n = 1;
    let refused = eventually(
        Duration::from_secs(10),
        "the deleted client refused",
        || {
            n += 1;
            let (status, body) = grant(n);
            (status != 200).then_some((status, body, t.elapsed()))
        },
    );
    assert_eq!(
        (refused.0, refused.1["error"].as_str()),
        (401, Some("invalid_client")),
        "{}",
        refused.1
    );
    // Well inside the cache's 5 s: the notification, not the expiry, ended it.
    assert!(refused.2 < Duration::from_secs(2), "{:?}", refused.2);
    drop(b);
    drop(a);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// RFC 9449 §11.1 across replicas: a DPoP proof accepted by one replica's token endpoint is a
/// replay at another's (both behind one public URL, so its `htu` fits both), as a client
/// assertion is; a fresh proof is accepted there.
#[test]
fn a_dpop_proof_used_at_one_replica_is_refused_at_another() {
    const PUBLIC: &str = "https://aims.replicas.example";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let a = as_replica_with(&url, None, &["--public-url", PUBLIC]);
    let b = as_replica_with(&url, Some(&a), &["--public-url", PUBLIC]);
    assert_eq!(
        (issuer_of(&a), issuer_of(&b)),
        (PUBLIC.into(), PUBLIC.into())
    );
    let key = jwt_client(&a, "dpop-client");
    let holder = aims_credentials::PrivateKey::generate(aims_credentials::KeyType::EcP256).unwrap();
    let proof = |jti: &str| {
        let mut h = aims_credentials::jose::JwsHeader::new(&holder, Some("dpop+jwt"), None);
        h.jwk = Some(holder.public_key().jwk());
        let now = aims_core::unix_seconds(std::time::SystemTime::now());
        aims_credentials::jose::sign(
            &holder,
            &h,
            &serde_json::json!({"jti": jti, "htm": "POST",
                                "htu": format!("{PUBLIC}/oauth2/token"), "iat": now}),
        )
        .unwrap()
    };
    let grant = |replica: &Aims, assertion_jti: &str, dpop: &str| {
        let endpoint = format!(
            "https://{}/oauth2/token",
            replica.up["server"]["listeners"]["https"].as_str().unwrap()
        );
        let assertion = client_assertion(&key, "dpop-client", PUBLIC, assertion_jti);
        rt.block_on(async {
            let resp = https(replica)
                .post(endpoint)
                .header("DPoP", dpop)
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        aims_token::wire::JWT_BEARER_ASSERTION,
                    ),
                    ("client_assertion", &assertion),
                    ("resource", "https://tool.example"),
                    ("scope", "read"),
                ])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        })
    };
    let first = proof("proof-1");
    let (status, body) = grant(&a, "a1", &first);
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    // The same proof at B, with a fresh client assertion: a replay.
    let (status, body) = grant(&b, "b1", &first);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    let (status, body) = grant(&b, "b2", &proof("proof-2"));
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    drop(b);
    drop(a);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Any replica finishes what another began (issue 18): a CIBA request made at A is pending at
/// B, a person signs in at B and the session is good at A, the approval given at B releases the
/// token at A, and B then refuses the spent request (a token once, across replicas); an
/// authorization request pushed to A (PAR) is consented to at B and its code redeemed at A with
/// PKCE, once.
#[test]
fn person_flows_begun_at_one_replica_finish_at_another() {
    const PUBLIC: &str = "https://aims.replicas.example";
    let rt = tokio::runtime::Runtime::new().unwrap();
    // HTTP clients are made outside `block_on` below.
    let _entered = rt.enter();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let a = as_replica_with(&url, None, &["--public-url", PUBLIC]);
    let b = as_replica_with(&url, Some(&a), &["--public-url", PUBLIC]);
    let base = |r: &Aims| {
        format!(
            "https://{}",
            r.up["server"]["listeners"]["https"].as_str().unwrap()
        )
    };
    let admin = aims_admin::client::AdminClient::new(a.admin_socket());
    let (svid, user) = rt.block_on(async {
        let svid = admin
            .mint_jwt(&aims_admin::api::MintJwtRequest {
                spiffe_id: aims_core::SpiffeId::parse("spiffe://example.org/agent/ciba").unwrap(),
                audience: vec![PUBLIC.into()],
                ttl_seconds: Some(600),
            })
            .await
            .unwrap()
            .token;
        let user = admin
            .create_user(&aims_admin::api::CreateUserRequest {
                username: "carol".into(),
                display_name: None,
                admin: false,
                password: Some("correct horse battery staple".into()),
            })
            .await
            .unwrap();
        (svid, user)
    });
    // One cookie jar for both replicas, as one browser behind one public name has (each test
    // replica has a web CA of its own).
    let ca =
        |r: &Aims| reqwest::Certificate::from_pem(&std::fs::read(r.web_ca()).unwrap()).unwrap();
    let browser = reqwest::Client::builder()
        .add_root_certificate(ca(&a))
        .add_root_certificate(ca(&b))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let client = |replica: &Aims, path: &str, form: &[(&str, &str)]| {
        let mut form = form.to_vec();
        form.push((
            "client_assertion_type",
            aims_token::wire::JWT_SPIFFE_ASSERTION,
        ));
        form.push(("client_assertion", &svid));
        let resp = rt
            .block_on(
                https(replica)
                    .post(format!("{}{path}", base(replica)))
                    .form(&form)
                    .send(),
            )
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            rt.block_on(resp.json::<serde_json::Value>()).unwrap(),
        )
    };
    // The browser's request: a GET, or a form POST.
    let send = |replica: &Aims, path: &str, form: Option<&[(&str, &str)]>| {
        let url = format!("{}{path}", base(replica));
        let req = match form {
            Some(f) => browser.post(url).form(f),
            None => browser.get(url),
        };
        rt.block_on(req.send()).unwrap()
    };
    let page = |replica: &Aims, path: &str, form: Option<&[(&str, &str)]>| {
        let resp = send(replica, path, form);
        let status = resp.status().as_u16();
        (status, rt.block_on(resp.text()).unwrap())
    };
    let field = |body: &str, name: &str| {
        body.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_owned()
    };

    let (status, bc) = client(
        &a,
        "/oauth2/bc-authorize",
        &[
            ("scope", "openid read"),
            ("login_hint", "carol"),
            ("binding_message", "R3PL1"),
            ("resource", "https://tool.example"),
        ],
    );
    assert_eq!(status, 200, "{bc}");
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();
    let poll = |replica: &Aims| {
        client(
            replica,
            "/oauth2/token",
            &[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", &id),
            ],
        )
    };
    let (status, body) = poll(&b);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending")),
        "{body}"
    );

    // Carol signs in at B; her session is good at A.
    let (status, login) = page(&b, "/login?return_to=/approvals", None);
    assert_eq!(status, 200, "{login}");
    let csrf = field(&login, "csrf");
    let (status, body) = page(
        &b,
        "/login/password",
        Some(&[
            ("username", "carol"),
            ("password", "correct horse battery staple"),
            ("csrf", &csrf),
            ("return_to", "/approvals"),
        ]),
    );
    assert_eq!(status, 303, "{body}");
    let (status, approvals) = page(&a, "/approvals", None);
    assert_eq!(status, 200, "signed in at B, not at A: {approvals}");
    assert!(approvals.contains("R3PL1"), "{approvals}");
    // She approves at B.
    let (_, approvals) = page(&b, "/approvals", None);
    let card = approvals
        .split("class=\"card approval\"")
        .find(|c| c.contains("R3PL1"))
        .expect("the request on B's approvals page");
    let (status, body) = page(
        &b,
        "/approvals/decide",
        Some(&[
            ("id", &field(card, "id")),
            ("decision", "approve"),
            ("csrf", &field(&approvals, "csrf")),
        ]),
    );
    assert_eq!(status, 303, "{body}");
    // A releases the token (after the polling interval), bound to her approval.
    std::thread::sleep(Duration::from_secs(6));
    let (status, tokens) = poll(&a);
    assert_eq!(status, 200, "{tokens}");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(user["user"]["user_id"].is_string(), "{user}");
    assert_eq!(claims["sub"], user["user"]["user_id"]);
    assert!(claims["approval"].is_string(), "{claims}");
    std::thread::sleep(Duration::from_secs(6));
    let (status, body) = poll(&b);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // PAR at A, consent at B, the code redeemed at A.
    const REDIRECT: &str = "http://127.0.0.1/replicas/callback";
    rt.block_on(admin.create_client(&aims_admin::api::CreateClientRequest {
        client_id: Some("par-agent".into()),
        metadata: serde_json::json!({
            "token_endpoint_auth_method": "spiffe_jwt",
            "spiffe_id": "spiffe://example.org/agent/ciba",
            "client_name": "PAR agent",
            "redirect_uris": [REDIRECT],
            "require_pushed_authorization_requests": true,
        }),
    }))
    .unwrap();
    let verifier = "replicas-verifier-0123456789-0123456789-0123456789";
    let challenge = aims_credentials::jose::sha256_b64url(verifier.as_bytes());
    let (status, par) = client(
        &a,
        "/oauth2/par",
        &[
            ("client_id", "par-agent"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid read"),
            ("resource", "https://tool.example"),
            ("state", "st-replicas"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    assert_eq!(status, 201, "{par}");
    let request_uri: String =
        url::form_urlencoded::byte_serialize(par["request_uri"].as_str().unwrap().as_bytes())
            .collect();
    let location = |replica: &Aims, path: &str, form: Option<&[(&str, &str)]>| {
        let resp = send(replica, path, form);
        assert_eq!(resp.status().as_u16(), 303, "{path}");
        resp.headers()["location"].to_str().unwrap().to_owned()
    };
    let pending = location(
        &b,
        &format!("/oauth2/authorize?client_id=par-agent&request_uri={request_uri}"),
        None,
    );
    let (status, consent) = page(&b, &pending, None);
    assert_eq!(status, 200, "{consent}");
    assert!(consent.contains("PAR agent"), "{consent}");
    let to = location(
        &b,
        "/oauth2/authorize/decide",
        Some(&[
            ("id", &field(&consent, "id")),
            ("decision", "approve"),
            ("csrf", &field(&consent, "csrf")),
        ]),
    );
    let query: std::collections::HashMap<String, String> = reqwest::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query.get("state").map(String::as_str), Some("st-replicas"));
    assert_eq!(query.get("iss").map(String::as_str), Some(PUBLIC));
    let redeem = |replica: &Aims| {
        client(
            replica,
            "/oauth2/token",
            &[
                ("client_id", "par-agent"),
                ("grant_type", "authorization_code"),
                ("code", &query["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
    };
    let (status, tokens) = redeem(&a);
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    let (status, body) = redeem(&b);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    drop(b);
    drop(a);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Appends one audit record naming `marker` through `mtls_base`; its index once durable.
async fn append_marker(
    client: &reqwest::Client,
    mtls_base: &str,
    marker: &str,
) -> Result<u64, String> {
    let record = serde_json::json!({"time_ms": 1_700_000_000_000i64, "kind": "decision",
        "action": "call", "agent": "spiffe://example.org/agent/a", "resource": marker,
        "decision": "allow", "correlation_id": "replicas"});
    let r = client
        .post(format!("{mtls_base}/audit/v1/records"))
        .json(&[record])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("status {}", r.status()));
    }
    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    body["first"]
        .as_u64()
        .ok_or_else(|| format!("no index in {body}"))
}

/// The whole log ([`whole_log`](common::whole_log)) holding each acknowledged `(index, marker)` at its index, and
/// verified by `aims audit verify` at its full size.
fn acknowledged_in_log(server: &Aims, acked: &[(u64, String)]) -> Vec<aims_audit::LogEntry> {
    let entries = whole_log(server);
    for (index, marker) in acked {
        let record: serde_json::Value =
            serde_json::from_str(&entries[*index as usize].record).unwrap();
        assert_eq!(
            record["resource"],
            marker.as_str(),
            "acknowledged record {index}"
        );
    }
    let out = assert_ok(&server.cli(&["audit", "verify"]));
    assert!(
        out.contains(&format!("at size {} ", entries.len())),
        "{out}"
    );
    entries
}

/// `aims <args>` expected to exit (within a minute) without starting.
fn refused_start(args: &[&str]) -> String {
    let mut child = std::process::Command::new(aims_bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("aims {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "aims {args:?} exited successfully");
    common::stderr(&out)
}

/// Issue 18, fault test (AIMS MO-6, MO-7): replicas keep one audit log, signed with one key.
/// Writers append through both replicas, each waiting for its record's commit; the replica
/// holding the audit sequencer lease is killed (SIGKILL) mid-stream and its writers move to the
/// other. Every acknowledged record is in the log at its index, no index is missing or doubled,
/// the survivor takes the lease and checkpoints the whole log, and every checkpoint either
/// replica signed verifies with the one key against the same entries (no fork). A replica with
/// an audit log key of its own refuses to start, naming the file to copy.
#[test]
fn replicas_keep_one_audit_log_through_the_death_of_its_sequencer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let mut a = replica(&url, None);
    // A came up alone: it holds the lease.
    let sequencer = "now signs the audit log's checkpoints";
    eventually(Duration::from_secs(10), "A takes the sequencer", || {
        a.logs().contains(sequencer).then_some(())
    });
    let b = replica(&url, Some(&a));

    let (_own, own_dir) = joining(None);
    let err = refused_start(&[
        "server",
        "--data-dir",
        own_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "127.0.0.1:0",
        "--oauth-mtls-listen",
        "127.0.0.1:0",
        "--trust-domain",
        TD,
        "--database",
        &url,
    ]);
    assert!(err.contains("sign one log with one key"), "{err}");
    assert!(
        err.contains(audit_key_file(&own_dir).to_str().unwrap()),
        "{err}"
    );

    let client = common::workload_client(&a, "writer", &[&b]);
    let base = |s: &Aims| s.up["server"]["oauth_mtls"].as_str().unwrap().to_owned();
    let acked: Arc<std::sync::Mutex<Vec<(u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Writers 0 and 2 start on A and move to B; 1 and 3 stay on B.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bases = if w % 2 == 0 {
                vec![base(&a), base(&b)]
            } else {
                vec![base(&b)]
            };
            let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            rt.spawn(async move {
                let (mut at, mut i) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let marker = format!("w{w}-{i}");
                    match append_marker(&client, &bases[at], &marker).await {
                        Ok(index) => {
                            acked.lock().unwrap().push((index, marker));
                            i += 1;
                        }
                        // The same record again at the next replica: it may be in the log twice
                        // (at least once), never at an index another record holds.
                        Err(_) if at + 1 < bases.len() => at += 1,
                        Err(e) => panic!("writer {w} on its last replica: {e}"),
                    }
                }
            })
        })
        .collect();
    let acks = || acked.lock().unwrap().len();
    eventually(Duration::from_secs(20), "appends under way", || {
        (acks() > 200).then_some(())
    });
    a.proc.kill();
    let at_kill = acks();
    eventually(Duration::from_secs(20), "appends go on at B", || {
        (acks() > at_kill + 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).unwrap();
    }
    drop(a);

    // The survivor takes the lease and checkpoints everything.
    eventually(Duration::from_secs(10), "B takes the sequencer", || {
        b.logs().contains(sequencer).then_some(())
    });
    let entries = acknowledged_in_log(&b, &acked.lock().unwrap());

    // No fork: every checkpoint signed, by either replica, opens with the one key and its root
    // is that of the same entries.
    let vkey = assert_ok(&b.cli(&["audit", "checkpoint", "--vkey"]));
    let verifier = aims_audit::NoteVerifier::from_vkey(vkey.trim()).unwrap();
    let store = rt.block_on(aims_store::Store::connect(&url)).unwrap();
    let notes: Vec<String> = rt
        .block_on(
            sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY size")
                .fetch_all(store.pool()),
        )
        .unwrap();
    assert!(notes.len() >= 2, "{} checkpoints", notes.len());
    for note in &notes {
        let mut check = aims_audit::LogVerifier::new(note, &verifier).unwrap();
        for e in &entries {
            check.check(e).unwrap();
        }
        check.finish().unwrap();
    }
    drop(b);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Issue 18: `aims up --replicas 2` runs two replicas on one PostgreSQL behind its load
/// balancer. Both advertise the balancer's URL as the issuer and serve one web certificate; the
/// local agent and the gateway reach the servers through it; with the child replica killed
/// (SIGKILL) the balancer passes it over and the stack keeps answering; a clean stop takes the
/// child down too.
#[test]
fn aims_up_with_replicas_serves_through_its_load_balancer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    // Replicas share a PostgreSQL store; on SQLite `up` says so instead of starting.
    let sqlite = tempfile::tempdir().unwrap();
    let err = refused_start(&[
        "up",
        "--replicas",
        "2",
        "--data-dir",
        sqlite.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("--replicas needs --database postgres://"),
        "{err}"
    );
    let mut up = Aims::start(
        "up",
        &["--database", &url, "--replicas", "2", "--register-self"],
    );
    let replicas = up.up["replicas"].as_array().unwrap().clone();
    assert_eq!(replicas.len(), 2, "{}", up.up);
    assert_ne!(replicas[0]["server_id"], replicas[1]["server_id"]);
    let child = replicas[1]["pid"].as_u64().unwrap();
    assert_ne!(child, u64::from(up.proc.pid()));
    let issuer = issuer_of(&up);
    // A connection per request, so the balancer picks a replica for each.
    let http = https(&up);
    let metadata_issuer = |base: &str| {
        let http = http.clone();
        let base = base.to_owned();
        rt.block_on(async move {
            let r = http
                .get(format!("{base}/.well-known/oauth-authorization-server"))
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(v["issuer"].as_str().unwrap_or_default().to_owned())
        })
    };
    // Each replica, reached directly, names the balancer as issuer with the same certificate.
    for r in &replicas {
        let own = format!(
            "https://127.0.0.1:{}",
            r["listeners"]["https"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
        );
        assert_ne!(own, issuer);
        assert_eq!(metadata_issuer(&own).unwrap(), issuer);
    }
    for _ in 0..10 {
        assert_eq!(metadata_issuer(&issuer).unwrap(), issuer);
    }
    // The agent got its identity through the balancer, and serves this process.
    let svids = up.dir.path().join("svids");
    assert!(up.fetch_x509(&svids));
    // The gateway follows the policy over mutual TLS through the balancer.
    eventually(
        Duration::from_secs(15),
        "the gateway follows the policy",
        || {
            assert_ok(&up.cli(&["policy", "followers"]))
                .lines()
                .any(|l| l.ends_with("spiffe://aims.local/aims/gateway"))
                .then_some(())
        },
    );
    // The demo's flows, each request to whichever replica the balancer picks: PAR, code, sign
    // in, token exchange, transaction tokens, CIBA, a revocation reaching the gateway.
    let demo = assert_ok(&up.cli(&["demo", "--auto-approve"]));
    assert!(demo.contains("The demo ran every step"), "{demo}");

    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &child.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Connections the kernel queued for it while it died fail (as behind any balancer); wait
    // until it is gone (a zombie until `aims up` reaps it).
    eventually(Duration::from_secs(10), "the replica dies", || {
        std::fs::read_to_string(format!("/proc/{child}/status"))
            .map_or(true, |s| s.contains("State:\tZ"))
            .then_some(())
    });
    // Each request may be retried once after 200 ms, as a client would; were the dead replica
    // not passed over, every other first attempt would fail.
    let mut first_failures = Vec::new();
    for _ in 0..10 {
        let answer = metadata_issuer(&issuer).or_else(|e| {
            first_failures.push(e);
            std::thread::sleep(Duration::from_millis(200));
            metadata_issuer(&issuer)
        });
        assert_eq!(
            answer.as_deref(),
            Ok(issuer.as_str()),
            "a request failed twice:\n{}",
            up.logs()
        );
    }
    assert!(
        first_failures.len() <= 1,
        "{first_failures:?}\n{}",
        up.logs()
    );
    assert!(up.fetch_x509(&svids));

    up.stop();
    assert!(
        !Path::new(&format!("/proc/{}", replicas[1]["pid"])).exists(),
        "the child replica outlived aims up"
    );
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Issue 18, fault test: `aims up --replicas 3` under steady load — private_key_jwt grants
/// through the balancer, each allowed one retry after 200 ms, and Workload API fetches — with token
/// decisions recorded before the grant returns (`server.audit = "sync"`, in the operator's
/// config, which the child replicas share); one child replica is killed (SIGKILL). No grant
/// fails beyond its retry, no fetch fails, the agent takes an entry made after the kill, the
/// gateway keeps enforcing (the demo runs), every granted token has its decision record, no
/// index is missing or doubled, and the log verifies.
#[test]
fn three_replicas_under_load_lose_one_and_nothing_else() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("aims.toml");
    std::fs::write(
        &config,
        "[server]\naudit = \"sync\"\n\n[[server.oauth.resources]]\nresource = \"https://tool.example\"\n",
    )
    .unwrap();
    let up = Aims::start(
        "up",
        &[
            "--database",
            &url,
            "--replicas",
            "3",
            "--register-self",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let victim = up.up["replicas"][1]["pid"].as_u64().unwrap();
    let key = jwt_client(&up, "loader");
    let issuer = issuer_of(&up);
    // A connection per request, so the balancer spreads them over the replicas.
    let http = https(&up);
    let key = Arc::new(key);
    let granted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let grants: Vec<_> = (0..4)
        .map(|w| {
            let (http, issuer, key) = (http.clone(), issuer.clone(), key.clone());
            let (granted, failed, stop) = (granted.clone(), failed.clone(), stop.clone());
            rt.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut last = String::new();
                    let mut ok = false;
                    for attempt in 0..2 {
                        if attempt > 0 {
                            // A client's backoff before its one retry.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        n += 1;
                        let assertion =
                            client_assertion(&key, "loader", &issuer, &format!("w{w}-{n}"));
                        let (status, body) = client_credentials(
                            &http,
                            &issuer,
                            aims_token::wire::JWT_BEARER_ASSERTION,
                            &assertion,
                        )
                        .await;
                        if status == 200 {
                            ok = true;
                            break;
                        }
                        last = format!("{status} {body}");
                    }
                    if ok {
                        granted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.lock().unwrap().push(last);
                    }
                }
            })
        })
        .collect();
    let fetch_failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fetches = {
        let (socket, stop, failures) = (up.workload_socket(), stop.clone(), fetch_failures.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if served(&socket).is_empty() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            n
        })
    };
    let count = || granted.load(Ordering::Relaxed);
    eventually(Duration::from_secs(30), "grants under way", || {
        (count() > 100).then_some(())
    });
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let at_kill = count();
    eventually(Duration::from_secs(30), "grants go on", || {
        (count() > at_kill + 100).then_some(())
    });
    let uid = own_uid();
    assert_ok(&up.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://aims.local/after/the-kill",
        "--parent-id",
        "spiffe://aims.local/aims/agent/local",
        "--selector",
        &format!("unix:uid:{uid}"),
    ]));
    eventually(Duration::from_secs(15), "the new entry served", || {
        served(&up.workload_socket())
            .iter()
            .any(|id| id == "spiffe://aims.local/after/the-kill")
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for g in grants {
        rt.block_on(g).unwrap();
    }
    let fetched = fetches.join().unwrap();
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "grants failed after a retry: {failed:?}");
    assert!(fetched > 0);
    assert_eq!(
        fetch_failures.load(Ordering::Relaxed),
        0,
        "Workload API fetches failed"
    );
    let demo = assert_ok(&up.cli(&["demo", "--auto-approve"]));
    assert!(demo.contains("The demo ran every step"), "{demo}");

    let entries = whole_log(&up);
    let recorded = entries
        .iter()
        .filter(|e| {
            let r: serde_json::Value = serde_json::from_str(&e.record).unwrap();
            r["action"] == "obtain_token" && r["agent"] == "loader" && r["decision"] == "allow"
        })
        .count() as u64;
    assert!(
        recorded >= count(),
        "{} tokens granted, {recorded} decisions recorded",
        count()
    );
    let out = assert_ok(&up.cli(&["audit", "verify"]));
    assert!(out.contains(&format!("{} entries", entries.len())), "{out}");
    // `aims up` killed outright (SIGKILL, no chance to stop its children): the surviving child
    // replica stops with it rather than living on.
    let survivor = up.up["replicas"][2]["pid"].as_u64().unwrap();
    drop(up);
    eventually(Duration::from_secs(10), "the child replica stops", || {
        std::fs::read_to_string(format!("/proc/{survivor}/status"))
            .map_or(true, |s| s.contains("State:\tZ"))
            .then_some(())
    });
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}

/// Issue 18, fault test: PostgreSQL restarted under load (every connection through a relay cut,
/// new ones closed for 3 s). While it is down, audit appends and token grants get clear 503s,
/// nothing panics and the server keeps running; once it is back both recover without an
/// operator, and every acknowledged record is in the log at its index, which verifies.
#[test]
fn postgresql_restarted_under_load_loses_nothing_acknowledged() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, name)) = rt.block_on(aims_store::testing::fresh_postgres_url()) else {
        return;
    };
    let Some(relay) = pg_relay(&rt, &url) else {
        return;
    };
    let mut server = as_replica(&relay.relayed(&url), None);
    let issuer = issuer_of(&server);
    let svid = assert_ok(&server.cli(&[
        "svid",
        "mint",
        "jwt",
        "--spiffe-id",
        "spiffe://example.org/agent/restart",
        "-a",
        &issuer,
        "--ttl",
        "5m",
    ]))
    .trim()
    .to_owned();
    let writer = common::workload_client(&server, "writer", &[]);
    let mtls = server.up["server"]["oauth_mtls"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = https(&server);
    let acked: Arc<std::sync::Mutex<Vec<(u64, String)>>> = Arc::default();
    let refusals: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let granted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<_> = (0..2)
        .map(|w| {
            let (client, mtls, acked, refusals, stop) = (
                writer.clone(),
                mtls.clone(),
                acked.clone(),
                refusals.clone(),
                stop.clone(),
            );
            rt.spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let marker = format!("w{w}-{i}");
                    match append_marker(&client, &mtls, &marker).await {
                        Ok(index) => {
                            acked.lock().unwrap().push((index, marker));
                            i += 1;
                        }
                        Err(e) => {
                            refusals.lock().unwrap().push(format!("append: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    {
        let (http, issuer, svid, granted, refusals, stop) = (
            http.clone(),
            issuer.clone(),
            svid.clone(),
            granted.clone(),
            refusals.clone(),
            stop.clone(),
        );
        tasks.push(rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = client_credentials(
                    &http,
                    &issuer,
                    aims_token::wire::JWT_SPIFFE_ASSERTION,
                    &svid,
                )
                .await;
                if status == 200 {
                    granted.fetch_add(1, Ordering::Relaxed);
                } else {
                    refusals
                        .lock()
                        .unwrap()
                        .push(format!("grant: {status} {}", body["error"]));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let acks = || acked.lock().unwrap().len();
    eventually(Duration::from_secs(20), "load under way", || {
        (acks() > 50 && granted.load(Ordering::Relaxed) > 10).then_some(())
    });
    relay.set_down(true);
    std::thread::sleep(Duration::from_secs(3));
    server.proc.assert_running();
    let during = refusals.lock().unwrap().clone();
    assert!(
        during.iter().any(|r| r.starts_with("append"))
            && during.iter().any(|r| r.starts_with("grant")),
        "nothing was refused while the database was down: {during:?}"
    );
    relay.set_down(false);
    let (at_up, granted_at_up) = (acks(), granted.load(Ordering::Relaxed));
    eventually(Duration::from_secs(30), "appends and grants again", || {
        (acks() > at_up + 50 && granted.load(Ordering::Relaxed) > granted_at_up + 10).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    // Clear errors only: 503s, saying why.
    for r in refusals.lock().unwrap().iter() {
        assert!(
            r == "append: status 503 Service Unavailable"
                || r == "grant: 503 \"temporarily_unavailable\"",
            "{r}"
        );
    }
    acknowledged_in_log(&server, &acked.lock().unwrap());
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
    drop(server);
    rt.block_on(aims_store::testing::drop_postgres_database(&name));
}
