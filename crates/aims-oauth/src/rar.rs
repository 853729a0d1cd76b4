//! RFC 9396 authorization details, and the rule that delegation only narrows them (AIMS
//! AZ-14): a detail derived from another keeps its `type`, takes at most its `locations`,
//! `actions`, `datatypes` and `privileges`, and keeps its `identifier` and every other member
//! it names. It may add restrictions of its own (members the original did not name).

use serde_json::Value;

use crate::error::OAuthError;

/// The common array members (RFC 9396 §2.2).
const ARRAY_MEMBERS: &[&str] = &["locations", "actions", "datatypes", "privileges"];
/// Largest `authorization_details` parameter accepted.
const MAX_LEN: usize = 16 * 1024;

/// Parses the `authorization_details` request parameter: a JSON array of objects, each with a
/// string `type`.
pub fn parse(param: &str) -> Result<Value, OAuthError> {
    if param.len() > MAX_LEN {
        return Err(OAuthError::invalid_authorization_details("too large"));
    }
    let v: Value = serde_json::from_str(param)
        .map_err(|e| OAuthError::invalid_authorization_details(format!("not JSON: {e}")))?;
    let list = v
        .as_array()
        .ok_or_else(|| OAuthError::invalid_authorization_details("must be a JSON array"))?;
    for d in list {
        if !d.get("type").is_some_and(Value::is_string) {
            return Err(OAuthError::invalid_authorization_details(
                "every detail needs a string type",
            ));
        }
        for m in ARRAY_MEMBERS {
            if d.get(*m).is_some_and(|a| !a.is_array()) {
                return Err(OAuthError::invalid_authorization_details(format!(
                    "{m} must be an array"
                )));
            }
        }
    }
    Ok(v)
}

fn covers(original: &Value, derived: &Value) -> bool {
    let (Some(o), Some(d)) = (original.as_object(), derived.as_object()) else {
        return false;
    };
    o.iter().all(|(k, ov)| {
        let dv = d.get(k);
        if ARRAY_MEMBERS.contains(&k.as_str()) {
            // The derived detail must restrict at least as much.
            let allowed = ov.as_array().map(Vec::as_slice).unwrap_or_default();
            dv.and_then(Value::as_array)
                .is_some_and(|vals| vals.iter().all(|v| allowed.contains(v)))
        } else {
            dv == Some(ov)
        }
    })
}

/// Whether every detail of `derived` is covered by some detail of `original`.
pub fn is_within(original: &Value, derived: &Value) -> bool {
    let (Some(orig), Some(der)) = (original.as_array(), derived.as_array()) else {
        return false;
    };
    der.iter().all(|d| orig.iter().any(|o| covers(o, d)))
}

/// The union of `locations` over the details, if any detail names locations; a token whose
/// grant names locations may only be used, or exchanged, for those.
pub fn locations(details: &Value) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut any = false;
    for d in details.as_array()? {
        if let Some(list) = d.get("locations").and_then(Value::as_array) {
            any = true;
            out.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn narrowing_only() {
        let o = json!([{"type": "payment", "actions": ["read", "pay"], "locations": ["https://bank"], "currency": "EUR"}]);
        assert!(is_within(
            &o,
            &json!([{"type": "payment", "actions": ["read"], "locations": ["https://bank"], "currency": "EUR"}])
        ));
        assert!(
            !is_within(
                &o,
                &json!([{"type": "payment", "actions": ["refund"], "locations": ["https://bank"], "currency": "EUR"}])
            ),
            "new action"
        );
        assert!(
            !is_within(
                &o,
                &json!([{"type": "payment", "locations": ["https://bank"], "currency": "EUR"}])
            ),
            "dropping a restriction widens"
        );
        assert!(
            !is_within(
                &o,
                &json!([{"type": "payment", "actions": ["read"], "locations": ["https://bank"], "currency": "USD"}])
            ),
            "changed member"
        );
        assert!(!is_within(&o, &json!([{"type": "other"}])));
        assert_eq!(locations(&o), Some(vec!["https://bank".to_owned()]));
        assert_eq!(locations(&json!([{"type": "x"}])), None);
        assert!(parse("[{\"type\":1}]").is_err());
        assert!(parse("{}").is_err());
        assert!(parse("[{\"type\":\"a\",\"actions\":\"read\"}]").is_err());
        assert!(parse("[{\"type\":\"a\",\"actions\":[\"read\"]}]").is_ok());
    }
}
