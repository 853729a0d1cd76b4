//! RFC 9530 `Content-Digest`: a digest of the message content, so a signature that covers the
//! field covers the body.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sfv::{BareItem, Dictionary, ListEntry, Parser};

/// The digest algorithms RFC 9530 §5 lists as active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    fn key(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    fn compute(self, content: &[u8]) -> digest::Digest {
        match self {
            DigestAlgorithm::Sha256 => digest::digest(&digest::SHA256, content),
            DigestAlgorithm::Sha512 => digest::digest(&digest::SHA512, content),
        }
    }
}

/// Why a `Content-Digest` does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The field is not a structured-field dictionary of byte sequences.
    #[error("malformed Content-Digest: {0}")]
    Malformed(String),
    /// No algorithm AIMS accepts (sha-256, sha-512) is present.
    #[error("Content-Digest has no sha-256 or sha-512 member")]
    NoKnownAlgorithm,
    /// A digest does not match the content.
    #[error("Content-Digest {0} does not match the content")]
    Mismatch(&'static str),
}

/// The `Content-Digest` field value for `content`, e.g. `sha-256=:X48E…=:`.
pub fn content_digest(content: &[u8], alg: DigestAlgorithm) -> String {
    format!("{}=:{}:", alg.key(), STANDARD.encode(alg.compute(content)))
}

/// Checks a `Content-Digest` field value against `content`: every member of a known algorithm
/// must match, and at least one must be present (deprecated algorithms such as md5 are
/// ignored, RFC 9530 §5).
pub fn verify_content_digest(field: &str, content: &[u8]) -> Result<(), DigestError> {
    let dict: Dictionary = Parser::new(field)
        .parse()
        .map_err(|e| DigestError::Malformed(e.to_string()))?;
    let mut checked = false;
    for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        let Some(entry) = dict.get(alg.key()) else {
            continue;
        };
        let ListEntry::Item(item) = entry else {
            return Err(DigestError::Malformed(format!(
                "{} is not an item",
                alg.key()
            )));
        };
        let BareItem::ByteSequence(given) = &item.bare_item else {
            return Err(DigestError::Malformed(format!(
                "{} is not a byte sequence",
                alg.key()
            )));
        };
        if given.as_slice() != alg.compute(content).as_ref() {
            return Err(DigestError::Mismatch(alg.key()));
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::NoKnownAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9530_vectors() {
        assert_eq!(
            content_digest(br#"{"hello": "world"}"#, DigestAlgorithm::Sha256),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        assert_eq!(
            content_digest(b"", DigestAlgorithm::Sha256),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
        assert_eq!(
            content_digest(b"", DigestAlgorithm::Sha512),
            "sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:"
        );
        // RFC 9421 B.2 test-request.
        verify_content_digest(
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            br#"{"hello": "world"}"#,
        )
        .unwrap();
    }

    #[test]
    fn rejects_mismatch_unknown_and_garbage() {
        let d = content_digest(b"body", DigestAlgorithm::Sha256);
        assert_eq!(
            verify_content_digest(&d, b"b0dy"),
            Err(DigestError::Mismatch("sha-256"))
        );
        assert_eq!(
            verify_content_digest("md5=:AAAA:", b"x"),
            Err(DigestError::NoKnownAlgorithm)
        );
        assert!(matches!(
            verify_content_digest("sha-256=\"text\"", b"x"),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            verify_content_digest("((", b"x"),
            Err(DigestError::Malformed(_))
        ));
        // Every known member must match, not just one.
        let both = format!("{d}, sha-512=:AAAA:");
        assert_eq!(
            verify_content_digest(&both, b"body"),
            Err(DigestError::Mismatch("sha-512"))
        );
    }
}
