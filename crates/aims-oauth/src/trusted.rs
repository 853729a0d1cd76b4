//! Keys of other authorization servers whose JWT authorization grants this one accepts
//! (identity chaining, draft-ietf-oauth-identity-chaining §2.4; AIMS AZ-24): fetched from their
//! `jwks_uri`, cached five minutes, refetched at most every ten seconds when a grant names an
//! unknown `kid` (so a key rotation is picked up without a storm of fetches).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aims_credentials::PublicKey;
use aims_outbound::FetchError;
use jsonwebtoken::jwk::JwkSet;

use crate::settings::TrustedIssuer;

const FRESH: Duration = Duration::from_secs(300);
const MIN_REFETCH: Duration = Duration::from_secs(10);
const MAX_JWKS: usize = 256 * 1024;

/// Why a trusted issuer's key is not at hand.
#[derive(Debug, thiserror::Error)]
pub enum TrustedIssuerError {
    /// The issuer is not configured.
    #[error("{0} is not a trusted issuer")]
    NotTrusted(String),
    /// Its client cannot be built, its JWKS cannot be fetched.
    #[error("trusted issuer {issuer}: {source}")]
    Fetch {
        /// The issuer.
        issuer: String,
        /// What failed.
        source: FetchError,
    },
    /// Its JWKS is not a JWK Set (RFC 7517 §5).
    #[error("trusted issuer {issuer}: JWKS: {why}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// The parse error.
        why: String,
    },
    /// It publishes no such key.
    #[error("{issuer} publishes no key {kid:?}")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The `kid` asked for.
        kid: Option<String>,
    },
}

struct Cached {
    fetched: Instant,
    keys: Vec<(Option<String>, PublicKey)>,
}

/// The trusted issuers and their cached keys.
pub struct TrustedIssuers {
    issuers: Vec<(TrustedIssuer, reqwest::Client)>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.issuers.iter().map(|(i, _)| &i.issuer))
            .finish()
    }
}

impl TrustedIssuers {
    /// Builds an HTTP client per issuer (with its extra CA, if any).
    pub fn new(issuers: &[TrustedIssuer]) -> Result<Self, TrustedIssuerError> {
        let mut out = Vec::with_capacity(issuers.len());
        for i in issuers {
            let mut b = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .https_only(true)
                .redirect(reqwest::redirect::Policy::none());
            let failed = |source| TrustedIssuerError::Fetch {
                issuer: i.issuer.clone(),
                source,
            };
            if let Some(path) = &i.ca_file {
                b = crate::fetch::with_ca_file(b, path).map_err(failed)?;
            }
            let client = b
                .build()
                .map_err(|e| failed(FetchError::Client(e.to_string())))?;
            out.push((i.clone(), client));
        }
        Ok(Self {
            issuers: out,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `iss` is trusted.
    pub fn trusts(&self, iss: &str) -> bool {
        self.issuers.iter().any(|(i, _)| i.issuer == iss)
    }

    fn cached(&self, iss: &str, kid: Option<&str>, fresh_only: bool) -> Option<PublicKey> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(iss)?;
        if fresh_only && c.fetched.elapsed() > FRESH {
            return None;
        }
        match kid {
            Some(k) => c
                .keys
                .iter()
                .find(|(id, _)| id.as_deref() == Some(k))
                .map(|(_, key)| key.clone()),
            None if c.keys.len() == 1 => c.keys.first().map(|(_, k)| k.clone()),
            None => None,
        }
    }

    /// The key `iss` signs with under `kid`.
    pub async fn key(&self, iss: &str, kid: Option<&str>) -> Result<PublicKey, TrustedIssuerError> {
        if let Some(k) = self.cached(iss, kid, true) {
            return Ok(k);
        }
        let recently = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(iss).map(|e| e.fetched.elapsed() < MIN_REFETCH))
            .unwrap_or(false);
        if !recently {
            self.fetch(iss).await?;
        }
        self.cached(iss, kid, false)
            .ok_or_else(|| TrustedIssuerError::UnknownKey {
                issuer: iss.to_owned(),
                kid: kid.map(str::to_owned),
            })
    }

    async fn fetch(&self, iss: &str) -> Result<(), TrustedIssuerError> {
        let (issuer, client) = self
            .issuers
            .iter()
            .find(|(i, _)| i.issuer == iss)
            .ok_or_else(|| TrustedIssuerError::NotTrusted(iss.to_owned()))?;
        let failed = |source| TrustedIssuerError::Fetch {
            issuer: iss.to_owned(),
            source,
        };
        let url = &issuer.jwks_uri;
        let resp = client.get(url).send().await.map_err(|e| {
            failed(FetchError::Transport {
                url: url.clone(),
                why: e.to_string(),
            })
        })?;
        if !resp.status().is_success() {
            return Err(failed(FetchError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            }));
        }
        // The bound holds while the body arrives: a huge answer is never read whole.
        let body = crate::fetch::read_limited(url, resp, MAX_JWKS)
            .await
            .map_err(failed)?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| TrustedIssuerError::Jwks {
            issuer: iss.to_owned(),
            why: e.to_string(),
        })?;
        let keys = set
            .keys
            .iter()
            .filter_map(|k| {
                PublicKey::from_jwk(k)
                    .ok()
                    .map(|p| (k.common.key_id.clone(), p))
            })
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(
                iss.to_owned(),
                Cached {
                    fetched: Instant::now(),
                    keys,
                },
            );
        }
        Ok(())
    }
}
