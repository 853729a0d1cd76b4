//! The authorization server over real HTTPS on 127.0.0.1 (AIMS AZ-4…AZ-26, PV-1…PV-6): client
//! authentication without secrets, the grants, sender constraints, delegation chains,
//! transaction tokens, introspection, revocation and cross-domain chaining — and every way a
//! client can get them wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{Clock as _, TrustDomain};
use aims_credentials::jose::{Audience, JwsHeader, sign};
use aims_credentials::{AuthorityPolicy, CaManager, KeyType, MemoryKeyManager, PrivateKey};
use aims_token::claims::AccessClaims;
use aims_token::presentation::{SenderProof, verify_access_token};
use aims_token::wire::{ACCESS_TOKEN_TYPE, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT};
use common::{
    As, JWT_SPIFFE_ASSERTION, RESOURCE, dpop_proof, dpop_verifier, id, start_as, start_as_in,
};
use serde_json::{Value, json};

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<none>")
}

/// A CA of `td` that is not the server's: its keys are in no bundle the server holds.
fn rogue(td: &str) -> CaManager {
    let ca = CaManager::new(
        TrustDomain::new(td).unwrap(),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now()).unwrap();
    ca
}

/// A JWT-SVID of `sub` for `a`'s issuer, signed by a CA of `td` that `a` does not trust.
fn rogue_jwt_svid(a: &As, td: &str, sub: &str) -> String {
    rogue(td)
        .active()
        .unwrap()
        .jwt
        .mint_jwt_svid(
            &id(sub),
            std::slice::from_ref(&a.issuer),
            Duration::from_secs(60),
            a.clock.now(),
        )
        .unwrap()
        .token
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn discovery_and_jwks() {
    let a = start_as("example.org", |_| {}).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m: Value = a
            .http
            .get(format!("{}{path}", a.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["issuer"], a.issuer.as_str());
        assert_eq!(m["token_endpoint"], a.token_url());
        let methods: Vec<&str> = m["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for needed in ["spiffe_jwt", "spiffe_x509", "spiffe_wit", "private_key_jwt"] {
            assert!(methods.contains(&needed), "{needed} in {methods:?}");
        }
        assert!(
            !methods.contains(&"client_secret_basic"),
            "secrets are off by default"
        );
        assert!(
            m["mtls_endpoint_aliases"]["token_endpoint"]
                .as_str()
                .unwrap()
                .ends_with("/oauth2/token")
        );
        assert!(m.get("registration_endpoint").is_none());
    }
    let jwks: Value = a
        .http
        .get(format!("{}/oauth2/jwks", a.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k["kid"].is_string() && k["alg"] == "ES256" && k["use"] == "sig")
    );
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "no private parts"
    );
}

#[tokio::test]
async fn client_credentials_with_a_jwt_svid_and_every_bad_assertion() {
    let a = start_as("example.org", |_| {}).await;
    let agent = "spiffe://example.org/agent/planner";
    let (s, v) = a.cc(agent, "read write").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    assert_eq!(v["scope"], "read write");
    assert!(v.get("refresh_token").is_none(), "RFC 6749 §4.4.3");
    let c = a.verify(v["access_token"].as_str().unwrap(), RESOURCE);
    // AIMS AZ-5/AZ-15: the agent is client_id, and for itself also sub.
    assert_eq!(c.client_id, agent);
    assert_eq!(c.sub, agent);
    assert_eq!(c.iss, a.issuer);
    assert_eq!(c.aud, Audience::One(RESOURCE.into()));
    assert_eq!(c.exp - c.iat, 300);
    assert!(c.act.is_none() && c.cnf.is_none());

    let good = a.jwt_svid(agent).await;
    let post = |extra: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_assertion_type", JWT_SPIFFE_ASSERTION.into()),
            ("resource", RESOURCE.into()),
        ];
        form.extend(extra);
        let a = &a;
        async move {
            let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, v, _) = a.post("/oauth2/token", &f).await;
            (s, v)
        }
    };
    // A JWT-SVID may be presented again until it expires (spiffe-client-auth-02: no jti rule).
    assert_eq!(post(vec![("client_assertion", good.clone())]).await.0, 200);
    assert_eq!(post(vec![("client_assertion", good.clone())]).await.0, 200);
    // client_id that is not the SVID's SPIFFE ID.
    let (s, v) = post(vec![
        ("client_assertion", good.clone()),
        ("client_id", "spiffe://example.org/agent/other".into()),
    ])
    .await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    // Another audience.
    let wrong_aud = a
        .server
        .issuer
        .mint_jwt_svid(&id(agent), &["https://elsewhere".into()], None)
        .await
        .unwrap()
        .token;
    let (s, v) = post(vec![("client_assertion", wrong_aud)]).await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    // Two audiences (rfc7523bis: the issuer alone).
    let two = a
        .server
        .issuer
        .mint_jwt_svid(&id(agent), &[a.issuer.clone(), "https://x".into()], None)
        .await
        .unwrap()
        .token;
    assert_eq!(post(vec![("client_assertion", two)]).await.0, 401);
    // A foreign trust domain we do not federate with.
    let foreign = rogue_jwt_svid(&a, "other.org", "spiffe://other.org/agent/x");
    let (s, v) = post(vec![("client_assertion", foreign)]).await;
    assert_eq!(s, 401);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("other.org"),
        "{v}"
    );
    // Our trust domain's name, a key outside our bundle.
    let impostor = rogue_jwt_svid(&a, "example.org", agent);
    assert_eq!(post(vec![("client_assertion", impostor)]).await.0, 401);
    // alg none and HS256 with a public key.
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = json!({"sub": agent, "aud": a.issuer, "exp": a.now() + 60});
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    assert_eq!(post(vec![("client_assertion", none)]).await.0, 401);
    let hs = format!(
        "{}.{}.AAAA",
        b64(&json!({"alg": "HS256", "kid": "x"})),
        b64(&claims)
    );
    assert_eq!(post(vec![("client_assertion", hs)]).await.0, 401);
    // Expired: the clock moves past exp + leeway.
    let soon = a.jwt_svid(agent).await;
    a.clock.advance(Duration::from_secs(301 + 61));
    let (s, v) = post(vec![("client_assertion", soon)]).await;
    assert_eq!(s, 401);
    assert!(
        v["error_description"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    // No client authentication at all, and two methods at once.
    let (s, v, _) = a
        .post(
            "/oauth2/token",
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!((s, error(&v)), (401, "invalid_client"));
    let fresh = a.jwt_svid(agent).await;
    let (s, _) = post(vec![
        ("client_assertion", fresh),
        ("client_secret", "x".into()),
    ])
    .await;
    assert_eq!(s, 401);
}

/// MCP workload identity federation (SEP-1933), AIMS AZ-15: a workload's JWT-SVID presented as
/// the JWT bearer grant with no other client credential is both the grant and the client's
/// authentication, under the same checks as the SPIFFE client assertion.
#[tokio::test]
async fn a_jwt_svid_alone_is_a_jwt_bearer_grant_for_its_workload() {
    let a = start_as("example.org", |_| {}).await;
    let agent = "spiffe://example.org/agent/planner";
    let grant = |assertion: String, extra: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", JWT_BEARER_GRANT.into()),
            ("assertion", assertion),
            ("resource", RESOURCE.into()),
            ("scope", "read".into()),
        ];
        form.extend(extra);
        let a = &a;
        async move {
            let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, v, _) = a.post("/oauth2/token", &f).await;
            (s, v)
        }
    };
    let (s, v) = grant(a.jwt_svid(agent).await, vec![]).await;
    assert_eq!(s, 200, "{v}");
    let c = a.verify(v["access_token"].as_str().unwrap(), RESOURCE);
    assert_eq!((c.sub.as_str(), c.client_id.as_str()), (agent, agent));
    assert!(c.act.is_none());
    // client_id naming another workload.
    let (s, v) = grant(
        a.jwt_svid(agent).await,
        vec![("client_id", "spiffe://example.org/agent/other".into())],
    )
    .await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    // Another audience, two audiences, a foreign trust domain, junk: no client at all.
    let mint = |aud: Vec<String>| {
        let a = &a;
        async move {
            a.server
                .issuer
                .mint_jwt_svid(&id(agent), &aud, None)
                .await
                .unwrap()
                .token
        }
    };
    let foreign = rogue_jwt_svid(&a, "other.org", "spiffe://other.org/agent/x");
    for bad in [
        mint(vec!["https://elsewhere".into()]).await,
        mint(vec![a.issuer.clone(), "https://x".into()]).await,
        foreign,
        "not.a.jwt".into(),
    ] {
        let (s, v) = grant(bad, vec![]).await;
        assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    }
    // Expired.
    let soon = a.jwt_svid(agent).await;
    a.clock.advance(Duration::from_secs(301 + 61));
    let (s, v) = grant(soon, vec![]).await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
}

/// AIMS MO-8: no token without its decision on record. When the audit log cannot take the
/// record the grant is refused, and as the server's trouble (503 `temporarily_unavailable`,
/// RFC 6749 §5.2 via §4.1.2.1: the client may retry), not the client's (`unauthorized_client`).
#[tokio::test]
async fn a_grant_whose_decision_cannot_be_recorded_is_refused_as_temporarily_unavailable() {
    let a = start_as("example.org", |_| {}).await;
    let agent = "spiffe://example.org/agent/a";
    let (s, v) = a.cc(agent, "weather.read").await;
    assert_eq!(s, 200, "{v}");
    a.server.audit.close();
    let (s, v) = a.cc(agent, "weather.read").await;
    assert_eq!((s, error(&v)), (503, "temporarily_unavailable"), "{v}");
    assert!(v.get("access_token").is_none(), "{v}");
}

