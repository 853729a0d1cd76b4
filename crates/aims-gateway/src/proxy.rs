//! The enforcement point (AIMS AZ-7, AZ-8, AZ-34, AZ-37, AZ-38, MO-8): per request, authenticate
//! the caller, validate its token for this resource (no passthrough), decide with the PDP,
//! record the decision, then forward without the caller's credentials and with a transaction
//! token — or refuse with the challenge OAuth and MCP clients act on.

use std::sync::Arc;

use aims_authn::layer::{WorkloadAuthConfig, authenticate};
use aims_authn::transport::ConnectionInfo;
use aims_authn::wpt::TXN_TOKEN_HEADER;
use aims_core::{RequestTarget, SpiffeId};
use aims_policy::{Action, Detail, Facts, Pdp, Principal, Query, Target, Verdict};
use aims_token::TokenError;
use aims_token::claims::{AT_TYP, AccessClaims, verify_own};
use aims_token::dpop::DpopVerifier;
use aims_token::presentation::{DpopPresented, SenderProof, check_presentation};
use aims_token::wire::PROTECTED_RESOURCE_METADATA_PATH;
use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Limited;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::audit_sink::AuditSink;
use crate::decision_cache::{self, DecisionCache};
use crate::mcp::{self, McpRequest};
use crate::server_client::ServerClient;
use crate::settings::{Route, RouteKind};
use crate::token_cache::{TokenCache, token_hash};
use crate::trace;
use crate::txn::{Minted, TxnTokens};

/// The largest upstream answer to `tools/list` that is read to filter it.
const MAX_TOOL_LIST: usize = 4 << 20;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the caller's credentials, never forwarded.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "dpop",
    "workload-identity-token",
    "signature",
    "signature-input",
    TXN_TOKEN_HEADER,
    "traceparent",
    "x-aims-agent",
    "x-aims-subject",
];

/// Why the gateway does not accept a presented access token (each answered 401
/// `invalid_token`, RFC 6750 §3.1, with the reason as `error_description`).
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    /// The token or the proof that comes with it fails a check (RFC 9068 §4, RFC 8705 §3,
    /// RFC 9449 §7).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Introspection says it is not active (RFC 7662 §2.2): revoked, expired or unknown.
    #[error("the token is not active (revoked, expired or unknown)")]
    Inactive,
    /// The authorization server could not be asked (its keys, its introspection): refused,
    /// fail closed.
    #[error("the token's status cannot be checked now")]
    Unchecked,
}

/// A route with what is derived from it.
pub struct CompiledRoute {
    /// The route.
    pub route: Route,
    /// The resource identifier tokens must name.
    pub resource: String,
    /// Where its protected resource metadata is served.
    pub metadata_path: String,
    /// Its metadata URL (for `WWW-Authenticate`).
    pub metadata_url: String,
    /// The upstream, parsed once: a forward adds only its path and query.
    pub upstream: crate::upstream::Upstream,
    /// Its scope hierarchy, closed.
    pub scopes: crate::scopes::ScopeHierarchy,
}

impl CompiledRoute {
    /// The scopes a token needs for `tool` of this (MCP) route: its own, or the route's.
    fn scopes_for(&self, tool: &str) -> Vec<String> {
        self.route
            .tool_scopes
            .get(tool)
            .cloned()
            .unwrap_or_else(|| self.route.required_scopes.clone())
    }
}

/// The gateway's shared state.
pub struct Gateway {
    /// Routes, longest prefix first.
    pub(crate) routes: Vec<CompiledRoute>,
    /// The URL clients use.
    pub(crate) public_url: String,
    /// The AIMS server.
    pub(crate) server: Arc<ServerClient>,
    /// The decision point (policy synced from the server).
    pub(crate) pdp: Arc<Pdp>,
    /// Decision records.
    pub(crate) audit: Arc<AuditSink>,
    /// Upstream client.
    pub(crate) upstream: crate::upstream::UpstreamClient,
    /// How long an upstream may take to answer, and to pause within its answer.
    pub(crate) upstream_timeout: std::time::Duration,
    /// DPoP proofs.
    pub(crate) dpop: DpopVerifier,
    /// WPT, HTTP signatures and mTLS.
    pub(crate) workload_auth: WorkloadAuthConfig,
    /// Validated tokens.
    pub(crate) tokens: TokenCache,
    /// Recent decisions.
    pub(crate) decisions: DecisionCache,
    /// The largest JSON-RPC body read.
    pub(crate) max_json_body: usize,
    /// The largest body forwarded.
    pub(crate) max_body: usize,
    /// The gateway's SPIFFE ID (the audit source is set by the server from its SVID).
    pub(crate) spiffe_id: Option<SpiffeId>,
    /// Transaction tokens.
    pub(crate) txn: TxnTokens,
}

