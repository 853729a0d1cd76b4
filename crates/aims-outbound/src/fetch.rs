//! Fetches of URLs that others name: Client ID Metadata Documents, `jwks_uri`, signal
//! sources' keys, push endpoints. A client chooses these URLs, so every fetch is guarded against server-side request forgery
//! (draft-ietf-oauth-client-id-metadata-document-02 §6.5, RFC 7591 §5): HTTPS only, no
//! redirects, only `200 OK`, a size bound enforced while the body arrives, a timeout, and no
//! connection to a special-use address (loopback, private, link-local, CGNAT, multicast,
//! documentation …) unless the operator allows private networks — checked on the addresses the
//! name resolves to, at connection time, so a DNS answer cannot rebind the fetch.
//!
//! Documents are cached by URL (bounded) for their `Cache-Control: max-age` (at most a day;
//! five minutes when absent; `no-store` or `no-cache` not at all); failures for ten seconds, so
//! a broken client cannot make the server fetch in a loop. At most [`IN_FLIGHT`] fetches run at
//! once: a client metadata document is fetched before its client is known, so a flood of
//! unauthenticated requests naming fresh URLs gets `Busy`, never unbounded outbound parallelism.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aims_credentials::bundle::certs_from_pem;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

/// Default cache lifetime of a document without `Cache-Control: max-age`.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The longest a document is cached.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a failed fetch is remembered.
const FAILURE_TTL: Duration = Duration::from_secs(10);
/// How many URLs the cache holds.
const CACHE_ENTRIES: usize = 4096;
/// Connect plus transfer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Fetches running at once, at most.
pub const IN_FLIGHT: usize = 32;

/// Outbound fetch settings.
#[derive(Debug, Clone, Default)]
pub struct FetchSettings {
    /// Extra CA certificates (PEM) to trust, beside the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow loopback and private addresses (development and tests only).
    pub allow_private_networks: bool,
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The URL is not acceptable.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: &'static str,
    },
    /// The host is, or resolves to, a special-use address.
    #[error("{url}: {ip} is a special-use address; fetching it is refused")]
    SpecialUse {
        /// The URL.
        url: String,
        /// The address.
        ip: IpAddr,
    },
    /// Connection, TLS or timeout.
    #[error("fetching {url}: {why}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// Anything but 200.
    #[error("fetching {url}: HTTP {status} (only 200 is accepted, redirects are not followed)")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is over the bound.
    #[error("{url}: the document is larger than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The bound.
        max: usize,
    },
    /// The body is not a JSON object.
    #[error("{url}: not a JSON object: {why}")]
    NotJson {
        /// The URL.
        url: String,
        /// The parse error.
        why: String,
    },
    /// The extra CA file cannot be read or holds no usable certificate.
    #[error("CA file {}: {why}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The HTTP client cannot be built (its TLS configuration).
    #[error("HTTP client: {0}")]
    Client(String),
    /// As many fetches as allowed are running; try again (not remembered as a failure).
    #[error("{url}: too many fetches in flight, try again")]
    Busy {
        /// The URL.
        url: String,
    },
}

/// Whether `ip` is outside the public unicast address space (RFC 6890 special-purpose
/// registries, multicast, and IPv4 embedded in IPv6).
pub fn is_special_use(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96 (NAT64) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return special_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments 2001::/23
                || s[..6] == [0; 6] // ::/96, IPv4-compatible (deprecated)
                || s[0] == 0x0100 && s[1..4] == [0; 3] // discard-only 100::/64
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// Resolves names and refuses special-use answers, at connection time.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && let Some(bad) = addrs.iter().find(|a| is_special_use(a.ip())) {
                return Err(
                    format!("{host} resolves to {}, a special-use address", bad.ip()).into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

struct Entry {
    until: Instant,
    value: Result<Arc<Value>, FetchError>,
}

/// The guarded fetcher with its cache.
pub struct Fetcher {
    http: reqwest::Client,
    allow_private: bool,
    cache: Mutex<HashMap<String, Entry>>,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

/// A client for URLs others name: HTTPS only, no redirects, `timeout` on connect and on the
/// whole exchange, special-use addresses refused at connection time (unless
/// `settings.allow_private_networks`), the system roots and `settings.ca_file` trusted.
/// Address literals never reach the resolver: check them with [`Fetcher::checked_url`]'s rule
/// ([`check_url`]) before sending.
pub fn guarded_client(
    settings: &FetchSettings,
    timeout: Duration,
) -> Result<reqwest::Client, FetchError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(GuardedResolver {
            allow_private: settings.allow_private_networks,
        });
    if let Some(path) = &settings.ca_file {
        b = with_ca_file(b, path)?;
    }
    b.build().map_err(|e| FetchError::Client(e.to_string()))
}

/// `url` parsed, if it is https and (unless `allow_private`) not a special-use address
/// literal.
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl {
        url: url.to_owned(),
        why: "not a URL",
    })?;
    if parsed.scheme() != "https" {
        return Err(FetchError::BadUrl {
            url: url.to_owned(),
            why: "not an https URL",
        });
    }
    // An address literal never reaches the resolver.
    let literal = parsed.host_str().and_then(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
    });
    if let Some(ip) = literal
        && !allow_private
        && is_special_use(ip)
    {
        return Err(FetchError::SpecialUse {
            url: url.to_owned(),
            ip,
        });
    }
    Ok(parsed)
}

