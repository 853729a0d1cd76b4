//! RFC 9421 interop with an independent implementation (Python `http-message-signatures`):
//! what AIMS signs it verifies, what it signs AIMS verifies, and neither accepts a tampered
//! message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use aims_authn::httpsig::digest::{DigestAlgorithm, content_digest, verify_content_digest};
use aims_authn::httpsig::{
    Algorithm, Component, Message, RequestParts, SignatureInput, Signatures, SigningKey,
    VerifyingKey, sign, verify,
};
use aims_credentials::{KeyType, PrivateKey};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Uri};

const URL: &str = "http://127.0.0.1:8080/orders/42?expand=items";
const TAG: &str = "aims-interop";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/httpsig_interop.py")
}

fn python_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import http_message_signatures, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "http-message-signatures is required under CI=true"
        );
        eprintln!("warning: skipping: Python http-message-signatures is not installed");
    }
    ok
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

fn message_json(dir: &Path, headers: &HeaderMap, body: &[u8]) -> PathBuf {
    let list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let msg = serde_json::json!({
        "method": "POST",
        "url": URL,
        "headers": list,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    let path = dir.join("message.json");
    std::fs::write(&path, msg.to_string()).unwrap();
    path
}

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap()
}

fn base_headers(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "content-digest",
        content_digest(body, DigestAlgorithm::Sha256)
            .parse()
            .unwrap(),
    );
    h
}

fn cases() -> [(KeyType, &'static str); 2] {
    [
        (KeyType::Ed25519, "ed25519"),
        (KeyType::EcP256, "ecdsa-p256-sha256"),
    ]
}

#[test]
fn python_verifies_what_aims_signs() {
    if !python_available() {
        return;
    }
    for (kt, alg) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(kt).unwrap();
        let pub_pem = dir.path().join("pub.pem");
        std::fs::write(
            &pub_pem,
            pem(
                "PUBLIC KEY",
                &rcgen::PublicKeyData::subject_public_key_info(&key),
            ),
        )
        .unwrap();
        let body = br#"{"quantity": 3}"#;
        let mut h = base_headers(body);
        let (m, u): (Method, Uri) = (Method::POST, URL.parse().unwrap());
        let components = [
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-type",
            "content-digest",
        ]
        .iter()
        .map(|c| Component::new(c).unwrap())
        .collect();
        let created = aims_core::unix_seconds(SystemTime::now());
        let input = SignatureInput::new(components)
            .param("created", sfv::Integer::try_from(created).unwrap())
            .unwrap()
            .param(
                "keyid",
                sfv::String::from_string("aims-key".to_owned()).unwrap(),
            )
            .unwrap()
            .param("alg", sfv::String::from_string(alg.to_owned()).unwrap())
            .unwrap()
            .param("nonce", sfv::String::from_string("n-1".to_owned()).unwrap())
            .unwrap()
            .param("tag", sfv::String::from_string(TAG.to_owned()).unwrap())
            .unwrap();
        let snapshot = h.clone();
        let fields = sign(
            &Message::Request(RequestParts::from_http(&m, &u, &snapshot, "http")),
            "aims",
            &input,
            SigningKey::Private(&key),
        )
        .unwrap();
        h.insert("signature-input", fields.signature_input.parse().unwrap());
        h.insert("signature", fields.signature.parse().unwrap());
        h.remove("host");

        let ok = python(&[
            "verify",
            alg,
            pub_pem.to_str().unwrap(),
            "aims-key",
            message_json(dir.path(), &h, body).to_str().unwrap(),
        ]);
        assert!(
            ok.status.success(),
            "{alg}: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        // Python rejects the same signature over a tampered body.
        let bad = python(&[
            "verify",
            alg,
            pub_pem.to_str().unwrap(),
            "aims-key",
            message_json(dir.path(), &h, br#"{"quantity": 300}"#)
                .to_str()
                .unwrap(),
        ]);
        assert!(!bad.status.success(), "{alg}: tampered body accepted");
    }
}

#[test]
fn aims_verifies_what_python_signs() {
    if !python_available() {
        return;
    }
    for (kt, alg) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(kt).unwrap();
        let priv_pem = dir.path().join("key.pem");
        std::fs::write(&priv_pem, key.to_pkcs8_pem().as_bytes()).unwrap();
        let body = br#"{"quantity": 3}"#;
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let out = python(&[
            "sign",
            alg,
            priv_pem.to_str().unwrap(),
            "py-key",
            message_json(dir.path(), &h, body).to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, field) in [
            ("signature-input", "Signature-Input"),
            ("signature", "Signature"),
            ("content-digest", "Content-Digest"),
        ] {
            h.insert(name, added[field].as_str().unwrap().parse().unwrap());
        }
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        verify_content_digest(h["content-digest"].to_str().unwrap(), body).unwrap();

        let sigs = Signatures::from_headers(&h).unwrap();
        let (_, input, signature) = sigs.with_tag(TAG)[0];
        assert_eq!(input.string_param("keyid"), Some("py-key"));
        let (m, u): (Method, Uri) = (Method::POST, URL.parse().unwrap());
        let vk = VerifyingKey::Public(
            Box::new(key.public_key().clone()),
            Algorithm::from_name(input.string_param("alg").unwrap_or(alg)).unwrap(),
        );
        verify(
            &Message::Request(RequestParts::from_http(&m, &u, &h, "http")),
            input,
            signature,
            &vk,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        // A changed query is a different message.
        let u2: Uri = "http://127.0.0.1:8080/orders/42?expand=none"
            .parse()
            .unwrap();
        assert!(
            verify(
                &Message::Request(RequestParts::from_http(&m, &u2, &h, "http")),
                input,
                signature,
                &vk
            )
            .is_err()
        );
    }
}
