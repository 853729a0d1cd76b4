//! Who may exchange a token, and for which audiences (RFC 8693 §2.1, §5; AIMS AZ-6, PV-6).
//!
//! RFC 8693 leaves to the authorization server's policy which client may present which subject
//! token and what it may ask for. AIMS decides it in one place, so that an exchange only
//! narrows, and only for those entitled:
//!
//! - **Entitled**: the subject token is the client's own (its `client_id` or `sub`), the client
//!   is one of its audiences or the registered server of one, or the token's `may_act` names it.
//!   A token that merely reached a client (a log, a compromised tool) buys it nothing.
//! - **Known audiences**: every audience asked for is a registered resource (or lies under
//!   one), or a workload of this trust domain to hand the task to (its SPIFFE ID).
//! - **Never wider**: unless the token is the client's own, each resource audience lies within
//!   the subject token's audiences or its RFC 9396 locations, or is an upstream the registered
//!   server of one of them exchanges for. For a person's delegation this is the consent: no hop
//!   reaches a resource the person did not grant.
//!
//! The policy then decides each grant (`obtain_token`, `invalid_target` on a deny).

use std::sync::RwLock;

use aims_core::{SpiffeId, TrustDomain};
use serde_json::Value;

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::settings::ResourceServer;

/// What the rules need of a presented subject token.
pub(crate) struct SubjectView<'a> {
    /// `sub`.
    pub sub: &'a str,
    /// The client the token was issued to, when it names one.
    pub client_id: Option<&'a str>,
    /// `aud`.
    pub aud: &'a [String],
    /// `may_act`.
    pub may_act: Option<&'a Value>,
    /// RFC 9396 locations of its authorization details, if it has any.
    pub locations: Option<Vec<String>>,
}

/// Whether `uri` is `base` or lies under it, path segment by path segment.
fn is_under(uri: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    uri == base
        || uri
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

/// The resources this authorization server knows: configured ones, and those a gateway in
/// this process serves (registered as it starts).
#[derive(Debug, Default)]
pub struct ResourceRegistry {
    entries: RwLock<Vec<ResourceServer>>,
}

impl ResourceRegistry {
    /// A registry of `entries`.
    pub fn new(entries: Vec<ResourceServer>) -> Self {
        Self {
            entries: RwLock::new(entries),
        }
    }

    /// Adds `resource`, replacing an entry for the same identifier.
    pub fn register(&self, resource: ResourceServer) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|r| r.resource != resource.resource);
        entries.push(resource);
    }

    /// Whether `uri` is a registered resource (or lies under one) that `accept` accepts.
    fn any(&self, uri: &str, accept: impl Fn(&ResourceServer) -> bool) -> bool {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .iter()
            .filter(|r| is_under(uri, &r.resource))
            .max_by_key(|r| r.resource.len())
            .is_some_and(accept)
    }

    /// Whether `uri` is known.
    pub fn knows(&self, uri: &str) -> bool {
        self.any(uri, |_| true)
    }

    /// Whether `uri`'s registered server is `client`.
    fn served_by(&self, uri: &str, client: &AuthenticatedClient) -> bool {
        self.any(uri, |r| {
            r.server
                .as_deref()
                .is_some_and(|s| names(client).any(|n| n == s))
        })
    }
}

/// The identifiers a client is known by: its `client_id` and its SPIFFE ID.
fn names(client: &AuthenticatedClient) -> impl Iterator<Item = &str> {
    std::iter::once(client.client_id.as_str())
        .chain(client.spiffe_id.as_ref().map(|id| id.as_str()))
}

/// Whether audience `a` names a workload of this trust domain: the next agent a task is
/// handed to, not a resource.
pub(crate) fn is_hand_off(a: &str, trust_domain: &TrustDomain) -> bool {
    SpiffeId::parse(a).is_ok_and(|id| id.is_member_of(trust_domain))
}

/// The target of a grant for another authorization server (identity chaining §2.3.3; ID-JAG
/// §9.3): never this server itself, and never a workload of this trust domain.
pub(crate) fn check_other_authorization_server(
    target: &str,
    issuer: &str,
    trust_domain: &TrustDomain,
) -> Result<(), OAuthError> {
    if target == issuer || is_hand_off(target, trust_domain) {
        return Err(OAuthError::invalid_target(format!(
            "{target} is not another authorization server: a grant is for one this server trusts \
             to redeem it"
        )));
    }
    Ok(())
}

/// RFC 8693 §2.1: may `client` present `subject` at all?
pub(crate) fn check_entitled(
    resources: &ResourceRegistry,
    client: &AuthenticatedClient,
    subject: &SubjectView<'_>,
) -> Result<(), OAuthError> {
    let is_client = |v: &str| names(client).any(|n| n == v);
    let own = subject.client_id.is_some_and(is_client) || is_client(subject.sub);
    let audience = subject
        .aud
        .iter()
        .any(|a| is_client(a) || resources.served_by(a, client));
    // RFC 8693 §4.4.
    let named = subject
        .may_act
        .and_then(|m| m.get("sub"))
        .and_then(Value::as_str)
        .is_some_and(is_client);
    if own || audience || named {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant(format!(
            "subject_token: {} is not its client, an audience, its resource server or named by its may_act",
            client.client_id
        )))
    }
}

