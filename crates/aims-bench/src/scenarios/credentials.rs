//! Credential issuance on one core against raw ECDSA P-256 (the issue 2 figures): X.509-SVIDs
//! from a CSR and from a key, and JWT-SVIDs, each as a ratio of the raw signing rate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aims_core::{SpiffeId, TrustDomain};
use aims_credentials::ca::{CertificateRequest, SubjectKey, X509SvidRequest};
use aims_credentials::{
    AuthorityPolicy, CaManager, KeyType, MemoryKeyManager, PrivateKey, verify_jwt_svid,
};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

use crate::measure::{Measurement, Timing, run_loop};
use crate::report::{Row, ScenarioReport};

/// A message the size of a JWT-SVID signing input.
const MESSAGE: [u8; 320] = [0x5a; 320];

struct RawEs256 {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    public: Vec<u8>,
    signature: Vec<u8>,
}

impl RawEs256 {
    fn new() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("keygen"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("key"))?;
        let public = key.public_key().as_ref().to_vec();
        let signature = key
            .sign(&rng, &MESSAGE)
            .map_err(|_| anyhow::anyhow!("sign"))?
            .as_ref()
            .to_vec();
        Ok(Self {
            key,
            rng,
            public,
            signature,
        })
    }

    fn sign(&self, timing: Timing) -> anyhow::Result<Measurement> {
        run_loop(timing, || {
            self.key
                .sign(&self.rng, &MESSAGE)
                .map(|_| ())
                .map_err(|_| anyhow::anyhow!("sign"))
        })
    }

    fn verify(&self, timing: Timing) -> anyhow::Result<Measurement> {
        let pk = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public);
        run_loop(timing, || {
            pk.verify(&MESSAGE, &self.signature)
                .map_err(|_| anyhow::anyhow!("verify"))
        })
    }
}

/// The mean of two baseline runs taken before and after the measured work (A-B-A), so slow
/// drift on a shared machine shows in neither direction.
fn mean(a: &Measurement, b: &Measurement) -> Measurement {
    let mut m = a.clone();
    m.ops += b.ops;
    m.seconds += b.seconds;
    m.ops_per_sec = (a.ops_per_sec + b.ops_per_sec) / 2.0;
    m.p50_us = (a.p50_us + b.p50_us) / 2.0;
    m.p99_us = (a.p99_us + b.p99_us) / 2.0;
    m.p999_us = (a.p999_us + b.p999_us) / 2.0;
    m
}

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
            let mut params = rcgen::CertificateParams::default();
            params.subject_alt_names = vec![rcgen::SanType::URI(id.as_str().try_into()?)];
            Ok(params.serialize_request(&key)?.der().to_vec())
        })
        .collect::<anyhow::Result<_>>()?;
    let workload_key = PrivateKey::generate(KeyType::EcP256)?;
    let subject = SubjectKey::of(&workload_key);
    let ttl = Duration::from_secs(3600);

    eprintln!("  svid: raw ES256 sign and verify (baseline)…");
    let sign_a = raw.sign(timing)?;
    let verify_a = raw.verify(timing)?;
    eprintln!("  svid: X.509-SVID for a key…");
    let from_key = run_loop(timing, || {
        slot.x509.issue(&X509SvidRequest {
            spiffe_id: &id,
            subject_key: &subject,
            dns_names: &[],
            ttl,
            now: SystemTime::now(),
        })?;
        Ok(())
    })?;
    eprintln!("  svid: X.509-SVID from a CSR…");
    let mut i = 0usize;
    let from_csr = run_loop(timing, || {
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
    })?;
    eprintln!("  svid: raw ES256 sign and verify again…");
    let sign = mean(&sign_a, &raw.sign(timing)?);
    let verify = mean(&verify_a, &raw.verify(timing)?);
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
        notes: vec![
            format!(
                "a CSR carries a signature that must be verified (proof of possession): the crypto floor of CSR issuance is 1/(1/sign + 1/verify) = {floor:.0}/s, and AIMS reaches {csr_vs_floor:.2} of that floor"
            ),
            "baselines are measured before and after the AIMS rows and averaged (A-B-A)".into(),
        ],
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

    eprintln!("  jwt-svid: raw ES256 sign and verify (baseline)…");
    let sign_a = raw.sign(timing)?;
    let verify_a = raw.verify(timing)?;
    eprintln!("  jwt-svid: mint…");
    let mint = run_loop(timing, || {
        slot.jwt
            .mint_jwt_svid(&id, &audience, ttl, SystemTime::now())?;
        Ok(())
    })?;
    eprintln!("  jwt-svid: verify…");
    let verify_svid = run_loop(timing, || {
        verify_jwt_svid(&token, &bundles, &audience[0], now, 0)?;
        Ok(())
    })?;
    eprintln!("  jwt-svid: raw ES256 sign and verify again…");
    let sign = mean(&sign_a, &raw.sign(timing)?);
    let verify = mean(&verify_a, &raw.verify(timing)?);
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
        notes: vec![
            "baselines are measured before and after the AIMS rows and averaged (A-B-A)".into(),
        ],
    })
}