/// Who called, as established.
struct Caller {
    principal: Principal,
    /// The access token and its claims, when one was presented.
    token: Option<(String, Arc<AccessClaims>)>,
}

/// A refusal, as the client sees it.
struct Refusal {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

fn now_unix() -> i64 {
    aims_core::unix_seconds(std::time::SystemTime::now())
}

/// A quoted-string for a challenge parameter (RFC 9110 §5.6.4), without what would need
/// escaping.
fn quoted(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("\"{clean}\"")
}

impl Refusal {
    fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(self.body.to_string()));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

/// What a revocation signal names (AIMS MO-5): the hook the signals layer calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One token, by `jti`.
    Token(String),
    /// Every token of a client (an agent's SPIFFE ID).
    Client(String),
    /// Every token for a subject (a person, or an agent acting for itself).
    Subject(String),
    /// Everything (e.g. a key compromise).
    All,
}

impl Gateway {
    /// Its routes, longest prefix first.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// Its SPIFFE ID.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// Drops the validated tokens a revocation names, and every cached decision, at once: the
    /// next request is checked with the AS and decided again. Returns how many tokens were
    /// dropped.
    pub fn revoke(&self, what: &Revoked) -> usize {
        self.decisions.forget(|_| true);
        match what {
            Revoked::Token(jti) => self.tokens.forget(|c| &c.jti == jti),
            Revoked::Client(id) => self.tokens.forget(|c| &c.client_id == id),
            Revoked::Subject(sub) => self.tokens.forget(|c| &c.sub == sub),
            Revoked::All => self.tokens.forget(|_| true),
        }
    }

    /// Decides `query`, reusing a decision made for the identical request at the same policy
    /// version within the decision TTL.
    fn decide(&self, query: &Query) -> Arc<Verdict> {
        let version = self.pdp.current().version;
        let key = decision_cache::key(query, version);
        if let Some(v) = self.decisions.get(&key) {
            return v;
        }
        let verdict = Arc::new(self.pdp.decide(query));
        self.decisions.put(key, verdict.clone(), |_| false);
        verdict
    }

    /// The route of `target` (longest prefix first), matched on the canonical path.
    fn route_for(&self, target: &RequestTarget) -> Option<&CompiledRoute> {
        self.routes
            .iter()
            .find(|r| target.is_under(&r.route.path_prefix))
    }

    /// RFC 6750 §3 / RFC 9728 §5.1: the challenge that sends a client to the metadata.
    fn challenge(
        &self,
        route: &CompiledRoute,
        scheme: &str,
        error: Option<(&str, &str)>,
        scopes: &[String],
    ) -> String {
        let mut params = vec![format!("resource_metadata={}", quoted(&route.metadata_url))];
        if let Some((code, description)) = error {
            params.insert(0, format!("error={}", quoted(code)));
            params.push(format!("error_description={}", quoted(description)));
        }
        if !scopes.is_empty() {
            params.push(format!("scope={}", quoted(&scopes.join(" "))));
        }
        format!("{scheme} {}", params.join(", "))
    }

