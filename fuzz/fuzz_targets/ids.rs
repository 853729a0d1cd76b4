//! SPIFFE IDs (SPIFFE-ID §2) and WIMSE workload identifiers: a parsed ID prints back to
//! something that parses to the same ID.
#![no_main]

use aims_core::{SpiffeId, WorkloadIdentifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(s) {
        let again = SpiffeId::parse(id.as_str()).expect("a parsed SPIFFE ID reparses");
        assert_eq!(again, id);
        assert!(id.as_str().len() <= aims_core::MAX_SPIFFE_ID_LEN);
    }
    if let Ok(w) = WorkloadIdentifier::parse(s) {
        let printed = w.to_string();
        let again = WorkloadIdentifier::parse(&printed).expect("a parsed WIMSE ID reparses");
        assert_eq!(again.to_string(), printed);
    }
});
