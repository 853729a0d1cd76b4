//! The agent's channel to the server: gRPC over mutual TLS with SPIFFE verification on both
//! sides (the server must present `spiffe://<td>/aims/server`), HTTP/2 keep-alives so a dead
//! server is noticed, and bounded connect and call timeouts.
//!
//! Several replicas (issue 18): the server address may list several `host:port`s, comma
//! separated, and a host name may resolve to several addresses. Each connection tries them in
//! turn from the one last reached, so a replica that is gone costs one failed attempt, not an
//! outage; every replica serves the same trust domain from one store, and a sync stream starts
//! with the whole state, so the agent loses nothing by moving.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aims_authn::mtls::{Authorizer, SvidStore, client_config};
use aims_credentials::BundleSet;
use aims_provisioning::proto::agent_service_client::AgentServiceClient;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::AgentError;

/// How long a connection attempt to one address may take.
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

/// The replicas to reach the server at, and which one to try first.
#[derive(Debug)]
pub struct ServerAddresses {
    addresses: Vec<(String, ServerName<'static>)>,
    first: AtomicUsize,
}

impl ServerAddresses {
    /// Parses `list`: one or more `host:port`, comma separated.
    pub fn parse(list: &str) -> Result<Self, AgentError> {
        let addresses = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| Ok((a.to_owned(), server_name(a)?)))
            .collect::<Result<Vec<_>, AgentError>>()?;
        if addresses.is_empty() {
            return Err(AgentError::Config(
                "no server address: give host:port (several, comma separated, for replicas)".into(),
            ));
        }
        Ok(Self {
            addresses,
            first: AtomicUsize::new(0),
        })
    }

    /// Makes the next connection start with the replica after the one last reached (the
    /// session with it failed).
    pub fn move_on(&self) {
        if self.addresses.len() > 1 {
            let next = (self.first.load(Ordering::Relaxed) + 1) % self.addresses.len();
            self.first.store(next, Ordering::Relaxed);
        }
    }

    /// The addresses in the order the next connection tries them.
    fn in_turn(&self) -> impl Iterator<Item = (usize, &(String, ServerName<'static>))> {
        let first = self.first.load(Ordering::Relaxed);
        let n = self.addresses.len();
        (0..n).map(move |i| {
            let k = (first + i) % n;
            (k, &self.addresses[k])
        })
    }

    /// A TLS connection to the first address that answers, remembered as the one to start
    /// with next time.
    async fn connect(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut last = None;
        for (k, (address, name)) in self.in_turn() {
            let attempt = async {
                let tcp = tokio::net::TcpStream::connect(address.as_str()).await?;
                tcp.set_nodelay(true)?;
                tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name.clone(), tcp)
                    .await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(stream)) => {
                    self.first.store(k, Ordering::Relaxed);
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    tracing::debug!(server = %address, error = %e, "server replica unreachable");
                    last = Some(e);
                }
                Err(_) => {
                    tracing::debug!(server = %address, "server replica did not answer in time");
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{address}: no answer within {CONNECT_TIMEOUT:?}"),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no server address")))
    }
}

/// A lazily connecting client for the server at `servers`, presenting whatever `svid` holds at
/// each handshake (nothing before attestation) and accepting only a server whose SVID `server`
/// allows and chains to `bundles`.
pub fn connect(
    servers: Arc<ServerAddresses>,
    svid: Arc<SvidStore>,
    bundles: Arc<BundleSet>,
    server: Authorizer,
) -> Result<AgentClient, AgentError> {
    let tls = Arc::new(
        client_config(svid, bundles, server).map_err(|e| AgentError::Config(e.to_string()))?,
    );
    let attempts = u32::try_from(servers.addresses.len()).unwrap_or(u32::MAX);
    // The URI is a placeholder: the connector below picks the replica.
    let endpoint = Endpoint::from_static("http://aims-server")
        .connect_timeout(CONNECT_TIMEOUT.saturating_mul(attempts))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let (tls, servers) = (tls.clone(), servers.clone());
        async move { Ok::<_, std::io::Error>(TokioIo::new(servers.connect(tls).await?)) }
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

    /// Issue 18: replicas are tried in turn from the one last reached.
    #[test]
    fn replicas_are_listed_and_taken_in_turn() {
        let s = ServerAddresses::parse(" a.example:1, [::1]:2 ,,b.example:3").unwrap();
        let order =
            |s: &ServerAddresses| s.in_turn().map(|(_, (a, _))| a.clone()).collect::<Vec<_>>();
        assert_eq!(order(&s), ["a.example:1", "[::1]:2", "b.example:3"]);
        s.move_on();
        assert_eq!(order(&s), ["[::1]:2", "b.example:3", "a.example:1"]);
        s.move_on();
        s.move_on();
        assert_eq!(order(&s), ["a.example:1", "[::1]:2", "b.example:3"]);
        assert!(ServerAddresses::parse(" , ").is_err());
        assert!(ServerAddresses::parse("a:1,bad host:2").is_err());
    }

    /// A replica that refuses connections costs one attempt: the next one is reached (here it
    /// accepts and hangs up, so the handshake, and the connection, fail after reaching it).
    #[tokio::test]
    async fn a_dead_replica_is_passed_over() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        // The live one accepts TCP and then closes: the TLS handshake fails, which is an error
        // of that address too (the dead one is skipped either way).
        let accepted = tokio::spawn(async move { live.accept().await.map(|_| ()) });
        let s = ServerAddresses::parse(&format!("{dead_addr},{live_addr}")).unwrap();
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(aims_authn::mtls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        assert!(s.connect(tls).await.is_err());
        accepted.await.unwrap().unwrap();
    }
}
