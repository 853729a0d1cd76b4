//! Scope hierarchies (MCP authorization 2026-07-28, "Scope Challenge Handling": servers MUST
//! account for scope hierarchies, where a broader scope implies narrower ones, when deciding
//! whether a token is sufficient). MCP leaves the hierarchy to each server: a route declares
//! it (`scope_implies`), and the scopes a token grants reach policy with every scope they
//! imply, transitively, so a policy asking for `files:read` is satisfied by `files`.

use std::collections::{BTreeMap, BTreeSet};

/// A route's scope hierarchy, closed transitively when the route is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeHierarchy {
    /// Each broader scope and every scope it implies (itself excluded), sorted.
    implied: BTreeMap<String, Vec<String>>,
}

impl ScopeHierarchy {
    /// The transitive closure of `implies` (a broader scope → the narrower ones it implies
    /// directly). Cycles are harmless: scopes in one imply each other.
    pub fn new(implies: &BTreeMap<String, Vec<String>>) -> Self {
        let implied = implies
            .keys()
            .map(|broad| {
                let mut seen = BTreeSet::new();
                let mut stack = vec![broad.as_str()];
                while let Some(scope) = stack.pop() {
                    for narrower in implies.get(scope).into_iter().flatten() {
                        if narrower != broad && seen.insert(narrower.clone()) {
                            stack.push(narrower);
                        }
                    }
                }
                (broad.clone(), seen.into_iter().collect())
            })
            .collect();
        Self { implied }
    }

    /// The broader scopes it knows (for `scopes_supported`).
    pub fn broader(&self) -> impl Iterator<Item = &str> {
        self.implied.keys().map(String::as_str)
    }

    /// `granted` and every scope it implies, each once, in the order first met.
    pub fn expand(&self, granted: Vec<String>) -> Vec<String> {
        if self.implied.is_empty() {
            return granted;
        }
        let mut out = Vec::with_capacity(granted.len());
        for scope in &granted {
            for s in std::iter::once(scope).chain(self.implied.get(scope).into_iter().flatten()) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hierarchy(pairs: &[(&str, &[&str])]) -> ScopeHierarchy {
        ScopeHierarchy::new(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
        )
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_broader_scope_brings_the_narrower_ones_transitively() {
        let h = hierarchy(&[
            ("admin", &["files"]),
            ("files", &["files:read", "files:write"]),
        ]);
        assert_eq!(
            h.expand(scopes(&["admin"])),
            scopes(&["admin", "files", "files:read", "files:write"])
        );
        assert_eq!(
            h.expand(scopes(&["files", "mcp"])),
            scopes(&["files", "files:read", "files:write", "mcp"])
        );
        assert_eq!(h.broader().collect::<Vec<_>>(), ["admin", "files"]);
    }

    #[test]
    fn a_narrower_scope_never_brings_a_broader_one_or_a_sibling() {
        let h = hierarchy(&[("files", &["files:read", "files:write"])]);
        assert_eq!(h.expand(scopes(&["files:read"])), scopes(&["files:read"]));
        // A name that merely looks broader implies nothing the hierarchy does not say.
        assert_eq!(h.expand(scopes(&["file"])), scopes(&["file"]));
        assert_eq!(
            ScopeHierarchy::default().expand(scopes(&["files"])),
            scopes(&["files"])
        );
    }

    #[test]
    fn cycles_end() {
        let h = hierarchy(&[("a", &["b"]), ("b", &["a", "c"])]);
        assert_eq!(h.expand(scopes(&["a"])), scopes(&["a", "b", "c"]));
        assert_eq!(h.expand(scopes(&["b"])), scopes(&["b", "a", "c"]));
    }
}
