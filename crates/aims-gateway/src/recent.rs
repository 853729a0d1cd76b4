//! A bounded map of recent results (validated tokens, decisions): an entry is used for `ttl`
//! after it was made; a full map drops what is stale or dead first, then everything (the bound
//! holds; the cost is recomputation). A zero `ttl` keeps nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cache.
pub struct RecentCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Hash + Eq, V: Clone> RecentCache<K, V> {
    /// At most `capacity` entries, each used for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value made for `key` less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        let (v, made) = entries.get(key)?;
        (made.elapsed() < self.ttl).then(|| v.clone())
    }

    /// Remembers `value`; when full, entries past `ttl` or `dead` go first.
    pub fn put(&self, key: K, value: V, dead: impl Fn(&V) -> bool) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (v, made)| made.elapsed() < ttl && !dead(v));
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Drops every entry `matches` says so of; returns how many.
    pub fn forget(&self, matches: impl Fn(&V) -> bool) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, (v, _)| !matches(v));
        before - entries.len()
    }
}
