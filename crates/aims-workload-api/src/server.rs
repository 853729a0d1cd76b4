//! The Workload API gRPC service on a Unix socket.
//!
//! Behaviour follows the SPIFFE Workload API standard: the security header is required
//! (`InvalidArgument` without it, and the client must not retry); a caller with no identity gets
//! `PermissionDenied` (the client retries with backoff); every streamed message is the complete
//! current state, sent at once and again whenever it changes; a stream whose caller loses every
//! identity ends with `PermissionDenied`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use aims_core::SpiffeId;
use aims_credentials::{TrustBundle, verify_jwt_svid};
use futures::StreamExt as _;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;

use crate::peer::{PinnedInfo, PinnedStream};
use tonic::{Request, Response, Status};

use crate::SECURITY_HEADER;
use crate::proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use crate::proto::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    Witsvid, WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid,
    X509svidRequest, X509svidResponse,
};
use crate::provider::{IdentityProvider, PeerCredentials, SvidKind};

/// Messages buffered per stream before the sender waits for the client (each message is the
/// whole state, so one in flight is enough).
const STREAM_BUFFER: usize = 1;
/// The largest JWT-SVID or audience list accepted.
const MAX_AUDIENCES: usize = 32;

/// How long open requests get to finish at shutdown.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Workload API service.
pub struct WorkloadApi<P> {
    provider: Arc<P>,
    /// Ends every open stream when the agent stops.
    shutdown: CancellationToken,
}

