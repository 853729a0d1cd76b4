//! A Workload API client over a Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status, Streaming};

use crate::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use crate::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse, WitsvidRequest,
    WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest, X509svidResponse,
};
use crate::{ENDPOINT_SOCKET_ENV, SECURITY_HEADER};

/// Why the client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint address is not a `unix:` URI or path.
    #[error("invalid Workload API endpoint {0:?}: expected unix:///path/to/socket")]
    InvalidEndpoint(String),
    /// No endpoint was given and `SPIFFE_ENDPOINT_SOCKET` is unset.
    #[error("no Workload API endpoint: pass one or set SPIFFE_ENDPOINT_SOCKET")]
    NoEndpoint,
    /// The channel could not be built.
    #[error("cannot connect to the Workload API: {0}")]
    Connect(#[from] tonic::transport::Error),
}

/// The socket path of a Workload API endpoint address: `unix:///abs/path`, `unix:/abs/path`,
/// or a bare path (SPIFFE Workload Endpoint §4; TCP endpoints are not supported here).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ClientError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.is_empty() || !path.starts_with('/') || endpoint.starts_with("tcp:") {
        return Err(ClientError::InvalidEndpoint(endpoint.to_owned()));
    }
    Ok(PathBuf::from(path))
}

/// A Workload API client.
#[derive(Debug, Clone)]
pub struct WorkloadApiClient {
    inner: SpiffeWorkloadApiClient<Channel>,
}

fn with_header<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert(SECURITY_HEADER, MetadataValue::from_static("true"));
    req
}

impl WorkloadApiClient {
    /// Connects (lazily) to the socket at `path`.
    pub fn connect_path(path: &Path) -> Result<Self, ClientError> {
        let path = path.to_path_buf();
        // The URI is a placeholder: the connector ignores it and dials the socket.
        let channel = Endpoint::try_from("http://workload-api.invalid")?
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(TokioIo::new)
                }
            }));
        Ok(Self {
            inner: SpiffeWorkloadApiClient::new(channel),
        })
    }

    /// Connects to `endpoint` (`unix:///path`), or to `SPIFFE_ENDPOINT_SOCKET` when `None`.
    pub fn connect(endpoint: Option<&str>) -> Result<Self, ClientError> {
        let endpoint = match endpoint {
            Some(e) => e.to_owned(),
            None => std::env::var(ENDPOINT_SOCKET_ENV).map_err(|_| ClientError::NoEndpoint)?,
        };
        Self::connect_path(&socket_path(&endpoint)?)
    }

    /// Opens the X509-SVID stream.
    pub async fn fetch_x509_svid(&mut self) -> Result<Streaming<X509svidResponse>, Status> {
        Ok(self
            .inner
            .fetch_x509svid(with_header(X509svidRequest {}))
            .await?
            .into_inner())
    }

    /// Opens the X.509 bundles stream.
    pub async fn fetch_x509_bundles(&mut self) -> Result<Streaming<X509BundlesResponse>, Status> {
        Ok(self
            .inner
            .fetch_x509_bundles(with_header(X509BundlesRequest {}))
            .await?
            .into_inner())
    }

    /// Fetches JWT-SVIDs for `audience`.
    pub async fn fetch_jwt_svid(
        &mut self,
        audience: Vec<String>,
        spiffe_id: Option<String>,
    ) -> Result<JwtsvidResponse, Status> {
        Ok(self
            .inner
            .fetch_jwtsvid(with_header(JwtsvidRequest {
                audience,
                spiffe_id: spiffe_id.unwrap_or_default(),
            }))
            .await?
            .into_inner())
    }

    /// Opens the JWT bundles stream.
    pub async fn fetch_jwt_bundles(&mut self) -> Result<Streaming<JwtBundlesResponse>, Status> {
        Ok(self
            .inner
            .fetch_jwt_bundles(with_header(JwtBundlesRequest {}))
            .await?
            .into_inner())
    }

    /// Validates a JWT-SVID for `audience`.
    pub async fn validate_jwt_svid(
        &mut self,
        audience: String,
        svid: String,
    ) -> Result<ValidateJwtsvidResponse, Status> {
        Ok(self
            .inner
            .validate_jwtsvid(with_header(ValidateJwtsvidRequest { audience, svid }))
            .await?
            .into_inner())
    }

    /// Opens the WIT-SVID stream.
    pub async fn fetch_wit_svid(
        &mut self,
        spiffe_id: Option<String>,
    ) -> Result<Streaming<WitsvidResponse>, Status> {
        Ok(self
            .inner
            .fetch_witsvid(with_header(WitsvidRequest {
                spiffe_id: spiffe_id.unwrap_or_default(),
            }))
            .await?
            .into_inner())
    }

    /// Opens the WIT bundles stream.
    pub async fn fetch_wit_bundles(&mut self) -> Result<Streaming<WitBundlesResponse>, Status> {
        Ok(self
            .inner
            .fetch_wit_bundles(with_header(WitBundlesRequest {}))
            .await?
            .into_inner())
    }

    /// The raw generated client, for requests without the security header (tests of the
    /// server's refusal).
    pub fn raw(&mut self) -> &mut SpiffeWorkloadApiClient<Channel> {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            socket_path("unix:///run/aims/api.sock").unwrap(),
            PathBuf::from("/run/aims/api.sock")
        );
        assert_eq!(
            socket_path("unix:/run/aims/api.sock").unwrap(),
            PathBuf::from("/run/aims/api.sock")
        );
        assert_eq!(
            socket_path("/run/aims/api.sock").unwrap(),
            PathBuf::from("/run/aims/api.sock")
        );
        for bad in [
            "",
            "unix://",
            "relative.sock",
            "tcp://127.0.0.1:1",
            "unix:relative",
        ] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }
}
