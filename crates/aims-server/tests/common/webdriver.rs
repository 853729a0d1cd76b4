//! Headless Chromium driven through chromedriver (W3C WebDriver), with a WebAuthn virtual
//! authenticator (WebAuthn Level 2 §11, the WebDriver extension): real pages, real JavaScript,
//! real passkey ceremonies. Debian's `chromium` and `chromium-driver` (scripts/test installs
//! them).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to reach an expected state.
const PATIENCE: Duration = Duration::from_secs(20);

/// A session-scoped command fantoccini has no method for (the WebAuthn extension).
#[derive(Debug)]
struct SessionCommand {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(ToString::to_string),
        )
    }
}

/// One headless Chromium with its chromedriver, and a profile of its own.
pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a Chromium session. The AIMS test server's
    /// certificate comes from its own local CA, which this profile does not trust:
    /// `acceptInsecureCerts` lets the pages load (WebAuthn still runs its origin checks).
    pub async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver (scripts/test does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = tempfile::tempdir().unwrap();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(&status).send().await
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--no-default-browser-check",
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                    "--window-size=1024,900",
                ],
            },
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Adds a platform authenticator with resident keys and user verification, the kind a
    /// phone or laptop has; returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let id = self
            .client
            .issue_cmd(SessionCommand {
                method: http::Method::POST,
                path: "webauthn/authenticator".into(),
                body: Some(json!({
                    "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                    "hasUserVerification": true, "isUserVerified": true,
                })),
            })
            .await
            .unwrap();
        id.as_str().unwrap().to_owned()
    }

    /// The credentials an authenticator holds.
    pub async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let v = self
            .client
            .issue_cmd(SessionCommand {
                method: http::Method::GET,
                path: format!("webauthn/authenticator/{authenticator}/credentials"),
                body: None,
            })
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element `css`, once the page has it (a failure shows where the browser is).
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no {css} ({e}) at {}: {}",
                self.url().await,
                self.source().await
            ),
        }
    }

    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.unwrap()
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Waits until the page's URL satisfies `f`; returns it.
    pub async fn wait_for_url(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        self.wait_for(what, false, f).await
    }

    /// Waits until the page's source satisfies `f` (the URL can change before the new page has
    /// loaded); returns it.
    pub async fn wait_for_source(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        self.wait_for(what, true, f).await
    }

    async fn wait_for(&self, what: &str, source: bool, f: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let seen = if source {
                self.source().await
            } else {
                self.url().await
            };
            if f(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited for {what}; the browser is at {}: {}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
