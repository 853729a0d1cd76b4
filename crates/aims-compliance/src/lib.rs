//! # aims-compliance
//!
//! Compliance assessed from recorded evidence against versioned policy (AIMS §13, CO-1): a
//! [`RuleSet`] (TOML, versioned, hashed) of checks — credential lifetimes, no shared client
//! secrets, every tool call decided, high-risk actions approved, revocations enforced in time,
//! the audit log consistent — evaluated over the [`Evidence`] the store holds into a
//! [`Report`] (JSON, and HTML whose findings link to the audit entries that show them).
#![forbid(unsafe_code)]

mod evaluate;
mod evidence;
mod report;
mod rules;

pub use evaluate::{Finding, RuleResult, Status, evaluate};
pub use evidence::Evidence;
pub use report::{EvidenceSummary, Report};
pub use rules::{Check, DEFAULT_RULES, Rule, RuleSet, RulesError};