    /// RFC 9728 §2: this route's protected resource metadata.
    fn metadata(&self, route: &CompiledRoute) -> Value {
        let mut scopes: Vec<String> = route.route.required_scopes.clone();
        let tool_scopes = route.route.tool_scopes.values().flatten();
        for s in tool_scopes
            .map(String::as_str)
            .chain(route.scopes.broader())
        {
            if !scopes.iter().any(|known| known == s) {
                scopes.push(s.to_owned());
            }
        }
        json!({
            "resource": route.resource,
            "authorization_servers": [self.server.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": route.route.name,
            "tls_client_certificate_bound_access_tokens": true,
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
        })
    }

    /// Validates `token` for `route`: the signature, issuer and lifetime once (then cached),
    /// its status by introspection (cached for the recheck interval; a revoked token is
    /// refused once that runs out), then per request the audience and sender constraint.
    async fn validate(
        &self,
        route: &CompiledRoute,
        token: &str,
        proof: &SenderProof<'_>,
    ) -> Result<Arc<AccessClaims>, TokenRefusal> {
        let now = now_unix();
        let key = token_hash(token);
        let claims = match self.tokens.get(&key) {
            Some(c) => c,
            None => {
                let claims = self.check_token(token, now).await?;
                let claims = Arc::new(claims);
                self.tokens.put(key, claims.clone(), |c| c.exp <= now);
                claims
            }
        };
        check_presentation(&claims, &route.resource, token, proof, &self.dpop, now)?;
        Ok(claims)
    }

    async fn check_token(&self, token: &str, now: i64) -> Result<AccessClaims, TokenRefusal> {
        let keys = self.server.keys();
        if token.matches('.').count() == 2 {
            match verify_own::<AccessClaims>(keys, &self.server.issuer, token, AT_TYP, now) {
                Err(TokenError::UnknownKey(_)) => {
                    // A key published since the last fetch: fetch again, once.
                    self.server.refresh_keys().await.map_err(|e| {
                        tracing::error!(error = %e, "token keys not fetched; refusing the token");
                        TokenRefusal::Unchecked
                    })?;
                    verify_own::<AccessClaims>(keys, &self.server.issuer, token, AT_TYP, now)?;
                }
                other => {
                    other?;
                }
            }
        }
        match self.server.introspect(token).await {
            Ok(Some(claims)) => Ok(claims),
            Ok(None) => Err(TokenRefusal::Inactive),
            Err(e) => {
                tracing::error!(error = %e, "introspection failed; refusing the token");
                Err(TokenRefusal::Unchecked)
            }
        }
    }

    async fn authenticate(
        &self,
        route: &CompiledRoute,
        target: &RequestTarget,
        req: Request<Body>,
    ) -> Result<(Request<Body>, Caller), Refusal> {
        let authz = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(s, t)| (s.to_owned(), t.trim().to_owned()));
        let conn = req.extensions().get::<ConnectionInfo>().cloned();
        if let Some((scheme, token)) = authz
            .as_ref()
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer") || s.eq_ignore_ascii_case("dpop"))
        {
            let dpop_header = req
                .headers()
                .get("dpop")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let uri = format!("{}{}", self.public_url, target.path());
            let method = req.method().as_str().to_owned();
            let cert = conn
                .as_ref()
                .and_then(|c| c.peer_certificates.as_ref())
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let proof = SenderProof {
                scheme,
                client_certificate: cert.as_deref(),
                dpop: dpop_header.as_deref().map(|proof| DpopPresented {
                    proof,
                    method: &method,
                    uri: &uri,
                }),
            };
            return match self.validate(route, token, &proof).await {
                Ok(claims) => {
                    let principal = match SpiffeId::parse(&claims.client_id) {
                        Ok(id) => Principal::agent(id),
                        Err(_) => Principal::Workload {
                            client_id: claims.client_id.clone(),
                        },
                    };
                    Ok((
                        req,
                        Caller {
                            principal,
                            token: Some((token.clone(), claims)),
                        },
                    ))
                }
                Err(refused) => Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    challenge: Some(self.challenge(
                        route,
                        if scheme.eq_ignore_ascii_case("dpop") {
                            "DPoP"
                        } else {
                            "Bearer"
                        },
                        Some(("invalid_token", &refused.to_string())),
                        &[],
                    )),
                    body: json!({"error": "invalid_token", "error_description": refused.to_string()}),
                }),
            };
        }
        match authenticate(&self.workload_auth, req).await {
            Ok((req, workload, _)) => {
                let principal = match SpiffeId::parse(workload.id.as_str()) {
                    Ok(id) => Principal::agent(id),
                    Err(_) => Principal::Workload {
                        client_id: workload.id.to_string(),
                    },
                };
                Ok((
                    req,
                    Caller {
                        principal,
                        token: None,
                    },
                ))
            }
            Err(aims_authn::AuthnError::Missing) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                challenge: Some(self.challenge(
                    route,
                    "Bearer",
                    None,
                    &route.route.required_scopes,
                )),
                body: json!({"error": "invalid_request", "error_description": "authenticate: an access token, a WPT, a WIMSE HTTP signature or an X509-SVID"}),
            }),
            Err(e) => Err(Refusal {
                status: e.status(),
                challenge: Some("WPT".into()),
                body: json!({"error": e.code(), "error_description": e.to_string()}),
            }),
        }
    }

    /// What policy knows of the call; the token's scopes with every scope they imply on this
    /// route (MCP 2026-07-28 scope hierarchies).
    fn facts(
        &self,
        route: &CompiledRoute,
        caller: &Caller,
        target: &RequestTarget,
        req: &Request<Body>,
    ) -> Facts {
        let mut facts = Facts {
            time: now_unix(),
            source_ip: req
                .extensions()
                .get::<ConnectionInfo>()
                .map(|c| c.remote.ip()),
            method: Some(req.method().as_str().to_owned()),
            path: Some(target.path().to_owned()),
            ..Facts::default()
        };
        if let Some((_, c)) = &caller.token {
            facts.scopes = route.scopes.expand(c.scopes());
            facts.chain = c.act.as_ref().map(|a| a.chain()).unwrap_or_default();
            facts.authorization_details = c
                .authorization_details
                .as_ref()
                .map(Detail::from_json)
                .unwrap_or_default();
            if c.sub != c.client_id {
                facts.delegated_subject = Some(c.sub.clone());
            }
            facts.approval = c.approval.clone();
        }
        facts
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    aims_authn::layer::body_bytes(body, limit)
        .await
        .map_err(|e| match e {
            aims_authn::AuthnError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves one request in its trace's span, counted and timed by outcome (Prometheus
/// `aims_gateway_*`).
pub async fn handle(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response<Body> {
    let started = std::time::Instant::now();
    let ids = trace::from_headers(req.headers());
    let span = trace::request_span(req.method(), req.uri().path(), &ids);
    let resp = serve(gw, req, ids.trace_id, span.clone())
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", resp.status().as_u16());
    let outcome = match resp.status().as_u16() {
        200..=399 => "forwarded",
        401 => "unauthenticated",
        403 => "denied",
        400..=499 => "rejected",
        _ => "failed",
    };
    metrics::counter!("aims_gateway_requests_total", "outcome" => outcome).increment(1);
    metrics::histogram!("aims_gateway_request_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    resp
}

async fn serve(
    gw: Arc<Gateway>,
    req: Request<Body>,
    trace_id: String,
    span: tracing::Span,
) -> Response<Body> {
    match gw.handle(req, &trace_id, &span).await {
        Ok(resp) | Err(resp) => resp,
    }
}

/// A request's answer before it reaches the upstream: a refusal, or a metadata document.
type Early = Response<Body>;

/// What policy is asked about a request, and what its record names.
struct Decision {
    query: Query,
    verdict: Arc<Verdict>,
    resource_name: String,
}

impl Gateway {
    /// The stages of a call: parse the target once, route, authenticate, read the MCP call,
    /// authorize, obtain the transaction token, record the decision, refuse or forward.
    async fn handle(
        &self,
        req: Request<Body>,
        trace_id: &str,
        span: &tracing::Span,
    ) -> Result<Response<Body>, Early> {
        // AIMS AZ-7: one parsed target for the route, the token's audience, the policy and the
        // forward; what could be read two ways is refused.
        let request_target = parse_target(&req).map_err(|e| {
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_request", "error_description": e.to_string()}),
            )
        })?;
        if let Some(metadata) = self.resource_metadata(&request_target) {
            return Ok(metadata);
        }
        let route = self
            .route_for(&request_target)
            .ok_or_else(|| json_response(StatusCode::NOT_FOUND, &json!({"error": "no route"})))?;
        let (req, caller) = self
            .authenticate(route, &request_target, req)
            .await
            .map_err(Refusal::into_response)?;
        let (req, mcp) = self.read_mcp(route, req).await?;
        let decision = self.authorize(route, &caller, &request_target, &req, mcp.as_ref());
        // An allowed request gets its transaction token first, so that the decision record
        // carries the transaction's id (`txn`) as its correlation id (AIMS MO-9, MO-11).
        let (txn, correlation) = self
            .transaction_token(
                route,
                &caller,
                (req.method(), &request_target, req.headers()),
                &decision,
                trace_id,
            )
            .await?;
        let (txn, issued) = match txn {
            Some(m) => (Some(m.token), m.issued),
            None => (None, None),
        };
        self.record(&decision, correlation, issued).await?;
        if !decision.verdict.allowed {
            return Err(self.insufficient(route, &decision));
        }
        let exchanged = self.upstream_token(route, &caller).await?;
        // The upstream continues the trace, the gateway's span as its parent.
        let traceparent = trace::upstream_traceparent(span, trace_id);
        let upstream_tokens = UpstreamTokens {
            txn: txn.as_deref(),
            bearer: exchanged.as_deref(),
            traceparent: &traceparent,
        };
        Ok(forward(
            self,
            route,
            &request_target,
            req,
            upstream_tokens,
            mcp.as_ref(),
            &decision.query,
        )
        .await)
    }

    /// RFC 9728 §3: the protected resource metadata of the route the path names (or of the
    /// only route).
    fn resource_metadata(&self, target: &RequestTarget) -> Option<Response<Body>> {
        let path = target.path();
        let rest = path.strip_prefix(PROTECTED_RESOURCE_METADATA_PATH)?;
        let route = self
            .routes
            .iter()
            .find(|r| r.metadata_path == path)
            .or_else(|| (rest.is_empty() && self.routes.len() == 1).then(|| &self.routes[0]));
        Some(match route {
            Some(r) => json_response(StatusCode::OK, &self.metadata(r)),
            None => json_response(StatusCode::NOT_FOUND, &json!({"error": "no such resource"})),
        })
    }

    /// MCP: the JSON-RPC body says which tool (AIMS AZ-37: tools/call visible to policy).
    async fn read_mcp(
        &self,
        route: &CompiledRoute,
        req: Request<Body>,
    ) -> Result<(Request<Body>, Option<McpRequest>), Early> {
        if route.route.kind != RouteKind::Mcp || req.method() != http::Method::POST {
            return Ok((req, None));
        }
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, self.max_json_body)
            .await
            .map_err(|status| {
                let e = mcp::JsonRpcError {
                    id: Value::Null,
                    code: rmcp::model::ErrorCode::INVALID_REQUEST,
                    message: format!(
                        "body larger than {} bytes or unreadable",
                        self.max_json_body
                    ),
                };
                json_response(status, &e.body())
            })?;
        match mcp::parse(&bytes, &parts.headers) {
            Ok(m) => Ok((Request::from_parts(parts, Body::from(bytes)), Some(m))),
            Err(e) => Err(json_response(StatusCode::BAD_REQUEST, &e.body())),
        }
    }

    /// The policy question for this call (a tool, or an MCP tool by name) and its verdict.
    fn authorize(
        &self,
        route: &CompiledRoute,
        caller: &Caller,
        target: &RequestTarget,
        req: &Request<Body>,
        mcp: Option<&McpRequest>,
    ) -> Decision {
        let (action, policy_target, resource_name) = match mcp {
            Some(McpRequest::CallTool { name, arguments }) => (
                Action::CallTool,
                Target::McpTool {
                    server: route.route.name.clone(),
                    name: name.clone(),
                    required_scopes: route.scopes_for(name),
                    arguments: arguments.clone(),
                },
                format!("{}/{name}", route.route.name),
            ),
            _ => (
                Action::Call,
                Target::Tool {
                    name: route.route.name.clone(),
                    required_scopes: route.route.required_scopes.clone(),
                },
                route.route.name.clone(),
            ),
        };
        let query = Query {
            principal: caller.principal.clone(),
            action,
            target: policy_target,
            facts: self.facts(route, caller, target, req),
        };
        let verdict = self.decide(&query);
        Decision {
            query,
            verdict,
            resource_name,
        }
    }

    /// The transaction token for an allowed call on a route that forwards one, and the task's
    /// id: a transaction the caller forwarded keeps its `txn`; otherwise a new transaction
    /// gets one; without either, the trace id.
    async fn transaction_token(
        &self,
        route: &CompiledRoute,
        caller: &Caller,
        (method, target, headers): (&http::Method, &RequestTarget, &HeaderMap),
        decision: &Decision,
        trace_id: &str,
    ) -> Result<(Option<Minted>, String), Early> {
        // draft-ietf-oauth-transaction-tokens (Txn-Token header): exactly one token.
        let incoming_txn =
            aims_authn::wpt::single_header(headers, TXN_TOKEN_HEADER).map_err(|e| {
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request", "error_description": e.to_string()}),
                )
            })?;
        if !decision.verdict.allowed || !route.route.transaction_tokens {
            return Ok((None, trace_id.to_owned()));
        }
        let rctx = || {
            json!({
                "req_ip": decision.query.facts.source_ip.map(|ip| ip.to_string()),
                "method": method.as_str(),
                "path": target.path(),
            })
        };
        let minted = match (incoming_txn, &caller.token) {
            (Some(t), _) => self.txn.replace(t, rctx()).await,
            (None, Some((token, claims))) => {
                let details = json!({"tool": route.route.name, "trace": trace_id});
                self.txn.start(token, claims, rctx(), details).await
            }
            // A caller without a token (X509-SVID, WPT, HTTP signature): no transaction.
            (None, None) => return Ok((None, trace_id.to_owned())),
        };
        match minted {
            Ok(m) => {
                let trace = m.trace.clone();
                Ok((Some(m), trace))
            }
            // A transaction token the caller forwarded that will not be replaced: the
            // caller's credential is bad, not the service (txn-tokens §8).
            Err(crate::GatewayError::Refused(e)) if incoming_txn.is_some() => {
                tracing::warn!(error = %e, "forwarded transaction token refused");
                let description = "the forwarded transaction token is not valid";
                Err(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    challenge: Some(self.challenge(
                        route,
                        "Bearer",
                        Some(("invalid_token", description)),
                        &[],
                    )),
                    body: json!({"error": "invalid_token", "error_description": description}),
                }
                .into_response())
            }
            Err(e) => {
                tracing::error!(error = %e, "no transaction token; refusing to forward");
                Err(json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({"error": "temporarily_unavailable", "error_description": "no transaction token could be obtained"}),
                ))
            }
        }
    }

    /// AIMS MO-8: the decision is recorded before it takes effect; one that cannot be is
    /// refused.
    async fn record(
        &self,
        decision: &Decision,
        correlation: String,
        issued: Option<String>,
    ) -> Result<(), Early> {
        let mut record = decision.verdict.audit_record(
            &decision.query,
            decision.resource_name.clone(),
            aims_core::unix_millis(std::time::SystemTime::now()),
        );
        record.correlation_id = Some(correlation);
        record.issued = issued;
        self.audit.record(record).await.map_err(|e| {
            tracing::error!(error = %e, "decision not recorded; refusing the request");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "temporarily_unavailable", "error_description": "the decision could not be recorded"}),
            )
        })
    }

    /// RFC 6750 §3.1 `insufficient_scope`, with the scopes the call needs.
    fn insufficient(&self, route: &CompiledRoute, decision: &Decision) -> Early {
        let needed = match &decision.query.target {
            Target::McpTool {
                required_scopes, ..
            }
            | Target::Tool {
                required_scopes, ..
            } => required_scopes.clone(),
            Target::Resource { .. } => Vec::new(),
        };
        let version = decision.verdict.policy_version;
        // AIMS AZ-27, AZ-28: what policy allows only with a person's approval is a step-up the
        // client can take (a token obtained through CIBA carries the approval).
        let description = if self.pdp.allowed_with_approval(&decision.query) {
            format!(
                "policy version {version} allows this only with a person's approval: obtain a token through CIBA"
            )
        } else {
            format!("policy version {version} does not allow this")
        };
        Refusal {
            status: StatusCode::FORBIDDEN,
            challenge: Some(self.challenge(
                route,
                "Bearer",
                Some(("insufficient_scope", &description)),
                &needed,
            )),
            body: json!({"error": "insufficient_scope", "error_description": description, "scope": needed.join(" ")}),
        }
        .into_response()
    }

    /// An upstream that takes OAuth tokens gets one for itself, never the caller's.
    async fn upstream_token(
        &self,
        route: &CompiledRoute,
        caller: &Caller,
    ) -> Result<Option<String>, Early> {
        let (Some(audience), Some((token, claims))) =
            (&route.route.exchange_audience, &caller.token)
        else {
            return Ok(None);
        };
        self.server
            .exchange(token, audience, claims.scope.as_deref().unwrap_or_default())
            .await
            .map(Some)
            .map_err(|e| {
                tracing::error!(error = %e, "token exchange failed; refusing to forward");
                json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({"error": "temporarily_unavailable", "error_description": "no token for the upstream could be obtained"}),
                )
            })
    }
}