/// The audiences of an exchange: every one known, and none wider than the subject token's
/// unless the token is the client's own.
pub(crate) fn check_audiences(
    resources: &ResourceRegistry,
    trust_domain: &TrustDomain,
    client: &AuthenticatedClient,
    subject: &SubjectView<'_>,
    requested: &[String],
) -> Result<(), OAuthError> {
    // The client acting for itself: its own authority, which a client credentials grant would
    // give it anyway. A delegated token is bounded even for the client it was issued to.
    let own = names(client).any(|n| n == subject.sub);
    for a in requested {
        if is_hand_off(a, trust_domain) {
            continue;
        }
        if !resources.knows(a) {
            return Err(OAuthError::invalid_target(format!(
                "{a} is not a resource this authorization server knows"
            )));
        }
        if own {
            continue;
        }
        let within_token = subject.aud.iter().any(|held| is_under(a, held));
        let within_details = subject
            .locations
            .as_ref()
            .is_some_and(|l| l.iter().any(|held| is_under(a, held)));
        let upstream_of_served = subject.aud.iter().any(|held| {
            resources.served_by(held, client)
                && resources.any(held, |r| r.exchange_to.iter().any(|up| is_under(a, up)))
        });
        if !(within_token || within_details || upstream_of_served) {
            return Err(OAuthError::invalid_target(format!(
                "{a} is wider than the subject token's audience"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::AuthMethod;
    use aims_core::TrustDomain;

    fn registry() -> ResourceRegistry {
        ResourceRegistry::new(vec![
            ResourceServer {
                resource: "https://gw.example/weather".into(),
                server: Some("spiffe://example.org/gw".into()),
                exchange_to: vec!["https://weather.internal".into()],
            },
            ResourceServer::new("https://weather.internal"),
            ResourceServer::new("https://gw.example/mcp"),
        ])
    }

    fn client(id: &str) -> AuthenticatedClient {
        AuthenticatedClient {
            client_id: id.to_owned(),
            spiffe_id: SpiffeId::parse(id).ok(),
            method: AuthMethod::SpiffeJwt,
            certificate_thumbprint: None,
            metadata: None,
            trace_id: None,
        }
    }

    fn view<'a>(sub: &'a str, client_id: &'a str, aud: &'a [String]) -> SubjectView<'a> {
        SubjectView {
            sub,
            client_id: Some(client_id),
            aud,
            may_act: None,
            locations: None,
        }
    }

    #[test]
    fn only_the_owner_an_audience_its_server_or_may_act_are_entitled() {
        let s = registry();
        let aud = vec!["https://gw.example/weather".to_owned()];
        let a = "spiffe://example.org/a";
        let t = view(a, a, &aud);
        assert!(check_entitled(&s, &client(a), &t).is_ok());
        assert!(check_entitled(&s, &client("spiffe://example.org/gw"), &t).is_ok());
        let e = check_entitled(&s, &client("spiffe://example.org/b"), &t).unwrap_err();
        assert_eq!(e.code, aims_token::ErrorCode::InvalidGrant);
        let may = serde_json::json!({"sub": "spiffe://example.org/b"});
        let t = SubjectView {
            may_act: Some(&may),
            ..view(a, a, &aud)
        };
        assert!(check_entitled(&s, &client("spiffe://example.org/b"), &t).is_ok());
        let handed = vec!["spiffe://example.org/b".to_owned()];
        let t = view(a, a, &handed);
        assert!(check_entitled(&s, &client("spiffe://example.org/b"), &t).is_ok());
    }

    #[test]
    fn audiences_are_known_and_never_wider_unless_the_token_is_the_clients_own() {
        let s = registry();
        let td = TrustDomain::new("example.org").unwrap();
        let aud = vec!["https://gw.example/weather".to_owned()];
        let a = "spiffe://example.org/a";
        let t = view(a, a, &aud);
        let check = |c: &str, req: &[&str]| {
            let req: Vec<String> = req.iter().map(|r| (*r).to_owned()).collect();
            check_audiences(&s, &td, &client(c), &t, &req).map_err(|e| e.code)
        };
        // Unknown resources, for anyone.
        assert_eq!(
            check(a, &["https://evil.example/api"]),
            Err(aims_token::ErrorCode::InvalidTarget)
        );
        // The owner re-aims its own authority at any known resource.
        assert!(check(a, &["https://gw.example/mcp"]).is_ok());
        // The gateway serving the route exchanges for its upstream, not for another route.
        let gw = "spiffe://example.org/gw";
        assert!(check(gw, &["https://weather.internal"]).is_ok());
        assert!(check(gw, &["https://gw.example/weather/today"]).is_ok());
        assert_eq!(
            check(gw, &["https://gw.example/mcp"]),
            Err(aims_token::ErrorCode::InvalidTarget)
        );
        // A hand-off to a workload of the trust domain; not to another trust domain's.
        assert!(check(gw, &["spiffe://example.org/b"]).is_ok());
        assert_eq!(
            check(gw, &["spiffe://evil.example/b"]),
            Err(aims_token::ErrorCode::InvalidTarget)
        );
        // Prefixes match by segment.
        assert_eq!(
            check(gw, &["https://gw.example/weathervane"]),
            Err(aims_token::ErrorCode::InvalidTarget)
        );
    }
}
