//! Security Event Tokens (RFC 8417) as the SSF receiver and the gateway read them: parsing and
//! the checks before the signature, on any input (no key verifies, so none is accepted).
#![no_main]

use aims_signals::verify_set;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let none = |_: &str| None;
    assert!(verify_set(s, "https://as.example", "https://rp.example", &none).is_err());
});