#[tokio::test]
async fn token_requests_with_bad_input_get_oauth_errors_not_500s() {
    let a = start_as("example.org", |_| {}).await;
    let agent = "spiffe://example.org/agent/a";
    let assertion = a.jwt_svid(agent).await;
    let base = |grant: &str| {
        vec![
            ("grant_type".to_owned(), grant.to_owned()),
            (
                "client_assertion_type".to_owned(),
                JWT_SPIFFE_ASSERTION.to_owned(),
            ),
            ("client_assertion".to_owned(), assertion.clone()),
        ]
    };
    let send = |form: Vec<(String, String)>| {
        let a = &a;
        async move {
            let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (s, v, _) = a.post("/oauth2/token", &f).await;
            (s, error(&v).to_owned())
        }
    };
    assert_eq!(
        send(base("password")).await,
        (400, "unsupported_grant_type".into())
    );
    assert_eq!(
        send(base("client_credentials")).await,
        (400, "invalid_target".into()),
        "a resource is required"
    );
    let mut f = base("client_credentials");
    f.push(("resource".into(), "not a uri".into()));
    assert_eq!(send(f).await, (400, "invalid_target".into()));
    let mut f = base("client_credentials");
    f.push(("scope".into(), "a\"b".into()));
    f.push(("resource".into(), RESOURCE.into()));
    assert_eq!(send(f).await, (400, "invalid_scope".into()));
    let mut f = base("client_credentials");
    f.push(("grant_type".into(), "client_credentials".into()));
    assert_eq!(
        send(f).await,
        (400, "invalid_request".into()),
        "a repeated parameter"
    );
    let mut f = base("client_credentials");
    f.push(("resource".into(), RESOURCE.into()));
    f.push(("authorization_details".into(), "{not json".into()));
    assert_eq!(send(f).await, (400, "invalid_authorization_details".into()));
    let mut f = base(TOKEN_EXCHANGE_GRANT);
    f.push(("subject_token".into(), "garbage".into()));
    f.push(("subject_token_type".into(), ACCESS_TOKEN_TYPE.into()));
    assert_eq!(send(f).await, (400, "invalid_request".into()));
    // Not a form at all.
    let resp = a
        .http
        .post(a.token_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn private_key_jwt_for_registered_clients_and_replayed_assertions() {
    let a = start_as("example.org", |_| {}).await;
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let jwk = key
        .public_key()
        .to_jwk(Some("sig"), Some("k1"), Some(key.jws_algorithm()));
    let registered = a
        .server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk]},
                "scope": "read",
            }))
            .unwrap(),
            Some("reporting-service".into()),
            aims_store::ClientSource::Admin,
        )
        .await
        .unwrap();
    assert_eq!(registered["client_id"], "reporting-service");
    let assertion = |jti: &str, aud: &str| {
        sign(
            &key,
            &JwsHeader::new(&key, Some("client-authentication+jwt"), Some("k1")),
            &json!({"iss": "reporting-service", "sub": "reporting-service", "aud": aud, "jti": jti, "iat": a.now(), "exp": a.now() + 60}),
        )
        .unwrap()
    };
    let request = |assertion: String, scope: &'static str| {
        let a = &a;
        async move {
            let (s, v, _) = a
                .post(
                    "/oauth2/token",
                    &[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &assertion),
                        ("scope", scope),
                        ("resource", RESOURCE),
                    ],
                )
                .await;
            (s, v)
        }
    };
    let first = assertion("j1", &a.issuer);
    let (s, v) = request(first.clone(), "read").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        a.verify(v["access_token"].as_str().unwrap(), RESOURCE)
            .client_id,
        "reporting-service"
    );
    // Replayed (same jti).
    let (s, v) = request(first, "read").await;
    assert_eq!(s, 401);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{v}"
    );
    // Issue 16: the lifetime counts from our clock, not the client's iat; an assertion from
    // the future, or valid for longer than the window, is refused.
    let timed = |jti: &str, iat: i64, exp: i64| {
        sign(
            &key,
            &JwsHeader::new(&key, Some("client-authentication+jwt"), Some("k1")),
            &json!({"iss": "reporting-service", "sub": "reporting-service", "aud": a.issuer, "jti": jti, "iat": iat, "exp": exp}),
        )
        .unwrap()
    };
    for (jti, iat, exp) in [
        ("t1", a.now() + 3500, a.now() + 3600),
        ("t2", a.now(), a.now() + 3600),
        ("t3", a.now(), i64::MAX),
    ] {
        let (s, v) = request(timed(jti, iat, exp), "read").await;
        assert_eq!((s, error(&v)), (401, "invalid_client"), "{jti}: {v}");
    }
    // The token endpoint URL is accepted as audience too; another audience is not.
    assert_eq!(
        request(assertion("j2", &a.token_url()), "read").await.0,
        200
    );
    assert_eq!(
        request(assertion("j3", "https://elsewhere"), "read")
            .await
            .0,
        401
    );
    // Only its registered scopes.
    let (s, v) = request(assertion("j4", &a.issuer), "admin").await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"));
    // A key it did not register.
    let other = PrivateKey::generate(KeyType::EcP256).unwrap();
    let forged = sign(
        &other,
        &JwsHeader::new(&other, None, Some("k1")),
        &json!({"iss": "reporting-service", "sub": "reporting-service", "aud": a.issuer, "jti": "j5", "exp": a.now() + 60}),
    )
    .unwrap();
    assert_eq!(request(forged, "read").await.0, 401);
    // Registration refuses secrets unless enabled.
    let err = a
        .server
        .authorization_server
        .register_client(Default::default(), None, aims_store::ClientSource::Admin)
        .await
        .unwrap_err();
    assert_eq!(err.code, aims_token::ErrorCode::InvalidClientMetadata);

    // Issue 16: a jti is remembered in the store, so a replay is refused after a restart too.
    let replay_later = sign(
        &key,
        &JwsHeader::new(&key, Some("client-authentication+jwt"), Some("k1")),
        &json!({"iss": "reporting-service", "sub": "reporting-service", "aud": a.issuer, "jti": "r1", "iat": a.now(), "exp": a.now() + 200}),
    )
    .unwrap();
    assert_eq!(request(replay_later.clone(), "read").await.0, 200);
    let As { _dir, server, .. } = a;
    server.stop().await;
    let b = start_as_in(_dir, "example.org", |_| {}).await;
    // The same assertion, aimed at the restarted server's issuer (its port changed).
    let again = sign(
        &key,
        &JwsHeader::new(&key, Some("client-authentication+jwt"), Some("k1")),
        &json!({"iss": "reporting-service", "sub": "reporting-service", "aud": b.issuer, "jti": "r1", "iat": b.now(), "exp": b.now() + 200}),
    )
    .unwrap();
    let (s, v, _) = b
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &again),
                ("scope", "read"),
                ("resource", RESOURCE),
            ],
        )
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{v}"
    );
}

#[tokio::test]
async fn mutual_tls_binds_tokens_to_the_x509_svid() {
    let a = start_as("example.org", |_| {}).await;
    let agent = id("spiffe://example.org/agent/mtls");
    let (mtls, leaf) = a.mtls_client(&agent).await;
    let mtls_token = a
        .server
        .authorization_server
        .settings
        .mtls_token_endpoint()
        .unwrap();
    let (s, v, _) = a
        .post_with(
            &mtls,
            &mtls_token,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", agent.as_str()),
                ("resource", RESOURCE),
            ],
            &[],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let token = v["access_token"].as_str().unwrap();
    let c = a.verify_bound(token, &leaf).unwrap();
    assert_eq!(c.client_id, agent.as_str());
    assert_eq!(
        c.cnf.unwrap().x5t_s256.unwrap(),
        aims_credentials::jose::sha256_b64url(&leaf)
    );
    // The bound token without its certificate, or with another, is refused by a resource server.
    let e = verify_access_token(
        a.server.issuer.as_ref(),
        &a.issuer,
        RESOURCE,
        token,
        &SenderProof::default(),
        &dpop_verifier(),
        a.now(),
    )
    .unwrap_err();
    assert_eq!(e.code(), aims_token::ErrorCode::InvalidToken);
    assert!(a.verify_bound(token, b"another certificate").is_err());
    // client_id that differs from the certificate's SPIFFE ID.
    let (s, v, _) = a
        .post_with(
            &mtls,
            &mtls_token,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "spiffe://example.org/agent/else"),
                ("resource", RESOURCE),
            ],
            &[],
        )
        .await;
    assert_eq!((s, error(&v)), (401, "invalid_client"));
}

impl As {
    fn verify_bound(
        &self,
        token: &str,
        cert: &[u8],
    ) -> Result<AccessClaims, aims_token::TokenError> {
        verify_access_token(
            self.server.issuer.as_ref(),
            &self.issuer,
            RESOURCE,
            token,
            &SenderProof {
                scheme: "Bearer",
                client_certificate: Some(cert),
                dpop: None,
            },
            &dpop_verifier(),
            self.now(),
        )
    }
}

#[tokio::test]
async fn dpop_binds_tokens_and_refuses_replays_other_urls_and_missing_nonces() {
    let a = start_as("example.org", |s| s.oauth.require_dpop_nonce = true).await;
    let agent = "spiffe://example.org/agent/dpop";
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let request = |proof: String| {
        let a = &a;
        async move {
            let assertion = a.jwt_svid(agent).await;
            a.post_with(
                &a.http,
                &a.token_url(),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                    ("client_assertion", &assertion),
                    ("resource", RESOURCE),
                ],
                &[("DPoP", &proof)],
            )
            .await
        }
    };
    // No nonce yet: use_dpop_nonce with a DPoP-Nonce header (RFC 9449 §8).
    let (s, v, h) = request(dpop_proof(&key, &a.token_url(), "1", a.now(), None)).await;
    assert_eq!((s, error(&v)), (400, "use_dpop_nonce"));
    let nonce = h["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = dpop_proof(&key, &a.token_url(), "2", a.now(), Some(&nonce));
    let (s, v, _) = request(proof.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "DPoP");
    let c = verify_access_token(
        a.server.issuer.as_ref(),
        &a.issuer,
        RESOURCE,
        v["access_token"].as_str().unwrap(),
        &SenderProof {
            scheme: "DPoP",
            client_certificate: None,
            dpop: Some(aims_token::presentation::DpopPresented {
                proof: &{
                    let mut h = JwsHeader::new(&key, Some("dpop+jwt"), None);
                    h.jwk = Some(key.public_key().jwk());
                    sign(&key, &h, &json!({"jti": "rs-1", "htm": "GET", "htu": RESOURCE, "iat": a.now(), "ath": aims_credentials::jose::sha256_b64url(v["access_token"].as_str().unwrap().as_bytes())})).unwrap()
                },
                method: "GET",
                uri: RESOURCE,
            }),
        },
        &dpop_verifier(),
        a.now(),
    )
    .unwrap();
    assert_eq!(c.cnf.unwrap().jkt.unwrap(), key.public_key().thumbprint());
    // Replayed proof, a proof for another URL.
    let (s, v, _) = request(proof).await;
    assert_eq!((s, error(&v)), (400, "invalid_dpop_proof"));
    let (s, v, _) = request(dpop_proof(
        &key,
        "https://other.example/token",
        "3",
        a.now(),
        Some(&nonce),
    ))
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_dpop_proof"));
}

