//! Vapi server-URL messages: `{ "message": { "type": …, "call": { "id": … }, … } }`.
//!
//! Read leniently: Vapi adds fields and message types over time, so unknown fields are
//! ignored and an optional field of an unexpected type reads as absent. Only what callgate
//! cannot work without (the envelope, the type, the call id of a call message) makes a
//! message malformed.

use super::telemetry;
use crate::time::parse_rfc3339;
use crate::MAX_CALL_ID;
use callgate_backend::records::CallTelemetry;
use serde_json::Value;
use std::fmt;

/// The call a message is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// `call.id`.
    pub id: String,
    /// `customer.number` (or `call.customer.number`): who is calling.
    pub customer: Option<String>,
    /// `phoneNumber.number` (or `call.phoneNumber.number`): the number called; for a
    /// Vapi SIP number, which has no `number`, its `sipUri`.
    pub number: Option<String>,
}

/// A Vapi message, as far as callgate cares.
#[derive(Clone, Debug, PartialEq)]
pub enum VapiMessage {
    /// An inbound call asks which assistant takes it (answer within 7.5 s).
    AssistantRequest(CallInfo),
    /// A call changed status.
    StatusUpdate {
        /// The call.
        call: CallInfo,
        /// `scheduled, queued, ringing, in-progress, forwarding, ended`.
        status: String,
        /// Present when it ended.
        ended_reason: Option<String>,
        /// `timestamp` (Unix ms, possibly fractional: read to the millisecond), when given.
        at: Option<u64>,
    },
    /// The call is over, with its facts.
    EndOfCallReport {
        /// The call.
        call: CallInfo,
        /// `endedReason`.
        ended_reason: Option<String>,
        /// `cost` (USD).
        cost: Option<f64>,
        /// `startedAt` (Unix ms).
        started_at: Option<u64>,
        /// `endedAt` (Unix ms).
        ended_at: Option<u64>,
        /// The assistant that took the call (see [`telemetry::assistant`]).
        assistant: Option<String>,
        /// What Vapi measured (see [`telemetry::read`]).
        telemetry: Option<Box<CallTelemetry>>,
    },
    /// Any other type (transcripts, tool calls, …): passed on to the upstream, if any.
    Other {
        /// `message.type`, at most 64 characters.
        kind: String,
        /// The number called, when the message says.
        number: Option<String>,
    },
}

impl VapiMessage {
    /// The message type for metrics: one of a fixed list.
    pub fn endpoint(&self) -> &'static str {
        match self {
            VapiMessage::AssistantRequest(_) => "assistant-request",
            VapiMessage::StatusUpdate { .. } => "status-update",
            VapiMessage::EndOfCallReport { .. } => "end-of-call-report",
            VapiMessage::Other { .. } => "other",
        }
    }

    /// The number called, when the message says.
    pub fn number(&self) -> Option<&str> {
        match self {
            VapiMessage::AssistantRequest(call)
            | VapiMessage::StatusUpdate { call, .. }
            | VapiMessage::EndOfCallReport { call, .. } => call.number.as_deref(),
            VapiMessage::Other { number, .. } => number.as_deref(),
        }
    }
}

/// Why a body is not a Vapi message (answered 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// Not JSON.
    NotJson(String),
    /// No `message` object.
    NoMessage,
    /// No string `message.type`.
    NoType,
    /// A call message without a usable `call.id`.
    NoCallId(&'static str),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::NotJson(e) => write!(f, "the body is not JSON: {e}"),
            MessageError::NoMessage => f.write_str("the body has no `message` object"),
            MessageError::NoType => f.write_str("`message.type` is missing or not a string"),
            MessageError::NoCallId(kind) => {
                write!(f, "a `{kind}` message needs `message.call.id` (1 to {MAX_CALL_ID} bytes)")
            }
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The number called: `phoneNumber.number`, else a SIP number's `phoneNumber.sipUri`
/// (also under `call`). At most 256 bytes: a flow names nothing longer.
fn called(m: &Value) -> Option<String> {
    let paths: [&[&str]; 4] = [
        &["phoneNumber", "number"],
        &["call", "phoneNumber", "number"],
        &["phoneNumber", "sipUri"],
        &["call", "phoneNumber", "sipUri"],
    ];
    paths.iter().find_map(|p| non_empty(str_at(m, p))).filter(|n| n.len() <= 256)
}

fn call_info(m: &Value, kind: &'static str) -> Result<CallInfo, MessageError> {
    let id = str_at(m, &["call", "id"])
        .filter(|id| !id.is_empty() && id.len() <= MAX_CALL_ID)
        .ok_or(MessageError::NoCallId(kind))?;
    Ok(CallInfo {
        id: id.to_owned(),
        customer: non_empty(str_at(m, &["customer", "number"]).or_else(|| str_at(m, &["call", "customer", "number"]))),
        number: called(m),
    })
}

/// `timestamp`: Unix ms as a number, possibly fractional.
fn millis(v: Option<&Value>) -> Option<u64> {
    let t = v?.as_f64().filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e16)?;
    Some(t as u64)
}

fn time_at(m: &Value, key: &str) -> Option<u64> {
    m.get(key).and_then(Value::as_str).and_then(parse_rfc3339)
}

/// One call of a `tool-calls` message: what an answer's result must name (the SDK's
/// `ToolCallResult` requires both `toolCallId` and `name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallRef {
    /// `id`.
    pub id: String,
    /// `function.name` (empty when the message names none).
    pub name: String,
}

