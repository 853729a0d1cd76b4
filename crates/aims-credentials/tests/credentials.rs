//! Issuance and verification of every credential format, positive and negative
//! (AIMS CR-1, CR-2, CR-4; SPIFFE X509-SVID, JWT-SVID, WIT-SVID; WIMSE workload-creds-02).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aims_core::{SpiffeId, TrustDomain, WorkloadIdentifier, unix_seconds};
use aims_credentials::authority::{RotationStep, bundle_from_slots, rotation_step};
use aims_credentials::ca::{CertificateRequest, SubjectKey, UpstreamAuthority, X509SvidRequest};
use aims_credentials::jose::{CompactJws, JwsHeader, sign};
use aims_credentials::{
    AuthorityPolicy, BundleSet, CaManager, DiskKeyManager, IssueError, JwtAuthority,
    JwtAuthorityUse, KeyType, MemoryKeyManager, PrivateKey, PublicKey, RotationEvent, SvidUsage,
    TrustBundle, VerifyError, WitProfile, verify_jwt_svid, verify_wit, verify_x509_svid,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Domain {
    manager: CaManager,
    bundles: BundleSet,
}

fn domain(name: &str, key_type: KeyType) -> Domain {
    let manager = CaManager::new(
        td(name),
        AuthorityPolicy {
            key_type,
            ..AuthorityPolicy::default()
        },
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    manager.tick(t0()).unwrap();
    let slot = manager.active().unwrap();
    let bundle = bundle_from_slots(&td(name), [slot.record()], t0()).unwrap();
    Domain {
        manager,
        bundles: BundleSet::with([bundle]),
    }
}

fn issue(
    d: &Domain,
    spiffe_id: &SpiffeId,
    key: &PrivateKey,
    ttl: Duration,
) -> Vec<CertificateDer<'static>> {
    let slot = d.manager.active().unwrap();
    let subject = SubjectKey::of(key);
    slot.x509
        .issue(&X509SvidRequest {
            spiffe_id,
            subject_key: &subject,
            dns_names: &[],
            ttl,
            now: t0(),
        })
        .unwrap()
        .chain
}

#[test]
fn x509_svid_issued_for_every_key_type_verifies() {
    for kt in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let d = domain("example.org", KeyType::EcP256);
        let key = PrivateKey::generate(kt).unwrap();
        let chain = issue(
            &d,
            &id("spiffe://example.org/agent/a"),
            &key,
            Duration::from_secs(3600),
        );
        assert_eq!(chain.len(), 2, "leaf + intermediate");
        for usage in [SvidUsage::Client, SvidUsage::Server] {
            let v = verify_x509_svid(&chain, &d.bundles, t0(), usage).unwrap();
            assert_eq!(v.spiffe_id.as_str(), "spiffe://example.org/agent/a", "{kt}");
        }
    }
}

#[test]
fn x509_svid_rejections() {
    let d = domain("example.org", KeyType::EcP256);
    let other = domain("other.org", KeyType::EcP256);
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let chain = issue(
        &d,
        &id("spiffe://example.org/agent/a"),
        &key,
        Duration::from_secs(3600),
    );

    // Expired (CR-4) and not yet valid.
    let later = t0() + Duration::from_secs(3601);
    assert_eq!(
        verify_x509_svid(&chain, &d.bundles, later, SvidUsage::Client).unwrap_err(),
        VerifyError::Expired
    );
    let earlier = t0() - Duration::from_secs(60);
    assert_eq!(
        verify_x509_svid(&chain, &d.bundles, earlier, SvidUsage::Client).unwrap_err(),
        VerifyError::NotYetValid
    );
    // Verified against another trust domain's bundle only: no bundle for example.org.
    assert!(matches!(
        verify_x509_svid(&chain, &other.bundles, t0(), SvidUsage::Client),
        Err(VerifyError::UntrustedDomain(td)) if td == "example.org"
    ));
    // A bundle that claims example.org but holds other.org's roots: the chain does not build.
    let mut wrong = TrustBundle::new(td("example.org"));
    for root in other
        .bundles
        .bundle_for_test("other.org")
        .x509_authorities()
    {
        wrong.add_x509_authority(root.clone()).unwrap();
    }
    assert!(matches!(
        verify_x509_svid(&chain, &BundleSet::with([wrong]), t0(), SvidUsage::Client),
        Err(VerifyError::UnknownIssuer)
    ));
    // Missing intermediate.
    assert!(matches!(
        verify_x509_svid(&chain[..1], &d.bundles, t0(), SvidUsage::Client),
        Err(VerifyError::UnknownIssuer)
    ));
    // Tampered leaf: flip a byte in the signature.
    let mut tampered = chain.clone();
    let mut bytes = tampered[0].to_vec();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    tampered[0] = CertificateDer::from(bytes);
    assert!(verify_x509_svid(&tampered, &d.bundles, t0(), SvidUsage::Client).is_err());
    // An intermediate presented as a leaf: it is a CA, and its ID has no path.
    let as_leaf = vec![chain[1].clone()];
    assert!(matches!(
        verify_x509_svid(&as_leaf, &d.bundles, t0(), SvidUsage::Client),
        Err(VerifyError::Certificate(_))
    ));
    // Empty chain.
    assert!(verify_x509_svid(&[], &d.bundles, t0(), SvidUsage::Client).is_err());
}

