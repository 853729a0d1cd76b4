//! A decision request in AIMS terms (AIMS AZ-7, AZ-34, MO-8), and its Cedar form.

use std::net::IpAddr;

use aims_core::SpiffeId;
use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};
use serde_json::Value;

use crate::PolicyError;

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A SPIFFE-identified agent.
    Agent {
        /// Its SPIFFE ID.
        spiffe_id: SpiffeId,
        /// Its posture as last attested (`attested` when it holds an SVID).
        posture: String,
    },
    /// A client that is not SPIFFE-identified.
    Workload {
        /// Its OAuth client_id.
        client_id: String,
    },
    /// A person (a user token without an actor).
    User {
        /// The subject.
        id: String,
    },
}

impl Principal {
    /// An agent that holds a valid SVID.
    pub fn agent(spiffe_id: SpiffeId) -> Self {
        Self::Agent {
            spiffe_id,
            posture: "attested".into(),
        }
    }

    /// The principal's identifier (SPIFFE ID, client_id or subject).
    pub fn id(&self) -> &str {
        match self {
            Self::Agent { spiffe_id, .. } => spiffe_id.as_str(),
            Self::Workload { client_id } => client_id,
            Self::User { id } => id,
        }
    }
}

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// An HTTP call to a tool.
    Call,
    /// An MCP `tools/call`.
    CallTool,
    /// An access token from the authorization server.
    ObtainToken,
}

impl Action {
    /// The Cedar action name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::CallTool => "call_tool",
            Self::ObtainToken => "obtain_token",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Call, Self::CallTool, Self::ObtainToken]
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// On what.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An HTTP tool (a gateway route).
    Tool {
        /// The route's tool name.
        name: String,
        /// Scopes a token needs for it.
        required_scopes: Vec<String>,
    },
    /// A tool of an MCP server.
    McpTool {
        /// The MCP server (the gateway route's name).
        server: String,
        /// The tool's name.
        name: String,
        /// Scopes a token needs for it.
        required_scopes: Vec<String>,
        /// The `tools/call` arguments (empty when listing).
        arguments: serde_json::Map<String, Value>,
    },
    /// A resource (audience) an access token is asked for.
    Resource {
        /// Its URI.
        uri: String,
    },
}

/// An RFC 9396 authorization detail, as policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// `type`.
    pub kind: String,
    /// `actions`.
    pub actions: Vec<String>,
    /// `locations`.
    pub locations: Vec<String>,
}

impl Detail {
    /// The details of an `authorization_details` array (other members are not policy inputs).
    pub fn from_json(details: &Value) -> Vec<Self> {
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        details
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|d| Self {
                        kind: d
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        actions: strings(d.get("actions")),
                        locations: strings(d.get("locations")),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The facts of the request (the Cedar context).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The person the principal acts for.
    pub delegated_subject: Option<String>,
    /// The delegation chain's actors (RFC 8693 `act`), current first.
    pub chain: Vec<String>,
    /// Scopes the token grants.
    pub scopes: Vec<String>,
    /// Authorization details the token grants.
    pub authorization_details: Vec<Detail>,
    /// A person's approval reference.
    pub approval: Option<String>,
    /// Unix seconds.
    pub time: i64,
    /// The caller's address.
    pub source_ip: Option<IpAddr>,
    /// Risk signals in force for the principal.
    pub risk: Vec<String>,
    /// HTTP method, at a gateway.
    pub method: Option<String>,
    /// HTTP path, at a gateway.
    pub path: Option<String>,
}

/// A decision request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Who.
    pub principal: Principal,
    /// Does what.
    pub action: Action,
    /// On what.
    pub target: Target,
    /// Knowing what.
    pub facts: Facts,
}

/// The schema's entity type names and actions, parsed once (parsing a name runs Cedar's
/// parser, which costs more than a whole decision).
#[derive(Debug)]
pub(crate) struct Names {
    agent: EntityTypeName,
    workload: EntityTypeName,
    user: EntityTypeName,
    trust_domain: EntityTypeName,
    tool: EntityTypeName,
    mcp_server: EntityTypeName,
    mcp_tool: EntityTypeName,
    resource: EntityTypeName,
    actions: [EntityUid; 3],
    /// `ipaddr` values by address: cedar-policy parses the name `ip` on every
    /// `RestrictedExpression::new_ip`, so each address is built once (bounded).
    ips: std::sync::Mutex<std::collections::HashMap<IpAddr, RestrictedExpression>>,
}

/// Addresses whose `ipaddr` value is kept, at most.
const IP_CACHE: usize = 4096;

impl Names {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let name = |n: &str| {
            n.parse::<EntityTypeName>()
                .map_err(|e| PolicyError::Schema(e.to_string()))
        };
        let action = name("Aims::Action")?;
        let act =
            |a: Action| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str()));
        Ok(Self {
            agent: name("Aims::Agent")?,
            workload: name("Aims::Workload")?,
            user: name("Aims::User")?,
            trust_domain: name("Aims::TrustDomain")?,
            tool: name("Aims::Tool")?,
            mcp_server: name("Aims::McpServer")?,
            mcp_tool: name("Aims::McpTool")?,
            resource: name("Aims::Resource")?,
            actions: [
                act(Action::Call),
                act(Action::CallTool),
                act(Action::ObtainToken),
            ],
            ips: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn ip(&self, ip: IpAddr) -> RestrictedExpression {
        let mut ips = self
            .ips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = ips.get(&ip) {
            return e.clone();
        }
        if ips.len() >= IP_CACHE {
            ips.clear();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        ips.insert(ip, e.clone());
        e
    }

    fn action(&self, a: Action) -> EntityUid {
        let i = match a {
            Action::Call => 0,
            Action::CallTool => 1,
            Action::ObtainToken => 2,
        };
        self.actions[i].clone()
    }
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().map(|v| string(v)))
}

fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    parents: Vec<EntityUid>,
    tags: Vec<(String, RestrictedExpression)>,
) -> Result<Entity, PolicyError> {
    Entity::new_with_tags(
        uid,
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)),
        parents,
        tags,
    )
    .map_err(|e| PolicyError::Request(e.to_string()))
}

