//! The policy decision point against the AIMS schema (AIMS PO-1…PO-3, AZ-7, AZ-34).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aims_core::SpiffeId;
use aims_policy::authzen::{self, EvaluationRequest, EvaluationsRequest};
use aims_policy::{
    Action, DEFAULT_POLICY, Facts, Pdp, PolicyDiff, PolicyDocument, PolicyError, Principal, Query,
    Target,
};
use serde_json::json;

fn agent(id: &str) -> Principal {
    Principal::agent(SpiffeId::parse(id).unwrap())
}

fn tool_call(scopes: &[&str], required: &[&str]) -> Query {
    Query {
        principal: agent("spiffe://aims.test/agent/a"),
        action: Action::Call,
        target: Target::Tool {
            name: "weather".into(),
            required_scopes: required.iter().map(|s| s.to_string()).collect(),
        },
        facts: Facts {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            time: 1_800_000_000,
            ..Facts::default()
        },
    }
}

fn default_pdp() -> Pdp {
    Pdp::new(&PolicyDocument::new(1, DEFAULT_POLICY)).unwrap()
}

#[test]
fn the_default_policy_allows_a_call_the_token_scopes_cover_and_names_its_version() {
    let pdp = default_pdp();
    let v = pdp.decide(&tool_call(&["weather.read", "x"], &["weather.read"]));
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.policy_version, 1);
    assert_eq!(v.policies, vec!["scoped-tools".to_string()]);
    let v = pdp.decide(&tool_call(&["x"], &["weather.read"]));
    assert!(!v.allowed);
    assert!(v.policies.is_empty());
}

#[test]
fn a_risk_signal_forbids_whatever_else_permits() {
    let pdp = default_pdp();
    let mut q = tool_call(&["weather.read"], &["weather.read"]);
    q.facts.risk = vec!["credential-compromise".into()];
    let v = pdp.decide(&q);
    assert!(!v.allowed);
    assert_eq!(v.policies, vec!["risk".to_string()]);
}

#[test]
fn a_policy_that_fails_schema_validation_is_refused_and_the_old_version_stays() {
    let pdp = default_pdp();
    // `resource.owner` is no attribute of Tool in the AIMS schema.
    let bad = PolicyDocument::new(
        2,
        r#"@id("p") permit(principal, action == Aims::Action::"call", resource) when { resource.owner == "me" };"#,
    );
    let err = pdp.install(&bad).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("policy p"), "{err}");
    assert_eq!(pdp.current().version, 1);
    assert!(pdp.decide(&tool_call(&["s"], &["s"])).allowed);
    // Unknown entity type, unknown action, parse error, missing and duplicate @id.
    for text in [
        r#"@id("p") permit(principal is Aims::Robot, action, resource);"#,
        r#"@id("p") permit(principal, action == Aims::Action::"fly", resource);"#,
        r#"@id("p") permit(principal action resource);"#,
        r#"permit(principal, action, resource);"#,
        r#"@id("p") permit(principal, action, resource); @id("p") forbid(principal, action, resource);"#,
    ] {
        assert!(
            pdp.install(&PolicyDocument::new(2, text)).is_err(),
            "{text}"
        );
    }
    assert_eq!(pdp.current().version, 1);
}

#[test]
fn versions_only_go_forward_and_a_new_set_decides_at_its_version() {
    let pdp = default_pdp();
    let deny_all = r#"@id("nothing") forbid(principal, action, resource);"#;
    assert!(matches!(
        pdp.install(&PolicyDocument::new(1, deny_all)),
        Err(PolicyError::Stale {
            offered: 1,
            current: 1
        })
    ));
    pdp.install(&PolicyDocument::new(2, deny_all)).unwrap();
    let v = pdp.decide(&tool_call(&["s"], &["s"]));
    assert!(!v.allowed);
    assert_eq!(v.policy_version, 2);
    assert_eq!(v.policies, vec!["nothing".to_string()]);
    assert_eq!(
        pdp.current().hash,
        aims_policy::policy_set::content_hash(deny_all, None)
    );
}

#[test]
fn a_diff_names_added_removed_and_changed_policies() {
    let pdp = default_pdp();
    let old = pdp.current();
    let text = DEFAULT_POLICY
        .replace(r#"@id("risk")"#, r#"@id("risk-2")"#)
        .replace(
            "containsAll(resource.required_scopes)",
            "containsAll(resource.required_scopes) && context.chain_depth < 3",
        );
    let new = pdp.compile(&PolicyDocument::new(2, text)).unwrap();
    let diff = PolicyDiff::between(&old, &new);
    assert_eq!(diff.added.len(), 1);
    assert_eq!(diff.added[0].0, "risk-2");
    assert_eq!(diff.removed[0].0, "risk");
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].0, "scoped-tools");
    let shown = diff.to_string();
    assert!(
        shown.contains("+ ") && shown.contains("chain_depth"),
        "{shown}"
    );
    assert!(PolicyDiff::between(&old, &old).is_empty());
}

