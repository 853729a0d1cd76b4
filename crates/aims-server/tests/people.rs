//! People in the loop over real HTTPS on 127.0.0.1 (AIMS AZ-10…AZ-14, AZ-27…AZ-33): a user
//! signs in and delegates to an agent by the authorization code grant with PKCE and PAR; an
//! agent asks a user's approval through CIBA; policy decides when approval is needed — and
//! every way a client, a browser or another user can get it wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aims_core::SpiffeId;
use aims_credentials::jose::{CompactJws, sha256_b64url};
use aims_people::users::NewUser;
use aims_store::ClientSource;
use aims_token::wire::CIBA_GRANT;
use common::{As, JWT_SPIFFE_ASSERTION, RESOURCE, start_as};
use serde_json::{Value, json};

const REDIRECT: &str = "https://app.example/cb";
const AGENT: &str = "spiffe://example.org/agent/a";
const PASSWORD: &str = "correct horse battery staple";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A browser: follows nothing by itself, keeps cookies (reqwest's cookie store).
struct Browser {
    http: reqwest::Client,
    base: String,
    /// The last page's body: its forms carry the CSRF token a real browser would send.
    last: Mutex<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new(a: &As) -> Self {
        let ca = std::fs::read(a.server.web_ca_file.as_ref().unwrap()).unwrap();
        Self {
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            base: a.issuer.clone(),
            last: Mutex::new(String::new()),
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let resp = req.send().await.unwrap();
        let page = Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            body: resp.text().await.unwrap(),
        };
        if page.body.contains("name=\"csrf\"") {
            *self.last.lock().unwrap() = page.body.clone();
        }
        page
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(self.url(path)).form(form)).await
    }

    /// The CSRF token in the last page's forms.
    fn csrf(&self) -> String {
        let last = self.last.lock().unwrap();
        last.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }

    /// Approves or denies a request on the approvals page.
    async fn decide(&self, approval: &str, decision: &str) -> Page {
        let csrf = self.csrf();
        self.post(
            "/approvals/decide",
            &[("id", approval), ("decision", decision), ("csrf", &csrf)],
        )
        .await
    }

    /// Signs in with the password, through the sign-in page.
    async fn sign_in(&self, user: &str, return_to: &str) -> Page {
        let page = self
            .get(&format!("/login?return_to={}", urlencode(return_to)))
            .await;
        assert_eq!(page.status, 200);
        let csrf = self.csrf();
        self.post(
            "/login/password",
            &[
                ("username", user),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("return_to", return_to),
            ],
        )
        .await
    }
}

