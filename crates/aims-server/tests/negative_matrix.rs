//! The standing negative matrix (issue 16): one table of attacks on the authorization server,
//! its Shared Signals, audit and AuthZEN APIs, each with the exact answer it must get — JOSE
//! and JWT (RFC 8725), the threats of RFC 9700 §4 that apply, DPoP (RFC 9449), mutual TLS
//! (RFC 8705), token exchange and chaining (RFC 8693), CIBA, SSF (RFC 8935), the audit log.
//! SECURITY.md maps each threat to its rows. The gateway's targets and headers, the Workload
//! API and the admin socket have their rows in `crates/aims/tests/negative_matrix.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aims_token::wire::{
    ACCESS_TOKEN_TYPE, JWT_BEARER_ASSERTION, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TXN_TOKEN_TYPE,
};
use std::time::Duration;

use aims_credentials::jose::{JwsHeader, sign};
use aims_credentials::{KeyType, PrivateKey};
use aims_token::claims::AccessClaims;
use base64::Engine as _;
use common::{As, JWT_SPIFFE_ASSERTION, RESOURCE, id, start_as};
use serde_json::{Value, json};

const A: &str = "spiffe://example.org/agent/a";
const B: &str = "spiffe://example.org/agent/b";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// A compact JWS with `header` and `claims` and a signature of junk (for algorithms that must
/// be refused before any key is used).
fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", b64_json(header), b64_json(claims))
}

/// `jwt` with its payload replaced by `claims` (the signature kept).
fn tampered(jwt: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = b64_json(claims);
    parts.join(".")
}

