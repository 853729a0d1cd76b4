//! End to end through real processes (AIMS AZ-7, AZ-8, AZ-34, AZ-37, AZ-38, MO-8, PO-2, PO-3):
//! `aims up` runs the server, the agent, the gateway and the demo tool; this test is the agent.
//! It takes its JWT-SVID from the Workload API with the `spiffe` crate, gets access tokens from
//! the AS, and calls an HTTP tool and an MCP server through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mcp_everything;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aims_credentials::jose::{JwsHeader, sign};
use aims_credentials::{KeyType, PrivateKey};
use aims_token::wire::JWT_SPIFFE_ASSERTION;
use base64::Engine as _;
use common::{Aims, assert_ok, eventually};
use serde_json::{Value, json};

struct Stack {
    aims: Aims,
    http: reqwest::Client,
    issuer: String,
    gateway: String,
    rt: tokio::runtime::Runtime,
}

fn route(aims: &Aims, name: &str) -> Value {
    aims.up["gateway"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
        .clone()
}

/// The resource identifier of route `name`.
fn resource_of(aims: &Aims, name: &str) -> String {
    route(aims, name)["resource"].as_str().unwrap().to_owned()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

impl Stack {
    fn start() -> Self {
        Self::with(Aims::start("up", &["--register-self"]))
    }

    /// `aims up` with `config` as its configuration file.
    fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aims.toml");
        std::fs::write(&file, config).unwrap();
        let data = dir.path().join("data");
        Self::with(Aims::start_in(
            dir,
            data,
            "up",
            &["--register-self", "--config", file.to_str().unwrap()],
        ))
    }

    fn with(aims: Aims) -> Self {
        let ca = std::fs::read(aims.up["server"]["web_ca_file"].as_str().unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        Self {
            issuer: aims.up["server"]["oauth_issuer"]
                .as_str()
                .unwrap()
                .to_owned(),
            gateway: aims.up["gateway"]["url"].as_str().unwrap().to_owned(),
            http,
            aims,
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// The test process's JWT-SVID for the AS, from the Workload API (a third-party client).
    fn jwt_svid(&self) -> String {
        let endpoint = format!("unix://{}", self.aims.workload_socket().display());
        let issuer = self.issuer.clone();
        self.rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(client) = spiffe::WorkloadApiClient::connect_to(&endpoint).await
                    && let Ok(token) = client.fetch_jwt_token([issuer.as_str()], None).await
                {
                    return token;
                }
                assert!(
                    Instant::now() < deadline,
                    "no JWT-SVID from the Workload API"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn token_with(&self, resource: &str, scope: &str, dpop: Option<String>) -> Value {
        let (status, v) = self.token_response(resource, scope, dpop);
        assert!(status.is_success(), "{v}");
        v
    }

    /// The token endpoint's answer to a client credentials grant with a fresh JWT-SVID.
    fn token_response(
        &self,
        resource: &str,
        scope: &str,
        dpop: Option<String>,
    ) -> (reqwest::StatusCode, Value) {
        let svid = self.jwt_svid();
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(format!("{}/oauth2/token", self.issuer))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                    ("client_assertion", svid.as_str()),
                    ("resource", resource),
                    ("scope", scope),
                ]);
            if let Some(p) = dpop {
                req = req.header("DPoP", p);
            }
            let resp = req.send().await.unwrap();
            (resp.status(), resp.json().await.unwrap())
        })
    }

    /// The AS's answer to a workload (this test) asking for the replacement of transaction
    /// token `txn` (txn-tokens §7.4).
    fn replace_txn(&self, txn: &str) -> (u16, Value) {
        let svid = self.jwt_svid();
        let scope = claims(txn)["scope"].as_str().unwrap_or_default().to_owned();
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}/oauth2/token", self.issuer))
                .form(&[
                    ("grant_type", aims_token::wire::TOKEN_EXCHANGE_GRANT),
                    ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                    ("client_assertion", svid.as_str()),
                    ("subject_token", txn),
                    ("subject_token_type", aims_token::wire::TXN_TOKEN_TYPE),
                    ("requested_token_type", aims_token::wire::TXN_TOKEN_TYPE),
                    ("audience", "aims.local"),
                    ("scope", scope.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }

    fn token(&self, resource: &str, scope: &str) -> String {
        self.token_with(resource, scope, None)["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Sends a request through the gateway: status, `WWW-Authenticate`, JSON body.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, String, Value) {
        self.rt.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.gateway));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let text = resp.text().await.unwrap();
            (
                status,
                challenge,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    fn get(&self, path: &str, token: &str) -> (u16, String, Value) {
        let bearer = format!("Bearer {token}");
        self.call(
            reqwest::Method::GET,
            path,
            &[("authorization", &bearer)],
            None,
        )
    }

    fn mcp(&self, token: &str, message: &Value) -> (u16, String, Value) {
        let bearer = format!("Bearer {token}");
        self.call(
            reqwest::Method::POST,
            "/mcp",
            &[
                ("authorization", &bearer),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            Some(message.to_string().into_bytes()),
        )
    }

    /// Puts the default policy plus `extra` in force (as the next version) and returns once the
    /// gateway decides with it (AIMS PO-3: `policy apply --wait`).
    fn apply_policy(&self, name: &str, extra: &str) {
        // The gateway follows the policy once it has asked for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while assert_ok(&self.aims.cli(&["policy", "followers"]))
            .trim()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the gateway follows no policy");
            std::thread::sleep(Duration::from_millis(50));
        }
        let file = self.aims.dir.path().join(name);
        std::fs::write(
            &file,
            format!(
                "{}\n{extra}\n",
                include_str!("../../aims-policy/cedar/default.cedar")
            ),
        )
        .unwrap();
        let out = assert_ok(
            &self
                .aims
                .cli(&["policy", "apply", "--wait", file.to_str().unwrap()]),
        );
        assert!(out.contains("1 gateway(s) decide with version"), "{out}");
    }

    /// The audit log once it holds a record `wanted` accepts (the gateway appends
    /// asynchronously by default: a record lands within milliseconds of its response).
    fn audit_until(&self, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = assert_ok(
                &self
                    .aims
                    .cli(&["audit", "list", "--limit", "10000", "--output", "json"]),
            );
            let records: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if records.iter().any(|e| wanted(&e["record"])) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "no such audit record in {records:?}\n{}",
                self.aims.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An RFC 9449 proof for `method url`, bound to `token` (`ath`) when there is one.
fn dpop_proof(key: &PrivateKey, method: &str, url: &str, token: Option<&str>) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = JwsHeader::new(key, Some("dpop+jwt"), None);
    h.jwk = Some(key.public_key().jwk());
    let now = aims_core::unix_seconds(std::time::SystemTime::now());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut c = json!({"jti": format!("{now}-{n}-{}", std::process::id()), "htm": method, "htu": url, "iat": now});
    if let Some(t) = token {
        c["ath"] = aims_credentials::jose::sha256_b64url(t.as_bytes()).into();
    }
    sign(key, &h, &c).unwrap()
}

#[test]
fn an_agent_calls_an_http_tool_through_the_gateway_which_forwards_a_transaction_token() {
    let s = Stack::start();
    let weather = route(&s.aims, "weather");
    let resource = weather["resource"].as_str().unwrap();
    // RFC 9728: the challenge names the metadata, the metadata names the AS.
    let (status, challenge, _) = s.call(reqwest::Method::GET, "/weather", &[], None);
    assert_eq!(status, 401);
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            weather["resource_metadata"].as_str().unwrap()
        )),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"weather.read\""), "{challenge}");
    let meta: Value = s.rt.block_on(async {
        s.http
            .get(weather["resource_metadata"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(meta["resource"], resource);
    assert_eq!(meta["authorization_servers"][0], s.issuer.as_str());
    assert_eq!(meta["scopes_supported"], json!(["weather.read", "weather"]));

    let token = s.token(resource, "weather.read");
    let (status, _, body) = s.get("/weather?city=Paris", &token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["city"], "Paris");
    // The upstream saw a transaction token and never the agent's access token.
    assert!(body["received"]["authorization"].is_null(), "{body}");
    let txn = body["received"]["txn_token"].as_str().unwrap();
    assert_ne!(txn, token);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(txn.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "txntoken+jwt");
    let txn_claims = claims(txn);
    let agent = claims(&token)["client_id"].as_str().unwrap().to_owned();
    assert_eq!(txn_claims["sub"], agent.as_str());
    assert_eq!(txn_claims["aud"], "aims.local");
    assert_eq!(txn_claims["req_wl"], "spiffe://aims.local/aims/gateway");
    assert_eq!(txn_claims["rctx"]["path"], "/weather");
    assert_eq!(body["received"]["agent"], agent.as_str());

    // The decision is in the audit log with the MO-8 fields, correlated by the task the
    // transaction names (its context's trace; the transaction has an id of its own).
    let task = &txn_claims["tctx"]["trace"];
    assert_eq!(task.as_str().map(str::len), Some(32), "{txn_claims}");
    assert_ne!(&txn_claims["txn"], task);
    let records = s.audit_until(|r| r["correlation_id"] == *task);
    let r = &records
        .iter()
        .find(|e| e["record"]["correlation_id"] == *task)
        .unwrap()["record"];
    assert_eq!(r["kind"], "decision");
    assert_eq!(r["action"], "call");
    assert_eq!(r["resource"], "weather");
    assert_eq!(r["agent"], agent.as_str());
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["policy_version"], 1);
    assert_eq!(r["source"], "spiffe://aims.local/aims/gateway");

    // The gateway minted it as the trust domain's Txn-Token Service at the edge: signed with
    // its X509-SVID (chain in x5c, no kid), issuer its SPIFFE ID, and the call's own record
    // names it by hash (one record per call; the AS issued nothing for it).
    assert!(header["kid"].is_null(), "{header}");
    assert!(
        header["x5c"].as_array().is_some_and(|c| !c.is_empty()),
        "{header}"
    );
    assert_eq!(txn_claims["iss"], "spiffe://aims.local/aims/gateway");
    assert_eq!(txn_claims["scope"], "weather.read");
    assert_eq!(
        r["issued"],
        format!(
            "txn_token:{}",
            aims_credentials::jose::sha256_b64url(txn.as_bytes())
        )
    );
    // The AS reads it back as one of the trust domain's: a workload has it replaced (same
    // txn, sub and scope; the chain of workloads extended), and a tampered copy is refused.
    let (status, replaced) = s.replace_txn(txn);
    assert_eq!(status, 200, "{replaced}");
    let replaced = claims(replaced["access_token"].as_str().unwrap());
    assert_eq!(replaced["txn"], txn_claims["txn"]);
    assert_eq!(replaced["sub"], txn_claims["sub"]);
    assert_eq!(replaced["scope"], "weather.read");
    assert_eq!(replaced["iss"], s.issuer.as_str());
    assert!(
        replaced["req_wl"]
            .as_str()
            .unwrap()
            .starts_with("spiffe://aims.local/aims/gateway,spiffe://aims.local/"),
        "{replaced}"
    );
    let mut wider = txn_claims.clone();
    wider["scope"] = "weather.read admin".into();
    let widened = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&wider).unwrap());
    let mut parts: Vec<&str> = txn.split('.').collect();
    parts[1] = &widened;
    let (status, refused) = s.replace_txn(&parts.join("."));
    // RFC 8693 §2.2.2: an invalid subject_token is `invalid_request`.
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_request", "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{refused}"
    );

    // Wrong audience: a token for the MCP route.
    let mcp_token = s.token(&resource_of(&s.aims, "demo-mcp"), "mcp");
    let (status, challenge, _) = s.get("/weather", &mcp_token);
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // Passthrough: a token for the upstream tool itself is not accepted by the gateway.
    let upstream = s.aims.up["gateway"]["demo_tool"]
        .as_str()
        .unwrap()
        .to_owned();
    let for_upstream = s.token(&format!("{upstream}/weather"), "weather.read");
    assert_eq!(s.get("/weather", &for_upstream).0, 401);
    // A policy deny: the token lacks the route's scope.
    let (status, challenge, body) = s.get("/weather", &s.token(resource, "other"));
    assert_eq!(status, 403, "{body}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"weather.read\""), "{challenge}");
    s.audit_until(|r| r["decision"] == "deny" && r["resource"] == "weather");
    // MCP 2026-07-28 scope hierarchies: the route's broader `weather` implies `weather.read`,
    // and a narrower or merely similar scope implies nothing broader.
    let (status, _, body) = s.get("/weather", &s.token(resource, "weather"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.get("/weather", &s.token(resource, "weather.write")).0,
        403
    );
    // Tampered and forged tokens.
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 3, 'A');
    assert_eq!(s.get("/weather", &tampered).0, 401);
    assert_eq!(s.get("/weather", "not-a-token").0, 401);

    // A revoked token is refused once the gateway rechecks it (1 s by default).
    let svid = s.jwt_svid();
    let revoked: u16 = s.rt.block_on(async {
        s.http
            .post(format!("{}/oauth2/revoke", s.issuer))
            .form(&[
                ("token", token.as_str()),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", svid.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(revoked, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, challenge, _) = s.get("/weather", &token);
        if status == 401 {
            assert!(challenge.contains("invalid_token"), "{challenge}");
            break;
        }
        assert!(Instant::now() < deadline, "the revoked token still works");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dpop_bound_tokens_need_a_fresh_proof_at_the_gateway() {
    let s = Stack::start();
    let resource = resource_of(&s.aims, "weather");
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let token_url = format!("{}/oauth2/token", s.issuer);
    let v = s.token_with(
        &resource,
        "weather.read",
        Some(dpop_proof(&key, "POST", &token_url, None)),
    );
    assert_eq!(v["token_type"], "DPoP");
    let token = v["access_token"].as_str().unwrap();
    let url = format!("{}/weather", s.gateway);
    let proof = dpop_proof(&key, "GET", &url, Some(token));
    let auth = format!("DPoP {token}");
    let call = |proof: &str| {
        s.call(
            reqwest::Method::GET,
            "/weather",
            &[("authorization", &auth), ("dpop", proof)],
            None,
        )
    };
    assert_eq!(call(&proof).0, 200);
    // The same proof again: a replay.
    let (status, challenge, _) = call(&proof);
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("DPoP error=\"invalid_token\""),
        "{challenge}"
    );
    // Without a proof, with another key's proof, or for another URL.
    assert_eq!(s.get("/weather", token).0, 401);
    let other = PrivateKey::generate(KeyType::EcP256).unwrap();
    assert_eq!(call(&dpop_proof(&other, "GET", &url, Some(token))).0, 401);
    assert_eq!(
        call(&dpop_proof(
            &key,
            "GET",
            &format!("{}/other", s.gateway),
            Some(token)
        ))
        .0,
        401
    );
    assert_eq!(call(&dpop_proof(&key, "GET", &url, Some(token))).0, 200);
}

#[test]
fn mcp_tools_are_authorized_one_by_one_and_the_policy_follows_new_versions() {
    let s = Stack::start();
    let resource = resource_of(&s.aims, "demo-mcp");
    let token = s.token(&resource, "mcp files.read");
    let (status, _, body) = s.mcp(
        &token,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "aims-test", "version": "1"}}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "rmcp");
    // tools/list shows what this caller may call.
    let (status, _, body) = s.mcp(
        &token,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["echo", "read_file"]);
    let call = |name: &str, args: Value| {
        s.mcp(
            &token,
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": name, "arguments": args}}),
        )
    };
    let (status, _, body) = call("read_file", json!({"path": "/etc/passwd"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "contents of /etc/passwd"
    );
    // A tool the caller may not call.
    let (status, challenge, _) = call("delete_file", json!({"path": "/tmp/x"}));
    assert_eq!(status, 403);
    assert!(
        challenge.contains("scope=\"mcp files.delete\""),
        "{challenge}"
    );
    // Malformed, batched and oversized bodies.
    let bearer = format!("Bearer {token}");
    let post = |body: Vec<u8>| {
        s.call(
            reqwest::Method::POST,
            "/mcp",
            &[
                ("authorization", &bearer),
                ("accept", "application/json, text/event-stream"),
            ],
            Some(body),
        )
    };
    let (status, _, body) = post(b"{not json".to_vec());
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    let (status, _, body) = post(b"[]".to_vec());
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600))
    );
    let (status, _, body) =
        post(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{}}"#.to_vec());
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(post(big.into_bytes()).0, 413);
    // MCP 2026-07-28 (SEP-2243) routing headers: the server behind may route by them, so they
    // must name what the gateway decided on. An allowed tool in the body and a forbidden one in
    // `Mcp-Name` is refused before any decision; matching headers pass.
    let read = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/a"}}}"#;
    let with = |headers: &[(&str, &str)]| {
        let mut all = vec![
            ("authorization", bearer.as_str()),
            ("accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        s.call(reqwest::Method::POST, "/mcp", &all, Some(read.to_vec()))
    };
    for headers in [
        &[("mcp-method", "tools/call"), ("mcp-name", "delete_file")][..],
        &[("mcp-method", "tools/list"), ("mcp-name", "read_file")],
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
    ] {
        let (status, _, body) = with(headers);
        assert_eq!(
            (status, body["error"]["code"].as_i64(), &body["id"]),
            (400, Some(-32020), &json!(7)),
            "{headers:?}: {body}"
        );
    }
    let (status, _, body) = with(&[("mcp-method", "tools/call"), ("mcp-name", "read_file")]);
    assert_eq!(status, 200, "{body}");

    // A policy that fails schema validation is refused; the old version stays in force.
    let bad = s.aims.dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        r#"@id("x") forbid(principal, action, resource) when { resource.secret };"#,
    )
    .unwrap();
    assert!(
        !s.aims
            .cli(&["policy", "apply", bad.to_str().unwrap()])
            .status
            .success()
    );
    // A new version reads the tool's arguments; once `apply --wait` returns, the very next call
    // is decided by it.
    s.apply_policy(
        "good.cedar",
        "@id(\"no-etc\")\nforbid(principal, action == Aims::Action::\"call_tool\", resource)\nwhen { resource.hasTag(\"path\") && resource.getTag(\"path\") like \"/etc/*\" };",
    );
    assert_eq!(call("read_file", json!({"path": "/etc/passwd"})).0, 403);
    assert_eq!(call("read_file", json!({"path": "/home/me/notes"})).0, 200);
    s.audit_until(|r| {
        r["action"] == "call_tool"
            && r["resource"] == "demo-mcp/read_file"
            && r["decision"] == "allow"
            && r["policy_version"] == 2
    });
    s.audit_until(|r| {
        r["decision"] == "deny" && r["reason"] == "no-etc" && r["policy_version"] == 2
    });
}

#[test]
fn a_standalone_gateway_takes_its_identity_from_the_workload_api() {
    use std::os::unix::fs::MetadataExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("https://127.0.0.1:{port}");
    let gw_id = "spiffe://aims.local/gateway/standalone";
    // The AS learns that the standalone gateway serves its route (so it may introspect and
    // exchange the tokens it receives for it).
    let s = Stack::start_with_config(&format!(
        r#"[[server.oauth.resources]]
resource = "{public}/w"
server = "{gw_id}"
"#
    ));
    // The gateway's entry: this user's `aims` executable, and nothing else of the user.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let exe = std::fs::canonicalize(common::aims_bin()).unwrap();
    assert_ok(&s.aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        gw_id,
        "--parent-id",
        "spiffe://aims.local/aims/agent/local",
        "-s",
        &format!("unix:uid:{uid}"),
        "-s",
        &format!("unix:path:{}", exe.display()),
    ]));
    let tls = s.aims.data_dir.join("tls");
    let config = s.aims.dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"trust_domain = "aims.local"

[gateway]
listen = "127.0.0.1:{port}"
public_url = "{public}"
issuer = "{issuer}"
server_ca_file = "{ca}"
workload_socket = "unix://{socket}"
spiffe_id = "{gw_id}"
audit = "sync"
tls_cert_file = "{cert}"
tls_key_file = "{key}"

[[gateway.route]]
name = "weather-standalone"
path_prefix = "/w"
upstream = "{tool}"
strip_prefix = true
required_scopes = ["weather.read"]
"#,
            issuer = s.issuer,
            ca = s.aims.web_ca().display(),
            socket = s.aims.workload_socket().display(),
            cert = tls.join("web-server.pem").display(),
            key = tls.join("web-server.key").display(),
            tool = s.aims.up["gateway"]["demo_tool"].as_str().unwrap(),
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(common::aims_bin());
    cmd.arg("gateway").arg("--config").arg(&config);
    let mut gw = common::Proc::spawn("aims gateway", cmd, s.aims.dir.path().join("gateway.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.logs().contains("AIMS gateway started") {
        gw.assert_running();
        assert!(
            Instant::now() < deadline,
            "gateway did not start:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = s.token(&format!("{public}/w"), "weather.read");
    let body: Value = s.rt.block_on(async {
        s.http
            .get(format!("{public}/w/weather?city=Oslo"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["city"], "Oslo", "{body}\n{}", gw.logs());
    let txn = claims(body["received"]["txn_token"].as_str().unwrap());
    assert_eq!(txn["req_wl"], gw_id);
    // Minted with the SVID the gateway got from the Workload API.
    assert_eq!(txn["iss"], gw_id);
    // Sync mode: the record was durable before the response.
    let out = assert_ok(&s.aims.cli(&["audit", "list", "--output", "json"]));
    assert!(
        out.lines().any(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            e["record"]["source"] == gw_id && e["record"]["correlation_id"] == txn["tctx"]["trace"]
        }),
        "{out}"
    );
    gw.stop();
}

#[test]
fn an_agent_authenticated_by_its_x509_svid_alone_is_decided_by_its_spiffe_id() {
    let s = Stack::start();
    // The test's own X509-SVID, from the Workload API.
    let out = s.aims.dir.path().join("svid");
    eventually(Duration::from_secs(15), "an X509-SVID", || {
        s.aims.fetch_x509(&out).then_some(())
    });
    let mut pem = std::fs::read(out.join("svid.0.pem")).unwrap();
    pem.extend(std::fs::read(out.join("svid.0.key")).unwrap());
    let ca = std::fs::read(s.aims.web_ca()).unwrap();
    let mtls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let get = || {
        s.rt.block_on(async {
            let r = mtls
                .get(format!("{}/weather?city=Rome", s.gateway))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    // Authenticated (403, not 401) but without a token there are no scopes: the default policy
    // refuses, and the record names the agent.
    assert_eq!(get().0, 403);
    let records = s.audit_until(|r| r["decision"] == "deny" && r["resource"] == "weather");
    let agent = records
        .iter()
        .find(|e| e["record"]["decision"] == "deny")
        .unwrap()["record"]["agent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(agent.starts_with("spiffe://aims.local/user/"), "{agent}");
    // A policy that allows this agent by its SPIFFE ID.
    s.apply_policy(
        "mtls.cedar",
        &format!("@id(\"svid-callers\")\npermit(principal == Aims::Agent::\"{agent}\", action == Aims::Action::\"call\", resource == Aims::Tool::\"weather\");"),
    );
    let (status, body) = get();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["received"]["agent"], agent.as_str());
    // No access token: nothing to exchange for a transaction token, and nothing leaks.
    assert!(body["received"]["txn_token"].is_null());
    assert!(body["received"]["authorization"].is_null());
    // AIMS PO-3: a workload that asked for the policy naming version 2, and has not asked since,
    // still decides with it: `apply --wait` waits for it, then fails naming it.
    let feed = format!(
        "{}/policy/v1/current",
        s.aims.up["server"]["oauth_mtls"].as_str().unwrap()
    );
    let r =
        s.rt.block_on(mtls.get(&feed).header("if-none-match", "\"2\"").send())
            .unwrap();
    assert_eq!(r.status(), 304);
    let v3 = s.aims.dir.path().join("v3.cedar");
    std::fs::write(
        &v3,
        format!(
            "{}\n// version 3\n",
            include_str!("../../aims-policy/cedar/default.cedar")
        ),
    )
    .unwrap();
    let out = s.aims.cli(&[
        "policy",
        "apply",
        "--wait",
        "--wait-timeout",
        "1s",
        v3.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{agent} (version 2)")) && !stderr.contains("/aims/gateway"),
        "{stderr}"
    );
}

#[test]
fn opaque_tokens_are_introspected_and_sync_audit_records_are_durable_before_the_response() {
    let s = Stack::start_with_config(
        "[server.oauth]\ntoken_format = \"opaque\"\n\n[gateway]\naudit = \"sync\"\n",
    );
    let resource = resource_of(&s.aims, "weather");
    let token = s.token(&resource, "weather.read");
    assert_eq!(
        token.matches('.').count(),
        0,
        "not an opaque token: {token}"
    );
    let (status, _, body) = s.get("/weather", &token);
    assert_eq!(status, 200, "{body}");
    let txn = claims(body["received"]["txn_token"].as_str().unwrap());
    // Sync mode: no waiting for the record.
    let out = assert_ok(&s.aims.cli(&["audit", "list", "--output", "json"]));
    assert!(
        out.contains(txn["tctx"]["trace"].as_str().unwrap()),
        "{out}"
    );
    // An opaque token for another resource is refused too.
    let other = s.token(&resource_of(&s.aims, "demo-mcp"), "mcp");
    assert_eq!(s.get("/weather", &other).0, 401);
}

#[test]
fn an_upstream_that_takes_oauth_tokens_gets_one_exchanged_for_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Stack::start_with_config(&format!(
        r#"[gateway]
demo_tool = true
demo_tool_listen = "127.0.0.1:{port}"

[[gateway.route]]
name = "weather-oauth"
path_prefix = "/wx"
upstream = "http://127.0.0.1:{port}"
strip_prefix = true
required_scopes = ["weather.read"]
transaction_tokens = false
exchange_audience = "https://weather.internal"
"#
    ));
    let resource = resource_of(&s.aims, "weather-oauth");
    let token = s.token(&resource, "weather.read");
    let (status, _, body) = s.get("/wx/weather", &token);
    assert_eq!(status, 200, "{body}");
    assert!(body["received"]["txn_token"].is_null());
    let forwarded = body["received"]["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    assert_ne!(forwarded, token);
    // RFC 8693: a token for the upstream, for the same agent, with the gateway as actor.
    let c = claims(forwarded);
    assert_eq!(c["aud"], "https://weather.internal");
    assert_eq!(c["sub"], claims(&token)["sub"]);
    assert_eq!(c["act"]["sub"], "spiffe://aims.local/aims/gateway");
    assert_eq!(c["scope"], "weather.read");
}

/// AIMS MO-2…MO-6: an operator revokes an agent; the server's Shared Signals transmitter tells
/// the gateway (CAEP session-revoked over its RFC 8936 poll stream), which drops what it cached,
/// so the agent's next call is refused — with token rechecks set to a minute, only the signal
/// can have done it. The agent gets no new token, and the audit log shows the revocation with
/// its cause, recorded by the server before the revocation was acknowledged.
#[test]
fn a_revoked_agent_is_refused_at_the_gateway_and_the_trail_names_the_cause() {
    let s =
        Stack::start_with_config("[gateway]\ntoken_recheck = \"60s\"\ndecision_ttl = \"60s\"\n");
    let resource = resource_of(&s.aims, "weather");
    let token = s.token(&resource, "weather.read");
    assert_eq!(s.get("/weather?city=Lima", &token).0, 200);
    assert_eq!(s.get("/weather?city=Lima", &token).0, 200, "cached");
    let agent = claims(&token)["client_id"].as_str().unwrap().to_owned();
    // The gateway's stream is there before the revocation.
    eventually(
        Duration::from_secs(5),
        "the gateway's signal stream",
        || s.aims.logs().contains("SSF stream created").then_some(()),
    );

    let out = assert_ok(&s.aims.cli(&[
        "revoke",
        "access",
        &agent,
        "--cause",
        "key compromised (ticket 42)",
    ]));
    assert!(out.contains(&format!("revoked {agent}")), "{out}");
    let revoked_at = Instant::now();
    eventually(
        Duration::from_secs(2),
        "the gateway refuses the revoked agent",
        || (s.get("/weather?city=Lima", &token).0 == 401).then_some(()),
    );
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        revoked_at.elapsed()
    );
    // No new token while the revocation stands.
    let (_, refused) = s.token_response(&resource, "weather.read", None);
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    let list = assert_ok(&s.aims.cli(&["revoke", "list"]));
    assert!(list.contains("standing") && list.contains(&agent), "{list}");
    // The trail: the revocation, its cause and who recorded it.
    let records = s.audit_until(|r| r["kind"] == "remediation");
    let rec = &records
        .iter()
        .find(|e| e["record"]["kind"] == "remediation")
        .unwrap()["record"];
    assert_eq!(rec["action"], "revoke");
    assert_eq!(rec["agent"], agent.as_str());
    assert_eq!(rec["remediation_cause"], "key compromised (ticket 42)");
    assert!(
        rec["source"].as_str().unwrap().ends_with("/aims/server"),
        "{rec}"
    );
    // Lifted: new tokens again; the old one stays dead. (A token issued in the revocation's own
    // second counts as revoked — `iat` has seconds only — so the lift comes a second later.)
    std::thread::sleep(Duration::from_millis(1100));
    assert_ok(
        &s.aims
            .cli(&["revoke", "lift", &agent, "--cause", "key rotated"]),
    );
    let fresh = s.token(&resource, "weather.read");
    assert_eq!(s.get("/weather?city=Lima", &fresh).0, 200);
    assert_eq!(s.get("/weather?city=Lima", &token).0, 401);
}

/// AIMS MO-9, MO-11: one task keeps one id across hops. A call with a W3C `traceparent`
/// reaches the tool in the same trace (the gateway's hop as parent span) with a transaction
/// token whose `txn` is 32 hex digits; when that tool calls the next tool through the gateway
/// forwarding the `Txn-Token`, the gateway has it replaced (same `txn`, `req_wl` extended), and
/// `aims audit trace <txn>` shows both hops.
///
/// Both ways of minting: by the gateway (the default) and by the AIMS server.
#[test]
fn a_task_keeps_one_id_across_hops_and_the_trace_shows_them() {
    for issuer in ["gateway", "server"] {
        one_task_across_hops(issuer);
    }
}

fn one_task_across_hops(issuer: &str) {
    let s = Stack::start_with_config(&format!(
        "[gateway]\naudit = \"sync\"\ntransaction_token_issuer = \"{issuer}\"\n"
    ));
    let resource = resource_of(&s.aims, "weather");
    let token = s.token(&resource, "weather.read");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, _, first) = s.call(
        reqwest::Method::GET,
        "/weather?city=Rome",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("traceparent", &parent),
        ],
        None,
    );
    assert_eq!(status, 200, "{first}");
    let forwarded = first["received"]["traceparent"].as_str().unwrap();
    assert!(
        forwarded.starts_with(&format!("00-{trace}-")),
        "{forwarded}"
    );
    assert_ne!(forwarded, parent, "the gateway's hop is the parent span");
    let txn_token = first["received"]["txn_token"].as_str().unwrap().to_owned();
    let txn = claims(&txn_token)["txn"].as_str().unwrap().to_owned();
    let minter = claims(&txn_token)["iss"].as_str().unwrap().to_owned();
    match issuer {
        "gateway" => assert_eq!(minter, "spiffe://aims.local/aims/gateway"),
        _ => assert_eq!(minter, s.issuer),
    }
    // The transaction has an id of its own (txn-tokens §4.2) and names its task.
    assert_eq!(txn.len(), 32);
    assert_ne!(txn, trace);
    assert_eq!(claims(&txn_token)["tctx"]["trace"], trace);

    // The tool calls on, forwarding the transaction token: same transaction.
    let (status, _, second) = s.call(
        reqwest::Method::GET,
        "/weather?city=Oslo",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("txn-token", &txn_token),
        ],
        None,
    );
    assert_eq!(status, 200, "{second}");
    let replaced = claims(second["received"]["txn_token"].as_str().unwrap());
    assert_eq!(replaced["txn"], txn.as_str());
    assert_eq!(replaced["tctx"]["trace"], trace);
    assert_eq!(replaced["iss"], minter.as_str());
    let wl = replaced["req_wl"].as_str().unwrap();
    assert_eq!(wl.matches("/aims/gateway").count(), 2, "{wl}");
    // Without a traceparent, the upstream's trace is the task the transaction names.
    assert!(
        second["received"]["traceparent"]
            .as_str()
            .unwrap()
            .starts_with(&format!("00-{trace}-")),
        "{second}"
    );

    let out = assert_ok(&s.aims.cli(&["audit", "trace", trace]));
    assert!(
        out.starts_with(&format!("task {trace}: 2 records")),
        "{out}"
    );
    assert_eq!(out.matches("call weather → allow").count(), 2, "{out}");
}

/// Prometheus metrics (`--metrics-listen`): the stack counts what it issues, forwards, denies
/// and records, in the text exposition format.
#[test]
fn the_stack_serves_prometheus_metrics() {
    let s = Stack::with(Aims::start(
        "up",
        &["--register-self", "--metrics-listen", "127.0.0.1:0"],
    ));
    let url = s.aims.up["metrics"].as_str().unwrap().to_owned();
    let resource = resource_of(&s.aims, "weather");
    let token = s.token(&resource, "weather.read");
    assert_eq!(s.get("/weather", &token).0, 200);
    assert_eq!(s.get("/weather", "not-a-token").0, 401);
    let scrape = || -> String {
        s.rt.block_on(async {
            let r = reqwest::get(&url).await.unwrap();
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            r.text().await.unwrap()
        })
    };
    let text = eventually(Duration::from_secs(5), "audit records counted", || {
        let t = scrape();
        t.contains("aims_audit_records_appended_total").then_some(t)
    });
    for needle in [
        // The agent's token; the transaction token the gateway minted itself.
        "aims_oauth_token_requests_total{outcome=\"issued\"} 1",
        "aims_gateway_txn_tokens_minted_total 1",
        "aims_gateway_requests_total{outcome=\"forwarded\"} 1",
        "aims_gateway_requests_total{outcome=\"unauthenticated\"} 1",
        "aims_svids_issued_total{kind=\"jwt-svid\"}",
        "aims_workload_api_requests_total{method=\"FetchJWTSVID\"}",
        "# TYPE aims_gateway_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}

/// A received span: trace id, span id, parent span id, name.
type SpanRow = (String, String, String, String);

/// Spans received by a test OTLP/gRPC collector.
#[derive(Clone, Default)]
struct Collector(Arc<std::sync::Mutex<Vec<SpanRow>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        req: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for sp in ss.spans {
                    spans.push((
                        hex(&sp.trace_id),
                        hex(&sp.span_id),
                        hex(&sp.parent_span_id),
                        sp.name,
                    ));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// AIMS MO-9, MO-11: with `[telemetry] otlp_endpoint`, the gateway exports an OpenTelemetry
/// span per request in the caller's trace (W3C traceparent), and the upstream's traceparent
/// names that span as its parent — one trace across agent, gateway and tool.
#[test]
fn the_gateway_exports_its_span_in_the_callers_trace() {
    let collector = Collector::default();
    let crt = tokio::runtime::Runtime::new().unwrap();
    let listener = crt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(collector.clone());
    crt.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let s = Stack::start_with_config(&format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n"
    ));
    let resource = resource_of(&s.aims, "weather");
    let token = s.token(&resource, "weather.read");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let (status, _, body) = s.call(
        reqwest::Method::GET,
        "/weather",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("traceparent", &format!("00-{trace}-{caller_span}-01")),
        ],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let upstream = body["received"]["traceparent"].as_str().unwrap().to_owned();
    let span = eventually(
        Duration::from_secs(10),
        "the gateway's span exported",
        || {
            collector
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(t, _, _, name)| t == trace && name == "gateway.request")
                .cloned()
        },
    );
    assert_eq!(span.2, caller_span, "the caller's span is the parent");
    assert_eq!(
        upstream,
        format!("00-{trace}-{}-01", span.1),
        "the tool's parent is the gateway's span"
    );
}

/// A minimal cookie-keeping HTTP session for the people pages (form posts carry the page's
/// CSRF token).
struct PageSession<'a> {
    s: &'a Stack,
    /// A client with its own cookie store that shows redirects instead of following them.
    http: reqwest::Client,
}

impl<'a> PageSession<'a> {
    fn new(s: &'a Stack) -> Self {
        let ca = std::fs::read(s.aims.up["server"]["web_ca_file"].as_str().unwrap()).unwrap();
        Self {
            s,
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
        }
    }

    /// Sends `req`; answers status, Location and body.
    fn send(&self, req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        self.s.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let location = resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            (resp.status().as_u16(), location, resp.text().await.unwrap())
        })
    }
}

/// The value of the first `name="<field>"` input of a page.
fn field<'p>(page: &'p str, name: &str) -> &'p str {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
}

/// AIMS AZ-27, AZ-28, AZ-31: policy lets a tool be called only with a person's approval. The
/// gateway answers a token without one with 403 `insufficient_scope` saying so (the MCP
/// step-up challenge); the agent asks the user through CIBA, she approves on the approvals
/// page, and the token that carries her approval is let through.
#[test]
fn a_tool_that_needs_a_persons_approval_is_let_through_with_a_ciba_token() {
    let s = Stack::start();
    s.apply_policy(
        "approval.cedar",
        r#"@id("reading-files-needs-approval")
forbid (principal, action == Aims::Action::"call_tool", resource)
when { resource.name == "read_file" }
unless { context has approval };"#,
    );
    let resource = resource_of(&s.aims, "demo-mcp");
    let read = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "read_file", "arguments": {"path": "/srv/report"}}});
    let token = s.token(&resource, "mcp files.read");
    let (status, challenge, body) = s.mcp(&token, &read);
    assert_eq!(status, 403, "{body}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("approval"),
        "{body}"
    );

    // A user, enrolled with a password through her link (passkeys need a host name).
    let created = assert_ok(&s.aims.cli(&["user", "create", "alice"]));
    let link = created
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&s.issuer)
                .map(|p| format!("{}{p}", s.issuer))
        })
        .unwrap();
    let alice = PageSession::new(&s);
    let (status, _, page) = alice.send(alice.http.get(&link));
    assert_eq!(status, 200, "{page}");
    let token_param = field(&page, "token").to_owned();
    let csrf = field(&page, "csrf").to_owned();
    let (status, _, _) = alice.send(
        alice
            .http
            .post(format!("{}/enroll/password", s.issuer))
            .form(&[
                ("token", token_param.as_str()),
                ("password", "a long enough password"),
                ("csrf", csrf.as_str()),
            ]),
    );
    assert_eq!(status, 303, "enrolled and signed in");

    // The agent asks for her approval (CIBA), with its SVID as client authentication.
    let svid = s.jwt_svid();
    let bc: Value = s.rt.block_on(async {
        s.http
            .post(format!("{}/oauth2/bc-authorize", s.issuer))
            .form(&[
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", svid.as_str()),
                ("scope", "openid mcp files.read"),
                ("login_hint", "alice"),
                ("binding_message", "READ-REPORT"),
                ("resource", resource.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let auth_req_id = bc["auth_req_id"]
        .as_str()
        .expect("a CIBA request")
        .to_owned();
    let (_, _, page) = alice.send(alice.http.get(format!("{}/approvals", s.issuer)));
    assert!(page.contains("READ-REPORT"), "{page}");
    let (status, _, answer) = alice.send(
        alice
            .http
            .post(format!("{}/approvals/decide", s.issuer))
            .form(&[
                ("id", field(&page, "id")),
                ("decision", "approve"),
                ("csrf", field(&page, "csrf")),
            ]),
    );
    assert_eq!(status, 303, "{answer}");
    let svid = s.jwt_svid();
    let approved: Value = s.rt.block_on(async {
        s.http
            .post(format!("{}/oauth2/token", s.issuer))
            .form(&[
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", svid.as_str()),
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", auth_req_id.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let approved_token = approved["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert!(claims(&approved_token)["approval"].is_string());
    let (status, _, body) = s.mcp(&approved_token, &read);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "contents of /srv/report"
    );
}

/// An upstream that records each request's target exactly as its bytes arrived, with the
/// transaction token that came with it and how its body was framed, and answers with them.
struct Recorder {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Self {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let mut read_more = |data: &mut Vec<u8>| match conn.read(&mut buf) {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        data.extend_from_slice(&buf[..n]);
                        true
                    }
                };
                let end_of_head = loop {
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    if !read_more(&mut data) {
                        break data.len();
                    }
                };
                let head = String::from_utf8_lossy(&data[..end_of_head]).into_owned();
                let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.trim().to_owned())
                    })
                };
                let txn = header("txn-token").unwrap_or_default();
                // RFC 9112 §6: how the body was framed, and the body.
                let (framing, body) = match (header("content-length"), header("transfer-encoding"))
                {
                    (Some(n), None) => {
                        let n: usize = n.parse().unwrap();
                        while data.len() < end_of_head + n && read_more(&mut data) {}
                        (format!("content-length: {n}"), data[end_of_head..].to_vec())
                    }
                    (None, Some(te)) => {
                        while !data[end_of_head..].ends_with(b"0\r\n\r\n") && read_more(&mut data) {
                        }
                        let mut body = Vec::new();
                        let mut rest = &data[end_of_head..];
                        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                            let size =
                                usize::from_str_radix(std::str::from_utf8(&rest[..i]).unwrap(), 16)
                                    .unwrap();
                            if size == 0 {
                                break;
                            }
                            body.extend_from_slice(&rest[i + 2..i + 2 + size]);
                            rest = &rest[i + 4 + size..];
                        }
                        (format!("transfer-encoding: {te}"), body)
                    }
                    (None, None) => ("none".to_owned(), Vec::new()),
                    (Some(_), Some(_)) => ("both".to_owned(), Vec::new()),
                };
                log.lock().unwrap().push(target.clone());
                let body = json!({
                    "target": target,
                    "txn": txn,
                    "framing": framing,
                    "body": String::from_utf8_lossy(&body),
                })
                .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen }
    }

    /// A gateway route `/{name}` to this upstream, needing `scope`.
    fn route(&self, name: &str, scope: &str, transaction_tokens: bool) -> String {
        format!(
            "[[gateway.route]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"http://127.0.0.1:{}\"\nrequired_scopes = [\"{scope}\"]\ntransaction_tokens = {transaction_tokens}\n\n",
            self.port
        )
    }
}