/// The body of `resp`, refused as soon as it is known to exceed `max` bytes (a declared
/// `Content-Length`, or what has arrived): never read whole first.
pub async fn read_limited(
    url: &str,
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_owned(),
        max,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport {
        url: url.to_owned(),
        why: error_chain(&e),
    })? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Fetcher {
    /// A fetcher trusting the system roots and `settings.ca_file`.
    pub fn new(settings: &FetchSettings) -> Result<Self, FetchError> {
        Ok(Self {
            http: guarded_client(settings, TIMEOUT)?,
            allow_private: settings.allow_private_networks,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
        })
    }

    /// The JSON object at `url` (at most `max` bytes), from the cache when fresh.
    pub async fn json(&self, url: &str, max: usize) -> Result<Arc<Value>, FetchError> {
        let now = Instant::now();
        if let Some(hit) = self.cache.lock().ok().and_then(|c| {
            c.get(url)
                .filter(|e| e.until > now)
                .map(|e| e.value.clone())
        }) {
            return hit;
        }
        let Ok(_running) = self.in_flight.try_acquire() else {
            return Err(FetchError::Busy {
                url: url.to_owned(),
            });
        };
        let (value, ttl) = match self.fetch(url, max).await {
            Ok((v, ttl)) => (Ok(Arc::new(v)), ttl),
            Err(e) => (Err(e), FAILURE_TTL),
        };
        if !ttl.is_zero()
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, e| e.until > now);
            }
            if cache.len() >= CACHE_ENTRIES
                && let Some(k) = cache.keys().next().cloned()
            {
                cache.remove(&k);
            }
            cache.insert(
                url.to_owned(),
                Entry {
                    until: now + ttl,
                    value: value.clone(),
                },
            );
        }
        value
    }

    /// `url` parsed, if it is https and not a special-use address literal.
    fn checked_url(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        check_url(url, self.allow_private)
    }

    /// POSTs `body` as JSON to `url` (a notification: CIBA ping, an approval webhook) with the
    /// same guards, and an optional bearer token; any 2xx is success.
    pub async fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<(), FetchError> {
        let parsed = self.checked_url(url)?;
        let mut req = self.http.post(parsed).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| FetchError::Transport {
            url: url.to_owned(),
            why: error_chain(&e),
        })?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        Ok(())
    }

    async fn fetch(&self, url: &str, max: usize) -> Result<(Value, Duration), FetchError> {
        let parsed = self.checked_url(url)?;
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_owned(),
            why: error_chain(&e),
        };
        let resp = self
            .http
            .get(parsed)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(transport)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let ttl = cache_ttl(resp.headers());
        let body = read_limited(url, resp, max).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| FetchError::NotJson {
            url: url.to_owned(),
            why: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(FetchError::NotJson {
                url: url.to_owned(),
                why: "not an object".into(),
            });
        }
        Ok((value, ttl))
    }
}

