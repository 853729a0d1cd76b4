//! An HTTP/1.1 load generator for servers in other processes: `conns` keep-alive connections
//! (TLS or plain TCP), each sending a request as soon as its previous answer is read (closed loop,
//! like `wrk`), or at a fixed share of a total rate with latency counted from the scheduled
//! send time (open loop, like `wrk2`, so a stalled server cannot hide its queueing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::measure::{Measurement, summarize};

/// Where requests go.
#[derive(Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS to use, with the name to check; `None` for plain HTTP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The request method.
    pub method: http::Method,
    /// The request path.
    pub path: String,
    /// Headers sent with every request (e.g. `Authorization`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Target {
    /// Form POSTs to `path`.
    pub fn post(
        addr: SocketAddr,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        path: &str,
    ) -> Self {
        Self {
            addr,
            tls,
            method: http::Method::POST,
            path: path.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// Makes the body of request number `n` (a form).
pub type BodyFn = Arc<dyn Fn(u64) -> anyhow::Result<Bytes> + Send + Sync>;

/// How the connections send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next request when the previous answer is read.
    Closed,
    /// All connections together send this many requests per second.
    Open(f64),
}

/// One load run: what it measured and how many answers were not 200.
pub struct LoadResult {
    /// Throughput and latency of the 200 answers.
    pub m: Measurement,
    /// Answers other than 200 (and transport errors).
    pub errors: u64,
    /// The first of them: its status and body, or the transport error.
    pub first_error: Option<String>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let sender = match &target.tls {
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            sender
        }
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    Ok(sender)
}

/// A request to the target: its method, path and headers, and `body` as a form when not empty.
fn form_post(target: &Target, body: Bytes) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut req = http::Request::builder()
        .method(target.method.clone())
        .uri(&target.path)
        .header(http::header::HOST, target.addr.to_string());
    if !body.is_empty() {
        req = req.header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    }
    for (k, v) in &target.headers {
        req = req.header(k, v);
    }
    Ok(req.body(Full::new(body))?)
}

/// Sends one request; `Ok(None)` for a 200, else the answer's status and body.
async fn request(
    sender: &mut Sender,
    target: &Target,
    body: Bytes,
) -> anyhow::Result<Option<String>> {
    let req = form_post(target, body)?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let text = resp.into_body().collect().await?.to_bytes();
    Ok((status != http::StatusCode::OK)
        .then(|| format!("{status}: {}", String::from_utf8_lossy(&text))))
}

/// A kept-alive connection answering with status codes only.
pub struct StatusConn {
    sender: Sender,
}

impl StatusConn {
    /// Opens a connection to `target`.
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        Ok(Self {
            sender: connect(target).await?,
        })
    }

    /// Sends `target`'s request (empty body) and returns the answer's status.
    pub async fn status(&mut self, target: &Target) -> anyhow::Result<http::StatusCode> {
        let resp = self
            .sender
            .send_request(form_post(target, Bytes::new())?)
            .await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

/// One request on a connection of its own: the body of a 200 answer, or the answer as error.
pub async fn fetch(target: &Target, body: Bytes) -> anyhow::Result<Bytes> {
    let mut sender = connect(target).await?;
    let req = form_post(target, body)?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let text = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == http::StatusCode::OK,
        "{} answered {status}: {}",
        target.path,
        String::from_utf8_lossy(&text)
    );
    Ok(text)
}

/// Open loop: the instants at which requests are due, `rate` per second from `first` until
/// `end`, handed round-robin to `conns` connections. A thread of its own sleeps to each one
/// (a high-resolution sleep, ~50 µs of timer slack, where tokio's timer ticks in
/// milliseconds) and wakes the connection it is due on; the load generator never spins, so it
/// leaves the CPU it shares with the system under test alone (spinning until each instant took
/// most of that CPU at 3,000/s and delayed the processes measured). A connection still busy
/// with its previous request sends late, and the latency counts from the due instant.
fn due_instants(
    rate: f64,
    conns: usize,
    first: Instant,
    end: Instant,
) -> Vec<tokio::sync::mpsc::UnboundedReceiver<Instant>> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..conns)
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    let interval = Duration::from_secs_f64(1.0 / rate);
    std::thread::spawn(move || {
        let mut due = first;
        for k in 0usize.. {
            if due >= end {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if txs[k % txs.len()].send(due).is_err() {
                break;
            }
            due += interval;
        }
    });
    rxs
}

/// Runs `conns` connections for `warmup` then `duration`, on the current runtime; connection
/// `i` sends `targets[i % targets.len()]`'s request (one target per browser session, say).
pub async fn run(
    targets: &[Target],
    conns: usize,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    body: &BodyFn,
    counter: &Arc<AtomicU64>,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(
        !targets.is_empty() && conns > 0,
        "no target or no connection"
    );
    if let Pace::Open(rate) = pace {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "an open loop needs a positive rate"
        );
    }
    let mut senders = Vec::with_capacity(conns);
    for i in 0..conns {
        let target = targets[i % targets.len()].clone();
        senders.push((connect(&target).await.context("connecting")?, target));
    }
    let start = Instant::now() + warmup;
    let end = start + duration;
    // Open loop: one due instant after another, each to the next connection.
    let mut dues: Vec<Option<tokio::sync::mpsc::UnboundedReceiver<Instant>>> = match pace {
        Pace::Closed => (0..conns).map(|_| None).collect(),
        Pace::Open(rate) => due_instants(rate, conns, Instant::now(), end)
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut tasks = Vec::with_capacity(conns);
    for ((mut sender, target), mut due) in senders.into_iter().zip(dues.drain(..)) {
        let body = body.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let scheduled = match due.as_mut() {
                    Some(rx) => match rx.recv().await {
                        Some(at) => at,
                        None => break,
                    },
                    None => Instant::now(),
                };
                if scheduled >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let ok = request(&mut sender, &target, body(n)?).await;
                let done = Instant::now();
                if scheduled < start {
                    continue;
                }
                match ok {
                    Ok(None) => samples.push(
                        u32::try_from(done.duration_since(scheduled).as_nanos())
                            .unwrap_or(u32::MAX),
                    ),
                    Ok(Some(answer)) => {
                        errors += 1;
                        first_error.get_or_insert(answer);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("transport: {e}"));
                        sender = connect(&target).await?;
                    }
                }
            }
            anyhow::Ok((samples, errors, first_error))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (s, e, first) = t.await??;
        all.extend(s);
        errors += e;
        first_error = first_error.or(first);
    }
    Ok(LoadResult {
        m: summarize(all, duration.as_secs_f64()),
        errors,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn open_loop_instants_are_evenly_spaced_round_robin_and_end_on_time() {
        let first = Instant::now();
        let end = first + Duration::from_millis(100);
        let mut rxs = due_instants(1_000.0, 4, first, end);
        let mut all = Vec::new();
        for (i, rx) in rxs.iter_mut().enumerate() {
            let mut k = 0u32;
            while let Some(at) = rx.recv().await {
                // Connection i gets the instants i, i + 4, i + 8… milliseconds after the first.
                assert_eq!(
                    at - first,
                    Duration::from_millis(u64::from(4 * k) + i as u64)
                );
                assert!(at < end);
                all.push(at);
                k += 1;
            }
        }
        assert_eq!(all.len(), 100);
        // Each handed over no earlier than it was due (a sleep, not a spin, got there).
        assert!(Instant::now() >= *all.iter().max().unwrap());
    }
}
