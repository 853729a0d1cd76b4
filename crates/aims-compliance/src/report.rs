//! The compliance report (AIMS CO-1): JSON for machines, and a self-contained HTML page for
//! people in which every finding links to the audit entries that show it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use aims_audit::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::evaluate::{RuleResult, Status, evaluate};
use crate::evidence::Evidence;
use crate::rules::RuleSet;

/// What the report was evaluated over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceSummary {
    /// Audit log entries read.
    pub audit_entries: usize,
    /// The signed checkpoint's tree size and root (hex), if there was one.
    pub checkpoint: Option<(u64, String)>,
    /// Issued-credential records read.
    pub issued_credentials: usize,
    /// Registered OAuth clients.
    pub clients: usize,
}

/// A compliance report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The rule set's declared version.
    pub rules_version: String,
    /// SHA-256 of the rule text.
    pub rules_sha256: String,
    /// When, Unix seconds.
    pub generated_at: i64,
    /// The evidence.
    pub evidence: EvidenceSummary,
    /// Rules passed.
    pub passed: usize,
    /// Rules failed.
    pub failed: usize,
    /// Each rule's result, in rule order.
    pub results: Vec<RuleResult>,
    /// The audit entries findings point at: index and record text.
    pub cited_entries: Vec<(u64, String)>,
}

impl Report {
    /// Evaluates `rules` over `ev` at `now` (Unix seconds).
    pub fn build(rules: &RuleSet, ev: &Evidence, now: i64) -> Self {
        let results = evaluate(rules, ev);
        let cited: BTreeSet<u64> = results
            .iter()
            .flat_map(|r| {
                r.findings
                    .iter()
                    .flat_map(|f| f.audit_indexes.iter().copied())
            })
            .collect();
        let cited_entries = ev
            .entries
            .iter()
            .filter(|(e, _)| cited.contains(&e.index))
            .map(|(e, _)| (e.index, e.record.clone()))
            .collect();
        let checkpoint = ev
            .checkpoint
            .as_deref()
            .and_then(|note| note.split("\n\n").next())
            .and_then(|text| Checkpoint::parse(&format!("{text}\n")).ok())
            .map(|c| (c.size, hex::encode(c.root)));
        let failed = results.iter().filter(|r| r.status == Status::Fail).count();
        Self {
            rules_version: rules.version.clone(),
            rules_sha256: rules.sha256.clone(),
            generated_at: now,
            evidence: EvidenceSummary {
                audit_entries: ev.entries.len(),
                checkpoint,
                issued_credentials: ev.issued.len(),
                clients: ev.clients.len(),
            },
            passed: results.len() - failed,
            failed,
            results,
            cited_entries,
        }
    }

    /// The report as one HTML page.
    pub fn html(&self) -> String {
        let mut h = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>AIMS compliance report</title><style>\
             body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}\
             table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top}\
             .pass{color:#176f2c;font-weight:bold}.fail{color:#b00020;font-weight:bold}\
             pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5rem}\
             </style></head><body>\n",
        );
        let _ = writeln!(h, "<h1>AIMS compliance report</h1>");
        let _ = writeln!(
            h,
            "<p>Rules <code>{}</code> (SHA-256 <code>{}</code>), generated at {} (Unix time). \
             <span class=\"pass\">{} passed</span>, <span class=\"fail\">{} failed</span>.</p>",
            esc(&self.rules_version),
            esc(&self.rules_sha256),
            self.generated_at,
            self.passed,
            self.failed
        );
        let e = &self.evidence;
        let cp = e
            .checkpoint
            .as_ref()
            .map_or("none".to_owned(), |(size, root)| {
                format!("tree size {size}, root <code>{root}</code>")
            });
        let _ = writeln!(
            h,
            "<p>Evidence: {} audit entries (signed checkpoint: {cp}), {} issued credentials, {} OAuth clients.</p>",
            e.audit_entries, e.issued_credentials, e.clients
        );
        h.push_str(
            "<table><tr><th>Rule</th><th>Status</th><th>Checked</th><th>Findings</th></tr>\n",
        );
        for r in &self.results {
            let (class, word) = match r.status {
                Status::Pass => ("pass", "pass"),
                Status::Fail => ("fail", "fail"),
            };
            let _ = write!(
                h,
                "<tr id=\"rule-{}\"><td><b>{}</b><br>{}<br><small>{}</small></td><td class=\"{class}\">{word}</td><td>{}</td><td>",
                esc(&r.id),
                esc(&r.id),
                esc(&r.title),
                esc(&r.check),
                r.evaluated
            );
            if !r.findings.is_empty() {
                h.push_str("<ul>");
                for f in &r.findings {
                    let _ = write!(h, "<li>{}", esc(&f.message));
                    for i in &f.audit_indexes {
                        let _ = write!(h, " <a href=\"#entry-{i}\">entry {i}</a>");
                    }
                    h.push_str("</li>");
                }
                h.push_str("</ul>");
            }
            h.push_str("</td></tr>\n");
        }
        h.push_str("</table>\n");
        if !self.cited_entries.is_empty() {
            h.push_str("<h2>Audit entries cited</h2>\n");
            for (i, record) in &self.cited_entries {
                let _ = writeln!(
                    h,
                    "<h3 id=\"entry-{i}\">Entry {i}</h3><pre>{}</pre>",
                    esc(record)
                );
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// HTML text escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
