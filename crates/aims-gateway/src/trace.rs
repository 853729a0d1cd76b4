//! W3C Trace Context at the gateway (AIMS MO-9, MO-11): which trace a request belongs to, the
//! gateway's OpenTelemetry span in it, and the `traceparent` the upstream gets.
//!
//! The trace is the caller's (`traceparent`); failing that, the transaction it forwards (a
//! `Txn-Token`'s `txn` is 32 hex digits, a valid trace id); failing that, a new one. The span
//! is exported when the process installs an OpenTelemetry layer; without one, ids are still
//! made and passed on.

use http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use aims_authn::wpt::TXN_TOKEN_HEADER;

/// Where a request's trace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIds {
    /// The trace id (32 lowercase hex digits).
    pub trace_id: String,
    /// The caller's span, if it sent a `traceparent`.
    pub parent: Option<String>,
}

pub use aims_core::trace_context::is_trace_id;

/// A fresh random id in W3C trace-id form (Trace Context §3.2.2.3), from the thread's CSPRNG
/// (rand's `ThreadRng`, seeded by the OS): uuid's v4 made a `getrandom` system call per id,
/// up to three a request.
pub fn new_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A fresh random span id (Trace Context §3.2.2.4).
fn new_span_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// W3C Trace Context §3.2 (`00-traceid-parentid-flags`), else a forwarded transaction's task,
/// else a new trace.
pub fn from_headers(headers: &HeaderMap) -> TraceIds {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(aims_core::trace_context::parse_traceparent)
        .map(|(t, p)| (t.to_owned(), p.to_owned()));
    if let Some((trace_id, span)) = parent {
        return TraceIds {
            trace_id,
            parent: Some(span),
        };
    }
    // The transaction's task names the trace; read unverified: it only labels spans.
    let txn = headers
        .get(TXN_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::server_client::unverified_task_trace)
        .filter(|t| is_trace_id(t));
    TraceIds {
        trace_id: txn.unwrap_or_else(new_trace_id),
        parent: None,
    }
}

/// The gateway's span for a request, in the request's trace.
pub fn request_span(method: &http::Method, path: &str, ids: &TraceIds) -> tracing::Span {
    let span = tracing::info_span!(
        "gateway.request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    let trace = TraceId::from_hex(&ids.trace_id).unwrap_or(TraceId::INVALID);
    let parent = ids
        .parent
        .as_deref()
        .and_then(|p| SpanId::from_hex(p).ok())
        .unwrap_or_else(|| SpanId::from_hex(&new_span_id()).unwrap_or(SpanId::INVALID));
    let remote = SpanContext::new(
        trace,
        parent,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    span
}

/// The `traceparent` for the upstream: the request's trace, the gateway's span as parent (a
/// random span id when no span is exported).
pub fn upstream_traceparent(span: &tracing::Span, trace_id: &str) -> String {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    let span_id = if own.is_valid() && own.trace_id().to_string() == trace_id {
        own.span_id().to_string()
    } else {
        new_span_id()
    };
    format!("00-{trace_id}-{span_id}-01")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fresh_ids_are_valid_and_distinct() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert!(is_trace_id(&a) && is_trace_id(&b), "{a} {b}");
        assert_ne!(a, b);
        // A request without a traceparent: a new trace, and a span id the upstream can parse.
        let ids = from_headers(&HeaderMap::new());
        assert!(is_trace_id(&ids.trace_id));
        let span = request_span(&http::Method::GET, "/x", &ids);
        let traceparent = upstream_traceparent(&span, &ids.trace_id);
        let (trace, parent) = aims_core::trace_context::parse_traceparent(&traceparent).unwrap();
        assert_eq!(trace, ids.trace_id);
        assert_eq!(parent.len(), 16);
        assert_ne!(parent, "0000000000000000");
    }
}