/// The id of the first request on an approvals page.
fn first_approval(page: &Page) -> String {
    page.body
        .split("id=\"approval-")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn claims(token: &str) -> Value {
    CompactJws::parse(token).unwrap().claims().unwrap()
}

fn challenge(verifier: &str) -> String {
    sha256_b64url(verifier.as_bytes())
}

struct Fixture {
    a: As,
    alice: String,
}

impl Fixture {
    async fn start(tweak: impl FnOnce(&mut aims_server::ServerSettings)) -> Self {
        let a = start_as("example.org", tweak).await;
        let people = a.server.authorization_server.people().unwrap().clone();
        let password = people
            .settings
            .password_sign_in
            .then(|| PASSWORD.to_owned());
        let alice = people
            .create_user(NewUser {
                username: "alice".into(),
                display_name: Some("Alice Example".into()),
                is_admin: false,
                password: password.clone(),
            })
            .await
            .unwrap()
            .user
            .user_id;
        people
            .create_user(NewUser {
                username: "bob".into(),
                display_name: None,
                is_admin: false,
                password: password.clone(),
            })
            .await
            .unwrap();
        a.server
            .authorization_server
            .register_client(
                serde_json::from_value(json!({
                    "token_endpoint_auth_method": "spiffe_jwt",
                    "spiffe_id": AGENT,
                    "client_name": "Agent A",
                    "redirect_uris": [REDIRECT],
                }))
                .unwrap(),
                Some("agent-a".into()),
                ClientSource::Admin,
            )
            .await
            .unwrap();
        Self { a, alice }
    }

    /// Registers a public client (RFC 7591 `none`: an MCP client) by the operator.
    async fn register_public(&self, client_id: &str, name: &str, redirect: &str) {
        self.a
            .server
            .authorization_server
            .register_client(
                serde_json::from_value(json!({
                    "token_endpoint_auth_method": "none",
                    "client_name": name,
                    "redirect_uris": [redirect],
                }))
                .unwrap(),
                Some(client_id.into()),
                ClientSource::Admin,
            )
            .await
            .unwrap();
    }

    async fn assertion(&self, spiffe_id: &str) -> String {
        self.a
            .server
            .issuer
            .mint_jwt_svid(
                &SpiffeId::parse(spiffe_id).unwrap(),
                std::slice::from_ref(&self.a.issuer),
                None,
            )
            .await
            .unwrap()
            .token
    }

    /// A client request authenticated with the agent's JWT-SVID.
    async fn client_post(
        &self,
        path: &str,
        client_id: Option<&str>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let a = self.assertion(AGENT).await;
        let mut f: Vec<(&str, &str)> = form.to_vec();
        f.push(("client_assertion_type", JWT_SPIFFE_ASSERTION));
        f.push(("client_assertion", &a));
        if let Some(id) = client_id {
            f.push(("client_id", id));
        }
        let resp = self
            .a
            .http
            .post(format!("{}{path}", self.a.issuer))
            .form(&f)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn redeem(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Alice approves the request at `authorize_url` in `browser`; returns the redirect's query.
    async fn approve(
        &self,
        browser: &Browser,
        authorize_url: &str,
        remember: bool,
    ) -> HashMap<String, String> {
        let location = self
            .approve_showing(browser, authorize_url, remember, &["Agent A", AGENT])
            .await;
        assert!(location.starts_with(REDIRECT), "{location}");
        query_of(&location)
    }

    /// As [`Fixture::approve`], for a client the consent page names by `shows`; returns where
    /// the browser is sent back to.
    async fn approve_showing(
        &self,
        browser: &Browser,
        authorize_url: &str,
        remember: bool,
        shows: &[&str],
    ) -> String {
        let first = browser.get(authorize_url).await;
        assert_eq!(first.status, 303, "{}", first.body);
        let pending = first.location.unwrap();
        assert!(pending.starts_with("/oauth2/authorize/continue?id="));
        let mut consent = browser.get(&pending).await;
        if consent.status == 303 && consent.location.as_deref().unwrap().starts_with("/login") {
            let signed = browser.sign_in("alice", &pending).await;
            assert_eq!(signed.status, 303, "{}", signed.body);
            assert_eq!(signed.location.as_deref(), Some(pending.as_str()));
            consent = browser.get(&pending).await;
        }
        if consent.status == 303 {
            // Remembered consent: straight back to the client.
            return consent.location.unwrap();
        }
        assert_eq!(consent.status, 200, "{}", consent.body);
        for name in shows {
            assert!(consent.body.contains(name), "the consent page names {name}");
        }
        assert!(consent.body.contains("Alice Example"), "and the user");
        assert!(consent.body.contains(RESOURCE), "and the resource");
        let id = pending.split("id=").nth(1).unwrap().to_owned();
        let csrf = browser.csrf();
        let mut form = vec![
            ("id", id.as_str()),
            ("decision", "approve"),
            ("csrf", csrf.as_str()),
        ];
        if remember {
            form.push(("remember", "on"));
        }
        let done = browser.post("/oauth2/authorize/decide", &form).await;
        assert_eq!(done.status, 303, "{}", done.body);
        let location = done.location.unwrap();
        assert!(!location.starts_with('/'), "back to the client: {location}");
        location
    }
}

fn authorize_url(extra: &[(&str, &str)]) -> String {
    authorize_url_for("agent-a", extra)
}

fn authorize_url_for(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("client_id", client_id),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid offline_access tickets:read"),
        ("resource", RESOURCE),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge_method", "S256"),
    ] {
        q.append_pair(k, v);
    }
    let challenge = challenge(VERIFIER);
    q.append_pair("code_challenge", &challenge);
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("/oauth2/authorize?{}", q.finish())
}

/// MCP 2026-07-28 clients are public (RFC 7591 `none`, OAuth 2.1 §2.1): one redeems a code it
/// obtained with PKCE by its `client_id` alone and refreshes with rotation; it can do nothing
/// on its own authority (client credentials, token exchange, introspection, CIBA), a wrong
/// verifier loses the code, and a confidential client is never taken for a public one.
#[tokio::test]
async fn a_public_client_redeems_its_code_with_pkce_alone() {
    let f = Fixture::start(|_| {}).await;
    let server = &f.a.server.authorization_server;
    let meta = f.a.metadata().await;
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none")),
        "{meta}"
    );
    assert!(
        !meta["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    // Registration: a public client needs somewhere to send codes, and only the code grants.
    for (bad, why) in [
        (
            json!({"token_endpoint_auth_method": "none"}),
            "redirect_uris",
        ),
        (
            json!({"token_endpoint_auth_method": "none", "redirect_uris": [REDIRECT],
                   "grant_types": ["authorization_code", "client_credentials"]}),
            "client_credentials",
        ),
    ] {
        let e = server
            .register_client(
                serde_json::from_value(bad).unwrap(),
                Some("bad".into()),
                ClientSource::Admin,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    f.register_public("mcp-app", "MCP App", REDIRECT).await;
    let browser = Browser::new(&f.a);
    let url = authorize_url_for("mcp-app", &[]);
    let q = query_of(&f.approve_showing(&browser, &url, true, &["MCP App"]).await);
    assert_eq!(q["iss"], f.a.issuer);
    let redeem = |code: String, verifier: String| {
        let a = &f.a;
        async move {
            a.post(
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", "mcp-app"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    let (s, tokens, _) = redeem(q["code"].clone(), VERIFIER.to_owned()).await;
    assert_eq!(s, 200, "{tokens}");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        (at["sub"].as_str(), at["client_id"].as_str()),
        (Some(f.alice.as_str()), Some("mcp-app"))
    );
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (s, v, _) =
        f.a.post(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "mcp-app"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(
        v["refresh_token"].as_str(),
        Some(refresh.as_str()),
        "rotated"
    );
    // Remembered consent: a second code at once; redeemed with the wrong verifier, it is lost.
    let q = query_of(&f.approve_showing(&browser, &url, false, &["MCP App"]).await);
    let (s, v, _) = redeem(q["code"].clone(), "x".repeat(43)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v, _) = redeem(q["code"].clone(), VERIFIER.to_owned()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Nothing on its own authority.
    let (s, v, _) =
        f.a.post(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "mcp-app"),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{v}"
    );
    let access = tokens["access_token"].as_str().unwrap();
    for (path, form) in [
        (
            "/oauth2/introspect",
            vec![("token", access), ("client_id", "mcp-app")],
        ),
        (
            "/oauth2/bc-authorize",
            vec![
                ("login_hint", "alice"),
                ("scope", "tickets:read"),
                ("client_id", "mcp-app"),
            ],
        ),
    ] {
        let (s, v, _) = f.a.post(path, &form).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (401, Some("invalid_client")),
            "{path}: {v}"
        );
    }
    // A confidential client naming itself without its credential is refused as before.
    let (s, v, _) =
        f.a.post(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "agent-a"),
                ("code", "whatever"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("client authentication is required"),
        "{v}"
    );
}

/// AIMS AZ-10…AZ-13, SE-2: PAR, sign-in, consent, the code redeemed with the agent's SVID and
/// PKCE; the token carries the user's authority and the agent as actor; refresh tokens rotate
/// and a replayed one revokes the family.
#[tokio::test]
async fn a_user_delegates_to_an_agent_with_pkce_and_par() {
    let f = Fixture::start(|_| {}).await;
    let meta: Value =
        f.a.http
            .get(format!("{}/.well-known/openid-configuration", f.a.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert!(meta["pushed_authorization_request_endpoint"].is_string());
    assert!(meta["backchannel_authentication_endpoint"].is_string());

    // RFC 9126: push the request, then send only client_id and request_uri.
    let challenge = challenge(VERIFIER);
    let (s, par) = f
        .client_post(
            "/oauth2/par",
            Some("agent-a"),
            &[
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid offline_access tickets:read"),
                ("resource", RESOURCE),
                ("state", "st-par"),
                ("nonce", "n-par"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(s, 201, "{par}");
    let request_uri = par["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let url = format!(
        "/oauth2/authorize?client_id=agent-a&request_uri={}",
        urlencode(&request_uri)
    );
    let browser = Browser::new(&f.a);
    let q = f.approve(&browser, &url, false).await;
    assert_eq!(q["state"], "st-par");
    assert_eq!(q["iss"], f.a.issuer, "RFC 9207 iss");
    // The request_uri was single use.
    let again = browser.get(&url).await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("invalid_request_uri"));

    // Issue 16: a thief holding the code and some other client's credentials neither redeems
    // nor burns it (which would revoke what the code issues).
    let thief = f.assertion("spiffe://example.org/agent/thief").await;
    let (s, v, _) =
        f.a.post(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &thief),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, tokens) = f.redeem(&q["code"], VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], f.alice, "AZ-13: the user's delegated authority");
    assert_eq!(at["client_id"], "agent-a");
    assert_eq!(at["act"]["sub"], "agent-a", "the agent acts for her");
    assert_eq!(at["aud"], RESOURCE);
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], f.alice);
    assert_eq!(id["aud"], "agent-a");
    assert_eq!(id["nonce"], "n-par");
    assert_eq!(id["amr"], json!(["pwd"]));

    // Refresh rotation; the old refresh token presented again revokes the family.
    let r1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (s, rotated) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    let r2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    // Issue 16: the rotated refresh token is spent, so introspection calls it inactive.
    for (t, active) in [(&r1, false), (&r2, true)] {
        let (s, v) = f
            .client_post("/oauth2/introspect", Some("agent-a"), &[("token", t)])
            .await;
        assert_eq!((s, v["active"].as_bool()), (200, Some(active)), "{v}");
    }
    assert_eq!(
        claims(rotated["access_token"].as_str().unwrap())["sub"],
        f.alice
    );
    let (s, reuse) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await;
    assert_eq!((s, reuse["error"].as_str()), (400, Some("invalid_grant")));
    let (s, after) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
        )
        .await;
    assert_eq!(
        (s, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family is revoked"
    );

    // Remembered consent: the next request needs no consent page; withdrawn, it does again.
    let q = f.approve(&browser, &authorize_url(&[]), true).await;
    assert!(q.contains_key("code"));
    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    assert!(q.contains_key("code"), "remembered");
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("agent-a"),
        "the account page lists the consent"
    );
    let csrf = browser.csrf();
    let w = browser
        .post(
            "/account/consents/withdraw",
            &[("client_id", "agent-a"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(w.status, 303);
    let pending = browser.get(&authorize_url(&[])).await.location.unwrap();
    assert_eq!(
        browser.get(&pending).await.status,
        200,
        "consent is asked again"
    );
}

/// RFC 7636 §4.6, RFC 9700 §2.1 and §4.5, RFC 6749 §4.1.2: PKCE verifier wrong or missing, a
/// redirect URI that is not exact, plain PKCE, a reused code (which revokes what it issued),
/// PAR required.
/// Issue 16: a client that registered itself (RFC 7591, or a metadata document) names itself;
/// the consent page shows its client_id, marks its name and SPIFFE ID as unverified, and never
/// presents them as vouched for.
#[tokio::test]
async fn the_consent_page_does_not_vouch_for_a_self_registered_client() {
    let f = Fixture::start(|_| {}).await;
    f.a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "spiffe_jwt",
                "spiffe_id": "spiffe://example.org/agent/payroll",
                "client_name": "Payroll (official)",
                "redirect_uris": [REDIRECT],
            }))
            .unwrap(),
            Some("self-made".into()),
            ClientSource::Dynamic,
        )
        .await
        .unwrap();
    let browser = Browser::new(&f.a);
    let url = authorize_url(&[]).replace("client_id=agent-a", "client_id=self-made");
    let first = browser.get(&url).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let pending = first.location.unwrap();
    assert_eq!(browser.sign_in("alice", &pending).await.status, 303);
    let consent = browser.get(&pending).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(
        consent
            .body
            .contains("<strong id=\"consent-agent\">self-made</strong>"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("id=\"consent-unverified\""));
    assert!(consent.body.contains("Workload identity (claimed)"));
    // An operator-registered client is shown by its name, unmarked.
    let first = browser.get(&authorize_url(&[])).await;
    let ours = browser.get(&first.location.unwrap()).await;
    assert!(
        ours.body
            .contains("<strong id=\"consent-agent\">Agent A</strong>")
    );
    assert!(!ours.body.contains("consent-unverified"));
}

#[tokio::test]
async fn wrong_pkce_inexact_redirects_and_reused_codes_are_refused() {
    let f = Fixture::start(|_| {}).await;
    let browser = Browser::new(&f.a);

    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    let (s, e) = f.redeem(&q["code"], &"x".repeat(43)).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    // The failed attempt spent the code.
    let (s, _) = f.redeem(&q["code"], VERIFIER).await;
    assert_eq!(s, 400);

    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    let (s, e) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "missing verifier: {e}"
    );

    // Not the registered URI, not even a path or case variant: our own error page, no redirect.
    for bad in [
        "https://app.example/cb/",
        "https://app.example/cb?x=1",
        "https://evil.example/cb",
    ] {
        let url = authorize_url(&[]).replace(&urlencode(REDIRECT), &urlencode(bad));
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none(), "never redirects to {bad}");
    }
    // Plain PKCE (or none) is refused at the client's redirect URI.
    let url =
        authorize_url(&[]).replace("code_challenge_method=S256", "code_challenge_method=plain");
    let page = browser.get(&url).await;
    let q = query_of(page.location.as_deref().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st-1");

    // A code used twice: the second use fails and revokes what the first issued.
    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    let (s, tokens) = f.redeem(&q["code"], VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let f = &f;
    let introspect = |token: String| async move {
        f.client_post("/oauth2/introspect", Some("agent-a"), &[("token", &token)])
            .await
            .1
    };
    assert_eq!(introspect(access.clone()).await["active"], true);
    let (s, e) = f.redeem(&q["code"], VERIFIER).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        introspect(access).await["active"],
        false,
        "revoked by the reuse"
    );
    let (s, _) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(s, 400, "its refresh token too");

    // A client that must push its requests.
    f.a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "spiffe_jwt",
                "spiffe_id": AGENT,
                "redirect_uris": [REDIRECT],
                "require_pushed_authorization_requests": true,
            }))
            .unwrap(),
            Some("agent-a".into()),
            ClientSource::Admin,
        )
        .await
        .unwrap();
    let page = browser.get(&authorize_url(&[])).await;
    let q = query_of(page.location.as_deref().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PAR"));
}

/// Every form needs its CSRF token; a post from another origin is refused even with it.
#[tokio::test]
async fn forms_without_a_csrf_token_or_from_another_origin_are_refused() {
    let f = Fixture::start(|_| {}).await;
    let browser = Browser::new(&f.a);
    browser.get("/login").await;
    let no_token = browser
        .post(
            "/login/password",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(no_token.status, 403);
    let wrong = browser
        .post(
            "/login/password",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let csrf = browser.csrf();
    let foreign = browser
        .send(
            browser
                .http
                .post(browser.url("/login/password"))
                .header("origin", "https://evil.example")
                .form(&[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("csrf", csrf.as_str()),
                ]),
        )
        .await;
    assert_eq!(foreign.status, 403);
    // A wrong password is a plain refusal.
    let bad = browser
        .post(
            "/login/password",
            &[
                ("username", "alice"),
                ("password", "wrong password!!"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(bad.status, 401);

    // Signed in, the consent form still needs the token.
    let pending = browser.get(&authorize_url(&[])).await.location.unwrap();
    browser.sign_in("alice", &pending).await;
    let id = pending.split("id=").nth(1).unwrap().to_owned();
    let forged = browser
        .post(
            "/oauth2/authorize/decide",
            &[("id", &id), ("decision", "approve")],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged.location.is_none(), "no code leaves");
    let csrf = browser.csrf();
    let signed_out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(browser.get("/account").await.status, 303, "signed out");
}

async fn backchannel(f: &Fixture, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("scope", "openid payments"),
        ("login_hint", "alice"),
        ("binding_message", "W4SCT"),
        ("resource", "https://bank.example/pay"),
        (
            "authorization_details",
            r#"[{"type":"payment_initiation","actions":["initiate"],"locations":["https://bank.example/pay"],"instructedAmount":{"currency":"EUR","amount":"123.50"}}]"#,
        ),
    ];
    // `extra` replaces a default of the same name.
    form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    form.extend_from_slice(extra);
    f.client_post("/oauth2/bc-authorize", None, &form).await
}

async fn poll(f: &Fixture, auth_req_id: &str) -> (u16, Value) {
    f.client_post(
        "/oauth2/token",
        None,
        &[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)],
    )
    .await
}

/// AIMS AZ-29, AZ-30: an agent (no registration: its SPIFFE ID is its client_id) asks Alice's
/// approval; polling too fast slows it down; Bob cannot decide for her; once she approves, the
/// token carries the approved details and the approval reference the audit log records.
#[tokio::test]
async fn ciba_poll_approval_binds_the_token_to_the_recorded_decision() {
    let f = Fixture::start(|_| {}).await;
    let (s, bc) = backchannel(&f, &[]).await;
    assert_eq!(s, 200, "{bc}");
    assert_eq!(bc["interval"], 5);
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();

    let (s, e) = poll(&f, &id).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (s, e) = poll(&f, &id).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("slow_down")),
        "polled again at once"
    );
    f.a.clock.advance(Duration::from_secs(11));

    // Bob sees nothing and cannot approve it.
    let bob = Browser::new(&f.a);
    bob.sign_in("bob", "/approvals").await;
    let page = bob.get("/approvals").await;
    assert!(page.body.contains("no-approvals"), "{}", page.body);
    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    let page = alice.get("/approvals").await;
    assert!(page.body.contains("W4SCT"), "the binding message is shown");
    assert!(page.body.contains("123.50"), "the details in plain words");
    let approval = first_approval(&page);
    let stolen = bob.decide(&approval, "approve").await;
    assert_eq!(stolen.status, 404);
    let (s, e) = poll(&f, &id).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("authorization_pending")),
        "still pending"
    );

    let ok = alice.decide(&approval, "approve").await;
    assert_eq!(ok.status, 303);
    f.a.clock.advance(Duration::from_secs(11));
    let (s, tokens) = poll(&f, &id).await;
    assert_eq!(s, 200, "{tokens}");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], f.alice);
    assert_eq!(at["client_id"], AGENT);
    assert_eq!(
        at["approval"],
        approval.as_str(),
        "AZ-30: bound to the approval"
    );
    assert_eq!(
        at["authorization_details"][0]["instructedAmount"]["amount"],
        "123.50"
    );
    let idt = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(idt["urn:openid:params:jwt:claim:auth_req_id"], id.as_str());
    let (s, e) = poll(&f, &id).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "a token once"
    );

    // The audit log has her decision under the reference the token carries.
    f.a.server.audit.append(&[]).await.unwrap();
    let rows = aims_audit::read_entries(f.a.server.issuer.store(), 0, 1000)
        .await
        .unwrap();
    let decision = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.record).unwrap())
        .find(|r| r["action"] == "approve")
        .expect("the approval is recorded");
    assert_eq!(decision["approval"], approval.as_str());
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["delegated_subject"], f.alice);
    assert_eq!(decision["agent"], AGENT);
}

