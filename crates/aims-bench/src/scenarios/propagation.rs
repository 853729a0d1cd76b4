//! How long a control-plane change takes to reach the gateway, on loopback: `revocation`
//! (issue 8) and `policy` (issue 18).
//!
//! `revocation`: `aims up` runs with the gateway's token recheck and decision reuse set to a
//! minute, so only the Shared Signals path can end access in time: the admin call
//! (`POST /v1/remediation/revoke` on the admin socket) revokes the agent's tokens in the store,
//! appends the remediation record durably, and emits CAEP session-revoked; the gateway's long
//! poll wakes, it verifies the SET and drops the agent's cached token; its next request is
//! introspected and refused. Each sample is a fresh agent: mint a JWT-SVID, get a token, call
//! the gateway twice (200, cached), then — clock started — revoke and call in a loop until the
//! answer is 401.
//!
//! `policy`: one agent's calls are allowed by one policy version and forbidden by the next; each
//! sample applies the other text (`POST /v1/policy` on the admin socket: validated, recorded
//! durably, in force at the server) and calls in a loop until the gateway's answer flips (the
//! gateway's held policy poll is answered at once, it installs the version, and its decisions,
//! cached per version, follow).
//!
//! The baseline of both is the same gateway call with a valid, cached token (one request's
//! round trip, the floor of what "refused on the next call" can mean).

use std::time::{Duration, Instant};

use aims_admin::api::MintJwtRequest;
use aims_admin::client::AdminClient;
use aims_core::SpiffeId;
use aims_token::wire::JWT_SPIFFE_ASSERTION;
use anyhow::Context as _;

use super::oauth::form;
use super::process::{https_target, start_aims};
use crate::load::{StatusConn, fetch};
use crate::measure::{Timing, summarize};
use crate::report::{Row, ScenarioReport};

const TD: &str = "bench.example";
/// Revocations measured.
const SAMPLES: usize = 200;

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// `aims up` with one route to the demo tool, token recheck and decision reuse at a minute.
struct Up {
    _proc: super::process::Proc,
    issuer: String,
    ca: std::path::PathBuf,
    gateway: String,
    admin: AdminClient,
    token_endpoint: crate::load::Target,
    log: std::path::PathBuf,
}

/// Runs `scenario` against a fresh `aims up` ([`up`]) on a current-thread runtime.
fn with_up(
    scenario: impl AsyncFnOnce(&Up) -> anyhow::Result<ScenarioReport>,
) -> anyhow::Result<ScenarioReport> {
    let dir = tempfile::tempdir()?;
    let up = up(dir.path())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scenario(&up))
}

fn up(dir: &std::path::Path) -> anyhow::Result<Up> {
    let tool_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join("aims.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
token_recheck = "60s"
decision_ttl = "60s"
demo_tool = true
demo_tool_listen = "127.0.0.1:{tool_port}"
{}"#,
            super::gateway::route_toml("bench", tool_port, false)
        ),
    )?;
    let (proc, up) = start_aims(dir, "up", TD, Some(&config), None)?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("up.json");
    let issuer = text(&up["server"]["oauth_issuer"])?;
    let ca = std::path::PathBuf::from(text(&up["server"]["web_ca_file"])?);
    Ok(Up {
        _proc: proc,
        token_endpoint: https_target(&issuer, &ca, "/oauth2/token")?,
        gateway: text(&up["gateway"]["url"])?,
        admin: AdminClient::new(text(&up["admin_socket"])?),
        log: dir.join("up.log"),
        issuer,
        ca,
    })
}

impl Up {
    /// Waits until the gateway's log says `line`.
    async fn logged(&self, line: &str, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(line)
        {
            anyhow::ensure!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// A connection to the gateway's route carrying a fresh token of `agent`, after its first
    /// call (200, so the next ones hit the gateway's caches).
    async fn agent_call(&self, agent: &str) -> anyhow::Result<(StatusConn, crate::load::Target)> {
        let svid = self
            .admin
            .mint_jwt(&MintJwtRequest {
                spiffe_id: SpiffeId::parse(agent)?,
                audience: vec![self.issuer.clone()],
                ttl_seconds: Some(300),
            })
            .await?
            .token;
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
            ("client_assertion", &svid),
            ("scope", "weather.read"),
            ("resource", &format!("{}/bench", self.gateway)),
        ])?;
        let v: serde_json::Value =
            serde_json::from_slice(&fetch(&self.token_endpoint, body).await?)?;
        let token = v["access_token"].as_str().context("no access_token")?;
        let mut target = https_target(&self.gateway, &self.ca, "/bench/weather")?;
        target.method = http::Method::GET;
        target.headers = vec![(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        )];
        let mut conn = StatusConn::open(&target).await?;
        anyhow::ensure!(
            conn.status(&target).await? == 200,
            "the agent's first call failed"
        );
        Ok((conn, target))
    }
}

