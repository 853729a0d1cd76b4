//! MCP over the streamable HTTP transport, as the gateway reads it (MCP 2025-11-25 / 2026-07-28
//! authorization; AIMS AZ-37): which JSON-RPC method a POST carries, the tool and arguments of
//! a `tools/call` (visible to policy), and `tools/list` answers filtered to what the caller may
//! call. JSON-RPC batches are refused (MCP removed them in 2025-06-18).
//!
//! MCP 2026-07-28 (SEP-2243) mirrors the body's `method` into `Mcp-Method` and its name-shaped
//! field into `Mcp-Name` so that intermediaries can route without reading bodies. The gateway
//! decides on the body; a server or router behind it may act on the headers. Both must name one
//! thing: a header that disagrees with the body is refused (HTTP 400, JSON-RPC −32020) whatever
//! the protocol version, and from 2026-07-28 on a missing one is too.

use http::HeaderMap;
use rmcp::model::{CallToolRequestParams, ErrorCode};
use serde_json::{Map, Value, json};

/// SEP-2243: the header that mirrors the body's `method`.
pub const MCP_METHOD: &str = "mcp-method";
/// SEP-2243: the header that mirrors the body's name-shaped field.
pub const MCP_NAME: &str = "mcp-name";
/// The protocol version a request declares.
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The first revision that requires the routing headers.
const HEADERS_REQUIRED_FROM: &str = "2026-07-28";
/// SEP-2243: JSON-RPC error for a routing header that does not match the body.
pub const HEADER_MISMATCH: ErrorCode = ErrorCode(-32020);

/// What an MCP POST asks.
#[derive(Debug, Clone, PartialEq)]
pub enum McpRequest {
    /// `tools/call` of `name` with `arguments`.
    CallTool {
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Map<String, Value>,
    },
    /// `tools/list`.
    ListTools,
    /// Any other method or notification (initialize, ping, resources/…).
    Other(String),
}

/// A body that is no acceptable JSON-RPC message: the JSON-RPC error to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRpcError {
    /// The request id, when it could be read.
    pub id: Value,
    /// JSON-RPC error code.
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
}

impl JsonRpcError {
    /// The JSON-RPC error response body.
    pub fn body(&self) -> Value {
        json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code.0, "message": self.message}})
    }
}

/// Reads a JSON-RPC message from a POST body and checks the routing headers that mirror it.
pub fn parse(body: &[u8], headers: &HeaderMap) -> Result<McpRequest, JsonRpcError> {
    let fail = |id: Value, code: ErrorCode, message: &str| JsonRpcError {
        id,
        code,
        message: message.to_owned(),
    };
    let msg: Value = serde_json::from_slice(body)
        .map_err(|_| fail(Value::Null, ErrorCode::PARSE_ERROR, "Parse error"))?;
    let Value::Object(obj) = &msg else {
        return Err(fail(
            Value::Null,
            ErrorCode::INVALID_REQUEST,
            "a JSON-RPC message is an object (batches are not part of MCP)",
        ));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(fail(
            id,
            ErrorCode::INVALID_REQUEST,
            "jsonrpc must be \"2.0\"",
        ));
    }
    let Some(method) = obj.get("method") else {
        // A response or an error the client sends back to a server request.
        check_routing_headers(headers, None, None).map_err(|m| fail(id, HEADER_MISMATCH, &m))?;
        return Ok(McpRequest::Other(String::new()));
    };
    let Some(method) = method.as_str() else {
        return Err(fail(
            id,
            ErrorCode::INVALID_REQUEST,
            "method must be a string",
        ));
    };
    let params = obj.get("params");
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    };
    let name = name_field.map(|f| params.and_then(|p| p.get(f)).and_then(Value::as_str));
    check_routing_headers(headers, Some(method), name)
        .map_err(|m| fail(id.clone(), HEADER_MISMATCH, &m))?;
    match method {
        "tools/call" => {
            let params = obj.get("params").cloned().unwrap_or(Value::Null);
            let p: CallToolRequestParams = serde_json::from_value(params).map_err(|e| {
                fail(
                    id.clone(),
                    ErrorCode::INVALID_PARAMS,
                    &format!("tools/call params: {e}"),
                )
            })?;
            Ok(McpRequest::CallTool {
                name: p.name.into_owned(),
                arguments: p.arguments.unwrap_or_default(),
            })
        }
        "tools/list" => Ok(McpRequest::ListTools),
        other => Ok(McpRequest::Other(other.to_owned())),
    }
}

