//! `aims demo`: a narrated end-to-end scenario against `aims up`, each step saying what
//! happened and which standard did it, exiting non-zero if anything misbehaves.
//!
//! Two example agents get identities from the Workload API; agent A calls the demo MCP tool
//! through the gateway with its own token; a user delegates to agent A (authorization code with
//! PKCE and PAR; her sign-in is automated); agent A hands the task to agent B, which exchanges
//! A's token (RFC 8693, `act` chain) and calls a tool (the gateway mints a transaction token
//! for it); a high-risk call needs the user's approval (CIBA: in the browser, or
//! `--auto-approve`); the operator revokes agent B and its next call is refused; the audit
//! trace of the task is printed and the log verified against its signed checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aims_admin::api::{CreateClientRequest, CreateUserRequest};
use aims_admin::client::AdminClient;
use aims_credentials::jose::{CompactJws, sha256_b64url};
use aims_sdk::SdkError;
use aims_sdk::oauth::TokenClient;
use aims_sdk::source::JwtSource;
use aims_store::{NewEntry, Selector};
use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::up_file::UpFile;

const REDIRECT: &str = "http://127.0.0.1/aims-demo/callback";
/// The policy the demo adds: deleting files needs a person's approval (AIMS AZ-27).
const APPROVAL_POLICY: &str = r#"
// aims demo: deleting a file needs a person's approval (CIBA); AIMS AZ-27, AZ-28.
@id("demo-delete-needs-approval")
forbid (principal, action == Aims::Action::"call_tool", resource)
when { resource.name == "delete_file" }
unless { context has approval };
"#;

/// Arguments of `aims demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory of the running `aims up` [default: ./.aims]; one is started there when
    /// none runs.
    #[arg(long, env = "AIMS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Approve the high-risk call as the demo user, instead of waiting for you to approve it on
    /// the approvals page.
    #[arg(long)]
    pub auto_approve: bool,
}

/// Narration: numbered steps, what happened, which standard.
struct Story {
    step: usize,
    of: usize,
}

impl Story {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n\x1b[1m[{}/{}] {title}\x1b[0m", self.step, self.of);
    }

    fn done(&self, what: &str, standard: &str) {
        println!("  \x1b[32m✔\x1b[0m {what}  \x1b[2m({standard})\x1b[0m");
    }

    fn note(&self, what: &str) {
        println!("    {what}");
    }
}

/// A browser session of the demo user: a client with its own cookie store that shows
/// redirects instead of following them.
struct Browser {
    http: reqwest::Client,
    issuer: String,
}

/// A page: status, `Location`, body.
type Page = (u16, Option<String>, String);

impl Browser {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Page> {
        let resp = req.send().await?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        Ok((resp.status().as_u16(), location, resp.text().await?))
    }

    async fn get(&self, path_or_url: &str) -> anyhow::Result<Page> {
        let url = if path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.issuer)
        };
        let req = self.http.get(url);
        self.send(req).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let req = self.http.post(format!("{}{path}", self.issuer)).form(form);
        self.send(req).await
    }
}

/// The value of the first `name="<field>"` input of a page.
fn field(page: &str, name: &str) -> anyhow::Result<String> {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_owned)
        .with_context(|| format!("the page has no {name} field"))
}

fn claims(token: &str) -> anyhow::Result<Value> {
    Ok(CompactJws::parse(token)?.claims()?)
}

/// The `act` chain of a token's claims, current actor first.
fn chain(c: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = c.get("act");
    while let Some(a) = next.filter(|a| a.is_object()) {
        out.push(a["sub"].as_str().unwrap_or("?").to_owned());
        next = a.get("act");
    }
    out
}

