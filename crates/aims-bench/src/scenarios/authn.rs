//! Authentication on one core (the issue 4 figures): mTLS handshakes with SPIFFE verification
//! against plain rustls WebPKI verification, and WPT and WIMSE HTTP-signature verification
//! against raw ES256 verification, each baseline measured in the same run.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_authn::ReplayCache;
use aims_authn::httpsig::RequestParts;
use aims_authn::mtls::{Authorizer, SvidStore, client_config, provider, server_config};
use aims_authn::wimse_sig::{RequestSigning, WimseSigVerifier, sign_request};
use aims_authn::wpt::{WptBinding, WptVerifier, create_wpt};
use aims_core::{Clock as _, ManualClock, SpiffeId, TrustDomain, WorkloadIdentifier};
use aims_credentials::authority::bundle_from_slots;
use aims_credentials::ca::{SubjectKey, X509SvidRequest};
use aims_credentials::{
    AuthorityPolicy, BundleSet, CaManager, KeyType, MemoryKeyManager, PrivateKey,
};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::baseline::RawEs256;
use crate::measure::{Timing, run_interleaved};
use crate::report::{Row, ScenarioReport};

struct Domain {
    ca: CaManager,
    bundles: Arc<BundleSet>,
}

fn domain() -> anyhow::Result<Domain> {
    let ca = CaManager::new(
        TrustDomain::new("bench.example")?,
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now())?;
    let slot = ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
    let bundle = bundle_from_slots(ca.trust_domain(), [slot.record()], SystemTime::now())?;
    Ok(Domain {
        ca,
        bundles: Arc::new(BundleSet::with([bundle])),
    })
}

impl Domain {
    fn svid(
        &self,
        id: &str,
        dns: &[String],
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKey)> {
        let key = PrivateKey::generate(KeyType::EcP256)?;
        let slot = self.ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
        let svid = slot.x509.issue(&X509SvidRequest {
            spiffe_id: &SpiffeId::parse(id)?,
            subject_key: &SubjectKey::of(&key),
            dns_names: dns,
            ttl: Duration::from_secs(3600),
            now: SystemTime::now(),
        })?;
        Ok((svid.chain, key))
    }
}

fn der(key: &PrivateKey) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()))
}

/// One full TLS 1.3 handshake between a fresh client and server connection, pumped in memory.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> anyhow::Result<()> {
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("tool.bench.example")?)?;
    let mut s = ServerConnection::new(server.clone())?;
    let mut buf = Vec::with_capacity(8192);
    for _ in 0..16 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
            s.process_new_packets()?;
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
            c.process_new_packets()?;
        }
    }
    anyhow::bail!("handshake did not finish")
}