/// Exchanges `subject` at `a` as `actor`.
async fn exchange(a: &As, actor: &str, subject: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let assertion = a.jwt_svid(actor).await;
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
        ("client_assertion", assertion.as_str()),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    let (s, v, _) = a.post("/oauth2/token", &form).await;
    (s, v)
}

#[tokio::test]
async fn token_exchange_builds_a_delegation_chain_and_never_widens() {
    let a = start_as("example.org", |_| {}).await;
    // The user's grant (as another grant type would issue it): alice delegates read+write on
    // the tool, at most there, to the planner.
    let now = a.now();
    let user_token = a.forge(&AccessClaims {
        authorization_details: Some(json!([{"type": "tool_call", "locations": [RESOURCE, "https://tool.example/search"], "actions": ["read", "write"]}])),
        ..a.verify(
            &a.delegation(
                "u1",
                "spiffe://example.org/agent/planner",
                "read write offline_access",
            ),
            RESOURCE,
        )
    });
    // Hop 1: the planner acts for alice, handing the task to the researcher (an audience
    // of the new token, which only then may exchange it).
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/planner",
        &user_token,
        &[
            ("scope", "read"),
            ("audience", "spiffe://example.org/agent/researcher"),
            ("resource", RESOURCE),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["issued_token_type"], ACCESS_TOKEN_TYPE);
    let hop1 = v["access_token"].as_str().unwrap().to_owned();
    let c1 = a.verify(&hop1, RESOURCE);
    assert_eq!(c1.sub, "alice@example.com", "AIMS AZ-6: sub stays the user");
    assert_eq!(
        c1.act.as_ref().unwrap().chain(),
        vec!["spiffe://example.org/agent/planner"],
        "RFC 8693 §4.1: the planner acts for alice"
    );
    // Hop 2: the researcher acts via the planner, for the search tool (within the grant's
    // locations), which serves that resource.
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[("resource", "https://tool.example/search")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let hop2 = v["access_token"].as_str().unwrap().to_owned();
    let c2 = a.verify(&hop2, "https://tool.example/search");
    assert_eq!(c2.client_id, "spiffe://example.org/agent/researcher");
    assert_eq!(
        c2.act.as_ref().unwrap().chain(),
        vec![
            "spiffe://example.org/agent/researcher",
            "spiffe://example.org/agent/planner"
        ]
    );
    // Hop 3: the search tool, the resource server of hop 2, exchanges it for itself.
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/tool/search",
        &hop2,
        &[("resource", "https://tool.example/search")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c3 = a.verify(
        v["access_token"].as_str().unwrap(),
        "https://tool.example/search",
    );
    assert_eq!(
        c3.act.as_ref().unwrap().chain(),
        vec![
            "spiffe://example.org/tool/search",
            "spiffe://example.org/agent/researcher",
            "spiffe://example.org/agent/planner"
        ]
    );
    assert_eq!(c3.scope.as_deref(), Some("read"));
    assert!(
        c3.exp <= now + 600,
        "an exchange never extends the life of the grant"
    );
    // Widening: a scope the subject lacks, a resource outside the grant's locations, details
    // beyond the grant's.
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[("scope", "read write")],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"));
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[("resource", "https://bank.example/pay")],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_target"));
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[("authorization_details", r#"[{"type":"tool_call","locations":["https://tool.example/api"],"actions":["delete"]}]"#)],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_authorization_details"));
    // An actor token that names someone else than the client.
    let other_svid = a.jwt_svid("spiffe://example.org/agent/someone").await;
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[
            ("actor_token", &other_svid),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_request"));
    // actor_token_type without actor_token.
    let (s, _) = exchange(
        &a,
        "spiffe://example.org/agent/researcher",
        &hop1,
        &[("actor_token_type", ACCESS_TOKEN_TYPE)],
    )
    .await;
    assert_eq!(s, 400);

    // may_act: only the named actor may act for the subject.
    let restricted = a.forge(&AccessClaims {
        jti: "u2".into(),
        may_act: Some(json!({"sub": "spiffe://example.org/agent/trusted"})),
        ..a.verify(&user_token, RESOURCE)
    });
    let (s, v) = exchange(&a, "spiffe://example.org/agent/untrusted", &restricted, &[]).await;
    assert_eq!((s, error(&v)), (400, "invalid_request"), "{v}");
    assert_eq!(
        exchange(&a, "spiffe://example.org/agent/trusted", &restricted, &[])
            .await
            .0,
        200
    );

    // Issue 16: an exchange issues no refresh token, even where the subject token held
    // offline_access: a refresh family would outlive the token the exchange rests on.
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/agent/planner",
        &user_token,
        &[("scope", "read offline_access")],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"), "{v}");
    assert!(v.get("refresh_token").is_none());
}

/// Issue 16 (token exchange re-aimed any token at any audience): only a client entitled to
/// a token may exchange it — its own, one it is an audience (or the resource server) of, or
/// one whose may_act names it — and only for resources the AS knows, never wider than the
/// token's audience unless the token is the client's own.
#[tokio::test]
async fn only_entitled_clients_exchange_and_only_for_known_narrower_audiences() {
    let a = start_as("example.org", |s| {
        s.oauth
            .resources
            .push(aims_oauth::ResourceServer::new("https://bank.example/pay"));
    })
    .await;
    let alice_agent = "spiffe://example.org/agent/a";
    let (_, v) = a.cc(alice_agent, "read write").await;
    let token_a = v["access_token"].as_str().unwrap().to_owned();
    // (What is refused is in the negative matrix.) The owner re-aims its own authority at a
    // resource the AS knows; the resource server of the token's audience exchanges it.
    let (s, v) = exchange(
        &a,
        alice_agent,
        &token_a,
        &[("resource", "https://bank.example/pay"), ("scope", "read")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = exchange(
        &a,
        "spiffe://example.org/tool/api",
        &token_a,
        &[("scope", "read")],
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // Random chains of exchanges (a seeded generator): whatever each hop asks, every token
    // issued is narrower than or equal to its subject token in scope, audience resources and
    // life, and names no resource the person did not grant.
    let agents = [
        "spiffe://example.org/agent/a",
        "spiffe://example.org/agent/b",
        "spiffe://example.org/agent/c",
        "spiffe://example.org/tool/api",
        "spiffe://example.org/tool/search",
    ];
    let targets = [
        RESOURCE,
        "https://tool.example/search",
        "https://bank.example/pay",
        "https://evil.example/api",
    ];
    let scopes = ["read", "write", "read write", "admin"];
    let mut seed: u64 = 0x5eed_1234;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % n
    };
    let root = a.delegation("root", alice_agent, "read write");
    let (mut issued, mut refused) = (0, 0);
    for _chain in 0..12 {
        let mut current = root.clone();
        let mut current_claims = a.verify(&root, RESOURCE);
        for _hop in 0..4 {
            let actor = agents[next(agents.len())];
            let mut form: Vec<(&str, &str)> = vec![("scope", scopes[next(scopes.len())])];
            if next(2) == 0 {
                form.push(("resource", targets[next(targets.len())]));
            }
            if next(3) == 0 {
                form.push(("audience", agents[next(agents.len())]));
            }
            let (s, v) = exchange(&a, actor, &current, &form).await;
            if s != 200 {
                refused += 1;
                assert!(
                    ["invalid_grant", "invalid_target", "invalid_scope"].contains(&error(&v)),
                    "{v}"
                );
                continue;
            }
            issued += 1;
            let token = v["access_token"].as_str().unwrap().to_owned();
            let payload = token.split('.').nth(1).unwrap();
            let c: AccessClaims = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .unwrap(),
            )
            .unwrap();
            assert!(
                c.scopes()
                    .iter()
                    .all(|s| current_claims.scopes().contains(s))
            );
            assert!(c.exp <= current_claims.exp);
            assert_eq!(c.sub, "alice@example.com");
            for aud in c.aud.values() {
                assert!(
                    aud.starts_with("spiffe://example.org/") || aud == RESOURCE,
                    "the consent named {RESOURCE} only: {aud}"
                );
            }
            current = token;
            current_claims = c;
        }
    }
    assert!(
        issued > 0 && refused > 0,
        "{issued} issued, {refused} refused"
    );
}

#[tokio::test]
async fn introspection_and_revocation_for_jwt_and_opaque_tokens() {
    for opaque in [false, true] {
        let a = start_as("example.org", |s| {
            if opaque {
                s.oauth.token_format = aims_oauth::TokenFormat::Opaque;
            }
        })
        .await;
        let agent = "spiffe://example.org/agent/client";
        let (s, v) = a.cc(agent, "read").await;
        assert_eq!(s, 200);
        let token = v["access_token"].as_str().unwrap().to_owned();
        assert_eq!(token.matches('.').count() == 2, !opaque);
        let introspect = |caller: &'static str, token: String| {
            let a = &a;
            async move {
                let assertion = a.jwt_svid(caller).await;
                let (s, v, _) = a
                    .post(
                        "/oauth2/introspect",
                        &[
                            ("token", &token),
                            ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                            ("client_assertion", &assertion),
                        ],
                    )
                    .await;
                (s, v)
            }
        };
        let (s, v) = introspect("spiffe://example.org/tool/api", token.clone()).await;
        assert_eq!(s, 200);
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(v["client_id"], agent);
        assert_eq!(v["scope"], "read");
        assert_eq!(v["token_type"], "Bearer");
        // Issue 16, RFC 7662 §4: to a client the token does not concern it is inactive.
        let (s, v) = introspect("spiffe://example.org/agent/mallory", token.clone()).await;
        assert_eq!((s, v), (200, json!({"active": false})));
        // Its own client may ask.
        assert_eq!(introspect(agent, token.clone()).await.1["active"], true);
        // The caller must authenticate (RFC 7662 §2.1).
        let (s, _, _) = a.post("/oauth2/introspect", &[("token", &token)]).await;
        assert_eq!(s, 401);
        // Unknown token: inactive, nothing else.
        let (_, v) = introspect("spiffe://example.org/tool/api", "nope".into()).await;
        assert_eq!(v, json!({"active": false}));
        // Only the client it was issued to may revoke it; then it is inactive at once.
        let revoke = |caller: &'static str| {
            let a = &a;
            let token = token.clone();
            async move {
                let assertion = a.jwt_svid(caller).await;
                a.post(
                    "/oauth2/revoke",
                    &[
                        ("token", &token),
                        ("token_type_hint", "access_token"),
                        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                        ("client_assertion", &assertion),
                    ],
                )
                .await
                .0
            }
        };
        assert_eq!(revoke("spiffe://example.org/agent/mallory").await, 400);
        assert_eq!(
            introspect("spiffe://example.org/tool/api", token.clone())
                .await
                .1["active"],
            true
        );
        assert_eq!(revoke(agent).await, 200);
        assert_eq!(
            introspect("spiffe://example.org/tool/api", token.clone())
                .await
                .1["active"],
            false
        );
        // A revoked token cannot be exchanged either.
        let (s, v) = exchange(&a, agent, &token, &[]).await;
        assert_eq!((s, error(&v)), (400, "invalid_request"), "{v}");
    }
}

#[tokio::test]
async fn transaction_tokens_for_workloads_of_the_trust_domain_only() {
    // The orders service receives the front agent's tokens (it serves their resource).
    let a = start_as("example.org", |s| {
        s.oauth.resources = vec![aims_oauth::ResourceServer {
            resource: RESOURCE.into(),
            server: Some("spiffe://example.org/svc/orders".into()),
            exchange_to: Vec::new(),
        }];
        // The orders service is a transaction-token service of the trust domain too (as a
        // gateway is): the req_ip it names is the caller it fronts.
        s.oauth.txn_token_services = vec![id("spiffe://example.org/svc/orders")];
    })
    .await;
    let (_, v) = a
        .cc(
            "spiffe://example.org/agent/front",
            "orders:read orders:write",
        )
        .await;
    let access = v["access_token"].as_str().unwrap().to_owned();
    let txn = |workload: String,
               subject: String,
               subject_type: &'static str,
               scope: &'static str,
               audience: &'static str,
               context: &'static str| {
        let a = &a;
        async move {
            let assertion = a.jwt_svid(&workload).await;
            let (s, v, _) = a
                .post(
                    "/oauth2/token",
                    &[
                        ("grant_type", TOKEN_EXCHANGE_GRANT),
                        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                        ("client_assertion", &assertion),
                        (
                            "requested_token_type",
                            "urn:ietf:params:oauth:token-type:txn_token",
                        ),
                        ("subject_token", &subject),
                        ("subject_token_type", subject_type),
                        ("audience", audience),
                        ("scope", scope),
                        ("request_details", r#"{"order":"42","amount":10}"#),
                        ("request_context", context),
                    ],
                )
                .await;
            (s, v)
        }
    };
    let (s, v) = txn(
        "spiffe://example.org/svc/orders".into(),
        access.clone(),
        ACCESS_TOKEN_TYPE,
        "orders:read",
        "example.org",
        r#"{"channel":"api"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "N_A");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:txn_token"
    );
    assert!(v.get("refresh_token").is_none());
    let t1 = v["access_token"].as_str().unwrap().to_owned();
    let txn_claims = |t: &str| -> aims_token::claims::TxnClaims {
        aims_token::claims::verify_own(
            a.server.issuer.as_ref(),
            &a.issuer,
            t,
            aims_token::claims::TXN_TYP,
            a.now(),
        )
        .unwrap()
    };
    let claims = txn_claims(&t1);
    assert_eq!(claims.aud, "example.org");
    assert_eq!(claims.sub, "spiffe://example.org/agent/front");
    assert_eq!(claims.scope, "orders:read");
    assert_eq!(claims.req_wl, "spiffe://example.org/svc/orders");
    assert_eq!(claims.tctx.as_ref().unwrap()["order"], "42");
    assert_eq!(claims.rctx.as_ref().unwrap()["req_ip"], "127.0.0.1");
    // A transaction-token service names the caller it fronts; any other workload's claim is
    // replaced by the address it connected from.
    for (workload, want) in [
        ("spiffe://example.org/svc/orders", "203.0.113.7"),
        ("spiffe://example.org/agent/front", "127.0.0.1"),
    ] {
        let (s, v) = txn(
            workload.into(),
            access.clone(),
            ACCESS_TOKEN_TYPE,
            "orders:read",
            "example.org",
            r#"{"req_ip":"203.0.113.7"}"#,
        )
        .await;
        assert_eq!(s, 200, "{workload}: {v}");
        let c = txn_claims(v["access_token"].as_str().unwrap());
        assert_eq!(c.rctx.unwrap()["req_ip"], want, "{workload}");
    }
    assert!(claims.exp - claims.iat <= 60);
    assert!(!t1.contains(&access), "never embeds the access token");
    // A replacement keeps txn and context, extends the chain, and cannot widen.
    let (s, v) = txn(
        "spiffe://example.org/svc/billing".into(),
        t1.clone(),
        "urn:ietf:params:oauth:token-type:txn_token",
        "orders:read",
        "spiffe://example.org",
        r#"{"channel":"api"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c2 = txn_claims(v["access_token"].as_str().unwrap());
    assert_eq!(c2.txn, claims.txn);
    assert_eq!(
        c2.req_wl,
        "spiffe://example.org/svc/orders,spiffe://example.org/svc/billing"
    );
    let (s, v) = txn(
        "spiffe://example.org/svc/billing".into(),
        t1,
        "urn:ietf:params:oauth:token-type:txn_token",
        "orders:write",
        "example.org",
        r#"{"channel":"api"}"#,
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"));
    // Another trust domain's audience; and a workload of another (federated) trust domain.
    let (s, v) = txn(
        "spiffe://example.org/svc/orders".into(),
        access.clone(),
        ACCESS_TOKEN_TYPE,
        "orders:read",
        "other.org",
        r#"{"channel":"api"}"#,
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_target"));
    let other = rogue("other.org");
    let mut bundle = aims_credentials::TrustBundle::new(TrustDomain::new("other.org").unwrap());
    other
        .active()
        .unwrap()
        .record()
        .publish_into(&mut bundle)
        .unwrap();
    a.server.issuer.bundles().put(bundle);
    let foreign_svid = other
        .active()
        .unwrap()
        .jwt
        .mint_jwt_svid(
            &id("spiffe://other.org/svc/x"),
            std::slice::from_ref(&a.issuer),
            Duration::from_secs(60),
            a.clock.now(),
        )
        .unwrap()
        .token;
    let (s, v, _) = a
        .post(
            "/oauth2/token",
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &foreign_svid),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:txn_token",
                ),
                ("subject_token", &access),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("audience", "example.org"),
                ("scope", "orders:read"),
            ],
        )
        .await;
    assert_eq!((s, error(&v)), (400, "unauthorized_client"), "{v}");
}

#[tokio::test]
async fn workloads_append_to_the_audit_log_as_themselves() {
    // AIMS MO-1, MO-8: gateways hand decision records to the server over mutual TLS.
    let a = start_as("example.org", |_| {}).await;
    let base = a.mtls_base();
    let url = format!("{base}/audit/v1/records");
    let (gw, _) = a.mtls_client(&id("spiffe://example.org/gateway/g1")).await;
    let record = json!({"time_ms": 1, "kind": "decision", "source": "spiffe://example.org/forged",
        "agent": "spiffe://example.org/agent/a", "resource": "weather", "action": "call",
        "decision": "allow", "policy_version": 1});
    let r = gw
        .post(&url)
        .json(&json!([record, record]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["first"].as_u64(), v["count"].as_u64()),
        (Some(0), Some(2))
    );
    let admin = aims_admin::client::AdminClient::new(&a.server.admin_socket);
    let entries = admin.audit_records(0, 10).await.unwrap();
    assert_eq!(entries.len(), 2);
    // The source is who authenticated, not what the record claimed.
    assert_eq!(
        entries[1].parsed().unwrap().source,
        "spiffe://example.org/gateway/g1"
    );
    assert_eq!(entries[1].index, 1);
    // No SVID, nothing, junk.
    let r = a
        .http
        .post(&url)
        .json(&json!([record]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        gw.post(&url)
            .json(&json!([]))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(gw.post(&url).body("[{").send().await.unwrap().status(), 400);
    // Issue 16: only enforcement points write; an agent can neither fill the log's queue nor
    // put records into another task's trace.
    let (agent, _) = a.mtls_client(&id("spiffe://example.org/agent/a")).await;
    let mut forged = record.clone();
    forged["correlation_id"] = json!("someone-elses-task");
    let r = agent
        .post(&url)
        .json(&json!([forged]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (lookalike, _) = a.mtls_client(&id("spiffe://example.org/gatewayx/g1")).await;
    assert_eq!(
        lookalike
            .post(&url)
            .json(&json!([record]))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // At most 1,000 records a call.
    let many: Vec<Value> = (0..1001).map(|_| record.clone()).collect();
    assert_eq!(
        gw.post(&url).json(&many).send().await.unwrap().status(),
        400
    );
    assert_eq!(admin.audit_records(0, 10).await.unwrap().len(), 2);
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

const NO_ADMIN_POLICY: &str = r#"
@id("tokens") permit(principal, action == Aims::Action::"obtain_token", resource);
@id("no-admin-for-agents")
forbid(principal is Aims::Agent, action == Aims::Action::"obtain_token", resource)
when { context.scopes.contains("admin") };
@id("no-vault")
forbid(principal, action, resource == Aims::Resource::"https://vault.example");
"#;

#[tokio::test]
async fn every_grant_asks_the_cedar_policy_in_force() {
    // AIMS AZ-4, PO-2: a new version is validated, recorded and in force at once.
    let a = start_as("example.org", |_| {}).await;
    let admin = aims_admin::client::AdminClient::new(&a.server.admin_socket);
    assert_eq!(admin.current_policy().await.unwrap().version, 1);
    assert_eq!(
        a.cc("spiffe://example.org/agent/a", "read admin").await.0,
        200
    );
    let dry = admin
        .apply_policy(NO_ADMIN_POLICY, None, true, None)
        .await
        .unwrap();
    assert!(!dry.applied);
    assert_eq!(dry.diff.added.len(), 2, "{:?}", dry.diff);
    assert_eq!(admin.current_policy().await.unwrap().version, 1);
    let out = admin
        .apply_policy(NO_ADMIN_POLICY, None, false, Some("test".into()))
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(out.document.version, 2);
    let (s, v) = a.cc("spiffe://example.org/agent/a", "read admin").await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"));
    let why = v["error_description"].as_str().unwrap();
    assert!(
        why.contains("policy version 2") && why.contains("no-admin-for-agents"),
        "{why}"
    );
    assert_eq!(a.cc("spiffe://example.org/agent/a", "read").await.0, 200);
    // A token for a forbidden audience.
    let svid = a.jwt_svid("spiffe://example.org/agent/a").await;
    let (s, v, _) = a
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &svid),
                ("resource", "https://vault.example"),
            ],
        )
        .await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"), "{v}");
    // An invalid policy changes nothing; the same text again is no new version.
    let e = admin
        .apply_policy(
            r#"@id("x") permit(principal, action, resource) when { context.nope };"#,
            None,
            false,
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid_policy"), "{e}");
    let again = admin
        .apply_policy(NO_ADMIN_POLICY, None, false, None)
        .await
        .unwrap();
    assert!(!again.applied && again.diff.is_empty());
    let history = admin.policy_history().await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(history[1].author, "test");
    assert_eq!(admin.policy_version(2).await.unwrap().text, NO_ADMIN_POLICY);
    // Every token decision is in the audit log with the version that made it (AIMS MO-8); the
    // AS submits without waiting, so the last ones land with the next group commit.
    let mut records = Vec::new();
    for _ in 0..100 {
        records = admin
            .audit_records(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.parsed().unwrap())
            .collect();
        if records
            .iter()
            .any(|r| r.policy_version == Some(2) && r.decision == Some(aims_audit::Outcome::Allow))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        records
            .iter()
            .all(|r| r.action == "obtain_token" && r.source == "spiffe://example.org/aims/server")
    );
    let denied = records
        .iter()
        .find(|r| r.decision == Some(aims_audit::Outcome::Deny) && r.policy_version == Some(2))
        .unwrap();
    assert_eq!(
        denied.agent.as_deref(),
        Some("spiffe://example.org/agent/a")
    );
    assert_eq!(denied.reason.as_deref(), Some("no-admin-for-agents"));
    assert!(
        records
            .iter()
            .any(|r| r.decision == Some(aims_audit::Outcome::Allow)
                && r.policy_version == Some(1)
                && r.resource.as_deref() == Some(RESOURCE))
    );
}

#[tokio::test]
async fn the_authzen_api_answers_authenticated_workloads_of_the_trust_domain() {
    let a = start_as("example.org", |_| {}).await;
    let base = a.mtls_base();
    let (pep, _) = a.mtls_client(&id("spiffe://example.org/gateway/g1")).await;
    // §9.2.3: the metadata names the PDP it was fetched from.
    let meta: Value = json_of(pep.get(format!("{base}/.well-known/authzen-configuration"))).await;
    assert_eq!(meta["policy_decision_point"], base.as_str());
    let eval_url = meta["access_evaluation_endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = json!({
        "subject": {"type": "agent", "id": "spiffe://example.org/agent/a"},
        "action": {"name": "call"},
        "resource": {"type": "tool", "id": "weather", "properties": {"required_scopes": ["w"]}},
        "context": {"scopes": ["w"]}
    });
    let resp = pep
        .post(&eval_url)
        .header("x-request-id", "req-1")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-1");
    let d: Value = resp.json().await.unwrap();
    assert_eq!(d["decision"], true, "{d}");
    assert_eq!(d["context"]["policy_version"], 1);
    let mut denied = request.clone();
    denied["context"]["scopes"] = json!([]);
    let d: Value = json_of(pep.post(&eval_url).json(&denied)).await;
    assert_eq!(d["decision"], false);
    // Batch (§7).
    let batch = json!({
        "subject": {"type": "agent", "id": "spiffe://example.org/agent/a"},
        "action": {"name": "call"},
        "context": {"scopes": ["w"]},
        "evaluations": [
            {"resource": {"type": "tool", "id": "a", "properties": {"required_scopes": ["w"]}}},
            {"resource": {"type": "tool", "id": "b", "properties": {"required_scopes": ["x"]}}}
        ]
    });
    let d: Value = json_of(
        pep.post(meta["access_evaluations_endpoint"].as_str().unwrap())
            .json(&batch),
    )
    .await;
    assert_eq!(d["evaluations"][0]["decision"], true, "{d}");
    assert_eq!(d["evaluations"][1]["decision"], false, "{d}");
    // Bad requests are 400s; callers without an SVID 401 (with WWW-Authenticate).
    let r = pep.post(&eval_url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = pep
        .post(&eval_url)
        .json(&json!({"subject": request["subject"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = a.http.post(&eval_url).json(&request).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Issue 19: a PEP without an SVID presents a bearer access token issued for the PDP.
    let agent = "spiffe://example.org/agent/pep";
    let token_for = |resource: String, dpop: Option<String>| {
        let a = &a;
        async move {
            let assertion = a.jwt_svid(agent).await;
            let headers: Vec<(&str, &str)> =
                dpop.as_deref().map(|p| ("DPoP", p)).into_iter().collect();
            let (s, v, _) = a
                .post_with(
                    &a.http,
                    &a.token_url(),
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                        ("client_assertion", &assertion),
                        ("resource", &resource),
                    ],
                    &headers,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let bearer = |token: String, url: String| {
        let a = &a;
        async move {
            a.http
                .post(url)
                .bearer_auth(token)
                .json(&json!({
                    "subject": {"type": "agent", "id": "spiffe://example.org/agent/a"},
                    "action": {"name": "call"},
                    "resource": {"type": "tool", "id": "weather", "properties": {"required_scopes": ["w"]}},
                    "context": {"scopes": ["w"]}
                }))
                .send()
                .await
                .unwrap()
        }
    };
    let good = token_for(base.clone(), None).await;
    let r = bearer(good.clone(), eval_url.clone()).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["decision"], true, "{d}");
    let refused = |r: reqwest::Response| {
        assert_eq!(r.status(), 401);
        let challenge: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
        assert!(
            challenge
                .iter()
                .any(|c| c.to_str().unwrap().contains("invalid_token")),
            "{challenge:?}"
        );
    };
    // Another audience, a forged or unknown token, a DPoP-bound token without its proof,
    // a revoked token: refused.
    refused(bearer(token_for(RESOURCE.to_owned(), None).await, eval_url.clone()).await);
    refused(bearer("not.a.token".into(), eval_url.clone()).await);
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let proof = dpop_proof(&key, &a.token_url(), "authzen-1", a.now(), None);
    refused(bearer(token_for(base.clone(), Some(proof)).await, eval_url.clone()).await);
    let assertion = a.jwt_svid(agent).await;
    let (s, _, _) = a
        .post(
            "/oauth2/revoke",
            &[
                ("token", &good),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(s, 200);
    refused(bearer(good, eval_url.clone()).await);
    // The policy feed stays for workloads with an SVID.
    let r = a
        .http
        .get(format!("{base}/policy/v1/current"))
        .bearer_auth(token_for(base.clone(), None).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The gateway's policy feed: the document, then 304 on its ETag.
    let r = pep
        .get(format!("{base}/policy/v1/current"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].clone();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["version"], 1);
    assert!(doc["hash"].as_str().unwrap().starts_with("sha256:"));
    let r = pep
        .get(format!("{base}/policy/v1/current"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // AIMS PO-3 (issue 18): a held poll (RFC 7240 `wait`) is answered the moment a new version
    // is in force, not at the end of its hold, and the gateway is recorded as following the
    // version it named.
    let held = {
        let (pep, url) = (pep.clone(), format!("{base}/policy/v1/current"));
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = pep
                .get(url)
                .header("if-none-match", "\"1\"")
                .header("prefer", "wait=25")
                .send()
                .await
                .unwrap();
            let applied = r.headers()["preference-applied"].clone();
            (
                r.status(),
                applied,
                started.elapsed(),
                r.json::<Value>().await.unwrap(),
            )
        })
    };
    let gateway = "spiffe://example.org/gateway/g1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !a
        .server
        .policy
        .followers()
        .await
        .unwrap()
        .iter()
        .any(|f| f.spiffe_id == gateway && f.version == 1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the held poll was not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let text = format!(
        "{}\n// version 2\n",
        a.server.policy.current().document().text
    );
    assert!(
        a.server
            .policy
            .apply(&text, None, "test", false)
            .await
            .unwrap()
            .applied
    );
    let (status, applied, took, doc) = held.await.unwrap();
    assert_eq!((status.as_u16(), doc["version"].as_u64()), (200, Some(2)));
    assert_eq!(applied, "wait=25");
    assert!(
        took < std::time::Duration::from_secs(20),
        "answered at the end of its hold: {took:?}"
    );
    // Holding the version in force, a poll waits out its hold and gets a 304; the gateway now
    // follows version 2.
    let r = pep
        .get(format!("{base}/policy/v1/current"))
        .header("if-none-match", "\"2\"")
        .header("prefer", "wait=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["preference-applied"], "wait=1");
    let followers = a.server.policy.followers().await.unwrap();
    assert_eq!(
        followers
            .iter()
            .map(|f| (f.spiffe_id.as_str(), f.version))
            .collect::<Vec<_>>(),
        vec![(gateway, 2)]
    );
}

#[tokio::test]
async fn identity_chaining_across_two_trust_domains() {
    // Domain A, and domain B that federates A's bundle (so A's agents authenticate with their
    // JWT-SVIDs) and trusts A's authorization server for JWT grants.
    let a = start_as("example.org", |_| {}).await;
    let a_issuer = a.issuer.clone();
    let b = common::start_trusting("other.org", &a).await;
    let agent = "spiffe://example.org/agent/traveller";
    let (s, v) = a.cc(agent, "read write").await;
    assert_eq!(s, 200);
    let home_token = v["access_token"].as_str().unwrap().to_owned();
    // A grant for an authorization server A does not know is refused (issue 16).
    let (s, v) = exchange(
        &a,
        agent,
        &home_token,
        &[
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:jwt",
            ),
            ("audience", &b.issuer),
        ],
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_target"), "{v}");
    a.server
        .authorization_server
        .resources
        .register(aims_oauth::ResourceServer::new(b.issuer.clone()));
    // Step 1 at A: a JWT authorization grant for B.
    let (s, v) = exchange(
        &a,
        agent,
        &home_token,
        &[
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:jwt",
            ),
            ("audience", &b.issuer),
            ("scope", "read"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(v["token_type"], "N_A");
    let grant = v["access_token"].as_str().unwrap().to_owned();
    // Step 2 at B: RFC 7523 grant, the agent authenticating with its (federated) JWT-SVID.
    let b_issuer = b.issuer.clone();
    let svid_for_b = a
        .server
        .issuer
        .mint_jwt_svid(&id(agent), std::slice::from_ref(&b_issuer), None)
        .await
        .unwrap()
        .token;
    let redeem = |grant: String, svid: String, resource: &'static str| {
        let b = &b;
        async move {
            let (s, v, _) = b
                .post(
                    "/oauth2/token",
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &grant),
                        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                        ("client_assertion", &svid),
                        ("resource", resource),
                    ],
                )
                .await;
            (s, v)
        }
    };
    // B must first have fetched A's bundle.
    let mut got = (0, Value::Null);
    for _ in 0..100 {
        got = redeem(grant.clone(), svid_for_b.clone(), "https://api.other.org/").await;
        if got.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = got;
    assert_eq!(s, 200, "{v}");
    let foreign = verify_access_token(
        b.server.issuer.as_ref(),
        &b.issuer,
        "https://api.other.org/",
        v["access_token"].as_str().unwrap(),
        &SenderProof::default(),
        &dpop_verifier(),
        b.now(),
    )
    .unwrap();
    assert_eq!(foreign.sub, agent);
    assert_eq!(foreign.client_id, agent);
    assert_eq!(
        foreign.scope.as_deref(),
        Some("read"),
        "down-scoped across the domains"
    );
    // The grant works once (its jti), and B refuses grants from issuers it does not trust.
    let (s, v) = redeem(grant, svid_for_b.clone(), "https://api.other.org/").await;
    assert_eq!((s, error(&v)), (400, "invalid_grant"));
    // Issue 16: a grant from the trusted issuer is still refused when it is another kind of
    // JWT (RFC 8725 §3.11), has no jti (replayable), is for another client, and one without
    // scope grants none.
    let grant_of = |typ: &str, extra: Value| {
        let mut c = json!({"iss": a_issuer, "sub": agent, "aud": b_issuer, "exp": a.now() + 60,
                           "iat": a.now(), "jti": uuid_like(), "client_id": agent, "scope": "read"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        aims_oauth::sign_token(a.server.issuer.as_ref(), typ, &c).unwrap()
    };
    for (why, grant, want) in [
        (
            "an access token",
            grant_of("at+jwt", json!({})),
            "invalid_grant",
        ),
        (
            "no jti",
            grant_of("JWT", json!({"jti": null})),
            "invalid_grant",
        ),
        (
            "another client's",
            grant_of(
                "JWT",
                json!({"client_id": "spiffe://example.org/agent/other"}),
            ),
            "invalid_grant",
        ),
        (
            "no client at all",
            grant_of("JWT", json!({"client_id": null})),
            "invalid_grant",
        ),
        // Bounds a grant sets hold whatever its typ: a DPoP key it is bound to, its resources.
        (
            "bound to a DPoP key, redeemed without a proof",
            grant_of(
                "JWT",
                json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
            ),
            "invalid_grant",
        ),
        (
            "for another resource",
            grant_of("JWT", json!({"resource": "https://elsewhere.other.org/"})),
            "invalid_target",
        ),
    ] {
        let (s, v) = redeem(grant, svid_for_b.clone(), "https://api.other.org/").await;
        assert_eq!((s, error(&v)), (400, want), "{why}: {v}");
    }
    // Identity chaining §2.4.2: a subject B cannot identify as A's to name is refused: A does
    // not speak for B's own workloads.
    let (s, v) = redeem(
        grant_of("JWT", json!({"sub": "spiffe://other.org/agent/payroll"})),
        svid_for_b.clone(),
        "https://api.other.org/",
    )
    .await;
    assert_eq!((s, error(&v)), (400, "invalid_grant"), "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("a workload of this trust domain"),
        "{v}"
    );
    let scopeless = grant_of("JWT", json!({"scope": null}));
    let (s, v, _) = b
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &scopeless),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &svid_for_b),
                ("resource", "https://api.other.org/"),
                ("scope", "read write"),
            ],
        )
        .await;
    assert_eq!((s, error(&v)), (400, "invalid_scope"), "{v}");
    let stranger = rogue("stranger.org");
    let untrusted = aims_credentials::jose::sign(
        &stranger.active().unwrap().token.key,
        &JwsHeader::new(&stranger.active().unwrap().token.key, Some("JWT"), Some("k")),
        &json!({"iss": "https://as.stranger.org", "sub": agent, "aud": b.issuer, "exp": b.now() + 60, "jti": "x"}),
    )
    .unwrap();
    let (s, v) = redeem(untrusted, svid_for_b, "https://api.other.org/").await;
    assert_eq!((s, error(&v)), (400, "invalid_grant"));
}

#[tokio::test]
async fn authlib_gets_tokens_by_client_credentials_and_token_exchange() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import authlib, jwcrypto, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Authlib and jwcrypto are required under CI=true (scripts/test installs them)"
        );
        eprintln!("warning: skipping: python3 with authlib and jwcrypto is not installed");
        return;
    }
    let a = start_as("example.org", |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, token: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, token).unwrap();
        p
    };
    let agent = write(
        "agent.jwt",
        a.jwt_svid("spiffe://example.org/agent/py").await,
    );
    let actor = write(
        "actor.jwt",
        // The resource server of the token's audience: entitled to exchange what it receives.
        a.jwt_svid("spiffe://example.org/tool/api").await,
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/oauth_authlib.py"
    );
    let issuer = a.issuer.clone();
    let ca = a.server.web_ca_file.clone().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args(["--issuer", &issuer, "--resource", RESOURCE])
            .arg("--ca")
            .arg(ca)
            .arg("--assertion")
            .arg(agent)
            .arg("--actor-assertion")
            .arg(actor)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["client_credentials"]["client_id"],
        "spiffe://example.org/agent/py"
    );
    assert_eq!(got["exchanged"]["sub"], "spiffe://example.org/agent/py");
    assert_eq!(
        got["exchanged"]["act"]["sub"],
        "spiffe://example.org/tool/api"
    );
    assert_eq!(got["exchanged"]["scope"], "read");
}

#[tokio::test]
async fn wit_svid_client_attestation() {
    let a = start_as("example.org", |_| {}).await;
    let agent = id("spiffe://example.org/agent/wit");
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let wit = a
        .server
        .issuer
        .mint_wit_svid(&agent, key.public_key(), key.jws_algorithm(), None)
        .await
        .unwrap()
        .token;
    let pop = |signer: &PrivateKey, jti: &str, aud: &str| {
        sign(
            signer,
            &JwsHeader::new(signer, Some("oauth-client-attestation-pop+jwt"), None),
            &json!({"aud": aud, "jti": jti, "iat": a.now()}),
        )
        .unwrap()
    };
    let request = |pop: String| {
        let a = &a;
        let wit = wit.clone();
        async move {
            let (s, v, _) = a
                .post_with(
                    &a.http,
                    &a.token_url(),
                    &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
                    &[
                        ("OAuth-Client-Attestation", &wit),
                        ("OAuth-Client-Attestation-PoP", &pop),
                    ],
                )
                .await;
            (s, v)
        }
    };
    let first = pop(&key, "p1", &a.issuer);
    let (s, v) = request(first.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        a.verify(v["access_token"].as_str().unwrap(), RESOURCE)
            .client_id,
        agent.as_str()
    );
    // The PoP once; signed by the WIT's key; for this issuer.
    assert_eq!(request(first).await.0, 401);
    let thief = PrivateKey::generate(KeyType::EcP256).unwrap();
    assert_eq!(request(pop(&thief, "p2", &a.issuer)).await.0, 401);
    assert_eq!(request(pop(&key, "p3", "https://elsewhere")).await.0, 401);
    // The attestation without a PoP.
    let (s, _, _) = a
        .post_with(
            &a.http,
            &a.token_url(),
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
            &[("OAuth-Client-Attestation", &wit)],
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn dynamic_registration_and_legacy_secrets_are_off_until_enabled() {
    let off = start_as("example.org", |_| {}).await;
    let resp = off
        .http
        .post(format!("{}/oauth2/register", off.issuer))
        .json(&json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let on = start_as("example.org", |s| {
        s.oauth.dynamic_registration = true;
        s.oauth.allow_client_secret = true;
    })
    .await;
    let reg = |body: Value| {
        let on = &on;
        async move {
            let r = on
                .http
                .post(format!("{}/oauth2/register", on.issuer))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // RFC 7591: jwks and jwks_uri together, an unknown method, an unknown grant type: 400.
    for bad in [
        json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}, "jwks_uri": "https://x"}),
        json!({"token_endpoint_auth_method": "magic"}),
        json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["password"]}),
    ] {
        let (s, v) = reg(bad).await;
        assert_eq!((s, error(&v)), (400, "invalid_client_metadata"), "{v}");
    }
    let (s, v) =
        reg(json!({"token_endpoint_auth_method": "client_secret_basic", "client_name": "legacy"}))
            .await;
    assert_eq!(s, 201, "{v}");
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let secret = v["client_secret"].as_str().unwrap().to_owned();
    assert!(!client_id.starts_with("https://"));
    let token = |secret: String| {
        let on = &on;
        let client_id = client_id.clone();
        async move {
            on.http
                .post(on.token_url())
                .basic_auth(client_id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(token(secret.clone()).await.status(), 200);
    let wrong = token("wrong".into()).await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let stored = on
        .server
        .issuer
        .store()
        .get_client(&client_id)
        .await
        .unwrap();
    assert_ne!(
        stored.secret_hash.as_deref(),
        Some(secret.as_str()),
        "only a hash is kept"
    );
    let metadata = on.metadata().await;
    assert!(metadata["registration_endpoint"].is_string());
}

#[tokio::test]
async fn a_new_signing_key_is_published_before_it_signs_and_kept_after() {
    // A 12 s CA slot: the next slot (and its token key) is published at 6 s, signs from 10 s.
    let a = start_as("example.org", |s| {
        s.ca.ca_ttl = Duration::from_secs(12);
        s.x509_svid_ttl = Duration::from_secs(4);
        s.tick_interval = Duration::from_millis(100);
    })
    .await;
    let kid_of = |token: &str| {
        aims_credentials::jose::CompactJws::parse(token)
            .unwrap()
            .header
            .kid
            .unwrap()
    };
    let jwks_kids = || {
        let a = &a;
        async move {
            let v: Value = a
                .http
                .get(format!("{}/oauth2/jwks", a.issuer))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut seen_signing = Vec::new();
    for _ in 0..120 {
        // The manual clock follows real time, so the CA rotates on schedule.
        a.clock.set(SystemTime::now());
        let kids = jwks_kids().await;
        let (s, v) = a.cc("spiffe://example.org/agent/k", "read").await;
        assert_eq!(s, 200, "{v}");
        let kid = kid_of(v["access_token"].as_str().unwrap());
        // Every key that signs is already published; the previous signing key stays published.
        assert!(
            kids.contains(&kid),
            "{kid} signed before it was published ({kids:?})"
        );
        if seen_signing.last() != Some(&kid) {
            if let Some(prev) = seen_signing.last() {
                assert!(
                    kids.contains(prev),
                    "the previous key left the JWKS at once"
                );
            }
            seen_signing.push(kid);
        }
        if seen_signing.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        seen_signing.len() >= 2,
        "the signing key rotated: {seen_signing:?}"
    );
}

/// A client's own HTTPS site, serving canned responses by path (status, extra headers, body).
struct ClientSite {
    base: String,
    ca_file: std::path::PathBuf,
    _stop: tokio_util::sync::DropGuard,
}

type Canned = std::collections::HashMap<String, (u16, Vec<(String, String)>, String)>;

impl ClientSite {
    async fn start(dir: &std::path::Path, pages: impl FnOnce(&str) -> Canned) -> Self {
        let (base, ca_file, stop) = common::https_site(dir, |base| {
            let pages = Arc::new(pages(base));
            axum::Router::new().route(
                "/{*path}",
                axum::routing::get(
                    move |axum::extract::Path(path): axum::extract::Path<String>| {
                        let pages = pages.clone();
                        async move {
                            let (status, headers, body) =
                                pages
                                    .get(&path)
                                    .cloned()
                                    .unwrap_or((404, vec![], String::new()));
                            let mut resp = axum::response::Response::builder().status(status);
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            resp.header("content-type", "application/json")
                                .body(axum::body::Body::from(body))
                                .unwrap()
                        }
                    },
                ),
            )
        })
        .await;
        Self {
            base,
            ca_file,
            _stop: stop,
        }
    }
}

/// client_credentials for `client_id`, authenticated by a private_key_jwt assertion.
async fn private_key_jwt_token(
    a: &As,
    key: &PrivateKey,
    client_id: String,
    jti: &str,
) -> (u16, Value) {
    let now = a.now();
    let assertion = sign(
        key,
        &JwsHeader::new(key, Some("client-authentication+jwt"), Some("k1")),
        &json!({"iss": client_id, "sub": client_id, "aud": a.issuer, "jti": jti, "iat": now, "exp": now + 60}),
    )
    .unwrap();
    let (s, v, _) = a
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
                ("resource", RESOURCE),
            ],
        )
        .await;
    (s, v)
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_with_ssrf_guards() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let jwk = serde_json::to_value(key.public_key().to_jwk(
        Some("sig"),
        Some("k1"),
        Some(key.jws_algorithm()),
    ))
    .unwrap();
    let site = ClientSite::start(dir.path(), |base| {
        let doc = |name: &str, extra: Value| {
            let mut d = json!({
                "client_id": format!("{base}/{name}"),
                "client_name": name,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk.clone()]},
            });
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    d.as_object_mut().unwrap().remove(k);
                } else {
                    d[k] = v.clone();
                }
            }
            (200, vec![], d.to_string())
        };
        let mut pages = Canned::new();
        pages.insert("good".into(), doc("good", json!({})));
        pages.insert(
            "keys-by-uri".into(),
            doc(
                "keys-by-uri",
                json!({"jwks": null, "jwks_uri": format!("{base}/jwks")}),
            ),
        );
        pages.insert(
            "jwks".into(),
            (200, vec![], json!({"keys": [jwk.clone()]}).to_string()),
        );
        pages.insert(
            "wrong-id".into(),
            doc("wrong-id", json!({"client_id": format!("{base}/good")})),
        );
        pages.insert(
            "secret".into(),
            doc(
                "secret",
                json!({"token_endpoint_auth_method": "client_secret_basic", "jwks": null}),
            ),
        );
        pages.insert(
            "redirect".into(),
            (
                302,
                vec![("location".into(), format!("{base}/good"))],
                String::new(),
            ),
        );
        pages.insert(
            "big".into(),
            doc("big", json!({"logo_note": "x".repeat(6 * 1024)})),
        );
        // MCP clients are public: no keys, a redirect URI.
        pages.insert(
            "public".into(),
            doc(
                "public",
                json!({"token_endpoint_auth_method": "none", "jwks": null,
                       "redirect_uris": ["https://app.example/cb"]}),
            ),
        );
        pages.insert(
            "public-nowhere".into(),
            doc(
                "public-nowhere",
                json!({"token_endpoint_auth_method": "none", "jwks": null}),
            ),
        );
        pages
    })
    .await;
    let url = |name: &str| format!("{}/{name}", site.base);
    let token = |a, client_id, jti| private_key_jwt_token(a, &key, client_id, jti);
    let description = |v: &Value| v["error_description"].as_str().unwrap_or("").to_owned();

    // Turned off: a URL is just an unknown client, and discovery does not advertise it.
    let off = start_as("example.org", |s| {
        s.oauth.client_id_metadata_documents = false;
    })
    .await;
    let (s, v) = token(&off, url("good"), "off").await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    assert!(description(&v).contains("disabled"), "{v}");
    let meta = off.metadata().await;
    assert!(meta.get("client_id_metadata_document_supported").is_none());

    // Enabled, trusting the site's CA and (for this loopback test) private addresses.
    let ca = site.ca_file.clone();
    let on = start_as("example.org", move |s| {
        s.oauth.client_id_metadata_documents = true;
        s.oauth.fetch = aims_oauth::FetchSettings {
            ca_file: Some(ca),
            allow_private_networks: true,
        };
    })
    .await;
    let meta = on.metadata().await;
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    for (name, jti) in [("good", "g1"), ("keys-by-uri", "u1")] {
        let (s, v) = token(&on, url(name), jti).await;
        assert_eq!(s, 200, "{name}: {v}");
        let claims = on.verify(v["access_token"].as_str().unwrap(), RESOURCE);
        assert_eq!(claims.client_id, url(name));
    }
    // Served from the cache now, and still single-use assertions.
    let (s, v) = token(&on, url("good"), "g1").await;
    assert_eq!(s, 401);
    assert!(description(&v).contains("replayed"), "{v}");
    for (name, why) in [
        ("wrong-id", "client_id is not the document's URL"),
        ("secret", "client secrets"),
        ("redirect", "HTTP 302"),
        ("big", "larger than 5120 bytes"),
        ("missing", "HTTP 404"),
        ("public-nowhere", "needs redirect_uris"),
    ] {
        let (s, v) = token(&on, url(name), "x").await;
        assert_eq!((s, error(&v)), (401, "invalid_client"), "{name}: {v}");
        assert!(description(&v).contains(why), "{name}: {v}");
    }
    // A public client document is no key to the client credentials grant.
    let (s, v, _) = on
        .post(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &url("public")),
            ],
        )
        .await;
    assert_eq!((s, error(&v)), (400, "unauthorized_client"), "{v}");
    let (s, v) = token(&on, url("public"), "p1").await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    // Not in normal form: refused before any fetch.
    let dotted = format!("{}/x/../good", site.base);
    let (s, v) = token(&on, dotted, "d1").await;
    assert_eq!(s, 401);
    assert!(description(&v).contains("normal form"), "{v}");

    // On by default (MCP 2026-07-28); without the private-network allowance the loopback site
    // is out of reach (SSRF guard).
    let ca = site.ca_file.clone();
    let guarded = start_as("example.org", move |s| {
        s.oauth.fetch.ca_file = Some(ca);
    })
    .await;
    assert_eq!(
        guarded.metadata().await["client_id_metadata_document_supported"],
        true
    );
    let (s, v) = token(&guarded, url("good"), "s1").await;
    assert_eq!((s, error(&v)), (401, "invalid_client"), "{v}");
    assert!(description(&v).contains("special-use address"), "{v}");
}

/// AIMS MO-9: one id per task. A token request's W3C `traceparent` labels the audit record of
/// its decision, and a new transaction token takes that trace id as its `txn`; a malformed
/// `traceparent` is ignored (a fresh id), never an error.
#[tokio::test]
async fn a_traceparent_names_the_task_in_the_audit_log_and_the_transaction() {
    let a = start_as("example.org", |_| {}).await;
    let task = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{task}-00f067aa0ba902b7-01");
    let agent = "spiffe://example.org/agent/traced";
    let assertion = a.jwt_svid(agent).await;
    let token_url = a.token_url();
    let (s, v, _) = a
        .post_with(
            &a.http,
            &token_url,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                ("client_assertion", &assertion),
                ("scope", "orders:read"),
                ("resource", RESOURCE),
            ],
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();
    let txn_request = |traceparent: String| {
        let (a, access, assertion) = (&a, access.clone(), assertion.clone());
        async move {
            a.post_with(
                &a.http,
                &a.token_url(),
                &[
                    ("grant_type", TOKEN_EXCHANGE_GRANT),
                    ("client_assertion_type", JWT_SPIFFE_ASSERTION),
                    ("client_assertion", &assertion),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:txn_token",
                    ),
                    ("subject_token", &access),
                    ("subject_token_type", ACCESS_TOKEN_TYPE),
                    ("audience", "example.org"),
                    ("scope", "orders:read"),
                ],
                &[("traceparent", &traceparent)],
            )
            .await
        }
    };
    let issued = |v: &Value| {
        aims_credentials::jose::CompactJws::parse(v["access_token"].as_str().unwrap())
            .unwrap()
            .claims::<Value>()
            .unwrap()
    };
    let (s, v, _) = txn_request(traceparent.clone()).await;
    assert_eq!(s, 200, "{v}");
    let txn = issued(&v);
    // The transaction belongs to the task (its context says so) but has an id of its own
    // (txn-tokens §4.2): a second transaction of the same task gets another.
    assert_eq!(txn["tctx"]["trace"], task, "the transaction names its task");
    assert_ne!(txn["txn"], task);
    let (s, v, _) = txn_request(traceparent.clone()).await;
    assert_eq!(s, 200, "{v}");
    let again = issued(&v);
    assert_eq!(again["tctx"]["trace"], task);
    assert_ne!(again["txn"], txn["txn"], "one id per transaction");
    let (s, v, _) = txn_request("00-zz-not-a-trace-01".into()).await;
    assert_eq!(s, 200, "{v}");
    let other = issued(&v);
    assert!(other.get("tctx").is_none(), "{other}");
    assert_eq!(other["txn"].as_str().unwrap().len(), 32);

    a.server.audit.append(&[]).await.unwrap();
    let rows = aims_audit::read_task(a.server.issuer.store(), task, 100)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the token decision carries the task id");
    assert!(rows.iter().all(|r| r.record.contains(agent)));
}

/// The OpenID AuthZEN interop's Todo scenario, as its harness runs it (openid/authzen
/// `interop/authzen-todo-backend/test/decisions-authorization-api-1_0-02.json`, vendored in
/// `examples/authzen-todo`), against the real PDP endpoint over mTLS: every decision of its
/// `evaluation` and `evaluations` tables, with the Todo application's schema, users and policy
/// applied as a policy version beside the AIMS policies (issue 19).
#[tokio::test]
async fn the_authzen_interop_todo_decisions_pass_over_mtls() {
    let a = start_as("example.org", |_| {}).await;
    let text = format!(
        "{}\n{}",
        aims_policy::DEFAULT_POLICY,
        include_str!("../../../examples/authzen-todo/todo.cedar")
    );
    let app = aims_policy::Application {
        schema: include_str!("../../../examples/authzen-todo/todo.cedarschema").into(),
        entities: include_str!("../../../examples/authzen-todo/citadel.entities.json").into(),
    };
    let out = a
        .server
        .policy
        .apply(&text, Some(app), "test", false)
        .await
        .unwrap();
    assert!(out.applied && out.diff.application_schema_changed);
    let base = a.mtls_base();
    let (pep, _) = a
        .mtls_client(&id("spiffe://example.org/app/todo-backend"))
        .await;
    let evaluation = format!("{base}/access/v1/evaluation");
    let evaluations = format!("{base}/access/v1/evaluations");
    let table: Value = serde_json::from_str(include_str!(
        "../../../examples/authzen-todo/decisions.json"
    ))
    .unwrap();
    let mut passed = 0;
    for case in table["evaluation"].as_array().unwrap() {
        let d: Value = json_of(pep.post(&evaluation).json(&case["request"])).await;
        assert_eq!(d["decision"], case["expected"], "{}: {d}", case["request"]);
        assert_eq!(d["context"]["policy_version"], 2, "{d}");
        passed += 1;
    }
    for case in table["evaluations"].as_array().unwrap() {
        let d: Value = json_of(pep.post(&evaluations).json(&case["request"])).await;
        let decisions = |v: &Value| -> Vec<Value> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["decision"].clone())
                .collect()
        };
        assert_eq!(
            decisions(&d["evaluations"]),
            decisions(&case["expected"]),
            "{}: {d}",
            case["request"]
        );
        passed += 1;
    }
    assert_eq!(passed, 43, "the whole table ran");

    let morty = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    let beth = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
    let ask = |subject: Value, action: &str, resource: Value, context: Value| {
        json!({"subject": subject, "action": {"name": action}, "resource": resource,
               "context": context})
    };
    let decide = |request: Value| {
        let (pep, url) = (&pep, &evaluation);
        async move { json_of(pep.post(url).json(&request)).await }
    };
    // The todo payload spec's batch: defaults with an empty resource (`{}` is no default).
    let batch = json!({
        "subject": {"type": "user", "id": morty}, "action": {"name": "can_update_todo"},
        "resource": {}, "context": {},
        "evaluations": [
            {"resource": {"type": "todo", "id": "t1", "properties": {"ownerID": "rick@the-citadel.com"}}},
            {"resource": {"type": "todo", "id": "t2", "properties": {"ownerID": "morty@the-citadel.com"}}}
        ]
    });
    let d: Value = json_of(pep.post(&evaluations).json(&batch)).await;
    assert_eq!(
        (
            &d["evaluations"][0]["decision"],
            &d["evaluations"][1]["decision"]
        ),
        (&json!(false), &json!(true)),
        "{d}"
    );
    // A known user's roles are the directory's: properties claiming more add nothing.
    let d = decide(ask(
        json!({"type": "user", "id": beth, "properties": {"roles": ["admin"]}}),
        "can_create_todo",
        json!({"type": "todo", "id": "t"}),
        json!({}),
    ))
    .await;
    assert_eq!(d["decision"], false, "{d}");
    // An owner the PEP names is the resource's attribute, not the subject's: Beth (a viewer)
    // cannot delete her own todo.
    let d = decide(ask(
        json!({"type": "user", "id": beth}),
        "can_delete_todo",
        json!({"type": "todo", "id": "t", "properties": {"ownerID": "beth@the-smiths.com"}}),
        json!({}),
    ))
    .await;
    assert_eq!(d["decision"], false, "{d}");
    // Fail closed: a type the application does not declare, a property its schema does not
    // declare, a context member its action does not declare, an AIMS type on its action.
    for (subject, resource, context) in [
        (
            json!({"type": "robot", "id": morty}),
            json!({"type": "todo", "id": "t"}),
            json!({}),
        ),
        (
            json!({"type": "user", "id": morty}),
            json!({"type": "todo", "id": "t", "properties": {"priority": 1}}),
            json!({}),
        ),
        (
            json!({"type": "user", "id": morty}),
            json!({"type": "todo", "id": "t"}),
            json!({"risk": []}),
        ),
        (
            json!({"type": "Agent", "id": "spiffe://example.org/agent/a"}),
            json!({"type": "todo", "id": "t"}),
            json!({}),
        ),
    ] {
        let d = decide(ask(subject, "can_read_todos", resource, context)).await;
        assert_eq!(d["decision"], false, "{d}");
        assert!(d["context"]["errors"][0].is_string(), "{d}");
    }
    // An action neither AIMS's nor the application's is a bad request.
    let morty_asks = |action: &str| {
        let request = ask(
            json!({"type": "user", "id": morty}),
            action,
            json!({"type": "todo", "id": "t"}),
            json!({}),
        );
        let (pep, url) = (&pep, &evaluation);
        async move {
            let r = pep.post(url).json(&request).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(morty_asks("can_launch_rockets").await, 400);
    // AIMS's own decisions are as before beside the application.
    let d = decide(ask(
        json!({"type": "agent", "id": "spiffe://example.org/agent/a"}),
        "call",
        json!({"type": "tool", "id": "weather", "properties": {"required_scopes": ["w"]}}),
        json!({"scopes": ["w"]}),
    ))
    .await;
    assert_eq!(d["decision"], true, "{d}");
    // A version without the application takes it away, and its policies with it.
    let refused = a
        .server
        .policy
        .apply(&text, None, "test", true)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Todo"), "{refused}");
    let out = a
        .server
        .policy
        .apply(aims_policy::DEFAULT_POLICY, None, "test", false)
        .await
        .unwrap();
    assert!(out.applied && out.diff.application_schema_changed);
    assert_eq!(morty_asks("can_read_todos").await, 400);
}
