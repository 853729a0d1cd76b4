//! The forward to a route's upstream: a pooled hyper client (HTTP/1.1, TLS by rustls with the
//! gateway's X509-SVID as client certificate) and the upstream's URL parsed once per route, so
//! a forward builds its request URI from parts instead of parsing a URL (a general-purpose
//! client re-parsed each request's URL twice, IDNA host processing included: ~4 % of the
//! gateway's CPU in issue 17's profile, with redirect and cookie layers a proxy never uses).

use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::GatewayError;

/// The pooled client every route's forwards share.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A client for upstreams over `tls` (or plain HTTP where the route says `http`).
pub fn client(tls: rustls::ClientConfig) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https)
}

/// A route's upstream, parsed once: a forward only adds its path and query.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The upstream's own path, without its trailing slash (empty for the root).
    base_path: String,
}

impl Upstream {
    /// Parses an `http` or `https` URL with a host (its query and fragment are not kept; user
    /// information is refused: credentials do not belong in a route's URL).
    pub fn parse(url: &str) -> Result<Self, GatewayError> {
        let bad = |why: String| GatewayError::Config(format!("upstream {url:?}: {why}"));
        let u = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let scheme = match u.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            _ => return Err(bad("must be an http or https URL".into())),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad("must not carry a user name or password".into()));
        }
        // The host as the URL parser serialized it (IDNA applied, IPv6 in brackets), once.
        let host = u.host_str().ok_or_else(|| bad("must name a host".into()))?;
        let authority = match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: Authority::try_from(authority).map_err(|e| bad(e.to_string()))?,
            base_path: u.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The URI of `path` (absolute, already canonical: nothing in it is resolved or
    /// re-encoded) with `query` under the upstream's own path; `None` if it is not a valid
    /// request target.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let mut target = String::with_capacity(self.base_path.len() + path.len() + 64);
        target.push_str(&self.base_path);
        target.push_str(path);
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(target).ok()?)
            .build()
            .ok()
    }
}

/// Sends `req`; the answer's head must come within `timeout`, and its body may pause no longer
/// than `timeout` between two frames (a stream, such as an MCP server's event stream, may run
/// longer as a whole, as behind nginx's `proxy_read_timeout`).
pub async fn send(
    client: &UpstreamClient,
    req: Request<Body>,
    timeout: Duration,
) -> Result<Response<Body>, String> {
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(resp.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(timeout, body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_once_and_refuse_what_they_cannot_forward_to() {
        let u = Upstream::parse("https://Tool.example:8443/api/?old=1#f").unwrap();
        assert_eq!(
            u.uri("/x", Some("a=b")).unwrap().to_string(),
            "https://tool.example:8443/api/x?a=b"
        );
        assert_eq!(
            Upstream::parse("http://[::1]:9000")
                .unwrap()
                .uri("", None)
                .unwrap()
                .to_string(),
            "http://[::1]:9000/"
        );
        assert_eq!(
            Upstream::parse("http://bücher.example")
                .unwrap()
                .uri("/", None)
                .unwrap()
                .to_string(),
            "http://xn--bcher-kva.example/"
        );
        for bad in [
            "ftp://tool/",
            "unix:/run/tool.sock",
            "http://user:pw@tool/",
            "http://",
            "not a url",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
        // A target a request line cannot carry is refused, not forwarded re-encoded.
        assert!(u.uri("/a b", None).is_none());
    }

    fn plain_client() -> UpstreamClient {
        let tls = rustls::ClientConfig::builder_with_provider(aims_authn::mtls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        client(tls)
    }

    /// A local upstream that reads a request and then writes `answer` (if any) and stalls.
    async fn stalling_upstream(answer: Option<&'static str>) -> Upstream {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            if let Some(a) = answer {
                conn.write_all(a.as_bytes()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        Upstream::parse(&format!("http://{addr}")).unwrap()
    }

    fn get(u: &Upstream) -> Request<Body> {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = u.uri("/t", None).unwrap();
        req
    }

    /// Timeouts are bounded: an upstream that never answers is given up on; one that stops
    /// in the middle of its answer has the stream cut, not held open.
    #[tokio::test]
    async fn a_stalled_upstream_is_given_up_on() {
        let client = plain_client();
        let silent = stalling_upstream(None).await;
        let started = std::time::Instant::now();
        let err = send(&client, get(&silent), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let half = stalling_upstream(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part",
        ))
        .await;
        let resp = send(&client, get(&half), Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "a stalled body ends in an error");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
