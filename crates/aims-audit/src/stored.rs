//! How a record is kept in the store (issue 17: audit records that cost little, AIMS MO-8
//! fields all kept). The log's leaf stays the record's JSON bytes — what is exported, hashed,
//! proven and verified offline; the store keeps a compact form that rebuilds exactly those
//! bytes: a JSON array of the record's fields in declaration order, where the strings records
//! repeat (components' and agents' SPIFFE IDs, the person, resources, actions, policy reasons,
//! posture and risk) are references to a row of the log's shared strings, and the correlation
//! id is left to the row's indexed column. Rows written before this form hold their JSON text,
//! which reads back as it is.
//!
//! A stored form that does not decode (edited in the store, or a shared string removed) reads
//! back as its stored text, which hashes to no certified leaf: verification names the index.

use std::collections::HashMap;

use aims_store::{AuditRow, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::record::{AuditRecord, Outcome, RecordKind};

/// The compact form's version, its array's first element.
const FORMAT: u8 = 1;
/// Longer strings stay in the record: a long one is rarely repeated, and the shared strings'
/// unique index stays small.
pub(crate) const MAX_SHARED: usize = 160;

/// A string of the record: a shared string's id, or the text itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Text {
    Shared(i64),
    Inline(String),
}

/// The compact form, field by field as [`AuditRecord`] declares them (the correlation id
/// aside).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Compact(
    u8,
    i64,
    RecordKind,
    Text,
    Option<Text>,
    Option<Text>,
    Vec<Text>,
    Option<Text>,
    Text,
    Option<Outcome>,
    Option<Text>,
    Option<Text>,
    Vec<Text>,
    Option<String>,
    Option<Text>,
    Option<u64>,
    Option<String>,
);

/// Why a stored record did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Not a record's JSON text nor a compact form of a known version.
    #[error("stored audit record does not parse: {0}")]
    Malformed(String),
    /// It names a shared string the store does not hold.
    #[error("stored audit record names shared string {0}, which is missing")]
    MissingString(i64),
}

/// The strings of `r` the compact form keeps as references (non-empty, at most
/// [`MAX_SHARED`] bytes, no NUL).
pub(crate) fn shared_strings(r: &AuditRecord) -> impl Iterator<Item = &str> {
    [
        &r.agent,
        &r.delegated_subject,
        &r.resource,
        &r.reason,
        &r.posture,
        &r.remediation_cause,
    ]
    .into_iter()
    .filter_map(Option::as_deref)
    .chain([r.source.as_str(), r.action.as_str()])
    .chain(r.chain.iter().map(String::as_str))
    .chain(r.risk.iter().map(String::as_str))
    // PostgreSQL's TEXT holds no NUL: such a string stays inline (JSON-escaped), so one
    // writer's odd record cannot fail the batch it shares with everyone else's.
    .filter(|s| !s.is_empty() && s.len() <= MAX_SHARED && !s.contains('\0'))
}

/// The compact form of `r`, its strings' ids found by `id_of` (those without one stay inline).
pub(crate) fn encode(
    r: &AuditRecord,
    id_of: impl Fn(&str) -> Option<i64>,
) -> Result<String, serde_json::Error> {
    // Every field named: a field added to the record without a place here does not compile.
    let AuditRecord {
        time_ms,
        kind,
        source,
        agent,
        delegated_subject,
        chain,
        resource,
        action,
        decision,
        reason,
        correlation_id: _,
        posture,
        risk,
        approval,
        remediation_cause,
        policy_version,
        issued,
    } = r;
    let text = |s: &String| match id_of(s) {
        Some(id) if s.len() <= MAX_SHARED => Text::Shared(id),
        _ => Text::Inline(s.clone()),
    };
    let compact = Compact(
        FORMAT,
        *time_ms,
        *kind,
        text(source),
        agent.as_ref().map(text),
        delegated_subject.as_ref().map(text),
        chain.iter().map(text).collect(),
        resource.as_ref().map(text),
        text(action),
        *decision,
        reason.as_ref().map(text),
        posture.as_ref().map(text),
        risk.iter().map(text).collect(),
        approval.clone(),
        remediation_cause.as_ref().map(text),
        *policy_version,
        issued.clone(),
    );
    serde_json::to_string(&compact)
}

/// A stored record, parsed but with its shared strings not yet looked up.
#[derive(Debug)]
pub(crate) enum Stored {
    /// JSON text, kept as it is.
    Json(String),
    Compact(Box<Compact>),
}

