//! Which policy version each gateway said it decides with (AIMS PO-3), written to the store at
//! most once per [`REWRITE_EVERY`] per gateway and version: a workload asking for the policy
//! again and again (without a hold, or from many connections) costs one store write per
//! interval, not one per request.

use std::collections::HashMap;
use std::sync::Mutex;

/// How often one follower's unchanged report is written again (well inside the 45 s a silent
/// follower still counts, and below the 25 s a gateway's held poll lasts).
pub const REWRITE_EVERY: i64 = 10;
/// Followers remembered, at most (beyond, the oldest reports are forgotten first).
const MAX_FOLLOWERS: usize = 10_000;

/// The reports last written.
#[derive(Debug, Default)]
pub(crate) struct FollowerReports {
    written: Mutex<HashMap<String, (u64, i64)>>,
}

impl FollowerReports {
    /// Whether `spiffe_id` reporting `version` at `now` (Unix seconds) is to be written; if so,
    /// it counts as written.
    pub(crate) fn due(&self, spiffe_id: &str, version: u64, now: i64) -> bool {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((v, at)) = written.get(spiffe_id)
            && *v == version
            && now.saturating_sub(*at) < REWRITE_EVERY
        {
            return false;
        }
        if written.len() >= MAX_FOLLOWERS && !written.contains_key(spiffe_id) {
            written.retain(|_, (_, at)| now.saturating_sub(*at) < REWRITE_EVERY);
            if written.len() >= MAX_FOLLOWERS {
                written.clear();
            }
        }
        written.insert(spiffe_id.to_owned(), (version, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_asking_again_is_written_once_per_interval_or_on_a_new_version() {
        let r = FollowerReports::default();
        let gw = "spiffe://example.org/gateway/g1";
        assert!(r.due(gw, 1, 1000));
        // A flood of the same report: no write.
        assert!((0..1000).all(|_| !r.due(gw, 1, 1000)));
        assert!(!r.due(gw, 1, 1000 + REWRITE_EVERY - 1));
        // A new version at once; the same one again after the interval.
        assert!(r.due(gw, 2, 1001));
        assert!(!r.due(gw, 2, 1002));
        assert!(r.due(gw, 2, 1001 + REWRITE_EVERY));
        // Another follower is its own.
        assert!(r.due("spiffe://example.org/gateway/g2", 2, 1002));
    }

    #[test]
    fn the_memory_is_bounded() {
        let r = FollowerReports::default();
        for i in 0..MAX_FOLLOWERS + 10 {
            assert!(r.due(&format!("spiffe://example.org/w/{i}"), 1, 5));
        }
        assert!(r.written.lock().unwrap().len() <= MAX_FOLLOWERS);
    }
}
