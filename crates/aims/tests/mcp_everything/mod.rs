//! The MCP conformance suite's "everything" server for its server scenarios (the tools,
//! resources, prompts and completion each scenario's description asks for), on the Rust MCP
//! SDK (`rmcp`), to put behind the gateway. A test fixture: results are written as the wire
//! JSON the scenarios name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ErrorData, GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

/// A 1×1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A short WAV header with no samples.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

/// A result from its wire JSON, complete (2026-07-28 `resultType`, SEP-2322).
fn wire<T: serde::de::DeserializeOwned>(mut v: Value) -> T {
    if let Some(o) = v.as_object_mut() {
        o.entry("resultType").or_insert(json!("complete"));
    }
    serde_json::from_value(v).expect("the fixture writes valid MCP")
}

mod mrtr;

#[derive(Debug, Clone, Default)]
struct Everything;

fn tool(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description,
           "inputSchema": {"type": "object", "properties": {}}})
}

impl ServerHandler for Everything {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .enable_completions()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(wire(json!({"tools": [
            tool("test_simple_text", "Simple text"),
            tool("test_image_content", "An image"),
            tool("test_audio_content", "Audio"),
            tool("test_embedded_resource", "An embedded resource"),
            tool("test_multiple_content_types", "Mixed content"),
            tool("test_error_handling", "Always fails"),
            tool("test_tool_with_progress", "Reports progress"),
            tool("test_input_required_result_elicitation", "Asks the user's name"),
            tool("test_input_required_result_sampling", "Asks the client's model"),
            tool("test_input_required_result_list_roots", "Asks the client's roots"),
            tool("test_input_required_result_request_state", "Round-trips its state"),
            tool("test_input_required_result_multiple_inputs", "Asks three things at once"),
            tool("test_input_required_result_multi_round", "Asks twice"),
            tool("test_input_required_result_tampered_state", "Checks its state's integrity"),
            tool("test_input_required_result_capabilities", "Asks only what the client can answer"),
            tool("test_missing_capability", "Needs the client's sampling"),
            tool("test_streaming_elicitation", "Asks the user mid-call"),
            tool("test_logging_tool", "Logs only at a level the client asked for"),
            // SEP-1613, SEP-2106: 2020-12 keywords the listing must carry unchanged.
            {"name": "json_schema_2020_12_tool",
             "description": "Tool with JSON Schema 2020-12 features",
             "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"}, "email": {"type": "string"}},
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}},
                       "required": ["contactMethod"]},
                "then": {"required": ["phone"]}, "else": {"required": ["email"]},
                "additionalProperties": false}},
        ]})))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if mrtr::handles(&request.name) {
            let params = serde_json::to_value(&request).unwrap_or_default();
            let meta = serde_json::to_value(&context.meta).unwrap_or_default();
            return match mrtr::tool(&request.name, &params, &meta)? {
                mrtr::Answer::Input(r) => Ok(CallToolResponse::InputRequired(r)),
                mrtr::Answer::Done(text) => Ok(CallToolResponse::Complete(wire(
                    json!({"content": [{"type": "text", "text": text}]}),
                ))),
            };
        }
        let content = match request.name.as_ref() {
            "test_simple_text" => {
                json!([{"type": "text", "text": "This is a simple text response for testing."}])
            }
            "test_image_content" => {
                json!([{"type": "image", "data": PNG, "mimeType": "image/png"}])
            }
            "test_audio_content" => {
                json!([{"type": "audio", "data": WAV, "mimeType": "audio/wav"}])
            }
            "test_embedded_resource" => json!([{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."}}]),
            "test_multiple_content_types" => json!([
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ]),
            // SEP-2575: no log message unless the request's `_meta` asks for a level; this
            // fixture never logs.
            "test_logging_tool" => json!([{"type": "text", "text": "done, quietly"}]),
            "json_schema_2020_12_tool" => json!([{"type": "text", "text": "schema kept"}]),
            "test_error_handling" => {
                let r: CallToolResult = wire(json!({"isError": true, "content": [
                    {"type": "text", "text": "This tool intentionally returns an error for testing"}]}));
                return Ok(CallToolResponse::Complete(r));
            }
            "test_tool_with_progress" => {
                if let Some(token) = context.meta.get_progress_token() {
                    for progress in [0.0, 50.0, 100.0] {
                        let note = ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0);
                        context.peer.notify_progress(note).await.ok();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                json!([{"type": "text", "text": "Progress tool completed"}])
            }
            other => {
                return Err(ErrorData::invalid_params(format!("no tool {other}"), None));
            }
        };
        Ok(CallToolResponse::Complete(wire(
            json!({"content": content}),
        )))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(wire(json!({"resources": [
            {"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"},
            {"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png"},
        ]})))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(wire(json!({"resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template",
             "mimeType": "application/json"},
        ]})))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = if uri == "test://static-text" {
            json!({"uri": uri, "mimeType": "text/plain",
                   "text": "This is the content of the static text resource."})
        } else if uri == "test://static-binary" {
            json!({"uri": uri, "mimeType": "image/png", "blob": PNG})
        } else if let Some(id) = uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
        {
            json!({"uri": uri, "mimeType": "application/json",
                   "text": json!({"id": id, "templateTest": true,
                                  "data": format!("Data for ID: {id}")}).to_string()})
        } else {
            // SEP-2164: Invalid Params, naming the URI.
            return Err(ErrorData::invalid_params(
                "Resource not found",
                Some(json!({"uri": uri})),
            ));
        };
        let r: ReadResourceResult = wire(json!({"contents": [contents]}));
        Ok(ReadResourceResponse::Complete(r))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(wire(json!({"prompts": [
            {"name": "test_simple_prompt", "description": "A simple prompt"},
            {"name": "test_prompt_with_arguments", "description": "A prompt with arguments",
             "arguments": [{"name": "arg1", "required": true}, {"name": "arg2", "required": true}]},
            {"name": "test_prompt_with_embedded_resource", "description": "An embedded resource",
             "arguments": [{"name": "resourceUri", "required": true}]},
            {"name": "test_prompt_with_image", "description": "An image"},
            {"name": "test_input_required_result_prompt", "description": "Asks for context"},
        ]})))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arg = |name: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if request.name == "test_input_required_result_prompt" {
            let params = serde_json::to_value(&request).unwrap_or_default();
            return match mrtr::prompt(&params) {
                mrtr::Answer::Input(r) => Ok(GetPromptResponse::InputRequired(r)),
                mrtr::Answer::Done(text) => Ok(GetPromptResponse::Complete(wire(json!({
                    "messages": [{"role": "user", "content": {"type": "text", "text": text}}]
                })))),
            };
        }
        let messages = match request.name.as_str() {
            "test_simple_prompt" => json!([{"role": "user", "content": {"type": "text",
                "text": "This is a simple prompt for testing."}}]),
            "test_prompt_with_arguments" => json!([{"role": "user", "content": {"type": "text",
                "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}}]),
            "test_prompt_with_embedded_resource" => json!([
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": arg("resourceUri"), "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": {"type": "text",
                    "text": "Please process the embedded resource above."}}]),
            "test_prompt_with_image" => json!([
                {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}]),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no prompt {other}"),
                    None,
                ));
            }
        };
        let r: GetPromptResult = wire(json!({"messages": messages}));
        Ok(GetPromptResponse::Complete(r))
    }

    async fn complete(
        &self,
        _: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Ok(wire(
            json!({"completion": {"values": [], "total": 0, "hasMore": false}}),
        ))
    }
}

/// Serves the fixture at `http://ADDR/everything` on a thread of its own until the test ends.
pub fn serve() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mcp: StreamableHttpService<Everything, LocalSessionManager> =
                StreamableHttpService::new(
                    || Ok(Everything),
                    Default::default(),
                    StreamableHttpServerConfig::default().with_legacy_session_mode(false),
                );
            let app = axum::Router::new().nest_service("/everything", mcp);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}
