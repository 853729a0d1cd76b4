//! RFC 9449 proofs of possession: a key the agent keeps, a proof per request (`htm`, `htu`,
//! `iat`, a fresh `jti`, `ath` when sent with an access token, the server's `nonce` when it
//! asks for one).

use std::time::SystemTime;

use aims_credentials::jose::{JwsHeader, sha256_b64url, sign};
use aims_credentials::{KeyType, PrivateKey};
use serde_json::json;

use crate::SdkError;

/// A DPoP key: tokens obtained with its proofs are bound to it (`cnf.jkt`).
pub struct DpopKey {
    key: PrivateKey,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint())
            .finish()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, SdkError> {
        Ok(Self {
            key: PrivateKey::generate(KeyType::EcP256).map_err(|e| SdkError::Key(e.to_string()))?,
        })
    }

    /// The JWK SHA-256 thumbprint (RFC 7638) tokens bound to this key name in `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        self.key.public_key().thumbprint()
    }

    /// A proof for `method url` (RFC 9449 §4.2), bound to `access_token` when given (`ath`).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, SdkError> {
        let mut header = JwsHeader::new(&self.key, Some("dpop+jwt"), None);
        header.jwk = Some(self.key.public_key().jwk());
        // §4.2: htu without query and fragment.
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": htu,
            "iat": aims_core::unix_seconds(SystemTime::now()),
        });
        if let Some(t) = access_token {
            claims["ath"] = sha256_b64url(t.as_bytes()).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        sign(&self.key, &header, &claims).map_err(|e| SdkError::Key(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aims_credentials::jose::CompactJws;

    #[test]
    fn proofs_carry_the_request_and_the_token_hash() {
        let key = DpopKey::generate().unwrap();
        let p = key
            .proof(
                "POST",
                "https://as.example/token?x=1#f",
                Some("tok"),
                Some("n1"),
            )
            .unwrap();
        let jws = CompactJws::parse(&p).unwrap();
        assert!(jws.header.typ_is("dpop+jwt"));
        let c: serde_json::Value = jws.claims().unwrap();
        assert_eq!(c["htu"], "https://as.example/token");
        assert_eq!(c["htm"], "POST");
        assert_eq!(c["ath"], sha256_b64url(b"tok"));
        assert_eq!(c["nonce"], "n1");
        let other = key
            .proof("POST", "https://as.example/token", None, None)
            .unwrap();
        let c2: serde_json::Value = CompactJws::parse(&other).unwrap().claims().unwrap();
        assert_ne!(c["jti"], c2["jti"], "a fresh jti per proof");
        assert!(c2.get("ath").is_none());
    }
}
