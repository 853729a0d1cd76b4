//! One parsed HTTP request target for every decision (AIMS AZ-7, AZ-8): the path a gateway
//! routes on, shows the policy and forwards is one value, in a canonical form that no later
//! component reads differently.
//!
//! RFC 3986 §6.2.2 allows a server to treat `%7E` and `~`, or `%2f` and `%2F`, as the same, and
//! §5.2.4 removes dot segments; RFC 9110 §4.2.3 applies both to `http(s)` URIs. A proxy that
//! decides on one spelling while its upstream (or the URL parser it forwards with) reads another
//! can be walked past its own routes (`/weather/%2e%2e/mcp`). So a target is taken apart once,
//! and whatever two readers could disagree on is refused:
//!
//! - percent-encoded `/` or `\`, a literal `\`, dot segments (`.`/`..`, however spelled, also
//!   with a `;` parameter as some servers strip it), empty segments (`//`);
//! - a NUL or control character, bytes that are not UTF-8 (overlong forms included), an
//!   encoded `%` (double encoding), malformed `%` escapes, characters outside `pchar`;
//! - anything but origin form (`/…`), and an authority that differs from the `Host` header.
//!
//! What passes is canonical: unreserved characters decoded, other escapes in upper case. The
//! canonical path is what every component uses.

use std::fmt;

/// Why a request target was refused (the gateway answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not origin form (`/path`): asterisk or authority form, or an empty path.
    #[error("the request target must be a path starting with '/'")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// `%2F` or `%5C` (an encoded path separator) or a literal `\`.
    #[error("an encoded '/' or a '\\' in the path")]
    Separator,
    /// `.` or `..` as a segment, however spelled.
    #[error("a dot segment ('.' or '..') in the path")]
    DotSegment,
    /// `//` inside the path.
    #[error("an empty segment ('//') in the path")]
    EmptySegment,
    /// `%25`: a target encoded twice.
    #[error("an encoded '%' (double encoding) in the path")]
    DoubleEncoding,
    /// A NUL or other control character, literal or encoded.
    #[error("a control character in the path")]
    Control,
    /// Decoded bytes that are not UTF-8 (overlong forms included).
    #[error("the decoded path is not UTF-8")]
    NotUtf8,
    /// A character RFC 3986 does not allow in a path.
    #[error("a character not allowed in a path: {0:?}")]
    Character(char),
    /// The absolute-form authority (or HTTP/2 `:authority`) and the `Host` header disagree, or
    /// there is more than one `Host`.
    #[error("the request's authority and its Host header disagree")]
    Authority,
}

/// A request target in canonical form: `path` and the query as received.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestTarget {
    path: String,
    query: Option<String>,
}

impl fmt::Debug for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestTarget({self})")
    }
}

impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// RFC 3986 §2.3.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §3.3 `pchar` without `%`: unreserved, sub-delims, `:` and `@`.
pub(crate) fn pchar(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One segment: its canonical spelling appended to `out`, after the checks on its decoded form.
fn segment(raw: &str, out: &mut String) -> Result<(), TargetError> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(TargetError::BadEscape);
            };
            let v = (h << 4) | l;
            match v {
                b'/' | b'\\' => return Err(TargetError::Separator),
                b'%' => return Err(TargetError::DoubleEncoding),
                0..=0x1f | 0x7f => return Err(TargetError::Control),
                _ => {}
            }
            decoded.push(v);
            if unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(TargetError::Separator);
        }
        if b < 0x20 || b == 0x7f {
            return Err(TargetError::Control);
        }
        if !pchar(b) {
            // Not ASCII, or ASCII outside pchar: the first char of the rest names it.
            let c = raw[i..].chars().next().unwrap_or('\u{fffd}');
            return Err(TargetError::Character(c));
        }
        decoded.push(b);
        out.push(char::from(b));
        i += 1;
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| TargetError::NotUtf8)?;
    // Some servers drop a `;parameter` before resolving dot segments (`..;/`).
    let name = text.split(';').next().unwrap_or(text);
    if name == "." || name == ".." {
        return Err(TargetError::DotSegment);
    }
    Ok(())
}

