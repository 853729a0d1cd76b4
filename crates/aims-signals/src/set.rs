//! Security Event Tokens (RFC 8417) as SSF 1.0 §4 profiles them: `typ` `secevent+jwt`,
//! `sub_id` required, exactly one event, no `sub` and no `exp`.

use aims_credentials::jose::{Audience, CompactJws, JwsHeader, sign};
use aims_credentials::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::subject::SubjectId;

/// RFC 8417 §2.3: the JOSE `typ` of a SET.
pub const SET_TYP: &str = "secevent+jwt";
/// RFC 8935 §2: the media type of a pushed SET.
pub const SET_MEDIA_TYPE: &str = "application/secevent+jwt";

/// Why a SET was refused, as RFC 8935 §2.4 error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// `invalid_request`: not a SET as SSF profiles it.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_key`: no key verifies it.
    #[error("invalid_key: {0}")]
    InvalidKey(String),
    /// `invalid_issuer`.
    #[error("invalid_issuer: {0}")]
    InvalidIssuer(String),
    /// `invalid_audience`.
    #[error("invalid_audience: {0}")]
    InvalidAudience(String),
}

impl SetError {
    /// The RFC 8935 §2.4 `err` code.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidIssuer(_) => "invalid_issuer",
            SetError::InvalidAudience(_) => "invalid_audience",
        }
    }
}

/// A SET's claims (RFC 8417 §2.2, SSF 1.0 §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecEvent {
    /// The transmitter.
    pub iss: String,
    /// Unique id.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The receiver.
    pub aud: Audience,
    /// The same value for SETs of the same cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    /// Who the event is about.
    pub sub_id: SubjectId,
    /// One event: its type URI and its claims.
    pub events: Map<String, Value>,
}

impl SecEvent {
    /// A SET of one event of `event_type` about `sub_id` for receiver `aud`.
    pub fn new(
        iss: &str,
        aud: &str,
        sub_id: SubjectId,
        event_type: &str,
        event: Value,
        txn: Option<String>,
        now: i64,
    ) -> Self {
        let mut events = Map::new();
        events.insert(event_type.to_owned(), event);
        Self {
            iss: iss.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            aud: Audience::One(aud.to_owned()),
            txn,
            sub_id,
            events,
        }
    }

    /// The one event: its type and claims.
    pub fn event(&self) -> Option<(&str, &Value)> {
        let mut it = self.events.iter();
        match (it.next(), it.next()) {
            (Some((t, v)), None) => Some((t.as_str(), v)),
            _ => None,
        }
    }

    /// Signs the SET with `key` under `kid`.
    pub fn sign(&self, key: &PrivateKey, kid: &str) -> Result<String, SetError> {
        sign(key, &JwsHeader::new(key, Some(SET_TYP), Some(kid)), self)
            .map_err(|e| SetError::InvalidKey(e.to_string()))
    }
}

/// Verifies a SET from transmitter `issuer` for receiver `audience`, with the key `keys`
/// finds for its `kid`: signature, `typ`, `iss`, `aud`, exactly one event, `sub_id` present,
/// and neither `sub` nor `exp` (SSF 1.0 §4.1).
pub fn verify_set(
    token: &str,
    issuer: &str,
    audience: &str,
    keys: &dyn Fn(&str) -> Option<PublicKey>,
) -> Result<SecEvent, SetError> {
    let jws = CompactJws::parse(token).map_err(|e| SetError::InvalidRequest(e.to_string()))?;
    if !jws.header.typ_is(SET_TYP) {
        return Err(SetError::InvalidRequest("typ is not secevent+jwt".into()));
    }
    let kid = jws.header.kid.as_deref().unwrap_or_default();
    let key = keys(kid).ok_or_else(|| SetError::InvalidKey(format!("unknown kid {kid:?}")))?;
    jws.verify(&key)
        .map_err(|e| SetError::InvalidKey(e.to_string()))?;
    let raw: Map<String, Value> = jws
        .claims()
        .map_err(|e| SetError::InvalidRequest(e.to_string()))?;
    for forbidden in ["sub", "exp"] {
        if raw.contains_key(forbidden) {
            return Err(SetError::InvalidRequest(format!(
                "a SET must not carry {forbidden} (SSF 1.0 §4.1)"
            )));
        }
    }
    let set: SecEvent = serde_json::from_value(Value::Object(raw))
        .map_err(|e| SetError::InvalidRequest(e.to_string()))?;
    if set.iss != issuer {
        return Err(SetError::InvalidIssuer(set.iss));
    }
    if !set.aud.contains(audience) {
        return Err(SetError::InvalidAudience(format!("{:?}", set.aud.values())));
    }
    if set.event().is_none() {
        return Err(SetError::InvalidRequest(
            "a SET carries exactly one event".into(),
        ));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aims_credentials::KeyType;
    use serde_json::json;

    fn signed(key: &PrivateKey, claims: &Value, typ: &str) -> String {
        sign(key, &JwsHeader::new(key, Some(typ), Some("k1")), claims).unwrap()
    }

    #[test]
    fn sets_verify_and_every_profile_violation_is_refused() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let public = key.public_key().clone();
        let keys = move |kid: &str| (kid == "k1").then(|| public.clone());
        let set = SecEvent::new(
            "https://tx",
            "spiffe://td/gw",
            SubjectId::for_principal("spiffe://td/agent/a"),
            crate::event::SESSION_REVOKED,
            json!({"initiating_entity": "admin", "reason_admin": {"en": "compromised"}}),
            Some("t1".into()),
            100,
        );
        let token = set.sign(&key, "k1").unwrap();
        let got = verify_set(&token, "https://tx", "spiffe://td/gw", &keys).unwrap();
        assert_eq!(got, set);
        assert_eq!(got.event().unwrap().0, crate::event::SESSION_REVOKED);

        let check = |t: &str| verify_set(t, "https://tx", "spiffe://td/gw", &keys);
        assert!(check(&token.replace(".", ".x")).is_err());
        assert_eq!(
            verify_set(&token, "https://other", "spiffe://td/gw", &keys)
                .unwrap_err()
                .code(),
            "invalid_issuer"
        );
        assert_eq!(
            verify_set(&token, "https://tx", "spiffe://td/other", &keys)
                .unwrap_err()
                .code(),
            "invalid_audience"
        );
        let mut claims = serde_json::to_value(&set).unwrap();
        assert_eq!(
            check(&signed(&key, &claims, "JWT")).unwrap_err().code(),
            "invalid_request"
        );
        claims["exp"] = json!(200);
        assert_eq!(
            check(&signed(&key, &claims, SET_TYP)).unwrap_err().code(),
            "invalid_request"
        );
        let mut two = serde_json::to_value(&set).unwrap();
        two["events"][crate::event::ACCOUNT_DISABLED] = json!({});
        assert_eq!(
            check(&signed(&key, &two, SET_TYP)).unwrap_err().code(),
            "invalid_request"
        );
        let mut no_sub_id = serde_json::to_value(&set).unwrap();
        no_sub_id.as_object_mut().unwrap().remove("sub_id");
        assert_eq!(
            check(&signed(&key, &no_sub_id, SET_TYP))
                .unwrap_err()
                .code(),
            "invalid_request"
        );
        // Another key under the same kid.
        let other = PrivateKey::generate(KeyType::EcP256).unwrap();
        assert_eq!(
            check(&set.sign(&other, "k1").unwrap()).unwrap_err().code(),
            "invalid_key"
        );
    }
}
