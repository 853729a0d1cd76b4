//! Issue 19: `aims mcp`, the MCP client of `aims-sdk` (MCP authorization under the Rust MCP
//! SDK), passes the MCP conformance suite's client authorization scenarios
//! (`@modelcontextprotocol/conformance` in interop/mcp-conformance, on Node 22 from npm): the
//! core authorization of 2025-11-25 and 2026-07-28 (discovery, PKCE, registration, Client ID
//! Metadata Documents, scopes and step-up, RFC 9207 `iss`, authorization server migration,
//! refresh tokens) and the extensions (client credentials with a secret or `private_key_jwt`,
//! workload identity federation, enterprise-managed authorization with ID-JAG, DPoP with and
//! without nonces). The refusals are tested by the suite too: a resource whose metadata names
//! another resource, an authorization server whose metadata names another issuer, an answer
//! from a mix-up issuer or without the promised `iss`, a scope that will never be granted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mcp_conformance as suite;

/// Every client authorization scenario of the suite that applies to 2025-11-25 or later.
const SCENARIOS: &[&str] = &[
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    "auth/iss-supported",
    "auth/iss-not-advertised",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/metadata-issuer-mismatch",
    "auth/client-credentials-jwt",
    "auth/client-credentials-basic",
    "auth/enterprise-managed-authorization",
    "auth/dpop",
    "auth/dpop-nonce",
    "auth/wif-jwt-bearer",
];

/// Core client scenarios of 2026-07-28 that an MCP client calling tools takes part in: a tool
/// call with typed arguments, the per-request `_meta` and `MCP-Protocol-Version` obligations,
/// and a tool schema whose network `$ref` must not be fetched.
const CORE: &[&str] = &["tools_call", "request-metadata", "json-schema-ref-no-deref"];

/// Scenarios of the 2025-03-26 revision only (removed in 2025-06-18): a server without
/// protected resource metadata, whose client guesses endpoints. `aims mcp` does not guess.
const NOT_APPLICABLE: &[&str] = &[
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
];

#[test]
fn aims_mcp_passes_the_client_authorization_scenarios_of_the_mcp_conformance_suite() {
    // The suite's list and ours agree: a scenario added to the suite fails here until it is
    // run or excluded with a reason.
    let listed = suite(&["list"]).output().expect("node runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let mut in_suite: Vec<&str> = listed
        .split_whitespace()
        .filter(|w| w.starts_with("auth/"))
        .collect();
    in_suite.sort_unstable();
    let mut known: Vec<&str> = SCENARIOS.iter().chain(NOT_APPLICABLE).copied().collect();
    known.sort_unstable();
    assert_eq!(
        in_suite, known,
        "the suite's client authorization scenarios changed"
    );

    let node = common::repo_root().join("interop/mcp-conformance/node_modules/.bin/node");
    let client = format!("{} aims-client.mjs", node.display());
    let mut failed = Vec::new();
    let runs = SCENARIOS
        .iter()
        .map(|s| (*s, None))
        .chain(CORE.iter().map(|s| (*s, Some("2026-07-28"))));
    for (scenario, revision) in runs {
        let mut args = vec!["client", "--command", &client, "--scenario", scenario];
        if let Some(r) = revision {
            args.extend(["--spec-version", r]);
        }
        let out = suite(&args)
            .env("AIMS_BIN", env!("CARGO_BIN_EXE_aims"))
            .env("AIMS_LOG", "warn")
            .output()
            .expect("node runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = printed
            .lines()
            .find(|l| l.starts_with("Passed: "))
            .unwrap_or("no summary");
        if !out.status.success()
            || !printed.contains("OVERALL: PASSED")
            || !summary.ends_with(" 0 failed, 0 warnings")
        {
            failed.push(format!("{scenario}: {summary}\n{printed}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
