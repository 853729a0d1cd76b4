//! W3C Trace Context (Level 1) identifiers: one task's id travels as the trace id of a
//! `traceparent`, and the transaction token's `txn` takes the same form (AIMS MO-9, MO-11).

/// A W3C trace id: 32 lowercase hex digits, not all zero (Trace Context §3.2.2.3).
pub fn is_trace_id(t: &str) -> bool {
    is_id(t, 32)
}

/// A W3C parent (span) id: 16 lowercase hex digits, not all zero (§3.2.2.4).
pub fn is_span_id(s: &str) -> bool {
    is_id(s, 16)
}

fn is_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && s.bytes().any(|b| b != b'0')
}

/// The trace id and parent id of a version-00 `traceparent` value (§3.2), if it is one.
pub fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("00"), Some(t), Some(p), Some(flags))
            if is_trace_id(t) && is_span_id(p) && flags.len() == 2 =>
        {
            Some((t, p))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_traceparents_as_the_spec_writes_them() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(tp),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
