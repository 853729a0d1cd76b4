//! The AIMS Cedar schema (AIMS PO-1): principals, resources, actions and the request context.

use cedar_policy::Schema;

use crate::PolicyError;

/// The schema text, in Cedar schema syntax.
pub const SCHEMA_TEXT: &str = include_str!("../cedar/aims.cedarschema");

/// Parses the built-in schema.
pub(crate) fn load() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| PolicyError::Schema(e.to_string()))
}
