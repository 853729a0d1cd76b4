//! `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2, Appendix B): every
//! parameter at most once, except those the extensions make repeatable (`resource`,
//! `audience`: RFC 8707 §2, RFC 8693 §2.1). A repeated single-valued parameter is an error,
//! not "the last one wins".

use std::collections::HashMap;

use crate::error::OAuthError;

/// Parameters that may appear more than once.
const REPEATABLE: &[&str] = &["resource", "audience"];
/// Most parameters in one request.
const MAX_PARAMS: usize = 64;

/// A parsed form.
#[derive(Debug, Default, Clone)]
pub struct Form {
    single: HashMap<String, String>,
    multi: HashMap<String, Vec<String>>,
}

/// The name-value pairs of a form body (WHATWG URL §5.1), refusing what a lenient decoder
/// would guess at: bytes outside ASCII and escapes that decode to anything but UTF-8 (no
/// U+FFFD substitution, so every component reads the same value).
fn decode(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let bad = || OAuthError::invalid_request("the body is not application/x-www-form-urlencoded");
    if !body.is_ascii() {
        return Err(bad());
    }
    let component = |raw: &[u8]| -> Result<String, OAuthError> {
        let plus: Vec<u8> = raw
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
        String::from_utf8(bytes).map_err(|_| bad())
    };
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let k = component(kv.next().unwrap_or_default())?;
            let v = component(kv.next().unwrap_or_default())?;
            Ok((k, v))
        })
        .collect()
}

impl Form {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs = decode(body)?;
        if pairs.len() > MAX_PARAMS {
            return Err(OAuthError::invalid_request("too many parameters"));
        }
        let mut form = Form::default();
        for (k, v) in pairs {
            // RFC 6749 §3.2: parameters sent without a value are treated as omitted.
            if v.is_empty() {
                continue;
            }
            if REPEATABLE.contains(&k.as_str()) {
                form.multi.entry(k).or_default().push(v);
            } else if form.single.insert(k.clone(), v).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} appears more than once"
                )));
            }
        }
        Ok(form)
    }

    /// A single-valued parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(String::as_str)
    }

    /// A required single-valued parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, name: &str) -> &[String] {
        self.multi.get(name).map_or(&[], Vec::as_slice)
    }

    /// The scopes requested (space-separated, RFC 6749 §3.3), deduplicated, in order.
    pub fn scopes(&self) -> Result<Option<Vec<String>>, OAuthError> {
        self.get("scope").map(parse_scope).transpose()
    }
}

/// Parses a scope string: space-separated tokens of the characters RFC 6749 §3.3 allows.
pub fn parse_scope(s: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ').filter(|t| !t.is_empty()) {
        let ok = tok
            .bytes()
            .all(|c| c == 0x21 || (0x23..=0x5b).contains(&c) || (0x5d..=0x7e).contains(&c));
        if !ok {
            return Err(OAuthError::invalid_scope(format!(
                "scope token {:?} has characters RFC 6749 §3.3 forbids",
                tok.chars().take(40).collect::<String>()
            )));
        }
        if !out.iter().any(|o| o == tok) {
            out.push(tok.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_limits() {
        let f = Form::parse(b"grant_type=x&resource=a&resource=b&scope=read%20write+read&empty=")
            .unwrap();
        assert_eq!(f.get("grant_type"), Some("x"));
        assert_eq!(f.all("resource"), ["a", "b"]);
        assert_eq!(f.scopes().unwrap().unwrap(), ["read", "write"]);
        assert_eq!(f.get("empty"), None);
        let e = Form::parse(b"grant_type=a&grant_type=b").unwrap_err();
        assert_eq!(e.code, aims_token::ErrorCode::InvalidRequest);
        let many: String = (0..100).map(|i| format!("p{i}=1&")).collect();
        assert!(Form::parse(many.as_bytes()).is_err());
        assert_eq!(
            parse_scope("a \"b").unwrap_err().code,
            aims_token::ErrorCode::InvalidScope
        );
        assert_eq!(
            f.require("nope").unwrap_err().code,
            aims_token::ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn decodes_forms_and_refuses_what_is_not_utf8() {
        let f = Form::parse(b"a=b+c&d=%C3%A9&e=&resource=x&resource=y").unwrap();
        assert_eq!(f.get("a"), Some("b c"));
        assert_eq!(f.get("d"), Some("\u{e9}"));
        assert_eq!(f.get("e"), None);
        assert_eq!(f.all("resource"), ["x", "y"]);
        for bad in [&b"a=%FF"[..], b"a=\xff", b"a=%C0%AE", b"%FE=b"] {
            assert!(Form::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Form::parse(b"a=1&a=2").is_err());
    }
}
