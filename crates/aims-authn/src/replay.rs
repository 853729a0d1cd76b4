//! A replay cache with bounded memory (AIMS AU-10, AU-11): every one-time value (WPT `jti`,
//! HTTP-signature `nonce`, DPoP `jti`) is remembered until it expires plus the allowed clock
//! skew, and a second presentation within that window is refused.
//!
//! Memory is bounded by a fixed number of entries. Expired entries are dropped as new ones
//! arrive; when the cache is full of live entries a new value is refused (fail closed, AIMS
//! security rule), never admitted unremembered: a replay must never slip through because the
//! cache forgot. Size it for peak rate × window (the default 1M entries take about 50 MB and
//! cover 3,000 proofs/s with 5-minute lifetimes).
//!
//! Each value has an owner (the authenticated party that presented it), and no owner holds more
//! than a quarter of the cache: a client that floods it with fresh values is refused once its
//! share is full, while everyone else's proofs are still admitted (issue 16).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// Independent shards, to keep lock contention low under concurrency.
const SHARDS: usize = 16;

/// Why a value was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The value was seen before and has not expired.
    #[error("replayed: this one-time value was already used")]
    Replayed,
    /// The cache is full of unexpired values; the value cannot be remembered, so it is refused.
    #[error("replay cache full; try again later")]
    Full,
}

/// What a one-time value belongs to; values of different kinds never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    /// A WIMSE Workload Proof Token `jti`.
    Wpt,
    /// An HTTP message signature `nonce` (WIMSE: duplicates are refused whatever the sender).
    SignatureNonce,
    /// A DPoP proof `jti` (RFC 9449 §11.1).
    Dpop,
    /// A client assertion `jti` (RFC 7523 §3).
    ClientAssertion,
    /// The `jti` of a node's x509pop proof (AIMS node attestation).
    X509Pop,
}

#[derive(Default)]
struct Shard {
    /// Value → (kept until, owner).
    seen: HashMap<u128, (i64, u64)>,
    expiry: BinaryHeap<Reverse<(i64, u128)>>,
    /// Live values per owner.
    owners: HashMap<u64, usize>,
}

impl Shard {
    fn evict_expired(&mut self, now: i64) {
        while let Some(Reverse((exp, key))) = self.expiry.peek().copied() {
            if exp >= now {
                break;
            }
            self.expiry.pop();
            if let Some(&(until, owner)) = self.seen.get(&key)
                && until == exp
            {
                self.seen.remove(&key);
                if let Some(n) = self.owners.get_mut(&owner) {
                    *n -= 1;
                    if *n == 0 {
                        self.owners.remove(&owner);
                    }
                }
            }
        }
    }
}

/// The replay cache.
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// The most one owner may hold in a shard.
    per_owner: usize,
    skew: i64,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .field("skew", &self.skew)
            .finish()
    }
}

fn owner_key(owner: &str) -> u64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, owner.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

fn key(kind: ReplayKind, issuer: &str, value: &str) -> u128 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&[kind as u8]);
    ctx.update(&(issuer.len() as u64).to_be_bytes());
    ctx.update(issuer.as_bytes());
    ctx.update(value.as_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    u128::from_be_bytes(b)
}

/// The default capacity: one million live values.
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The default clock-skew tolerance, seconds.
pub const DEFAULT_SKEW_SECS: i64 = 60;