/// SEP-2243: `Mcp-Method` must be `method` and `Mcp-Name` the name-shaped field (`name`:
/// `Some` for a method that has one, its value `None` when the body lacks it). A header present
/// must match; from [`HEADERS_REQUIRED_FROM`] on, a header the body calls for must be present.
/// Values are compared exactly (they are case-sensitive) after trimming optional whitespace
/// (RFC 9110 §5.5); an `=?base64?…?=` value is decoded first, as SEP-2243 encodes values that
/// are not plain visible ASCII.
fn check_routing_headers(
    headers: &HeaderMap,
    method: Option<&str>,
    name: Option<Option<&str>>,
) -> Result<(), String> {
    let required = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() >= HEADERS_REQUIRED_FROM);
    let check = |header: &str, body: Option<&str>| -> Result<(), String> {
        let mut values = headers.get_all(header).iter();
        let value = match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Err(format!("{header} appears more than once")),
            (None, _) => {
                return match body {
                    Some(_) if required => Err(format!("{header} is missing")),
                    _ => Ok(()),
                };
            }
            (Some(v), None) => header_value(v.as_bytes())
                .ok_or_else(|| format!("{header} is not a valid value"))?,
        };
        match body {
            Some(b) if b == value => Ok(()),
            Some(b) => Err(format!(
                "{header} {value:?} does not match the body's {b:?}"
            )),
            None => Err(format!("{header} {value:?} names nothing in the body")),
        }
    };
    check(MCP_METHOD, method)?;
    check(MCP_NAME, name.flatten())
}

/// A routing header's value: trimmed of optional whitespace, base64-decoded when wrapped as
/// `=?base64?…?=`; `None` when it is not text or not valid base64.
fn header_value(raw: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(text.to_owned()),
    }
}

