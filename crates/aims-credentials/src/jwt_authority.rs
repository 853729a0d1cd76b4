//! A JWT signing authority: one key with its `kid`, for JWT-SVIDs or WIT-SVIDs.

use std::sync::Arc;

use crate::error::IssueError;
use crate::jose::{EncodedHeader, JwsHeader, sign_with_encoded_header};
use crate::keys::{KeyError, PrivateKey};

/// Which tokens an authority signs; it fixes the `typ` and the bundle `use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAuthorityUse {
    /// JWT-SVIDs (`typ` JWT, bundle `use` jwt-svid).
    JwtSvid,
    /// WIT-SVIDs (`typ` wit+jwt, bundle `use` wit-svid).
    WitSvid,
}

impl JwtAuthorityUse {
    fn typ(self) -> &'static str {
        match self {
            JwtAuthorityUse::JwtSvid => "JWT",
            JwtAuthorityUse::WitSvid => crate::jose::WIT_TYP,
        }
    }
}

/// A signing key and its `kid`, with its JOSE header encoded once.
pub struct JwtAuthority {
    kid: String,
    key: Arc<PrivateKey>,
    header: EncodedHeader,
}

impl JwtAuthority {
    /// An authority signing with `key` under `kid`.
    pub fn new(kid: &str, key: Arc<PrivateKey>, usage: JwtAuthorityUse) -> Result<Self, KeyError> {
        let header = JwsHeader::new(&key, Some(usage.typ()), Some(kid)).encode()?;
        Ok(Self {
            kid: kid.to_owned(),
            key,
            header,
        })
    }

    /// The `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing key.
    pub fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    pub(crate) fn sign(&self, claims: &impl serde::Serialize) -> Result<String, IssueError> {
        Ok(sign_with_encoded_header(&self.key, &self.header, claims)?)
    }
}

/// A fresh random key id: 128 bits, base64url.
pub fn new_kid() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ))
}