/// `mtls`: handshakes per second, SPIFFE verification vs WebPKI verification.
pub fn mtls(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let d = domain()?;
    let (server_chain, server_key) = d.svid(
        "spiffe://bench.example/tool/orders",
        &["tool.bench.example".into()],
    )?;
    let (client_chain, client_key) = d.svid("spiffe://bench.example/agent/worker", &[])?;

    // WebPKI baseline: the same certificates and keys, roots = the bundle's X.509 authorities.
    let mut roots = RootCertStore::empty();
    for r in
        d.ca.active()
            .ok_or_else(|| anyhow::anyhow!("no CA"))?
            .x509
            .roots()
    {
        roots.add(r.clone())?;
    }
    let roots = Arc::new(roots);
    let mut web_server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()?,
        )
        .with_single_cert(server_chain.clone(), der(&server_key))?;
    web_server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    web_server.send_tls13_tickets = 0;
    let mut web_client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(client_chain.clone(), der(&client_key))?;
    web_client.resumption = rustls::client::Resumption::disabled();
    let (web_client, web_server) = (Arc::new(web_client), Arc::new(web_server));

    let spiffe_server = Arc::new(server_config(
        Arc::new(SvidStore::with(server_chain, &server_key)?),
        d.bundles.clone(),
        Authorizer::Exact(SpiffeId::parse("spiffe://bench.example/agent/worker")?),
    )?);
    let spiffe_client = Arc::new(client_config(
        Arc::new(SvidStore::with(client_chain, &client_key)?),
        d.bundles.clone(),
        Authorizer::Exact(SpiffeId::parse("spiffe://bench.example/tool/orders")?),
    )?);

    eprintln!("  mtls: WebPKI and SPIFFE handshakes (interleaved)…");
    let [web, spiffe]: [_; 2] = run_interleaved(
        timing,
        &mut [&mut || handshake(&web_client, &web_server), &mut || {
            handshake(&spiffe_client, &spiffe_server)
        }],
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("two measurements"))?;
    let base = web.ops_per_sec;
    Ok(ScenarioReport {
        scenario: "mtls".into(),
        description: "mutual TLS 1.3 handshakes on one core: SPIFFE vs WebPKI verification".into(),
        rows: vec![
            Row::baseline("rustls WebPKI verification (both sides)", web),
            Row::against("SPIFFE verification + authorization (both sides)", spiffe, "WebPKI", base, Some(0.9)),
        ],
        notes: vec![
            "client and server run in one thread, records pumped in memory: the figure is the CPU cost of a full handshake (ECDHE, both P-256 certificate chains, both CertificateVerify signatures), with no network".into(),
            "session resumption off on both sides (AIMS disables it for SPIFFE mTLS so every connection re-verifies the current SVID)".into(),
        ],
    })
}

/// `wpt`: WIT + WPT verification vs raw ES256 verification.
pub fn wpt(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let raw = RawEs256::new()?;
    let d = domain()?;
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let slot = d.ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
    let wit = slot
        .wit
        .mint_wit(
            &WorkloadIdentifier::parse("spiffe://bench.example/agent/worker")?,
            key.public_key(),
            key.jws_algorithm(),
            Duration::from_secs(3600),
            SystemTime::now(),
            None,
        )?
        .token;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let aud = "https://tools.bench.example/mcp";
    let n = POOL;
    eprintln!("  wpt: preparing {n} proofs…");
    let headers: Vec<http::HeaderMap> = (0..n)
        .map(|_| -> anyhow::Result<http::HeaderMap> {
            let wpt = create_wpt(
                &key,
                &wit,
                &WptBinding {
                    audience: aud,
                    ttl: Duration::from_secs(60),
                    txn_token: None,
                    other_tokens: &[],
                },
                clock.now(),
            )?;
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("WPT {wpt}").parse()?);
            h.insert("workload-identity-token", wit.parse()?);
            Ok(h)
        })
        .collect::<anyhow::Result<_>>()?;
    let wits = WptVerifier::new(
        d.bundles.clone(),
        Arc::new(ReplayCache::new(1, 60)),
        clock.clone(),
    )
    .wit_verifier()
    .clone();
    let fresh = || {
        WptVerifier::new(
            d.bundles.clone(),
            Arc::new(ReplayCache::new(4 * POOL, 60)),
            clock.clone(),
        )
        .with_wit_verifier(wits.clone())
    };
    let mut verifier = fresh();
    eprintln!("  wpt: raw ES256 verify and WPT verification (interleaved)…");
    let mut i = 0usize;
    let [raw_v, m]: [_; 2] = run_interleaved(
        timing,
        &mut [&mut || raw.verify_once(), &mut || {
            if i == POOL {
                // A new pass over the pool: the proofs may be used once more.
                verifier = fresh();
                i = 0;
            }
            verifier.verify(&headers[i], aud)?;
            i += 1;
            Ok(())
        }],
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("two measurements"))?;
    let base = raw_v.ops_per_sec;
    Ok(ScenarioReport {
        scenario: "wpt".into(),
        description:
            "WIT + WPT verification (draft-ietf-wimse-wpt-02) on one core vs raw ES256 verify"
                .into(),
        rows: vec![
            Row::baseline("raw ES256 verify (aws-lc-rs)", raw_v),
            Row::against(
                "WPT verify (WIT cached, proof, wth, aud, exp, jti replay)",
                m,
                "raw verify",
                base,
                Some(0.7),
            ),
        ],
        notes: vec![format!(
            "{POOL} distinct proofs (unique jti) cycled, a fresh replay cache per pass, so each verification inserts into the cache; the WIT's own signature is verified once and remembered until it expires or a bundle changes"
        )],
    })
}

