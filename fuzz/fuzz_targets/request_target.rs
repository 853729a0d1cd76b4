//! HTTP request targets (RFC 3986 §5.2.4, RFC 9110 §4.2.3) as the gateway routes them: what
//! passes is canonical (a fixed point) and holds no dot segment a URL parser would resolve.
#![no_main]

use aims_core::RequestTarget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    if let Ok(t) = RequestTarget::parse(path, query) {
        let again = RequestTarget::parse(t.path(), t.query()).expect("canonical reparses");
        assert_eq!(again.path(), t.path());
        for seg in t.path().split('/') {
            let name = seg.split(';').next().unwrap_or(seg);
            assert!(name != "." && name != "..", "{s:?} -> {}", t.path());
        }
        assert!(!t.path().contains("//"));
    }
});
