//! The gateway's client of the AIMS server: discovery (RFC 8414), the token signing keys
//! (JWKS), introspection (RFC 7662), transaction tokens (txn-tokens-11 via RFC 8693), the
//! policy in force and audit appends — every call over mutual TLS with the gateway's
//! X509-SVID (the server checks it against the trust domain).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aims_audit::AuditRecord;
use aims_credentials::bundle::certs_from_pem;
use aims_credentials::jose::CompactJws;
use aims_credentials::{PublicKey, SlotKey};
use aims_policy::PolicyDocument;
use aims_token::claims::{AccessClaims, TxnClaims};
use aims_token::keys::TokenKeys;
use aims_token::wire::{ACCESS_TOKEN_TYPE, AS_METADATA_PATH, TOKEN_EXCHANGE_GRANT, TXN_TOKEN_TYPE};
use serde_json::Value;

use crate::GatewayError;
use crate::identity::WorkloadIdentity;

/// Unknown `kid`s trigger a JWKS refresh at most this often.
const KEY_REFRESH_MIN: Duration = Duration::from_secs(1);

/// The AS's published token keys, fetched at start and again on an unknown `kid`.
pub struct RemoteKeys {
    keys: RwLock<HashMap<String, PublicKey>>,
    document: RwLock<Arc<String>>,
    refresh: RefreshGate,
}

/// Schedules the fetches of a key set asked for by verifiers that met an unknown `kid`: one
/// fetch at a time, at most one per `min_interval`, and each caller returns only after a fetch
/// that began after it asked. A caller that arrives just after a fetch waits out the rest of
/// the interval instead of going on with the keys it already failed with, so a key published
/// since (another replica's, issue 18) is never refused for having come a moment too late;
/// a flood of invented `kid`s still costs the AS one fetch per interval.
struct RefreshGate {
    min_interval: Duration,
    /// When the last fetch began.
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl RefreshGate {
    fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `fetch` unless a fetch that began after this call has run meanwhile.
    async fn refresh<F, Fut, E>(&self, fetch: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        let asked = tokio::time::Instant::now();
        let mut last = self.last.lock().await;
        if let Some(began) = *last {
            if began >= asked {
                return Ok(());
            }
            tokio::time::sleep(self.min_interval.saturating_sub(began.elapsed())).await;
        }
        *last = Some(tokio::time::Instant::now());
        fetch().await
    }
}

impl TokenKeys for RemoteKeys {
    fn signing_key(&self) -> Option<SlotKey> {
        None
    }
    fn verifying_key(&self, kid: &str) -> Option<PublicKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }
    fn jwks(&self) -> Arc<String> {
        self.document
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|_| Arc::new(String::new()))
    }
}

/// A string claim of a JWT, read without verifying it.
pub(crate) fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    CompactJws::parse(jwt)
        .and_then(|jws| jws.claims::<Value>())
        .ok()
        .and_then(|c| c[name].as_str().map(str::to_owned))
}

/// The task of a transaction token ([`TxnClaims::task_trace`]), read without verifying it.
pub(crate) fn unverified_task_trace(jwt: &str) -> Option<String> {
    CompactJws::parse(jwt)
        .and_then(|jws| jws.claims::<TxnClaims>())
        .ok()
        .map(|c| c.task_trace().to_owned())
}

