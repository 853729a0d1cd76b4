//! `token`: the authorization server's token endpoint under load, against panva
//! `oidc-provider` (Node) measured in the same run on the same core.
//!
//! Both servers run as real processes pinned to CPU 1 (`taskset -c 1`); the load generator runs
//! in this process pinned to CPU 0. Both are configured for client_credentials with ES256
//! private_key_jwt client authentication and ES256 JWT access tokens (RFC 9068), so a token
//! costs each of them one signature verification and one signature. Every private_key_jwt
//! assertion is fresh (its own `jti`; both servers refuse replays): that is the same work on
//! both sides. AIMS's JWT-SVID client assertion is the same token every time, as an agent
//! presents the one its Workload API caches; AIMS verifies it once and remembers the result
//! until it expires or a bundle changes, so those tokens cost one signature. AIMS serves HTTPS (TLS 1.3), oidc-provider
//! plain HTTP, as perf-baseline.md measured it: the comparison handicaps AIMS.
//!
//! Rows: closed-loop throughput and latency at 1, 16 and 64 connections for each (at
//! saturation a closed loop's latency is just connections ÷ throughput); at 64 connections an
//! open-loop run of AIMS at a fixed rate four times oidc-provider's peak, for the latency a
//! client sees when the server is not saturated (oidc-provider cannot sustain that rate); token exchange (delegation: a subject access token and the client's JWT-SVID
//! verified, one token signed) and transaction tokens; the raw ES256 verify + sign limit.

use aims_token::wire::{
    ACCESS_TOKEN_TYPE, JWT_BEARER_ASSERTION, JWT_SPIFFE_ASSERTION, TOKEN_EXCHANGE_GRANT,
};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use aims_admin::client::AdminClient;
use aims_credentials::jose::{JwsHeader, sign};
use aims_credentials::{KeyType, PrivateKey};
use anyhow::{Context as _, bail};
use bytes::Bytes;

use super::baseline::RawEs256;
use super::process::{Proc, https_target, median_run, pin_self, start_server};
use crate::load::{BodyFn, Pace, Target, fetch, run};
use crate::measure::{Measurement, Timing, run_interleaved};
use crate::report::{Row, ScenarioReport};

const TD: &str = "bench.example";
const RESOURCE: &str = "https://tool.bench.example/api";
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// The open-loop rate at 64 connections: about four times what oidc-provider serves at most.
const OPEN_RATE: f64 = 4_000.0;
/// Load on each server before the measured runs.
const WARMUP: Duration = Duration::from_secs(3);

/// A form body.
pub(crate) fn form(pairs: &[(&str, &str)]) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(serde_urlencoded::to_string(pairs)?))
}

/// A fresh RFC 7523 client assertion for each request number.
fn private_key_jwt(
    key: Arc<PrivateKey>,
    client_id: &'static str,
    aud: String,
    extra: Vec<(&'static str, String)>,
) -> BodyFn {
    let run = format!("{:x}", std::process::id());
    Arc::new(move |n| {
        let now = aims_core::unix_seconds(std::time::SystemTime::now());
        let assertion = sign(
            &key,
            &JwsHeader::new(&key, None, Some("k1")),
            &serde_json::json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": format!("{run}-{n}"), "iat": now, "exp": now + 60}),
        )?;
        let mut f: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            ("client_assertion", &assertion),
        ];
        f.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        form(&f)
    })
}

/// The same body every time.
pub(crate) fn fixed(body: Bytes) -> BodyFn {
    Arc::new(move |_| Ok(body.clone()))
}

/// panva oidc-provider from `baselines/oidc-provider`, installed with npm on first use.
fn start_oidc_provider(dir: &Path, client_jwk: &serde_json::Value) -> anyhow::Result<(Proc, u16)> {
    let home = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("baselines/oidc-provider");
    if !home.join("node_modules/oidc-provider").exists() {
        eprintln!("  installing oidc-provider with npm…");
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&home)
            .status()
            .context("npm (Node.js) is needed for the oidc-provider baseline")?
            .success();
        anyhow::ensure!(ok, "npm install failed in {}", home.display());
    }
    let jwk_file = dir.join("client-jwk.json");
    std::fs::write(&jwk_file, client_jwk.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new("taskset")
        .args(["-c", "1", "node", "provider.mjs", &port.to_string()])
        .arg(&jwk_file)
        .current_dir(&home)
        .env("NODE_ENV", "production")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting node")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "listening" {
        bail!("oidc-provider did not start: {line:?}");
    }
    Ok((proc, port))
}

