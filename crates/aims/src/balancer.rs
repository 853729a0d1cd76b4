//! A small TCP load balancer for `aims up --replicas` (issue 18): it spreads connections over
//! the replicas in turn and passes over one that refuses or does not accept within a few
//! seconds, so a killed replica is skipped from the next connection on. TLS passes through untouched (each
//! replica terminates it, client certificates included) and nothing is parsed: a stand-in for
//! the operator's own balancer (HAProxy, a cloud NLB) when trying replicas on one machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a replica may take to accept before the next one is tried (a dead replica on a
/// reachable host refuses at once; this bounds a host that answers nothing). Not shorter: on a
/// loaded machine this process's own timer may fire late, and a live replica must not be
/// passed over for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections relayed at once, at most (more wait in the listener's backlog).
const MAX_CONNECTIONS: usize = 4096;

/// The replicas connections go to; replicas can join while the balancer runs.
#[derive(Debug, Clone)]
pub struct Backends(Arc<std::sync::RwLock<Arc<[SocketAddr]>>>);

impl Backends {
    /// Starting with `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(addrs.into())))
    }

    /// Adds `addr` (connections from now on may go to it).
    pub fn add(&self, addr: SocketAddr) {
        let mut b = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = b.to_vec();
        next.push(addr);
        *b = next.into();
    }

    fn current(&self) -> Arc<[SocketAddr]> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Relays each connection accepted on `listener` to one of `backends`, until `shutdown`.
pub async fn serve(listener: TcpListener, backends: Backends, shutdown: CancellationToken) {
    let next = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "load balancer: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let first = next.fetch_add(1, Ordering::Relaxed);
        let (backends, shutdown) = (backends.current(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(mut upstream) = connect(&backends, first).await else {
                tracing::warn!(%peer, "load balancer: no replica accepts connections");
                return;
            };
            let mut client = client;
            let _ = client.set_nodelay(true);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}

/// A connection to the first of `backends` from `first` on (in turn) that accepts one.
async fn connect(backends: &[SocketAddr], first: usize) -> Option<TcpStream> {
    for k in 0..backends.len() {
        let addr = backends[(first + k) % backends.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "load balancer: replica refused"),
            Err(_) => tracing::debug!(%addr, "load balancer: replica did not accept in time"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A backend that answers every connection with `name`.
    async fn named(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        addr
    }

    async fn ask(lb: SocketAddr) -> String {
        let mut s = TcpStream::connect(lb).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Connections go to each backend in turn; a dead backend is passed over; a joining one
    /// gets connections.
    #[tokio::test]
    async fn spreads_connections_and_skips_a_dead_replica() {
        // A port nothing listens on: bound, then closed.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let backends = Backends::new(vec![named("a").await, dead]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, backends.clone(), shutdown.clone()));
        for _ in 0..3 {
            assert_eq!(ask(lb).await, "a");
        }
        // A replica joins.
        backends.add(named("b").await);
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ask(lb).await);
        }
        assert!(seen.iter().all(|s| s == "a" || s == "b"), "{seen:?}");
        assert!(seen.contains(&"a".to_owned()) && seen.contains(&"b".to_owned()));
        shutdown.cancel();
    }
}