/// Keeps, in a `tools/list` result, the tools `allowed` says yes to. The body is JSON or a
/// `text/event-stream` whose `data:` lines carry JSON-RPC messages; anything else is left as it
/// is.
pub fn filter_tool_list(
    body: &[u8],
    event_stream: bool,
    allowed: &dyn Fn(&str) -> bool,
) -> Vec<u8> {
    let filter_message = |msg: &mut Value| {
        if let Some(tools) = msg
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        {
            tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(allowed));
        }
    };
    if !event_stream {
        return match serde_json::from_slice::<Value>(body) {
            Ok(mut msg) => {
                filter_message(&mut msg);
                msg.to_string().into_bytes()
            }
            Err(_) => body.to_vec(),
        };
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return body.to_vec();
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        let ending = &line[content.len()..];
        match content
            .strip_prefix("data:")
            .map(str::trim_start)
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        {
            Some(mut msg) => {
                filter_message(&mut msg);
                out.push_str("data: ");
                out.push_str(&msg.to_string());
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_tool_calls_and_refuses_bad_messages() {
        let none = HeaderMap::new();
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read","arguments":{"path":"/a"}}}"#;
        assert_eq!(
            parse(call, &HeaderMap::new()).unwrap(),
            McpRequest::CallTool {
                name: "read".into(),
                arguments: json!({"path": "/a"}).as_object().unwrap().clone()
            }
        );
        assert_eq!(
            parse(
                br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
                &none
            )
            .unwrap(),
            McpRequest::Other("initialize".into())
        );
        assert_eq!(
            parse(b"{nope", &none).unwrap_err().code,
            ErrorCode::PARSE_ERROR
        );
        assert_eq!(
            parse(b"[]", &none).unwrap_err().code,
            ErrorCode::INVALID_REQUEST
        );
        let e = parse(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}"#,
            &none,
        )
        .unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::INVALID_PARAMS, json!(3)));
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, &none)
                .unwrap_err()
                .code,
            ErrorCode::INVALID_REQUEST
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// SEP-2243, the conformance suite's `http-header-validation` cases and the ones a gateway
    /// adds: the decision and the server behind it read one tool.
    #[test]
    fn routing_headers_must_name_what_the_body_does() {
        const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");
        let list = br#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#;
        let call = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read","arguments":{}}}"#;
        let read =
            br#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"file:///a b"}}"#;
        let ok = |body: &[u8], h: &[(&'static str, &str)]| parse(body, &headers(h)).is_ok();
        let refused = |body: &[u8], h: &[(&'static str, &str)]| {
            let e = parse(body, &headers(h)).unwrap_err();
            assert_eq!(e.code, HEADER_MISMATCH, "{h:?}");
            assert_ne!(e.id, Value::Null);
            true
        };
        assert!(ok(list, &[V, ("mcp-method", "tools/list")]));
        assert!(ok(list, &[V, ("MCP-METHOD", "tools/list")]));
        assert!(ok(
            call,
            &[V, ("mcp-method", "tools/call"), ("mcp-name", "  read\t")]
        ));
        assert!(ok(
            call,
            &[
                V,
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?cmVhZA==?=")
            ]
        ));
        assert!(ok(
            read,
            &[
                V,
                ("mcp-method", "resources/read"),
                ("mcp-name", "=?base64?ZmlsZTovLy9hIGI=?=")
            ]
        ));
        assert!(refused(list, &[V, ("mcp-method", "prompts/list")]));
        assert!(refused(list, &[V]));
        assert!(refused(list, &[V, ("mcp-method", "TOOLS/LIST")]));
        assert!(refused(call, &[V, ("mcp-method", "tools/call")]));
        assert!(refused(
            call,
            &[V, ("mcp-method", "tools/call"), ("mcp-name", "delete")]
        ));
        assert!(refused(
            call,
            &[V, ("mcp-method", "tools/call"), ("mcp-name", "Read")]
        ));
        assert!(refused(
            call,
            &[
                V,
                ("mcp-method", "tools/call"),
                ("mcp-name", "read"),
                ("mcp-name", "read")
            ]
        ));
        assert!(refused(
            call,
            &[
                V,
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?cmVhZA?=")
            ]
        ));
        assert!(refused(
            list,
            &[V, ("mcp-method", "tools/list"), ("mcp-name", "read")]
        ));
        // Before 2026-07-28 the headers are optional, but one sent still has to match: a
        // router behind the gateway may read it whatever version the client claims.
        assert!(ok(call, &[]));
        assert!(ok(call, &[("mcp-protocol-version", "2025-11-25")]));
        assert!(refused(
            call,
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-name", "delete")
            ]
        ));
        assert!(refused(call, &[("mcp-method", "tools/list")]));
        // A response carries no method: a header claiming one is refused.
        let response = br#"{"jsonrpc":"2.0","id":9,"result":{}}"#;
        assert!(ok(response, &[V]));
        assert!(refused(response, &[V, ("mcp-method", "tools/call")]));
    }

    #[test]
    fn filters_tool_lists_in_json_and_event_streams() {
        let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}});
        let only_a = |n: &str| n == "a";
        let out: Value = serde_json::from_slice(&filter_tool_list(
            list.to_string().as_bytes(),
            false,
            &only_a,
        ))
        .unwrap();
        assert_eq!(out["result"]["tools"], json!([{"name": "a"}]));
        let sse = format!("event: message\r\nid: 1\r\ndata: {list}\r\n\r\n");
        let out = String::from_utf8(filter_tool_list(sse.as_bytes(), true, &only_a)).unwrap();
        assert!(
            out.starts_with("event: message\r\nid: 1\r\ndata: {"),
            "{out}"
        );
        assert!(
            out.contains(r#""name":"a""#) && !out.contains(r#""name":"b""#),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\n"));
    }
}
