//! Federation (SPIFFE Federation §4–§6): the server fetches the bundles of configured foreign
//! trust domains from their bundle endpoints, stores them (so every replica and every agent
//! sees the same set) and announces changes; agents hand them to workloads as federated
//! bundles.
//!
//! Each relationship names the three things the standard says must never be inferred from one
//! another: the foreign trust domain, the endpoint URL and the endpoint profile.
//!
//! * `https_web`: the endpoint authenticates with Web PKI (system roots, plus an optional CA
//!   file), host name checked as RFC 6125 says.
//! * `https_spiffe`: the endpoint presents an X509-SVID for a configured endpoint SPIFFE ID. If
//!   that ID is in the foreign trust domain (a self-serving endpoint), it is verified with the
//!   bootstrap bundle at first and with the latest fetched bundle after; otherwise with the
//!   bundles this server already trusts (its own and other federated ones).
//!
//! The endpoint is polled every `spiffe_refresh_hint` seconds (5 minutes without one, clamped
//! to [1 s, 1 h]); failures are retried with capped backoff. A bundle whose `spiffe_sequence`
//! is lower than the one held is refused (a rollback).

use aims_outbound::FetchError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aims_authn::mtls::{Authorizer, SvidStore, client_config};
use aims_core::{SpiffeId, TrustDomain, unix_seconds};
use aims_credentials::bundle::certs_from_pem;
use aims_credentials::{BundleSet, TrustBundle};
use aims_store::FederatedBundleRow;
use tokio_util::sync::CancellationToken;

use crate::issuance::changes::ChangeFeed;
use crate::issuance::error::IssuanceError;
use crate::issuance::issuer::Issuer;

/// Why a federated bundle was not taken this time (the poll retries).
#[derive(Debug, thiserror::Error)]
enum BundleFetchError {
    /// The endpoint could not be reached or answered other than 200.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document is not a SPIFFE bundle (SPIFFE Trust Domain and Bundle §4).
    #[error("not a SPIFFE bundle: {0}")]
    Bundle(#[from] aims_credentials::VerifyError),
    /// It holds no key.
    #[error("the bundle holds no keys")]
    Empty,
}

/// Largest bundle document accepted from an endpoint.
const MAX_BUNDLE_BYTES: usize = 1 << 20;
/// Poll interval when the bundle carries no refresh hint (SPIFFE Federation §6).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Bounds on the poll interval.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// First retry after a failed fetch.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Fetch timeout.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How a bundle endpoint authenticates (SPIFFE Federation §5.2).
#[derive(Debug, Clone)]
pub enum EndpointProfile {
    /// Web PKI.
    HttpsWeb {
        /// Extra CA certificates (PEM) to trust besides the system's.
        ca_file: Option<PathBuf>,
    },
    /// An X509-SVID for `endpoint_spiffe_id`.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint must present.
        endpoint_spiffe_id: SpiffeId,
        /// Bundle (PEM or JWK Set) to verify a self-serving endpoint with before the first
        /// fetch.
        bootstrap_bundle: Option<PathBuf>,
    },
}

/// One federation relationship.
#[derive(Debug, Clone)]
pub struct Federation {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// Its bundle endpoint.
    pub url: String,
    /// How the endpoint authenticates.
    pub profile: EndpointProfile,
}

fn io(context: String, e: std::io::Error) -> IssuanceError {
    IssuanceError::Io { context, source: e }
}

impl Federation {
    /// Checks the relationship against our own trust domain (SPIFFE Federation §4).
    pub fn validate(&self, own: &TrustDomain) -> Result<(), IssuanceError> {
        let bad = |m: String| {
            Err(IssuanceError::Config(format!(
                "federation with {}: {m}",
                self.trust_domain
            )))
        };
        if self.trust_domain == *own {
            return bad("a trust domain does not federate with itself".into());
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            IssuanceError::Config(format!(
                "federation with {}: bundle_endpoint_url: {e}",
                self.trust_domain
            ))
        })?;
        if url.scheme() != "https" {
            return bad("the bundle endpoint URL must be https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("the bundle endpoint URL must not carry userinfo".into());
        }
        if let EndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id,
            bootstrap_bundle,
        } = &self.profile
            && endpoint_spiffe_id.is_member_of(&self.trust_domain)
            && bootstrap_bundle.is_none()
        {
            return bad("a self-serving https_spiffe endpoint needs a bootstrap bundle".into());
        }
        Ok(())
    }
}

/// Fetches one relationship's bundle, forever.
struct Fetcher {
    federation: Federation,
    issuer: Arc<Issuer>,
    changes: Arc<ChangeFeed>,
    /// For a self-serving https_spiffe endpoint: the foreign bundle the endpoint is verified
    /// with (bootstrap, then the latest fetched).
    endpoint_bundles: Arc<BundleSet>,
}

