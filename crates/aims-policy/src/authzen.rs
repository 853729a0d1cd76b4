//! The OpenID AuthZEN Authorization API 1.0 (final, 2026-01-11): the evaluation (§6) and
//! evaluations (§7) APIs and the PDP metadata (§9), mapped onto the AIMS schema.
//!
//! Subjects: `agent` (id = SPIFFE ID; property `posture`), `workload` (id = client_id), `user`.
//! Resources: `tool` (property `required_scopes`), `mcp_tool` (id `server/name`; properties
//! `required_scopes`, `arguments`), `resource` (id = URI). Actions: the AIMS action names.
//! Context members: those of the schema's `RequestContext` (`scopes` as an array or a
//! space-separated string; `authorization_details` as RFC 9396 objects; `time` defaults to now).
//!
//! A request naming an action of the policy document's application is read in that
//! application's schema instead (`crate::application`).

use aims_core::SpiffeId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::application::{AppEntity, AppQuery};
use crate::pdp::{Pdp, Verdict};
use crate::query::{Action, Detail, Facts, Principal, Query, Target};

/// The metadata path (§9.2).
pub const METADATA_PATH: &str = "/.well-known/authzen-configuration";
/// The evaluation path (§10.1).
pub const EVALUATION_PATH: &str = "/access/v1/evaluation";
/// The evaluations path (§10.1).
pub const EVALUATIONS_PATH: &str = "/access/v1/evaluations";

/// The PDP metadata document (§9.1) for a PDP identified by `pdp` (an https URL without a
/// trailing slash; §9.2.3: it must equal the URL the document is fetched under).
pub fn metadata(pdp: &str) -> Value {
    json!({
        "policy_decision_point": pdp,
        "access_evaluation_endpoint": format!("{pdp}{EVALUATION_PATH}"),
        "access_evaluations_endpoint": format!("{pdp}{EVALUATIONS_PATH}"),
    })
}

/// A subject or a resource (§5.1, §5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityRef {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its identifier.
    pub id: String,
    /// More about it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// An action (§5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRef {
    /// Its name.
    pub name: String,
    /// More about it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// An evaluation request (§6.1); in a batch every member may come from the defaults. An empty
/// object (`"resource": {}`, as PEPs send for a default they leave to the items) is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// The subject.
    #[serde(
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject: Option<EntityRef>,
    /// The action.
    #[serde(
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub action: Option<ActionRef>,
    /// The resource.
    #[serde(
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource: Option<EntityRef>,
    /// The context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// `null` or `{}` as absent; any other value as a `T`.
fn empty_is_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Value::Object(map)) if map.is_empty() => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// How a batch is evaluated (§7.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Every item (the default).
    #[default]
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

/// Batch options (§7.1.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// The semantic.
    #[serde(default)]
    pub evaluations_semantic: Semantic,
}

/// An evaluations request (§7.1): defaults and items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    /// Defaults for every item.
    #[serde(flatten)]
    pub defaults: EvaluationRequest,
    /// The items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<Vec<EvaluationRequest>>,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
}

/// A decision (§5.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionResponse {
    /// Allowed?
    pub decision: bool,
    /// Why: the policy version and the deciding policies, or an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

/// An evaluations response (§7.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsResponse {
    /// One decision per evaluated item, in order.
    pub evaluations: Vec<DecisionResponse>,
}

/// A request the PDP cannot evaluate (HTTP 400, §10.1.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Evaluates one request (§6): about an action of the application if it names one, else
/// about AIMS's own.
pub fn evaluate(
    pdp: &Pdp,
    request: &EvaluationRequest,
    now: i64,
) -> Result<DecisionResponse, BadRequest> {
    let (subject, action, resource) = parts(request)?;
    let empty = Map::new();
    let app = AppQuery {
        subject: app_entity(subject),
        action: &action.name,
        resource: app_entity(resource),
        context: request.context.as_ref().unwrap_or(&empty),
    };
    if let Some(verdict) = pdp.decide_application(&app) {
        return Ok(from_verdict(&verdict));
    }
    let query = to_query(request, now)?;
    Ok(from_verdict(&pdp.decide(&query)))
}

fn app_entity(entity: &EntityRef) -> AppEntity<'_> {
    AppEntity {
        kind: &entity.kind,
        id: &entity.id,
        properties: &entity.properties,
    }
}

/// The subject, action and resource every evaluation needs (§6.1).
fn parts(request: &EvaluationRequest) -> Result<(&EntityRef, &ActionRef, &EntityRef), BadRequest> {
    Ok((
        request
            .subject
            .as_ref()
            .ok_or_else(|| bad("subject is required"))?,
        request
            .action
            .as_ref()
            .ok_or_else(|| bad("action is required"))?,
        request
            .resource
            .as_ref()
            .ok_or_else(|| bad("resource is required"))?,
    ))
}