impl Stored {
    /// Parses what the store holds.
    pub(crate) fn parse(stored: &str) -> Result<Self, DecodeError> {
        if stored.starts_with('{') {
            return Ok(Self::Json(stored.to_owned()));
        }
        let compact: Compact =
            serde_json::from_str(stored).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if compact.0 != FORMAT {
            return Err(DecodeError::Malformed(format!("format {}", compact.0)));
        }
        Ok(Self::Compact(Box::new(compact)))
    }

    /// The shared strings it names.
    pub(crate) fn shared_ids(&self) -> Vec<i64> {
        let Self::Compact(c) = self else {
            return Vec::new();
        };
        [&c.4, &c.5, &c.7, &c.10, &c.11, &c.14]
            .into_iter()
            .flatten()
            .chain([&c.3, &c.8])
            .chain(&c.6)
            .chain(&c.12)
            .filter_map(|t| match t {
                Text::Shared(id) => Some(*id),
                Text::Inline(_) => None,
            })
            .collect()
    }

    /// The record's exact JSON bytes, its shared strings from `strings` and its correlation id
    /// from the row.
    pub(crate) fn json(
        self,
        correlation_id: Option<String>,
        strings: &HashMap<i64, String>,
    ) -> Result<String, DecodeError> {
        let c = match self {
            Self::Json(text) => return Ok(text),
            Self::Compact(c) => *c,
        };
        let text = |t: Text| match t {
            Text::Shared(id) => strings
                .get(&id)
                .cloned()
                .ok_or(DecodeError::MissingString(id)),
            Text::Inline(s) => Ok(s),
        };
        let opt = |t: Option<Text>| t.map(text).transpose();
        let record = AuditRecord {
            time_ms: c.1,
            kind: c.2,
            source: text(c.3)?,
            agent: opt(c.4)?,
            delegated_subject: opt(c.5)?,
            chain: c.6.into_iter().map(text).collect::<Result<_, _>>()?,
            resource: opt(c.7)?,
            action: text(c.8)?,
            decision: c.9,
            reason: opt(c.10)?,
            correlation_id,
            posture: opt(c.11)?,
            risk: c.12.into_iter().map(text).collect::<Result<_, _>>()?,
            approval: c.13,
            remediation_cause: opt(c.14)?,
            policy_version: c.15,
            issued: c.16,
        };
        serde_json::to_string(&record).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// `rows` with their records' JSON rebuilt (the shared strings they name read in one query);
/// a row that does not decode comes with the reason.
pub(crate) async fn rebuild(
    store: &Store,
    rows: Vec<AuditRow>,
) -> Result<Vec<(AuditRow, Result<String, DecodeError>)>, StoreError> {
    let parsed: Vec<Result<Stored, DecodeError>> =
        rows.iter().map(|r| Stored::parse(&r.record)).collect();
    let mut ids: Vec<i64> = parsed
        .iter()
        .flatten()
        .flat_map(Stored::shared_ids)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let strings = if ids.is_empty() {
        HashMap::new()
    } else {
        store.audit_strings(&ids).await?
    };
    Ok(rows
        .into_iter()
        .zip(parsed)
        .map(|(row, stored)| {
            let json = stored.and_then(|s| s.json(row.correlation_id.clone(), &strings));
            (row, json)
        })
        .collect())
}

/// Log entries `from..from + limit`, with their records' exact bytes.
pub async fn read_entries(
    store: &Store,
    from: u64,
    limit: u64,
) -> Result<Vec<crate::LogEntry>, StoreError> {
    let rows = store.audit_rows(from, limit).await?;
    Ok(entries(rebuild(store, rows).await?))
}

/// The entries of one task (AIMS MO-11), in log order, at most `limit`.
pub async fn read_task(
    store: &Store,
    correlation_id: &str,
    limit: u64,
) -> Result<Vec<crate::LogEntry>, StoreError> {
    let rows = store.audit_by_correlation(correlation_id, limit).await?;
    Ok(entries(rebuild(store, rows).await?))
}

/// Entries of rebuilt rows; one that did not decode keeps its stored text, which hashes to no
/// certified leaf (nothing is dropped; verification names it).
fn entries(rows: Vec<(AuditRow, Result<String, DecodeError>)>) -> Vec<crate::LogEntry> {
    rows.into_iter()
        .map(|(row, json)| {
            let record = json.unwrap_or(row.record);
            crate::LogEntry {
                index: row.idx,
                appended_at: row.appended_at,
                leaf_hash: hex::encode(row.leaf_hash),
                certified_hash: row.certified_hash.map(hex::encode),
                record,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn full() -> AuditRecord {
        let mut r = AuditRecord::new(RecordKind::Decision, "call_tool", 1_765_000_000_123);
        r.source = "spiffe://td/aims/gateway".into();
        r.agent = Some("spiffe://td/agent/worker".into());
        r.delegated_subject = Some("alice".into());
        r.chain = vec![
            "spiffe://td/agent/planner".into(),
            "spiffe://td/agent/root".into(),
        ];
        r.resource = Some("weather/get".into());
        r.decision = Some(Outcome::Deny);
        r.reason = Some("policy0".into());
        r.correlation_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.posture = Some("attested".into());
        r.risk = vec!["caep:session-revoked".into()];
        r.approval = Some("ap-1".into());
        r.remediation_cause = Some("\"quoted\" \u{e9}\u{1f600}\n".into());
        r.policy_version = Some(7);
        r.issued = Some("txn_token:abc".into());
        r
    }

    fn interned(r: &AuditRecord) -> (HashMap<String, i64>, HashMap<i64, String>) {
        let ids: HashMap<String, i64> = shared_strings(r)
            .enumerate()
            .map(|(i, s)| (s.to_owned(), i as i64 + 1))
            .collect();
        let back = ids.iter().map(|(s, i)| (*i, s.clone())).collect();
        (ids, back)
    }

    fn round_trip(r: &AuditRecord, ids: &HashMap<String, i64>, back: &HashMap<i64, String>) {
        let stored = encode(r, |s| ids.get(s).copied()).unwrap();
        let parsed = Stored::parse(&stored).unwrap();
        let json = parsed.json(r.correlation_id.clone(), back).unwrap();
        assert_eq!(json, serde_json::to_string(r).unwrap(), "{stored}");
    }

    /// AIMS MO-8: every field comes back, byte for byte, whether its strings are shared, inline
    /// or absent.
    #[test]
    fn the_compact_form_rebuilds_the_exact_json() {
        let r = full();
        let (ids, back) = interned(&r);
        round_trip(&r, &ids, &back);
        round_trip(&r, &HashMap::new(), &HashMap::new());
        round_trip(
            &AuditRecord::new(RecordKind::Remediation, "revoke", -5),
            &ids,
            &back,
        );
        // What the store keeps of a shared-string record is far smaller than its JSON.
        let stored = encode(&r, |s| ids.get(s).copied()).unwrap();
        assert!(!stored.contains("spiffe://"), "{stored}");
        assert!(!stored.contains(r.correlation_id.as_deref().unwrap()));
        assert!(stored.len() * 2 < serde_json::to_string(&r).unwrap().len());
    }

    #[test]
    fn long_strings_stay_inline() {
        let mut r = full();
        r.reason = Some("x".repeat(MAX_SHARED + 1));
        assert!(shared_strings(&r).all(|s| s.len() <= MAX_SHARED));
        // Even if the map offered an id for it, the long string is kept in the record.
        let (mut ids, back) = interned(&r);
        ids.insert("x".repeat(MAX_SHARED + 1), 999);
        assert!(
            encode(&r, |s| ids.get(s).copied())
                .unwrap()
                .contains(&"x".repeat(MAX_SHARED + 1))
        );
        round_trip(&r, &ids, &back);
    }

    #[test]
    fn json_rows_from_before_read_back_as_they_are() {
        let old = r#"{"time_ms":1,"kind":"decision","action":"call"}"#;
        let parsed = Stored::parse(old).unwrap();
        assert!(parsed.shared_ids().is_empty());
        assert_eq!(parsed.json(None, &HashMap::new()).unwrap(), old);
    }

    #[test]
    fn damaged_forms_are_errors_not_panics() {
        let r = full();
        let (ids, back) = interned(&r);
        let stored = encode(&r, |s| ids.get(s).copied()).unwrap();
        for bad in [
            "",
            "[",
            "[2,1,\"decision\",\"s\",null,null,[],null,\"a\",null,null,null,[],null,null,null,null]",
            "[1,1,\"nonsense\",\"s\",null,null,[],null,\"a\",null,null,null,[],null,null,null,null]",
            "[1,1,\"decision\",\"s\"]",
            "[1,1,\"decision\",{},null,null,[],null,\"a\",null,null,null,[],null,null,null,null]",
        ] {
            assert!(
                matches!(Stored::parse(bad), Err(DecodeError::Malformed(_))),
                "{bad}"
            );
        }
        let mut missing = back.clone();
        let gone = ids["spiffe://td/agent/worker"];
        missing.remove(&gone);
        let parsed = Stored::parse(&stored).unwrap();
        assert!(parsed.shared_ids().contains(&gone));
        assert_eq!(
            parsed.json(None, &missing),
            Err(DecodeError::MissingString(gone))
        );
    }
}