const MCP_POLICY: &str = r#"
@id("read-public")
permit(principal, action == Aims::Action::"call_tool", resource in Aims::McpServer::"files")
when { resource.name == "read" && resource.hasTag("path") && resource.getTag("path") like "/public/*" };
@id("no-deep-chains")
forbid(principal, action, resource) when { context.chain_depth > 2 };
@id("delegated-only-with-approval")
forbid(principal, action == Aims::Action::"call_tool", resource)
when { context has delegated_subject && !(context has approval) && resource.name == "delete" };
@id("delete")
permit(principal, action == Aims::Action::"call_tool", resource) when { resource.name == "delete" };
"#;

fn mcp_call(name: &str, arguments: serde_json::Value) -> Query {
    Query {
        principal: agent("spiffe://aims.test/agent/a"),
        action: Action::CallTool,
        target: Target::McpTool {
            server: "files".into(),
            name: name.into(),
            required_scopes: vec![],
            arguments: arguments.as_object().cloned().unwrap_or_default(),
        },
        facts: Facts::default(),
    }
}

#[test]
fn tool_arguments_delegation_chain_and_approval_are_visible_to_policy() {
    let pdp = Pdp::new(&PolicyDocument::new(1, MCP_POLICY)).unwrap();
    assert!(
        pdp.decide(&mcp_call("read", json!({"path": "/public/a.txt"})))
            .allowed
    );
    assert!(
        !pdp.decide(&mcp_call("read", json!({"path": "/etc/shadow"})))
            .allowed
    );
    assert!(!pdp.decide(&mcp_call("read", json!({}))).allowed);
    let mut deep = mcp_call("read", json!({"path": "/public/a"}));
    deep.facts.chain = vec!["a".into(), "b".into(), "c".into()];
    assert!(!pdp.decide(&deep).allowed);
    let mut delegated = mcp_call("delete", json!({}));
    delegated.facts.delegated_subject = Some("alice".into());
    assert!(!pdp.decide(&delegated).allowed);
    delegated.facts.approval = Some("urn:aims:approval:1".into());
    assert!(pdp.decide(&delegated).allowed);
}

#[test]
fn an_evaluation_error_denies_even_when_the_erring_policy_is_a_forbid() {
    // Strict validation refuses what it can prove unsafe (an unguarded tag access)...
    let pdp = default_pdp();
    let unguarded = r#"@id("t") forbid(principal, action == Aims::Action::"call_tool", resource) when { resource.getTag("user") == "root" };"#;
    assert!(pdp.install(&PolicyDocument::new(2, unguarded)).is_err());
    // ...but not an overflow. Cedar skips a policy whose condition errs, so the forbid would be
    // skipped and the permit match: the PDP must still deny.
    let text = r#"
@id("all") permit(principal, action, resource);
@id("overflow") forbid(principal, action, resource) when { context.chain_depth * 9223372036854775807 < 0 };
"#;
    let pdp = Pdp::new(&PolicyDocument::new(1, text)).unwrap();
    let mut q = mcp_call("run", json!({}));
    assert!(pdp.decide(&q).allowed);
    q.facts.chain = vec!["a".into(), "b".into()];
    let v = pdp.decide(&q);
    assert!(!v.allowed, "{v:?}");
    assert!(v.errors[0].contains("overflow"), "{v:?}");
}

#[test]
fn authzen_evaluation_maps_onto_the_schema() {
    let pdp = default_pdp();
    let req: EvaluationRequest = serde_json::from_value(json!({
        "subject": {"type": "agent", "id": "spiffe://aims.test/agent/a"},
        "action": {"name": "call"},
        "resource": {"type": "tool", "id": "weather", "properties": {"required_scopes": ["w"]}},
        "context": {"scopes": "w x", "source_ip": "127.0.0.1"}
    }))
    .unwrap();
    let d = authzen::evaluate(&pdp, &req, 0).unwrap();
    assert!(d.decision);
    assert_eq!(d.context.unwrap()["policy_version"], 1);
    let mut wrong = req.clone();
    wrong.subject.as_mut().unwrap().id = "not-a-spiffe-id".into();
    assert!(authzen::evaluate(&pdp, &wrong, 0).is_err());
    let mut no_action = req.clone();
    no_action.action = None;
    assert!(authzen::evaluate(&pdp, &no_action, 0).is_err());
}