/// Proofs prepared up front and cycled. Each pass over the pool gets a fresh replay cache, so
/// every proof is admitted once per pass and the replay check runs on every verification;
/// a pool (rather than hundreds of thousands of proofs) keeps the heap in a steady state, as
/// in a server.
const POOL: usize = 4096;

/// `httpsig`: WIMSE HTTP-signature verification vs raw ES256 verification.
pub fn httpsig(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let raw = RawEs256::new()?;
    let d = domain()?;
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let slot = d.ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
    let wit = slot
        .wit
        .mint_wit(
            &WorkloadIdentifier::parse("spiffe://bench.example/agent/worker")?,
            key.public_key(),
            key.jws_algorithm(),
            Duration::from_secs(3600),
            SystemTime::now(),
            None,
        )?
        .token;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let aud = "https://tools.bench.example/orders";
    let uri: http::Uri = "https://tools.bench.example/orders?dry_run=0".parse()?;
    let body =
        br#"{"item":"widget","quantity":3,"note":"benchmark order body of about a hundred bytes"}"#;
    let n = POOL;
    eprintln!("  httpsig: preparing {n} signed requests…");
    let requests: Vec<http::HeaderMap> = (0..n)
        .map(|_| -> anyhow::Result<http::HeaderMap> {
            let mut h = http::HeaderMap::new();
            h.insert("content-type", "application/json".parse()?);
            sign_request(
                &key,
                &wit,
                &http::Method::POST,
                &uri,
                &mut h,
                body,
                &RequestSigning {
                    audience: aud,
                    ttl: Duration::from_secs(60),
                    sign_response: false,
                },
                clock.now(),
            )?;
            Ok(h)
        })
        .collect::<anyhow::Result<_>>()?;
    let wits = WimseSigVerifier::new(
        d.bundles.clone(),
        Arc::new(ReplayCache::new(1, 60)),
        clock.clone(),
    )
    .wit_verifier()
    .clone();
    let fresh = || {
        WimseSigVerifier::new(
            d.bundles.clone(),
            Arc::new(ReplayCache::new(4 * POOL, 60)),
            clock.clone(),
        )
        .with_wit_verifier(wits.clone())
    };
    let mut verifier = fresh();
    eprintln!("  httpsig: raw ES256 verify and HTTP-signature verification (interleaved)…");
    let mut i = 0usize;
    let [raw_v, m]: [_; 2] = run_interleaved(
        timing,
        &mut [&mut || raw.verify_once(), &mut || {
            if i == POOL {
                verifier = fresh();
                i = 0;
            }
            verifier.verify(
                RequestParts::from_http(&http::Method::POST, &uri, &requests[i], "https"),
                body,
                aud,
            )?;
            i += 1;
            Ok(())
        }],
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("two measurements"))?;
    let base = raw_v.ops_per_sec;
    Ok(ScenarioReport {
        scenario: "httpsig".into(),
        description: "WIMSE HTTP Message Signature verification (-07, RFC 9421) on one core vs raw ES256 verify".into(),
        rows: vec![
            Row::baseline("raw ES256 verify (aws-lc-rs)", raw_v),
            Row::against("HTTP signature verify (WIT cached, base, digest, nonce)", m, "raw verify", base, Some(0.7)),
        ],
        notes: vec![format!("{POOL} distinct signed requests (unique nonce, 96-byte JSON body) cycled, a fresh replay cache per pass; Content-Digest is recomputed each time")],
    })
}