impl RequestTarget {
    /// Parses an origin-form target's `path` (and its `query`, kept as received).
    pub fn parse(path: &str, query: Option<&str>) -> Result<Self, TargetError> {
        let rest = path.strip_prefix('/').ok_or(TargetError::NotOriginForm)?;
        let mut canonical = String::with_capacity(path.len());
        let segments: Vec<&str> = rest.split('/').collect();
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            canonical.push('/');
            // A trailing slash is a path of its own (`/a/`), not an ambiguity.
            if seg.is_empty() {
                if i == last {
                    continue;
                }
                return Err(TargetError::EmptySegment);
            }
            segment(seg, &mut canonical)?;
        }
        Ok(Self {
            path: canonical,
            query: query.map(str::to_owned),
        })
    }

    /// RFC 9112 §3.2.2, RFC 9113 §8.3.1: an absolute-form authority (or HTTP/2 `:authority`)
    /// must name the host the `Host` header names; two `Host` headers are refused.
    pub fn check_authority<'a>(
        authority: Option<&str>,
        mut hosts: impl Iterator<Item = &'a str>,
    ) -> Result<(), TargetError> {
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(TargetError::Authority);
        }
        match (authority, host) {
            (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => Err(TargetError::Authority),
            _ => Ok(()),
        }
    }

    /// The canonical path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query, as received.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Whether the path is `prefix` or lies under it (segment-wise: `/a` holds `/a/b`, not
    /// `/ab`). An empty prefix or `/` holds every path.
    pub fn is_under(&self, prefix: &str) -> bool {
        let p = prefix.trim_end_matches('/');
        p.is_empty()
            || self.path == p
            || self
                .path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The path without `prefix` (a path under it), `/` when nothing is left.
    pub fn path_without(&self, prefix: &str) -> String {
        let p = prefix.trim_end_matches('/');
        match self.path.strip_prefix(p) {
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            Some("") => "/".to_owned(),
            _ => self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        RequestTarget::parse(p, None).unwrap().path().to_owned()
    }

    fn err(p: &str) -> TargetError {
        RequestTarget::parse(p, None).unwrap_err()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/weather"), "/weather");
        assert_eq!(ok("/weather/"), "/weather/");
        assert_eq!(ok("/w%65ather"), "/weather");
        assert_eq!(ok("/a%7eb"), "/a~b");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
        assert_eq!(ok("/a;b=c/d"), "/a;b=c/d");
        assert_eq!(ok("/..a/a.."), "/..a/a..");
    }

    #[test]
    fn refuses_what_two_readers_could_disagree_on() {
        for (p, e) in [
            ("weather", TargetError::NotOriginForm),
            ("*", TargetError::NotOriginForm),
            ("", TargetError::NotOriginForm),
            ("/weather/%2e%2e/mcp", TargetError::DotSegment),
            ("/weather/%2E%2E/mcp", TargetError::DotSegment),
            ("/weather/.%2e/mcp", TargetError::DotSegment),
            ("/weather/../mcp", TargetError::DotSegment),
            ("/weather/./x", TargetError::DotSegment),
            ("/weather/..;/mcp", TargetError::DotSegment),
            ("/weather/..%3B/mcp", TargetError::DotSegment),
            ("/weather/..", TargetError::DotSegment),
            ("/weather%2f..%2fmcp", TargetError::Separator),
            ("/weather%5c..%5cmcp", TargetError::Separator),
            ("/weather\\..\\mcp", TargetError::Separator),
            ("/weather//mcp", TargetError::EmptySegment),
            ("//weather", TargetError::EmptySegment),
            ("/weather/%252e%252e/mcp", TargetError::DoubleEncoding),
            ("/weather/%00", TargetError::Control),
            ("/weather/%0a", TargetError::Control),
            ("/weather/%c0%ae%c0%ae/mcp", TargetError::NotUtf8),
            ("/weather/%ff", TargetError::NotUtf8),
            ("/weather/%2", TargetError::BadEscape),
            ("/weather/%zz", TargetError::BadEscape),
            ("/weather/a b", TargetError::Character(' ')),
            ("/weather/é", TargetError::Character('é')),
            ("/weather/#x", TargetError::Character('#')),
        ] {
            assert_eq!(err(p), e, "{p}");
        }
    }

    #[test]
    fn prefixes_are_matched_by_segment() {
        let t = RequestTarget::parse("/weather/today", Some("city=x")).unwrap();
        assert!(t.is_under("/weather"));
        assert!(t.is_under("/weather/"));
        assert!(t.is_under(""));
        assert!(!t.is_under("/weath"));
        assert_eq!(t.path_without("/weather"), "/today");
        assert_eq!(t.to_string(), "/weather/today?city=x");
        let t = RequestTarget::parse("/weather", None).unwrap();
        assert_eq!(t.path_without("/weather"), "/");
    }

    #[test]
    fn authority_and_host_must_agree() {
        assert!(RequestTarget::check_authority(None, ["a:1"].into_iter()).is_ok());
        assert!(RequestTarget::check_authority(Some("A:1"), ["a:1"].into_iter()).is_ok());
        assert!(RequestTarget::check_authority(Some("a:1"), std::iter::empty()).is_ok());
        assert_eq!(
            RequestTarget::check_authority(Some("evil:1"), ["a:1"].into_iter()),
            Err(TargetError::Authority)
        );
        assert_eq!(
            RequestTarget::check_authority(None, ["a:1", "b:1"].into_iter()),
            Err(TargetError::Authority)
        );
    }

    proptest::proptest! {
        /// Canonical is a fixed point: what passes parses to itself, and contains no dot
        /// segment once a URL parser resolves it.
        #[test]
        fn canonical_paths_are_fixed_points(p in "/[a-zA-Z0-9%._~;:@!$&'()*+,=/-]{0,40}") {
            if let Ok(t) = RequestTarget::parse(&p, None) {
                let again = RequestTarget::parse(t.path(), None).unwrap();
                proptest::prop_assert_eq!(again.path(), t.path());
                for seg in t.path().split('/') {
                    let name = seg.split(';').next().unwrap_or(seg);
                    proptest::prop_assert!(name != "." && name != "..");
                    proptest::prop_assert!(!seg.to_ascii_lowercase().contains("%2e"));
                }
            }
        }
    }
}
