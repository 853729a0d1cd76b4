//! PKCS#10 certificate requests (RFC 2986) as agents send them for X509-SVIDs: any bytes give
//! a request or an error, never a panic.
#![no_main]

use aims_credentials::ca::CertificateRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = CertificateRequest::from_der(data);
});