/// CIBA Core §11: a denied request answers access_denied, an expired one expired_token; an
/// unknown user, two hints, a long binding message or no openid scope are refused up front.
#[tokio::test]
async fn ciba_denial_expiry_and_bad_requests() {
    let f = Fixture::start(|_| {}).await;
    let (_, bc) = backchannel(&f, &[]).await;
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();
    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    let page = alice.get("/approvals").await;
    let approval = first_approval(&page);
    alice.decide(&approval, "deny").await;
    let (s, e) = poll(&f, &id).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("access_denied")));
    let rows = aims_audit::read_entries(f.a.server.issuer.store(), 0, 1000)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.record.contains("\"approve\"") && r.record.contains("\"deny\""))
    );

    let (_, bc) = backchannel(&f, &[("requested_expiry", "60")]).await;
    assert_eq!(bc["expires_in"], 60);
    f.a.clock.advance(Duration::from_secs(61));
    let (s, e) = poll(&f, bc["auth_req_id"].as_str().unwrap()).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("expired_token")));

    for (extra, code) in [
        (vec![("login_hint", "nobody")], "unknown_user_id"),
        (vec![("id_token_hint", "x.y.z")], "invalid_request"),
        (
            vec![(
                "binding_message",
                "a message far too long to show in a notification on a phone screen",
            )],
            "invalid_binding_message",
        ),
        (vec![("requested_expiry", "999999")], "invalid_request"),
    ] {
        let mut form: Vec<(&str, &str)> = vec![("scope", "openid"), ("resource", RESOURCE)];
        if !extra.iter().any(|(k, _)| *k == "login_hint") {
            form.push(("login_hint", "alice"));
        }
        form.extend(extra.iter().copied());
        let (s, e) = f.client_post("/oauth2/bc-authorize", None, &form).await;
        assert_eq!((s, e["error"].as_str()), (400, Some(code)), "{form:?}");
    }
    let (s, e) = f
        .client_post(
            "/oauth2/bc-authorize",
            None,
            &[
                ("scope", "payments"),
                ("login_hint", "alice"),
                ("resource", RESOURCE),
            ],
        )
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")));
    let (s, e) = poll(&f, "made-up").await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
}

