//! `people` (issue 6): the pages people use, and how long an approved CIBA request takes to
//! reach the agent.
//!
//! `aims server` runs pinned to CPU 1, the load generator to CPU 0. 100 users each sign in
//! (password, argon2id) and hold a browser session; 100 keep-alive connections, one per
//! session, load the consent page (a pending authorization request, rendered with the agent,
//! scopes, resources) and the approvals page (three pending CIBA requests each), closed loop.
//! The baseline is the same server's static stylesheet at the same concurrency (TLS, routing
//! and HTTP with no session, store or template).
//!
//! CIBA: an agent polls at the interval the server gives (1 s here; 5 s by default) as CIBA
//! Core §7.3 requires; the user approves at a moment spread over the poll cycle; measured is
//! the time from the approval's response to the agent's token. Its floor is one token request
//! for an approved request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aims_admin::api::{CreateClientRequest, CreateUserRequest, MintJwtRequest};
use aims_admin::client::AdminClient;
use aims_core::SpiffeId;
use aims_token::wire::JWT_SPIFFE_ASSERTION;
use anyhow::Context as _;

use super::process::{https_target, median_run, pin_self, start_server};
use crate::load::{BodyFn, Pace, Target};
use crate::measure::{Timing, summarize};
use crate::report::{Row, ScenarioReport};

const TD: &str = "bench.example";
const AGENT: &str = "spiffe://bench.example/agent/bench";
const RESOURCE: &str = "https://tool.example/api";
const USERS: usize = 100;
const PASSWORD: &str = "benchmark password 1";
const CIBA_SAMPLES: usize = 30;
const CIBA_INTERVAL: Duration = Duration::from_secs(1);

/// One browser session: a client with its own cookie store, redirects shown, not followed.
struct Session {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Session {
    fn new(ca: &std::path::Path) -> anyhow::Result<Self> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Ok(Self {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?)
                .redirect(reqwest::redirect::Policy::none())
                .cookie_provider(jar.clone())
                .build()?,
            jar,
        })
    }

    /// The `Cookie` header the session sends to `issuer` (for the load generator's requests).
    fn cookie_header(&self, issuer: &str) -> anyhow::Result<String> {
        use reqwest::cookie::CookieStore as _;
        let value = self
            .jar
            .cookies(&issuer.parse()?)
            .context("the session has no cookies")?;
        Ok(value.to_str()?.to_owned())
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<(u16, Option<String>, String)> {
        let resp = req.send().await?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        Ok((resp.status().as_u16(), location, resp.text().await?))
    }
}

/// The value of the first `name="<field>"` input of a page.
fn field(page: &str, name: &str) -> anyhow::Result<String> {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_owned)
        .with_context(|| format!("no {name} field"))
}

fn get_target(
    issuer: &str,
    ca: &std::path::Path,
    path: &str,
    cookie: Option<&str>,
) -> anyhow::Result<Target> {
    let mut t = https_target(issuer, ca, path)?;
    t.method = http::Method::GET;
    if let Some(c) = cookie {
        t.headers = vec![(http::header::COOKIE, c.parse()?)];
    }
    Ok(t)
}

