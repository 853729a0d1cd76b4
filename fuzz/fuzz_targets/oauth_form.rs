//! OAuth request bodies (`application/x-www-form-urlencoded`, RFC 6749 Appendix B): a body
//! parses to parameters or is refused, and what parses is valid UTF-8 with no parameter twice.
#![no_main]

use aims_oauth::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        let _ = form.scopes();
        let _ = form.get("grant_type");
        let _ = form.all("resource");
    }
});