/// How a case is sent.
enum Send {
    /// A form POST to `path` on the issuer, with extra headers.
    Form(&'static str, Vec<(String, String)>, Vec<(String, String)>),
    /// A raw POST to `path` with a content type and body.
    Raw(&'static str, &'static str, Vec<u8>),
    /// A JSON POST over mutual TLS (`client`: a workload's SVID, or none) to `url`.
    Mtls(Option<reqwest::Client>, String, Value),
    /// A pushed SET (RFC 8935 §2) to `url`.
    Set(String, String),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    /// The OAuth `error` (or RFC 8935 `err`) expected; empty where the API has none.
    error: &'static str,
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The client authentication of `assertion` (a JWT-SVID) plus `rest`.
fn svid_form(assertion: &str, rest: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f = form(&[
        ("client_assertion_type", JWT_SPIFFE_ASSERTION),
        ("client_assertion", assertion),
    ]);
    f.extend(form(rest));
    f
}

async fn run(a: &As, case: Case) {
    let (status, body) = match case.send {
        Send::Form(path, f, headers) => {
            let mut req = a.http.post(format!("{}{path}", a.issuer)).form(&f);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
        Send::Raw(path, ct, body) => {
            let r = a
                .http
                .post(format!("{}{path}", a.issuer))
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
        Send::Mtls(client, url, body) => {
            let client = client.unwrap_or_else(|| a.http.clone());
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
        Send::Set(url, set) => {
            let r = a
                .http
                .post(url)
                .header("content-type", "application/secevent+jwt")
                .body(set)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let error = v["error"].as_str().or(v["err"].as_str()).unwrap_or("");
    assert_eq!(
        (status, error),
        (case.status, case.error),
        "{}: {body}",
        case.name
    );
}

#[tokio::test]
async fn every_attack_gets_its_exact_refusal() {
    let a = start_as("example.org", |s| {
        s.oauth
            .resources
            .push(aims_oauth::ResourceServer::new("https://bank.example/pay"));
    })
    .await;
    let now = a.now();
    let svid_a = a.jwt_svid(A).await;
    let svid_b = a.jwt_svid(B).await;
    let svid = || svid_a.clone();
    // Agent A's own token, and a person's delegation to A.
    let token_a = a.cc(A, "read write").await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let delegated = a.delegation("d1", A, "read");
    let restricted = a.forge(&AccessClaims {
        jti: "d2".into(),
        may_act: Some(json!({"sub": "spiffe://example.org/agent/c"})),
        ..a.verify(&delegated, RESOURCE)
    });
    let expired_token = a.forge(&AccessClaims {
        jti: "old".into(),
        exp: now - 600,
        iat: now - 1200,
        may_act: None,
        ..a.verify(&token_a, RESOURCE)
    });
    let foreign_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let foreign_token = sign(
        &foreign_key,
        &JwsHeader::new(&foreign_key, Some("at+jwt"), Some("k")),
        &serde_json::to_value(a.verify(&token_a, RESOURCE)).unwrap(),
    )
    .unwrap();
    let svid_claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(svid_a.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut as_b = svid_claims.clone();
    as_b["sub"] = json!(B);
    let other_aud = a
        .server
        .issuer
        .mint_jwt_svid(&id(A), &["https://elsewhere.example".into()], None)
        .await
        .unwrap()
        .token;
    // A registered private_key_jwt client.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    a.server
        .authorization_server
        .register_client(
            serde_json::from_value(json!({
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [key.public_key().to_jwk(Some("sig"), Some("k1"), Some(key.jws_algorithm()))]},
                "scope": "read",
            }))
            .unwrap(),
            Some("reporter".into()),
            aims_store::ClientSource::Admin,
        )
        .await
        .unwrap();
    let pkj = |claims: Value, signer: &PrivateKey, typ: Option<&str>| {
        sign(signer, &JwsHeader::new(signer, typ, Some("k1")), &claims).unwrap()
    };
    let pkj_claims = |jti: &str| json!({"iss": "reporter", "sub": "reporter", "aud": a.issuer, "jti": jti, "iat": now, "exp": now + 60});
    let replayed = pkj(pkj_claims("once"), &key, None);
    let pk_form = |assertion: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            ("client_assertion", assertion),
            ("resource", RESOURCE),
            ("scope", "read"),
        ])
    };
    // DPoP proofs.
    let dkey = PrivateKey::generate(KeyType::EcP256).unwrap();
    let dpub = dkey.public_key();
    let token_url = format!("{}/oauth2/token", a.issuer);
    let dpop = |jti: &str, htm: &str, htu: &str, iat: i64, typ: &str, signer: &PrivateKey| {
        let mut h = JwsHeader::new(signer, Some(typ), None);
        h.jwk = Some(dpub.jwk());
        sign(
            signer,
            &h,
            &json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat}),
        )
        .unwrap()
    };
    let good_proof = dpop("d-ok", "POST", &token_url, now, "dpop+jwt", &dkey);
    let cc = |extra: &[(&str, &str)]| {
        let mut f = svid_form(&svid(), &[("grant_type", "client_credentials")]);
        f.extend(form(extra));
        f
    };
    let cc_ok = || cc(&[("resource", RESOURCE), ("scope", "read")]);
    let xchg = |who: &str, subject: &str, extra: &[(&str, &str)]| {
        let assertion = if who == B {
            svid_b.clone()
        } else {
            svid_a.clone()
        };
        let mut f = svid_form(
            &assertion,
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token", subject),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
        );
        f.extend(form(extra));
        f
    };
    let tok = |f: Vec<(String, String)>| Send::Form("/oauth2/token", f, Vec::new());
    let tok_h =
        |f: Vec<(String, String)>, h: &[(&str, &str)]| Send::Form("/oauth2/token", f, form(h));
    let mtls = a.mtls_base();
    let (gateway, _) = a.mtls_client(&id("spiffe://example.org/gateway/g1")).await;
    let (agent_tls, _) = a.mtls_client(&id(A)).await;
    let record = json!({"time_ms": 1, "kind": "decision", "action": "call", "agent": A,
        "resource": "weather", "decision": "allow", "correlation_id": "task"});
    let set_for = |iss: &str, iat: i64| {
        aims_signals::SecEvent::new(
            iss,
            &a.issuer,
            aims_signals::SubjectId::for_principal("bob"),
            aims_signals::event::ACCOUNT_ENABLED,
            json!({}),
            None,
            iat,
        )
        .sign(&foreign_key, "k")
        .unwrap()
    };
    let receive = format!("{}/ssf/v1/receive", a.issuer);
    let huge_details = format!("{{\"x\":\"{}\"}}", "a".repeat(5000));

    let cases = vec![
        // ---- Client authentication: JWT-SVIDs (RFC 8725 §2, §3) ----
        Case { name: "no client authentication", send: tok(form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID alg none (RFC 8725 §3.2)", send: tok(svid_form(&unsigned(&json!({"alg": "none"}), &svid_claims, ""), &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID HS256 keyed with a public key (alg confusion, §2.1)", send: tok(svid_form(&unsigned(&json!({"alg": "HS256", "kid": "x"}), &svid_claims, "AAAA"), &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID payload tampered (sub)", send: tok(svid_form(&tampered(&svid_a, &as_b), &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID signature stripped", send: tok(svid_form(&format!("{}.", svid_a.rsplit_once('.').unwrap().0), &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID for another audience", send: tok(svid_form(&other_aud, &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID with an unknown kid", send: tok(svid_form(&sign(&foreign_key, &JwsHeader::new(&foreign_key, Some("JWT"), Some("nope")), &svid_claims).unwrap(), &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "JWT-SVID not a JWS at all", send: tok(svid_form("not.a.jwt", &[("grant_type", "client_credentials"), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "client_id differs from the assertion's subject", send: tok(cc(&[("resource", RESOURCE), ("client_id", B)])), status: 401, error: "invalid_client" },
        Case { name: "unknown client_assertion_type", send: tok(form(&[("grant_type", "client_credentials"), ("client_assertion_type", "urn:x"), ("client_assertion", &svid()), ("resource", RESOURCE)])), status: 401, error: "invalid_client" },
        Case { name: "two authentication methods at once", send: tok(cc(&[("resource", RESOURCE), ("client_secret", "x")])), status: 401, error: "invalid_client" },
        Case { name: "a legacy client secret while secrets are off (CR-9)", send: tok_h(form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)]), &[("authorization", "Basic cmVwb3J0ZXI6c2VjcmV0")]), status: 401, error: "invalid_client" },
        // ---- Client authentication: private_key_jwt (RFC 7523 §3) ----
        Case { name: "private_key_jwt first use", send: tok(pk_form(&replayed)), status: 200, error: "" },
        Case { name: "private_key_jwt replayed jti", send: tok(pk_form(&replayed)), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt alg none", send: tok(pk_form(&unsigned(&json!({"alg": "none", "kid": "k1"}), &pkj_claims("n1"), ""))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt by an unregistered key", send: tok(pk_form(&pkj(pkj_claims("u1"), &foreign_key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt without jti", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "reporter", "aud": a.issuer, "exp": now + 60}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt valid for an hour", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "reporter", "aud": a.issuer, "jti": "h1", "exp": now + 3600}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt issued in the future", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "reporter", "aud": a.issuer, "jti": "f1", "iat": now + 3500, "exp": now + 3600}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt for another authorization server", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "reporter", "aud": "https://as.elsewhere", "jti": "o1", "exp": now + 60}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt iss differs from sub", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "other", "aud": a.issuer, "jti": "s1", "exp": now + 60}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt expired", send: tok(pk_form(&pkj(json!({"iss": "reporter", "sub": "reporter", "aud": a.issuer, "jti": "e1", "exp": now - 600}), &key, None))), status: 401, error: "invalid_client" },
        Case { name: "private_key_jwt asks beyond its registered scope", send: tok({ let mut f = pk_form(&pkj(pkj_claims("sc1"), &key, None)); f.retain(|(k, _)| k != "scope"); f.push(("scope".into(), "admin".into())); f }), status: 400, error: "invalid_scope" },
        // ---- Grants and parameters (RFC 6749, RFC 8707, RFC 9396) ----
        Case { name: "unsupported grant type (password, RFC 9700 §2.4)", send: tok(svid_form(&svid(), &[("grant_type", "password"), ("username", "u"), ("password", "p")])), status: 400, error: "unsupported_grant_type" },
        Case { name: "client_credentials with offline_access", send: tok(cc(&[("resource", RESOURCE), ("scope", "read offline_access")])), status: 400, error: "invalid_scope" },
        Case { name: "no resource (audience restriction, RFC 9700 §2.3)", send: tok(cc(&[("scope", "read")])), status: 400, error: "invalid_target" },
        Case { name: "resource with a fragment", send: tok(cc(&[("resource", "https://tool.example/api#x")])), status: 400, error: "invalid_target" },
        Case { name: "resource not an absolute URI", send: tok(cc(&[("resource", "/relative")])), status: 400, error: "invalid_target" },
        Case { name: "repeated grant_type", send: tok({ let mut f = cc_ok(); f.push(("grant_type".into(), "client_credentials".into())); f }), status: 400, error: "invalid_request" },
        Case { name: "malformed authorization_details", send: tok(cc(&[("resource", RESOURCE), ("authorization_details", "{not json")])), status: 400, error: "invalid_authorization_details" },
        Case { name: "a scope with a quote", send: tok(cc(&[("resource", RESOURCE), ("scope", "a\"b")])), status: 400, error: "invalid_scope" },
        Case { name: "a JSON body", send: Send::Raw("/oauth2/token", "application/json", b"{}".to_vec()), status: 400, error: "invalid_request" },
        Case { name: "a body that is not UTF-8", send: Send::Raw("/oauth2/token", "application/x-www-form-urlencoded", vec![0x67, 0x3d, 0xff, 0xfe]), status: 400, error: "invalid_request" },
        // ---- Token exchange (RFC 8693; issue 16) ----
        Case { name: "exchange another agent's token", send: tok(xchg(B, &token_a, &[("resource", RESOURCE)])), status: 400, error: "invalid_grant" },
        Case { name: "exchange re-aimed at an unknown resource", send: tok(xchg(A, &token_a, &[("resource", "https://evil.example/api")])), status: 400, error: "invalid_target" },
        Case { name: "exchange widening scope", send: tok(xchg(A, &token_a, &[("scope", "read write admin")])), status: 400, error: "invalid_scope" },
        Case { name: "exchange of a delegation beyond the consent", send: tok(xchg(A, &delegated, &[("resource", "https://bank.example/pay")])), status: 400, error: "invalid_target" },
        Case { name: "exchange by someone may_act does not name", send: tok(xchg(B, &restricted, &[])), status: 400, error: "invalid_request" },
        Case { name: "exchange with offline_access", send: tok(xchg(A, &token_a, &[("scope", "read offline_access")])), status: 400, error: "invalid_scope" },
        Case { name: "exchange with an actor token naming someone else", send: tok(xchg(A, &token_a, &[("actor_token", &svid_b), ("actor_token_type", JWT_TOKEN_TYPE)])), status: 400, error: "invalid_request" },
        Case { name: "exchange with actor_token_type alone", send: tok(xchg(A, &token_a, &[("actor_token_type", ACCESS_TOKEN_TYPE)])), status: 400, error: "invalid_request" },
        Case { name: "exchange of garbage", send: tok(xchg(A, "garbage", &[])), status: 400, error: "invalid_request" },
        Case { name: "exchange of a token signed by another key", send: tok(xchg(A, &foreign_token, &[])), status: 400, error: "invalid_request" },
        Case { name: "exchange of an expired token", send: tok(xchg(A, &expired_token, &[])), status: 400, error: "invalid_request" },
        Case { name: "exchange of a refresh token", send: tok({ let mut f = xchg(A, "r", &[]); f.retain(|(k, _)| k != "subject_token_type"); f.push(("subject_token_type".into(), "urn:ietf:params:oauth:token-type:refresh_token".into())); f }), status: 400, error: "invalid_request" },
        Case { name: "exchange for an unsupported token type", send: tok(xchg(A, &token_a, &[("requested_token_type", "urn:x")])), status: 400, error: "invalid_request" },
        Case { name: "exchange handing off to another trust domain", send: tok(xchg(A, &token_a, &[("audience", "spiffe://evil.example/agent/b")])), status: 400, error: "invalid_target" },
        Case { name: "transaction token for another audience", send: tok(xchg(A, &token_a, &[("requested_token_type", TXN_TOKEN_TYPE), ("audience", "other.org"), ("scope", "read")])), status: 400, error: "invalid_target" },
        Case { name: "transaction token without scope", send: tok(xchg(A, &token_a, &[("requested_token_type", TXN_TOKEN_TYPE), ("audience", "example.org")])), status: 400, error: "invalid_request" },
        Case { name: "transaction token with oversized details", send: tok(xchg(A, &token_a, &[("requested_token_type", TXN_TOKEN_TYPE), ("audience", "example.org"), ("scope", "read"), ("request_details", &huge_details)])), status: 400, error: "invalid_request" },
        Case { name: "transaction token whose context embeds the access token", send: tok(xchg(A, &token_a, &[("requested_token_type", TXN_TOKEN_TYPE), ("audience", "example.org"), ("scope", "read"), ("request_context", &format!(r#"{{"auth":"Bearer {token_a}"}}"#))])), status: 400, error: "invalid_request" },
        Case { name: "transaction token for another agent's token", send: tok(xchg(B, &token_a, &[("requested_token_type", TXN_TOKEN_TYPE), ("audience", "example.org"), ("scope", "read")])), status: 400, error: "invalid_grant" },
        Case { name: "chaining grant for an unknown authorization server", send: tok(xchg(A, &token_a, &[("requested_token_type", JWT_TOKEN_TYPE), ("audience", "https://as.evil.example")])), status: 400, error: "invalid_target" },
        Case { name: "chaining grant for a workload of this trust domain (not an authorization server)", send: tok(xchg(A, &token_a, &[("requested_token_type", JWT_TOKEN_TYPE), ("audience", B)])), status: 400, error: "invalid_target" },
        Case { name: "chaining grant for this server itself", send: tok(xchg(A, &token_a, &[("requested_token_type", JWT_TOKEN_TYPE), ("audience", &a.issuer)])), status: 400, error: "invalid_target" },
        Case { name: "chaining grant for two targets", send: tok(xchg(A, &token_a, &[("requested_token_type", JWT_TOKEN_TYPE), ("audience", "https://a.example"), ("audience", "https://b.example")])), status: 400, error: "invalid_target" },
        // ---- JWT bearer grants (RFC 7523 §3) ----
        Case { name: "JWT bearer from an untrusted issuer", send: tok(svid_form(&svid(), &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &sign(&foreign_key, &JwsHeader::new(&foreign_key, Some("JWT"), Some("k")), &json!({"iss": "https://as.stranger", "sub": A, "aud": a.issuer, "exp": now + 60, "jti": "x", "client_id": A})).unwrap()), ("resource", RESOURCE)])), status: 400, error: "invalid_grant" },
        Case { name: "an agent's JWT-SVID as grant asking offline_access", send: tok(svid_form(&svid(), &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &svid()), ("resource", RESOURCE), ("scope", "offline_access")])), status: 400, error: "invalid_scope" },
        // ---- Refresh tokens and codes (RFC 9700 §4.14, §4.5) ----
        Case { name: "unknown refresh token", send: tok(svid_form(&svid(), &[("grant_type", "refresh_token"), ("refresh_token", "nope")])), status: 400, error: "invalid_grant" },
        Case { name: "unknown authorization code", send: tok(svid_form(&svid(), &[("grant_type", "authorization_code"), ("code", "nope"), ("code_verifier", &"v".repeat(43)), ("redirect_uri", "https://app.example/cb")])), status: 400, error: "invalid_grant" },
        Case { name: "authorization code without PKCE verifier (RFC 9700 §2.1.1)", send: tok(svid_form(&svid(), &[("grant_type", "authorization_code"), ("code", "nope")])), status: 400, error: "invalid_grant" },
        Case { name: "PKCE verifier too short", send: tok(svid_form(&svid(), &[("grant_type", "authorization_code"), ("code", "nope"), ("code_verifier", "short")])), status: 400, error: "invalid_grant" },
        // ---- DPoP (RFC 9449 §4.3) ----
        Case { name: "DPoP proof accepted once", send: tok_h(cc_ok(), &[("dpop", &good_proof)]), status: 200, error: "" },
        Case { name: "DPoP proof replayed", send: tok_h(cc_ok(), &[("dpop", &good_proof)]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP alg none", send: tok_h(cc_ok(), &[("dpop", &unsigned(&json!({"alg": "none", "typ": "dpop+jwt", "jwk": dkey.public_key().jwk()}), &json!({"jti": "n", "htm": "POST", "htu": token_url, "iat": now}), ""))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP for GET", send: tok_h(cc_ok(), &[("dpop", &dpop("d-get", "GET", &token_url, now, "dpop+jwt", &dkey))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP for another URL", send: tok_h(cc_ok(), &[("dpop", &dpop("d-url", "POST", "https://evil.example/token", now, "dpop+jwt", &dkey))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP issued ten minutes ago", send: tok_h(cc_ok(), &[("dpop", &dpop("d-old", "POST", &token_url, now - 600, "dpop+jwt", &dkey))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP with typ JWT", send: tok_h(cc_ok(), &[("dpop", &dpop("d-typ", "POST", &token_url, now, "JWT", &dkey))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP signed by a key other than its jwk", send: tok_h(cc_ok(), &[("dpop", &dpop("d-key", "POST", &token_url, now, "dpop+jwt", &foreign_key))]), status: 400, error: "invalid_dpop_proof" },
        Case { name: "DPoP that is no JWS", send: tok_h(cc_ok(), &[("dpop", "junk")]), status: 400, error: "invalid_dpop_proof" },
        // ---- Introspection and revocation (RFC 7662 §4, RFC 7009) ----
        Case { name: "introspection without authentication", send: Send::Form("/oauth2/introspect", form(&[("token", &token_a)]), Vec::new()), status: 401, error: "invalid_client" },
        Case { name: "revocation with an unsupported hint", send: Send::Form("/oauth2/revoke", svid_form(&svid(), &[("token", &token_a), ("token_type_hint", "id_token")]), Vec::new()), status: 400, error: "unsupported_token_type" },
        // ---- CIBA (CIBA Core §7.1, §11) ----
        Case { name: "CIBA without a hint", send: Send::Form("/oauth2/bc-authorize", svid_form(&svid(), &[("scope", "openid read"), ("resource", RESOURCE)]), Vec::new()), status: 400, error: "invalid_request" },
        Case { name: "CIBA poll of an unknown request", send: tok(svid_form(&svid(), &[("grant_type", "urn:openid:params:grant-type:ciba"), ("auth_req_id", "nope")])), status: 400, error: "invalid_grant" },
        // ---- Shared Signals (SSF 1.0, RFC 8935; issue 16) ----
        Case { name: "SSF stream without an SVID", send: Send::Mtls(None, format!("{mtls}/ssf/v1/stream"), json!({"delivery": {"method": "urn:ietf:rfc:8936"}})), status: 401, error: "" },
        Case { name: "SSF push to a loopback address (SSRF)", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/ssf/v1/stream"), json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://127.0.0.1:9/x"}})), status: 400, error: "" },
        Case { name: "SSF push to cloud metadata (SSRF)", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/ssf/v1/stream"), json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://169.254.169.254/latest"}})), status: 400, error: "" },
        Case { name: "SSF push over plain HTTP", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/ssf/v1/stream"), json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "http://receiver.example/x"}})), status: 400, error: "" },
        Case { name: "SET from an unconfigured transmitter", send: Send::Set(receive.clone(), set_for("https://idp.evil", now)), status: 400, error: "invalid_issuer" },
        Case { name: "SET that is no JWS", send: Send::Set(receive.clone(), "junk".into()), status: 400, error: "invalid_request" },
        // ---- The audit log (AIMS MO-1, MO-8; issue 16) ----
        Case { name: "audit append without an SVID", send: Send::Mtls(None, format!("{mtls}/audit/v1/records"), json!([record])), status: 401, error: "" },
        Case { name: "audit append by an agent (no writer)", send: Send::Mtls(Some(agent_tls.clone()), format!("{mtls}/audit/v1/records"), json!([record])), status: 403, error: "" },
        Case { name: "audit append of 1,001 records", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/audit/v1/records"), Value::Array(vec![record.clone(); 1001])), status: 400, error: "" },
        Case { name: "audit append of nothing", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/audit/v1/records"), json!([])), status: 400, error: "" },
        Case { name: "audit append of a malformed record", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/audit/v1/records"), json!([{"kind": 5}])), status: 400, error: "" },
        // ---- AuthZEN (the PDP's API) ----
        Case { name: "AuthZEN evaluation without an SVID", send: Send::Mtls(None, format!("{mtls}/access/v1/evaluation"), json!({})), status: 401, error: "" },
        Case { name: "AuthZEN evaluation that is no request", send: Send::Mtls(Some(gateway.clone()), format!("{mtls}/access/v1/evaluation"), json!({"subject": 5})), status: 400, error: "" },
    ];
    let count = cases.len();
    for case in cases {
        run(&a, case).await;
    }
    assert!(count >= 80, "{count} attacks");
    // Nothing above revoked or widened anything: A's token still works as issued.
    assert_eq!(
        a.verify(&token_a, RESOURCE).scope.as_deref(),
        Some("read write")
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}
