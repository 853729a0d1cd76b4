//! Signing outgoing reqwest requests with a workload's WIT and key, in a line or two:
//!
//! ```ignore
//! let signer = WimseSigner::new(credentials, ProofMode::Wpt);
//! let resp = signer.send(&client, client.post(url).json(&body)).await?;
//! ```
//!
//! The credentials are swappable (rotation): each request is signed with what is current.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aims_credentials::PrivateKey;
use http::HeaderValue;

use crate::error::AuthnError;
use crate::wimse_sig::{RequestSigning, sign_request};
use crate::wpt::{TXN_TOKEN_HEADER, WPT_SCHEME, WptBinding, create_wpt};

/// A workload's WIT and the key it binds.
#[derive(Clone)]
pub struct WorkloadCredentials {
    /// The WIT (compact JWS).
    pub wit: String,
    /// The WIT's `cnf` key.
    pub key: Arc<PrivateKey>,
}

impl std::fmt::Debug for WorkloadCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCredentials")
            .field(
                "wit_sha256",
                &aims_credentials::jose::sha256_b64url(self.wit.as_bytes()),
            )
            .field("key", &self.key)
            .finish()
    }
}

/// Which proof of possession to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofMode {
    /// A Workload Proof Token (`Authorization: WPT`).
    Wpt,
    /// A WIMSE HTTP message signature (covers the body through `Content-Digest`).
    HttpSignature {
        /// Ask the server to sign its response.
        sign_response: bool,
    },
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] AuthnError),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// Signs requests as a workload.
#[derive(Clone)]
pub struct WimseSigner {
    credentials: Arc<RwLock<WorkloadCredentials>>,
    mode: ProofMode,
    ttl: Duration,
}

impl std::fmt::Debug for WimseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WimseSigner")
            .field("mode", &self.mode)
            .finish()
    }
}

/// The audience of a request: its URL without query or fragment (WPT-02 §3, -07 §4.1).
pub fn audience_of(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl WimseSigner {
    /// A signer using `credentials` for proofs of `mode` that live 60 seconds.
    pub fn new(credentials: WorkloadCredentials, mode: ProofMode) -> Self {
        Self {
            credentials: Arc::new(RwLock::new(credentials)),
            mode,
            ttl: Duration::from_secs(60),
        }
    }

    /// Replaces the credentials (after a rotation).
    pub fn rotate(&self, credentials: WorkloadCredentials) {
        if let Ok(mut c) = self.credentials.write() {
            *c = credentials;
        }
    }

    fn current(&self) -> Result<WorkloadCredentials, AuthnError> {
        self.credentials
            .read()
            .map(|c| c.clone())
            .map_err(|_| AuthnError::Malformed("credentials lock poisoned".into()))
    }

    /// Signs `req` in place. For an HTTP signature, returns the nonce a signed response must
    /// echo. A streaming body cannot be signed (its digest is unknown): use a buffered body.
    pub fn sign(&self, req: &mut reqwest::Request) -> Result<Option<String>, AuthnError> {
        let creds = self.current()?;
        let audience = audience_of(req.url());
        let now = SystemTime::now();
        match self.mode {
            ProofMode::Wpt => {
                let txn = req
                    .headers()
                    .get(TXN_TOKEN_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let wpt = create_wpt(
                    &creds.key,
                    &creds.wit,
                    &WptBinding {
                        audience: &audience,
                        ttl: self.ttl,
                        txn_token: txn.as_deref(),
                        other_tokens: &[],
                    },
                    now,
                )
                .map_err(|e| AuthnError::Malformed(e.to_string()))?;
                let headers = req.headers_mut();
                headers.insert(
                    aims_credentials::wit::WIT_HEADER,
                    HeaderValue::from_str(&creds.wit)
                        .map_err(|_| AuthnError::Malformed("WIT".into()))?,
                );
                headers.insert(
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("{WPT_SCHEME} {wpt}"))
                        .map_err(|_| AuthnError::Malformed("WPT".into()))?,
                );
                Ok(None)
            }
            ProofMode::HttpSignature { sign_response } => {
                let body: Vec<u8> = match req.body() {
                    None => Vec::new(),
                    Some(b) => b
                        .as_bytes()
                        .ok_or_else(|| {
                            AuthnError::Malformed("a streaming body cannot be signed".into())
                        })?
                        .to_vec(),
                };
                let uri: http::Uri = req
                    .url()
                    .as_str()
                    .parse()
                    .map_err(|_| AuthnError::Malformed("URL".into()))?;
                let method = req.method().clone();
                let nonce = sign_request(
                    &creds.key,
                    &creds.wit,
                    &method,
                    &uri,
                    req.headers_mut(),
                    &body,
                    &RequestSigning {
                        audience: &audience,
                        ttl: self.ttl,
                        sign_response,
                    },
                    now,
                )?;
                Ok(Some(nonce))
            }
        }
    }

    /// Builds, signs and sends a request.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = builder.build()?;
        self.sign(&mut req)?;
        Ok(client.execute(req).await?)
    }
}