/// The request's target, canonical, once its authority and `Host` agree. An HTTP/2 request
/// must carry `:authority` (RFC 9113 §8.3.1; our h2 drops a Unix socket path given as one).
fn parse_target(req: &Request<Body>) -> Result<RequestTarget, aims_core::TargetError> {
    if req.version() == http::Version::HTTP_2 && req.uri().authority().is_none() {
        return Err(aims_core::TargetError::Authority);
    }
    let hosts: Vec<&str> = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().map_err(|_| aims_core::TargetError::Authority))
        .collect::<Result<_, _>>()?;
    RequestTarget::check_authority(req.uri().authority().map(|a| a.as_str()), hosts.into_iter())?;
    RequestTarget::parse(req.uri().path(), req.uri().query())
}

/// What the upstream receives instead of the caller's credentials.
#[derive(Clone, Copy)]
struct UpstreamTokens<'a> {
    /// A transaction token (`Txn-Token`).
    txn: Option<&'a str>,
    /// A token exchanged for the upstream (`Authorization: Bearer`).
    bearer: Option<&'a str>,
    /// The upstream's `traceparent`.
    traceparent: &'a str,
}

/// Where `target` goes upstream: the canonical path the route was chosen on and the policy
/// saw (nothing in it a URL parser would resolve or re-encode), without the route's prefix if it
/// strips it, under the upstream's own path, with the query. The upstream's scheme, host and
/// port were parsed once (its host's IDNA processing was a twentieth of the gateway's core when
/// the whole URL was parsed per request).
fn upstream_uri(route: &CompiledRoute, target: &RequestTarget) -> Option<http::Uri> {
    if route.route.strip_prefix {
        let path = target.path_without(&route.route.path_prefix);
        route.upstream.uri(&path, target.query())
    } else {
        route.upstream.uri(target.path(), target.query())
    }
}

