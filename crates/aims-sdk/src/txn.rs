//! Transaction tokens along a task's calls (draft-ietf-oauth-transaction-tokens-11 §7.1): a
//! workload that received a `Txn-Token` forwards it, unchanged, on the calls it makes for the
//! same request, so every hop sees the same transaction (and the audit log one task id).

pub use aims_authn::wpt::TXN_TOKEN_HEADER;
use http::HeaderMap;

/// The transaction token an incoming request carried, if one.
pub fn incoming(headers: &HeaderMap) -> Option<&str> {
    headers.get(TXN_TOKEN_HEADER).and_then(|v| v.to_str().ok())
}

/// `request` carrying the transaction token of `incoming_headers`, if there was one.
pub fn propagate(
    incoming_headers: &HeaderMap,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    match incoming(incoming_headers) {
        Some(t) => request.header(TXN_TOKEN_HEADER, t),
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_the_incoming_transaction_token_and_nothing_else() {
        let mut h = HeaderMap::new();
        h.insert("txn-token", "eyJ.txn.sig".parse().unwrap());
        h.insert("authorization", "Bearer secret".parse().unwrap());
        let client = reqwest::Client::new();
        let req = propagate(&h, client.get("http://127.0.0.1/"))
            .build()
            .unwrap();
        assert_eq!(req.headers()["txn-token"], "eyJ.txn.sig");
        assert!(
            req.headers().get("authorization").is_none(),
            "the caller's token stays"
        );
        let none = propagate(&HeaderMap::new(), client.get("http://127.0.0.1/"))
            .build()
            .unwrap();
        assert!(none.headers().get("txn-token").is_none());
    }
}
