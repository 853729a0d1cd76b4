//! Decisions, kept for identical requests for a short while (bounded): agents repeat the same
//! call, and a Cedar decision costs more than a lookup. An entry is only used at the policy
//! version that made it, and every revocation signal empties the cache (AIMS MO-5).

use std::fmt::Write as _;
use std::sync::Arc;

use aims_policy::{Principal, Query, Target, Verdict};

use crate::recent::RecentCache;

/// Decisions by [`key`].
pub type DecisionCache = RecentCache<String, Arc<Verdict>>;

/// Everything a decision depends on except the time, as one string (`\x1f`-separated, each
/// part length-prefixed so no two requests share a key).
pub fn key(query: &Query, policy_version: u64) -> String {
    let mut k = String::with_capacity(256);
    let mut part = |s: &str| {
        let _ = write!(k, "{}:{s}\x1f", s.len());
    };
    part(&policy_version.to_string());
    match &query.principal {
        Principal::Agent { spiffe_id, posture } => {
            part("agent");
            part(spiffe_id.as_str());
            part(posture);
        }
        Principal::Workload { client_id } => {
            part("workload");
            part(client_id);
        }
        Principal::User { id } => {
            part("user");
            part(id);
        }
    }
    part(query.action.as_str());
    match &query.target {
        Target::Tool {
            name,
            required_scopes,
        } => {
            part("tool");
            part(name);
            part(&required_scopes.join(" "));
        }
        Target::McpTool {
            server,
            name,
            required_scopes,
            arguments,
        } => {
            part("mcp");
            part(server);
            part(name);
            part(&required_scopes.join(" "));
            part(&serde_json::Value::Object(arguments.clone()).to_string());
        }
        Target::Resource { uri } => {
            part("resource");
            part(uri);
        }
    }
    let f = &query.facts;
    part(f.delegated_subject.as_deref().unwrap_or("\u{0}"));
    part(&f.chain.join(" "));
    part(&f.scopes.join(" "));
    for d in &f.authorization_details {
        part(&d.kind);
        part(&d.actions.join(" "));
        part(&d.locations.join(" "));
    }
    part(f.approval.as_deref().unwrap_or("\u{0}"));
    part(&f.source_ip.map(|ip| ip.to_string()).unwrap_or_default());
    part(&f.risk.join(" "));
    part(f.method.as_deref().unwrap_or(""));
    part(f.path.as_deref().unwrap_or(""));
    k
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aims_core::SpiffeId;
    use aims_policy::{Action, Facts};
    use std::time::Duration;

    fn query(path: &str, args: serde_json::Value) -> Query {
        Query {
            principal: Principal::agent(SpiffeId::parse("spiffe://t/a").unwrap()),
            action: Action::CallTool,
            target: Target::McpTool {
                server: "s".into(),
                name: "n".into(),
                required_scopes: vec![],
                arguments: args.as_object().cloned().unwrap(),
            },
            facts: Facts {
                path: Some(path.into()),
                time: 1,
                ..Facts::default()
            },
        }
    }

    #[test]
    fn keys_differ_by_every_input_but_time_and_entries_expire() {
        let a = query("/mcp", serde_json::json!({"p": "/x"}));
        let mut later = a.clone();
        later.facts.time = 99;
        assert_eq!(key(&a, 1), key(&later, 1));
        assert_ne!(key(&a, 1), key(&a, 2));
        assert_ne!(
            key(&a, 1),
            key(&query("/mcp", serde_json::json!({"p": "/y"})), 1)
        );
        assert_ne!(
            key(&a, 1),
            key(&query("/mcp2", serde_json::json!({"p": "/x"})), 1)
        );
        let mut scoped = a.clone();
        scoped.facts.scopes = vec!["x".into()];
        assert_ne!(key(&a, 1), key(&scoped, 1));
        // Length prefixes: moving a separator between fields changes the key.
        let mut b = a.clone();
        b.facts.chain = vec!["a b".into()];
        let mut c = a.clone();
        c.facts.chain = vec!["a".into(), "b".into()];
        assert_eq!(
            key(&b, 1),
            key(&c, 1),
            "chains join with a space: the same set"
        );

        let verdict = Arc::new(Verdict {
            allowed: true,
            policy_version: 1,
            policies: vec![],
            errors: vec![],
        });
        let cache = DecisionCache::new(1, Duration::from_secs(60));
        cache.put(key(&a, 1), verdict.clone(), |_| false);
        assert!(cache.get(&key(&a, 1)).is_some());
        // Bounded: a second entry evicts.
        cache.put(key(&scoped, 1), verdict.clone(), |_| false);
        assert!(cache.get(&key(&a, 1)).is_none());
        cache.forget(|_| true);
        assert!(cache.get(&key(&scoped, 1)).is_none());
        let off = DecisionCache::new(10, Duration::ZERO);
        off.put(key(&a, 1), verdict, |_| false);
        assert!(off.get(&key(&a, 1)).is_none());
    }
}