#[test]
fn authzen_batches_merge_defaults_and_honour_the_semantic() {
    let pdp = default_pdp();
    let batch = |semantic: &str| -> EvaluationsRequest {
        serde_json::from_value(json!({
            "subject": {"type": "agent", "id": "spiffe://aims.test/agent/a"},
            "action": {"name": "call"},
            "context": {"scopes": ["a"]},
            "options": {"evaluations_semantic": semantic},
            "evaluations": [
                {"resource": {"type": "tool", "id": "t1", "properties": {"required_scopes": ["a"]}}},
                {"resource": {"type": "tool", "id": "t2", "properties": {"required_scopes": ["b"]}}},
                {"resource": {"type": "nope", "id": "t3"}},
                {"resource": {"type": "tool", "id": "t4"}}
            ]
        }))
        .unwrap()
    };
    let all = authzen::evaluate_batch(&pdp, &batch("execute_all"), 0).unwrap();
    let decisions: Vec<bool> = all.evaluations.iter().map(|d| d.decision).collect();
    assert_eq!(decisions, vec![true, false, false, true]);
    assert_eq!(
        all.evaluations[2].context.as_ref().unwrap()["error"]["status"],
        400
    );
    let first_deny = authzen::evaluate_batch(&pdp, &batch("deny_on_first_deny"), 0).unwrap();
    assert_eq!(first_deny.evaluations.len(), 2);
    let first_permit = authzen::evaluate_batch(&pdp, &batch("permit_on_first_permit"), 0).unwrap();
    assert_eq!(first_permit.evaluations.len(), 1);
    // No items: the defaults are the request.
    let mut single = batch("execute_all");
    single.evaluations = None;
    assert!(
        authzen::evaluate_batch(&pdp, &single, 0).is_err(),
        "no resource anywhere"
    );
}

#[test]
fn every_kind_of_request_the_pdp_builds_fits_the_schema() {
    // The decision path skips per-request schema checks; this shows the construction fits.
    let pdp = default_pdp();
    let details = aims_policy::Detail::from_json(
        &json!([{"type": "payment", "actions": ["initiate"], "locations": ["https://bank"]}]),
    );
    let full = Facts {
        delegated_subject: Some("alice".into()),
        chain: vec!["spiffe://aims.test/agent/b".into()],
        scopes: vec!["s".into()],
        authorization_details: details,
        approval: Some("urn:aims:approval:1".into()),
        time: 1,
        source_ip: Some("10.1.2.3".parse().unwrap()),
        risk: vec!["credential-change".into()],
        method: Some("POST".into()),
        path: Some("/x".into()),
    };
    let principals = [
        agent("spiffe://aims.test/agent/a"),
        Principal::Workload {
            client_id: "c".into(),
        },
        Principal::User { id: "alice".into() },
    ];
    let targets = [
        Target::Tool {
            name: "t".into(),
            required_scopes: vec!["s".into()],
        },
        Target::McpTool {
            server: "m".into(),
            name: "n".into(),
            required_scopes: vec![],
            arguments: json!({"a": 1, "b": "x", "c": {"d": true}})
                .as_object()
                .unwrap()
                .clone(),
        },
        Target::Resource {
            uri: "https://r".into(),
        },
    ];
    // A policy that permits everything: only requests the schema admits may be allowed.
    let permissive = Pdp::new(&PolicyDocument::new(
        1,
        r#"@id("all") permit(principal, action, resource);"#,
    ))
    .unwrap();
    let mut fitting = 0;
    for p in &principals {
        for action in [Action::Call, Action::CallTool, Action::ObtainToken] {
            for target in &targets {
                for facts in [Facts::default(), full.clone()] {
                    let q = Query {
                        principal: p.clone(),
                        action,
                        target: target.clone(),
                        facts,
                    };
                    let fits = pdp.check_against_schema(&q).is_ok();
                    assert_eq!(permissive.decide(&q).allowed, fits, "{q:?}");
                    fitting += usize::from(fits);
                }
            }
        }
    }
    // Tool calls and MCP calls for all three principals, tokens for agents and workloads.
    assert_eq!(fitting, 2 * (3 + 3 + 2));
}

