//! Node attestation: x509pop accepts only a node certificate from a trusted node CA whose key
//! signed a fresh proof bound to this trust domain and this CSR, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aims_core::TrustDomain;
use aims_credentials::{KeyType, PrivateKey};
use aims_provisioning::node::{
    NodeAttestError, X509PopVerifier, create_x509pop_proof, join_token_agent_id, join_token_digest,
    new_join_token,
};

struct NodeCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn node_ca() -> NodeCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "node CA");
    let cert = p.self_signed(&key).unwrap();
    NodeCa {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

fn node_cert(ca: &NodeCa, cn: &str) -> (Vec<u8>, PrivateKey) {
    let key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.der().to_vec(), key)
}

#[test]
fn x509pop_accepts_a_fresh_proof_once() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = node_ca();
    let v = X509PopVerifier::from_pem(td.clone(), &ca.pem).unwrap();
    let (cert, key) = node_cert(&ca, "node-1.example.org");
    let csr = b"the agent's CSR";
    let now = SystemTime::now();
    let proof = create_x509pop_proof(&key, &td, csr, now).unwrap();
    let seen = Mutex::new(HashSet::new());
    let admit = |jti: &str, _exp: i64| seen.lock().unwrap().insert(jti.to_owned());
    let id = v
        .verify(std::slice::from_ref(&cert), &proof, csr, now, admit)
        .unwrap();
    assert!(
        id.spiffe_id
            .as_str()
            .starts_with("spiffe://example.org/aims/agent/x509pop/")
    );
    assert!(
        id.selectors
            .iter()
            .any(|s| s.to_string() == "x509pop:subject:cn:node-1.example.org")
    );

    // Replayed.
    let admit = |jti: &str, _exp: i64| seen.lock().unwrap().insert(jti.to_owned());
    assert!(
        matches!(v.verify(std::slice::from_ref(&cert), &proof, csr, now, admit), Err(NodeAttestError::Proof(m)) if m == "replayed")
    );
    let fresh = |_: &str, _: i64| true;
    // Bound to another CSR.
    let proof = create_x509pop_proof(&key, &td, csr, now).unwrap();
    assert!(matches!(
        v.verify(
            std::slice::from_ref(&cert),
            &proof,
            b"another CSR",
            now,
            fresh
        ),
        Err(NodeAttestError::Proof(_))
    ));
    // Expired.
    let old = create_x509pop_proof(&key, &td, csr, now - Duration::from_secs(600)).unwrap();
    assert!(matches!(
        v.verify(std::slice::from_ref(&cert), &old, csr, now, fresh),
        Err(NodeAttestError::Proof(_))
    ));
    // For another trust domain.
    let other =
        create_x509pop_proof(&key, &TrustDomain::new("other.org").unwrap(), csr, now).unwrap();
    assert!(matches!(
        v.verify(std::slice::from_ref(&cert), &other, csr, now, fresh),
        Err(NodeAttestError::Proof(_))
    ));
    // Signed by a key that is not the certificate's.
    let thief = PrivateKey::generate(KeyType::EcP256).unwrap();
    let stolen = create_x509pop_proof(&thief, &td, csr, now).unwrap();
    assert!(matches!(
        v.verify(&[cert], &stolen, csr, now, fresh),
        Err(NodeAttestError::Proof(_))
    ));
    // A certificate from an untrusted CA.
    let rogue = node_ca();
    let (rcert, rkey) = node_cert(&rogue, "node-1.example.org");
    let proof = create_x509pop_proof(&rkey, &td, csr, now).unwrap();
    assert!(matches!(
        v.verify(&[rcert], &proof, csr, now, fresh),
        Err(NodeAttestError::Certificate(_))
    ));
    assert!(matches!(
        v.verify(&[], "x.y.z", csr, now, fresh),
        Err(NodeAttestError::Certificate(_))
    ));
}

#[test]
fn join_tokens_are_random_and_only_their_digest_names_the_agent() {
    let td = TrustDomain::new("example.org").unwrap();
    let a = new_join_token().unwrap();
    let b = new_join_token().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(join_token_digest(&a), a);
    let id = join_token_agent_id(&td, &a).unwrap();
    assert!(
        !id.as_str().contains(&a),
        "the token itself never appears in the agent's ID"
    );
}