impl Stack {
    /// The gateway's `host:port`.
    fn authority(&self) -> String {
        let url = reqwest::Url::parse(&self.gateway).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
    }

    /// Sends `head` (a request line and headers, unparsed by any client library) to the gateway
    /// over TLS: the status and the body.
    fn raw(&self, head: &str) -> (u16, Value) {
        use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let ca = std::fs::read(self.aims.up["server"]["web_ca_file"].as_str().unwrap()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let url = reqwest::Url::parse(&self.gateway).unwrap();
        let host = url.host_str().unwrap().to_owned();
        let addr = format!("{host}:{}", url.port().unwrap());
        self.rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let mut tls = connector
                .connect(ServerName::try_from(host).unwrap(), tcp)
                .await
                .unwrap();
            tls.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            let text = String::from_utf8_lossy(&out).into_owned();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            // A chunked answer: the JSON sits between the chunk sizes.
            let json = body
                .find('{')
                .zip(body.rfind('}'))
                .and_then(|(a, b)| serde_json::from_str(&body[a..=b]).ok())
                .unwrap_or(Value::Null);
            (status, json)
        })
    }
}

/// AIMS AZ-7, AZ-8 (issue: a `weather` token reached the MCP route by `/weather/%2e%2e/mcp`):
/// a differential test of the gateway's request target. Each tricky target goes, unparsed by
/// any client library, through the real gateway to a recording upstream. Each is either refused
/// before anything reaches a tool, or forwarded with the very path the decision was made on —
/// the path the transaction token's `rctx` names — which is under the route the token is for,
/// and which a normalizing URL parser leaves as it is.
#[test]
fn every_request_target_is_refused_or_forwarded_as_decided() {
    let rec = Recorder::start();
    let s = Stack::start_with_config(&format!(
        "{}{}",
        rec.route("wx", "weather.read", true),
        rec.route("vault", "vault.admin", true)
    ));
    let token = s.token(&resource_of(&s.aims, "wx"), "weather.read");
    let host = s.authority();
    let targets = [
        // Dot segments in every spelling.
        "/wx/../vault",
        "/wx/%2e%2e/vault",
        "/wx/%2E%2E/vault",
        "/wx/.%2e/vault",
        "/wx/%2e./vault",
        "/wx/./../vault",
        "/wx/%2e/vault",
        "/wx/..;/vault",
        "/wx/..;x=1/vault",
        "/wx/..%3b/vault",
        "/wx/..",
        "/wx/%2e%2e",
        "/wx/%2e%2e%2fvault",
        // Encoded and alternative separators.
        "/wx%2f..%2fvault",
        "/wx%2F..%2Fvault",
        "/wx/..%2fvault",
        "/wx/..%5cvault",
        "/wx/..\\vault",
        "/wx\\..\\vault",
        // Double and overlong encodings, bad UTF-8, NUL and controls.
        "/wx/%252e%252e/vault",
        "/wx/%25252e/vault",
        "/wx/%c0%ae%c0%ae/vault",
        "/wx/%e0%80%ae%e0%80%ae/vault",
        "/wx/%c0%af",
        "/wx/%ff",
        "/wx/%00/../vault",
        "/wx%00/vault",
        "/wx/%0d%0aX-Injected:%201",
        "/wx/%",
        "/wx/%g0",
        // Empty segments.
        "//wx/../vault",
        "/wx//../vault",
        "/wx//vault",
        // Not origin form.
        "*",
        "wx/../vault",
        // Allowed spellings: forwarded in canonical form.
        "/wx",
        "/wx/",
        "/wx/today",
        "/wx/to%64ay",
        "/wx/%7Euser",
        "/wx/a;b=c",
        "/wx/a%3Bb",
        "/wx/..a/b..",
        "/wx/today?city=Berlin&x=..%2f..",
        "/wx/caf%C3%A9",
        "/WX/today",
        "/wxx",
        "/vault",
    ];
    assert!(targets.len() >= 40);
    let request = |target: &str, host_header: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nhost: {host_header}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
    };
    let mut cases: Vec<(String, String)> = targets
        .iter()
        .map(|t| ((*t).to_owned(), request(t, &host)))
        .collect();
    // Absolute form for another authority, and one Host too many.
    cases.push((
        "https://evil.example/vault".into(),
        request("https://evil.example/vault", &host),
    ));
    cases.push((
        format!("https://{host}/wx/../vault"),
        request(&format!("https://{host}/wx/../vault"), &host),
    ));
    cases.push((
        "/wx/today (two Host headers)".into(),
        format!(
            "GET /wx/today HTTP/1.1\r\nhost: {host}\r\nhost: evil.example\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    ));
    let mut forwarded = 0;
    for (name, head) in &cases {
        let before = rec.seen.lock().unwrap().len();
        let (status, body) = s.raw(head);
        let reached = rec.seen.lock().unwrap().len() > before;
        if status != 200 {
            assert!(
                !reached,
                "{name}: refused with {status} but reached the upstream"
            );
            assert!([400, 401, 404].contains(&status), "{name}: {status} {body}");
            continue;
        }
        assert!(reached, "{name}: 200 without the upstream");
        forwarded += 1;
        let received = body["target"].as_str().unwrap();
        let txn = claims(body["txn"].as_str().unwrap());
        let decided = txn["rctx"]["path"].as_str().unwrap();
        let (received_path, _) = received.split_once('?').unwrap_or((received, ""));
        assert_eq!(received_path, decided, "{name}: forwarded ≠ decided");
        assert_eq!(txn["tctx"]["tool"], "wx", "{name}: {txn}");
        assert!(
            decided == "/wx" || decided.starts_with("/wx/"),
            "{name}: {decided}"
        );
        // A URL parser that resolves dot segments and encodings reads the same path.
        let normalized = reqwest::Url::parse(&format!("http://x{received_path}")).unwrap();
        assert_eq!(normalized.path(), received_path, "{name}");
        assert!(
            !received_path.to_ascii_lowercase().contains("%2e"),
            "{name}"
        );
    }
    assert_eq!(forwarded, 10, "the allowed spellings all reach the tool");
}

/// RFC 9112 §6: a request reaches the upstream framed as it came (the gateway drops the
/// caller's hop-by-hop `Transfer-Encoding` and streams the body): without a body when it had
/// none, with its Content-Length when it had one, chunked when its length was not known, and
/// the body intact either way.
#[test]
fn request_bodies_reach_the_upstream_framed_as_they_came() {
    let rec = Recorder::start();
    let s = Stack::start_with_config(&rec.route("wx", "weather.read", false));
    let token = s.token(&resource_of(&s.aims, "wx"), "weather.read");
    let host = s.authority();
    let head = |method: &str, framing: &str| {
        format!(
            "{method} /wx/echo HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n{framing}\r\n"
        )
    };
    let (status, body) = s.raw(&head("GET", ""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["framing"], "none");
    let (status, body) = s.raw(&format!("{}hello", head("POST", "content-length: 5\r\n")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["framing"], "content-length: 5");
    assert_eq!(body["body"], "hello");
    let (status, body) = s.raw(&format!(
        "{}3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        head("POST", "transfer-encoding: chunked\r\n")
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["framing"], "transfer-encoding: chunked");
    assert_eq!(body["body"], "hello");
    assert_eq!(rec.seen.lock().unwrap().len(), 3);
}

/// The standing negative matrix's gateway, Workload API and admin-socket rows (issue 16; the
/// authorization server's are in `crates/aims-server/tests/negative_matrix.rs`): each attack
/// with the exact answer it must get, through the real stack.
#[test]
fn gateway_workload_api_and_admin_attacks_get_their_exact_refusals() {
    let s = Stack::start();
    let weather = resource_of(&s.aims, "weather");
    let mcp_resource = resource_of(&s.aims, "demo-mcp");
    let token = s.token(&weather, "weather.read");
    let mcp_token = s.token(&mcp_resource, "mcp files.read");
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let forged = sign(
        &key,
        &JwsHeader::new(&key, Some("at+jwt"), Some("k")),
        &claims(&token),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        token.split('.').nth(1).unwrap()
    );
    let token_url = format!("{}/oauth2/token", s.issuer);
    let dpop_token = s.token_with(
        &weather,
        "weather.read",
        Some(dpop_proof(&key, "POST", &token_url, None)),
    )["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = |t: &str| format!("Bearer {t}");
    let (b_token, b_mcp, b_forged, b_none, b_dpop) = (
        bearer(&token),
        bearer(&mcp_token),
        bearer(&forged),
        bearer(&none),
        format!("DPoP {dpop_token}"),
    );
    let call_tool = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": name, "arguments": {"path": "/etc/passwd"}}})
        .to_string()
        .into_bytes()
    };
    let mcp_headers = |auth: &str| -> Vec<(String, String)> {
        vec![
            ("authorization".into(), auth.to_owned()),
            (
                "accept".into(),
                "application/json, text/event-stream".into(),
            ),
            ("mcp-protocol-version".into(), "2025-11-25".into()),
        ]
    };
    type Row = (
        &'static str,
        reqwest::Method,
        &'static str,
        Vec<(String, String)>,
        Option<Vec<u8>>,
        u16,
        &'static str,
    );
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let rows: Vec<Row> = vec![
        (
            "no credentials (RFC 6750 §3)",
            reqwest::Method::GET,
            "/weather",
            vec![],
            None,
            401,
            "invalid_request",
        ),
        (
            "a token for another route (audience)",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_mcp)]),
            None,
            401,
            "invalid_token",
        ),
        (
            "a token signed by another key",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_forged)]),
            None,
            401,
            "invalid_token",
        ),
        (
            "a token with alg none (RFC 8725 §3.2)",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_none)]),
            None,
            401,
            "invalid_token",
        ),
        (
            "garbage as token",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", "Bearer garbage")]),
            None,
            401,
            "invalid_token",
        ),
        (
            "two Txn-Token fields (txn-tokens: exactly one; the first is not picked)",
            reqwest::Method::GET,
            "/weather",
            h(&[
                ("authorization", &b_token),
                ("txn-token", "a.b.c"),
                ("txn-token", "d.e.f"),
            ]),
            None,
            400,
            "invalid_request",
        ),
        (
            "a DPoP-bound token as Bearer (RFC 9449 §7.1)",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &bearer(&dpop_token))]),
            None,
            401,
            "invalid_token",
        ),
        (
            "a DPoP-bound token without a proof",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_dpop)]),
            None,
            401,
            "invalid_token",
        ),
        (
            "a DPoP proof that is no JWS",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_dpop), ("dpop", "junk")]),
            None,
            401,
            "invalid_token",
        ),
        (
            "a forged WPT",
            reqwest::Method::GET,
            "/weather",
            h(&[
                ("workload-identity-token", &forged),
                ("authorization", &format!("WPT {forged}")),
            ]),
            None,
            401,
            "invalid_wit",
        ),
        (
            "a Host that is not the request's authority",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_token), ("host", "evil.example")]),
            None,
            400,
            "invalid_request",
        ),
        (
            "a dot segment with a parameter (..;) to another route",
            reqwest::Method::GET,
            "/weather/..;/mcp",
            h(&[("authorization", &b_token)]),
            None,
            400,
            "invalid_request",
        ),
        (
            "an encoded slash",
            reqwest::Method::GET,
            "/weather%2f..%2fmcp",
            h(&[("authorization", &b_token)]),
            None,
            400,
            "invalid_request",
        ),
        (
            "no such route",
            reqwest::Method::GET,
            "/nowhere",
            h(&[("authorization", &b_token)]),
            None,
            404,
            "no route",
        ),
        (
            "a tool the token's scope does not cover (AZ-37)",
            reqwest::Method::POST,
            "/mcp",
            mcp_headers(&b_mcp),
            Some(call_tool("delete_file")),
            403,
            "insufficient_scope",
        ),
        (
            "an MCP body that is not JSON",
            reqwest::Method::POST,
            "/mcp",
            mcp_headers(&b_mcp),
            Some(b"{not json".to_vec()),
            400,
            "",
        ),
        (
            "an MCP body over the bound",
            reqwest::Method::POST,
            "/mcp",
            mcp_headers(&b_mcp),
            Some(vec![b' '; 2 << 20]),
            413,
            "",
        ),
        (
            "a forged transaction token forwarded (txn-tokens §8)",
            reqwest::Method::GET,
            "/weather",
            h(&[("authorization", &b_token), ("txn-token", &forged)]),
            None,
            401,
            "invalid_token",
        ),
    ];
    let count = rows.len();
    for (name, method, path, headers, body, status, error) in rows {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (got, challenge, v) = s.call(method, path, &pairs, body);
        let code = v["error"]
            .as_str()
            .or(v["error"]["message"].as_str().map(|_| ""))
            .unwrap_or("");
        assert_eq!((got, code), (status, error), "{name}: {v} {challenge}");
        if got == 401 {
            assert!(
                !challenge.is_empty(),
                "{name}: 401 without WWW-Authenticate"
            );
        }
    }
    // The Workload API (SPIFFE Workload Endpoint §4, §5).
    let socket = s.aims.workload_socket();
    let statuses = s.rt.block_on(async {
        let mut client =
            aims_workload_api::client::WorkloadApiClient::connect_path(&socket).unwrap();
        let no_header = client
            .raw()
            .fetch_jwtsvid(aims_workload_api::proto::JwtsvidRequest {
                audience: vec!["x".into()],
                spiffe_id: String::new(),
            })
            .await
            .unwrap_err()
            .code();
        let no_audience = client
            .fetch_jwt_svid(Vec::new(), None)
            .await
            .unwrap_err()
            .code();
        let forged_svid = client
            .validate_jwt_svid("x".into(), forged.clone())
            .await
            .unwrap_err()
            .code();
        let someone_else = client
            .fetch_jwt_svid(
                vec!["x".to_owned()],
                Some("spiffe://aims.local/not/mine".into()),
            )
            .await
            .unwrap_err()
            .code();
        [no_header, no_audience, forged_svid, someone_else]
    });
    assert_eq!(
        statuses,
        [
            tonic::Code::InvalidArgument,
            tonic::Code::InvalidArgument,
            tonic::Code::InvalidArgument,
            tonic::Code::PermissionDenied
        ]
    );
    // The admin socket: the operator's alone, and junk gets a 400.
    use std::os::unix::fs::PermissionsExt as _;
    let admin = s.aims.admin_socket();
    let mode = std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode {mode:o}");
    let (status, body) = s.rt.block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut sock = tokio::net::UnixStream::connect(&admin).await.unwrap();
        let junk = "{not json";
        sock.write_all(
            format!(
                "POST /v1/entries HTTP/1.1\r\nhost: admin\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{junk}",
                junk.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        sock.read_to_string(&mut out).await.unwrap();
        (out.split(' ').nth(1).unwrap_or_default().to_owned(), out)
    });
    assert_eq!(status, "400", "{body}");
    assert!(count + 4 + 2 >= 23);
}

