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

impl Form {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            OAuthError::invalid_request("the body is not application/x-www-form-urlencoded")
        })?;
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
        assert_eq!(e.code, "invalid_request");
        let many: String = (0..100).map(|i| format!("p{i}=1&")).collect();
        assert!(Form::parse(many.as_bytes()).is_err());
        assert_eq!(parse_scope("a \"b").unwrap_err().code, "invalid_scope");
        assert_eq!(f.require("nope").unwrap_err().code, "invalid_request");
    }
}
