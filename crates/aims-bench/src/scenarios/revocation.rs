//! `revocation` (issue 8): how long from an operator's revocation to the gateway refusing the
//! revoked agent, on loopback.
//!
//! `aims up` runs with the gateway's token recheck and decision reuse set to a minute, so only
//! the Shared Signals path can end access in time: the admin call (`POST /v1/remediation/revoke`
//! on the admin socket) revokes the agent's tokens in the store, appends the remediation record
//! durably, and emits CAEP session-revoked; the gateway's long poll wakes, it verifies the SET
//! and drops the agent's cached token; its next request is introspected and refused. Each
//! sample is a fresh agent: mint a JWT-SVID, get a token, call the gateway twice (200, cached),
//! then — clock started — revoke and call in a loop until the answer is 401. The baseline is
//! the same gateway call with a valid, cached token (one request's round trip, the floor of
//! what "refused on the next call" can mean).

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

/// `revocation`.
pub fn revocation(_timing: Timing) -> anyhow::Result<ScenarioReport> {
    let dir = tempfile::tempdir()?;
    let tool_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("aims.toml");
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
    let (_proc, up) = start_aims(dir.path(), "up", TD, Some(&config), None)?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("up.json");
    let issuer = text(&up["server"]["oauth_issuer"])?;
    let ca = std::path::PathBuf::from(text(&up["server"]["web_ca_file"])?);
    let gateway = text(&up["gateway"]["url"])?;
    let admin = AdminClient::new(text(&up["admin_socket"])?);
    let token_endpoint = https_target(&issuer, &ca, "/oauth2/token")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // The gateway's signal stream must exist before the first revocation.
        let log = dir.path().join("up.log");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("signals: receiving") {
            anyhow::ensure!(Instant::now() < deadline, "the gateway never subscribed to signals");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut floor, mut revoked) = (Vec::new(), Vec::new());
        let started = Instant::now();
        eprintln!("  revocation: {SAMPLES} agents revoked one by one…");
        for k in 0..SAMPLES {
            let agent = format!("spiffe://{TD}/agent/revoke-{k}");
            let svid = admin
                .mint_jwt(&MintJwtRequest {
                    spiffe_id: SpiffeId::parse(&agent)?,
                    audience: vec![issuer.clone()],
                    ttl_seconds: Some(300),
                })
                .await?
                .token;
            let body = form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &svid),
                ("scope", "weather.read"),
                ("resource", &format!("{gateway}/bench")),
            ])?;
            let v: serde_json::Value = serde_json::from_slice(&fetch(&token_endpoint, body).await?)?;
            let token = v["access_token"].as_str().context("no access_token")?;
            let mut target = https_target(&gateway, &ca, "/bench/weather")?;
            target.method = http::Method::GET;
            target.headers = vec![(http::header::AUTHORIZATION, format!("Bearer {token}").parse()?)];
            let mut conn = StatusConn::open(&target).await?;
            anyhow::ensure!(conn.status(&target).await? == 200, "the agent's first call failed");
            let t = Instant::now();
            anyhow::ensure!(conn.status(&target).await? == 200, "the agent's cached call failed");
            floor.push(nanos(t.elapsed()));

            let t = Instant::now();
            admin.revoke(&agent, "benchmark").await?;
            loop {
                let s = conn.status(&target).await?;
                if s == 401 {
                    break;
                }
                anyhow::ensure!(s == 200, "unexpected {s}");
                anyhow::ensure!(t.elapsed() < Duration::from_secs(5), "not refused within 5 s");
            }
            revoked.push(nanos(t.elapsed()));
        }
        let secs = started.elapsed().as_secs_f64();
        let floor = summarize(floor, secs);
        let revoked = summarize(revoked, secs);
        let base = "one gateway call with a valid cached token (the request round trip)";
        Ok(ScenarioReport {
            scenario: "revocation".into(),
            description: "operator revoke → the gateway refuses the agent (loopback, Shared Signals poll stream)".into(),
            rows: vec![
                Row::baseline(base, floor),
                Row {
                    label: "operator revoke → first 401 at the gateway".into(),
                    baseline: false,
                    m: revoked,
                    ratio: None,
                    target: None,
                },
            ],
            notes: vec![format!(
                "{SAMPLES} revocations, each of a fresh agent; ops/s columns are not throughputs here; the latency includes the admin call, the durable remediation record and the SSF long-poll wake-up; token recheck and decision reuse set to 60 s"
            )],
        })
    })
}