/// Issue 19: `aims mcp` (the MCP client of `aims-sdk`) against AIMS itself, as a tool user's
/// MCP client would come: it knows only the gateway's MCP URL. From the gateway's 401 it finds
/// the AS (RFC 9728), gets a DPoP-bound token for that resource (the AS supports DPoP) with its
/// `private_key_jwt` client, sees the tools its scope allows, and steps up to the scope a tool
/// needs (403 `insufficient_scope`). A scope its client may not have ends in a clear refusal.
/// A workload with a JWT-SVID needs no client secret at all (JWT bearer, SEP-1933).
#[test]
fn aims_mcp_finds_the_as_steps_up_and_calls_tools_through_the_gateway() {
    let s = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let jwk = key
        .public_key()
        .to_jwk(Some("sig"), None, Some(key.jws_algorithm()));
    let jwks = dir.path().join("mcp-cli.jwks");
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let pem = dir.path().join("mcp-cli.pem");
    std::fs::write(&pem, key.to_pkcs8_pem().as_bytes()).unwrap();
    assert_ok(&s.aims.cli(&[
        "client",
        "create",
        "--client-id",
        "mcp-cli",
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "mcp files.read",
        "--grant-type",
        "client_credentials",
    ]));
    let url = format!("{}/mcp", s.gateway);
    let ca = s.aims.web_ca();
    let mcp = |args: &[&str], credentials: &[&str]| {
        let mut full = vec!["mcp"];
        full.extend_from_slice(&args[..1]);
        full.push(&url);
        full.extend_from_slice(&args[1..]);
        full.extend_from_slice(&["--ca-file", ca.to_str().unwrap()]);
        full.extend_from_slice(credentials);
        common::run(&full)
    };
    let client = [
        "--client-id",
        "mcp-cli",
        "--private-key-file",
        pem.to_str().unwrap(),
    ];
    // Pinned to another authorization server: refused before any credential is sent.
    let refused = mcp(
        &["tools"],
        &[&client[..], &["--issuer", "https://as.elsewhere.example"]].concat(),
    );
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused).contains("nothing was sent"),
        "{}",
        common::stderr(&refused)
    );
    let pinned = assert_ok(&mcp(
        &["tools"],
        &[&client[..], &["--issuer", s.issuer.as_str()]].concat(),
    ));
    assert!(pinned.contains("echo"), "{pinned}");
    // The route's scope `mcp` from the challenge: the tools that scope allows.
    let tools: Value = serde_json::from_str(&assert_ok(&mcp(&["tools"], &client))).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo"], "{tools}");
    // read_file needs files.read too: the client steps up and the call goes through.
    let out = assert_ok(&mcp(
        &[
            "call",
            "read_file",
            "--arguments",
            r#"{"path":"/etc/hosts"}"#,
        ],
        &client,
    ));
    assert!(out.contains("contents of /etc/hosts"), "{out}");
    // delete_file needs files.delete, which this client may not have: the AS refuses the
    // step-up, and the client says so instead of asking again.
    let refused = mcp(
        &["call", "delete_file", "--arguments", r#"{"path":"/tmp/x"}"#],
        &client,
    );
    assert!(!refused.status.success());
    let err = common::stderr(&refused);
    assert!(err.contains("invalid_scope"), "{err}");
    // Another client's key is refused at the token endpoint.
    let other = PrivateKey::generate(KeyType::EcP256).unwrap();
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.to_pkcs8_pem().as_bytes()).unwrap();
    let refused = mcp(
        &["tools"],
        &[
            "--client-id",
            "mcp-cli",
            "--private-key-file",
            other_pem.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused).contains("invalid_client"),
        "{}",
        common::stderr(&refused)
    );
    // A workload's JWT-SVID from the Workload API by the JWT bearer grant: no client
    // credential at all. The same JWT-SVID for another audience is refused.
    let socket = s.aims.workload_socket();
    let out = assert_ok(&mcp(
        &["call", "echo", "--arguments", r#"{"text":"hello"}"#],
        &["--workload-api", "--socket", socket.to_str().unwrap()],
    ));
    assert!(out.contains("hello"), "{out}");
    let elsewhere = dir.path().join("elsewhere.jwt");
    let svid = common::api(
        std::path::Path::new(common::aims_bin()),
        &socket,
        &["fetch", "jwt", "--audience", "https://elsewhere.example"],
    );
    std::fs::write(&elsewhere, common::stdout(&svid).trim()).unwrap();
    let refused = mcp(
        &["tools"],
        &["--assertion-file", elsewhere.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused).contains("invalid_client"),
        "{}",
        common::stderr(&refused)
    );
}