/// `builder` trusting the extra CA certificates (PEM) in `path` too.
pub fn with_ca_file(
    mut builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> Result<reqwest::ClientBuilder, FetchError> {
    let bad = |why: String| FetchError::CaFile {
        path: path.to_owned(),
        why,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    for c in certs_from_pem(&pem).map_err(|e| bad(e.to_string()))? {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_der(&c).map_err(|e| bad(e.to_string()))?,
        );
    }
    Ok(builder)
}

/// The cache lifetime a response allows (RFC 9111 §5.2.2).
fn cache_ttl(headers: &reqwest::header::HeaderMap) -> Duration {
    let mut ttl = DEFAULT_TTL;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Duration::ZERO;
            }
            if let Some(secs) = lower.strip_prefix("max-age=")
                && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
            {
                ttl = Duration::from_secs(secs);
            }
        }
    }
    ttl.min(MAX_TTL)
}

/// An error and its causes on one line (reqwest hides the cause behind "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_addresses() {
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(is_special_use(special.parse().unwrap()), "{special}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_special_use(public.parse().unwrap()), "{public}");
        }
    }

    /// A server that answers every connection with `head` then `chunks` chunks of 64 KiB.
    async fn streaming_server(head: &'static str, chunks: usize) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 64 << 10];
                    for _ in 0..chunks {
                        let frame = format!("{:x}\r\n", chunk.len());
                        if conn.write_all(frame.as_bytes()).await.is_err()
                            || conn.write_all(&chunk).await.is_err()
                            || conn.write_all(b"\r\n").await.is_err()
                        {
                            return;
                        }
                    }
                    let _ = conn.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        url
    }

    /// Issue 16: a body is refused as soon as it passes the bound, whether its length was
    /// declared or it streams on (chunked), never read whole first.
    #[tokio::test]
    async fn bodies_are_bounded_while_they_arrive() {
        let http = reqwest::Client::new();
        let chunked = streaming_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            1 << 14,
        )
        .await;
        let resp = http.get(&chunked).send().await.unwrap();
        assert!(matches!(
            read_limited(&chunked, resp, 1 << 20).await,
            Err(FetchError::TooLarge { .. })
        ));
        let declared =
            streaming_server("HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n", 0).await;
        let resp = http.get(&declared).send().await.unwrap();
        assert!(matches!(
            read_limited(&declared, resp, 1 << 20).await,
            Err(FetchError::TooLarge { .. })
        ));
        let small =
            streaming_server("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", 2).await;
        let resp = http.get(&small).send().await.unwrap();
        assert_eq!(
            read_limited(&small, resp, 1 << 20).await.unwrap().len(),
            128 << 10
        );
    }

    /// Issue 19: a flood of fresh URLs whose servers never answer holds at most `IN_FLIGHT`
    /// fetches; the next is refused at once, not queued, and not remembered as a failure.
    #[tokio::test]
    async fn fetches_in_flight_are_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                conns.push(conn); // accepted, never answered
            }
        });
        let fetcher = Arc::new(
            Fetcher::new(&FetchSettings {
                ca_file: None,
                allow_private_networks: true,
            })
            .unwrap(),
        );
        let slow: Vec<_> = (0..IN_FLIGHT)
            .map(|i| {
                let f = fetcher.clone();
                tokio::spawn(async move { f.json(&format!("https://{addr}/c/{i}"), 1024).await })
            })
            .collect();
        while fetcher.in_flight.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let url = format!("https://{addr}/c/next");
        assert!(matches!(
            fetcher.json(&url, 1024).await,
            Err(FetchError::Busy { .. })
        ));
        assert!(fetcher.cache.lock().unwrap().get(&url).is_none());
        for f in slow {
            assert!(matches!(
                f.await.unwrap(),
                Err(FetchError::Transport { .. })
            ));
        }
        assert_eq!(fetcher.in_flight.available_permits(), IN_FLIGHT);
        held.abort();
    }

    #[test]
    fn cache_lifetimes() {
        let h = |v: &str| {
            let mut m = reqwest::header::HeaderMap::new();
            m.insert(reqwest::header::CACHE_CONTROL, v.parse().unwrap());
            cache_ttl(&m)
        };
        assert_eq!(cache_ttl(&reqwest::header::HeaderMap::new()), DEFAULT_TTL);
        assert_eq!(h("public, max-age=60"), Duration::from_secs(60));
        assert_eq!(h("max-age=99999999"), MAX_TTL);
        assert_eq!(h("no-store"), Duration::ZERO);
        assert_eq!(h("max-age=600, no-cache"), Duration::ZERO);
    }
}
