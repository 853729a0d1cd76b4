//! WIMSE WPT-02 and HTTP Message Signatures -07: the drafts' examples, round trips, and every
//! rejection the authentication issue lists (AIMS AU-5…AU-11).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aims_authn::httpsig::{Algorithm, Message, RequestParts, Signatures, VerifyingKey, verify};
use aims_authn::wimse_sig::{
    RequestSigning, SignaturePolicy, WimseSigVerifier, sign_request, sign_response,
    verify_request_signature, verify_response_signature,
};
use aims_authn::wpt::{Mechanism, WptBinding, WptVerifier, create_wpt};
use aims_authn::{AuthnError, ReplayCache};
use aims_core::{Clock as _, ManualClock, SharedClock, TrustDomain, WorkloadIdentifier};
use aims_credentials::authority::bundle_from_slots;
use aims_credentials::jose::{JwsHeader, sign};
use aims_credentials::{
    AuthorityPolicy, BundleSet, CaManager, KeyType, MemoryKeyManager, PrivateKey, PublicKey,
    TrustBundle,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method, Uri};

fn testdata(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../testdata/wimse/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A parsed HTTP/1.1 message from the drafts' example files.
struct HttpText {
    start: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_http(text: &str) -> HttpText {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let start = lines.next().unwrap().to_owned();
    let mut headers = HeaderMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    HttpText {
        start,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// The `cnf.jwk` of a WIT, read without verifying the WIT (the drafts do not publish their
/// issuer key for the HTTP-signature examples).
fn cnf_of(wit: &str) -> (PublicKey, jsonwebtoken::Algorithm) {
    let payload = wit.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(claims["cnf"]["jwk"].clone()).unwrap();
    let alg = claims["cnf"]["jwk"]["alg"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (PublicKey::from_jwk(&jwk).unwrap(), alg)
}

const POLICY: SignaturePolicy = SignaturePolicy {
    skew: 60,
    max_lifetime: 600,
};

#[test]
fn http_signature_07_examples_verify() {
    let req = parse_http(&testdata("http-sig-07/sigs-request.txt"));
    let (method, target) = {
        let mut p = req.start.split(' ');
        (
            p.next().unwrap().parse::<Method>().unwrap(),
            p.next().unwrap().parse::<Uri>().unwrap(),
        )
    };
    let wit = req.headers["workload-identity-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let (key, alg) = cnf_of(&wit);
    let parts = RequestParts::from_http(&method, &target, &req.headers, "https");
    let created = 1_788_298_924;
    let (verified, _) = verify_request_signature(
        parts,
        &req.body,
        &key,
        alg,
        "https://svcb.example.com/gimme-ice-cream",
        created,
        POLICY,
    )
    .unwrap();
    assert_eq!(verified.nonce, "abcd1111");
    assert!(verified.sign_response);

    let resp = parse_http(&testdata("http-sig-07/sigs-response.txt"));
    let status: u16 = resp.start.split(' ').nth(1).unwrap().parse().unwrap();
    let resp_wit = resp.headers["workload-identity-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let (rkey, ralg) = cnf_of(&resp_wit);
    verify_response_signature(
        status,
        &resp.headers,
        &resp.body,
        parts,
        "abcd1111",
        &rkey,
        ralg,
        created,
        POLICY,
    )
    .unwrap();

    // Tampering with any covered part fails: the path, the query, the audience, the body, the nonce.
    for bad in [
        "/gimme-ice-cream?flavor=chocolate",
        "/gimme-more?flavor=vanilla",
    ] {
        let u: Uri = bad.parse().unwrap();
        let p = RequestParts::from_http(&method, &u, &req.headers, "https");
        assert!(
            matches!(
                verify_request_signature(
                    p,
                    &req.body,
                    &key,
                    alg,
                    "https://svcb.example.com/gimme-ice-cream",
                    created,
                    POLICY
                ),
                Err(AuthnError::InvalidProof(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        verify_request_signature(
            parts,
            &req.body,
            &key,
            alg,
            "https://svcb.example.com/other",
            created,
            POLICY
        ),
        Err(AuthnError::WrongAudience { .. })
    ));
    assert!(matches!(
        verify_response_signature(
            status,
            &resp.headers,
            b"Lots of ice cream!\n\n",
            parts,
            "abcd1111",
            &rkey,
            ralg,
            created,
            POLICY
        ),
        Err(AuthnError::Tampered(_))
    ));
    assert!(matches!(
        verify_response_signature(
            status,
            &resp.headers,
            &resp.body,
            parts,
            "other",
            &rkey,
            ralg,
            created,
            POLICY
        ),
        Err(AuthnError::BindingMismatch(_))
    ));
    assert!(matches!(
        verify_response_signature(
            200,
            &resp.headers,
            &resp.body,
            parts,
            "abcd1111",
            &rkey,
            ralg,
            created,
            POLICY
        ),
        Err(AuthnError::InvalidProof(_))
    ));
    // Outside its window the signature is refused.
    assert_eq!(
        verify_request_signature(
            parts,
            &req.body,
            &key,
            alg,
            "https://svcb.example.com/gimme-ice-cream",
            created + 400,
            POLICY
        )
        .unwrap_err(),
        AuthnError::Expired
    );
}

/// The -06 examples (`@request-target`, label `wimse`) still verify at the RFC 9421 layer.
#[test]
fn http_signature_06_example_verifies_at_the_rfc9421_layer() {
    let req = parse_http(&testdata("sigs-request.txt"));
    let wit = req.headers["workload-identity-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let (key, alg) = cnf_of(&wit);
    let (method, target): (Method, Uri) = (
        "GET".parse().unwrap(),
        "/gimme-ice-cream?flavor=vanilla".parse().unwrap(),
    );
    let parts = RequestParts::from_http(&method, &target, &req.headers, "https");
    let sigs = Signatures::from_headers(&req.headers).unwrap();
    let (_, input, sig) = sigs.labelled("wimse").unwrap();
    verify(
        &Message::Request(parts),
        input,
        sig,
        &VerifyingKey::Public(Box::new(key), Algorithm::Jws(alg)),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------

struct Domain {
    ca: CaManager,
    bundles: Arc<BundleSet>,
}

fn domain(name: &str) -> Domain {
    let ca = CaManager::new(
        TrustDomain::new(name).unwrap(),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now()).unwrap();
    let slot = ca.active().unwrap();
    let bundle = bundle_from_slots(ca.trust_domain(), [slot.record()], SystemTime::now()).unwrap();
    Domain {
        ca,
        bundles: Arc::new(BundleSet::with([bundle])),
    }
}

struct Workload {
    key: PrivateKey,
    wit: String,
}

fn workload(d: &Domain, id: &str, key_type: KeyType) -> Workload {
    let key = PrivateKey::generate(key_type).unwrap();
    let wit =
        d.ca.active()
            .unwrap()
            .wit
            .mint_wit(
                &WorkloadIdentifier::parse(id).unwrap(),
                key.public_key(),
                key.jws_algorithm(),
                Duration::from_secs(3600),
                SystemTime::now(),
                None,
            )
            .unwrap()
            .token;
    Workload { key, wit }
}

const AUD: &str = "https://tool.example.org/api/orders";

fn wpt_headers(w: &Workload, wpt: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("WPT {wpt}").parse().unwrap());
    h.insert("workload-identity-token", w.wit.parse().unwrap());
    h
}

fn verifier(d: &Domain, clock: SharedClock) -> WptVerifier {
    WptVerifier::new(
        d.bundles.clone(),
        Arc::new(ReplayCache::new(10_000, 60)),
        clock,
    )
}

fn binding() -> WptBinding<'static> {
    WptBinding {
        audience: AUD,
        ttl: Duration::from_secs(60),
        txn_token: None,
        other_tokens: &[],
    }
}

#[test]
fn wpt_round_trip_for_ec_and_ed25519_keys() {
    let d = domain("example.org");
    let clock = ManualClock::starting_now();
    let v = verifier(&d, clock.clone());
    for kt in [KeyType::EcP256, KeyType::Ed25519] {
        let w = workload(&d, "spiffe://example.org/agent/a", kt);
        let wpt = create_wpt(&w.key, &w.wit, &binding(), clock.now()).unwrap();
        let ok = v.verify(&wpt_headers(&w, &wpt), AUD).unwrap();
        assert_eq!(ok.id.as_str(), "spiffe://example.org/agent/a");
        assert_eq!(ok.mechanism, Mechanism::Wpt);
        // The same proof again is a replay (AU-11).
        assert_eq!(
            v.verify(&wpt_headers(&w, &wpt), AUD).unwrap_err(),
            AuthnError::Replayed
        );
    }
}

#[test]
fn wpt_rejections() {
    let d = domain("example.org");
    let other = domain("other.org");
    let clock = ManualClock::starting_now();
    let v = verifier(&d, clock.clone());
    let w = workload(&d, "spiffe://example.org/agent/a", KeyType::EcP256);
    let fresh = |b: &WptBinding<'_>| create_wpt(&w.key, &w.wit, b, clock.now()).unwrap();

    // Expired (beyond the 60 s skew).
    let wpt = fresh(&binding());
    clock.advance(Duration::from_secs(60 + 61));
    assert_eq!(
        v.verify(&wpt_headers(&w, &wpt), AUD).unwrap_err(),
        AuthnError::Expired
    );
    clock.advance(Duration::from_secs(0));
    let clock2 = ManualClock::starting_now();
    let v = verifier(&d, clock2.clone());
    // Not yet valid: issued two minutes in the future.
    let future = create_wpt(
        &w.key,
        &w.wit,
        &binding(),
        clock2.now() + Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(
        v.verify(&wpt_headers(&w, &future), AUD).unwrap_err(),
        AuthnError::Expired
    );
    let fresh = |b: &WptBinding<'_>| create_wpt(&w.key, &w.wit, b, clock2.now()).unwrap();
    // Lifetime longer than the 5-minute maximum.
    let long = fresh(&WptBinding {
        ttl: Duration::from_secs(3600),
        ..binding()
    });
    assert!(matches!(
        v.verify(&wpt_headers(&w, &long), AUD),
        Err(AuthnError::LifetimeTooLong(_))
    ));
    // Wrong audience.
    let wpt = fresh(&binding());
    assert!(matches!(
        v.verify(&wpt_headers(&w, &wpt), "https://tool.example.org/api/other"),
        Err(AuthnError::WrongAudience { .. })
    ));
    // Signed by a key other than cnf.
    let thief = PrivateKey::generate(KeyType::EcP256).unwrap();
    let forged = create_wpt(&thief, &w.wit, &binding(), clock2.now()).unwrap();
    assert!(matches!(
        v.verify(&wpt_headers(&w, &forged), AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    // wth mismatch: a proof made for another WIT of the same key.
    let w2_wit = workload(&d, "spiffe://example.org/agent/a", KeyType::EcP256).wit;
    let for_other_wit = create_wpt(&w.key, &w2_wit, &binding(), clock2.now()).unwrap();
    assert!(
        matches!(v.verify(&wpt_headers(&w, &for_other_wit), AUD), Err(AuthnError::BindingMismatch(m)) if m == "wth")
    );
    // A WIT of another trust domain (no bundle for it here).
    let foreign = workload(&other, "spiffe://other.org/agent/x", KeyType::EcP256);
    let wpt = create_wpt(&foreign.key, &foreign.wit, &binding(), clock2.now()).unwrap();
    assert!(matches!(
        v.verify(&wpt_headers(&foreign, &wpt), AUD),
        Err(AuthnError::InvalidWit(
            aims_credentials::VerifyError::UntrustedDomain(_)
        ))
    ));
    // A WIT whose kid the bundle does not know.
    let rogue = aims_credentials::JwtAuthority::new(
        "rogue",
        Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap()),
        aims_credentials::JwtAuthorityUse::WitSvid,
    )
    .unwrap();
    let rogue_wit = rogue
        .mint_wit(
            &WorkloadIdentifier::parse("spiffe://example.org/agent/a").unwrap(),
            w.key.public_key(),
            w.key.jws_algorithm(),
            Duration::from_secs(60),
            SystemTime::now(),
            None,
        )
        .unwrap()
        .token;
    let rw = Workload {
        key: PrivateKey::from_pkcs8_der(w.key.pkcs8_der()).unwrap(),
        wit: rogue_wit,
    };
    let wpt = create_wpt(&rw.key, &rw.wit, &binding(), clock2.now()).unwrap();
    assert!(matches!(
        v.verify(&wpt_headers(&rw, &wpt), AUD),
        Err(AuthnError::InvalidWit(
            aims_credentials::VerifyError::UnknownKey(_)
        ))
    ));
    // alg: none and HS256 signed with the public key.
    let claims = format!(
        r#"{{"aud":"{AUD}","exp":{},"jti":"j","wth":"{}"}}"#,
        clock2.unix_now() + 30,
        aims_credentials::jose::sha256_b64url(w.wit.as_bytes())
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"wpt+jwt"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    assert!(matches!(
        v.verify(&wpt_headers(&w, &none), AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"wpt+jwt"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let secret = serde_json::to_vec(w.key.public_key().jwk()).unwrap();
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert!(matches!(
        v.verify(&wpt_headers(&w, &hs), AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    // A WPT without typ.
    let untyped = sign(
        &w.key,
        &JwsHeader::new(&w.key, None, None),
        &serde_json::from_str::<serde_json::Value>(&claims).unwrap(),
    )
    .unwrap();
    assert!(
        matches!(v.verify(&wpt_headers(&w, &untyped), AUD), Err(AuthnError::InvalidProof(m)) if m.contains("type"))
    );
    // Txn-Token binding: sent without tth, tth without the token, and a swapped token.
    let wpt = fresh(&binding());
    let mut h = wpt_headers(&w, &wpt);
    h.insert("txn-token", "eyJ.a.b".parse().unwrap());
    assert!(matches!(
        v.verify(&h, AUD),
        Err(AuthnError::BindingMismatch(_))
    ));
    let bound = fresh(&WptBinding {
        txn_token: Some("eyJ.a.b"),
        ..binding()
    });
    assert!(matches!(
        v.verify(&wpt_headers(&w, &bound), AUD),
        Err(AuthnError::BindingMismatch(_))
    ));
    let mut h = wpt_headers(&w, &bound);
    h.insert("txn-token", "eyJ.a.c".parse().unwrap());
    assert!(matches!(
        v.verify(&h, AUD),
        Err(AuthnError::BindingMismatch(_))
    ));
    let mut h = wpt_headers(&w, &bound);
    h.insert("txn-token", "eyJ.a.b".parse().unwrap());
    assert_eq!(
        v.verify(&h, AUD).unwrap().txn_token.as_deref(),
        Some("eyJ.a.b")
    );
    // oth naming a header that was not sent.
    let oth = fresh(&WptBinding {
        other_tokens: &[("x-other-token", "abc")],
        ..binding()
    });
    assert!(matches!(
        v.verify(&wpt_headers(&w, &oth), AUD),
        Err(AuthnError::BindingMismatch(_))
    ));
    // Malformed presentations: no WIT, two Authorization fields, oversized proof.
    let wpt = fresh(&binding());
    let mut h = wpt_headers(&w, &wpt);
    h.remove("workload-identity-token");
    assert!(matches!(v.verify(&h, AUD), Err(AuthnError::Malformed(_))));
    let mut h = wpt_headers(&w, &wpt);
    h.append("authorization", "Bearer abc".parse().unwrap());
    assert!(matches!(v.verify(&h, AUD), Err(AuthnError::Malformed(_))));
    let huge = format!("{wpt}{}", "A".repeat(20_000));
    assert!(matches!(
        v.verify(&wpt_headers(&w, &huge), AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    // A Bearer token is not a WPT.
    let mut h = wpt_headers(&w, &wpt);
    h.insert("authorization", "Bearer x".parse().unwrap());
    assert_eq!(v.verify(&h, AUD).unwrap_err(), AuthnError::Missing);
    // Statuses: 401 for credential failures, 400 for malformed requests.
    assert_eq!(AuthnError::Replayed.status(), 401);
    assert_eq!(AuthnError::Malformed(String::new()).status(), 400);
}

/// The WPT -02 example verifies with the WIT issuer key the draft publishes.
#[test]
fn wpt_02_example_verifies() {
    let issuer: jsonwebtoken::jwk::Jwk = serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"}"#).unwrap();
    let mut bundle = TrustBundle::new(TrustDomain::new("example.com").unwrap());
    bundle
        .add_wit_authority("June 5", PublicKey::from_jwk(&issuer).unwrap())
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_745_510_000),
    ));
    let v = WptVerifier::new(
        Arc::new(BundleSet::with([bundle])),
        Arc::new(ReplayCache::new(100, 60)),
        clock,
    );
    let req = parse_http(&testdata("wpt-02/wpt-02-example-request.txt"));
    let ok = v
        .verify(&req.headers, "https://workload.example.com/path")
        .unwrap();
    assert_eq!(ok.id.as_str(), "wimse://example.com/specific-workload");
    assert_eq!(
        v.verify(&req.headers, "https://workload.example.com/path")
            .unwrap_err(),
        AuthnError::Replayed
    );
}

// ---------------------------------------------------------------------------------------------

fn signed_request(
    w: &Workload,
    body: &[u8],
    path: &str,
    extra: &[(&'static str, &str)],
) -> (Method, Uri, HeaderMap, String) {
    let method = Method::POST;
    let uri: Uri = path.parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", "tool.example.org".parse().unwrap());
    for (k, v) in extra {
        h.insert(*k, v.parse().unwrap());
    }
    let nonce = sign_request(
        &w.key,
        &w.wit,
        &method,
        &uri,
        &mut h,
        body,
        &RequestSigning {
            audience: AUD,
            ttl: Duration::from_secs(60),
            sign_response: true,
        },
        SystemTime::now(),
    )
    .unwrap();
    (method, uri, h, nonce)
}

#[test]
fn http_signature_round_trip_and_rejections() {
    let d = domain("example.org");
    let clock: SharedClock = Arc::new(aims_core::SystemClock);
    let v = WimseSigVerifier::new(
        d.bundles.clone(),
        Arc::new(ReplayCache::new(10_000, 60)),
        clock,
    );
    let w = workload(&d, "spiffe://example.org/agent/a", KeyType::Ed25519);
    let body = br#"{"order":42}"#;
    let (m, u, h, nonce) = signed_request(
        &w,
        body,
        "/api/orders?dry_run=1",
        &[
            ("content-type", "application/json"),
            ("txn-token", "eyJ.t.x"),
        ],
    );
    let parts = RequestParts::from_http(&m, &u, &h, "https");
    let (who, sig) = v.verify(parts, body, AUD).unwrap();
    assert_eq!(who.id.as_str(), "spiffe://example.org/agent/a");
    assert_eq!(who.mechanism, Mechanism::HttpSignature);
    assert_eq!(who.txn_token.as_deref(), Some("eyJ.t.x"));
    assert_eq!(sig.nonce, nonce);
    assert!(sig.sign_response);
    // Replayed nonce.
    assert_eq!(
        v.verify(parts, body, AUD).unwrap_err(),
        AuthnError::Replayed
    );

    // Tampered body (digest), header, path, query.
    let (m, u, h, _) = signed_request(
        &w,
        body,
        "/api/orders?dry_run=1",
        &[("content-type", "application/json")],
    );
    let p = RequestParts::from_http(&m, &u, &h, "https");
    assert!(matches!(
        v.verify(p, br#"{"order":43}"#, AUD),
        Err(AuthnError::Tampered(_))
    ));
    let mut h2 = h.clone();
    h2.insert("content-type", "text/plain".parse().unwrap());
    assert!(matches!(
        v.verify(RequestParts::from_http(&m, &u, &h2, "https"), body, AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    let u2: Uri = "/api/admin?dry_run=1".parse().unwrap();
    assert!(matches!(
        v.verify(RequestParts::from_http(&m, &u2, &h, "https"), body, AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    let u3: Uri = "/api/orders?dry_run=0".parse().unwrap();
    assert!(matches!(
        v.verify(RequestParts::from_http(&m, &u3, &h, "https"), body, AUD),
        Err(AuthnError::InvalidProof(_))
    ));
    // A body with no Content-Digest.
    let mut h3 = h.clone();
    h3.remove("content-digest");
    assert!(matches!(
        v.verify(RequestParts::from_http(&m, &u, &h3, "https"), body, AUD),
        Err(AuthnError::MissingComponent(_))
    ));
    // A field added after signing that the profile requires covered.
    let mut h4 = h.clone();
    h4.insert("txn-token", "eyJ.added.later".parse().unwrap());
    assert!(
        matches!(v.verify(RequestParts::from_http(&m, &u, &h4, "https"), body, AUD), Err(AuthnError::MissingComponent(c)) if c == "txn-token")
    );
    // Wrong audience.
    let (m, u, h, _) = signed_request(&w, b"", "/x", &[]);
    assert!(matches!(
        v.verify(
            RequestParts::from_http(&m, &u, &h, "https"),
            b"",
            "https://elsewhere/x"
        ),
        Err(AuthnError::WrongAudience { .. })
    ));
    // No signature at all; two WIMSE signatures.
    let mut bare = HeaderMap::new();
    bare.insert("workload-identity-token", w.wit.parse().unwrap());
    assert_eq!(
        v.verify(RequestParts::from_http(&m, &u, &bare, "https"), b"", AUD)
            .unwrap_err(),
        AuthnError::Missing
    );
    let (m, u, mut twice, _) = signed_request(&w, b"", "/x", &[]);
    let input = twice["signature-input"]
        .to_str()
        .unwrap()
        .replacen("sig1=", "sig2=", 1);
    let sig = twice["signature"]
        .to_str()
        .unwrap()
        .replacen("sig1=", "sig2=", 1);
    twice.append("signature-input", input.parse().unwrap());
    twice.append("signature", sig.parse().unwrap());
    assert!(matches!(
        v.verify(RequestParts::from_http(&m, &u, &twice, "https"), b"", AUD),
        Err(AuthnError::Malformed(_))
    ));
    // keyid or alg parameters are forbidden by the profile.
    let (m, u, mut with_alg, _) = signed_request(&w, b"", "/x", &[]);
    let input = with_alg["signature-input"].to_str().unwrap().to_owned() + ";alg=\"ed25519\"";
    with_alg.insert("signature-input", input.parse().unwrap());
    assert!(
        matches!(v.verify(RequestParts::from_http(&m, &u, &with_alg, "https"), b"", AUD), Err(AuthnError::Malformed(m)) if m.contains("alg"))
    );
    // Oversized signature fields are refused before parsing.
    let (m, u, mut h, _) = signed_request(&w, b"", "/x", &[]);
    let huge = format!(
        "{}, pad=(\"{}\")",
        h["signature-input"].to_str().unwrap(),
        "x".repeat(9000)
    );
    h.insert("signature-input", huge.parse().unwrap());
    assert!(
        matches!(v.verify(RequestParts::from_http(&m, &u, &h, "https"), b"", AUD), Err(AuthnError::Malformed(m)) if m.contains("larger than"))
    );
    // A required component missing from the signature (an attacker drops @query).
    let (m, u, mut h, _) = signed_request(&w, b"", "/x", &[]);
    let input = h["signature-input"]
        .to_str()
        .unwrap()
        .replace(" \"@query\"", "");
    h.insert("signature-input", input.parse().unwrap());
    assert!(
        matches!(v.verify(RequestParts::from_http(&m, &u, &h, "https"), b"", AUD), Err(AuthnError::MissingComponent(c)) if c == "@query")
    );
}

#[test]
fn signed_responses_round_trip() {
    let d = domain("example.org");
    let client = workload(&d, "spiffe://example.org/agent/a", KeyType::EcP256);
    let server = workload(&d, "spiffe://example.org/tool/orders", KeyType::Ed25519);
    let (m, u, req_h, nonce) = signed_request(&client, b"", "/api/orders?x=1", &[]);
    let req = RequestParts::from_http(&m, &u, &req_h, "https");
    let mut resp_h = HeaderMap::new();
    resp_h.insert("content-type", "application/json".parse().unwrap());
    let body = br#"{"ok":true}"#;
    sign_response(
        &server.key,
        &server.wit,
        200,
        &mut resp_h,
        body,
        req,
        &nonce,
        Duration::from_secs(60),
        SystemTime::now(),
    )
    .unwrap();
    let now = aims_core::unix_seconds(SystemTime::now());
    verify_response_signature(
        200,
        &resp_h,
        body,
        req,
        &nonce,
        server.key.public_key(),
        server.key.jws_algorithm(),
        now,
        POLICY,
    )
    .unwrap();
    // A response to another request (another nonce) does not verify.
    assert!(matches!(
        verify_response_signature(
            200,
            &resp_h,
            body,
            req,
            "someone-elses-nonce",
            server.key.public_key(),
            server.key.jws_algorithm(),
            now,
            POLICY
        ),
        Err(AuthnError::BindingMismatch(_))
    ));
}