/// An `aims up` the demo started: stopped (SIGTERM) when the demo ends.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// A running `aims up` on `data_dir`: the one there, or one the demo starts.
async fn stack(data_dir: &Path) -> anyhow::Result<(UpFile, Option<Started>)> {
    let file = data_dir.join("up.json");
    let running = || async {
        let up: UpFile = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        AdminClient::new(&up.admin_socket).health().await.ok()?;
        Some(up)
    };
    if let Some(up) = running().await {
        return Ok((up, None));
    }
    println!("No `aims up` runs on {}: starting one.", data_dir.display());
    let log_path = data_dir.join("demo-up.log");
    std::fs::create_dir_all(data_dir)?;
    let started = Started(
        std::process::Command::new(std::env::current_exe()?)
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(up) = running().await {
            return Ok((up, Some(started)));
        }
        ensure!(
            Instant::now() < deadline,
            "aims up did not start (see {})",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo's view of the stack.
struct Demo {
    admin: AdminClient,
    http: reqwest::Client,
    issuer: String,
    socket: PathBuf,
    td: String,
    mcp_url: String,
    mcp_resource: String,
    /// The task's id (a W3C trace id), sent as `traceparent` on every call the agents make,
    /// so the audit log joins them into one trace (AIMS MO-9).
    task: String,
}

impl Demo {
    fn traceparent(&self) -> String {
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        format!("00-{}-{span}-01", self.task)
    }

    fn agent(&self, name: &str) -> String {
        format!("spiffe://{}/demo/{name}", self.td)
    }

    /// `agent`'s client of the authorization server, on the SDK agents use: it authenticates
    /// with the agent's JWT-SVID from the SPIFFE Workload API and sends the task's
    /// `traceparent` with every request.
    fn client_of(&self, agent: &str) -> TokenClient {
        TokenClient::new(
            self.issuer.clone(),
            self.http.clone(),
            Arc::new(JwtSource::new(&self.socket, Some(agent.to_owned()))),
        )
        .with_trace(self.task.clone())
    }

    /// A JWT-SVID for `agent` (audience: the AS), waiting while its entry reaches the node
    /// agent.
    async fn jwt_svid(&self, agent: &str) -> anyhow::Result<String> {
        let source = JwtSource::new(&self.socket, Some(agent.to_owned()));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match source.token(&self.issuer).await {
                Ok(t) => return Ok(t),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for the agent's JWT-SVID");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("no JWT-SVID for {agent} from the Workload API")));
                }
            }
        }
    }

    /// An MCP `tools/call` through the gateway: status, `WWW-Authenticate`, JSON body.
    async fn call_tool(
        &self,
        token: &str,
        tool: &str,
        args: Value,
    ) -> anyhow::Result<(u16, String, Value)> {
        let resp = self
            .http
            .post(&self.mcp_url)
            .bearer_auth(token)
            .header("traceparent", self.traceparent())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": tool, "arguments": args}}))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((status, challenge, resp.json().await.unwrap_or(Value::Null)))
    }
}

/// The person of the demo: a browser signed in to the AS, and the account it signed in with.
struct Person {
    browser: Browser,
    username: String,
    password: String,
    suffix: String,
}

/// The demo's steps, each what one part of the stack does for the task.
impl Demo {
    /// 1. Identities.
    async fn identities(&self, story: &mut Story) -> anyhow::Result<(String, String)> {
        story.step("Two agents get their identities from the SPIFFE Workload API");
        let (a, b) = (self.agent("agent-a"), self.agent("agent-b"));
        let uid = own_uid()?;
        let existing = self.admin.list_entries(None, None).await?;
        // A rerun starts afresh: an earlier run revoked agent B. Tokens issued in the second of a
        // revocation stay revoked (`iat` counts seconds), so the run starts after that second.
        let mut revoked_at = None;
        for r in self.admin.revocations().await? {
            if r.lifted_at.is_none() && (r.principal == a || r.principal == b) {
                self.admin
                    .lift_revocation(&r.principal, "aims demo starts again")
                    .await?;
                revoked_at = revoked_at.max(Some(r.revoked_at));
            }
        }
        if let Some(t) = revoked_at {
            while aims_core::unix_seconds(std::time::SystemTime::now()) <= t {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for id in [&a, &b] {
            if existing.iter().any(|e| e.spiffe_id.as_str() == id.as_str()) {
                continue;
            }
            self.admin
                .create_entry(&NewEntry {
                    spiffe_id: aims_core::SpiffeId::parse(id)?,
                    parent_id: aims_core::SpiffeId::parse(&format!(
                        "spiffe://{}{}",
                        self.td,
                        super::up::LOCAL_AGENT_PATH
                    ))?,
                    selectors: vec![Selector::new("unix", &format!("uid:{uid}"))?],
                    x509_svid_ttl: 0,
                    jwt_svid_ttl: 0,
                    dns_names: vec![],
                    admin: false,
                    hint: Some(id.rsplit('/').next().unwrap_or_default().to_owned()),
                })
                .await?;
        }
        for id in [&a, &b] {
            let svid = self.jwt_svid(id).await?;
            story.done(
                &format!("{id}: JWT-SVID issued after attestation of this process (uid {uid})"),
                "SPIFFE Workload API, JWT-SVID",
            );
            ensure!(
                claims(&svid)?["sub"] == id.as_str(),
                "the JWT-SVID names another identity"
            );
        }

        let mut current = self.admin.current_policy().await?;
        if !current.text.contains("demo-delete-needs-approval") {
            current = self
                .admin
                .apply_policy(
                    &format!("{}\n{APPROVAL_POLICY}", current.text),
                    None,
                    false,
                    Some("aims demo".into()),
                )
                .await?
                .document;
        }
        // AIMS PO-3: no call goes through a gateway still deciding with the old version.
        super::policy::wait_for_followers(&self.admin, current.version, Duration::from_secs(30))
            .await?;
        story.done(
            "policy in force: deleting a file needs a person's approval",
            "Cedar, versioned policy (AIMS AZ-27)",
        );
        Ok((a, b))
    }

    /// 2. Agent A calls a tool with its own token.
    async fn own_token(&self, story: &mut Story, a: &str) -> anyhow::Result<TokenClient> {
        story.step("Agent A calls the MCP tool through the gateway with its own token");
        let agent_a = self.client_of(a);
        let token_a = agent_a
            .client_credentials(&self.mcp_resource, "mcp", None)
            .await
            .context("client credentials refused")?
            .access_token;
        story.done(
            "token for agent A, client authentication by its JWT-SVID (no secret)",
            "OAuth SPIFFE client auth, RFC 9068",
        );
        let (s, _, body) = self
            .call_tool(&token_a, "echo", json!({"text": "hello from agent A"}))
            .await?;
        ensure!(s == 200, "the echo call was refused: {s} {body}");
        story.done(
            &format!("tools/call echo → {}", body["result"]["content"][0]["text"]),
            "MCP over the AIMS gateway, Cedar decision",
        );
        Ok(agent_a)
    }

    /// 3. Delegation by a person.
    async fn delegation(
        &self,
        story: &mut Story,
        agent_a: TokenClient,
        a: &str,
        ca: &Path,
    ) -> anyhow::Result<(TokenClient, String, Person)> {
        story.step("A person delegates to agent A (authorization code, PKCE, PAR)");
        self.admin
            .create_client(&CreateClientRequest {
                client_id: Some("demo-agent-a".into()),
                metadata: json!({
                    "token_endpoint_auth_method": "spiffe_jwt",
                    "spiffe_id": a,
                    "client_name": "Demo agent A",
                    "redirect_uris": [REDIRECT],
                    "require_pushed_authorization_requests": true,
                }),
            })
            .await?;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let username = format!("demo-user-{suffix}");
        let password = format!("demo password {}", uuid::Uuid::new_v4().simple());
        self.admin
            .create_user(&CreateUserRequest {
                username: username.clone(),
                display_name: Some("Demo User".into()),
                admin: false,
                password: Some(password.clone()),
            })
            .await?;
        let user = Browser {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?)
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()?,
            issuer: self.issuer.clone(),
        };
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = sha256_b64url(verifier.as_bytes());
        let agent_a = agent_a.with_client_id("demo-agent-a");
        let par = agent_a
            .push_authorization_request(&[
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid mcp files.read files.delete offline_access"),
                ("resource", self.mcp_resource.as_str()),
                ("state", suffix),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .await
            .context("PAR refused")?;
        story.done(
            "authorization request pushed by agent A",
            "RFC 9126 PAR, RFC 7636 PKCE S256",
        );
        let request_uri = par.request_uri.as_str();
        let url = format!(
            "/oauth2/authorize?client_id=demo-agent-a&request_uri={}",
            url::form_urlencoded::byte_serialize(request_uri.as_bytes()).collect::<String>()
        );
        let (_, pending, _) = user.get(&url).await?;
        let pending =
            pending.context("the authorization endpoint did not answer with a redirect")?;
        let (_, _, page) = user
            .get(&format!(
                "/login?return_to={}",
                url::form_urlencoded::byte_serialize(pending.as_bytes()).collect::<String>()
            ))
            .await?;
        let csrf = field(&page, "csrf")?;
        let (s, _, _) = user
            .post(
                "/login/password",
                &[
                    ("username", &username),
                    ("password", &password),
                    ("csrf", &csrf),
                    ("return_to", &pending),
                ],
            )
            .await?;
        ensure!(s == 303, "the demo user could not sign in ({s})");
        story.done(
            &format!("{username} signed in (automated in demo mode; people use a passkey)"),
            "WebAuthn or password, __Host- session",
        );
        let (s, _, consent) = user.get(&pending).await?;
        ensure!(
            s == 200 && consent.contains("Demo agent A"),
            "no consent page ({s})"
        );
        let (s, to, _) = user
            .post(
                "/oauth2/authorize/decide",
                &[
                    ("id", &field(&consent, "id")?),
                    ("decision", "approve"),
                    ("csrf", &field(&consent, "csrf")?),
                ],
            )
            .await?;
        let to = to
            .filter(|_| s == 303)
            .context("consent did not redirect to the agent")?;
        let q: std::collections::HashMap<String, String> =
            url::Url::parse(&to)?.query_pairs().into_owned().collect();
        ensure!(
            q.get("iss") == Some(&self.issuer),
            "the response names no issuer"
        );
        story.done(
            "the user allowed agent A on the consent page; code returned with iss",
            "RFC 6749 §4.1, RFC 9207",
        );
        let code = q.get("code").context("no code")?;
        let delegated = agent_a
            .authorization_code(code, REDIRECT, &verifier, None)
            .await
            .context("the code was not redeemed")?
            .access_token;
        let c = claims(&delegated)?;
        story.done(
            &format!(
                "agent A holds a token for the user (sub {}), acting as {}",
                c["sub"],
                chain(&c).join(" ← ")
            ),
            "RFC 9068, RFC 8693 act",
        );
        Ok((
            agent_a,
            delegated,
            Person {
                browser: user,
                username,
                password,
                suffix: suffix.to_owned(),
            },
        ))
    }

    /// 4. Agent A hands the task to agent B: it names B as an audience of a token for the
    async fn hand_off(
        &self,
        story: &mut Story,
        agent_a: &TokenClient,
        b: &str,
        delegated: &str,
    ) -> anyhow::Result<(TokenClient, String)> {
        // same resource (a token only reaches the clients it is for), and B exchanges that one.
        story.step("Agent A hands the task to agent B, which exchanges the token A made for it");
        let handoff = agent_a
            .hand_off(
                delegated,
                b,
                &self.mcp_resource,
                "mcp files.read files.delete",
            )
            .await
            .context("agent A's hand-off was refused")?
            .access_token;
        let agent_b = self.client_of(b);
        let token_b = agent_b
            .exchange(
                &handoff,
                &self.mcp_resource,
                "mcp files.read files.delete",
                None,
            )
            .await
            .context("the exchange was refused")?
            .access_token;
        let cb = claims(&token_b)?;
        let acts = chain(&cb);
        ensure!(
            acts.first().map(String::as_str) == Some(b)
                && acts.get(1).map(String::as_str) == Some("demo-agent-a"),
            "the act chain is wrong: {acts:?}"
        );
        story.done(
            &format!("delegation chain: {} for the user", acts.join(" ← ")),
            "RFC 8693 token exchange, nested act",
        );
        Ok((agent_b, token_b))
    }

    /// 5. Agent B calls a tool; the gateway mints a transaction token.
    async fn transaction(&self, story: &mut Story, b: &str, token_b: &str) -> anyhow::Result<()> {
        story.step("Agent B calls a tool; the gateway mints a transaction token for it");
        let (s, _, body) = self
            .call_tool(token_b, "read_file", json!({"path": "/srv/reports/q3.txt"}))
            .await?;
        ensure!(s == 200, "read_file was refused: {s} {body}");
        story.done(
            &format!(
                "tools/call read_file → {}",
                body["result"]["content"][0]["text"]
            ),
            "Cedar policy, MCP",
        );
        // The gateway appends its decisions asynchronously: they land within milliseconds.
        let task = self.task.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let recorded = self.admin.audit_trace(&task).await?.iter().any(|e| {
                e.parsed()
                    .is_ok_and(|r| r.agent.as_deref() == Some(b) && r.action == "call_tool")
            });
            if recorded {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the gateway recorded no decision for agent B under the task's id"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        story.done(
            &format!("the upstream got a Txn-Token for transaction {task}"),
            "draft-ietf-oauth-transaction-tokens-11",
        );
        Ok(())
    }

    /// 6. A high-risk call needs the person's approval.
    async fn approval(
        &self,
        story: &mut Story,
        agent_b: &TokenClient,
        token_b: &str,
        person: &Person,
        auto_approve: bool,
    ) -> anyhow::Result<()> {
        story.step("A high-risk call needs the user's approval (step-up through CIBA)");
        // The gateway decides with the new policy version (the demo waited for it).
        let (s, challenge, body) = self
            .call_tool(
                token_b,
                "delete_file",
                json!({"path": "/srv/reports/q3.txt"}),
            )
            .await?;
        ensure!(
            s == 403
                && challenge.contains("insufficient_scope")
                && body["error_description"]
                    .as_str()
                    .is_some_and(|d| d.contains("approval")),
            "delete_file was not held for a person's approval: {s} {body}"
        );
        story.done(
            &format!(
                "403 insufficient_scope: {}",
                body["error_description"].as_str().unwrap_or_default()
            ),
            "RFC 6750 §3.1, MCP step-up",
        );
        let binding = format!("DEL-{}", &person.suffix[..4]).to_uppercase();
        let bc = agent_b
            .backchannel_authentication(&[
                ("scope", "openid mcp files.delete"),
                ("login_hint", &person.username),
                ("binding_message", &binding),
                ("resource", self.mcp_resource.as_str()),
                (
                    "authorization_details",
                    r#"[{"type":"tool_call","actions":["delete_file"],"path":"/srv/reports/q3.txt"}]"#,
                ),
            ])
            .await
            .context("CIBA refused")?;
        story.done(
            &format!("agent B asked the user's approval; binding message {binding}"),
            "OpenID CIBA Core 1.0",
        );
        if auto_approve {
            let (_, _, page) = person.browser.get("/approvals").await?;
            let card = page
                .split("class=\"card approval\"")
                .find(|c| c.contains(&binding))
                .context("the request is not on the approvals page")?;
            let (s, _, _) = person
                .browser
                .post(
                    "/approvals/decide",
                    &[
                        ("id", &field(card, "id")?),
                        ("decision", "approve"),
                        ("csrf", &field(&page, "csrf")?),
                    ],
                )
                .await?;
            ensure!(s == 303, "the approval failed ({s})");
            story.done(
                "approved on the approvals page (--auto-approve)",
                "AIMS AZ-30: bound to a verifiable grant",
            );
        } else {
            story.note(&format!(
                "Approve it: open {}/approvals, sign in as {} with password {:?}.",
                self.issuer, person.username, person.password
            ));
        }
        let approved_token = agent_b
            .poll_approval(&bc)
            .await
            .context("the approval did not come through")?
            .access_token;
        let ac = claims(&approved_token)?;
        story.done(
            &format!(
                "token with approval {} and the approved details",
                ac["approval"]
            ),
            "CIBA poll mode, RFC 9396",
        );
        let (s, _, body) = self
            .call_tool(
                &approved_token,
                "delete_file",
                json!({"path": "/srv/reports/q3.txt"}),
            )
            .await?;
        ensure!(s == 200, "the approved call was refused: {s} {body}");
        story.done(
            "tools/call delete_file allowed with the approval",
            "Cedar: context has approval",
        );
        Ok(())
    }

    /// 7. Revocation.
    async fn revocation(
        &self,
        story: &mut Story,
        agent_b: &TokenClient,
        b: &str,
        token_b: &str,
    ) -> anyhow::Result<()> {
        story.step("The operator revokes agent B; its next call is refused");
        let t0 = Instant::now();
        self.admin
            .revoke(b, "aims demo: agent B misbehaved")
            .await?;
        let refused = loop {
            let (s, _, _) = self
                .call_tool(token_b, "read_file", json!({"path": "/srv/reports/q3.txt"}))
                .await?;
            if s == 401 || s == 403 {
                break t0.elapsed();
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(5),
                "agent B was not refused within 5 s"
            );
        };
        story.done(
            &format!(
                "refused {:.1} ms after the revocation",
                refused.as_secs_f64() * 1000.0
            ),
            "OpenID SSF/CAEP session-revoked",
        );
        match agent_b
            .client_credentials(&self.mcp_resource, "mcp", None)
            .await
        {
            Err(SdkError::OAuth {
                status: 400, error, ..
            }) if error == "invalid_grant" => {}
            other => bail!("agent B still got a token: {other:?}"),
        }
        story.done(
            "no new token for agent B either (invalid_grant)",
            "AIMS MO-4",
        );
        Ok(())
    }

    /// 8. The trail.
    async fn trail(&self, story: &mut Story, a: &str, b: &str) -> anyhow::Result<()> {
        story.step("The audit trail: the task's execution chain, and the log verifies");
        let task = &self.task;
        let trace = self.admin.audit_trace(task).await?;
        for line in aims_audit::render_trace(task, &trace).lines() {
            story.note(line);
        }
        let records: Vec<aims_audit::AuditRecord> =
            trace.iter().filter_map(|e| e.parsed().ok()).collect();
        let by = |agent: &str| {
            records
                .iter()
                .filter(|r| r.agent.as_deref() == Some(agent))
                .count()
        };
        let approvals = records.iter().filter(|r| r.action == "approve").count();
        ensure!(
            by(a) > 0 && by(b) > 0 && approvals == 1,
            "the trace misses part of the task: {} records of A, {} of B, {approvals} approvals",
            by(a),
            by(b)
        );
        story.done(
            &format!(
                "one task, {} records: token grants, tool calls of both agents, the approval",
                trace.len()
            ),
            "AIMS MO-8, MO-9: W3C trace id = txn",
        );
        let verified = super::audit::verify_against_server(&self.admin).await?;
        story.done(&verified, "RFC 9162 Merkle tree, C2SP signed checkpoint");
        Ok(())
    }
}

fn own_uid() -> anyhow::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// Runs `aims demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".aims"));
    let (up, started) = stack(&data_dir).await?;
    let up = &up;
    let gateway = up
        .gateway
        .as_ref()
        .context("this aims up runs no gateway")?;
    let mcp = gateway
        .routes
        .iter()
        .find(|r| r.name == "demo-mcp")
        .context("the gateway has no demo-mcp route (aims up runs the demo tool when no routes are configured)")?;
    let ca = up.server.web_ca_file.as_ref().context("no local CA")?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let demo = Demo {
        admin: AdminClient::new(&up.admin_socket),
        http,
        issuer: up.server.oauth_issuer.clone(),
        socket: up
            .agent
            .as_ref()
            .context("this aims up runs no agent")?
            .workload_api_socket
            .clone(),
        td: up.trust_domain.clone(),
        mcp_url: mcp.url.clone(),
        mcp_resource: mcp.resource.clone(),
        task: uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut story = Story { step: 0, of: 8 };
    println!(
        "AIMS demo against {} (trust domain {}).",
        demo.issuer, demo.td
    );

    let (a, b) = demo.identities(&mut story).await?;
    let agent_a = demo.own_token(&mut story, &a).await?;
    let (agent_a, delegated, person) = demo.delegation(&mut story, agent_a, &a, ca).await?;
    let (agent_b, token_b) = demo.hand_off(&mut story, &agent_a, &b, &delegated).await?;
    demo.transaction(&mut story, &b, &token_b).await?;
    demo.approval(&mut story, &agent_b, &token_b, &person, args.auto_approve)
        .await?;
    demo.revocation(&mut story, &agent_b, &b, &token_b).await?;
    demo.trail(&mut story, &a, &b).await?;
    let task = &demo.task;
    println!(
        "\n\x1b[1mThe demo ran every step.\x1b[0m Explore: `aims audit list`, `aims audit trace {task}`, {}/approvals.",
        demo.issuer
    );
    drop(started);
    Ok(())
}