/// Evaluates a batch (§7): without items, the defaults are one request.
pub fn evaluate_batch(
    pdp: &Pdp,
    request: &EvaluationsRequest,
    now: i64,
) -> Result<EvaluationsResponse, BadRequest> {
    let items = match &request.evaluations {
        Some(items) if !items.is_empty() => items,
        _ => {
            return Ok(EvaluationsResponse {
                evaluations: vec![evaluate(pdp, &request.defaults, now)?],
            });
        }
    };
    let semantic = request
        .options
        .as_ref()
        .map(|o| o.evaluations_semantic)
        .unwrap_or_default();
    let mut evaluations = Vec::with_capacity(items.len());
    for item in items {
        let merged = EvaluationRequest {
            subject: item
                .subject
                .clone()
                .or_else(|| request.defaults.subject.clone()),
            action: item
                .action
                .clone()
                .or_else(|| request.defaults.action.clone()),
            resource: item
                .resource
                .clone()
                .or_else(|| request.defaults.resource.clone()),
            context: item
                .context
                .clone()
                .or_else(|| request.defaults.context.clone()),
        };
        // §7.2.1: an item that cannot be evaluated is a deny with its error, not a failed batch.
        let decision = match evaluate(pdp, &merged, now) {
            Ok(decision) => decision,
            Err(BadRequest(message)) => DecisionResponse {
                decision: false,
                context: Some(json!({"error": {"status": 400, "message": message}})),
            },
        };
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !decision.decision,
            Semantic::PermitOnFirstPermit => decision.decision,
        };
        evaluations.push(decision);
        if stop {
            break;
        }
    }
    Ok(EvaluationsResponse { evaluations })
}

fn from_verdict(verdict: &Verdict) -> DecisionResponse {
    let mut context = json!({
        "policy_version": verdict.policy_version,
        "policies": verdict.policies,
    });
    if !verdict.errors.is_empty() {
        context["errors"] = json!(verdict.errors);
    }
    DecisionResponse {
        decision: verdict.allowed,
        context: Some(context),
    }
}

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

fn str_prop<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    props.get(key).and_then(Value::as_str)
}

fn str_list(value: Option<&Value>, what: &str) -> Result<Vec<String>, BadRequest> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{what}: every member must be a string")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{what}: expected an array of strings"))),
    }
}

fn to_query(request: &EvaluationRequest, now: i64) -> Result<Query, BadRequest> {
    let (subject, action, resource) = parts(request)?;
    let principal = match subject.kind.as_str() {
        "agent" => {
            let spiffe_id = SpiffeId::parse(&subject.id)
                .map_err(|e| bad(format!("subject.id of an agent is a SPIFFE ID: {e}")))?;
            Principal::Agent {
                spiffe_id,
                posture: str_prop(&subject.properties, "posture")
                    .unwrap_or("attested")
                    .to_owned(),
            }
        }
        "workload" => Principal::Workload {
            client_id: subject.id.clone(),
        },
        "user" => Principal::User {
            id: subject.id.clone(),
        },
        other => {
            return Err(bad(format!(
                "subject.type {other:?} is not one of agent, workload, user"
            )));
        }
    };
    let action = Action::parse(&action.name).ok_or_else(|| {
        bad(format!(
            "action.name {:?} is not one of call, call_tool, obtain_token, nor an action of the \
             policy's application",
            action.name
        ))
    })?;
    let props = &resource.properties;
    let required = || {
        str_list(
            props.get("required_scopes"),
            "resource.properties.required_scopes",
        )
    };
    let target = match resource.kind.as_str() {
        "tool" => Target::Tool {
            name: resource.id.clone(),
            required_scopes: required()?,
        },
        "mcp_tool" => {
            let (server, name) = resource
                .id
                .split_once('/')
                .ok_or_else(|| bad("resource.id of an mcp_tool is server/name"))?;
            let arguments = match props.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(map)) => map.clone(),
                Some(_) => return Err(bad("resource.properties.arguments must be an object")),
            };
            Target::McpTool {
                server: server.to_owned(),
                name: name.to_owned(),
                required_scopes: required()?,
                arguments,
            }
        }
        "resource" => Target::Resource {
            uri: resource.id.clone(),
        },
        other => {
            return Err(bad(format!(
                "resource.type {other:?} is not one of tool, mcp_tool, resource"
            )));
        }
    };
    let empty = Map::new();
    let ctx = request.context.as_ref().unwrap_or(&empty);
    let source_ip = str_prop(ctx, "source_ip")
        .map(|s| {
            s.parse()
                .map_err(|_| bad("context.source_ip is not an IP address"))
        })
        .transpose()?;
    let facts = Facts {
        delegated_subject: str_prop(ctx, "delegated_subject").map(str::to_owned),
        chain: str_list(ctx.get("chain"), "context.chain")?,
        scopes: str_list(ctx.get("scopes"), "context.scopes")?,
        authorization_details: ctx
            .get("authorization_details")
            .map(Detail::from_json)
            .unwrap_or_default(),
        approval: str_prop(ctx, "approval").map(str::to_owned),
        time: ctx.get("time").and_then(Value::as_i64).unwrap_or(now),
        source_ip,
        risk: str_list(ctx.get("risk"), "context.risk")?,
        method: str_prop(ctx, "method").map(str::to_owned),
        path: str_prop(ctx, "path").map(str::to_owned),
    };
    Ok(Query {
        principal,
        action,
        target,
        facts,
    })
}
