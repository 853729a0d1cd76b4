//! When credentials are renewed (AIMS PR-7, PR-8): at half of their lifetime, as SPIRE does,
//! so a renewal has the second half of the lifetime to succeed before anything expires.

use std::time::SystemTime;

use aims_credentials::ca::BACKDATE;

/// The moment a credential valid from `not_before` to `not_after` is due for renewal.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    match not_after.duration_since(not_before) {
        Ok(life) => not_before + life / 2,
        // A window that ends before it starts is due at once.
        Err(_) => not_after,
    }
}

/// When an X509-SVID valid from `not_before` to `not_after` was issued: our CA backdates
/// `notBefore` by [`BACKDATE`] against clock skew, and the lifetime whose half renewal waits for
/// starts at issuance (otherwise a short-lived SVID would be due the moment it arrives).
pub fn x509_issued_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    (not_before + BACKDATE).min(not_after)
}

/// Whether a credential is due for renewal at `now`.
pub fn due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    now >= renew_at(not_before, not_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn half_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(3600);
        assert_eq!(renew_at(t0, t1), t0 + Duration::from_secs(1800));
        assert!(!due(t0, t1, t0 + Duration::from_secs(1799)));
        assert!(due(t0, t1, t0 + Duration::from_secs(1800)));
        assert!(due(t1, t0, t0), "an inverted window is always due");
        // A 4 s SVID backdated by 10 s is due 2 s after issuance, not at once.
        let issued = t0;
        let (nb, na) = (issued - BACKDATE, issued + Duration::from_secs(4));
        assert_eq!(
            renew_at(x509_issued_at(nb, na), na),
            issued + Duration::from_secs(2)
        );
        assert_eq!(x509_issued_at(na - Duration::from_secs(1), na), na);
    }
}
