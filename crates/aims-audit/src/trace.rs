//! An agent task's execution chain rebuilt from its records (AIMS MO-11): who acted for whom,
//! through which hops, on what, with which outcome — a tree from the delegating person down
//! the chain of agents to each call.

use std::fmt::Write as _;

use crate::export::LogEntry;
use crate::record::AuditRecord;

#[derive(Debug, Default)]
struct Node {
    name: String,
    events: Vec<(u64, AuditRecord)>,
    children: Vec<Node>,
}

impl Node {
    fn child(&mut self, name: &str) -> &mut Node {
        let at = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.children.push(Node {
                    name: name.to_owned(),
                    ..Node::default()
                });
                self.children.len() - 1
            }
        };
        &mut self.children[at]
    }

    fn render(&self, prefix: &str, out: &mut String) {
        let items = self.events.len() + self.children.len();
        let mut k = 0;
        for (index, r) in &self.events {
            k += 1;
            let (branch, _) = branch(k == items);
            let _ = writeln!(out, "{prefix}{branch}{}", describe(*index, r));
        }
        for c in &self.children {
            k += 1;
            let (branch, next) = branch(k == items);
            let _ = writeln!(out, "{prefix}{branch}{}", c.name);
            c.render(&format!("{prefix}{next}"), out);
        }
    }
}

fn branch(last: bool) -> (&'static str, &'static str) {
    if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    }
}

fn describe(index: u64, r: &AuditRecord) -> String {
    let mut s = format!("[{index}] {} {:?}", time(r.time_ms), r.kind).to_lowercase();
    let _ = write!(s, " {}", r.action);
    if let Some(res) = &r.resource {
        let _ = write!(s, " {res}");
    }
    if let Some(d) = r.decision {
        let _ = write!(s, " → {}", format!("{d:?}").to_lowercase());
    }
    if let Some(v) = r.policy_version {
        let _ = write!(s, " (policy v{v})");
    }
    if let Some(a) = &r.approval {
        let _ = write!(s, " approval={a}");
    }
    if let Some(c) = &r.remediation_cause {
        let _ = write!(s, " cause={c}");
    }
    if !r.risk.is_empty() {
        let _ = write!(s, " risk={}", r.risk.join(","));
    }
    if !r.source.is_empty() {
        let _ = write!(s, "  by {}", r.source);
    }
    s
}

/// `HH:MM:SS.mmm` (UTC) of Unix milliseconds.
fn time(ms: i64) -> String {
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// Renders the execution chain of the task `correlation_id` from its entries (in log order):
/// the delegated subject at the root, then each actor of the delegation chain (outermost
/// first) down to the acting agent, its records beneath it. Entries that do not parse are
/// listed as such.
pub fn render_trace(correlation_id: &str, entries: &[LogEntry]) -> String {
    let mut root = Node::default();
    let mut unreadable = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for e in entries {
        let Ok(r) = e.parsed() else {
            unreadable.push(e.index);
            continue;
        };
        first = first.min(r.time_ms);
        last = last.max(r.time_ms);
        let mut path: Vec<String> = Vec::new();
        if let Some(s) = &r.delegated_subject {
            path.push(format!("for {s}"));
        }
        let agent = r.agent.clone().unwrap_or_else(|| "(no agent)".into());
        // The chain lists actors current first; the tree reads outermost first.
        for actor in r.chain.iter().rev() {
            if *actor != agent && !path.contains(actor) {
                path.push(actor.clone());
            }
        }
        path.push(agent);
        let mut node = &mut root;
        for p in &path {
            node = node.child(p);
        }
        node.events.push((e.index, r));
    }
    let mut out = format!("task {correlation_id}: {} records", entries.len());
    if first <= last {
        let _ = write!(
            out,
            ", {} → {} UTC ({} ms)",
            time(first),
            time(last),
            last - first
        );
    }
    out.push('\n');
    root.render("", &mut out);
    for i in unreadable {
        let _ = writeln!(out, "[{i}] (record does not parse)");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::{Outcome, RecordKind};

    fn entry(index: u64, r: &AuditRecord) -> LogEntry {
        LogEntry {
            index,
            appended_at: r.time_ms,
            leaf_hash: String::new(),
            certified_hash: None,
            record: serde_json::to_string(r).unwrap(),
        }
    }

    #[test]
    fn a_delegated_chain_renders_as_a_tree() {
        let mut a = AuditRecord::new(RecordKind::Decision, "obtain_token", 1_000);
        a.agent = Some("spiffe://td/agent/planner".into());
        a.delegated_subject = Some("alice".into());
        a.resource = Some("https://tool".into());
        a.decision = Some(Outcome::Allow);
        a.policy_version = Some(3);
        let mut b = AuditRecord::new(RecordKind::Decision, "call_tool", 1_250);
        b.agent = Some("spiffe://td/agent/worker".into());
        b.delegated_subject = Some("alice".into());
        b.chain = vec!["spiffe://td/agent/planner".into()];
        b.resource = Some("weather/get".into());
        b.decision = Some(Outcome::Deny);
        let out = render_trace("t1", &[entry(0, &a), entry(4, &b)]);
        assert_eq!(
            out,
            "task t1: 2 records, 00:00:01.000 → 00:00:01.250 UTC (250 ms)\n\
             └─ for alice\n   \
                └─ spiffe://td/agent/planner\n      \
                   ├─ [0] 00:00:01.000 decision obtain_token https://tool → allow (policy v3)\n      \
                   └─ spiffe://td/agent/worker\n         \
                      └─ [4] 00:00:01.250 decision call_tool weather/get → deny\n"
        );
    }
}
