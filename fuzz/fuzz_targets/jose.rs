//! Compact JWS (RFC 7515 §7.1): header, claims and the checks every verifier makes first
//! (algorithm allow-list, `typ`), on any input.
#![no_main]

use aims_credentials::jose::{ASYMMETRIC_ALGORITHMS, CompactJws};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(jws) = CompactJws::parse(s) {
        let _ = jws.header.require_alg(ASYMMETRIC_ALGORITHMS);
        let _ = jws.header.typ_is("at+jwt");
        let _ = jws.claims::<serde_json::Value>();
    }
});
