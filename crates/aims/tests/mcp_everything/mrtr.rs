//! Multi-round-trip requests (MCP 2026-07-28, SEP-2322): the suite's `input-required-result-*`
//! tools and prompt. A request without the answers it needs gets an `InputRequiredResult`;
//! the retry with them (and the `requestState` echoed, sealed with an HMAC so a client cannot
//! forge it) completes.

use std::sync::LazyLock;

use rmcp::model::{ErrorData, InputRequiredResult, RequestStateCodec};
use serde_json::{Map, Value, json};

/// What a request gets: more questions, or its answer.
pub enum Answer {
    Input(InputRequiredResult),
    Done(String),
}

static CODEC: LazyLock<RequestStateCodec> = LazyLock::new(|| {
    let key = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    RequestStateCodec::try_new(key).expect("a 32-byte key")
});

fn elicit(message: &str, field: &str, kind: &str) -> Value {
    json!({"method": "elicitation/create", "params": {"message": message,
        "requestedSchema": {"type": "object", "properties": {field: {"type": kind}},
                            "required": [field]}}})
}

fn sample(text: &str, max: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        "maxTokens": max}})
}

fn roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

fn input(requests: Value, state: Option<&Value>) -> Answer {
    let mut r = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(state) = state {
        r["requestState"] = json!(CODEC.seal_json(state).expect("state seals"));
    }
    Answer::Input(serde_json::from_value(r).expect("a valid InputRequiredResult"))
}

/// An accepted elicitation's `field`, when the response is one.
fn accepted(response: Option<&Value>, field: &str) -> Option<String> {
    let r = response?;
    if r.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    r.get("content")?
        .get(field)?
        .as_str()
        .map(str::to_owned)
        .or_else(|| r.get("content")?.get(field).map(Value::to_string))
}

fn sampled(response: Option<&Value>) -> Option<String> {
    response?
        .get("content")?
        .get("text")?
        .as_str()
        .map(str::to_owned)
}

fn listed_roots(response: Option<&Value>) -> Option<Vec<String>> {
    response?.get("roots")?.as_array().map(|roots| {
        roots
            .iter()
            .filter_map(|r| r.get("uri").and_then(Value::as_str).map(str::to_owned))
            .collect()
    })
}

/// The state the client echoed, opened; `Err` when it does not verify (tampered or forged).
fn opened(params: &Value) -> Result<Option<Value>, ErrorData> {
    match params.get("requestState").and_then(Value::as_str) {
        None => Ok(None),
        Some(sealed) => CODEC.open_json::<Value>(sealed).map(Some).map_err(|_| {
            ErrorData::invalid_params("requestState failed its integrity check", None)
        }),
    }
}

/// Whether `tools/call` of `name` is answered here.
pub fn handles(name: &str) -> bool {
    name.starts_with("test_input_required_result_")
        || name == "test_missing_capability"
        || name == "test_streaming_elicitation"
}

/// The client's declared capabilities (MCP 2026-07-28 per-request `_meta`).
fn client_capabilities(meta: &Value) -> Value {
    meta.get("io.modelcontextprotocol/clientCapabilities")
        .cloned()
        .unwrap_or_default()
}

