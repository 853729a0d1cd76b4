//! Baselines shared by scenarios: raw ES256 signing and verification with aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

/// A message the size of a JWT-SVID signing input.
const MESSAGE: [u8; 320] = [0x5a; 320];

pub struct RawEs256 {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    public: Vec<u8>,
    signature: Vec<u8>,
}

impl RawEs256 {
    pub fn new() -> anyhow::Result<Self> {
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

    /// One raw signature.
    pub fn sign_once(&self) -> anyhow::Result<()> {
        self.key
            .sign(&self.rng, &MESSAGE)
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("sign"))
    }

    /// One raw verification.
    pub fn verify_once(&self) -> anyhow::Result<()> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(&MESSAGE, &self.signature)
            .map_err(|_| anyhow::anyhow!("verify"))
    }
}