/// `people`.
pub fn people(timing: Timing) -> anyhow::Result<ScenarioReport> {
    pin_self(0)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("aims.toml");
    std::fs::write(
        &config,
        format!(
            "[server.oauth]\nciba_interval = \"{}s\"\n",
            CIBA_INTERVAL.as_secs()
        ),
    )?;
    let (_proc, up) = start_server(dir.path(), TD, Some(&config), Some("1"))?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("up.json");
    let issuer = text(&up["server"]["oauth_issuer"])?;
    let ca = std::path::PathBuf::from(text(&up["server"]["web_ca_file"])?);
    let admin = AdminClient::new(text(&up["admin_socket"])?);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = |p: &str| format!("{issuer}{p}");
    let (consent, approvals, first) = rt.block_on(async {
        admin
            .create_client(&CreateClientRequest {
                client_id: Some("bench-agent".into()),
                metadata: serde_json::json!({
                    "token_endpoint_auth_method": "spiffe_jwt",
                    "spiffe_id": AGENT,
                    "client_name": "Bench agent",
                    "redirect_uris": ["https://app.example/cb"],
                }),
            })
            .await?;
        eprintln!("  people: {USERS} users sign in and get requests waiting for them…");
        let (mut consent, mut approvals, mut sessions) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..USERS {
            let user = format!("user-{i}");
            admin
                .create_user(&CreateUserRequest {
                    username: user.clone(),
                    display_name: None,
                    admin: false,
                    password: Some(PASSWORD.into()),
                })
                .await?;
            let s = Session::new(&ca)?;
            let (_, _, page) = s.send(s.http.get(url("/login"))).await?;
            let csrf = field(&page, "csrf")?;
            let (status, _, _) = s
                .send(s.http.post(url("/login/password")).form(&[
                    ("username", user.as_str()),
                    ("password", PASSWORD),
                    ("csrf", csrf.as_str()),
                    ("return_to", "/account"),
                ]))
                .await?;
            anyhow::ensure!(status == 303, "sign-in of {user} answered {status}");
            let challenge = aims_credentials::jose::sha256_b64url(
                b"bench verifier bench verifier bench verifier",
            );
            let (status, pending, _) = s
                .send(s.http.get(url("/oauth2/authorize")).query(&[
                    ("client_id", "bench-agent"),
                    ("response_type", "code"),
                    ("redirect_uri", "https://app.example/cb"),
                    ("scope", "openid tickets:read"),
                    ("resource", RESOURCE),
                    ("code_challenge", challenge.as_str()),
                    ("code_challenge_method", "S256"),
                ]))
                .await?;
            anyhow::ensure!(status == 303, "authorization request answered {status}");
            let pending = pending.context("no pending request")?;
            for k in 0..3 {
                ciba_request(&admin, &http, &issuer, &user, &format!("B{i}-{k}")).await?;
            }
            let cookie = s.cookie_header(&issuer)?;
            consent.push(get_target(&issuer, &ca, &pending, Some(&cookie))?);
            approvals.push(get_target(&issuer, &ca, "/approvals", Some(&cookie))?);
            sessions.push(s);
        }
        // The pages answer as expected before they are measured.
        let s0 = sessions.swap_remove(0);
        let (status, _, page) = s0.send(s0.http.get(url(&consent[0].path))).await?;
        anyhow::ensure!(
            status == 200 && page.contains("Bench agent"),
            "consent page: {status}"
        );
        let (status, _, page) = s0.send(s0.http.get(url("/approvals"))).await?;
        anyhow::ensure!(
            status == 200 && page.matches("class=\"card approval\"").count() == 3,
            "approvals page: {status}"
        );
        anyhow::Ok((consent, approvals, s0))
    })?;

    let counter = Arc::default();
    let empty: BodyFn = Arc::new(|_| Ok(bytes::Bytes::new()));
    let statics = [get_target(&issuer, &ca, "/static/aims.css", None)?];
    let measure = |label: &str, targets: &[Target]| {
        eprintln!("  people: {label}…");
        rt.block_on(median_run(
            timing,
            targets,
            USERS,
            Pace::Closed,
            &empty,
            &counter,
        ))
        .map(|r| r.m)
    };
    let base = measure("static stylesheet", &statics)?;
    let consent_m = measure("consent page", &consent)?;
    let approvals_m = measure("approvals page", &approvals)?;
    let (floor, waited) = rt.block_on(ciba(&admin, &http, &issuer, first))?;
    let base_label = "static stylesheet, 100 connections (TLS + HTTP floor)";
    Ok(ScenarioReport {
        scenario: "people".into(),
        description: "consent and approvals pages under 100 signed-in sessions; CIBA approval → token at the poll interval".into(),
        rows: vec![
            Row::baseline(base_label, base.clone()),
            Row::against("consent page, 100 sessions", consent_m, base_label, base.ops_per_sec, None),
            Row::against("approvals page (3 pending), 100 sessions", approvals_m, base_label, base.ops_per_sec, None),
            Row::baseline("redeeming an approved CIBA request (one token request)", floor),
            Row::latency(
                &format!("approval → token, agent polling every {} s", CIBA_INTERVAL.as_secs()),
                waited,
            ),
        ],
        notes: vec![
            format!("{USERS} users, one keep-alive connection per signed-in session, closed loop; server pinned to CPU 1, load generator to CPU 0; SQLite store"),
            format!("CIBA: {CIBA_SAMPLES} requests one at a time; the approval lands at a moment spread evenly over the poll cycle, so approval → token is bounded by the interval plus one token request; ops/s columns of the CIBA rows are not throughputs"),
        ],
    })
}