/// The server scenarios MCP 2026-07-28 requires, frozen at its release (the suite's
/// `requirements/2026-07-28.yaml`, `server:`).
const MCP_2026_07_28_SERVER: &[&str] = &[
    "server-stateless",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "sep-2164-resource-not-found",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "caching",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
];

/// Issue 19: the MCP conformance suite's server scenarios for 2026-07-28 (`--requirements
/// 2026-07-28`: the 37 the revision requires, and those it runs unscored) find the same MCP
/// server behind the gateway as in front of it. The server is the suite's "everything" server
/// on the Rust MCP SDK (`mcp_everything`), which passes all 37; `aims mcp proxy` is the MCP
/// client's side (the suite sends no token: the proxy authorizes each request with the test
/// workload's JWT-SVID, as a user's MCP client would present its token); the gateway
/// authenticates, decides and records each call. Stateless requests with per-request `_meta`,
/// `server/discover`, protocol-version and header checks, event streams with progress,
/// multi-round-trip requests with sealed state, JSON Schema 2020-12 listings and the
/// DNS-rebinding checks all pass through unchanged.
#[test]
fn the_mcp_server_scenarios_see_the_same_server_through_the_gateway() {
    use std::collections::BTreeMap;
    let everything = mcp_everything::serve();
    let s = Stack::start_with_config(&format!(
        "[[gateway.route]]\nname = \"everything\"\npath_prefix = \"/everything\"\nupstream = \"http://{everything}\"\nkind = \"mcp\"\nrequired_scopes = [\"mcp\"]\n"
    ));
    let direct = format!("http://{everything}/everything");
    let port = common::free_port();
    let mut cmd = std::process::Command::new(common::aims_bin());
    let socket = s.aims.workload_socket();
    let ca = s.aims.web_ca();
    cmd.args([
        "mcp",
        "proxy",
        &format!("{}/everything", s.gateway),
        "--workload-api",
    ])
    .args(["--socket", socket.to_str().unwrap()])
    .args(["--ca-file", ca.to_str().unwrap()])
    .args(["--listen", &format!("127.0.0.1:{port}")]);
    let log = s.aims.dir.path().join("mcp-proxy.log");
    let mut proxy = common::Proc::spawn("aims mcp proxy", cmd, log);
    eventually(Duration::from_secs(20), "the proxy listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let run = |url: &str| -> BTreeMap<String, bool> {
        let out =
            common::mcp_conformance(&["server", "--url", url, "--requirements", "2026-07-28"])
                .output()
                .expect("node runs");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        printed
            .lines()
            .filter_map(|l| {
                let (mark, rest) = l.split_once(' ')?;
                let name = rest.split(':').next()?.to_owned();
                match mark {
                    "✓" => Some((name, true)),
                    "✗" => Some((name, false)),
                    _ => None,
                }
            })
            .collect()
    };
    let alone = run(&direct);
    let behind = run(&format!("http://127.0.0.1:{port}/mcp"));
    proxy.assert_running();
    let failed: Vec<&&str> = MCP_2026_07_28_SERVER
        .iter()
        .filter(|name| alone.get(**name) != Some(&true))
        .collect();
    assert!(failed.is_empty(), "the fixture fails {failed:?}: {alone:?}");
    assert_eq!(behind, alone, "{}", proxy.logs());
    // Every call went through the gateway's decision, under the workload's identity.
    let out = assert_ok(&s.aims.cli(&["audit", "list", "--output", "json"]));
    assert!(out.contains("\"resource\":\"everything\""), "{out}");
    proxy.stop();
}
