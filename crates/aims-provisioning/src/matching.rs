//! The issuance decision (AIMS PR-2, PR-4): an entry applies to a workload when the workload
//! presents **every** selector of the entry (the selectors may come from several attestors,
//! AIMS PR-3: multi-signal); a caller that matches nothing gets nothing.

use std::collections::BTreeSet;

use aims_store::Selector;

/// Whether a workload with `workload` selectors matches an entry requiring `required`.
/// An entry with no selectors never matches (the store refuses them anyway).
pub fn entry_matches(required: &[Selector], workload: &BTreeSet<Selector>) -> bool {
    !required.is_empty() && required.iter().all(|s| workload.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sels(list: &[&str]) -> Vec<Selector> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn all_selectors_must_be_present() {
        let workload: BTreeSet<Selector> =
            sels(&["unix:uid:1000", "unix:gid:1000", "tpm:pcr7:abc"])
                .into_iter()
                .collect();
        assert!(entry_matches(&sels(&["unix:uid:1000"]), &workload));
        assert!(entry_matches(
            &sels(&["unix:uid:1000", "tpm:pcr7:abc"]),
            &workload
        ));
        assert!(!entry_matches(
            &sels(&["unix:uid:1000", "tpm:pcr7:def"]),
            &workload
        ));
        assert!(!entry_matches(&sels(&["unix:uid:0"]), &workload));
        assert!(!entry_matches(&[], &workload));
    }
}