impl<P> Clone for WorkloadApi<P> {
    fn clone(&self) -> Self {
        Self {
            provider: self.provider.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

impl<P> WorkloadApi<P> {
    /// A service answering from `provider`; its streams end when `shutdown` fires.
    pub fn new(provider: Arc<P>, shutdown: CancellationToken) -> Self {
        Self { provider, shutdown }
    }
}

fn check_header<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get(SECURITY_HEADER).map(|v| v.to_str()) {
        Some(Ok("true")) => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn peer<T>(req: &Request<T>) -> Result<PeerCredentials, Status> {
    req.extensions()
        .get::<PinnedInfo>()
        .and_then(|i| i.peer.clone())
        .ok_or_else(|| Status::permission_denied("no peer credentials for this connection"))
}

fn td_key(bundle: &TrustBundle) -> String {
    bundle.trust_domain().id_string()
}

impl<P: IdentityProvider> WorkloadApi<P> {
    async fn caller<T>(&self, req: &Request<T>) -> Result<P::Caller, Status> {
        check_header(req)?;
        self.provider.attest(peer(req)?).await
    }

    fn x509_response(&self, caller: &P::Caller) -> Result<X509svidResponse, Status> {
        let svids = self.provider.x509_svids(caller);
        if svids.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let bundles = self.provider.bundles();
        let own = self.provider.trust_domain().clone();
        let own_der = bundles
            .iter()
            .find(|b| *b.trust_domain() == own)
            .map(|b| b.x509_authorities_concat_der())
            .unwrap_or_default();
        Ok(X509svidResponse {
            svids: svids
                .into_iter()
                .map(|s| X509svid {
                    spiffe_id: s.spiffe_id.to_string(),
                    x509_svid: s.chain.iter().flat_map(|c| c.iter().copied()).collect(),
                    x509_svid_key: s.key_pkcs8.to_vec(),
                    bundle: own_der.clone(),
                    hint: s.hint.unwrap_or_default(),
                })
                .collect(),
            crl: Vec::new(),
            federated_bundles: bundles
                .iter()
                .filter(|b| *b.trust_domain() != own)
                .map(|b| (td_key(b), b.x509_authorities_concat_der()))
                .collect(),
        })
    }

    fn wit_response(
        &self,
        caller: &P::Caller,
        only: Option<&SpiffeId>,
    ) -> Result<WitsvidResponse, Status> {
        let mut svids = Vec::new();
        for w in self.provider.wit_svids(caller) {
            if only.is_some_and(|id| *id != w.spiffe_id) {
                continue;
            }
            let key = w
                .key
                .to_private_jwk(w.key.jws_algorithm())
                .map_err(|e| Status::internal(format!("WIT key: {e}")))?;
            svids.push(Witsvid {
                spiffe_id: w.spiffe_id.to_string(),
                wit_svid: w.token,
                wit_svid_key: key.to_string(),
                hint: w.hint.unwrap_or_default(),
            });
        }
        if svids.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(WitsvidResponse { svids })
    }

    fn x509_bundles(&self) -> X509BundlesResponse {
        X509BundlesResponse {
            crl: Vec::new(),
            bundles: self
                .provider
                .bundles()
                .iter()
                .map(|b| (td_key(b), b.x509_authorities_concat_der()))
                .collect(),
        }
    }

    fn jwt_bundles(&self) -> JwtBundlesResponse {
        JwtBundlesResponse {
            bundles: self
                .provider
                .bundles()
                .iter()
                .filter_map(|b| b.to_jwt_jwks().ok().map(|j| (td_key(b), j.into_bytes())))
                .collect(),
        }
    }

    fn wit_bundles(&self) -> WitBundlesResponse {
        WitBundlesResponse {
            bundles: self
                .provider
                .bundles()
                .iter()
                .filter_map(|b| b.to_wit_jwks().ok().map(|j| (td_key(b), j)))
                .collect(),
        }
    }
}

/// Streams `make()` now and after every change, skipping unchanged messages, until the client
/// goes away, the agent stops, or `make` fails (the error is sent and the stream ends).
fn stream_state<T, F>(
    mut changes: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
    make: F,
) -> ReceiverStream<Result<T, Status>>
where
    T: PartialEq + Clone + Send + 'static,
    F: Fn() -> Result<T, Status> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut last: Option<T> = None;
        loop {
            match make() {
                Ok(msg) => {
                    if last.as_ref() != Some(&msg) {
                        if tx.send(Ok(msg.clone())).await.is_err() {
                            return;
                        }
                        last = Some(msg);
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("the agent is shutting down"))).await;
                    return;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl<P: IdentityProvider> SpiffeWorkloadApi for WorkloadApi<P> {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;
    type FetchWITSVIDStream = Stream<WitsvidResponse>;
    type FetchWITBundlesStream = Stream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchX509SVID")
            .increment(1);
        let caller = self.caller(&request).await?;
        // The first message decides whether the caller has an identity at all.
        self.provider.ready(&caller, SvidKind::X509).await?;
        self.x509_response(&caller)?;
        let this = self.clone();
        Ok(Response::new(stream_state(
            self.provider.changes(),
            self.shutdown.clone(),
            move || this.x509_response(&caller),
        )))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchX509Bundles")
            .increment(1);
        check_header(&request)?;
        let this = self.clone();
        Ok(Response::new(stream_state(
            self.provider.changes(),
            self.shutdown.clone(),
            move || Ok(this.x509_bundles()),
        )))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchJWTSVID")
            .increment(1);
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        if req.audience.is_empty() || req.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.audience.len() > MAX_AUDIENCES {
            return Err(Status::invalid_argument("too many audiences"));
        }
        let only = match req.spiffe_id.as_str() {
            "" => None,
            s => Some(
                SpiffeId::parse(s)
                    .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?,
            ),
        };
        let svids = self
            .provider
            .jwt_svids(&caller, &req.audience, only.as_ref())
            .await?;
        if svids.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(Response::new(JwtsvidResponse {
            svids: svids
                .into_iter()
                .map(|s| Jwtsvid {
                    spiffe_id: s.spiffe_id.to_string(),
                    svid: s.token,
                    hint: s.hint.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchJWTBundles")
            .increment(1);
        check_header(&request)?;
        let this = self.clone();
        Ok(Response::new(stream_state(
            self.provider.changes(),
            self.shutdown.clone(),
            move || Ok(this.jwt_bundles()),
        )))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "ValidateJWTSVID")
            .increment(1);
        check_header(&request)?;
        let req = request.into_inner();
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let bundles = aims_credentials::BundleSet::with(
            self.provider.bundles().iter().map(|b| (**b).clone()),
        );
        let now = aims_core::unix_seconds(std::time::SystemTime::now());
        let svid = verify_jwt_svid(&req.svid, &bundles, &req.audience, now, 0)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: svid.spiffe_id.to_string(),
            claims: Some(to_struct(svid.claims)),
        }))
    }

    async fn fetch_witsvid(
        &self,
        request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchWITSVID")
            .increment(1);
        let caller = self.caller(&request).await?;
        let only = match request.get_ref().spiffe_id.as_str() {
            "" => None,
            s => Some(
                SpiffeId::parse(s)
                    .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?,
            ),
        };
        self.provider.ready(&caller, SvidKind::Wit).await?;
        self.wit_response(&caller, only.as_ref())?;
        let this = self.clone();
        Ok(Response::new(stream_state(
            self.provider.changes(),
            self.shutdown.clone(),
            move || this.wit_response(&caller, only.as_ref()),
        )))
    }

    async fn fetch_wit_bundles(
        &self,
        request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        metrics::counter!("aims_workload_api_requests_total", "method" => "FetchWITBundles")
            .increment(1);
        check_header(&request)?;
        let this = self.clone();
        Ok(Response::new(stream_state(
            self.provider.changes(),
            self.shutdown.clone(),
            move || Ok(this.wit_bundles()),
        )))
    }
}

/// JSON claims as a protobuf `Struct` (ValidateJWTSVIDResponse.claims).
fn to_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Binds the Workload API socket at `path` and serves until `shutdown`.
///
/// The socket is mode 0666: any local process may connect, and attestation decides what it
/// gets (SPIFFE Workload Endpoint §3: no client authentication on the socket). Who can reach it
/// is decided by the directory it lives in: the default, inside the 0700 data directory, limits
/// it to the agent's own user and root.
pub async fn serve<P: IdentityProvider>(
    path: &Path,
    provider: Arc<P>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another agent is serving the Workload API on {}",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let service = SpiffeWorkloadApiServer::new(WorkloadApi::new(provider, shutdown.clone()));
    Ok(tokio::spawn(async move {
        let serve = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                // Each caller is pinned as its connection is accepted.
                UnixListenerStream::new(listener).map(|c| c.map(PinnedStream::accept)),
                shutdown.clone().cancelled_owned(),
            );
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            result = serve => if let Err(e) = result {
                tracing::error!(error = %e, "Workload API server stopped");
            },
            () = drained => tracing::warn!("Workload API requests still open after {DRAIN_TIMEOUT:?}; closed"),
        }
    }))
}