async fn forward(
    gw: &Gateway,
    route: &CompiledRoute,
    target: &RequestTarget,
    req: Request<Body>,
    tokens: UpstreamTokens<'_>,
    mcp: Option<&McpRequest>,
    query: &Query,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Some(uri) = upstream_uri(route, target) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "the request target cannot be forwarded"}),
        );
    };
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    // The upstream sees the caller through the gateway: a transaction token, never the
    // caller's access token (MCP: no token passthrough).
    if let Some(v) = tokens.txn.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(HeaderName::from_static(TXN_TOKEN_HEADER), v);
    }
    if let Some(v) = tokens
        .bearer
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    // W3C Trace Context: the same trace, the gateway's hop as the parent span.
    if let Ok(v) = HeaderValue::from_str(tokens.traceparent) {
        headers.insert(HeaderName::from_static("traceparent"), v);
    }
    if let Ok(v) = HeaderValue::from_str(query.principal.id()) {
        headers.insert(HeaderName::from_static("x-aims-agent"), v);
    }
    if let Some(v) = query
        .facts
        .delegated_subject
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert(HeaderName::from_static("x-aims-subject"), v);
    }
    if let Some(ip) = query.facts.source_ip
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    let mut upstream_req = Request::new(Body::new(Limited::new(body, gw.max_body)));
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let upstream = match crate::upstream::send(&gw.upstream, upstream_req, gw.upstream_timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, route = %route.route.name, "upstream unreachable");
            return json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": "bad_gateway", "error_description": "the tool did not answer"}),
            );
        }
    };
    let (head, upstream_body) = upstream.into_parts();
    let status = head.status;
    let mut out_headers = head.headers;
    for name in DROPPED {
        out_headers.remove(*name);
    }
    if matches!(mcp, Some(McpRequest::ListTools)) && status.is_success() {
        let event_stream = out_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let bytes = match read_body(upstream_body, MAX_TOOL_LIST).await {
            Ok(b) => b,
            Err(_) => {
                return json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({"error": "bad_gateway", "error_description": "tools/list answer too large"}),
                );
            }
        };
        let allowed = |name: &str| {
            let mut q = query.clone();
            q.action = Action::CallTool;
            q.target = Target::McpTool {
                server: route.route.name.clone(),
                name: name.to_owned(),
                required_scopes: route.scopes_for(name),
                arguments: serde_json::Map::new(),
            };
            gw.pdp.decide(&q).allowed
        };
        let filtered = mcp::filter_tool_list(&bytes, event_stream, &allowed);
        out_headers.remove(header::CONTENT_LENGTH);
        let mut resp = Response::new(Body::from(filtered));
        *resp.status_mut() = status;
        *resp.headers_mut() = out_headers;
        return resp;
    }
    let mut resp = Response::new(upstream_body);
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: http::Version, uri: &str, hosts: &[&str]) -> Request<Body> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_upstream_gets_the_decided_path_under_its_own() {
        let route = |upstream: &str, strip: bool| CompiledRoute {
            route: Route {
                name: "wx".into(),
                path_prefix: "/wx".into(),
                upstream: upstream.into(),
                strip_prefix: strip,
                kind: RouteKind::Http,
                resource: None,
                required_scopes: Vec::new(),
                tool_scopes: Default::default(),
                scope_implies: Default::default(),
                transaction_tokens: false,
                exchange_audience: None,
            },
            resource: String::new(),
            metadata_path: String::new(),
            metadata_url: String::new(),
            upstream: crate::upstream::Upstream::parse(upstream).unwrap(),
            scopes: Default::default(),
        };
        let target =
            |uri: &str| parse_target(&req(http::Version::HTTP_11, uri, &["gw:1"])).unwrap();
        for (upstream, strip, uri, want) in [
            (
                "http://127.0.0.1:9000",
                true,
                "/wx/today?a=b",
                "http://127.0.0.1:9000/today?a=b",
            ),
            (
                "http://127.0.0.1:9000",
                false,
                "/wx/today",
                "http://127.0.0.1:9000/wx/today",
            ),
            (
                "http://tool:9000/api/",
                true,
                "/wx/t%C3%A9",
                "http://tool:9000/api/t%C3%A9",
            ),
            ("https://tool/api?old=1", true, "/wx", "https://tool/api/"),
            (
                "http://tool:9000",
                true,
                "/wx/a%20b?q=%2F",
                "http://tool:9000/a%20b?q=%2F",
            ),
        ] {
            assert_eq!(
                upstream_uri(&route(upstream, strip), &target(uri))
                    .unwrap()
                    .to_string(),
                want,
                "{upstream} {uri}"
            );
        }
    }

    #[test]
    fn one_target_or_a_refusal() {
        let ok = parse_target(&req(http::Version::HTTP_11, "/wx/to%64ay?a=b", &["gw:1"])).unwrap();
        assert_eq!(ok.to_string(), "/wx/today?a=b");
        let h2 = parse_target(&req(http::Version::HTTP_2, "https://gw:1/wx", &[])).unwrap();
        assert_eq!(h2.path(), "/wx");
        for (version, uri, hosts) in [
            // An HTTP/2 request whose :authority was dropped (a socket path) or absent.
            (http::Version::HTTP_2, "/wx", &[][..]),
            // :authority and Host disagree; two Hosts.
            (http::Version::HTTP_2, "https://gw:1/wx", &["evil:1"][..]),
            (http::Version::HTTP_11, "/wx", &["gw:1", "evil:1"][..]),
            (http::Version::HTTP_11, "https://evil:1/wx", &["gw:1"][..]),
            (http::Version::HTTP_11, "/wx/%2e%2e/mcp", &["gw:1"][..]),
        ] {
            assert!(
                parse_target(&req(version, uri, hosts)).is_err(),
                "{uri} {hosts:?}"
            );
        }
    }
}