impl Default for ReplayCache {
    /// One million entries and 60 seconds of clock skew.
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_SKEW_SECS)
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` live values, keeping each until its expiry plus
    /// `skew_secs` seconds.
    pub fn new(capacity: usize, skew_secs: i64) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            per_owner: per_shard.div_ceil(4),
            skew: skew_secs,
        }
    }

    /// The clock skew this cache allows for.
    pub fn skew(&self) -> i64 {
        self.skew
    }

    /// Admits `value` (of `kind`, from `issuer`, who owns it) once: `Ok` the first time,
    /// `Replayed` while it is remembered. `expires_at` is the value's own expiry (Unix seconds);
    /// `now` is the current time.
    pub fn check_and_insert(
        &self,
        kind: ReplayKind,
        issuer: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        self.check_and_insert_owned(kind, issuer, issuer, value, expires_at, now)
    }

    /// [`Self::check_and_insert`] for a value unique across issuers (`namespace`, e.g. every
    /// sender's HTTP-signature nonces), counted against `owner`'s share.
    pub fn check_and_insert_owned(
        &self,
        kind: ReplayKind,
        namespace: &str,
        owner: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let k = key(kind, namespace, value);
        let o = owner_key(owner);
        let shard = &self.shards[(k as usize) % SHARDS];
        let mut shard = match shard.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        shard.evict_expired(now);
        if shard.seen.contains_key(&k) {
            return Err(ReplayError::Replayed);
        }
        if shard.seen.len() >= self.per_shard
            || shard.owners.get(&o).is_some_and(|n| *n >= self.per_owner)
        {
            return Err(ReplayError::Full);
        }
        let until = expires_at.saturating_add(self.skew);
        shard.seen.insert(k, (until, o));
        *shard.owners.entry(o).or_default() += 1;
        shard.expiry.push(Reverse((until, k)));
        Ok(())
    }

    /// Live entries (for metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.seen.len()).unwrap_or(0))
            .sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_admitted_once_until_it_expires() {
        let c = ReplayCache::new(100, 60);
        c.check_and_insert(ReplayKind::Wpt, "iss", "j1", 1000, 900)
            .unwrap();
        assert_eq!(
            c.check_and_insert(ReplayKind::Wpt, "iss", "j1", 1000, 950),
            Err(ReplayError::Replayed)
        );
        // Still remembered within the skew after expiry.
        assert_eq!(
            c.check_and_insert(ReplayKind::Wpt, "iss", "j1", 1000, 1059),
            Err(ReplayError::Replayed)
        );
        // Forgotten only once expiry + skew has passed (by then the proof itself is refused).
        c.check_and_insert(ReplayKind::Wpt, "iss", "j1", 2000, 1061)
            .unwrap();
        // Different kinds and issuers never collide.
        c.check_and_insert(ReplayKind::Dpop, "iss", "j1", 1000, 900)
            .unwrap();
        c.check_and_insert(ReplayKind::Wpt, "other", "j1", 1000, 900)
            .unwrap();
    }

    #[test]
    fn one_owner_cannot_fill_the_cache_for_everyone() {
        let c = ReplayCache::new(SHARDS * 40, 0);
        // A flooding client is refused once it holds its quarter.
        let flooded = (0..10_000)
            .filter(|i| {
                c.check_and_insert(ReplayKind::Dpop, "mallory", &i.to_string(), 100, 10)
                    .is_ok()
            })
            .count();
        assert!(flooded <= SHARDS * 10, "{flooded}");
        // Everyone else is still admitted.
        for i in 0..20 {
            c.check_and_insert(ReplayKind::Dpop, "alice", &i.to_string(), 100, 10)
                .unwrap();
        }
        // Shared nonces count against their sender.
        for i in 0..20 {
            c.check_and_insert_owned(
                ReplayKind::SignatureNonce,
                "",
                "bob",
                &i.to_string(),
                100,
                10,
            )
            .unwrap();
        }
        // Expiry gives the flooder its share back.
        c.check_and_insert(ReplayKind::Dpop, "mallory", "late", 300, 101)
            .unwrap();
    }

    #[test]
    fn memory_is_bounded_and_a_full_cache_fails_closed() {
        let c = ReplayCache::new(SHARDS * 4, 0);
        let mut admitted = 0;
        let mut full = 0;
        for i in 0..1000 {
            match c.check_and_insert_owned(
                ReplayKind::SignatureNonce,
                "",
                &i.to_string(),
                &i.to_string(),
                100,
                10,
            ) {
                Ok(()) => admitted += 1,
                Err(ReplayError::Full) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // 1000 values over 16 shards: every shard fills to its 4 entries, and no further.
        assert_eq!(admitted, SHARDS * 4);
        assert_eq!(admitted + full, 1000);
        assert!(c.len() <= SHARDS * 4);
        // Every admitted value is still refused as a replay, never forgotten early.
        let replays = (0..1000)
            .filter(|i| {
                c.check_and_insert_owned(
                    ReplayKind::SignatureNonce,
                    "",
                    &i.to_string(),
                    &i.to_string(),
                    100,
                    10,
                ) == Err(ReplayError::Replayed)
            })
            .count();
        assert_eq!(replays, admitted);
        // Once they expire there is room again, shard by shard.
        let later = (0..1000)
            .filter(|i| {
                c.check_and_insert_owned(
                    ReplayKind::SignatureNonce,
                    "",
                    &format!("late{i}"),
                    &format!("late{i}"),
                    300,
                    101,
                )
                .is_ok()
            })
            .count();
        assert_eq!(later, SHARDS * 4);
        assert_eq!(c.len(), SHARDS * 4);
    }
}