/// A `tools/call` argument as a tag value: strings as they are, anything else as JSON text.
fn tag_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Query {
    /// The Cedar request and the entities it refers to. Both are built here from typed values,
    /// so they match the schema by construction; `schema` checks that (the tests pass it; the
    /// decision path does not pay for it on every request).
    pub(crate) fn to_cedar(
        &self,
        schema: Option<&Schema>,
        names: &Names,
    ) -> Result<(Request, Entities), PolicyError> {
        // The schema's `appliesTo`, checked here on every request: a policy validated for the
        // schema says nothing about requests outside it (a `permit` on `obtain_token` would
        // otherwise admit a User).
        let applies = match (&self.principal, self.action, &self.target) {
            (_, Action::Call, Target::Tool { .. })
            | (_, Action::CallTool, Target::McpTool { .. }) => true,
            (Principal::User { .. }, Action::ObtainToken, _) => false,
            (_, Action::ObtainToken, Target::Resource { .. }) => true,
            _ => false,
        };
        if !applies {
            return Err(PolicyError::Request(format!(
                "action {} does not apply to this principal and resource",
                self.action.as_str()
            )));
        }
        let mut entities = Vec::with_capacity(4);
        let principal = match &self.principal {
            Principal::Agent { spiffe_id, posture } => {
                let td = uid(&names.trust_domain, spiffe_id.trust_domain_name());
                let me = uid(&names.agent, spiffe_id.as_str());
                entities.push(entity(
                    me.clone(),
                    vec![
                        ("spiffe_id", string(spiffe_id.as_str())),
                        ("trust_domain", string(spiffe_id.trust_domain_name())),
                        ("path", string(spiffe_id.path())),
                        ("posture", string(posture)),
                    ],
                    vec![td.clone()],
                    vec![],
                )?);
                entities.push(entity(td, vec![], vec![], vec![])?);
                me
            }
            Principal::Workload { client_id } => {
                let me = uid(&names.workload, client_id);
                entities.push(entity(
                    me.clone(),
                    vec![("client_id", string(client_id))],
                    vec![],
                    vec![],
                )?);
                me
            }
            Principal::User { id } => {
                let me = uid(&names.user, id);
                entities.push(entity(me.clone(), vec![], vec![], vec![])?);
                me
            }
        };
        let resource = match &self.target {
            Target::Tool {
                name,
                required_scopes,
            } => {
                let me = uid(&names.tool, name);
                entities.push(entity(
                    me.clone(),
                    vec![
                        ("name", string(name)),
                        ("required_scopes", strings(required_scopes)),
                    ],
                    vec![],
                    vec![],
                )?);
                me
            }
            Target::McpTool {
                server,
                name,
                required_scopes,
                arguments,
            } => {
                let parent = uid(&names.mcp_server, server);
                let me = uid(&names.mcp_tool, &format!("{server}/{name}"));
                entities.push(entity(
                    me.clone(),
                    vec![
                        ("name", string(name)),
                        ("server", string(server)),
                        ("required_scopes", strings(required_scopes)),
                    ],
                    vec![parent.clone()],
                    arguments
                        .iter()
                        .map(|(k, v)| (k.clone(), string(&tag_value(v))))
                        .collect(),
                )?);
                entities.push(entity(parent, vec![], vec![], vec![])?);
                me
            }
            Target::Resource { uri } => {
                let me = uid(&names.resource, uri);
                entities.push(entity(
                    me.clone(),
                    vec![("uri", string(uri))],
                    vec![],
                    vec![],
                )?);
                me
            }
        };
        let action = names.action(self.action);
        let context = self.facts.to_context(names)?;
        let request = Request::new(principal, action, resource, context, schema)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let entities = Entities::from_entities(entities, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok((request, entities))
    }
}

impl Facts {
    fn to_context(&self, names: &Names) -> Result<Context, PolicyError> {
        let f = self;
        let details = f
            .authorization_details
            .iter()
            .map(|d| {
                RestrictedExpression::new_record([
                    ("type".to_owned(), string(&d.kind)),
                    ("actions".to_owned(), strings(&d.actions)),
                    ("locations".to_owned(), strings(&d.locations)),
                ])
                .map_err(|e| PolicyError::Request(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let depth = i64::try_from(f.chain.len()).unwrap_or(i64::MAX);
        let mut pairs = vec![
            ("chain".to_owned(), strings(&f.chain)),
            (
                "chain_depth".to_owned(),
                RestrictedExpression::new_long(depth),
            ),
            ("scopes".to_owned(), strings(&f.scopes)),
            (
                "authorization_details".to_owned(),
                RestrictedExpression::new_set(details),
            ),
            ("time".to_owned(), RestrictedExpression::new_long(f.time)),
            ("risk".to_owned(), strings(&f.risk)),
        ];
        let optional = [
            (
                "delegated_subject",
                f.delegated_subject.as_deref().map(string),
            ),
            ("approval", f.approval.as_deref().map(string)),
            ("source_ip", f.source_ip.map(|ip| names.ip(ip))),
            ("method", f.method.as_deref().map(string)),
            ("path", f.path.as_deref().map(string)),
        ];
        pairs.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
        );
        Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))
    }
}
