//! RFC 9421 `Signature-Input` (RFC 8941 structured fields) and `Signature` headers as the
//! gateway reads them: a value parses to signatures that serialise again, or is refused.
#![no_main]

use aims_authn::httpsig::{Signatures, parse_signature_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inputs) = parse_signature_input(s) {
        for (_, input) in inputs {
            let _ = input.serialize();
        }
    }
    // The same bytes as both headers of a message.
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(s) {
        headers.insert("signature-input", v.clone());
        headers.insert("signature", v);
        let _ = Signatures::from_headers(&headers);
    }
});