/// The calls of a `tool-calls` message `m` (`toolCallList[]`, or
/// `toolWithToolCallList[].toolCall`), at most 64, those with an id Vapi could send.
fn tool_call_refs(m: &Value) -> Vec<ToolCallRef> {
    let name_of = |c: &Value| c["function"]["name"].as_str().map(str::to_owned);
    let calls: Vec<(Option<&str>, Option<String>)> = if let Some(list) = m["toolCallList"].as_array() {
        list.iter().take(64).map(|c| (c["id"].as_str(), name_of(c))).collect()
    } else if let Some(list) = m["toolWithToolCallList"].as_array() {
        list.iter()
            .take(64)
            .map(|c| {
                let call = &c["toolCall"];
                (call["id"].as_str(), name_of(call).or_else(|| name_of(c)))
            })
            .collect()
    } else {
        Vec::new()
    };
    calls
        .into_iter()
        .filter_map(|(id, name)| {
            let id = id.filter(|id| id.len() <= MAX_CALL_ID)?;
            let name = name.filter(|n| n.len() <= MAX_CALL_ID).unwrap_or_default();
            Some(ToolCallRef { id: id.to_owned(), name })
        })
        .collect()
}

/// The calls of a `tool-calls` webhook body (see [`ToolCallRef`]), at most 64.
pub fn tool_calls(body: &[u8]) -> Vec<ToolCallRef> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    tool_call_refs(&v["message"])
}

/// What a webhook says of the caller opting out of further calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOut {
    /// `call.id`.
    pub call_id: Option<String>,
    /// The customer's number (`customer.number`, or `call.customer.number`).
    pub number: Option<String>,
    /// The opt-out tool calls (a `tool-calls` message), for the answer.
    pub tool_calls: Vec<ToolCallRef>,
    /// What said so: `tool:NAME`, `structured:NAME`, `endedReason:REASON`.
    pub why: String,
}

/// The names that mean an opt-out (see `[compliance]` in the configuration).
#[derive(Clone, Copy, Debug, Default)]
pub struct OptOutNames<'a> {
    /// A tool (function) the assistant calls.
    pub tool: Option<&'a str>,
    /// An `analysis.structuredData` field or a structured output that is `true`.
    pub structured: Option<&'a str>,
    /// `endedReason` values.
    pub ended_reasons: &'a [String],
}

/// Whether the webhook `body` reports an opt-out: a `tool-calls` message that calls the
/// tool named (in `toolCallList[].function.name`, or
/// `toolWithToolCallList[].toolCall.function.name`), or an `end-of-call-report` whose
/// `endedReason` is one named, whose `analysis.structuredData.<name>` is `true`, or whose
/// `artifact.structuredOutputs` has an output of that name with the result `true`.
pub fn opt_out(body: &[u8], names: OptOutNames<'_>) -> Option<OptOut> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v.get("message")?;
    let found = |why: String, tool_calls: Vec<ToolCallRef>| OptOut {
        call_id: str_at(m, &["call", "id"]).filter(|id| !id.is_empty() && id.len() <= MAX_CALL_ID).map(str::to_owned),
        number: non_empty(str_at(m, &["customer", "number"]).or_else(|| str_at(m, &["call", "customer", "number"]))),
        tool_calls,
        why,
    };
    match m.get("type").and_then(Value::as_str)? {
        "tool-calls" => {
            let tool = names.tool?;
            let calls: Vec<ToolCallRef> = tool_call_refs(m).into_iter().filter(|c| c.name == tool).collect();
            (!calls.is_empty()).then(|| found(format!("tool:{tool}"), calls))
        }
        "end-of-call-report" => {
            if let Some(reason) = m.get("endedReason").and_then(Value::as_str) {
                if names.ended_reasons.iter().any(|r| r == reason) {
                    return Some(found(format!("endedReason:{reason}"), Vec::new()));
                }
            }
            let field = names.structured?;
            let analysis = m.get("analysis").or_else(|| m.get("call").and_then(|c| c.get("analysis")));
            let in_analysis = analysis.and_then(|a| a.get("structuredData")).and_then(|d| d.get(field));
            let outputs = m.get("artifact").and_then(|a| a.get("structuredOutputs")).and_then(Value::as_object);
            let in_outputs = outputs.is_some_and(|o| {
                o.values().take(64).any(|out| out["name"].as_str() == Some(field) && out["result"] == Value::Bool(true))
            });
            (in_analysis == Some(&Value::Bool(true)) || in_outputs)
                .then(|| found(format!("structured:{field}"), Vec::new()))
        }
        _ => None,
    }
}

/// Reads one webhook body.
pub fn parse(body: &[u8]) -> Result<VapiMessage, MessageError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let m = v.get("message").filter(|m| m.is_object()).ok_or(MessageError::NoMessage)?;
    let kind = m.get("type").and_then(Value::as_str).ok_or(MessageError::NoType)?;
    Ok(match kind {
        "assistant-request" => VapiMessage::AssistantRequest(call_info(m, "assistant-request")?),
        "status-update" => VapiMessage::StatusUpdate {
            call: call_info(m, "status-update")?,
            status: m.get("status").and_then(Value::as_str).unwrap_or("").to_owned(),
            ended_reason: non_empty(m.get("endedReason").and_then(Value::as_str)),
            at: millis(m.get("timestamp")),
        },
        "end-of-call-report" => VapiMessage::EndOfCallReport {
            call: call_info(m, "end-of-call-report")?,
            ended_reason: non_empty(m.get("endedReason").and_then(Value::as_str)),
            cost: m.get("cost").and_then(Value::as_f64).filter(|c| c.is_finite() && *c >= 0.0),
            started_at: time_at(m, "startedAt"),
            ended_at: time_at(m, "endedAt"),
            assistant: telemetry::assistant(m),
            telemetry: telemetry::read(m).map(Box::new),
        },
        other => VapiMessage::Other { kind: other.chars().take(64).collect(), number: called(m) },
    })
}
