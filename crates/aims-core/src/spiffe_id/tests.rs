//! Table tests from go-spiffe (`spiffeid/id_test.go` and `trustdomain_test.go` @5f6f8db6 /
//! 2fe98067, the strict line), plus property tests of the parser.

use super::*;
use SpiffeIdError::*;
use proptest::prelude::*;

const TD_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789.-_";
const PATH_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";

#[test]
fn go_spiffe_valid_ids() {
    for (input, td, path) in [
        ("spiffe://trustdomain", "trustdomain", ""),
        ("spiffe://trustdomain/path", "trustdomain", "/path"),
        ("spiffe://trustdomain/.path", "trustdomain", "/.path"),
        ("spiffe://trustdomain/..path", "trustdomain", "/..path"),
        ("spiffe://trustdomain/...", "trustdomain", "/..."),
        ("spiffe://trustdomain./path", "trustdomain.", "/path"),
        ("spiffe://trustdomain/path.", "trustdomain", "/path."),
    ] {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.trust_domain_name(), td, "{input}");
        assert_eq!(id.path(), path, "{input}");
        assert_eq!(id.as_str(), input);
        assert_eq!(
            format!("{}{}", id.trust_domain().id_string(), id.path()),
            input
        );
    }
}

#[test]
fn go_spiffe_invalid_ids() {
    for (input, err) in [
        ("", Empty),
        ("s", WrongScheme),
        ("spiffe:/", WrongScheme),
        ("Spiffe://", WrongScheme),
        ("SPIFFE://trustdomain", WrongScheme),
        ("spiffe://", MissingTrustDomain),
        ("spiffe:///", MissingTrustDomain),
        ("spiffe://trustdomain/", TrailingSlash),
        ("spiffe://trustdomain//", EmptySegment),
        ("spiffe://trustdomain//path", EmptySegment),
        ("spiffe://trustdomain/path/", TrailingSlash),
        ("spiffe://trustdomain/.", DotSegment),
        ("spiffe://trustdomain/./path", DotSegment),
        ("spiffe://trustdomain/path/./other", DotSegment),
        ("spiffe://trustdomain/path/..", DotSegment),
        ("spiffe://trustdomain/..", DotSegment),
        ("spiffe://trustdomain/../path", DotSegment),
        ("spiffe://trustdomain/path/../other", DotSegment),
        ("spiffe://%F0%9F%A4%AF/path", BadTrustDomainChar),
        ("spiffe://trustdomain/%F0%9F%A4%AF", BadPathSegmentChar),
        ("spiffe://%62%61%64/path", BadTrustDomainChar),
        ("spiffe://trustdomain/%62%61%64", BadPathSegmentChar),
        ("spiffe://trust$domain", BadTrustDomainChar),
        ("spiffe://trustdomain/path$", BadPathSegmentChar),
        ("spiffe://$", BadTrustDomainChar),
        // What the SPIFFE-ID standard forbids by name: userinfo, port, query, fragment, uppercase.
        ("spiffe://user@trustdomain/path", BadTrustDomainChar),
        ("spiffe://trustdomain:8080/path", BadTrustDomainChar),
        ("spiffe://trustdomain/path?query=1", BadPathSegmentChar),
        ("spiffe://trustdomain/path#fragment", BadPathSegmentChar),
        ("spiffe://trustdomain?query", BadTrustDomainChar),
        ("spiffe://TRUSTDOMAIN/path", BadTrustDomainChar),
        ("spiffe://[::1]/path", BadTrustDomainChar),
    ] {
        assert_eq!(SpiffeId::parse(input), Err(err), "{input:?}");
    }
}

#[test]
fn error_messages_match_go_spiffe() {
    assert_eq!(Empty.to_string(), "cannot be empty");
    assert_eq!(WrongScheme.to_string(), "scheme is missing or invalid");
    assert_eq!(MissingTrustDomain.to_string(), "trust domain is missing");
    assert_eq!(
        BadTrustDomainChar.to_string(),
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    );
    assert_eq!(
        BadPathSegmentChar.to_string(),
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
    );
    assert_eq!(DotSegment.to_string(), "path cannot contain dot segments");
    assert_eq!(NoLeadingSlash.to_string(), "path must have a leading slash");
    assert_eq!(
        EmptySegment.to_string(),
        "path cannot contain empty segments"
    );
    assert_eq!(
        TrailingSlash.to_string(),
        "path cannot have a trailing slash"
    );
    assert_eq!(TooLong.to_string(), "ID cannot be longer than 2048 bytes");
}