impl Fetcher {
    fn client(&self) -> Result<reqwest::Client, IssuanceError> {
        let builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .https_only(true);
        let builder = match &self.federation.profile {
            EndpointProfile::HttpsWeb { ca_file } => {
                let mut b = builder;
                if let Some(path) = ca_file {
                    let pem = std::fs::read_to_string(path)
                        .map_err(|e| io(format!("read federation CA {}", path.display()), e))?;
                    for cert in certs_from_pem(&pem)? {
                        let cert = reqwest::Certificate::from_der(&cert)
                            .map_err(|e| IssuanceError::Config(format!("federation CA: {e}")))?;
                        b = b.add_root_certificate(cert);
                    }
                }
                b
            }
            EndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id, ..
            } => {
                let bundles: Arc<BundleSet> =
                    if endpoint_spiffe_id.is_member_of(&self.federation.trust_domain) {
                        self.endpoint_bundles.clone()
                    } else {
                        self.issuer.bundles()
                    };
                // No client certificate: bundle endpoints must not require one (§5.1).
                let tls = client_config(
                    Arc::new(SvidStore::new()),
                    bundles,
                    Authorizer::Exact(endpoint_spiffe_id.clone()),
                )
                .map_err(|e| IssuanceError::Tls(e.to_string()))?;
                builder.tls_backend_preconfigured(tls)
            }
        };
        builder
            .build()
            .map_err(|e| IssuanceError::Tls(format!("federation client: {e}")))
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<TrustBundle, BundleFetchError> {
        let url = &self.federation.url;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Transport {
                url: url.clone(),
                why: format!("{e:#}"),
            })?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            }
            .into());
        }
        // Bounded while it arrives: a peer streaming forever is cut off at the bound.
        let body = aims_outbound::read_limited(url, resp, MAX_BUNDLE_BYTES).await?;
        let bundle = TrustBundle::from_jwks(self.federation.trust_domain.clone(), &body)?;
        if bundle.x509_authorities().is_empty() && bundle.jwt_authorities().next().is_none() {
            return Err(BundleFetchError::Empty);
        }
        Ok(bundle)
    }

    /// Stores a fetched bundle unless it rolls back; returns the next poll interval.
    async fn accept(&self, bundle: TrustBundle) -> Result<Duration, IssuanceError> {
        let td = self.federation.trust_domain.name().to_owned();
        let stored = self
            .issuer
            .store()
            .federated_bundles()
            .await?
            .into_iter()
            .find(|r| r.trust_domain == td);
        let next = bundle
            .refresh_hint()
            .map_or(DEFAULT_REFRESH, Duration::from_secs)
            .clamp(MIN_REFRESH, MAX_REFRESH);
        let sequence = i64::try_from(bundle.sequence()).unwrap_or(i64::MAX);
        if let Some(s) = &stored
            && sequence < s.sequence
        {
            tracing::warn!(trust_domain = %td, fetched = sequence, held = s.sequence, "refused a federated bundle with a lower spiffe_sequence");
            return Ok(next);
        }
        let changed = self
            .issuer
            .store()
            .put_federated_bundle(&FederatedBundleRow {
                trust_domain: td.clone(),
                document: bundle.to_jwks()?,
                endpoint: self.federation.url.clone(),
                sequence,
                refreshed_at: unix_seconds(self.issuer.clock().now()),
            })
            .await?;
        if changed {
            tracing::info!(trust_domain = %td, sequence, "federated bundle updated");
            self.changes.poke();
        }
        self.endpoint_bundles.put(bundle.clone());
        self.issuer.bundles().put(bundle);
        Ok(next)
    }

    async fn run(self, stop: CancellationToken) {
        let td = self.federation.trust_domain.to_string();
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.client() {
                Err(e) => {
                    tracing::error!(trust_domain = %td, error = %e, "federation client cannot be built");
                    MAX_REFRESH
                }
                Ok(client) => match self.fetch(&client).await {
                    Ok(bundle) => match self.accept(bundle).await {
                        Ok(next) => {
                            retry = FIRST_RETRY;
                            next
                        }
                        Err(e) => {
                            tracing::warn!(trust_domain = %td, error = %e, "cannot store a federated bundle; will retry");
                            retry
                        }
                    },
                    Err(e) => {
                        tracing::warn!(trust_domain = %td, url = %self.federation.url, error = %e, retry_in_s = retry.as_secs(), "federated bundle fetch failed");
                        let wait = retry;
                        retry = (retry * 2).min(DEFAULT_REFRESH);
                        wait
                    }
                },
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Starts a fetcher per relationship.
pub async fn start(
    federations: &[Federation],
    issuer: &Arc<Issuer>,
    changes: &Arc<ChangeFeed>,
    stop: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, IssuanceError> {
    let stored = issuer.store().federated_bundles().await?;
    let mut tasks = Vec::with_capacity(federations.len());
    for f in federations {
        f.validate(issuer.trust_domain())?;
        let endpoint_bundles = Arc::new(BundleSet::new());
        // What verifies a self-serving endpoint: the last fetched bundle, else the bootstrap.
        let held = stored
            .iter()
            .find(|r| r.trust_domain == f.trust_domain.name())
            .and_then(|r| {
                TrustBundle::from_jwks(f.trust_domain.clone(), r.document.as_bytes()).ok()
            });
        if let Some(b) = held {
            issuer.bundles().put(b.clone());
            endpoint_bundles.put(b);
        } else if let EndpointProfile::HttpsSpiffe {
            bootstrap_bundle: Some(path),
            ..
        } = &f.profile
        {
            let doc = std::fs::read(path)
                .map_err(|e| io(format!("read bootstrap bundle {}", path.display()), e))?;
            endpoint_bundles.put(
                TrustBundle::from_document(f.trust_domain.clone(), &doc).map_err(|e| {
                    IssuanceError::Config(format!("bootstrap bundle {}: {e}", path.display()))
                })?,
            );
        }
        let fetcher = Fetcher {
            federation: f.clone(),
            issuer: issuer.clone(),
            changes: changes.clone(),
            endpoint_bundles,
        };
        tasks.push(tokio::spawn(fetcher.run(stop.clone())));
    }
    Ok(tasks)
}