#[test]
fn issuance_refuses_root_ids_and_caps_ttl_at_ca_expiry() {
    let d = domain("example.org", KeyType::EcP256);
    let slot = d.manager.active().unwrap();
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = SubjectKey::of(&key);
    let err = slot
        .x509
        .issue(&X509SvidRequest {
            spiffe_id: &id("spiffe://example.org"),
            subject_key: &subject,
            dns_names: &[],
            ttl: Duration::from_secs(60),
            now: t0(),
        })
        .unwrap_err();
    assert!(matches!(err, IssueError::Refused(_)));
    let svid = slot
        .x509
        .issue(&X509SvidRequest {
            spiffe_id: &id("spiffe://example.org/a"),
            subject_key: &subject,
            dns_names: &[],
            ttl: Duration::from_secs(10 * 24 * 3600),
            now: t0(),
        })
        .unwrap();
    assert_eq!(svid.not_after, slot.x509.not_after());
}

fn csr(key: &rcgen::KeyPair, sans: Vec<rcgen::SanType>, ca: bool) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    params.serialize_request(key).unwrap().der().to_vec()
}

fn uri(s: &str) -> rcgen::SanType {
    rcgen::SanType::URI(s.try_into().unwrap())
}

#[test]
fn csr_issuance_and_every_bad_csr_is_a_typed_error() {
    let d = domain("example.org", KeyType::EcP256);
    let spiffe_id = id("spiffe://example.org/agent/a");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();

    let good =
        CertificateRequest::from_der(&csr(&key, vec![uri(spiffe_id.as_str())], false)).unwrap();
    good.check_for(&spiffe_id, &[]).unwrap();
    let slot = d.manager.active().unwrap();
    let svid = slot
        .x509
        .issue(&X509SvidRequest {
            spiffe_id: &spiffe_id,
            subject_key: good.subject_key(),
            dns_names: &[],
            ttl: Duration::from_secs(600),
            now: t0(),
        })
        .unwrap();
    verify_x509_svid(&svid.chain, &d.bundles, t0(), SvidUsage::Client).unwrap();
    // Our own CSR builder (what agents send), for every key type, with DNS names.
    for kt in [
        KeyType::EcP256,
        KeyType::EcP384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let k = aims_credentials::PrivateKey::generate(kt).unwrap();
        let dns = vec!["api.example.org".to_owned()];
        let der = aims_credentials::ca::svid_csr(&k, Some(&spiffe_id), &dns).unwrap();
        let parsed = CertificateRequest::from_der(&der).unwrap();
        parsed.check_for(&spiffe_id, &dns).unwrap();
        assert_eq!(parsed.subject_key().public_key(), k.public_key(), "{kt:?}");
        assert!(
            parsed.check_for(&spiffe_id, &[]).is_err(),
            "DNS not allowed"
        );
        assert!(
            parsed
                .check_for(&id("spiffe://example.org/agent/b"), &dns)
                .is_err()
        );
    }
    // An attestation CSR must name nothing.
    let anonymous = PrivateKey::generate(KeyType::EcP256).unwrap();
    let der = aims_credentials::ca::svid_csr(&anonymous, None, &[]).unwrap();
    CertificateRequest::from_der(&der)
        .unwrap()
        .check_names_nothing()
        .unwrap();
    for named in [
        csr(&key, vec![uri(spiffe_id.as_str())], false),
        csr(
            &key,
            vec![rcgen::SanType::DnsName("a.example".try_into().unwrap())],
            false,
        ),
        csr(&key, vec![], true),
    ] {
        assert!(matches!(
            CertificateRequest::from_der(&named)
                .unwrap()
                .check_names_nothing(),
            Err(IssueError::Refused(_))
        ));
    }
    // A CSR with no SAN is fine too: the CA decides the identity.
    CertificateRequest::from_der(&csr(&key, vec![], false))
        .unwrap()
        .check_for(&spiffe_id, &[])
        .unwrap();

    // Malformed bytes.
    assert!(matches!(
        CertificateRequest::from_der(b"not a csr"),
        Err(IssueError::InvalidCsr(_))
    ));
    assert!(matches!(
        CertificateRequest::from_der(&[]),
        Err(IssueError::InvalidCsr(_))
    ));
    // Oversized.
    assert!(matches!(
        CertificateRequest::from_der(&vec![0x30; 9000]),
        Err(IssueError::InvalidCsr(m)) if m.contains("8 KiB")
    ));
    // Bad signature (proof of possession fails).
    let mut der = csr(&key, vec![uri(spiffe_id.as_str())], false);
    let n = der.len();
    der[n - 2] ^= 0x55;
    assert!(matches!(
        CertificateRequest::from_der(&der),
        Err(IssueError::InvalidCsr(_))
    ));
    // Extra URI SAN.
    let two = csr(
        &key,
        vec![uri(spiffe_id.as_str()), uri("spiffe://example.org/b")],
        false,
    );
    assert!(matches!(
        CertificateRequest::from_der(&two).unwrap().check_for(&spiffe_id, &[]),
        Err(IssueError::Refused(m)) if m.contains("more than one URI SAN")
    ));
    // Another trust domain.
    let foreign = csr(&key, vec![uri("spiffe://evil.org/agent/a")], false);
    assert!(matches!(
        CertificateRequest::from_der(&foreign).unwrap().check_for(&spiffe_id, &[]),
        Err(IssueError::Refused(m)) if m.contains("evil.org")
    ));
    // Unlisted DNS SAN, and an allowed one.
    let dns = csr(
        &key,
        vec![
            uri(spiffe_id.as_str()),
            rcgen::SanType::DnsName("api.example.org".try_into().unwrap()),
        ],
        false,
    );
    let parsed = CertificateRequest::from_der(&dns).unwrap();
    assert!(matches!(
        parsed.check_for(&spiffe_id, &[]),
        Err(IssueError::Refused(_))
    ));
    parsed
        .check_for(&spiffe_id, &["api.example.org".into()])
        .unwrap();
    // Other SAN types.
    let ip = csr(
        &key,
        vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())],
        false,
    );
    assert!(matches!(
        CertificateRequest::from_der(&ip)
            .unwrap()
            .check_for(&spiffe_id, &[]),
        Err(IssueError::Refused(_))
    ));
    // Asking for a CA.
    let ca = csr(&key, vec![], true);
    assert!(matches!(
        CertificateRequest::from_der(&ca).unwrap().check_for(&spiffe_id, &[]),
        Err(IssueError::Refused(m)) if m.contains("CA")
    ));
}