/// AIMS AZ-27, AZ-28: policy says payments need a person's approval. A direct grant is refused
/// with `interaction_required`; the same access approved through CIBA is issued.
#[tokio::test]
async fn policy_decides_when_a_persons_approval_is_needed() {
    let f = Fixture::start(|_| {}).await;
    let policy = format!(
        "{}\n@id(\"payments-need-approval\")\nforbid (principal, action == Aims::Action::\"obtain_token\", resource)\nwhen {{ resource.uri == \"https://bank.example/pay\" }}\nunless {{ context has approval }};\n",
        aims_policy::DEFAULT_POLICY
    );
    f.a.server
        .policy
        .apply(&policy, None, "test", false)
        .await
        .unwrap();
    let a = f.assertion(AGENT).await;
    let direct =
        f.a.http
            .post(format!("{}/oauth2/token", f.a.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &a),
                ("resource", "https://bank.example/pay"),
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(direct.status(), 400);
    let e: Value = direct.json().await.unwrap();
    assert_eq!(e["error"], "interaction_required", "{e}");
    assert!(e["error_description"].as_str().unwrap().contains("CIBA"));
    // Another resource needs no approval.
    let (s, _) = f
        .client_post(
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(s, 200);

    let (_, bc) = backchannel(&f, &[]).await;
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();
    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    let page = alice.get("/approvals").await;
    let approval = first_approval(&page);
    alice.decide(&approval, "approve").await;
    let (s, tokens) = poll(&f, &id).await;
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["aud"],
        "https://bank.example/pay"
    );
}

/// The client application of the browser tests: its loopback redirect URI (RFC 8252 §7.3)
/// receives the authorization response.
async fn client_app() -> (String, tokio::sync::mpsc::Receiver<HashMap<String, String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(q).await;
                    "You can close this window."
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Creates a user without a password and registers a passkey for them through the enrolment
/// link, in the browser with its virtual authenticator; ends signed in on the account page.
async fn enrol_with_passkey(a: &As, browser: &webdriver::Browser, username: &str) -> String {
    let people = a.server.authorization_server.people().unwrap().clone();
    assert!(people.passkeys_enabled());
    let created = people
        .create_user(NewUser {
            username: username.into(),
            display_name: Some(format!("{username} (browser)")),
            is_admin: false,
            password: None,
        })
        .await
        .unwrap();
    let authenticator = browser.add_virtual_authenticator().await;
    browser.goto(&created.enrolment_url).await;
    browser.click("#register-passkey").await;
    browser
        .wait_for_url("the account page", |u| u.ends_with("/account"))
        .await;
    assert!(
        browser
            .text("#passkey-count")
            .await
            .starts_with("1 passkey")
    );
    let creds = browser.credentials(&authenticator).await;
    assert_eq!(creds.len(), 1, "the authenticator holds the passkey");
    assert_eq!(creds[0]["rpId"], "localhost");
    // The enrolment link was single use.
    browser.goto(&created.enrolment_url).await;
    assert!(
        browser
            .source()
            .await
            .contains("expired or was already used")
    );
    browser.goto(&format!("{}/account", a.issuer)).await;
    created.user.user_id
}

/// Signs out, then in again as `username` with the passkey; ends on the account page.
async fn sign_in_with_passkey(browser: &webdriver::Browser, username: &str) {
    browser.click("#sign-out").await;
    browser
        .wait_for_url("the sign-in page", |u| u.contains("/login"))
        .await;
    browser.fill("#username", username).await;
    browser.click("#passkey-sign-in").await;
    browser
        .wait_for_url("the account page", |u| u.ends_with("/account"))
        .await;
}

fn localhost(s: &mut aims_server::ServerSettings) {
    s.public_host = "localhost".into();
}

/// AIMS AZ-11, AZ-10: in a real Chromium, a user registers a passkey from her enrolment link,
/// signs out and in again with it (no password exists), and consents on the consent page to
/// an agent that then redeems the code with its SVID.
#[tokio::test]
async fn passkeys_and_consent_in_a_real_browser() {
    let f = Fixture::start(localhost).await;
    let (redirect, mut responses) = client_app().await;
    f.a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "spiffe_jwt",
                "spiffe_id": AGENT,
                "client_name": "Agent A",
                "redirect_uris": [redirect],
            }))
            .unwrap(),
            Some("agent-a".into()),
            ClientSource::Admin,
        )
        .await
        .unwrap();
    let browser = webdriver::Browser::start().await;
    let carol = enrol_with_passkey(&f.a, &browser, "carol").await;

    sign_in_with_passkey(&browser, "carol").await;
    assert!(browser.source().await.contains("with a passkey"));

    // A user with no passkey cannot sign in with one.
    browser.click("#sign-out").await;
    browser
        .wait_for_url("the sign-in page", |u| u.contains("/login"))
        .await;
    browser.fill("#username", "alice").await;
    browser.click("#passkey-sign-in").await;
    let started = std::time::Instant::now();
    while browser.text("#error").await.is_empty() && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(browser.text("#error").await, "sign-in failed");
    browser.fill("#username", "carol").await;
    browser.click("#passkey-sign-in").await;
    browser
        .wait_for_url("the account page", |u| u.ends_with("/account"))
        .await;

    let url = format!("{}{}", f.a.issuer, authorize_url(&[]))
        .replace(&urlencode(REDIRECT), &urlencode(&redirect));
    browser.goto(&url).await;
    assert_eq!(browser.text("#consent-agent").await, "Agent A");
    assert!(browser.text("#consent-client").await.contains("agent-a"));
    assert!(
        browser.source().await.contains(AGENT),
        "the agent's SPIFFE ID is shown"
    );
    browser.click("#approve").await;
    let q = tokio::time::timeout(Duration::from_secs(20), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q["iss"], f.a.issuer);
    assert_eq!(q["state"], "st-1");
    let (s, tokens) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", &redirect),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["sub"],
        carol
    );
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["amr"],
        json!(["hwk"]),
        "signed in with a passkey"
    );

    // Denying in the browser sends access_denied to the client.
    browser.goto(&url).await;
    browser.click("#deny").await;
    let q = tokio::time::timeout(Duration::from_secs(20), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q["error"], "access_denied");
    browser.close().await;
}