/// `aims server` on `cpus`, with one-hour access tokens (the exchange rows reuse one).
fn start_aims(dir: &Path, cpus: &str) -> anyhow::Result<(Proc, serde_json::Value)> {
    let config = dir.join("aims.toml");
    // Agent B serves the resource, so it may exchange the tokens it receives (issue 16).
    std::fs::write(
        &config,
        format!(
            "[server.oauth]\naccess_token_ttl = \"1h\"\n\n[[server.oauth.resources]]\n\
             resource = \"{RESOURCE}\"\nserver = \"spiffe://{TD}/agent/b\"\n"
        ),
    )?;
    start_server(dir, TD, Some(&config), Some(cpus))
}

/// Runs the scenario.
pub fn token(timing: Timing) -> anyhow::Result<ScenarioReport> {
    pin_self(0)?;
    let dir = tempfile::tempdir()?;
    let (crypto, limit) = crypto_limit(timing)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = Arc::new(PrivateKey::generate(KeyType::EcP256)?);
    let jwk = serde_json::to_value(key.public_key().to_jwk(
        Some("sig"),
        Some("k1"),
        Some(key.jws_algorithm()),
    ))?;

    eprintln!("  starting aims server and oidc-provider on CPU 1…");
    let server = AimsServer::start(dir.path(), &rt, "1")?;
    let (_node, node_port) = start_oidc_provider(dir.path(), &jwk)?;
    let (issuer, aims, admin) = (
        server.issuer.clone(),
        server.token_endpoint.clone(),
        &server.admin,
    );
    let node_issuer = format!("http://127.0.0.1:{node_port}");
    let node = Target::post(format!("127.0.0.1:{node_port}").parse()?, None, "/token");
    rt.block_on(admin.create_client(&aims_admin::api::CreateClientRequest {
        client_id: Some("bench-pkjwt".into()),
        metadata: serde_json::json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}}),
    }))?;

    let scope = |s: &str| vec![("scope", s.to_owned()), ("resource", RESOURCE.to_owned())];
    let node_body = private_key_jwt(
        key.clone(),
        "bench-pkjwt",
        node_issuer,
        vec![("scope", "api:read".into())],
    );
    let aims_body = private_key_jwt(key, "bench-pkjwt", issuer.clone(), scope("api:read"));
    let svid_body = server.svid_body()?;
    let (exchange_body, txn_body) = server.delegation_bodies(&rt)?;
    let counter = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        for (t, b, what) in [
            (&node, &node_body, "oidc-provider private_key_jwt"),
            (&aims, &aims_body, "AIMS private_key_jwt"),
            (&aims, &svid_body, "AIMS JWT-SVID"),
            (&aims, &exchange_body, "AIMS token exchange"),
            (&aims, &txn_body, "AIMS transaction token"),
        ] {
            fetch(t, b(u64::MAX - 1)?)
                .await
                .with_context(|| what.to_owned())?;
        }
        anyhow::Ok(())
    })?;

    // Both servers warm up (Node's JIT above all) before anything is measured.
    rt.block_on(async {
        for (t, b) in [
            (&node, &node_body),
            (&aims, &aims_body),
            (&aims, &svid_body),
        ] {
            run(
                std::slice::from_ref(t),
                16,
                Pace::Closed,
                Duration::ZERO,
                WARMUP,
                b,
                &counter,
            )
            .await?;
        }
        anyhow::Ok(())
    })?;

    let mut rows = vec![
        Row::baseline("raw ES256 sign (aws-lc-rs)", crypto[0].clone()),
        Row::baseline("raw ES256 verify (aws-lc-rs)", crypto[1].clone()),
    ];
    let mut notes = vec![format!(
        "crypto limit of a token (one verify + one sign): 1/(1/{:.0} + 1/{:.0}) = {limit:.0}/s",
        crypto[0].ops_per_sec, crypto[1].ops_per_sec
    )];
    let mut node_at = Vec::new();
    for conns in CONNECTIONS {
        eprintln!("  {conns} connection(s)…");
        let n = rt.block_on(median_run(
            timing,
            std::slice::from_ref(&node),
            conns,
            Pace::Closed,
            &node_body,
            &counter,
        ))?;
        let base_label = format!("oidc-provider c={conns}");
        let base_ops = n.m.ops_per_sec;
        node_at.push(base_ops);
        rows.push(Row::baseline(
            &format!("oidc-provider, private_key_jwt, {conns} conn (baseline)"),
            n.m,
        ));
        for (label, body) in [
            ("private_key_jwt", &aims_body),
            ("JWT-SVID assertion (reused)", &svid_body),
        ] {
            let m = rt
                .block_on(median_run(
                    timing,
                    std::slice::from_ref(&aims),
                    conns,
                    Pace::Closed,
                    body,
                    &counter,
                ))?
                .m;
            let per_token = m.ops_per_sec / limit;
            notes.push(format!(
                "AIMS {label} at {conns} conn: {:.0}/s = {per_token:.2} of the crypto limit",
                m.ops_per_sec
            ));
            rows.push(Row::against(
                &format!("AIMS, {label}, {conns} conn"),
                m,
                &base_label,
                base_ops,
                Some(8.0),
            ));
        }
    }
    eprintln!("  open loop, 64 connections at {OPEN_RATE}/s…");
    for (label, body) in [
        ("AIMS, private_key_jwt", &aims_body),
        ("AIMS, JWT-SVID assertion (reused)", &svid_body),
    ] {
        let r = rt.block_on(median_run(
            timing,
            std::slice::from_ref(&aims),
            64,
            Pace::Open(OPEN_RATE),
            body,
            &counter,
        ))?;
        rows.push(Row::baseline(
            &format!("{label}, 64 conn, open loop {OPEN_RATE}/s"),
            r.m,
        ));
    }
    eprintln!("  token exchange and transaction tokens, 16 connections…");
    // Both verify the subject access token and sign one token; the client's JWT-SVID is a cache
    // hit, as above.
    for (label, body) in [
        ("AIMS token exchange, 16 conn", &exchange_body),
        ("AIMS transaction token, 16 conn", &txn_body),
    ] {
        let m = rt
            .block_on(median_run(
                timing,
                std::slice::from_ref(&aims),
                16,
                Pace::Closed,
                body,
                &counter,
            ))?
            .m;
        rows.push(Row::against(label, m, "crypto limit", limit, None));
    }
    rows.push(synthetic("crypto limit: 1 ES256 verify + 1 sign", limit));
    notes.push(format!(
        "oidc-provider closed-loop peak: {:.0}/s",
        node_at.iter().copied().fold(0.0, f64::max)
    ));
    Ok(ScenarioReport {
        scenario: "token".into(),
        description:
            "token endpoint: AIMS vs panva oidc-provider, both pinned to CPU 1, load from CPU 0"
                .into(),
        rows,
        notes,
    })
}

