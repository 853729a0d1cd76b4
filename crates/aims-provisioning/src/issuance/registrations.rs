//! This replica's registration state in memory, for the agents' `Sync` streams (issue 18,
//! incremental sync).
//!
//! The state is loaded once and then follows the store's registration change log
//! ([`aims_store::Store::registration_changes_since`]): on every change the [`ChangeFeed`]
//! announces (this replica's admin API, another replica's `NOTIFY`, the slow poll) it reads the
//! changes after the sequence number it holds, in one statement, whatever the number of agents
//! connected. Each stream then takes what concerns its agent from memory: the entries that
//! changed under it since the sequence the agent holds, not its whole list, and no store read
//! (SPIRE re-lists every entry on each agent's sync). A recent window of changes is kept so that
//! an agent reconnecting, to this replica or another, resumes from its sequence number without
//! losing an update; an agent further behind gets its full state.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use aims_core::SpiffeId;
use aims_store::{ChangesSince, Counter, RegistrationChange, RegistrationEntry, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::issuance::changes::ChangeFeed;
use crate::issuance::issuer::Issuer;

/// Changes read per statement when catching up.
const PAGE: u32 = 10_000;
/// Delay before reading the changes again after the store failed.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Changes kept in memory for agents resuming from a sequence number.
pub const RESUME_WINDOW: usize = 65_536;

/// What changed at one sequence number, for the agents it concerns.
#[derive(Debug)]
struct Logged {
    seq: i64,
    /// The agents whose state it may change (an entry's old and new parent).
    agents: Vec<SpiffeId>,
    /// The entry it changed; `None` for a ban or eviction of the agent(s).
    entry: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Every change up to this one is applied.
    sequence: i64,
    entries: HashMap<String, RegistrationEntry>,
    by_agent: HashMap<SpiffeId, BTreeSet<String>>,
    /// The changes after `log_from`, oldest first.
    log: VecDeque<Logged>,
    log_from: i64,
    federation: i64,
    federated: Arc<Vec<(String, String)>>,
}

impl State {
    fn put(&mut self, entry: RegistrationEntry) {
        self.by_agent
            .entry(entry.parent_id.clone())
            .or_default()
            .insert(entry.id.clone());
        self.entries.insert(entry.id.clone(), entry);
    }

    /// Removes the entry `id`, returning the agent it was under.
    fn take(&mut self, id: &str) -> Option<SpiffeId> {
        let old = self.entries.remove(id)?;
        if let Some(ids) = self.by_agent.get_mut(&old.parent_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_agent.remove(&old.parent_id);
            }
        }
        Some(old.parent_id)
    }

    fn reload(&mut self, sequence: i64, entries: Vec<RegistrationEntry>) {
        self.entries.clear();
        self.by_agent.clear();
        for e in entries {
            self.put(e);
        }
        self.sequence = sequence;
        self.log.clear();
        self.log_from = sequence;
    }

    fn apply(&mut self, seq: i64, change: RegistrationChange) {
        let logged = match change {
            RegistrationChange::Entry { id, entry } => {
                let mut agents: Vec<SpiffeId> = self.take(&id).into_iter().collect();
                if let Some(e) = entry {
                    if !agents.contains(&e.parent_id) {
                        agents.push(e.parent_id.clone());
                    }
                    self.put(e);
                }
                Logged {
                    seq,
                    agents,
                    entry: Some(id),
                }
            }
            RegistrationChange::Node(agent) => Logged {
                seq,
                agents: vec![agent],
                entry: None,
            },
        };
        self.log.push_back(logged);
        while self.log.len() > RESUME_WINDOW {
            if let Some(old) = self.log.pop_front() {
                self.log_from = old.seq;
            }
        }
        self.sequence = seq;
    }

    /// The entries `agent` may issue now, by id.
    fn entries_of(&self, agent: &SpiffeId) -> Vec<RegistrationEntry> {
        self.by_agent
            .get(agent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| !e.disabled)
            .cloned()
            .collect()
    }
}

/// What an agent holding one sequence number needs to reach the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentUpdate {
    /// Its entries changed (or it was banned or evicted): these entries are new or changed,
    /// these ids are no longer its to issue.
    Delta {
        /// Entries created or changed, sorted by id.
        changed: Vec<RegistrationEntry>,
        /// Ids of entries deleted, disabled or moved to another agent (possibly ones it
        /// never had).
        removed: Vec<String>,
        /// The agent itself was banned or evicted: re-check it.
        agent_changed: bool,
    },
    /// Its sequence number is outside what this replica remembers: its whole state.
    Full,
}

impl AgentUpdate {
    /// Whether nothing concerns the agent.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Delta { changed, removed, agent_changed: false } if changed.is_empty() && removed.is_empty())
    }
}