/// AIMS AZ-29, AZ-30: in a real Chromium, the user sees the agent's request on the approvals
/// page with its binding message, approves one (the agent's poll then gets its token) and
/// denies another (access_denied).
#[tokio::test]
async fn ciba_approval_and_denial_in_a_real_browser() {
    let f = Fixture::start(localhost).await;
    let browser = webdriver::Browser::start().await;
    let dave = enrol_with_passkey(&f.a, &browser, "dave").await;

    let (s, bc) = backchannel(&f, &[("login_hint", "dave")]).await;
    assert_eq!(s, 200, "{bc}");
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();
    browser.goto(&format!("{}/approvals", f.a.issuer)).await;
    let page = browser.source().await;
    assert!(page.contains("W4SCT"), "the binding message");
    assert!(page.contains("payment_initiation: initiate at https://bank.example/pay"));
    browser.click(".approval .approve").await;
    browser.text("#no-approvals").await;
    f.a.clock.advance(Duration::from_secs(6));
    let (s, tokens) = poll(&f, &id).await;
    assert_eq!(s, 200, "{tokens}");
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], dave);
    assert!(at["approval"].is_string());

    let (_, bc) = backchannel(&f, &[("login_hint", "dave"), ("binding_message", "NO-GO")]).await;
    browser.goto(&format!("{}/approvals", f.a.issuer)).await;
    assert!(browser.source().await.contains("NO-GO"));
    browser.click(".approval .deny").await;
    browser.text("#no-approvals").await;
    let (s, e) = poll(&f, bc["auth_req_id"].as_str().unwrap()).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("access_denied")));
    browser.close().await;
}

/// The openid-client driver (interop/openid-client), run with node.
struct Rp {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Rp {
    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/openid-client")
    }

    fn spawn(mode: &str, env: &[(&str, String)]) -> Self {
        assert!(
            Self::dir().join("node_modules/openid-client").exists(),
            "interop/openid-client has no node_modules: run `npm ci` there (scripts/test does)"
        );
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg("interop.mjs")
            .arg(mode)
            .current_dir(Self::dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node runs");
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)),
        }
    }

    /// The next event the driver prints; its errors fail the test with the library's words.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .expect("the driver answers")
                .unwrap()
                .expect("the driver printed nothing more");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(v["event"], "error", "openid-client: {v}");
            if v["event"] == name {
                return v;
            }
        }
    }

    async fn send(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }
}

/// Interop (AIMS AZ-10, AZ-29, SE-2): openid-client, an OpenID Certified relying-party library
/// we did not write, discovers the server, authenticates with private_key_jwt, completes PAR +
/// PKCE + the authorization code grant (checking `iss`, `state`, the ID token's signature and
/// nonce), and a CIBA poll flow.
#[tokio::test]
async fn openid_client_completes_par_pkce_and_ciba_against_us() {
    let f = Fixture::start(|s| {
        // The library waits real seconds between polls.
        s.clock = aims_core::SystemClock::shared();
        s.oauth.ciba_interval = Duration::from_secs(1);
    })
    .await;
    let mut keygen = Rp::spawn("keygen", &[]);
    let jwk = keygen.event("jwk").await;
    f.a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk["public"]]},
                "client_name": "Agent A",
                "spiffe_id": AGENT,
                "redirect_uris": [REDIRECT],
                "require_pushed_authorization_requests": true,
            }))
            .unwrap(),
            Some("interop-rp".into()),
            ClientSource::Admin,
        )
        .await
        .unwrap();
    let env = |extra: &[(&'static str, &str)]| {
        let mut e = vec![
            ("OIDC_ISSUER", f.a.issuer.clone()),
            ("OIDC_CLIENT_ID", "interop-rp".to_owned()),
            ("OIDC_CLIENT_JWK", jwk["private"].to_string()),
            ("OIDC_REDIRECT_URI", REDIRECT.to_owned()),
            ("OIDC_RESOURCE", RESOURCE.to_owned()),
            (
                "NODE_EXTRA_CA_CERTS",
                f.a.server
                    .web_ca_file
                    .as_ref()
                    .unwrap()
                    .display()
                    .to_string(),
            ),
        ];
        e.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        e
    };

    let mut rp = Rp::spawn("code", &env(&[("OIDC_SCOPE", "openid tickets:read")]));
    assert_eq!(rp.event("discovered").await["issuer"], f.a.issuer);
    let url = rp.event("authorization_url").await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.contains("request_uri=urn"), "pushed: {url}");
    let browser = Browser::new(&f.a);
    let q = f.approve(&browser, &url, false).await;
    let mut back = url::Url::parse(REDIRECT).unwrap();
    back.query_pairs_mut().extend_pairs(q.iter());
    rp.send(back.as_str()).await;
    let tokens = rp.event("tokens").await;
    assert_eq!(tokens["id_token_claims"]["sub"], f.alice);
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        (at["sub"].as_str(), at["client_id"].as_str()),
        (Some(f.alice.as_str()), Some("interop-rp"))
    );

    let mut rp = Rp::spawn(
        "ciba",
        &env(&[
            ("CIBA_LOGIN_HINT", "alice"),
            ("CIBA_BINDING_MESSAGE", "RP-42"),
        ]),
    );
    rp.event("auth_req_id").await;
    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    let page = alice.get("/approvals").await;
    assert!(page.body.contains("RP-42"));
    assert_eq!(
        alice.decide(&first_approval(&page), "approve").await.status,
        303
    );
    let tokens = rp.event("tokens").await;
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], f.alice);
    assert!(at["approval"].is_string());
}

/// What the test's notification receiver got: path, Authorization header, JSON body.
type Received = (String, Option<String>, Value);