/// The crypto limit of one token (one ES256 verification and one signature), measured on this
/// core before any server starts: the raw sign and verify rows, and the limit in tokens/s.
pub(crate) fn crypto_limit(timing: Timing) -> anyhow::Result<(Vec<Measurement>, f64)> {
    let raw = RawEs256::new()?;
    let crypto = run_interleaved(
        timing,
        &mut [&mut || raw.sign_once(), &mut || raw.verify_once()],
    )?;
    let (sign_rate, verify_rate) = (crypto[0].ops_per_sec, crypto[1].ops_per_sec);
    Ok((crypto, 1.0 / (1.0 / sign_rate + 1.0 / verify_rate)))
}

/// `aims server` on CPU 1, with agents A's and B's JWT-SVIDs for its token endpoint.
pub(crate) struct AimsServer {
    pub(crate) proc: Proc,
    issuer: String,
    pub(crate) token_endpoint: Target,
    admin: AdminClient,
    svid_a: String,
    svid_b: String,
}

impl AimsServer {
    /// `aims server` with its data in `dir`, pinned to `cpus` (`taskset -c` syntax).
    pub(crate) fn start(
        dir: &Path,
        rt: &tokio::runtime::Runtime,
        cpus: &str,
    ) -> anyhow::Result<Self> {
        let (proc, up) = start_aims(dir, cpus)?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("up.json");
        let issuer = text(&up["server"]["oauth_issuer"])?;
        let ca = PathBuf::from(text(&up["server"]["web_ca_file"])?);
        let admin = AdminClient::new(text(&up["admin_socket"])?);
        let svid = |name: &str| {
            let req = aims_admin::api::MintJwtRequest {
                spiffe_id: aims_core::SpiffeId::parse(&format!("spiffe://{TD}/agent/{name}"))?,
                audience: vec![issuer.clone()],
                ttl_seconds: Some(3600),
            };
            anyhow::Ok(rt.block_on(admin.mint_jwt(&req))?.token)
        };
        let (svid_a, svid_b) = (svid("a")?, svid("b")?);
        Ok(Self {
            proc,
            token_endpoint: https_target(&issuer, &ca, "/oauth2/token")?,
            issuer,
            admin,
            svid_a,
            svid_b,
        })
    }