/// This replica's registration state, following the store's change log.
pub struct Registrations {
    state: RwLock<State>,
    /// Moves after every refresh that may have changed something (entries, bundles).
    refreshed: watch::Sender<u64>,
}

impl Registrations {
    /// The state as the store holds it now.
    pub async fn load(issuer: &Issuer) -> Result<Arc<Self>, StoreError> {
        let store = issuer.store();
        let (sequence, entries) = store.registration_snapshot().await?;
        let mut state = State::default();
        state.reload(sequence, entries);
        state.federation = store.counter(Counter::Federation).await?;
        state.federated = Arc::new(federated(issuer).await?);
        Ok(Arc::new(Self {
            state: RwLock::new(state),
            refreshed: watch::Sender::new(0),
        }))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that moves after every refresh.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.refreshed.subscribe()
    }

    /// The sequence number of the last change applied.
    pub fn sequence(&self) -> i64 {
        self.read().sequence
    }

    /// The federated bundles (trust domain, SPIFFE bundle document), as last read.
    pub fn federated(&self) -> Arc<Vec<(String, String)>> {
        self.read().federated.clone()
    }

    /// `agent`'s entries now (enabled ones, by id) and the sequence number they are at.
    pub fn state_of(&self, agent: &SpiffeId) -> (i64, Vec<RegistrationEntry>) {
        let s = self.read();
        (s.sequence, s.entries_of(agent))
    }

