//! Applications beside the AIMS schema: what enforcement points of other applications ask the
//! AuthZEN API about (OpenID AuthZEN Authorization API 1.0 §5: their own subject and resource
//! types and action names), decided by the same versioned policy set (AIMS PO-2, PO-3).
//!
//! An application is a Cedar schema in namespaces of its own and the Cedar entities its
//! decisions read (what a PIP would know: users and their roles). Both travel in the policy
//! document, so every replica and gateway decides with the same facts at the same version. An
//! AuthZEN request whose `action.name` is one of the application's actions is read in that
//! action's namespace: `subject.type` and `resource.type` name entity types there, and
//! `properties` become the attributes of an entity the stored entities do not hold. A stored
//! entity is taken as stored: a request cannot add roles to a known user.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, Schema, SchemaFragment,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::query::Action;
use crate::{PolicyError, SCHEMA_TEXT};

/// An application's schema and entities, as written (and hashed) in a policy document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Its Cedar schema (Cedar schema syntax), in namespaces other than `Aims`.
    pub schema: String,
    /// Its entities, in Cedar's JSON entity format (an array; empty for none).
    #[serde(default)]
    pub entities: String,
}

/// The namespace of the AIMS schema, which an application may not extend.
const AIMS_NAMESPACE: &str = "Aims";

/// Entities an application may hold, at most: each decision copies the set it reads.
pub const MAX_ENTITIES: usize = 10_000;

/// An application that parsed and validated: the AIMS schema joined with its own, its
/// entities, and its actions by name.
#[derive(Debug, Clone)]
pub(crate) struct CompiledApplication {
    schema: Schema,
    entities: Entities,
    actions: BTreeMap<String, EntityUid>,
}

impl CompiledApplication {
    /// Joins `app`'s schema to the AIMS schema and parses its entities against the result.
    /// Refuses a schema that extends the `Aims` namespace, two namespaces declaring one action
    /// name, an action named like an AIMS action, and entities that do not fit.
    pub(crate) fn compile(app: &Application) -> Result<Self, PolicyError> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            PolicyError::Invalid(format!("application {what}: {e}"))
        };
        let (aims, _) = SchemaFragment::from_cedarschema_str(SCHEMA_TEXT)
            .map_err(|e| PolicyError::Schema(e.to_string()))?;
        let (own, _) = SchemaFragment::from_cedarschema_str(&app.schema)
            .map_err(|e| invalid("schema does not parse", &e))?;
        if own
            .namespaces()
            .any(|ns| ns.is_some_and(|ns| ns.to_string() == AIMS_NAMESPACE))
        {
            return Err(PolicyError::Invalid(
                "application schema: the Aims namespace is AIMS's own; declare yours in another"
                    .into(),
            ));
        }
        let schema = Schema::from_schema_fragments([aims, own])
            .map_err(|e| invalid("schema does not join the AIMS schema", &e))?;
        let mut actions = BTreeMap::new();
        for uid in schema.actions() {
            if uid.type_name().namespace() == AIMS_NAMESPACE {
                continue;
            }
            let name = uid.id().unescaped().to_owned();
            if Action::parse(&name).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "application schema: action {uid} is named like an AIMS action"
                )));
            }
            if let Some(other) = actions.insert(name, uid.clone()) {
                return Err(PolicyError::Invalid(format!(
                    "application schema: actions {other} and {uid} share a name, so an AuthZEN \
                     action.name could not tell them apart"
                )));
            }
        }
        let entities = if app.entities.trim().is_empty() {
            Entities::empty()
        } else {
            Entities::from_json_str(&app.entities, Some(&schema))
                .map_err(|e| invalid("entities do not fit its schema", &e))?
        };
        if entities.len() > MAX_ENTITIES {
            return Err(PolicyError::Invalid(format!(
                "application entities: {} entities, more than {MAX_ENTITIES}",
                entities.len()
            )));
        }
        Ok(Self {
            schema,
            entities,
            actions,
        })
    }

    /// The AIMS schema joined with the application's: what the policies validate against.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The Cedar request for `query` and the entities it reads, validated against the joined
    /// schema. `None` when the action is not the application's.
    pub(crate) fn request(
        &self,
        query: &AppQuery<'_>,
    ) -> Option<Result<(Request, Entities), PolicyError>> {
        let action = self.actions.get(query.action)?;
        Some(self.build(action, query))
    }

    fn build(
        &self,
        action: &EntityUid,
        query: &AppQuery<'_>,
    ) -> Result<(Request, Entities), PolicyError> {
        let namespace = action.type_name().namespace();
        let request_error = |e: &dyn std::fmt::Display| PolicyError::Request(e.to_string());
        let mut supplied = Vec::with_capacity(2);
        let mut resolve = |entity: &AppEntity<'_>, role: &str| -> Result<EntityUid, PolicyError> {
            let type_name = qualified(&namespace, entity.kind)
                .map_err(|e| PolicyError::Request(format!("{role}.type: {e}")))?;
            let uid = EntityUid::from_type_name_and_id(type_name, EntityId::new(entity.id));
            if self.entities.get(&uid).is_none()
                && !supplied.iter().any(|e: &Entity| e.uid() == uid)
            {
                let value = json!({
                    "uid": {"type": uid.type_name().to_string(), "id": entity.id},
                    "attrs": Value::Object(entity.properties.clone()),
                    "parents": [],
                });
                let built = Entity::from_json_value(value, Some(&self.schema))
                    .map_err(|e| PolicyError::Request(format!("{role}: {e}")))?;
                supplied.push(built);
            }
            Ok(uid)
        };
        let principal = resolve(&query.subject, "subject")?;
        let resource = resolve(&query.resource, "resource")?;
        let context = Context::from_json_value(
            Value::Object(query.context.clone()),
            Some((&self.schema, action)),
        )
        .map_err(|e| PolicyError::Request(format!("context: {e}")))?;
        let request = Request::new(
            principal,
            action.clone(),
            resource,
            context,
            Some(&self.schema),
        )
        .map_err(|e| request_error(&e))?;
        let entities = self
            .entities
            .clone()
            .add_entities(supplied, Some(&self.schema))
            .map_err(|e| request_error(&e))?;
        Ok((request, entities))
    }
}

/// `namespace::kind`, for an AuthZEN type that must be a plain Cedar identifier.
fn qualified(namespace: &str, kind: &str) -> Result<EntityTypeName, String> {
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{kind:?} is not a type of the application"));
    }
    let name = if namespace.is_empty() {
        kind.to_owned()
    } else {
        format!("{namespace}::{kind}")
    };
    EntityTypeName::from_str(&name).map_err(|e| e.to_string())
}

/// A subject or resource of an application's request (AuthZEN §5.1, §5.2).
#[derive(Debug, Clone, Copy)]
pub struct AppEntity<'a> {
    /// Its type: an entity type of the action's namespace.
    pub kind: &'a str,
    /// Its identifier.
    pub id: &'a str,
    /// Its attributes, when the application's entities do not hold it.
    pub properties: &'a Map<String, Value>,
}

/// A request about an application's own types and actions (AuthZEN §6.1).
#[derive(Debug, Clone, Copy)]
pub struct AppQuery<'a> {
    /// Who.
    pub subject: AppEntity<'a>,
    /// An action name of the application.
    pub action: &'a str,
    /// On what.
    pub resource: AppEntity<'a>,
    /// The context, as the action's context type in the application's schema declares it.
    pub context: &'a Map<String, Value>,
}
