//! The agent's cache: the registration entries the server authorized for this node, the
//! bundles, and the SVIDs issued for those entries (keys in memory only, AIMS PR-9).
//!
//! Every change bumps a watch channel; the Workload API's open streams wake on it and send
//! their caller's new state (SPIFFE Workload API §5: rotated SVIDs and bundles are pushed).
//! X509-SVIDs exist for every entry from the start (a caller's first answer comes from memory);
//! WIT-SVIDs from an entry's first request on; JWT-SVIDs per entry and audience list, until
//! half of their life (AIMS PR-7), in a bounded map.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aims_core::SpiffeId;
use aims_credentials::TrustBundle;
use aims_provisioning::matching::entry_matches;
use aims_provisioning::proto::Entry;
use aims_provisioning::rotation;
use aims_store::Selector;
use aims_workload_api::{JwtSvidEntry, WitSvidEntry, X509SvidEntry};
use tokio::sync::{Notify, watch};

/// A registration entry as the agent holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    /// Entry id.
    pub id: String,
    /// The SPIFFE ID it grants.
    pub spiffe_id: SpiffeId,
    /// Every selector a workload must show.
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime asked for (0: the server's default).
    pub x509_svid_ttl: u32,
    /// JWT-SVID lifetime asked for (0: the server's default).
    pub jwt_svid_ttl: u32,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Workload API hint.
    pub hint: Option<String>,
    /// Changes with every update of the entry.
    pub revision: i64,
}

/// Why a synced entry is not usable (and is skipped).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Its SPIFFE ID is not one.
    #[error("entry {id}: {source}")]
    SpiffeId {
        /// The entry.
        id: String,
        /// Why.
        source: aims_core::SpiffeIdError,
    },
    /// A selector does not parse.
    #[error("entry {id}: {why}")]
    Selector {
        /// The entry.
        id: String,
        /// Why.
        why: String,
    },
}

impl TryFrom<Entry> for EntryRecord {
    type Error = EntryError;

    fn try_from(e: Entry) -> Result<Self, EntryError> {
        let spiffe_id = SpiffeId::parse(&e.spiffe_id).map_err(|source| EntryError::SpiffeId {
            id: e.id.clone(),
            source,
        })?;
        let selectors = e
            .selectors
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Selector>, _>>()
            .map_err(|err| EntryError::Selector {
                id: e.id.clone(),
                why: err.to_string(),
            })?;
        Ok(Self {
            id: e.id,
            spiffe_id,
            selectors,
            x509_svid_ttl: e.x509_svid_ttl,
            jwt_svid_ttl: e.jwt_svid_ttl,
            dns_names: e.dns_names,
            hint: (!e.hint.is_empty()).then_some(e.hint),
            revision: e.revision,
        })
    }
}

/// A cached credential's validity and the entry revision it was issued for.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The entry's revision at issuance.
    pub revision: i64,
}

impl Validity {
    fn usable(&self, now: SystemTime) -> bool {
        now < self.not_after
    }