/// What a transaction token is asked for with.
#[derive(Debug, Clone, Copy)]
pub enum TxnSubject<'a> {
    /// The caller's access token: a new transaction.
    AccessToken(&'a str),
    /// A transaction token the caller forwarded: its replacement.
    TxnToken(&'a str),
}

/// The client.
pub struct ServerClient {
    http: reqwest::Client,
    /// The issuer.
    pub issuer: String,
    /// The mutual-TLS base URL (AuthZEN, policy feed, audit).
    pub mtls_base: String,
    token_endpoint: String,
    introspection_endpoint: String,
    jwks_uri: String,
    trust_domain: String,
    keys: RemoteKeys,
    identity: Arc<WorkloadIdentity>,
}

/// How long a call to the server may take (a held policy poll: that much past its hold).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the policy feed answered.
#[derive(Debug)]
pub struct PolicyAnswer {
    /// The policy in force, unless it is still the version the gateway named (HTTP 304).
    pub document: Option<PolicyDocument>,
    /// Whether the server held the poll as asked (`Preference-Applied`, RFC 7240 §3); a server
    /// that did not is polled at the gateway's own pace.
    pub held: bool,
}

fn err(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Server(format!("{what}: {e}"))
}

fn origin(url: &str) -> Result<String, GatewayError> {
    let u = reqwest::Url::parse(url).map_err(|e| err("URL", e))?;
    Ok(u.origin().ascii_serialization())
}

/// The TLS client configuration of every connection the gateway makes: the system roots and
/// `extra_ca` trusted, the gateway's X509-SVID presented when asked (rotations apply to the
/// next connection).
pub fn mtls_client_config(
    identity: &WorkloadIdentity,
    extra_ca: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, GatewayError> {
    let mut extra = Vec::new();
    if let Some(path) = extra_ca {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::Config(format!("CA file {}: {e}", path.display())))?;
        extra = certs_from_pem(&pem).map_err(|e| GatewayError::Config(e.to_string()))?;
    }
    let provider = aims_authn::mtls::provider();
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| GatewayError::Config(format!("TLS roots: {e}")))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(identity.svid.clone()))
}

/// An HTTPS client for the AIMS server over [`mtls_client_config`].
pub fn mtls_http_client(
    identity: &WorkloadIdentity,
    extra_ca: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<reqwest::Client, GatewayError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(mtls_client_config(identity, extra_ca)?)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| GatewayError::Config(format!("HTTP client: {e}")))
}

impl ServerClient {
    /// Discovers the AS at `issuer` (RFC 8414) and loads its keys.
    pub async fn discover(
        issuer: &str,
        trust_domain: &str,
        http: reqwest::Client,
        identity: Arc<WorkloadIdentity>,
    ) -> Result<Self, GatewayError> {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let meta: Value = http
            .get(format!("{issuer}{AS_METADATA_PATH}"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err("authorization server metadata", e))?
            .json()
            .await
            .map_err(|e| err("authorization server metadata", e))?;
        if meta["issuer"] != issuer.as_str() {
            return Err(GatewayError::Server(format!(
                "metadata names issuer {} instead of {issuer}",
                meta["issuer"]
            )));
        }
        let field = |v: &Value, name: &str| -> Result<String, GatewayError> {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| GatewayError::Server(format!("metadata without {name}")))
        };
        let aliases = &meta["mtls_endpoint_aliases"];
        let token_endpoint = field(aliases, "token_endpoint")?;
        let me = Self {
            mtls_base: origin(&token_endpoint)?,
            token_endpoint,
            introspection_endpoint: field(aliases, "introspection_endpoint")?,
            jwks_uri: field(&meta, "jwks_uri")?,
            http,
            issuer,
            trust_domain: trust_domain.to_owned(),
            identity,
            keys: RemoteKeys {
                keys: RwLock::new(HashMap::new()),
                document: RwLock::new(Arc::new(String::new())),
                refresh: RefreshGate::new(KEY_REFRESH_MIN),
            },
        };
        me.refresh_keys().await?;
        Ok(me)
    }

    /// The AS's keys.
    pub fn keys(&self) -> &RemoteKeys {
        &self.keys
    }

    /// Fetches the JWKS again: returns once keys fetched after this call began are in place
    /// (at most one fetch per second, see [`RefreshGate`]).
    pub async fn refresh_keys(&self) -> Result<(), GatewayError> {
        self.keys.refresh.refresh(|| self.fetch_keys()).await
    }

