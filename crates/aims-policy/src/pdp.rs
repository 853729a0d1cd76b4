//! The policy decision point: the policy set in force, swapped atomically, and decisions that
//! name the version that made them (AIMS PO-3, MO-8).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Decision, Entities, Request, Schema};
use serde::{Deserialize, Serialize};

use crate::application::AppQuery;
use crate::policy_set::{CompiledPolicy, PolicyDocument};
use crate::query::{Names, Query};
use crate::{PolicyError, schema};

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Allowed?
    pub allowed: bool,
    /// The policy version that decided.
    pub policy_version: u64,
    /// The policies that decided (`@id`s): the permits that allowed, or the forbids that
    /// denied; empty when nothing permitted.
    pub policies: Vec<String>,
    /// Evaluation errors. Any error denies: a policy that cannot be evaluated never allows by
    /// being skipped (a `forbid` that errs would otherwise fail open).
    pub errors: Vec<String>,
}

/// The approval reference a step-up check assumes (never one a token carries).
const PENDING_APPROVAL: &str = "(pending approval)";

/// The policy decision point.
pub struct Pdp {
    schema: Schema,
    names: Names,
    authorizer: Authorizer,
    active: ArcSwap<CompiledPolicy>,
    install: Mutex<()>,
}

impl std::fmt::Debug for Pdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.active.load();
        f.debug_struct("Pdp")
            .field("version", &current.version)
            .field("hash", &current.hash)
            .finish_non_exhaustive()
    }
}

impl Pdp {
    /// A decision point with `initial` in force.
    pub fn new(initial: &PolicyDocument) -> Result<Self, PolicyError> {
        let schema = schema::load()?;
        let compiled = CompiledPolicy::compile(&schema, initial)?;
        Ok(Self {
            schema,
            names: Names::new()?,
            authorizer: Authorizer::new(),
            active: ArcSwap::from_pointee(compiled),
            install: Mutex::new(()),
        })
    }

    /// Parses and validates `doc` without installing it.
    pub fn compile(&self, doc: &PolicyDocument) -> Result<CompiledPolicy, PolicyError> {
        CompiledPolicy::compile(&self.schema, doc)
    }

    /// Validates `doc` and puts it in force, atomically: a decision runs wholly on the old set
    /// or wholly on the new one. Refuses a version not newer than the one in force, and leaves
    /// the old set in force on any error.
    pub fn install(&self, doc: &PolicyDocument) -> Result<Arc<CompiledPolicy>, PolicyError> {
        let compiled = Arc::new(self.compile(doc)?);
        let _one_at_a_time = self
            .install
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.active.load();
        if compiled.version <= current.version {
            return Err(PolicyError::Stale {
                offered: compiled.version,
                current: current.version,
            });
        }
        self.active.store(compiled.clone());
        Ok(compiled)
    }

    /// Checks that `query` is a request the schema admits (the decision path trusts the typed
    /// construction instead).
    pub fn check_against_schema(&self, query: &Query) -> Result<(), PolicyError> {
        query.to_cedar(Some(&self.schema), &self.names).map(|_| ())
    }

    /// The policy set in force.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.active.load_full()
    }

    /// Whether `query`, as asked without a person's approval, would be allowed with one (AIMS
    /// AZ-27, AZ-28): the step-up a client can take by asking for approval through CIBA. A
    /// policy asks for approval by permitting only `when { context has approval }`.
    pub fn allowed_with_approval(&self, query: &Query) -> bool {
        if query.facts.approval.is_some() {
            return false;
        }
        let mut with = query.clone();
        with.facts.approval = Some(PENDING_APPROVAL.to_owned());
        self.decide(&with).allowed
    }

    /// Decides `query` with the policy set in force. Fails closed: a request that does not fit
    /// the schema, or any evaluation error, denies.
    pub fn decide(&self, query: &Query) -> Verdict {
        let policy = self.active.load();
        self.authorize(&policy, query.to_cedar(None, &self.names))
    }

    /// Decides a request about the application's own types and actions with the policy set in
    /// force; `None` when its action is not one of the application's (or there is none). Fails
    /// closed like `decide`.
    pub fn decide_application(&self, query: &AppQuery<'_>) -> Option<Verdict> {
        let policy = self.active.load();
        let built = policy.application()?.request(query)?;
        Some(self.authorize(&policy, built))
    }

    fn authorize(
        &self,
        policy: &CompiledPolicy,
        built: Result<(Request, Entities), PolicyError>,
    ) -> Verdict {
        let (request, entities) = match built {
            Ok(r) => r,
            Err(e) => {
                return Verdict {
                    allowed: false,
                    policy_version: policy.version,
                    policies: Vec::new(),
                    errors: vec![e.to_string()],
                };
            }
        };
        let response = self
            .authorizer
            .is_authorized(&request, &policy.set, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        Verdict {
            allowed: response.decision() == Decision::Allow && errors.is_empty(),
            policy_version: policy.version,
            policies: diagnostics.reason().map(ToString::to_string).collect(),
            errors,
        }
    }
}