    fn due(&self, entry: &EntryRecord, now: SystemTime) -> bool {
        self.revision != entry.revision || rotation::due(self.not_before, self.not_after, now)
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Arc<EntryRecord>>,
    by_selector: HashMap<Selector, Vec<Arc<EntryRecord>>>,
    bundle: Option<Arc<TrustBundle>>,
    federated: Vec<Arc<TrustBundle>>,
    x509: HashMap<String, (X509SvidEntry, Validity)>,
    wit: HashMap<String, (WitSvidEntry, Validity)>,
    wit_wanted: HashSet<String>,
}

impl State {
    fn matching(&self, selectors: &BTreeSet<Selector>) -> Vec<Arc<EntryRecord>> {
        let mut seen = HashSet::new();
        let mut out: Vec<Arc<EntryRecord>> = selectors
            .iter()
            .filter_map(|s| self.by_selector.get(s))
            .flatten()
            .filter(|e| seen.insert(e.id.as_str()) && entry_matches(&e.selectors, selectors))
            .cloned()
            .collect();
        // A stable order: the first SVID is the caller's default identity.
        out.sort_by(|a, b| (&a.spiffe_id, &a.id).cmp(&(&b.spiffe_id, &b.id)));
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct JwtKey {
    entry_id: String,
    audience: Vec<String>,
}

/// The cache.
pub struct Cache {
    state: RwLock<State>,
    jwt: Mutex<HashMap<JwtKey, (JwtSvidEntry, Validity)>>,
    jwt_capacity: usize,
    changes: watch::Sender<u64>,
    wit_requested: Notify,
}

/// What is due for issuance or renewal.
#[derive(Debug, Default)]
pub struct Due {
    /// Entries whose X509-SVID is missing, stale or past half life.
    pub x509: Vec<Arc<EntryRecord>>,
    /// Entries whose wanted WIT-SVID is missing, stale or past half life.
    pub wit: Vec<Arc<EntryRecord>>,
}

impl Cache {
    /// An empty cache holding at most `jwt_capacity` JWT-SVIDs.
    pub fn new(jwt_capacity: usize) -> Self {
        Self {
            state: RwLock::new(State::default()),
            jwt: Mutex::new(HashMap::new()),
            jwt_capacity: jwt_capacity.max(1),
            changes: watch::Sender::new(0),
            wit_requested: Notify::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that changes with every change of SVIDs, entries or bundles.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces entries and bundles with a synced state; SVIDs of entries that are gone are
    /// dropped at once (AIMS PR-6: a deleted entry stops being served).
    pub fn apply_sync(
        &self,
        entries: Vec<EntryRecord>,
        bundle: TrustBundle,
        federated: Vec<TrustBundle>,
    ) {
        let entries = entries
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        self.install(entries, Some((bundle, federated)));
    }

    /// Applies a synced change (issue 18, incremental sync): entries new or changed, ids no
    /// longer ours, and the bundles if they changed; SVIDs of entries that are gone are dropped
    /// at once, as for a complete state.
    pub fn apply_delta(
        &self,
        changed: Vec<EntryRecord>,
        removed: &[String],
        bundles: Option<(TrustBundle, Vec<TrustBundle>)>,
    ) {
        let mut entries = self.read().entries.clone();
        for id in removed {
            entries.remove(id);
        }
        for e in changed {
            entries.insert(e.id.clone(), Arc::new(e));
        }
        self.install(entries, bundles);
    }

    fn install(
        &self,
        entries: HashMap<String, Arc<EntryRecord>>,
        bundles: Option<(TrustBundle, Vec<TrustBundle>)>,
    ) {
        let mut s = self.write();
        let mut by_selector: HashMap<Selector, Vec<Arc<EntryRecord>>> = HashMap::new();
        for e in entries.values() {
            for sel in &e.selectors {
                by_selector.entry(sel.clone()).or_default().push(e.clone());
            }
        }
        s.x509.retain(|id, _| entries.contains_key(id));
        s.wit.retain(|id, _| entries.contains_key(id));
        s.wit_wanted.retain(|id| entries.contains_key(id));
        s.entries = entries;
        s.by_selector = by_selector;
        if let Some((bundle, federated)) = bundles {
            s.bundle = Some(Arc::new(bundle));
            s.federated = federated.into_iter().map(Arc::new).collect();
        }
        drop(s);
        if let Ok(mut jwt) = self.jwt.lock() {
            let s = self.read();
            jwt.retain(|k, _| s.entries.contains_key(&k.entry_id));
        }
        self.bump();
    }

    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        self.read().entries.len()
    }

    /// Number of X509-SVIDs held.
    pub fn x509_count(&self) -> usize {
        self.read().x509.len()
    }

    /// The entries a workload with `selectors` matches, default identity first.
    pub fn matching(&self, selectors: &BTreeSet<Selector>) -> Vec<Arc<EntryRecord>> {
        self.read().matching(selectors)
    }

    /// The usable X509-SVIDs of a workload with `selectors`.
    pub fn x509_svids(
        &self,
        selectors: &BTreeSet<Selector>,
        now: SystemTime,
    ) -> Vec<X509SvidEntry> {
        let s = self.read();
        s.matching(selectors)
            .iter()
            .filter_map(|e| s.x509.get(&e.id))
            .filter(|(_, v)| v.usable(now))
            .map(|(svid, _)| svid.clone())
            .collect()
    }

    /// The usable WIT-SVIDs of a workload with `selectors`.
    pub fn wit_svids(&self, selectors: &BTreeSet<Selector>, now: SystemTime) -> Vec<WitSvidEntry> {
        let s = self.read();
        s.matching(selectors)
            .iter()
            .filter_map(|e| s.wit.get(&e.id))
            .filter(|(_, v)| v.usable(now))
            .map(|(svid, _)| svid.clone())
            .collect()
    }

    /// Marks the WIT-SVIDs of these entries as wanted (the agent is woken to mint those not
    /// yet issued).
    pub fn want_wit(&self, entries: &[Arc<EntryRecord>], now: SystemTime) {
        let mut s = self.write();
        let mut missing = false;
        for e in entries {
            s.wit_wanted.insert(e.id.clone());
            missing |= !s.wit.get(&e.id).is_some_and(|(_, v)| v.usable(now));
        }
        drop(s);
        if missing {
            self.wit_requested.notify_one();
        }
    }

    /// Waits until a workload asks for a WIT-SVID that is not issued yet.
    pub async fn wit_requested(&self) {
        self.wit_requested.notified().await;
    }

    /// What needs issuing or renewing at `now`.
    pub fn due(&self, now: SystemTime) -> Due {
        let s = self.read();
        let mut due = Due::default();
        for e in s.entries.values() {
            if s.x509.get(&e.id).is_none_or(|(_, v)| v.due(e, now)) {
                due.x509.push(e.clone());
            }
            if s.wit_wanted.contains(&e.id) && s.wit.get(&e.id).is_none_or(|(_, v)| v.due(e, now)) {
                due.wit.push(e.clone());
            }
        }
        due
    }

    /// Stores issued X509-SVIDs (for entries that still exist) and wakes the streams.
    pub fn put_x509(&self, issued: Vec<(String, X509SvidEntry, Validity)>) {
        if issued.is_empty() {
            return;
        }
        let mut s = self.write();
        for (id, svid, v) in issued {
            if s.entries.contains_key(&id) {
                s.x509.insert(id, (svid, v));
            }
        }
        drop(s);
        self.bump();
    }

    /// Stores an issued WIT-SVID and wakes the streams.
    pub fn put_wit(&self, entry_id: String, svid: WitSvidEntry, v: Validity) {
        let mut s = self.write();
        if s.entries.contains_key(&entry_id) {
            s.wit.insert(entry_id, (svid, v));
        }
        drop(s);
        self.bump();
    }

    /// A cached JWT-SVID for `entry_id` and `audience` not yet past half life.
    pub fn jwt(
        &self,
        entry_id: &str,
        audience: &[String],
        now: SystemTime,
    ) -> Option<JwtSvidEntry> {
        let jwt = self.jwt.lock().ok()?;
        let key = JwtKey {
            entry_id: entry_id.to_owned(),
            audience: audience.to_vec(),
        };
        jwt.get(&key)
            .filter(|(_, v)| !rotation::due(v.not_before, v.not_after, now))
            .map(|(svid, _)| svid.clone())
    }

    /// Caches a JWT-SVID. When full, expired and past-half-life tokens go first, then the
    /// whole map (a bounded cache; tokens are cheap to mint again).
    pub fn put_jwt(
        &self,
        entry_id: &str,
        audience: &[String],
        svid: JwtSvidEntry,
        v: Validity,
        now: SystemTime,
    ) {
        let Ok(mut jwt) = self.jwt.lock() else {
            return;
        };
        if jwt.len() >= self.jwt_capacity {
            jwt.retain(|_, (_, v)| !rotation::due(v.not_before, v.not_after, now));
            if jwt.len() >= self.jwt_capacity {
                jwt.clear();
            }
        }
        jwt.insert(
            JwtKey {
                entry_id: entry_id.to_owned(),
                audience: audience.to_vec(),
            },
            (svid, v),
        );
    }

    /// Drops credentials that expired (the server was unreachable past their end): an expired
    /// SVID is never served.
    pub fn purge_expired(&self, now: SystemTime) {
        let mut s = self.write();
        let before = s.x509.len() + s.wit.len();
        s.x509.retain(|_, (_, v)| v.usable(now));
        s.wit.retain(|_, (_, v)| v.usable(now));
        let purged = before - (s.x509.len() + s.wit.len());
        drop(s);
        if purged > 0 {
            tracing::warn!(
                purged,
                "SVIDs expired before they could be renewed; their workloads have no identity until the server is reachable"
            );
            self.bump();
        }
        if let Ok(mut jwt) = self.jwt.lock() {
            jwt.retain(|_, (_, v)| v.usable(now));
        }
    }

    /// Our bundle first, then federated ones.
    pub fn bundles(&self) -> Vec<Arc<TrustBundle>> {
        let s = self.read();
        s.bundle.iter().chain(s.federated.iter()).cloned().collect()
    }
}

/// The validity window of a token from its `iat`/`exp` (seconds).
pub fn token_validity(iat: Option<i64>, exp: i64, revision: i64, now: SystemTime) -> Validity {
    let at = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0));
    Validity {
        not_before: iat.map_or(now, at),
        not_after: at(exp),
        revision,
    }
}