    async fn fetch_keys(&self) -> Result<(), GatewayError> {
        let text = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err("JWKS", e))?
            .text()
            .await
            .map_err(|e| err("JWKS", e))?;
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&text).map_err(|e| err("JWKS", e))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (&jwk.common.key_id, PublicKey::from_jwk(jwk)) {
                keys.insert(kid.clone(), key);
            }
        }
        if let Ok(mut k) = self.keys.keys.write() {
            *k = keys;
        }
        if let Ok(mut d) = self.keys.document.write() {
            *d = Arc::new(text);
        }
        Ok(())
    }

    /// RFC 7662: the token's claims if it is active, `None` if not.
    pub async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, GatewayError> {
        let v: Value = self
            .http
            .post(&self.introspection_endpoint)
            .form(&[("token", token), ("client_id", self.client_id()?.as_str())])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err("introspection", e))?
            .json()
            .await
            .map_err(|e| err("introspection", e))?;
        if v["active"] != true {
            return Ok(None);
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| err("introspection answer", e))
    }

    fn client_id(&self) -> Result<String, GatewayError> {
        self.identity
            .spiffe_id()
            .map(|id| id.to_string())
            .ok_or_else(|| GatewayError::Identity("no X509-SVID".into()))
    }

    /// RFC 8693 token exchange of `subject_token` (an access token) at the mutual-TLS token
    /// endpoint, the gateway authenticated by its X509-SVID, with `params` added; the issued
    /// token. `what` names the call in errors.
    async fn exchange_token(
        &self,
        what: &str,
        subject: TxnSubject<'_>,
        params: &[(&str, &str)],
    ) -> Result<String, GatewayError> {
        let client_id = self.client_id()?;
        let (subject_token, subject_token_type) = match subject {
            TxnSubject::AccessToken(t) => (t, ACCESS_TOKEN_TYPE),
            TxnSubject::TxnToken(t) => (t, TXN_TOKEN_TYPE),
        };
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", client_id.as_str()),
            ("subject_token", subject_token),
            ("subject_token_type", subject_token_type),
        ];
        form.extend_from_slice(params);
        let resp = self
            .http
            .post(&self.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| err(what, e))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| err(what, e))?;
        if !status.is_success() {
            let why = format!(
                "{what} refused ({status}): {} {}",
                v["error"], v["error_description"]
            );
            return Err(if status.is_client_error() {
                GatewayError::Refused(why)
            } else {
                GatewayError::Server(why)
            });
        }
        v["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GatewayError::Server(format!("{what} response without a token")))
    }

    /// A transaction token (txn-tokens-11 §7) and the task it belongs to
    /// ([`TxnClaims::task_trace`]), the gateway
    /// asking as the workload at the edge of the trust domain: a new transaction for a request
    /// made with an access token (with `request_details` as its context), or the replacement of
    /// a transaction token the caller forwarded (txn-tokens §7.4: same `txn` and context, the
    /// gateway appended to `req_wl`) — so one task keeps one id across hops (AIMS MO-11).
    pub async fn txn_token(
        &self,
        subject: TxnSubject<'_>,
        scope: &str,
        request_context: &Value,
        request_details: &Value,
    ) -> Result<(String, String), GatewayError> {
        let rctx = request_context.to_string();
        let tctx = request_details.to_string();
        // A replacement asks for the scope the forwarded token has (the AS checks it).
        let forwarded_scope = match subject {
            TxnSubject::TxnToken(t) => unverified_claim(t, "scope"),
            TxnSubject::AccessToken(_) => None,
        };
        let scope = forwarded_scope.as_deref().unwrap_or(scope);
        let mut params = vec![
            ("requested_token_type", TXN_TOKEN_TYPE),
            ("audience", self.trust_domain.as_str()),
            ("request_context", rctx.as_str()),
            ("scope", scope),
        ];
        if matches!(subject, TxnSubject::AccessToken(_)) {
            params.push(("request_details", tctx.as_str()));
        }
        let token = self
            .exchange_token("transaction token", subject, &params)
            .await?;
        // Our own AS answered over mutual TLS; the task is read, not verified.
        let trace = unverified_task_trace(&token)
            .ok_or_else(|| GatewayError::Server("a transaction token without its claims".into()))?;
        Ok((token, trace))
    }

    /// RFC 8693: `access_token` exchanged for a token for `audience`, with the gateway as the
    /// actor (`act`), for an upstream that takes OAuth tokens rather than transaction tokens.
    pub async fn exchange(
        &self,
        access_token: &str,
        audience: &str,
        scope: &str,
    ) -> Result<String, GatewayError> {
        let mut params = vec![("resource", audience)];
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        self.exchange_token(
            "token exchange",
            TxnSubject::AccessToken(access_token),
            &params,
        )
        .await
    }

    /// The policy in force, unless it is still `known` (HTTP 304); with a non-zero `wait`, the
    /// server answers once a newer version is in force or after `wait` (a long poll).
    pub async fn current_policy(
        &self,
        known: Option<u64>,
        wait: Duration,
    ) -> Result<PolicyAnswer, GatewayError> {
        let mut req = self.http.get(format!(
            "{}{}",
            self.mtls_base,
            aims_policy::CURRENT_POLICY_PATH
        ));
        if let Some(v) = known {
            req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{v}\""));
        }
        if !wait.is_zero() {
            // RFC 7240 §4.3; the request outlives the hold by the client's own timeout.
            req = req
                .header("prefer", format!("wait={}", wait.as_secs()))
                .timeout(wait + REQUEST_TIMEOUT);
        }
        let resp = req.send().await.map_err(|e| err("policy", e))?;
        let held = resp.headers().contains_key("preference-applied");
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(PolicyAnswer {
                document: None,
                held,
            });
        }
        let resp = resp.error_for_status().map_err(|e| err("policy", e))?;
        let document = resp.json().await.map_err(|e| err("policy", e))?;
        Ok(PolicyAnswer {
            document: Some(document),
            held,
        })
    }

    /// Appends decision records to the server's audit log; returns once they are durable.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), GatewayError> {
        self.http
            .post(format!("{}{}", self.mtls_base, aims_audit::RECORDS_PATH))
            .json(records)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err("audit append", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn counting(fetches: &AtomicUsize) -> Result<(), ()> {
        fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    /// The CI failure of stop 31: a token signed by a key another replica had just published
    /// was refused because a fetch a moment earlier made the next one "too soon" to run.
    #[tokio::test(start_paused = true)]
    async fn a_key_asked_for_just_after_a_fetch_is_fetched_after_the_interval() {
        let gate = RefreshGate::new(Duration::from_secs(1));
        let fetches = AtomicUsize::new(0);
        gate.refresh(|| counting(&fetches)).await.unwrap();
        let asked = tokio::time::Instant::now();
        gate.refresh(|| counting(&fetches)).await.unwrap();
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "the second ask was not skipped"
        );
        assert!(
            asked.elapsed() >= Duration::from_millis(950),
            "{:?}",
            asked.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn callers_share_a_fetch_that_began_after_they_asked() {
        let gate = RefreshGate::new(Duration::from_secs(1));
        let fetches = AtomicUsize::new(0);
        let at_once = (0..5).map(|_| gate.refresh(|| counting(&fetches)));
        let during = async {
            // Asked while the first fetch runs: its keys may predate theirs.
            tokio::time::sleep(Duration::from_millis(10)).await;
            futures::future::join_all((0..15).map(|_| gate.refresh(|| counting(&fetches)))).await
        };
        let (first, later) = tokio::join!(futures::future::join_all(at_once), during);
        assert!(first.into_iter().chain(later).all(|r| r.is_ok()));
        // Five asked together share one fetch; the fifteen that asked during it share one more.
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invented_kids_cost_one_fetch_per_interval() {
        let gate = RefreshGate::new(Duration::from_secs(1));
        let fetches = AtomicUsize::new(0);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            gate.refresh(|| counting(&fetches)).await.unwrap();
        }
        let spent = start.elapsed();
        assert_eq!(fetches.load(Ordering::SeqCst), 10);
        assert!(spent >= Duration::from_secs(9), "{spent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_reported_to_its_caller() {
        let gate = RefreshGate::new(Duration::from_secs(1));
        assert_eq!(
            gate.refresh(|| async { Err::<(), _>("down") }).await,
            Err("down")
        );
        assert_eq!(gate.refresh(|| async { Ok::<(), &str>(()) }).await, Ok(()));
    }
}
