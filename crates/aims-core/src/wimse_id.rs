//! The WIMSE workload identifier (draft-ietf-wimse-identifier-03 §3).
//!
//! A workload identifier is an absolute URI whose authority is the trust domain, with no userinfo,
//! port, query or fragment. AIMS accepts the two schemes that profile it: `spiffe` (then the
//! SPIFFE-ID rules of [`SpiffeId`] apply in full) and `wimse` (`wimse://<trust-domain>/<path>`, the
//! scheme the identifier draft registers). Other schemes are refused: an identifier AIMS cannot
//! validate is not one it can authorize on (fail closed). Identifiers are compared on the complete
//! URI, never by prefix (identifier-03 §3.2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::spiffe_id::{MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, SpiffeIdError};

const WIMSE_PREFIX: &str = "wimse://";

/// Why a string is not a valid workload identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WimseIdError {
    /// The scheme is neither `spiffe` nor `wimse`.
    #[error("workload identifier scheme must be spiffe or wimse")]
    UnsupportedScheme,
    /// A `spiffe:` identifier that breaks the SPIFFE-ID rules.
    #[error("invalid SPIFFE ID: {0}")]
    Spiffe(#[from] SpiffeIdError),
    /// No authority (trust domain) after `wimse://`.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The authority holds something other than a lowercase DNS-style name (userinfo, a port, an
    /// IPv6 literal, uppercase or percent-encoding).
    #[error("trust domain must be a lowercase name without userinfo or port")]
    BadTrustDomain,
    /// A `?` query or `#` fragment, which identifiers must not carry.
    #[error("workload identifier must not have a query or fragment")]
    QueryOrFragment,
    /// A path character outside RFC 3986 `pchar`, an empty segment, or a dot segment.
    #[error("workload identifier path is not a sequence of non-empty RFC 3986 segments")]
    BadPath,
    /// Longer than 2048 bytes (identifier-03 §3: identifiers SHOULD NOT exceed 2048 bytes).
    #[error("workload identifier exceeds 2048 bytes")]
    TooLong,
}

/// A WIMSE workload identifier: a SPIFFE ID or a `wimse://` URI.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadIdentifier {
    /// `spiffe://trust-domain/path`.
    Spiffe(SpiffeId),
    /// `wimse://trust-domain/path`.
    Wimse {
        /// The whole URI.
        uri: String,
        /// Byte offset where the path starts.
        path_start: usize,
    },
}

// RFC 3986 §3.3 pchar = unreserved / pct-encoded / sub-delims / ":" / "@".
fn is_pchar(c: u8) -> bool {
    c == b'%' || crate::request_target::pchar(c)
}

impl WorkloadIdentifier {
    /// Parses and validates a workload identifier.
    pub fn parse(s: &str) -> Result<Self, WimseIdError> {
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(WimseIdError::TooLong);
        }
        if s.starts_with("spiffe:") {
            return Ok(Self::Spiffe(SpiffeId::parse(s)?));
        }
        let rest = s
            .strip_prefix(WIMSE_PREFIX)
            .ok_or(WimseIdError::UnsupportedScheme)?;
        if rest.contains(['?', '#']) {
            return Err(WimseIdError::QueryOrFragment);
        }
        let td_len = rest.find('/').unwrap_or(rest.len());
        let td = &rest[..td_len];
        if td.is_empty() {
            return Err(WimseIdError::MissingTrustDomain);
        }
        if td.len() > MAX_TRUST_DOMAIN_LEN
            || !td
                .bytes()
                .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
        {
            return Err(WimseIdError::BadTrustDomain);
        }
        let path = &rest[td_len..];
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || !segment.bytes().all(is_pchar)
                {
                    return Err(WimseIdError::BadPath);
                }
            }
        }
        Ok(Self::Wimse {
            uri: s.to_owned(),
            path_start: WIMSE_PREFIX.len() + td_len,
        })
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Spiffe(id) => id.as_str(),
            Self::Wimse { uri, .. } => uri,
        }
    }

    /// The trust domain (the URI authority).
    pub fn trust_domain_name(&self) -> &str {
        match self {
            Self::Spiffe(id) => id.trust_domain_name(),
            Self::Wimse { uri, path_start } => &uri[WIMSE_PREFIX.len()..*path_start],
        }
    }

    /// The path, possibly empty.
    pub fn path(&self) -> &str {
        match self {
            Self::Spiffe(id) => id.path(),
            Self::Wimse { uri, path_start } => &uri[*path_start..],
        }
    }

    /// The SPIFFE ID, if this identifier is one.
    pub fn as_spiffe(&self) -> Option<&SpiffeId> {
        match self {
            Self::Spiffe(id) => Some(id),
            Self::Wimse { .. } => None,
        }
    }
}

impl From<SpiffeId> for WorkloadIdentifier {
    fn from(id: SpiffeId) -> Self {
        Self::Spiffe(id)
    }
}

impl fmt::Display for WorkloadIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for WorkloadIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkloadIdentifier({})", self.as_str())
    }
}

impl FromStr for WorkloadIdentifier {
    type Err = WimseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for WorkloadIdentifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for WorkloadIdentifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_draft_examples() {
        // draft-ietf-wimse-workload-creds examples use these identifiers.
        for s in [
            "wimse://example.com/specific-workload",
            "wimse://example.com/svcA",
            "wimse://prod.trust.domain",
            "wimse://example.com/ns/default/sa:app@v1",
        ] {
            let id = WorkloadIdentifier::parse(s).unwrap();
            assert_eq!(id.as_str(), s);
        }
        let id = WorkloadIdentifier::parse("wimse://example.com/specific-workload").unwrap();
        assert_eq!(id.trust_domain_name(), "example.com");
        assert_eq!(id.path(), "/specific-workload");
        assert!(id.as_spiffe().is_none());
    }

    #[test]
    fn spiffe_ids_are_workload_identifiers() {
        let id = WorkloadIdentifier::parse("spiffe://example.org/agent/a").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.as_spiffe().unwrap().path(), "/agent/a");
        assert_eq!(
            WorkloadIdentifier::parse("spiffe://Example.org/a"),
            Err(WimseIdError::Spiffe(SpiffeIdError::BadTrustDomainChar))
        );
    }

    #[test]
    fn rejects_what_identifier_03_forbids() {
        use WimseIdError::*;
        for (s, e) in [
            ("https://example.com/a", UnsupportedScheme),
            ("wimse://", MissingTrustDomain),
            ("wimse:///a", MissingTrustDomain),
            ("wimse://user@example.com/a", BadTrustDomain),
            ("wimse://example.com:443/a", BadTrustDomain),
            ("wimse://Example.com/a", BadTrustDomain),
            ("wimse://[::1]/a", BadTrustDomain),
            ("wimse://example.com/a?x=1", QueryOrFragment),
            ("wimse://example.com/a#frag", QueryOrFragment),
            ("wimse://example.com/a//b", BadPath),
            ("wimse://example.com/a/", BadPath),
            ("wimse://example.com/../a", BadPath),
            ("wimse://example.com/a b", BadPath),
        ] {
            assert_eq!(WorkloadIdentifier::parse(s), Err(e), "{s}");
        }
        let long = format!("wimse://example.com/{}", "a".repeat(2040));
        assert_eq!(WorkloadIdentifier::parse(&long), Err(TooLong));
    }
}