/// go-spiffe's loop over every code point below 256, in the trust-domain and in the path position.
#[test]
fn go_spiffe_character_loops() {
    for i in 0u32..256 {
        if i == u32::from(b'/') {
            continue;
        }
        let c = char::from_u32(i).unwrap().to_string();
        let in_td = format!("spiffe://trustdomain{c}/path");
        if TD_CHARS.contains(&c) && !c.is_empty() {
            let id = SpiffeId::parse(&in_td).unwrap();
            assert_eq!(id.trust_domain_name(), format!("trustdomain{c}"));
            assert_eq!(id.path(), "/path");
        } else {
            assert_eq!(SpiffeId::parse(&in_td), Err(BadTrustDomainChar), "td {i:X}");
        }
        let in_path = format!("spiffe://trustdomain/path{c}");
        if PATH_CHARS.contains(&c) {
            assert_eq!(
                SpiffeId::parse(&in_path).unwrap().path(),
                format!("/path{c}")
            );
        } else {
            assert_eq!(
                SpiffeId::parse(&in_path),
                Err(BadPathSegmentChar),
                "path {i:X}"
            );
        }
    }
}

#[test]
fn go_spiffe_trust_domains() {
    for (input, name) in [
        ("spiffe://trustdomain", "trustdomain"),
        ("spiffe://trustdomain/path", "trustdomain"),
        ("trustdomain", "trustdomain"),
        ("domain2.test", "domain2.test"),
        ("example.org", "example.org"),
    ] {
        let td = TrustDomain::new(input).unwrap();
        assert_eq!(td.name(), name);
        assert_eq!(td.id_string(), format!("spiffe://{name}"));
    }
    for (input, err) in [
        ("", MissingTrustDomain),
        ("spiffe:/trustdomain/path", WrongScheme),
        ("spiffe://", MissingTrustDomain),
        ("spiffe:///path", MissingTrustDomain),
        ("spiffe://trustdomain/", TrailingSlash),
        ("spiffe://trustdomain/path/", TrailingSlash),
        ("spiffe://%F0%9F%A4%AF/path", BadTrustDomainChar),
        ("spiffe://trustdomain/%F0%9F%A4%AF", BadPathSegmentChar),
        ("spiffe://TRUSTDOMAIN/path", BadTrustDomainChar),
        ("BAD", BadTrustDomainChar),
    ] {
        assert_eq!(TrustDomain::new(input), Err(err), "{input:?}");
    }
    for i in 0u32..256 {
        let c = char::from_u32(i).unwrap().to_string();
        let bare = format!("trustdomain{c}");
        if TD_CHARS.contains(&c) {
            assert_eq!(TrustDomain::new(&bare).unwrap().name(), bare);
            assert_eq!(
                TrustDomain::new(&format!("spiffe://{bare}"))
                    .unwrap()
                    .name(),
                bare
            );
        } else {
            assert_eq!(TrustDomain::new(&bare), Err(BadTrustDomainChar), "{i:X}");
        }
    }
}

#[test]
fn go_spiffe_paths() {
    let td = TrustDomain::new("trustdomain").unwrap();
    assert_eq!(
        SpiffeId::from_parts(&td, "/foo").unwrap().as_str(),
        "spiffe://trustdomain/foo"
    );
    assert_eq!(
        SpiffeId::from_parts(&td, "").unwrap().as_str(),
        "spiffe://trustdomain"
    );
    assert_eq!(SpiffeId::from_parts(&td, "foo"), Err(NoLeadingSlash));
    assert_eq!(SpiffeId::from_parts(&td, "/"), Err(TrailingSlash));
    assert_eq!(SpiffeId::from_parts(&td, "/foo/"), Err(TrailingSlash));
    assert_eq!(SpiffeId::from_parts(&td, "/foo//bar"), Err(EmptySegment));
    assert_eq!(SpiffeId::from_parts(&td, "/%61pi"), Err(BadPathSegmentChar));
}

#[test]
fn length_limits() {
    let prefix = "spiffe://example.org";
    let path_for_total = |n: usize| format!("/{}", "a".repeat(n - prefix.len() - 1));
    let max = format!("{prefix}{}", path_for_total(2048));
    assert_eq!(SpiffeId::parse(&max).unwrap().as_str().len(), 2048);
    // go-spiffe accepts a 2049-byte ID on parse; AIMS bounds its input at the length the
    // standard requires implementations to support.
    let over = format!("{prefix}{}", path_for_total(2049));
    assert_eq!(SpiffeId::parse(&over), Err(TooLong));
    let td = TrustDomain::new("example.org").unwrap();
    assert_eq!(
        SpiffeId::from_parts(&td, &path_for_total(2049)),
        Err(TooLong)
    );
    // A path error wins over the length error, as in go-spiffe.
    let bad_and_long = format!("{prefix}/{}/", "a".repeat(2100));
    assert_eq!(SpiffeId::parse(&bad_and_long), Err(TrailingSlash));

    assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
    assert_eq!(TrustDomain::new(&"a".repeat(256)), Err(TrustDomainTooLong));
    assert_eq!(
        SpiffeId::parse(&format!("spiffe://{}/x", "a".repeat(256))),
        Err(TrustDomainTooLong)
    );
}

