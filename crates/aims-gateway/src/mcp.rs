//! MCP over the streamable HTTP transport, as the gateway reads it (MCP 2025-11-25 / 2026-07-28
//! authorization; AIMS AZ-37): which JSON-RPC method a POST carries, the tool and arguments of
//! a `tools/call` (visible to policy), and `tools/list` answers filtered to what the caller may
//! call. JSON-RPC batches are refused (MCP removed them in 2025-06-18).

use rmcp::model::{CallToolRequestParams, ErrorCode};
use serde_json::{Map, Value, json};

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

/// Reads a JSON-RPC message from a POST body.
pub fn parse(body: &[u8]) -> Result<McpRequest, JsonRpcError> {
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
        return Ok(McpRequest::Other(String::new()));
    };
    let Some(method) = method.as_str() else {
        return Err(fail(
            id,
            ErrorCode::INVALID_REQUEST,
            "method must be a string",
        ));
    };
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
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read","arguments":{"path":"/a"}}}"#;
        assert_eq!(
            parse(call).unwrap(),
            McpRequest::CallTool {
                name: "read".into(),
                arguments: json!({"path": "/a"}).as_object().unwrap().clone()
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#).unwrap(),
            McpRequest::Other("initialize".into())
        );
        assert_eq!(parse(b"{nope").unwrap_err().code, ErrorCode::PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, ErrorCode::INVALID_REQUEST);
        let e =
            parse(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}"#)
                .unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::INVALID_PARAMS, json!(3)));
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#)
                .unwrap_err()
                .code,
            ErrorCode::INVALID_REQUEST
        );
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