/// `tools/call` of the tool `name`.
pub fn tool(name: &str, params: &Value, meta: &Value) -> Result<Answer, ErrorData> {
    let empty = Map::new();
    let responses = params
        .get("inputResponses")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let state = opened(params)?;
    let round = |tool: &str, n: u64| Some(json!({"tool": tool, "round": n}));
    Ok(match name {
        // SEP-2575: a capability the client did not declare is not relied on.
        "test_missing_capability" => {
            if client_capabilities(meta).get("sampling").is_none() {
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode(-32021),
                    "this tool needs the client's sampling capability",
                    Some(json!({"requiredCapabilities": {"sampling": {}}})),
                ));
            }
            match sampled(responses.get("answer")) {
                Some(text) => Answer::Done(text),
                None => input(json!({"answer": sample("Say something", 20)}), None),
            }
        }
        // SEP-2575: a question mid-call is an InputRequiredResult, never an independent
        // request on the response stream.
        "test_streaming_elicitation" => match accepted(responses.get("user_name"), "name") {
            Some(name) => Answer::Done(format!("Hello, {name}!")),
            None => input(
                json!({"user_name": elicit("What is your name?", "name", "string")}),
                None,
            ),
        },
        "test_input_required_result_elicitation" => {
            match accepted(responses.get("user_name"), "name") {
                Some(name) => Answer::Done(format!("Hello, {name}!")),
                None => input(
                    json!({"user_name": elicit("What is your name?", "name", "string")}),
                    None,
                ),
            }
        }
        "test_input_required_result_sampling" => match sampled(responses.get("capital_question")) {
            Some(text) => Answer::Done(format!("The model said: {text}")),
            None => input(
                json!({"capital_question": sample("What is the capital of France?", 100)}),
                None,
            ),
        },
        "test_input_required_result_list_roots" => {
            match listed_roots(responses.get("client_roots")) {
                Some(roots) => Answer::Done(format!("Roots: {}", roots.join(", "))),
                None => input(json!({"client_roots": roots()}), None),
            }
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let expected = round(name, 1);
            match (state, responses.is_empty()) {
                (Some(s), false) if Some(&s) == expected.as_ref() => {
                    Answer::Done("state-ok: the request state verified".into())
                }
                (Some(_), false) => {
                    return Err(ErrorData::invalid_params(
                        "requestState is not this request's",
                        None,
                    ));
                }
                _ => input(
                    json!({"confirm": elicit("Please confirm", "ok", "boolean")}),
                    expected.as_ref(),
                ),
            }
        }
        "test_input_required_result_multiple_inputs" => {
            let expected = round(name, 1);
            let name_given = accepted(responses.get("user_name"), "name");
            let greeting = sampled(responses.get("greeting"));
            let roots_given = listed_roots(responses.get("client_roots"));
            match (name_given, greeting, roots_given) {
                (Some(n), Some(g), Some(r)) if state == expected => {
                    Answer::Done(format!("{g} {n} (roots: {})", r.join(", ")))
                }
                _ => input(
                    json!({"user_name": elicit("What is your name?", "name", "string"),
                           "greeting": sample("Generate a greeting", 50),
                           "client_roots": roots()}),
                    expected.as_ref(),
                ),
            }
        }
        "test_input_required_result_multi_round" => {
            let step1 = accepted(responses.get("step1"), "name");
            let step2 = accepted(responses.get("step2"), "color");
            match (
                state
                    .as_ref()
                    .and_then(|s| s.get("round"))
                    .and_then(Value::as_u64),
                step1,
                step2,
            ) {
                (Some(2), _, Some(color)) => {
                    let name = state
                        .as_ref()
                        .and_then(|s| s.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    Answer::Done(format!("{name} likes {color}"))
                }
                (Some(1), Some(user), _) => input(
                    json!({"step2": elicit("Step 2: What is your favorite color?", "color", "string")}),
                    Some(&json!({"tool": name, "round": 2, "name": user})),
                ),
                _ => input(
                    json!({"step1": elicit("Step 1: What is your name?", "name", "string")}),
                    round(name, 1).as_ref(),
                ),
            }
        }
        "test_input_required_result_capabilities" => {
            if !responses.is_empty() {
                Answer::Done("thanks for the answers".into())
            } else {
                let caps = client_capabilities(meta);
                let mut requests = Map::new();
                if caps.get("elicitation").is_some() {
                    requests.insert(
                        "user_name".into(),
                        elicit("What is your name?", "name", "string"),
                    );
                }
                if caps.get("sampling").is_some() {
                    requests.insert("greeting".into(), sample("Generate a greeting", 50));
                }
                if caps.get("roots").is_some() {
                    requests.insert("client_roots".into(), roots());
                }
                if requests.is_empty() {
                    Answer::Done("nothing to ask a client that can answer nothing".into())
                } else {
                    input(Value::Object(requests), None)
                }
            }
        }
        other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
    })
}

/// `prompts/get` of `test_input_required_result_prompt`.
pub fn prompt(params: &Value) -> Answer {
    let context = params
        .get("inputResponses")
        .and_then(|r| accepted(r.get("user_context"), "context"));
    match context {
        Some(c) => Answer::Done(format!("Use this context: {c}")),
        None => input(
            json!({"user_context": elicit("What context should the prompt use?", "context", "string")}),
            None,
        ),
    }
}