async fn next_received(rx: &mut tokio::sync::mpsc::Receiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

/// AIMS AZ-29: the user is told through the webhook notifier; in CIBA ping mode (CIBA Core
/// §10.2) the client is pinged with its bearer notification token once the user decides, and
/// then collects its token.
#[tokio::test]
async fn webhook_notices_and_ciba_ping_mode() {
    let site_dir = tempfile::tempdir().unwrap();
    let (tx, mut received) = tokio::sync::mpsc::channel::<Received>(8);
    let (base, ca_file, _site) = common::https_site(site_dir.path(), move |_| {
        axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |axum::extract::Path(path): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      axum::Json(body): axum::Json<Value>| {
                    let tx = tx.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let _ = tx.send((path, auth, body)).await;
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        )
    })
    .await;
    let webhook = format!("{base}/notify");
    let f = Fixture::start(|s| {
        s.oauth.approval_webhook = Some(webhook);
        s.oauth.fetch.ca_file = Some(ca_file);
        s.oauth.fetch.allow_private_networks = true;
    })
    .await;
    f.a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "spiffe_jwt",
                "spiffe_id": AGENT,
                "backchannel_token_delivery_mode": "ping",
                "backchannel_client_notification_endpoint": format!("{base}/ping"),
            }))
            .unwrap(),
            Some("pinged".into()),
            ClientSource::Admin,
        )
        .await
        .unwrap();
    let bc_form = [
        ("scope", "openid"),
        ("login_hint", "alice"),
        ("binding_message", "PING-1"),
        ("resource", RESOURCE),
    ];
    let (s, e) = f
        .client_post("/oauth2/bc-authorize", Some("pinged"), &bc_form)
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_request")),
        "ping mode needs a notification token"
    );
    let mut form = bc_form.to_vec();
    form.push(("client_notification_token", "notify-me-8d1f"));
    let (s, bc) = f
        .client_post("/oauth2/bc-authorize", Some("pinged"), &form)
        .await;
    assert_eq!(s, 200, "{bc}");
    let id = bc["auth_req_id"].as_str().unwrap().to_owned();

    let (path, auth, notice) = next_received(&mut received).await;
    assert_eq!((path.as_str(), auth), ("notify", None));
    assert_eq!(notice["user"], "alice");
    assert_eq!(notice["binding_message"], "PING-1");
    assert_eq!(notice["client_id"], "pinged");
    assert!(
        notice["approvals_url"]
            .as_str()
            .unwrap()
            .ends_with("/approvals")
    );

    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    let page = alice.get("/approvals").await;
    assert_eq!(
        first_approval(&page),
        notice["approval_id"].as_str().unwrap()
    );
    alice.decide(&first_approval(&page), "approve").await;
    let (path, auth, ping) = next_received(&mut received).await;
    assert_eq!(path, "ping");
    assert_eq!(auth.as_deref(), Some("Bearer notify-me-8d1f"));
    assert_eq!(ping, json!({"auth_req_id": id}));
    let (s, tokens) = f
        .client_post(
            "/oauth2/token",
            Some("pinged"),
            &[("grant_type", CIBA_GRANT), ("auth_req_id", &id)],
        )
        .await;
    assert_eq!(s, 200, "{tokens}");
}