/// Calls until the answer is `wanted` (only `passing` answers on the way), within 5 s.
async fn until_status(
    conn: &mut StatusConn,
    target: &crate::load::Target,
    wanted: u16,
    passing: u16,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let s = conn.status(target).await?.as_u16();
        if s == wanted {
            return Ok(());
        }
        anyhow::ensure!(s == passing, "unexpected {s}");
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(5),
            "not {wanted} within 5 s"
        );
    }
}

const FLOOR: &str = "one gateway call with a valid cached token (the request round trip)";

/// `revocation`.
pub fn revocation(_timing: Timing) -> anyhow::Result<ScenarioReport> {
    with_up(async |up| {
        // The gateway's signal stream must exist before the first revocation.
        up.logged(
            "signals: receiving",
            "the gateway never subscribed to signals",
        )
        .await?;
        let (mut floor, mut revoked) = (Vec::new(), Vec::new());
        let started = Instant::now();
        eprintln!("  revocation: {SAMPLES} agents revoked one by one…");
        for k in 0..SAMPLES {
            let agent = format!("spiffe://{TD}/agent/revoke-{k}");
            let (mut conn, target) = up.agent_call(&agent).await?;
            let t = Instant::now();
            anyhow::ensure!(
                conn.status(&target).await? == 200,
                "the agent's cached call failed"
            );
            floor.push(nanos(t.elapsed()));

            let t = Instant::now();
            up.admin.revoke(&agent, "benchmark").await?;
            until_status(&mut conn, &target, 401, 200).await?;
            revoked.push(nanos(t.elapsed()));
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(ScenarioReport {
            scenario: "revocation".into(),
            description: "operator revoke → the gateway refuses the agent (loopback, Shared Signals poll stream)".into(),
            rows: vec![
                Row::baseline(FLOOR, summarize(floor, secs)),
                Row::latency("operator revoke → first 401 at the gateway", summarize(revoked, secs)),
            ],
            notes: vec![format!(
                "{SAMPLES} revocations, each of a fresh agent; ops/s columns are not throughputs here; the latency includes the admin call, the durable remediation record and the SSF long-poll wake-up; token recheck and decision reuse set to 60 s"
            )],
        })
    })
}

/// `policy` (issue 18: a new policy version reaches the gateway by push, p99 < 50 ms).
pub fn policy(_timing: Timing) -> anyhow::Result<ScenarioReport> {
    with_up(async |up| {
        up.logged("AIMS gateway started", "the gateway never started")
            .await?;
        let allowing = up.admin.current_policy().await?.text;
        let forbidding = format!(
            "{allowing}\n@id(\"bench-closed\")\nforbid(principal, action, resource == Aims::Tool::\"bench\");\n"
        );
        let (mut conn, target) = up
            .agent_call(&format!("spiffe://{TD}/agent/policy"))
            .await?;
        let (mut floor, mut applied, mut enforced) = (Vec::new(), Vec::new(), Vec::new());
        let started = Instant::now();
        eprintln!("  policy: {SAMPLES} versions applied one by one…");
        for k in 0..SAMPLES {
            let t = Instant::now();
            let expected = conn.status(&target).await?.as_u16();
            floor.push(nanos(t.elapsed()));
            let (text, wanted) = if k % 2 == 0 {
                (&forbidding, 403)
            } else {
                (&allowing, 200)
            };
            anyhow::ensure!(
                expected == if wanted == 200 { 403 } else { 200 },
                "the gateway answered {expected} under the previous version"
            );
            let t = Instant::now();
            let out = up
                .admin
                .apply_policy(text, None, false, Some("aims-bench".into()))
                .await?;
            anyhow::ensure!(out.applied, "version not applied");
            applied.push(nanos(t.elapsed()));
            until_status(&mut conn, &target, wanted, expected).await?;
            enforced.push(nanos(t.elapsed()));
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(ScenarioReport {
            scenario: "policy".into(),
            description: "policy apply → the gateway decides with the new version (loopback, held policy poll)".into(),
            rows: vec![
                Row::baseline(FLOOR, summarize(floor, secs)),
                Row::latency("policy apply (admin call: validate, record durably, in force at the server)", summarize(applied, secs)),
                Row::latency("policy apply → first answer under the new version at the gateway", summarize(enforced, secs)),
            ],
            notes: vec![format!(
                "{SAMPLES} versions, alternately forbidding and allowing one agent's call; ops/s columns are not throughputs here; decision reuse set to 60 s (decisions are cached per policy version)"
            )],
        })
    })
}
