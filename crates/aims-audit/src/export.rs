//! The log as it leaves the server: entries with their exact bytes (JSON lines, what `aims audit
//! verify` checks offline) and as OpenTelemetry logs (OTLP/JSON `ExportLogsServiceRequest`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::{AuditRecord, Outcome};

/// One log entry: its index, hashes and the record's exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub index: u64,
    /// When it was appended, Unix milliseconds.
    pub appended_at: i64,
    /// The RFC 9162 leaf hash computed at append time, hex.
    pub leaf_hash: String,
    /// The leaf hash a signed checkpoint covers, hex; absent until one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_hash: Option<String>,
    /// The record's bytes (JSON text), exactly as hashed.
    pub record: String,
}

impl LogEntry {
    /// The record, parsed.
    pub fn parsed(&self) -> Result<AuditRecord, serde_json::Error> {
        serde_json::from_str(&self.record)
    }
}

fn attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The entries as one OTLP/JSON logs request (opentelemetry-proto `ExportLogsServiceRequest`,
/// JSON encoding): one log record per entry, its body the record's JSON, MO-8 fields as
/// `aims.*` attributes, and the correlation id as the trace id when it is a W3C trace id.
pub fn otlp_logs(entries: &[LogEntry], service: &str) -> Value {
    let records: Vec<Value> = entries
        .iter()
        .map(|e| {
            let parsed = e.parsed().ok();
            let mut attrs = vec![
                attr("aims.audit.index", &e.index.to_string()),
                attr("aims.audit.leaf_hash", &e.leaf_hash),
            ];
            let mut time_ms = e.appended_at;
            let mut severity = ("INFO", 9);
            let mut trace_id = None;
            if let Some(r) = &parsed {
                time_ms = r.time_ms;
                let fields = [
                    ("aims.kind", Some(format!("{:?}", r.kind).to_lowercase())),
                    ("aims.source", Some(r.source.clone())),
                    ("aims.agent", r.agent.clone()),
                    ("aims.delegated_subject", r.delegated_subject.clone()),
                    ("aims.resource", r.resource.clone()),
                    ("aims.action", Some(r.action.clone())),
                    (
                        "aims.decision",
                        r.decision.map(|d| format!("{d:?}").to_lowercase()),
                    ),
                    ("aims.correlation_id", r.correlation_id.clone()),
                    ("aims.remediation_cause", r.remediation_cause.clone()),
                    (
                        "aims.policy_version",
                        r.policy_version.map(|v| v.to_string()),
                    ),
                    ("aims.issued", r.issued.clone()),
                ];
                for (k, v) in fields {
                    if let Some(v) = v.filter(|v| !v.is_empty()) {
                        attrs.push(attr(k, &v));
                    }
                }
                if r.decision == Some(Outcome::Deny) {
                    severity = ("WARN", 13);
                }
                trace_id = r
                    .correlation_id
                    .as_deref()
                    .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_ascii_lowercase);
            }
            let nanos = (time_ms.max(0) as u128 * 1_000_000).to_string();
            let mut rec = json!({
                "timeUnixNano": nanos,
                "observedTimeUnixNano": (e.appended_at.max(0) as u128 * 1_000_000).to_string(),
                "severityText": severity.0,
                "severityNumber": severity.1,
                "body": {"stringValue": e.record},
                "attributes": attrs,
            });
            if let Some(t) = trace_id {
                rec["traceId"] = Value::String(t);
            }
            rec
        })
        .collect();
    json!({
        "resourceLogs": [{
            "resource": {"attributes": [attr("service.name", service)]},
            "scopeLogs": [{
                "scope": {"name": "aims.audit"},
                "logRecords": records,
            }],
        }]
    })
}