#[test]
fn upstream_authority_chains_svids_to_the_upstream_root() {
    // An upstream root made with rcgen, as an operator's offline CA would be.
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Upstream Root");
    params.not_before = time::OffsetDateTime::from(t0() - Duration::from_secs(86400));
    params.not_after = time::OffsetDateTime::from(t0() + Duration::from_secs(365 * 86400));
    let root = params.self_signed(&root_key).unwrap();
    let upstream =
        UpstreamAuthority::from_pem(&root.pem(), &root_key.serialize_pem(), None).unwrap();
    assert_eq!(upstream.roots().len(), 1);

    let manager = CaManager::new(
        td("example.org"),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        Some(upstream),
    );
    manager.tick(t0()).unwrap();
    let slot = manager.active().unwrap();
    assert_eq!(slot.x509.roots()[0], *root.der());
    let bundle = bundle_from_slots(&td("example.org"), [slot.record()], t0()).unwrap();
    assert_eq!(bundle.x509_authorities(), &[root.der().clone()]);
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = SubjectKey::of(&key);
    let svid = slot
        .x509
        .issue(&X509SvidRequest {
            spiffe_id: &id("spiffe://example.org/a"),
            subject_key: &subject,
            dns_names: &[],
            ttl: Duration::from_secs(600),
            now: t0(),
        })
        .unwrap();
    verify_x509_svid(
        &svid.chain,
        &BundleSet::with([bundle]),
        t0(),
        SvidUsage::Server,
    )
    .unwrap();

    // A key that does not match the certificate, and a non-CA certificate, are refused.
    let other_key = rcgen::KeyPair::generate().unwrap();
    assert!(UpstreamAuthority::from_pem(&root.pem(), &other_key.serialize_pem(), None).is_err());
    let leaf = rcgen::CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    assert!(UpstreamAuthority::from_pem(&leaf.pem(), &other_key.serialize_pem(), None).is_err());
}

