//! Credential issuance on one core against raw ECDSA P-256 (the issue 2 figures): X.509-SVIDs
//! from a CSR and from a key, and JWT-SVIDs, each as a ratio of the raw signing rate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::ca::{CertificateRequest, SubjectKey, X509SvidRequest};
use aims_credentials::{
    AuthorityPolicy, CaManager, KeyType, MemoryKeyManager, PrivateKey, verify_jwt_svid,
};

use super::baseline::RawEs256;
use crate::measure::{Timing, run_interleaved};
use crate::report::{Row, ScenarioReport};

fn manager() -> anyhow::Result<CaManager> {
    let ca = CaManager::new(
        TrustDomain::new("bench.example")?,
        AuthorityPolicy::default(),
        Arc::new(MemoryKeyManager::new()),
        None,
    );
    ca.tick(SystemTime::now())?;
    Ok(ca)
}

/// `svid`: X.509-SVID issuance.
pub fn svid(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let raw = RawEs256::new()?;
    let ca = manager()?;
    let slot = ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
    let id = SpiffeId::parse("spiffe://bench.example/agent/worker-0042")?;
    // CSRs are the client's work: made up front, 256 distinct ones cycled.
    let csrs: Vec<Vec<u8>> = (0..256)
        .map(|_| -> anyhow::Result<Vec<u8>> {
            let key = PrivateKey::generate(KeyType::EcP256)?;
            Ok(aims_credentials::ca::svid_csr(&key, Some(&id), &[])?)
        })
        .collect::<anyhow::Result<_>>()?;
    let workload_key = PrivateKey::generate(KeyType::EcP256)?;
    let subject = SubjectKey::of(&workload_key);
    let ttl = Duration::from_secs(3600);

    eprintln!(
        "  svid: raw ES256 sign and verify, X.509-SVID for a key and from a CSR (interleaved)…"
    );
    let mut i = 0usize;
    let [sign, verify, from_key, from_csr]: [_; 4] = run_interleaved(
        timing,
        &mut [
            &mut || raw.sign_once(),
            &mut || raw.verify_once(),
            &mut || {
                slot.x509.issue(&X509SvidRequest {
                    spiffe_id: &id,
                    subject_key: &subject,
                    dns_names: &[],
                    ttl,
                    now: SystemTime::now(),
                })?;
                Ok(())
            },
            &mut || {
                let csr = CertificateRequest::from_der(&csrs[i % csrs.len()])?;
                i += 1;
                csr.check_for(&id, &[])?;
                slot.x509.issue(&X509SvidRequest {
                    spiffe_id: &id,
                    subject_key: csr.subject_key(),
                    dns_names: &[],
                    ttl,
                    now: SystemTime::now(),
                })?;
                Ok(())
            },
        ],
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("four measurements"))?;
    let floor = 1.0 / (1.0 / sign.ops_per_sec + 1.0 / verify.ops_per_sec);
    let csr_vs_floor = from_csr.ops_per_sec / floor;
    let sign_rate = sign.ops_per_sec;
    Ok(ScenarioReport {
        scenario: "svid".into(),
        description: "X.509-SVID issuance on one core vs raw ECDSA P-256".into(),
        rows: vec![
            Row::baseline("raw ES256 sign (aws-lc-rs)", sign),
            Row::baseline("raw ES256 verify (aws-lc-rs)", verify),
            Row::against(
                "X.509-SVID for a key (sign + encode)",
                from_key,
                "raw sign",
                sign_rate,
                Some(0.4),
            ),
            Row::against(
                "X.509-SVID from a CSR (verify + sign)",
                from_csr,
                "raw sign",
                sign_rate,
                Some(0.4),
            ),
        ],
        notes: vec![format!(
            "a CSR carries a signature that must be verified (proof of possession): the crypto floor of CSR issuance is 1/(1/sign + 1/verify) = {floor:.0}/s, and AIMS reaches {csr_vs_floor:.2} of that floor"
        )],
    })
}

/// `jwt-svid`: JWT-SVID minting and verification.
pub fn jwt_svid(timing: Timing) -> anyhow::Result<ScenarioReport> {
    let raw = RawEs256::new()?;
    let ca = manager()?;
    let slot = ca.active().ok_or_else(|| anyhow::anyhow!("no CA"))?;
    let id = SpiffeId::parse("spiffe://bench.example/agent/worker-0042")?;
    let audience = vec!["https://tools.bench.example/mcp".to_owned()];
    let ttl = Duration::from_secs(300);
    let bundle = aims_credentials::authority::bundle_from_slots(
        ca.trust_domain(),
        [slot.record()],
        SystemTime::now(),
    )?;
    let bundles = aims_credentials::BundleSet::with([bundle]);
    let token = slot
        .jwt
        .mint_jwt_svid(&id, &audience, ttl, SystemTime::now())?
        .token;
    let now = aims_core::unix_seconds(SystemTime::now());

    eprintln!("  jwt-svid: raw ES256 sign and verify, JWT-SVID mint and verify (interleaved)…");
    let [sign, verify, mint, verify_svid]: [_; 4] = run_interleaved(
        timing,
        &mut [
            &mut || raw.sign_once(),
            &mut || raw.verify_once(),
            &mut || {
                slot.jwt
                    .mint_jwt_svid(&id, &audience, ttl, SystemTime::now())?;
                Ok(())
            },
            &mut || {
                verify_jwt_svid(&token, &bundles, &audience[0], now, 0)?;
                Ok(())
            },
        ],
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("four measurements"))?;
    let (sign_rate, verify_rate) = (sign.ops_per_sec, verify.ops_per_sec);
    Ok(ScenarioReport {
        scenario: "jwt-svid".into(),
        description: "JWT-SVID minting and verification on one core vs raw ES256".into(),
        rows: vec![
            Row::baseline("raw ES256 sign (aws-lc-rs)", sign),
            Row::baseline("raw ES256 verify (aws-lc-rs)", verify),
            Row::against("JWT-SVID mint", mint, "raw sign", sign_rate, Some(0.7)),
            Row::against(
                "JWT-SVID verify (bundle, kid, aud, exp)",
                verify_svid,
                "raw verify",
                verify_rate,
                None,
            ),
        ],
        notes: vec![],
    })
}