/// A small application beside the AIMS schema (issue 19: AuthZEN requests of other
/// applications).
const DOCS_SCHEMA: &str = r#"namespace Docs {
  entity person { roles?: Set<String> };
  entity doc { owner?: String };
  action read appliesTo { principal: [person], resource: [doc] };
}"#;
const DOCS_ENTITIES: &str = r#"[{"uid": {"type": "Docs::person", "id": "ann"}, "attrs": {"roles": ["reader"]}, "parents": []}]"#;
const DOCS_POLICY: &str = r#"@id("docs-readers")
permit (principal, action == Docs::Action::"read", resource)
when { principal has roles && principal.roles.contains("reader") };"#;

fn docs(schema: &str, entities: &str) -> PolicyDocument {
    PolicyDocument::with_application(
        2,
        format!("{DEFAULT_POLICY}\n{DOCS_POLICY}"),
        Some(aims_policy::Application {
            schema: schema.into(),
            entities: entities.into(),
        }),
    )
}

#[test]
fn an_application_decides_its_own_actions_from_its_entities() {
    let pdp = default_pdp();
    pdp.install(&docs(DOCS_SCHEMA, DOCS_ENTITIES)).unwrap();
    let ask = |who: &str, props: serde_json::Value| {
        let req: EvaluationRequest = serde_json::from_value(json!({
            "subject": {"type": "person", "id": who, "properties": props},
            "action": {"name": "read"},
            "resource": {"type": "doc", "id": "d1"}
        }))
        .unwrap();
        authzen::evaluate(&pdp, &req, 0).unwrap()
    };
    let d = ask("ann", json!({}));
    assert!(d.decision, "{d:?}");
    assert_eq!(
        d.context.as_ref().unwrap()["policies"],
        json!(["docs-readers"])
    );
    // Someone the entities do not hold has the attributes the PEP gives (a PEP's PIP), and none
    // by default.
    assert!(!ask("bob", json!({})).decision);
    assert!(ask("bob", json!({"roles": ["reader"]})).decision);
    // Someone they hold keeps their stored attributes.
    assert!(ask("ann", json!({"roles": []})).decision);
}

#[test]
fn an_application_that_would_bend_the_aims_schema_or_not_fit_its_own_is_refused() {
    let pdp = default_pdp();
    let refused = |doc: PolicyDocument| pdp.install(&doc).unwrap_err().to_string();
    // The Aims namespace is AIMS's own.
    let e = refused(docs(
        &format!("{DOCS_SCHEMA}\nnamespace Aims {{ entity Extra; }}"),
        DOCS_ENTITIES,
    ));
    assert!(e.contains("Aims namespace"), "{e}");
    // An action named like an AIMS action would be ambiguous as an AuthZEN action.name.
    let e = refused(docs(
        &DOCS_SCHEMA.replace("action read", "action call"),
        DOCS_ENTITIES,
    ));
    assert!(e.contains("AIMS action"), "{e}");
    // Two namespaces declaring one action name.
    let e = refused(docs(
        &format!(
            "{DOCS_SCHEMA}\nnamespace Wiki {{ entity page; action read appliesTo {{ principal: [page], resource: [page] }}; }}"
        ),
        DOCS_ENTITIES,
    ));
    assert!(e.contains("share a name"), "{e}");
    // Entities that do not fit the schema, and schema text that does not parse.
    let e = refused(docs(
        DOCS_SCHEMA,
        &DOCS_ENTITIES.replace(r#"["reader"]"#, r#""reader""#),
    ));
    assert!(e.contains("entities"), "{e}");
    let e = refused(docs("namespace Docs {", DOCS_ENTITIES));
    assert!(e.contains("does not parse"), "{e}");
    // Policies about the application without it: the AIMS schema alone does not know Docs.
    assert!(
        pdp.install(&PolicyDocument::new(
            2,
            format!("{DEFAULT_POLICY}\n{DOCS_POLICY}")
        ))
        .is_err()
    );
    // Nothing went in force.
    assert_eq!(pdp.current().version, 1);
}

#[test]
fn a_document_hash_covers_its_application() {
    let a = docs(DOCS_SCHEMA, DOCS_ENTITIES);
    let b = docs(DOCS_SCHEMA, "[]");
    assert_ne!(a.hash, b.hash);
    // Without one, the hash is the text's, as it was before applications.
    let plain = PolicyDocument::new(1, DEFAULT_POLICY);
    assert_eq!(
        plain.hash,
        aims_policy::policy_set::content_hash(DEFAULT_POLICY, None)
    );
    let pdp = default_pdp();
    let old = pdp.current();
    let new = pdp.compile(&b).unwrap();
    let diff = PolicyDiff::between(&old, &new);
    assert!(diff.application_schema_changed && diff.application_entities_changed);
    assert_eq!(new.document().application, b.application);
}