#[test]
fn jwt_svid_round_trip_and_rejections() {
    let d = domain("example.org", KeyType::EcP256);
    let other = domain("other.org", KeyType::EcP256);
    let slot = d.manager.active().unwrap();
    let sub = id("spiffe://example.org/agent/a");
    let now = unix_seconds(t0());
    let svid = slot
        .jwt
        .mint_jwt_svid(
            &sub,
            &["https://as.example.org".into()],
            Duration::from_secs(300),
            t0(),
        )
        .unwrap();

    let v = verify_jwt_svid(&svid.token, &d.bundles, "https://as.example.org", now, 0).unwrap();
    assert_eq!(v.spiffe_id, sub);
    assert_eq!(v.expiry, now + 300);
    // The header is exactly alg, kid, typ (JWT-SVID §2.1).
    let jws = CompactJws::parse(&svid.token).unwrap();
    assert_eq!(
        jws.header
            .members
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["alg", "kid", "typ"]
    );

    let aud = "https://as.example.org";
    // Wrong audience.
    assert_eq!(
        verify_jwt_svid(&svid.token, &d.bundles, "https://other", now, 0).unwrap_err(),
        VerifyError::WrongAudience
    );
    // Expired (CR-4), with and without leeway.
    assert_eq!(
        verify_jwt_svid(&svid.token, &d.bundles, aud, now + 301, 0).unwrap_err(),
        VerifyError::Expired
    );
    assert!(verify_jwt_svid(&svid.token, &d.bundles, aud, now + 301, 60).is_ok());
    // Foreign trust domain with no federation.
    assert!(matches!(
        verify_jwt_svid(&svid.token, &other.bundles, aud, now, 0),
        Err(VerifyError::UntrustedDomain(_))
    ));
    // Signed by a key outside the bundle, under a kid the bundle does not know.
    let rogue = JwtAuthority::new(
        "rogue",
        Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap()),
        JwtAuthorityUse::JwtSvid,
    )
    .unwrap();
    let forged = rogue
        .mint_jwt_svid(&sub, &[aud.into()], Duration::from_secs(300), t0())
        .unwrap();
    assert_eq!(
        verify_jwt_svid(&forged.token, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::UnknownKey("rogue".into())
    );
    // ... or under a kid it does know: the signature fails.
    let impostor = JwtAuthority::new(
        slot.jwt.kid(),
        Arc::new(PrivateKey::generate(KeyType::EcP256).unwrap()),
        JwtAuthorityUse::JwtSvid,
    )
    .unwrap();
    let forged = impostor
        .mint_jwt_svid(&sub, &[aud.into()], Duration::from_secs(300), t0())
        .unwrap();
    assert_eq!(
        verify_jwt_svid(&forged.token, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::BadSignature
    );
    // Tampered payload (sub changed).
    let parts: Vec<&str> = svid.token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"spiffe://example.org/admin","aud":"{aud}","exp":{},"iat":{now}}}"#,
        now + 300
    ));
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(
        verify_jwt_svid(&tampered, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::BadSignature
    );
    // EdDSA is not a JWT-SVID algorithm, even with a valid signature.
    let ed = JwtAuthority::new(
        slot.jwt.kid(),
        Arc::new(PrivateKey::generate(KeyType::Ed25519).unwrap()),
        JwtAuthorityUse::JwtSvid,
    )
    .unwrap();
    let ed_svid = ed
        .mint_jwt_svid(&sub, &[aud.into()], Duration::from_secs(300), t0())
        .unwrap();
    assert!(matches!(
        verify_jwt_svid(&ed_svid.token, &d.bundles, aud, now, 0),
        Err(VerifyError::AlgorithmNotAllowed(_))
    ));
    // alg none and HS256.
    for alg in ["none", "HS256"] {
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, slot.jwt.kid()));
        let t = format!("{h}.{}.c2ln", parts[1]);
        assert!(
            matches!(
                verify_jwt_svid(&t, &d.bundles, aud, now, 0),
                Err(VerifyError::AlgorithmNotAllowed(_))
            ),
            "{alg}"
        );
    }
    // Extra header parameters and a missing kid.
    let key = slot.jwt.key();
    let jwk = key.public_key().jwk().clone();
    let with_jwk = sign(
        key,
        &JwsHeader {
            jwk: Some(&jwk),
            ..JwsHeader::new(key, Some("JWT"), Some(slot.jwt.kid()))
        },
        &serde_json::json!({"sub": sub.as_str(), "aud": aud, "exp": now + 60}),
    )
    .unwrap();
    assert_eq!(
        verify_jwt_svid(&with_jwk, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::UnexpectedHeaderParameter("jwk".into())
    );
    let no_kid = sign(
        key,
        &JwsHeader::new(key, None, None),
        &serde_json::json!({"sub": sub.as_str(), "aud": aud, "exp": now + 60}),
    )
    .unwrap();
    assert_eq!(
        verify_jwt_svid(&no_kid, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::MissingKeyId
    );
    // Missing exp, invalid sub, and a wrong typ.
    let no_exp = sign(
        key,
        &JwsHeader::new(key, None, Some(slot.jwt.kid())),
        &serde_json::json!({"sub": sub.as_str(), "aud": aud}),
    )
    .unwrap();
    assert_eq!(
        verify_jwt_svid(&no_exp, &d.bundles, aud, now, 0).unwrap_err(),
        VerifyError::MissingClaim("exp")
    );
    let bad_sub = sign(
        key,
        &JwsHeader::new(key, None, Some(slot.jwt.kid())),
        &serde_json::json!({"sub": "spiffe://Example.org/x", "aud": aud, "exp": now + 60}),
    )
    .unwrap();
    assert!(matches!(
        verify_jwt_svid(&bad_sub, &d.bundles, aud, now, 0),
        Err(VerifyError::InvalidSubject(_))
    ));
    let wit_typ = sign(
        key,
        &JwsHeader::new(key, Some("wit+jwt"), Some(slot.jwt.kid())),
        &serde_json::json!({"sub": sub.as_str(), "aud": aud, "exp": now + 60}),
    )
    .unwrap();
    assert!(matches!(
        verify_jwt_svid(&wit_typ, &d.bundles, aud, now, 0),
        Err(VerifyError::WrongType { .. })
    ));
    // Not yet valid.
    let future = sign(
        key,
        &JwsHeader::new(key, None, Some(slot.jwt.kid())),
        &serde_json::json!({"sub": sub.as_str(), "aud": aud, "exp": now + 600, "nbf": now + 300}),
    )
    .unwrap();
    assert_eq!(
        verify_jwt_svid(&future, &d.bundles, aud, now, 60).unwrap_err(),
        VerifyError::NotYetValid
    );
}

#[test]
fn wit_svid_round_trip_and_rejections() {
    let d = domain("example.org", KeyType::EcP256);
    let slot = d.manager.active().unwrap();
    let now = unix_seconds(t0());
    let workload_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = WorkloadIdentifier::parse("spiffe://example.org/agent/a").unwrap();
    let wit = slot
        .wit
        .mint_wit(
            &subject,
            workload_key.public_key(),
            workload_key.jws_algorithm(),
            Duration::from_secs(3600),
            t0(),
            None,
        )
        .unwrap();
    for profile in [WitProfile::Wimse, WitProfile::WitSvid] {
        let v = verify_wit(&wit.token, &d.bundles, profile, now, 0).unwrap();
        assert_eq!(v.subject, subject);
        assert_eq!(&v.cnf_key, workload_key.public_key());
        assert_eq!(v.hash(), wit.hash());
    }
    assert_eq!(
        verify_wit(&wit.token, &d.bundles, WitProfile::WitSvid, now + 3601, 0).unwrap_err(),
        VerifyError::Expired
    );
    // A JWT-SVID is not a WIT (explicit typing), and the JWT-SVID key is not a WIT key.
    let jwt = slot
        .jwt
        .mint_jwt_svid(
            &id("spiffe://example.org/agent/a"),
            &["x".into()],
            Duration::from_secs(60),
            t0(),
        )
        .unwrap();
    assert!(matches!(
        verify_wit(&jwt.token, &d.bundles, WitProfile::Wimse, now, 0),
        Err(VerifyError::WrongType { .. })
    ));
    // An EdDSA cnf key is a fine WIMSE WIT but not a WIT-SVID (JWT-SVID algorithms only).
    let ed = PrivateKey::generate(KeyType::Ed25519).unwrap();
    let ed_wit = slot
        .wit
        .mint_wit(
            &subject,
            ed.public_key(),
            ed.jws_algorithm(),
            Duration::from_secs(60),
            t0(),
            None,
        )
        .unwrap();
    verify_wit(&ed_wit.token, &d.bundles, WitProfile::Wimse, now, 0).unwrap();
    assert!(matches!(
        verify_wit(&ed_wit.token, &d.bundles, WitProfile::WitSvid, now, 0),
        Err(VerifyError::AlgorithmNotAllowed(_))
    ));
    // A cnf alg that does not fit the key is refused at minting.
    assert!(
        slot.wit
            .mint_wit(
                &subject,
                ed.public_key(),
                jsonwebtoken::Algorithm::ES256,
                Duration::from_secs(60),
                t0(),
                None
            )
            .is_err()
    );
    // A WIT-SVID must not carry aud, and must have cnf.
    let key = slot.wit.key();
    for (claims, err) in [
        (
            serde_json::json!({"sub": subject.as_str(), "exp": now + 60, "aud": "x", "cnf": {"jwk": workload_key.public_key().to_jwk(None, None, Some(jsonwebtoken::Algorithm::ES256))}}),
            VerifyError::ForbiddenClaim("aud"),
        ),
        (
            serde_json::json!({"sub": subject.as_str(), "exp": now + 60}),
            VerifyError::MissingClaim("cnf.jwk"),
        ),
        (
            serde_json::json!({"sub": subject.as_str(), "exp": now + 60, "cnf": {"jwk": workload_key.public_key().to_jwk(None, None, None)}}),
            VerifyError::MissingClaim("cnf.jwk.alg"),
        ),
    ] {
        let t = sign(
            key,
            &JwsHeader::new(key, Some("wit+jwt"), Some(slot.wit.kid())),
            &claims,
        )
        .unwrap();
        assert_eq!(
            verify_wit(&t, &d.bundles, WitProfile::WitSvid, now, 0).unwrap_err(),
            err
        );
    }
    // A cnf.jwk with a private part.
    let private = serde_json::from_str::<serde_json::Value>(
        &workload_key
            .to_private_jwk(jsonwebtoken::Algorithm::ES256)
            .unwrap(),
    )
    .unwrap();
    let t = sign(
        key,
        &JwsHeader::new(key, Some("wit+jwt"), Some(slot.wit.kid())),
        &serde_json::json!({"sub": subject.as_str(), "exp": now + 60, "cnf": {"jwk": private}}),
    )
    .unwrap();
    assert!(matches!(
        verify_wit(&t, &d.bundles, WitProfile::Wimse, now, 0),
        Err(VerifyError::Malformed(_))
    ));
    // Missing kid is fatal for WIT-SVIDs.
    let t = sign(key, &JwsHeader::new(key, Some("wit+jwt"), None), &serde_json::json!({"sub": subject.as_str(), "exp": now + 60, "cnf": {"jwk": workload_key.public_key().to_jwk(None, None, Some(jsonwebtoken::Algorithm::ES256))}})).unwrap();
    assert_eq!(
        verify_wit(&t, &d.bundles, WitProfile::WitSvid, now, 0).unwrap_err(),
        VerifyError::MissingKeyId
    );
    verify_wit(&t, &d.bundles, WitProfile::Wimse, now, 0).unwrap();
}

/// The example WIT of draft-ietf-wimse-workload-creds (and of WPT -01 and -02) verifies with the
/// issuer key the draft publishes.
#[test]
fn wimse_draft_example_wits_verify() {
    let issuer: jsonwebtoken::jwk::Jwk = serde_json::from_str(
        r#"{"kty":"EC","crv":"P-256","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"}"#,
    )
    .unwrap();
    let mut bundle = TrustBundle::new(td("example.com"));
    bundle
        .add_wit_authority("June 5", PublicKey::from_jwk(&issuer).unwrap())
        .unwrap();
    let bundles = BundleSet::with([bundle]);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/wimse");
    for file in ["wit.txt", "wpt-02/wpt-02-example-wit.txt"] {
        let raw = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        // The -01 file carries stray base64 padding (specs.md §2.2).
        let token = raw.trim().trim_end_matches('=');
        let wit = verify_wit(token, &bundles, WitProfile::Wimse, 1_745_510_000, 0).unwrap();
        assert_eq!(
            wit.subject.as_str(),
            "wimse://example.com/specific-workload"
        );
        assert_eq!(wit.cnf_alg, jsonwebtoken::Algorithm::EdDSA);
        // wth of the WIT as the WPT -01 and -02 examples computed it.
        assert!(
            [
                "AaYUfC34D1di2FxQLpiIJJ7Sg8VZ6o8OCdwSf9IToLg",
                "X9wiPgq3jlSGzAegHCGhNO1lJgUbDoI1Mjkat5QHJB0"
            ]
            .contains(&wit.hash().as_str()),
            "{file}"
        );
        assert_eq!(
            verify_wit(token, &bundles, WitProfile::Wimse, 1_745_512_511, 0).unwrap_err(),
            VerifyError::Expired
        );
        // ES256 issuer key but an EdDSA cnf: not a WIT-SVID; and "June 5" is not a SPIFFE ID subject.
        assert!(verify_wit(token, &bundles, WitProfile::WitSvid, 1_745_510_000, 0).is_err());
    }
}

#[test]
fn bundle_jwks_round_trip_and_rules() {
    let d = domain("example.org", KeyType::EcP256);
    let slot = d.manager.active().unwrap();
    let mut bundle = bundle_from_slots(&td("example.org"), [slot.record()], t0()).unwrap();
    bundle.set_sequence(7);
    bundle.set_refresh_hint(Some(300));
    let json = bundle.to_jwks().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spiffe_sequence"], 7);
    assert_eq!(v["spiffe_refresh_hint"], 300);
    let keys = v["keys"].as_array().unwrap();
    let by_use = |u: &str| keys.iter().filter(|k| k["use"] == u).collect::<Vec<_>>();
    let x509 = by_use("x509-svid");
    assert_eq!(x509.len(), 1);
    assert!(
        x509[0].get("kid").is_none(),
        "x509-svid entries carry no kid"
    );
    assert_eq!(x509[0]["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(by_use("jwt-svid")[0]["kid"], slot.jwt.kid());
    assert_eq!(by_use("wit-svid")[0]["kid"], slot.wit.kid());

    let back = TrustBundle::from_jwks(td("example.org"), json.as_bytes()).unwrap();
    assert!(back.same_keys(&bundle));
    assert_eq!(back.sequence(), 7);
    assert_eq!(back.refresh_hint(), Some(300));
    assert_eq!(back.to_pem().matches("BEGIN CERTIFICATE").count(), 1);
    // Either document form reads back: the JWK Set whole, PEM as X.509 authorities only.
    let doc =
        TrustBundle::from_document(td("example.org"), format!("\n {json}").as_bytes()).unwrap();
    assert!(doc.same_keys(&bundle));
    let pem = TrustBundle::from_document(td("example.org"), bundle.to_pem().as_bytes()).unwrap();
    assert_eq!(pem.x509_authorities(), bundle.x509_authorities());
    assert_eq!(pem.jwt_authorities().count(), 0);
    // The Workload API's concatenated DER splits back into the same certificates.
    let concat = bundle.x509_authorities_concat_der();
    assert_eq!(
        aims_credentials::bundle::certs_from_concat_der(&concat).unwrap(),
        bundle.x509_authorities()
    );
    assert!(aims_credentials::bundle::certs_from_concat_der(&concat[..concat.len() - 1]).is_err());
    assert!(
        aims_credentials::bundle::certs_from_concat_der(b"")
            .unwrap()
            .is_empty()
    );
    for junk in [&b"hello"[..], b"", b"\xff\xfe"] {
        assert!(matches!(
            TrustBundle::from_document(td("example.org"), junk),
            Err(VerifyError::Malformed(_))
        ));
    }
    // Only the JWT keys in the Workload API's JWT bundle.
    let jwt_only: serde_json::Value = serde_json::from_str(&bundle.to_jwt_jwks().unwrap()).unwrap();
    assert!(
        jwt_only["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["use"] == "jwt-svid")
    );

    // Unknown use and unknown kty are ignored; a missing kid or a duplicate kid is an error.
    let doc = r#"{"keys":[{"kty":"EC","use":"enc","crv":"P-256","x":"a","y":"b"},{"kty":"XYZ","use":"jwt-svid","kid":"k"}]}"#;
    assert!(
        TrustBundle::from_jwks(td("example.org"), doc.as_bytes())
            .unwrap()
            .is_empty()
    );
    let jwk = serde_json::to_value(slot.jwt.key().public_key().to_jwk(
        Some("jwt-svid"),
        None,
        None,
    ))
    .unwrap();
    let doc = serde_json::json!({"keys": [jwk]}).to_string();
    assert_eq!(
        TrustBundle::from_jwks(td("example.org"), doc.as_bytes()).unwrap_err(),
        VerifyError::MissingKeyId
    );
    let jwk = serde_json::to_value(slot.jwt.key().public_key().to_jwk(
        Some("jwt-svid"),
        Some("dup"),
        None,
    ))
    .unwrap();
    let doc = serde_json::json!({"keys": [jwk.clone(), jwk]}).to_string();
    assert!(
        matches!(TrustBundle::from_jwks(td("example.org"), doc.as_bytes()), Err(VerifyError::Malformed(m)) if m.contains("duplicate"))
    );
    assert!(TrustBundle::from_jwks(td("example.org"), b"{").is_err());
    assert_eq!(
        TrustBundle::from_jwks(td("example.org"), &vec![b' '; 2 << 20]).unwrap_err(),
        VerifyError::TooLarge
    );
}

#[test]
fn rotation_prepares_at_half_life_and_activates_at_one_sixth_remaining() {
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        rotation_step(t0(), t0(), t0() + day, false),
        RotationStep::Wait
    );
    assert_eq!(
        rotation_step(t0() + day / 2, t0(), t0() + day, false),
        RotationStep::Prepare
    );
    assert_eq!(
        rotation_step(t0() + day / 2, t0(), t0() + day, true),
        RotationStep::Wait
    );
    assert_eq!(
        rotation_step(t0() + day - day / 6, t0(), t0() + day, true),
        RotationStep::Activate
    );

    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(DiskKeyManager::open(dir.path()).unwrap());
    let manager = CaManager::new(
        td("example.org"),
        AuthorityPolicy::default(),
        keys.clone(),
        None,
    );
    let first = match manager.tick(t0()).unwrap().as_slice() {
        [RotationEvent::Activated(rec)] => rec.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        manager
            .tick(t0() + day / 2 - Duration::from_secs(1))
            .unwrap()
            .is_empty()
    );
    let second = match manager.tick(t0() + day / 2).unwrap().as_slice() {
        [RotationEvent::Prepared(rec)] => rec.clone(),
        other => panic!("{other:?}"),
    };
    // Prepared: published, but the first slot still signs.
    assert_eq!(manager.active().unwrap().id(), first.id);
    let bundle = bundle_from_slots(&td("example.org"), [&first, &second], t0() + day / 2).unwrap();
    assert_eq!(bundle.x509_authorities().len(), 2);
    assert_eq!(bundle.jwt_authorities().count(), 2);

    // A restart in between restores both slots from the store record and the key directory.
    let restarted = CaManager::new(td("example.org"), AuthorityPolicy::default(), keys, None);
    restarted.restore(Some(&first), Some(&second)).unwrap();
    assert_eq!(restarted.active().unwrap().id(), first.id);
    let activate_at = t0() + day - day / 6;
    assert!(
        restarted
            .tick(activate_at - Duration::from_secs(1))
            .unwrap()
            .is_empty()
    );
    assert!(
        matches!(restarted.tick(activate_at).unwrap().as_slice(), [RotationEvent::Activated(r)] if r.id == second.id)
    );
    let active = restarted.active().unwrap();
    assert_eq!(active.id(), second.id);

    // What the new slot signs verifies against the overlap bundle, and so does the old slot's.
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let subject = SubjectKey::of(&key);
    let svid = active
        .x509
        .issue(&X509SvidRequest {
            spiffe_id: &id("spiffe://example.org/a"),
            subject_key: &subject,
            dns_names: &[],
            ttl: Duration::from_secs(600),
            now: activate_at,
        })
        .unwrap();
    let overlap =
        BundleSet::with([
            bundle_from_slots(&td("example.org"), [&first, &second], activate_at).unwrap(),
        ]);
    verify_x509_svid(&svid.chain, &overlap, activate_at, SvidUsage::Client).unwrap();
    // After the first slot expires it leaves the bundle.
    let after = t0() + day + Duration::from_secs(1);
    let b = bundle_from_slots(&td("example.org"), [&first, &second], after).unwrap();
    assert_eq!(b.x509_authorities().len(), 1);

    // Down past the expiry of every slot: a fresh slot is created and activated at once.
    let far = t0() + 3 * day;
    assert!(matches!(
        restarted.tick(far).unwrap().as_slice(),
        [RotationEvent::Activated(_)]
    ));
}

#[test]
fn a_restored_slot_with_missing_keys_is_skipped() {
    let manager = CaManager::new(
        td("example.org"),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    manager.tick(t0()).unwrap();
    let rec = manager.active().unwrap().record().clone();
    let fresh = CaManager::new(
        td("example.org"),
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    fresh.restore(Some(&rec), None).unwrap();
    assert!(fresh.active().is_none());
}

trait BundleForTest {
    fn bundle_for_test(&self, td: &str) -> Arc<TrustBundle>;
}

impl BundleForTest for BundleSet {
    fn bundle_for_test(&self, td: &str) -> Arc<TrustBundle> {
        use aims_credentials::BundleSource as _;
        self.bundle_for(td).unwrap()
    }
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../testdata/go-spiffe/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// go-spiffe's X509-SVID fixtures, with the errors go-spiffe expects for them.
#[test]
fn go_spiffe_x509_svid_fixtures() {
    use aims_credentials::bundle::certs_from_pem;
    use aims_credentials::x509_svid::check_chain_structure;
    let good = certs_from_pem(&fixture("x509svid/good-cert-and-key.pem")).unwrap();
    assert_eq!(
        check_chain_structure(&good).unwrap().as_str(),
        "spiffe://example.org/workload-1"
    );
    for (file, expect) in [
        ("wrong-leaf-empty-id.pem", "certificate contains no URI SAN"),
        (
            "wrong-leaf-ca-true.pem",
            "leaf certificate must not have CA flag set to true",
        ),
        (
            "wrong-leaf-no-digital-signature.pem",
            "leaf certificate must have 'digitalSignature' set as key usage",
        ),
        (
            "wrong-leaf-cert-sign.pem",
            "leaf certificate must not have 'keyCertSign' set as key usage",
        ),
        (
            "wrong-leaf-crl-sign.pem",
            "leaf certificate must not have 'cRLSign' set as key usage",
        ),
        (
            "wrong-intermediate-no-ca.pem",
            "signing certificate must have CA flag set to true",
        ),
        (
            "wrong-intermediate-no-key-cert-sign.pem",
            "signing certificate must have 'keyCertSign' set as key usage",
        ),
    ] {
        let chain = certs_from_pem(&fixture(&format!("x509svid/{file}"))).unwrap();
        match check_chain_structure(&chain) {
            Err(VerifyError::Certificate(m)) => assert!(m.contains(expect), "{file}: {m}"),
            other => panic!("{file}: {other:?}"),
        }
    }
}

/// go-spiffe's bundle fixtures, with go-spiffe's expectations.
#[test]
fn go_spiffe_bundle_fixtures() {
    let parse = |f: &str| {
        TrustBundle::from_jwks(
            td("domain.test"),
            fixture(&format!("spiffebundle/{f}")).as_bytes(),
        )
    };
    let b = parse("spiffebundle_valid_1.json").unwrap();
    assert_eq!(
        (
            b.x509_authorities().len(),
            b.jwt_authorities().count(),
            b.wit_authorities().count()
        ),
        (1, 1, 0)
    );
    let b = parse("spiffebundle_valid_2.json").unwrap();
    assert_eq!(
        (b.jwt_authorities().count(), b.refresh_hint(), b.sequence()),
        (6, Some(60), 1)
    );
    let b = parse("spiffebundle_valid_with_wit.json").unwrap();
    assert_eq!(
        (b.jwt_authorities().count(), b.wit_authorities().count()),
        (2, 2)
    );
    // A round trip keeps every key.
    let again = TrustBundle::from_jwks(td("domain.test"), b.to_jwks().unwrap().as_bytes()).unwrap();
    assert!(again.same_keys(&b));
    assert_eq!(
        parse("spiffebundle_missing_kid.json").unwrap_err(),
        VerifyError::MissingKeyId
    );
    assert!(matches!(
        parse("spiffebundle_no_keys.json"),
        Err(VerifyError::Malformed(_))
    ));
    assert!(
        matches!(parse("spiffebundle_multiple_x509.json"), Err(VerifyError::Malformed(m)) if m.contains("single certificate"))
    );
    for f in [
        "spiffebundle_missing_use.json",
        "spiffebundle_unrecognized_use.json",
    ] {
        let b = parse(f).unwrap();
        assert_eq!(
            (b.x509_authorities().len(), b.jwt_authorities().count()),
            (1, 0),
            "{f}"
        );
    }
}
