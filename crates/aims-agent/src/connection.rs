//! The agent's channel to the server: gRPC over mutual TLS with SPIFFE verification on both
//! sides (the server must present `spiffe://<td>/aims/server`), HTTP/2 keep-alives so a dead
//! server is noticed, and bounded connect and call timeouts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aims_authn::mtls::{Authorizer, SvidStore, client_config};
use aims_credentials::BundleSet;
use aims_provisioning::proto::agent_service_client::AgentServiceClient;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::AgentError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a unary call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent API client type.
pub type AgentClient = AgentServiceClient<Channel>;

/// The TLS name to send: the host part of `host:port` (SNI is informational here; the server is
/// authorized by its SPIFFE ID, not by a name).
fn server_name(address: &str) -> Result<ServerName<'static>, AgentError> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|_| AgentError::Config(format!("server address {address:?}: bad host name")))
}

/// A lazily connecting client for the server at `address` (`host:port`), presenting whatever
/// `svid` holds at each handshake (nothing before attestation) and accepting only a server
/// whose SVID `server` allows and chains to `bundles`.
pub fn connect(
    address: &str,
    svid: Arc<SvidStore>,
    bundles: Arc<BundleSet>,
    server: Authorizer,
) -> Result<AgentClient, AgentError> {
    let tls = Arc::new(
        client_config(svid, bundles, server).map_err(|e| AgentError::Config(e.to_string()))?,
    );
    let name = server_name(address)?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| AgentError::Config(format!("server address {address:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let address = address.to_owned();
    let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let (tls, name, address) = (tls.clone(), name.clone(), address.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    }));
    Ok(AgentServiceClient::new(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:8081").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:8081").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("aims.example.org:8081").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad host:1").is_err());
    }
}
