//! Versioned policy sets (AIMS PO-2, PO-3): a content hash and a monotonic version, compiled
//! and validated against the AIMS schema before they can go live, and diffable for review.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use serde::{Deserialize, Serialize};

use crate::PolicyError;
use crate::application::{Application, CompiledApplication};

/// A policy set as stored and shipped: its text, the application it also decides for, its
/// version, its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// Monotonic version (1 for the first set).
    pub version: u64,
    /// `sha256:` and the hex SHA-256 of what it holds (`content_hash`).
    pub hash: String,
    /// The policies, in Cedar syntax.
    pub text: String,
    /// The schema and entities of an application whose enforcement points ask the AuthZEN API,
    /// if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Application>,
}

impl PolicyDocument {
    /// A document for `text` at `version`, with its hash computed.
    pub fn new(version: u64, text: impl Into<String>) -> Self {
        Self::with_application(version, text, None)
    }

    /// A document for `text` and `application` at `version`, with its hash computed.
    pub fn with_application(
        version: u64,
        text: impl Into<String>,
        application: Option<Application>,
    ) -> Self {
        let text = text.into();
        Self {
            version,
            hash: content_hash(&text, application.as_ref()),
            text,
            application,
        }
    }
}

/// The content hash of a policy document: of its text alone when it has no application (the
/// hash every version had before applications), else of the JSON array of text, application
/// schema and entities (unambiguous where a concatenation would not be).
pub fn content_hash(text: &str, application: Option<&Application>) -> String {
    let hashed = match application {
        None => std::borrow::Cow::Borrowed(text),
        Some(app) => {
            std::borrow::Cow::Owned(serde_json::json!([text, app.schema, app.entities]).to_string())
        }
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, hashed.as_bytes());
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

/// A policy set that parsed and validated: ready to decide.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Its version.
    pub version: u64,
    /// Its content hash.
    pub hash: String,
    /// Its text, as written.
    pub text: String,
    pub(crate) set: PolicySet,
    /// Each policy's text by its `@id`.
    policies: BTreeMap<String, String>,
    /// The application it also decides for, as written and compiled.
    application: Option<(Application, CompiledApplication)>,
}

impl CompiledPolicy {
    /// Parses `doc` (every policy named by a unique `@id` annotation; no templates) and
    /// validates it in strict mode against `schema`, joined with its application's schema if it
    /// has one. The hash is recomputed, never trusted.
    pub(crate) fn compile(schema: &Schema, doc: &PolicyDocument) -> Result<Self, PolicyError> {
        let application = doc
            .application
            .as_ref()
            .map(|app| CompiledApplication::compile(app).map(|c| (app.clone(), c)))
            .transpose()?;
        let schema = application.as_ref().map_or(schema, |(_, c)| c.schema());
        let parsed =
            PolicySet::from_str(&doc.text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Parse(
                "templates are not supported: write each policy out".into(),
            ));
        }
        let mut set = PolicySet::new();
        let mut policies = BTreeMap::new();
        for policy in parsed.policies() {
            let Some(id) = policy.annotation("id") else {
                return Err(PolicyError::Parse(format!(
                    "a policy has no @id annotation (every policy needs a unique @id(\"…\")): {}",
                    first_line(&policy.to_string())
                )));
            };
            let id = id.to_owned();
            if policies.contains_key(&id) {
                return Err(PolicyError::Parse(format!(
                    "two policies have @id(\"{id}\")"
                )));
            }
            let renamed = policy.new_id(PolicyId::new(&id));
            policies.insert(id.clone(), renamed.to_string());
            set.add(renamed)
                .map_err(|e| PolicyError::Parse(format!("policy {id}: {e}")))?;
        }
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result
                .validation_errors()
                .map(|e| format!("policy {}: {e}", e.policy_id()))
                .collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        Ok(Self {
            version: doc.version,
            hash: content_hash(&doc.text, doc.application.as_ref()),
            text: doc.text.clone(),
            set,
            policies,
            application,
        })
    }

    /// The document it was compiled from.
    pub fn document(&self) -> PolicyDocument {
        PolicyDocument {
            version: self.version,
            hash: self.hash.clone(),
            text: self.text.clone(),
            application: self.application.as_ref().map(|(app, _)| app.clone()),
        }
    }

    /// The application it also decides for, compiled.
    pub(crate) fn application(&self) -> Option<&CompiledApplication> {
        self.application.as_ref().map(|(_, c)| c)
    }

    /// The ids of its policies, sorted.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// What changes between two policy sets, policy by policy (`@id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiff {
    /// Policies only in the new set: id and text.
    pub added: Vec<(String, String)>,
    /// Policies only in the old set: id and text.
    pub removed: Vec<(String, String)>,
    /// Policies in both whose text differs: id, old text, new text.
    pub changed: Vec<(String, String, String)>,
    /// Whether the application's schema changed (added, removed or edited).
    #[serde(default)]
    pub application_schema_changed: bool,
    /// Whether the application's entities changed.
    #[serde(default)]
    pub application_entities_changed: bool,
}

impl PolicyDiff {
    /// The difference from `old` to `new`.
    pub fn between(old: &CompiledPolicy, new: &CompiledPolicy) -> Self {
        let mut diff = Self::default();
        for (id, text) in &new.policies {
            match old.policies.get(id) {
                None => diff.added.push((id.clone(), text.clone())),
                Some(before) if before != text => {
                    diff.changed
                        .push((id.clone(), before.clone(), text.clone()))
                }
                Some(_) => {}
            }
        }
        for (id, text) in &old.policies {
            if !new.policies.contains_key(id) {
                diff.removed.push((id.clone(), text.clone()));
            }
        }
        let app = |p: &CompiledPolicy| p.application.as_ref().map(|(app, _)| app.clone());
        let (before, after) = (app(old), app(new));
        diff.application_schema_changed =
            before.as_ref().map(|a| &a.schema) != after.as_ref().map(|a| &a.schema);
        diff.application_entities_changed =
            before.as_ref().map(|a| &a.entities) != after.as_ref().map(|a| &a.entities);
        diff
    }

    /// No policy or application changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.application_schema_changed
            && !self.application_entities_changed
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no policy changes");
        }
        if self.application_schema_changed {
            writeln!(f, "the application schema changes")?;
        }
        if self.application_entities_changed {
            writeln!(f, "the application entities change")?;
        }
        let lines = |f: &mut fmt::Formatter<'_>, sign: char, text: &str| -> fmt::Result {
            for line in text.lines() {
                writeln!(f, "{sign} {line}")?;
            }
            Ok(())
        };
        for (id, text) in &self.added {
            writeln!(f, "added {id}:")?;
            lines(f, '+', text)?;
        }
        for (id, text) in &self.removed {
            writeln!(f, "removed {id}:")?;
            lines(f, '-', text)?;
        }
        for (id, old, new) in &self.changed {
            writeln!(f, "changed {id}:")?;
            lines(f, '-', old)?;
            lines(f, '+', new)?;
        }
        Ok(())
    }
}