    /// Agent B, the resource server of agent A's access token, exchanging it (delegation), and agent A asking a
    /// transaction token for it: both verify the subject token and sign one token; the client's
    /// JWT-SVID is a cache hit.
    /// Agent A's client_credentials request, authenticated with its (reused) JWT-SVID.
    pub(crate) fn svid_body(&self) -> anyhow::Result<BodyFn> {
        Ok(fixed(form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
            ("client_assertion", &self.svid_a),
            ("scope", "api:read"),
            ("resource", RESOURCE),
        ])?))
    }

    pub(crate) fn delegation_bodies(
        &self,
        rt: &tokio::runtime::Runtime,
    ) -> anyhow::Result<(BodyFn, BodyFn)> {
        let (svid_a, svid_b) = (&self.svid_a, &self.svid_b);
        let subject = rt.block_on(access_token(&self.token_endpoint, svid_a))?;
        let exchange_body = fixed(form(&[
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
            ("client_assertion", svid_b),
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("scope", "api:read"),
            ("resource", RESOURCE),
        ])?);
        let txn_body = fixed(form(&[
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
            ("client_assertion", svid_a),
            ("requested_token_type", aims_token::wire::TXN_TOKEN_TYPE),
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", TD),
            ("scope", "api:read"),
        ])?);
        Ok((exchange_body, txn_body))
    }
}

/// `token-exchange` or `txn-token`: that row of `token` alone, against the crypto limit (no
/// Node.js needed).
pub fn delegation(timing: Timing, which: &str) -> anyhow::Result<ScenarioReport> {
    pin_self(0)?;
    let dir = tempfile::tempdir()?;
    let (crypto, limit) = crypto_limit(timing)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    eprintln!("  starting aims server on CPU 1…");
    let server = AimsServer::start(dir.path(), &rt, "1")?;
    let (exchange, txn) = server.delegation_bodies(&rt)?;
    let (label, body) = if which == "token-exchange" {
        ("AIMS token exchange (B for A's token), 16 conn", exchange)
    } else {
        ("AIMS transaction token, 16 conn", txn)
    };
    let target = std::slice::from_ref(&server.token_endpoint);
    let counter = Arc::new(AtomicU64::new(0));
    rt.block_on(fetch(&server.token_endpoint, body(0)?))
        .context(label)?;
    let m = rt
        .block_on(median_run(
            timing,
            target,
            16,
            Pace::Closed,
            &body,
            &counter,
        ))?
        .m;
    Ok(ScenarioReport {
        scenario: which.into(),
        description: format!("{label} on one core, against the crypto limit of a token"),
        rows: vec![
            Row::baseline("raw ES256 sign (aws-lc-rs)", crypto[0].clone()),
            Row::baseline("raw ES256 verify (aws-lc-rs)", crypto[1].clone()),
            synthetic("crypto limit: 1 ES256 verify + 1 sign", limit),
            Row::against(label, m, "crypto limit", limit, None),
        ],
        notes: vec![format!(
            "aims server pinned to CPU 1, load from CPU 0; {} is also a row of `token`",
            which
        )],
    })
}

/// A row for a computed figure (no latency).
fn synthetic(label: &str, ops_per_sec: f64) -> Row {
    Row::baseline(
        label,
        Measurement {
            ops: 0,
            seconds: 0.0,
            ops_per_sec,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            histogram: Vec::new(),
        },
    )
}

/// Agent A's access token, by client_credentials over the load generator's own connection.
async fn access_token(aims: &Target, svid: &str) -> anyhow::Result<String> {
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
        ("client_assertion", svid),
        ("scope", "api:read"),
        ("resource", RESOURCE),
    ])?;
    let v: serde_json::Value = serde_json::from_slice(&fetch(aims, body).await?)?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token")
}