#[test]
fn membership_and_trust_domain_ids() {
    let id = SpiffeId::parse("spiffe://trustdomain/path").unwrap();
    assert!(id.is_member_of(&TrustDomain::new("trustdomain").unwrap()));
    assert!(!id.is_member_of(&TrustDomain::new("domain2.test").unwrap()));
    assert!(!id.is_trust_domain_id());
    assert!(
        SpiffeId::parse("spiffe://trustdomain")
            .unwrap()
            .is_trust_domain_id()
    );
}

#[test]
fn serde_round_trip_validates() {
    let id: SpiffeId = serde_json::from_str("\"spiffe://trustdomain/path\"").unwrap();
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        "\"spiffe://trustdomain/path\""
    );
    let err = serde_json::from_str::<SpiffeId>("\"BAD\"").unwrap_err();
    assert!(err.to_string().contains("scheme is missing or invalid"));
    let err = serde_json::from_str::<TrustDomain>("\"BAD\"").unwrap_err();
    assert!(err.to_string().contains("trust domain characters"));
}

#[test]
fn at_or_under_a_base_by_whole_segments_in_one_trust_domain() {
    let base = SpiffeId::parse("spiffe://td/gw").unwrap();
    let at = |s: &str| SpiffeId::parse(s).unwrap().is_at_or_under(&base);
    assert!(at("spiffe://td/gw"));
    assert!(at("spiffe://td/gw/a/b"));
    assert!(!at("spiffe://td/gwx"));
    assert!(!at("spiffe://td/g"));
    assert!(!at("spiffe://other/gw"));
    assert!(!at("spiffe://td"));
    let root = SpiffeId::parse("spiffe://td").unwrap();
    assert!(
        SpiffeId::parse("spiffe://td/any")
            .unwrap()
            .is_at_or_under(&root)
    );
    assert!(
        !SpiffeId::parse("spiffe://tdx/any")
            .unwrap()
            .is_at_or_under(&root)
    );
}

fn td_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn segment_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,20}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

proptest! {
    /// Every ID built from valid parts parses back to the same parts.
    #[test]
    fn valid_ids_round_trip(td in td_strategy(), segs in proptest::collection::vec(segment_strategy(), 0..6)) {
        let path: String = segs.iter().map(|s| format!("/{s}")).collect();
        let s = format!("spiffe://{td}{path}");
        let id = SpiffeId::parse(&s).unwrap();
        prop_assert_eq!(id.trust_domain_name(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(id.as_str(), s.as_str());
        let again = SpiffeId::from_parts(&id.trust_domain(), id.path()).unwrap();
        prop_assert_eq!(again, id);
    }

    /// The parser never panics, and whatever it accepts satisfies every rule of SPIFFE-ID §2.
    #[test]
    fn parser_accepts_only_conforming_ids(s in ".{0,80}") {
        if let Ok(id) = SpiffeId::parse(&s) {
            prop_assert!(s.starts_with("spiffe://"));
            let td = id.trust_domain_name();
            prop_assert!(!td.is_empty() && td.bytes().all(is_trust_domain_char));
            let path = id.path();
            if !path.is_empty() {
                for seg in path[1..].split('/') {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                    prop_assert!(seg.bytes().all(is_path_segment_char));
                }
            }
        }
    }

    /// Mutating one byte of a valid ID into something outside both alphabets always fails.
    #[test]
    fn a_forbidden_byte_anywhere_is_rejected(td in td_strategy(), seg in segment_strategy(), pos in 0usize..60, c in "[?#%:@ A-Z!$&'()*+,;=~]") {
        let valid = format!("spiffe://{td}/{seg}");
        let at = "spiffe://".len() + pos % (valid.len() - "spiffe://".len());
        let mut mutated = valid.clone();
        mutated.replace_range(at..=at, &c);
        let is_upper_in_path = c.chars().all(|ch| ch.is_ascii_uppercase()) && at > "spiffe://".len() + td.len();
        if !is_upper_in_path && mutated.as_bytes()[at] != b'/' {
            prop_assert!(SpiffeId::parse(&mutated).is_err(), "{}", mutated);
        }
    }
}