/// A CIBA request by the bench agent for `user`; returns `auth_req_id`.
async fn ciba_request(
    admin: &AdminClient,
    http: &reqwest::Client,
    issuer: &str,
    user: &str,
    binding: &str,
) -> anyhow::Result<String> {
    let svid = agent_svid(admin, issuer).await?;
    let v: serde_json::Value = http
        .post(format!("{issuer}/oauth2/bc-authorize"))
        .form(&[
            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
            ("client_assertion", svid.as_str()),
            ("scope", "openid"),
            ("login_hint", user),
            ("binding_message", binding),
            ("resource", RESOURCE),
        ])
        .send()
        .await?
        .json()
        .await?;
    v["auth_req_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("bc-authorize: {v}"))
}

async fn agent_svid(admin: &AdminClient, issuer: &str) -> anyhow::Result<String> {
    Ok(admin
        .mint_jwt(&MintJwtRequest {
            spiffe_id: SpiffeId::parse(AGENT)?,
            audience: vec![issuer.to_owned()],
            ttl_seconds: Some(300),
        })
        .await?
        .token)
}

/// Approval → token, and the token request's own time, over [`CIBA_SAMPLES`] requests.
async fn ciba(
    admin: &AdminClient,
    http: &reqwest::Client,
    issuer: &str,
    user: Session,
) -> anyhow::Result<(crate::measure::Measurement, crate::measure::Measurement)> {
    eprintln!(
        "  people: {CIBA_SAMPLES} CIBA approvals, agent polling every {} s…",
        CIBA_INTERVAL.as_secs()
    );
    let (mut floor, mut waited) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for k in 0..CIBA_SAMPLES {
        let binding = format!("C{k}");
        let id = ciba_request(admin, http, issuer, "user-0", &binding).await?;
        let svid = agent_svid(admin, issuer).await?;
        let (client, token_url) = (http.clone(), format!("{issuer}/oauth2/token"));
        // The agent: polls at its interval (CIBA Core §7.3), slowing down when told.
        let agent = tokio::spawn(async move {
            let mut interval = CIBA_INTERVAL;
            loop {
                tokio::time::sleep(interval).await;
                let t = Instant::now();
                let resp = client
                    .post(&token_url)
                    .form(&[
                        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                        ("client_assertion", svid.as_str()),
                        ("grant_type", aims_token::wire::CIBA_GRANT),
                        ("auth_req_id", id.as_str()),
                    ])
                    .send()
                    .await?;
                let status = resp.status();
                let v: serde_json::Value = resp.json().await?;
                if status.is_success() {
                    return anyhow::Ok((Instant::now(), t.elapsed()));
                }
                match v["error"].as_str() {
                    Some("authorization_pending") => {}
                    Some("slow_down") => interval += Duration::from_secs(5),
                    _ => anyhow::bail!("CIBA poll: {v}"),
                }
            }
        });
        // The user decides at a moment spread over the agent's poll cycle.
        let offset = CIBA_INTERVAL.mul_f64((k as f64 + 0.5) / CIBA_SAMPLES as f64);
        tokio::time::sleep(CIBA_INTERVAL + offset).await;
        let (_, _, page) = user
            .send(user.http.get(format!("{issuer}/approvals")))
            .await?;
        let card = page
            .split("class=\"card approval\"")
            .find(|c| c.contains(&format!(">{binding}<")))
            .context("the request is not on the approvals page")?;
        let approval = field(card, "id")?;
        let csrf = field(&page, "csrf")?;
        let (status, _, _) = user
            .send(user.http.post(format!("{issuer}/approvals/decide")).form(&[
                ("id", approval.as_str()),
                ("decision", "approve"),
                ("csrf", csrf.as_str()),
            ]))
            .await?;
        anyhow::ensure!(status == 303, "approval answered {status}");
        let approved = Instant::now();
        let (token_at, rtt) = agent.await??;
        waited.push(
            u32::try_from(token_at.saturating_duration_since(approved).as_nanos())
                .unwrap_or(u32::MAX),
        );
        floor.push(u32::try_from(rtt.as_nanos()).unwrap_or(u32::MAX));
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((summarize(floor, secs), summarize(waited, secs)))
}
