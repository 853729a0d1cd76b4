//! Subject identifiers (RFC 9493, and the formats SSF 1.0 §3 adds): who an event is about.

use serde::{Deserialize, Serialize};

/// A subject identifier (RFC 9493 §3; SSF 1.0 §3.2 adds `jwt_id`, `saml_assertion_id`,
/// `ip-addresses` and `complex`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum SubjectId {
    /// RFC 9493 §3.2.1: an `acct:` URI.
    Account {
        /// The URI.
        uri: String,
    },
    /// RFC 9493 §3.2.2.
    Email {
        /// The address.
        email: String,
    },
    /// RFC 9493 §3.2.3: an issuer and a subject.
    IssSub {
        /// Issuer.
        iss: String,
        /// Subject.
        sub: String,
    },
    /// RFC 9493 §3.2.4: an opaque string.
    Opaque {
        /// The identifier.
        id: String,
    },
    /// RFC 9493 §3.2.5: E.164.
    PhoneNumber {
        /// The number.
        phone_number: String,
    },
    /// RFC 9493 §3.2.6.
    Did {
        /// The DID URL.
        url: String,
    },
    /// RFC 9493 §3.2.7: a URI — what AIMS uses for SPIFFE IDs.
    Uri {
        /// The URI.
        uri: String,
    },
    /// RFC 9493 §3.2.8: several identifiers of one subject.
    Aliases {
        /// The identifiers.
        identifiers: Vec<SubjectId>,
    },
    /// SSF §3.2.2: a JWT by issuer and `jti`.
    JwtId {
        /// Issuer.
        iss: String,
        /// The JWT's `jti`.
        jti: String,
    },
    /// SSF §3.2.3: a SAML assertion.
    SamlAssertionId {
        /// Issuer.
        issuer: String,
        /// Assertion id.
        assertion_id: String,
    },
    /// SSF §3.2.4: IP addresses.
    #[serde(rename = "ip-addresses")]
    IpAddresses {
        /// The addresses.
        #[serde(rename = "ip-addresses")]
        ip_addresses: Vec<String>,
    },
    /// SSF §3.2.1: a complex subject: each member describes one aspect of the same principal.
    Complex(Box<ComplexSubject>),
}

/// The members of a complex subject (SSF §3.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ComplexSubject {
    /// The user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<SubjectId>,
    /// The device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<SubjectId>,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SubjectId>,
    /// The application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<SubjectId>,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<SubjectId>,
    /// The organizational unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_unit: Option<SubjectId>,
    /// The group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<SubjectId>,
}

impl SubjectId {
    /// The identifier AIMS uses for a principal: a URI (`spiffe://…`, `https://…`) as `uri`,
    /// an address with `@` as `email`, anything else as `opaque`.
    pub fn for_principal(principal: &str) -> Self {
        if principal.contains("://") {
            SubjectId::Uri {
                uri: principal.to_owned(),
            }
        } else if principal.contains('@') && !principal.contains(' ') {
            SubjectId::Email {
                email: principal.to_owned(),
            }
        } else {
            SubjectId::Opaque {
                id: principal.to_owned(),
            }
        }
    }

    /// The principals this subject names, as AIMS knows them (SPIFFE IDs, client ids, users),
    /// in a SET from `transmitter`: the URI, address or opaque id; an `iss_sub`'s `sub` only
    /// when its `iss` is the transmitter itself (RFC 9493 §3.2.5: a `sub` is unique only within
    /// its issuer, so another issuer's `alice` is not this one's); every alias; a complex
    /// subject's user and application.
    pub fn principals(&self, transmitter: &str) -> Vec<String> {
        match self {
            SubjectId::Uri { uri } | SubjectId::Account { uri } => vec![uri.clone()],
            SubjectId::Email { email } => vec![email.clone()],
            SubjectId::Opaque { id } => vec![id.clone()],
            SubjectId::IssSub { iss, sub }
                if iss.trim_end_matches('/') == transmitter.trim_end_matches('/') =>
            {
                vec![sub.clone()]
            }
            SubjectId::IssSub { .. } => Vec::new(),
            SubjectId::PhoneNumber { phone_number } => vec![phone_number.clone()],
            SubjectId::Did { url } => vec![url.clone()],
            SubjectId::Aliases { identifiers } => identifiers
                .iter()
                .flat_map(|i| i.principals(transmitter))
                .collect(),
            SubjectId::Complex(c) => [&c.user, &c.application]
                .into_iter()
                .flatten()
                .flat_map(|i| i.principals(transmitter))
                .collect(),
            SubjectId::JwtId { .. }
            | SubjectId::SamlAssertionId { .. }
            | SubjectId::IpAddresses { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_follow_rfc_9493_and_ssf() {
        let cases = [
            json!({"format": "email", "email": "user@example.com"}),
            json!({"format": "iss_sub", "iss": "https://issuer.example.com/", "sub": "145234573"}),
            json!({"format": "opaque", "id": "11112222333344445555"}),
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            json!({"format": "account", "uri": "acct:example.user@service.example.com"}),
            json!({"format": "did", "url": "did:example:123456"}),
            json!({"format": "uri", "uri": "spiffe://example.org/agent/a"}),
            json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "user@example.com"},
                {"format": "opaque", "id": "x"}]}),
            json!({"format": "jwt_id", "iss": "https://as", "jti": "j1"}),
            json!({"format": "ip-addresses", "ip-addresses": ["10.1.1.1"]}),
            json!({"format": "complex",
                   "user": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"},
                   "device": {"format": "opaque", "id": "d1"}}),
        ];
        for c in cases {
            let s: SubjectId = serde_json::from_value(c.clone()).unwrap();
            assert_eq!(serde_json::to_value(&s).unwrap(), c);
        }
        // SSF's example misspelling `phone` is not RFC 9493's `phone_number`.
        assert!(
            serde_json::from_value::<SubjectId>(json!({"format": "phone", "phone_number": "+1"}))
                .is_err()
        );
        let complex: SubjectId = serde_json::from_value(json!({"format": "complex",
            "user": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"}}))
        .unwrap();
        assert_eq!(complex.principals("https://idp"), vec!["alice"]);
        // Issue 16: another issuer's `alice` is nobody here.
        assert!(complex.principals("https://other-idp").is_empty());
        assert_eq!(
            SubjectId::for_principal("spiffe://td/agent/a"),
            SubjectId::Uri {
                uri: "spiffe://td/agent/a".into()
            }
        );
        assert_eq!(
            SubjectId::for_principal("bob"),
            SubjectId::Opaque { id: "bob".into() }
        );
    }
}