    /// What `agent`, holding every change up to `since`, needs to reach the sequence number
    /// returned with it.
    pub fn update_for(&self, agent: &SpiffeId, since: i64) -> (i64, AgentUpdate) {
        let s = self.read();
        if since < s.log_from || since > s.sequence {
            return (s.sequence, AgentUpdate::Full);
        }
        let start = s.log.partition_point(|l| l.seq <= since);
        let mut touched = BTreeSet::new();
        let mut agent_changed = false;
        for l in s.log.range(start..).filter(|l| l.agents.contains(agent)) {
            match &l.entry {
                Some(id) => {
                    touched.insert(id.as_str());
                }
                None => agent_changed = true,
            }
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for id in touched {
            match s.entries.get(id) {
                Some(e) if e.parent_id == *agent && !e.disabled => changed.push(e.clone()),
                _ => removed.push(id.to_owned()),
            }
        }
        (
            s.sequence,
            AgentUpdate::Delta {
                changed,
                removed,
                agent_changed,
            },
        )
    }

    /// Reads the changes after the sequence number held (and the federated bundles if their
    /// counter moved), then wakes the streams.
    pub async fn refresh(&self, issuer: &Issuer) -> Result<(), StoreError> {
        let store = issuer.store();
        loop {
            let since = self.read().sequence;
            match store.registration_changes_since(since, PAGE).await? {
                ChangesSince::Gone => {
                    tracing::info!(
                        since,
                        "registration change log no longer reaches back here; reloading every entry"
                    );
                    let (sequence, entries) = store.registration_snapshot().await?;
                    self.write().reload(sequence, entries);
                    break;
                }
                ChangesSince::Changes(c) => {
                    let mut s = self.write();
                    // Another refresh may have gone first; apply only what is still new.
                    let mut seq = since;
                    for change in c.changes {
                        seq += 1;
                        if seq > s.sequence {
                            s.apply(seq, change);
                        }
                    }
                    if !c.more {
                        break;
                    }
                }
            }
        }
        let federation = store.counter(Counter::Federation).await?;
        if federation != self.read().federation {
            let bundles = Arc::new(federated(issuer).await?);
            let mut s = self.write();
            s.federation = federation;
            s.federated = bundles;
        }
        self.refreshed.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// Refreshes on every change `feed` announces, until `stop`.
    pub async fn follow(
        self: Arc<Self>,
        issuer: Arc<Issuer>,
        feed: Arc<ChangeFeed>,
        stop: CancellationToken,
    ) {
        let mut changes = feed.subscribe();
        // Once at once: a change committed between the load and the subscription above would
        // otherwise wait for the next one.
        changes.mark_changed();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
            // Until a refresh succeeds: a change missed while the store is down is not
            // announced again.
            while let Err(e) = self.refresh(&issuer).await {
                tracing::warn!(error = %e, "cannot read registration changes; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

async fn federated(issuer: &Issuer) -> Result<Vec<(String, String)>, StoreError> {
    Ok(issuer
        .store()
        .federated_bundles()
        .await?
        .into_iter()
        .map(|f| (f.trust_domain, f.document))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn entry(n: &str, agent: &str) -> RegistrationEntry {
        RegistrationEntry {
            id: n.into(),
            spiffe_id: id(&format!("spiffe://example.org/w/{n}")),
            parent_id: id(agent),
            selectors: vec!["unix:uid:1".parse().unwrap()],
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: vec![],
            admin: false,
            hint: None,
            disabled: false,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    const A: &str = "spiffe://example.org/agent/a";
    const B: &str = "spiffe://example.org/agent/b";

    fn registrations(entries: Vec<RegistrationEntry>, sequence: i64) -> Registrations {
        let mut state = State::default();
        state.reload(sequence, entries);
        Registrations {
            state: RwLock::new(state),
            refreshed: watch::Sender::new(0),
        }
    }

    fn change(e: &RegistrationEntry) -> RegistrationChange {
        RegistrationChange::Entry {
            id: e.id.clone(),
            entry: Some(e.clone()),
        }
    }

    fn delta(changed: &[&str], removed: &[&str], agent_changed: bool) -> AgentUpdate {
        AgentUpdate::Delta {
            changed: changed.iter().map(|n| entry(n, A)).collect(),
            removed: removed.iter().map(|s| (*s).to_owned()).collect(),
            agent_changed,
        }
    }

    #[test]
    fn each_agent_gets_what_changed_under_it_since_its_sequence() {
        let r = registrations(vec![entry("1", A), entry("2", A), entry("3", B)], 10);
        assert_eq!(r.state_of(&id(A)).1, vec![entry("1", A), entry("2", A)]);
        assert_eq!(r.update_for(&id(A), 10), (10, delta(&[], &[], false)));
        assert!(r.update_for(&id(A), 10).1.is_empty());
        {
            let mut s = r.write();
            s.apply(11, change(&entry("4", A)));
            // Moved from A to B: gone for A, new for B.
            s.apply(12, change(&entry("2", B)));
            s.apply(
                13,
                RegistrationChange::Entry {
                    id: "1".into(),
                    entry: Some(RegistrationEntry {
                        disabled: true,
                        ..entry("1", A)
                    }),
                },
            );
            s.apply(14, change(&entry("5", B)));
        }
        assert_eq!(
            r.update_for(&id(A), 10),
            (14, delta(&["4"], &["1", "2"], false))
        );
        assert_eq!(r.update_for(&id(A), 12), (14, delta(&[], &["1"], false)));
        // B's view: its moved entry and its new one, nothing of A's.
        let (_, b) = r.update_for(&id(B), 10);
        assert_eq!(
            b,
            AgentUpdate::Delta {
                changed: vec![entry("2", B), entry("5", B)],
                removed: vec![],
                agent_changed: false
            }
        );
        // A third agent: nothing, whatever changed elsewhere.
        assert!(
            r.update_for(&id("spiffe://example.org/agent/c"), 10)
                .1
                .is_empty()
        );
        // Deleted, and the agent banned.
        {
            let mut s = r.write();
            s.apply(
                15,
                RegistrationChange::Entry {
                    id: "4".into(),
                    entry: None,
                },
            );
            s.apply(16, RegistrationChange::Node(id(A)));
        }
        assert_eq!(r.update_for(&id(A), 14), (16, delta(&[], &["4"], true)));
        // A's entry deleted and A banned: nothing for B.
        assert!(r.update_for(&id(B), 14).1.is_empty());
        assert_eq!(r.state_of(&id(A)), (16, vec![]));
    }

    #[test]
    fn a_sequence_outside_the_window_gets_the_complete_state() {
        let r = registrations(vec![entry("1", A)], 100);
        // Before the state was loaded, or from another store's future.
        assert_eq!(r.update_for(&id(A), 99).1, AgentUpdate::Full);
        assert_eq!(r.update_for(&id(A), 101).1, AgentUpdate::Full);
        // The window slides: the oldest changes leave it.
        {
            let mut s = r.write();
            for n in 0..RESUME_WINDOW + 10 {
                let seq = 101 + i64::try_from(n).unwrap();
                s.apply(seq, change(&entry("1", A)));
            }
        }
        let newest = r.sequence();
        assert_eq!(r.read().log.len(), RESUME_WINDOW);
        assert_eq!(r.update_for(&id(A), 105).1, AgentUpdate::Full);
        assert_eq!(
            r.update_for(&id(A), newest - 1).1,
            delta(&["1"], &[], false)
        );
        let oldest_kept = newest - i64::try_from(RESUME_WINDOW).unwrap();
        assert_eq!(
            r.update_for(&id(A), oldest_kept).1,
            delta(&["1"], &[], false)
        );
        assert_eq!(r.update_for(&id(A), oldest_kept - 1).1, AgentUpdate::Full);
    }
}
