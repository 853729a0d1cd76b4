//! SPIFFE IDs and trust domains, per the SPIFFE-ID standard §2 (spiffe/spiffe `standards/SPIFFE-ID.md`).
//!
//! Parsing is strict, as go-spiffe's is: the scheme must be exactly `spiffe://`, the trust domain is
//! lowercase `[a-z0-9._-]` with no userinfo, port or percent-encoding, and path segments are
//! `[a-zA-Z0-9._-]` with no empty, `.` or `..` segments and no trailing slash. Query and fragment
//! are impossible because `?` and `#` are not allowed characters. Error messages are go-spiffe's, so
//! operators see the same words whichever SPIFFE implementation rejected an ID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only accepted scheme prefix (SPIFFE-ID §2.1).
pub const SPIFFE_SCHEME_PREFIX: &str = "spiffe://";

/// Maximum length of a trust domain name in bytes (SPIFFE-ID §2.2).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Maximum length of a SPIFFE ID in bytes, `spiffe://` included (SPIFFE-ID §2.3: implementations
/// must accept 2048 bytes and should not produce longer IDs).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Why a string is not a valid SPIFFE ID or trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The input was empty.
    #[error("cannot be empty")]
    Empty,
    /// The input does not start with `spiffe://`.
    #[error("scheme is missing or invalid")]
    WrongScheme,
    /// `spiffe://` is followed directly by `/` or nothing.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// A trust domain character outside `[a-z0-9._-]` (this covers uppercase, `:port`, `user@`,
    /// percent-encoding, `?query` and `#fragment`).
    #[error(
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    )]
    BadTrustDomainChar,
    /// A path character outside `[a-zA-Z0-9._-]`.
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
    )]
    BadPathSegmentChar,
    /// A `.` or `..` path segment.
    #[error("path cannot contain dot segments")]
    DotSegment,
    /// A path that does not start with `/` (only when a path is given on its own).
    #[error("path must have a leading slash")]
    NoLeadingSlash,
    /// An empty path segment (`//`).
    #[error("path cannot contain empty segments")]
    EmptySegment,
    /// The path ends with `/`.
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain cannot be longer than 255 bytes")]
    TrustDomainTooLong,
    /// The ID is longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("ID cannot be longer than 2048 bytes")]
    TooLong,
}

const fn is_trust_domain_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

const fn is_path_segment_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn validate_trust_domain_name(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if !name.bytes().all(is_trust_domain_char) {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    Ok(())
}

/// Validates a SPIFFE ID path: empty, or `/`-separated segments (SPIFFE-ID §2.3). The scan reports
/// the first problem met from the left, as go-spiffe's `ValidatePath` does.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return Ok(());
    }
    if bytes[0] != b'/' {
        return Err(SpiffeIdError::NoLeadingSlash);
    }
    let mut segment_start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'/' {
            match &path[segment_start..i] {
                "/" => return Err(SpiffeIdError::EmptySegment),
                "/." | "/.." => return Err(SpiffeIdError::DotSegment),
                _ => {}
            }
            segment_start = i;
        } else if !is_path_segment_char(c) {
            return Err(SpiffeIdError::BadPathSegmentChar);
        }
    }
    match &path[segment_start..] {
        "/" => Err(SpiffeIdError::TrailingSlash),
        "/." | "/.." => Err(SpiffeIdError::DotSegment),
        _ => Ok(()),
    }
}

/// A SPIFFE trust domain name, such as `example.org` (SPIFFE-ID §2.1).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain from its bare name (`example.org`) or from any SPIFFE ID in it
    /// (`spiffe://example.org/...`), as go-spiffe's `TrustDomainFromString` does.
    pub fn new(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        if s.contains(":/") {
            return SpiffeId::parse(s).map(|id| id.trust_domain());
        }
        validate_trust_domain_name(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>` (used as the key of bundle maps in the
    /// Workload API, and as the URI SAN of signing certificates, X509-SVID §4.1).
    pub fn id_string(&self) -> String {
        format!("{SPIFFE_SCHEME_PREFIX}{}", self.0)
    }

    /// The SPIFFE ID `spiffe://<name><path>`, validating `path`.
    pub fn id_with_path(&self, path: &str) -> Result<SpiffeId, SpiffeIdError> {
        validate_path(path)?;
        SpiffeId::parse(&format!("{SPIFFE_SCHEME_PREFIX}{}{path}", self.0))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A SPIFFE ID, `spiffe://<trust-domain>[/<path>]` (SPIFFE-ID §2).
///
/// In AIMS every agent has exactly one (AIMS ID-5); it is also the agent's OAuth `client_id`
/// (draft-ietf-oauth-spiffe-client-auth).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (end of the trust domain).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        let rest = s
            .strip_prefix(SPIFFE_SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        // The trust domain runs to the first '/'; go-spiffe reports a bad character before a
        // missing trust domain, so scan first.
        let td_len = rest.find('/').unwrap_or(rest.len());
        let td = &rest[..td_len];
        if !td.bytes().all(is_trust_domain_char) {
            return Err(SpiffeIdError::BadTrustDomainChar);
        }
        if td.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        if td.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong);
        }
        validate_path(&rest[td_len..])?;
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        Ok(Self {
            id: s.to_owned(),
            path_start: SPIFFE_SCHEME_PREFIX.len() + td_len,
        })
    }

    /// Builds `spiffe://<td><path>`, validating `path` (which must be empty or start with `/`).
    pub fn from_parts(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        td.id_with_path(path)
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain_name(&self) -> &str {
        &self.id[SPIFFE_SCHEME_PREFIX.len()..self.path_start]
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_name().to_owned())
    }

    /// The path, empty for the trust domain's own ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }

    /// Whether this ID names the trust domain itself (no path). Such IDs may appear on signing
    /// certificates but never on a leaf X509-SVID (X509-SVID §3).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path_start == self.id.len()
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_name() == td.name()
    }

    /// Whether this ID is `base` or lies under its path (`spiffe://td/gw/a` is under
    /// `spiffe://td/gw`; `spiffe://td/gwx` is not), in the same trust domain.
    pub fn is_at_or_under(&self, base: &SpiffeId) -> bool {
        self.trust_domain_name() == base.trust_domain_name()
            && self
                .path()
                .strip_prefix(base.path())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