/// An operator can turn the password fallback off (AIMS AZ-11: phishing-resistant sign-in
/// only): password sign-in and new passwords are refused, passkeys stay. And a CIBA request may
/// name its user by an ID token this server issued (`id_token_hint`).
#[tokio::test]
async fn passwords_can_be_turned_off_and_id_token_hints_name_the_user() {
    let f = Fixture::start(|_| {}).await;
    let browser = Browser::new(&f.a);
    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    let (_, tokens) = f.redeem(&q["code"], VERIFIER).await;
    let hint = tokens["id_token"].as_str().unwrap().to_owned();
    let (s, bc) = backchannel(&f, &[("login_hint", ""), ("id_token_hint", &hint)]).await;
    assert_eq!(s, 200, "{bc}");
    let alice = Browser::new(&f.a);
    alice.sign_in("alice", "/approvals").await;
    assert!(
        alice.get("/approvals").await.body.contains("W4SCT"),
        "addressed to her"
    );

    let f = Fixture::start(|s| {
        s.public_host = "localhost".into();
        s.people.password_sign_in = false;
    })
    .await;
    let browser = Browser::new(&f.a);
    let page = browser.sign_in("alice", "/account").await;
    assert_eq!(page.status, 401, "no password sign-in");
    let login = browser.get("/login").await;
    assert!(
        !login.body.contains("type=\"password\""),
        "no password field"
    );
    let people = f.a.server.authorization_server.people().unwrap();
    let e = people
        .create_user(NewUser {
            username: "erin".into(),
            display_name: None,
            is_admin: false,
            password: Some(PASSWORD.into()),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("passwords are turned off"), "{e}");
}

/// The console (issue 9) in a real Chromium: an administrator signs in with her account and
/// every page renders what the store holds; a user who is not an administrator is refused.
#[tokio::test]
async fn every_console_page_renders_for_an_administrator_in_a_real_browser() {
    let f = Fixture::start(|_| {}).await;
    let people = f.a.server.authorization_server.people().unwrap().clone();
    people
        .create_user(NewUser {
            username: "root".into(),
            display_name: Some("Ada Admin".into()),
            is_admin: true,
            password: Some(PASSWORD.into()),
        })
        .await
        .unwrap();
    // Something to show: a token grant (a recorded decision) and a pending approval.
    let (s, _) = f
        .client_post(
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = backchannel(&f, &[]).await;
    assert_eq!(s, 200);
    let (s, _) = backchannel(&f, &[("login_hint", "root"), ("binding_message", "ROOT-1")]).await;
    assert_eq!(s, 200);

    let browser = webdriver::Browser::start().await;
    let sign_in = |user: &'static str| {
        let browser = &browser;
        let issuer = f.a.issuer.clone();
        async move {
            browser
                .goto(&format!("{issuer}/login?return_to=/console"))
                .await;
            browser.fill("#username", user).await;
            browser.fill("#password", PASSWORD).await;
            browser.click("#password-sign-in").await;
        }
    };
    sign_in("alice").await;
    browser
        .wait_for_url("the console", |u| u.ends_with("/console"))
        .await;
    // alice is no admin.
    browser
        .wait_for_source("the console refusing alice", |p| {
            p.contains("Administrators only")
        })
        .await;
    browser.goto(&format!("{}/account", f.a.issuer)).await;
    browser.click("#sign-out").await;
    browser
        .wait_for_url("signed out", |u| u.contains("/login"))
        .await;

    sign_in("root").await;
    browser
        .wait_for_url("the console", |u| u.ends_with("/console"))
        .await;
    assert!(
        browser
            .text("#console-nav")
            .await
            .contains("Recent decisions")
    );
    let pages = [
        ("/console/agents", "#entries, .empty", ""),
        ("/console/credentials", "#credentials", AGENT),
        ("/console/approvals", "#approvals", "W4SCT"),
        ("/console/approvals", "#approvals", "approve or deny"),
        ("/console/decisions", "#decisions", "obtain_token"),
        ("/console/signals", "main", "No receiver has a stream"),
        ("/console/policy", "#policies", "in force"),
        ("/console/policy/1", "pre", "scoped-tools"),
        ("/console/trace/no-such-task", "pre", "no-such-task"),
    ];
    for (path, css, wanted) in pages {
        browser.goto(&format!("{}{path}", f.a.issuer)).await;
        let shown = browser.text(css).await;
        assert!(
            browser.source().await.contains(wanted),
            "{path} lacks {wanted:?}: {shown}"
        );
        assert!(browser.url().await.ends_with(path), "{path} redirected");
    }
    browser
        .goto(&format!("{}/console/compliance", f.a.issuer))
        .await;
    assert!(browser.source().await.to_lowercase().contains("compliance"));
    browser.close().await;
}

/// Issue 18: a passkey ceremony begun at one replica finishes at another. Two replicas share
/// one PostgreSQL and one public URL, behind a proxy that sends every WebAuthn `finish` call to
/// B and everything else to A: in Chromium, a user registers a passkey (options from A, the
/// attestation verified by B) and signs in with it (the same split); the session B opens is
/// good at A. Skipped without PostgreSQL outside CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_ceremony_begun_at_one_replica_finishes_at_another() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some((url, name)) = aims_store::testing::fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Where the proxy sends requests (a client, A's base URL, B's), once both run.
    type Targets = Arc<std::sync::OnceLock<(reqwest::Client, String, String)>>;
    let targets: Targets = Arc::default();
    let finished_at_b = Arc::new(AtomicUsize::new(0));
    let (to, hits) = (targets.clone(), finished_at_b.clone());
    let proxy = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (to, hits) = (to.clone(), hits.clone());
        async move {
            let (client, a, b) = to.get().unwrap().clone();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let base = if req.uri().path().ends_with("/finish") {
                hits.fetch_add(1, Ordering::SeqCst);
                b
            } else {
                a
            };
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut headers = parts.headers;
            for hop in ["host", "connection", "accept-encoding", "content-length"] {
                headers.remove(hop);
            }
            let resp = client
                .request(parts.method, format!("{base}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut out = axum::http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                if !matches!(
                    k.as_str(),
                    "transfer-encoding" | "connection" | "content-length"
                ) {
                    out = out.header(k, v);
                }
            }
            out.body(axum::body::Body::from(resp.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let (site, _, _proxy) = common::https_site(dir.path(), |_| proxy).await;
    let public = site.replace("127.0.0.1", "localhost");
    let shared = |s: &mut aims_server::ServerSettings| {
        s.database_url = Some(url.clone());
        s.public_host = "localhost".into();
        s.public_url = Some(public.clone());
    };
    let dir_a = tempfile::tempdir().unwrap();
    let first = dir_a.path().to_path_buf();
    let a = common::start_as_in(dir_a, "example.org", shared).await;
    let b = common::start_as_in(common::joining_replica_dir(&first), "example.org", shared).await;
    assert_eq!(
        (a.issuer.as_str(), b.issuer.as_str()),
        (public.as_str(), public.as_str())
    );
    let forward = reqwest::Client::builder()
        // The proxy's own hop to a replica's local certificate.
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let _ = targets.set((
        forward,
        format!("https://{}", a.server.https_addr),
        format!("https://{}", b.server.https_addr),
    ));

    let browser = webdriver::Browser::start().await;
    enrol_with_passkey(&a, &browser, "dave").await;
    assert_eq!(
        finished_at_b.load(Ordering::SeqCst),
        1,
        "B verified the attestation"
    );

    sign_in_with_passkey(&browser, "dave").await;
    // The account page came from A, with the session B opened.
    assert!(browser.source().await.contains("with a passkey"));
    assert_eq!(
        finished_at_b.load(Ordering::SeqCst),
        2,
        "B verified the assertion"
    );
    browser.close().await;
    drop((a, b));
    aims_store::testing::drop_postgres_database(&name).await;
}

/// The next line a child printed, within a minute.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the child answers")
        .unwrap()
}

/// The MCP conformance suite (interop/mcp-conformance: `@modelcontextprotocol/conformance` on
/// Node 22 from npm), run with `node`.
fn mcp_conformance(args: &[&str]) -> tokio::process::Command {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/mcp-conformance");
    let suite = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        suite.exists(),
        "interop/mcp-conformance has no node_modules: run `npm ci` there (scripts/test does)"
    );
    let mut cmd = tokio::process::Command::new(dir.join("node_modules/.bin/node"));
    cmd.arg(suite)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Issue 19: the MCP conformance suite's authorization-server scenarios (2026-07-28) pass
/// against the AS: its metadata (Client ID Metadata Documents advertised, on by default) and
/// the authorization code grant of a public client by PKCE alone, Alice signing in and
/// consenting between the suite's authorization request and its callback.
#[tokio::test]
async fn the_mcp_conformance_suite_passes_its_authorization_server_scenarios() {
    use tokio::io::AsyncBufReadExt as _;
    let f = Fixture::start(|_| {}).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    f.register_public("mcp-conformance", "MCP conformance suite", &callback)
        .await;
    let port = port.to_string();
    let ca =
        f.a.server
            .web_ca_file
            .as_ref()
            .unwrap()
            .display()
            .to_string();
    let mut suite = mcp_conformance(&[
        "authorization",
        "--url",
        &f.a.issuer,
        "--client-id",
        "mcp-conformance",
        "--resource",
        RESOURCE,
        "--port",
        &port,
        "--spec-version",
        "2026-07-28",
    ]);
    let mut child = suite
        .env("NODE_EXTRA_CA_CERTS", ca)
        .spawn()
        .expect("node runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // The suite prints the authorization request for a person to open.
    let authorize = loop {
        let line = next_line(&mut lines)
            .await
            .unwrap_or_else(|| panic!("no authorization request:\n{}", printed.join("\n")));
        printed.push(line.clone());
        if line.starts_with(&format!("{}/oauth2/authorize?", f.a.issuer)) {
            break line;
        }
    };
    let browser = Browser::new(&f.a);
    let back = f
        .approve_showing(&browser, &authorize, false, &["MCP conformance suite"])
        .await;
    assert!(back.starts_with(&callback), "{back}");
    // Its callback server listens once it says so.
    while !printed
        .iter()
        .any(|l| l.starts_with("Callback server started"))
    {
        let line = next_line(&mut lines)
            .await
            .unwrap_or_else(|| panic!("no callback server:\n{}", printed.join("\n")));
        printed.push(line);
    }
    let answered = reqwest::get(&back).await.unwrap();
    assert_eq!(answered.status(), 200);
    while let Some(line) = next_line(&mut lines).await {
        printed.push(line);
    }
    let status = child.wait().await.unwrap();
    let printed = printed.join("\n");
    assert!(status.success(), "the suite failed:\n{printed}");
    for scenario in [
        "authorization-server-metadata-endpoint",
        "authorization-code-grant",
    ] {
        assert!(
            printed.contains(scenario),
            "{scenario} did not run:\n{printed}"
        );
    }
    assert!(!printed.contains("WARNING"), "{printed}");
    let total = printed
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .unwrap_or_else(|| panic!("no summary:\n{printed}"));
    assert_eq!(total, "3 passed, 0 failed", "{printed}");
}

/// Issue 19, enterprise-managed authorization (draft-ietf-oauth-identity-assertion-authz-grant-04,
/// MCP's extension), AIMS to AIMS across two trust domains: Alice signs in at A (the enterprise
/// IdP) through agent A, which exchanges her ID token for an ID-JAG addressed to B's
/// authorization server and redeems it there by the JWT bearer grant, authenticating with its
/// (federated) JWT-SVID. Refused: another client's ID token, a grant passed off as an ID token,
/// an unknown audience, a resource the ID-JAG does not name, a second redemption, a DPoP-bound
/// ID-JAG without its proof, the ID-JAG at its own issuer or as an access token.
#[tokio::test]
async fn an_id_jag_from_one_domain_is_redeemed_in_another() {
    use aims_token::wire::{
        ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT,
    };
    let f = Fixture::start(|_| {}).await;
    let a = &f.a;
    let b = common::start_trusting("other.org", a).await;
    let meta = a.metadata().await;
    assert!(
        meta["identity_chaining_requested_token_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(ID_JAG_TOKEN_TYPE)),
        "{meta}"
    );
    assert_eq!(
        b.metadata().await["authorization_grant_profiles_supported"],
        json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );
    // B knows agent A as a client authenticating with its SPIFFE ID; A knows B's AS.
    b.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "spiffe_jwt",
                "spiffe_id": AGENT,
                "client_name": "Agent A",
            }))
            .unwrap(),
            Some("agent-a".into()),
            ClientSource::Admin,
        )
        .await
        .unwrap();
    a.server
        .authorization_server
        .resources
        .register(aims_oauth::ResourceServer::new(b.issuer.clone()));
    let browser = Browser::new(a);
    let q = f.approve(&browser, &authorize_url(&[]), false).await;
    let (s, tokens) = f.redeem(&q["code"], VERIFIER).await;
    assert_eq!(s, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    const API: &str = "https://api.other.org/";
    let ask = |subject: String, subject_type: &'static str, extra: Vec<(&'static str, String)>| {
        let f = &f;
        async move {
            let mut form = vec![
                ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
                ("subject_token", subject),
                ("subject_token_type", subject_type.to_owned()),
                ("requested_token_type", ID_JAG_TOKEN_TYPE.to_owned()),
            ];
            form.extend(extra);
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.client_post("/oauth2/token", Some("agent-a"), &form).await
        }
    };
    let target = |resource: &str| {
        vec![
            ("audience", b.issuer.clone()),
            ("resource", resource.to_owned()),
            ("scope", "read".to_owned()),
        ]
    };
    let (s, v) = ask(id_token.clone(), ID_TOKEN_TYPE, target(API)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["issued_token_type"].as_str(), v["token_type"].as_str()),
        (Some(ID_JAG_TOKEN_TYPE), Some("N_A"))
    );
    let jag = v["access_token"].as_str().unwrap().to_owned();
    let jws = CompactJws::parse(&jag).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some("oauth-id-jag+jwt"));
    let c = claims(&jag);
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
        (
            Some(a.issuer.as_str()),
            Some(f.alice.as_str()),
            Some(b.issuer.as_str())
        )
    );
    assert_eq!(
        (c["client_id"].as_str(), c["resource"].as_str()),
        (Some("agent-a"), Some(API))
    );

    // Refused at the IdP.
    let (s, v) = ask(id_token.clone(), ID_TOKEN_TYPE, target(API)).await;
    assert_eq!(s, 200, "an ID token may be exchanged again: {v}");
    let other_agent = f.assertion("spiffe://example.org/agent/other").await;
    let (s, v, _) = a
        .post(
            "/oauth2/token",
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN_TYPE),
                ("requested_token_type", ID_JAG_TOKEN_TYPE),
                ("audience", &b.issuer),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &other_agent),
            ],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "another client's ID token: {v}"
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (s, v) = ask(
        access.clone(),
        "urn:ietf:params:oauth:token-type:access_token",
        target(API),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    // A grant of this issuer (typ JWT, as its ID tokens) passed off as an ID token: it
    // carries client_id and jti, which no ID token does (RFC 8725 §3.11).
    let grant = aims_oauth::sign_token(
        a.server.issuer.as_ref(),
        "JWT",
        &json!({"iss": a.issuer, "sub": f.alice, "aud": "agent-a", "exp": a.now() + 60,
                "iat": a.now(), "jti": "g-1", "client_id": "agent-a"}),
    )
    .unwrap();
    let (s, v) = ask(grant, ID_TOKEN_TYPE, target(API)).await;
    assert_eq!(s, 400, "a grant is no ID token: {v}");
    let (s, v) = ask(
        id_token.clone(),
        ID_TOKEN_TYPE,
        vec![("audience", "https://as.evil.example".to_owned())],
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_target")),
        "{v}"
    );

    // At B: the agent authenticates with its JWT-SVID (once B has A's bundle).
    let svid_for_b = a
        .server
        .issuer
        .mint_jwt_svid(
            &SpiffeId::parse(AGENT).unwrap(),
            std::slice::from_ref(&b.issuer),
            None,
        )
        .await
        .unwrap()
        .token;
    let redeem = |jag: String, resource: &'static str, dpop: Option<String>| {
        let (b, svid) = (&b, svid_for_b.clone());
        async move {
            let form = [
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", jag.as_str()),
                ("client_id", "agent-a"),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", svid.as_str()),
                ("resource", resource),
            ];
            let headers: Vec<(&str, &str)> =
                dpop.as_deref().map(|p| ("DPoP", p)).into_iter().collect();
            let (s, v, _) = b.post_with(&b.http, &b.token_url(), &form, &headers).await;
            (s, v)
        }
    };
    // A resource the ID-JAG does not name: refused before its jti is spent.
    let (s, v) = redeem(jag.clone(), "https://elsewhere.other.org/", None).await;
    assert_eq!(s, 400, "{v}");
    let mut got = (0, Value::Null);
    for _ in 0..100 {
        let (_, fresh) = ask(id_token.clone(), ID_TOKEN_TYPE, target(API)).await;
        got = redeem(
            fresh["access_token"].as_str().unwrap().to_owned(),
            API,
            None,
        )
        .await;
        if got.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = got;
    assert_eq!(s, 200, "{v}");
    let at = claims(v["access_token"].as_str().unwrap());
    assert_eq!(
        (
            at["iss"].as_str(),
            at["sub"].as_str(),
            at["client_id"].as_str()
        ),
        (
            Some(b.issuer.as_str()),
            Some(f.alice.as_str()),
            Some("agent-a")
        )
    );
    assert_eq!(
        (at["aud"].as_str(), at["scope"].as_str()),
        (Some(API), Some("read"))
    );
    assert!(
        v.get("refresh_token").is_none(),
        "§4.4.3: the client re-presents an ID-JAG instead"
    );
    // The first ID-JAG: wrong resource earlier, now redeemed; then never again.
    let (s, v) = redeem(jag.clone(), API, None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = redeem(jag.clone(), API, None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Its issuer does not redeem its own ID-JAG (§9.3), and it is no access token anywhere.
    let (s, v) = f
        .client_post(
            "/oauth2/token",
            Some("agent-a"),
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", &jag)],
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        aims_token::presentation::verify_access_token(
            b.server.issuer.as_ref(),
            &a.issuer,
            API,
            &jag,
            &aims_token::presentation::SenderProof::default(),
            &common::dpop_verifier(),
            a.now(),
        )
        .is_err()
    );
    // Bound to a DPoP key at the IdP: redeemed only with a proof of that key.
    let key = aims_credentials::PrivateKey::generate(aims_credentials::KeyType::EcP256).unwrap();
    let a_proof = common::dpop_proof(&key, &a.token_url(), "jag-1", a.now(), None);
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
        ("subject_token", id_token.clone()),
        ("subject_token_type", ID_TOKEN_TYPE.to_owned()),
        ("requested_token_type", ID_JAG_TOKEN_TYPE.to_owned()),
        ("client_assertion_type", JWT_SPIFFE_ASSERTION.to_owned()),
        ("client_assertion", f.assertion(AGENT).await),
        ("client_id", "agent-a".to_owned()),
    ];
    form.extend(target(API));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, v, _) = a
        .post_with(&a.http, &a.token_url(), &form, &[("DPoP", &a_proof)])
        .await;
    assert_eq!(s, 200, "{v}");
    let bound = v["access_token"].as_str().unwrap().to_owned();
    assert!(claims(&bound)["cnf"]["jkt"].is_string());
    let (s, v) = redeem(bound.clone(), API, None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let b_proof = common::dpop_proof(&key, &b.token_url(), "jag-2", b.now(), None);
    let (s, v) = redeem(bound, API, Some(b_proof)).await;
    assert_eq!((s, v["token_type"].as_str()), (200, Some("DPoP")), "{v}");
}
