//! The agent SDK (`aims-sdk`, issue 9) against a real `aims up`: an X509-SVID source that
//! follows rotations, JWT-SVIDs, tokens obtained with the SVID (DPoP-bound), token exchange,
//! transaction tokens, and WPT-signed requests with the WIT-SVID — every piece used the way an
//! agent would, through the gateway where it applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aims_credentials::jose::CompactJws;
use aims_sdk::dpop::DpopKey;
use aims_sdk::oauth::TokenClient;
use aims_sdk::source::{JwtSource, X509Source, wit_signer};
use common::{Aims, assert_ok};
use serde_json::Value;

fn claims(token: &str) -> Value {
    CompactJws::parse(token).unwrap().claims().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_on_the_sdk_gets_rotating_credentials_tokens_and_calls_tools() {
    let aims = tokio::task::spawn_blocking(|| Aims::start("up", &["--register-self"]))
        .await
        .unwrap();
    let socket = aims.workload_socket();
    let issuer = aims.up["server"]["oauth_issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca = std::fs::read(aims.up["server"]["web_ca_file"].as_str().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let td = aims.up["trust_domain"].as_str().unwrap().to_owned();

    // An identity whose X509-SVID lives 10 s: the agent rotates it every 5 s.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let rotating = format!("spiffe://{td}/sdk/rotating");
    assert_ok(&aims.cli(&[
        "entry",
        "create",
        "--spiffe-id",
        &rotating,
        "--parent-id",
        &format!("spiffe://{td}/aims/agent/local"),
        "-s",
        &format!("unix:uid:{uid}"),
        "--x509-svid-ttl",
        "10s",
    ]));
    let source = {
        let mut tries = 0;
        loop {
            match X509Source::new(&socket, Some(rotating.clone())).await {
                Ok(s) => break s,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no X509-SVID for {rotating}: {e}"),
            }
        }
    };
    let mut source = source;
    let first = source.svid();
    assert_eq!(first.spiffe_id, rotating);
    assert!(!first.chain.is_empty() && !first.bundle.is_empty());
    tokio::time::timeout(Duration::from_secs(30), source.changed())
        .await
        .expect("a rotation within 30 s")
        .unwrap();
    let second = source.svid();
    assert_ne!(first.chain[0], second.chain[0], "a new certificate");
    assert_ne!(
        first.key.public_key().thumbprint(),
        second.key.public_key().thumbprint(),
        "with a fresh key (AIMS PR-9)"
    );

    // Tokens with the agent's JWT-SVID, bound to a DPoP key, used at the gateway.
    // This process has two identities (its user's and the rotating one): the SDK asks for one.
    let svids = Arc::new(JwtSource::new(&socket, Some(rotating.clone())));
    let jwt = svids.token(&issuer).await.unwrap();
    assert_eq!(claims(&jwt)["sub"], rotating.as_str());
    assert_eq!(
        svids.token(&issuer).await.unwrap(),
        jwt,
        "reused until half its life"
    );
    let tokens = TokenClient::new(issuer.clone(), http.clone(), svids);
    let gateway = aims.up["gateway"]["url"].as_str().unwrap().to_owned();
    let weather = aims.up["gateway"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "weather")
        .unwrap()["resource"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = DpopKey::generate().unwrap();
    let t = tokens
        .client_credentials(&weather, "weather.read", Some(&key))
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(
        claims(&t.access_token)["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    let url = format!("{gateway}/weather?city=Lyon");
    let call = |proof: Option<String>| {
        let mut req = http
            .get(&url)
            .header("authorization", format!("DPoP {}", t.access_token));
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        req.send()
    };
    let ok = call(Some(
        key.proof("GET", &url, Some(&t.access_token), None).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    assert_eq!(
        call(None).await.unwrap().status(),
        401,
        "a bound token needs its proof"
    );

    // Token exchange and a transaction token.
    let exchanged = tokens
        .exchange(&t.access_token, &weather, "weather.read", None)
        .await
        .unwrap();
    assert_eq!(claims(&exchanged.access_token)["sub"], rotating.as_str());
    let txn = tokens
        .transaction_token(&t.access_token, &td, "weather.read")
        .await
        .unwrap();
    assert_eq!(
        txn.issued_token_type.as_deref(),
        Some("urn:ietf:params:oauth:token-type:txn_token")
    );
    assert!(claims(&txn.access_token)["txn"].is_string());
    let wider = tokens
        .exchange(
            &t.access_token,
            &weather,
            "weather.read weather.write",
            None,
        )
        .await
        .unwrap_err();
    assert!(wider.to_string().starts_with("invalid_scope"), "{wider}");

    // A WPT-signed request with the WIT-SVID: the gateway authenticates the workload (then
    // policy asks for a scope it has no token for).
    let signer = wit_signer(&socket, Some(rotating.clone()), aims_sdk::ProofMode::Wpt)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let signed = signer
        .send(&client, client.get(format!("{gateway}/weather?city=Oslo")))
        .await
        .unwrap();
    assert_eq!(
        signed.status(),
        403,
        "authenticated, then decided by policy"
    );
    let unsigned = client
        .get(format!("{gateway}/weather?city=Oslo"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

/// A Python agent on py-spiffe, the standard SPIFFE library, needs no AIMS client
/// (examples/python-agent): identity from the Workload API, a token with its JWT-SVID, an MCP
/// call through the gateway.
#[test]
fn a_python_agent_on_py_spiffe_needs_no_aims_client() {
    let aims = Aims::start("up", &["--register-self"]);
    let up_json = aims.data_dir.join("up.json");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/python-agent/agent.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&up_json)
        .arg("hi from py-spiffe")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        aims.logs()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["spiffe_id"].as_str().unwrap().contains("/user/"), "{v}");
    assert_eq!(v["token_sub"], v["spiffe_id"]);
    assert_eq!(v["echo"], "hi from py-spiffe");
}
