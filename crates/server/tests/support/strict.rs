//! What the real Vapi and Twilio APIs accept in an outbound-call request, enforced by the
//! test fakes: the property lists, types and enums of the official SDKs
//! (`tests/fixtures/provider-schemas.json`, written by `scripts/provider-schemas` from
//! `vapi-server-sdk` and `twilio`), plus the limits their documentation states.
//!
//! Vapi validates `POST /call` with a whitelist: an unknown property anywhere is a 400
//! `{"message": ["property X should not exist"], "error": "Bad Request", "statusCode": 400}`.
//! Twilio answers an unknown or invalid parameter with a 400 and an error code.
//!
//! Included with `#[path]` by the fakes, so it depends on nothing but serde_json.
#![allow(dead_code)]

use serde_json::Value;
use std::sync::OnceLock;

const SCHEMAS: &str = include_str!("../fixtures/provider-schemas.json");

fn schemas() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(SCHEMAS).expect("provider-schemas.json is JSON"))
}

/// The problems of a Vapi `POST /call` body, in Vapi's words (empty: accepted).
pub fn vapi_create_call(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if !body.is_object() {
        out.push("body must be an object".to_string());
        return out;
    }
    check_object(&schemas()["vapi"], "CreateCallDto", body, "", &mut out);
    if body["customer"].is_null() && body["customerId"].is_null() && body["customers"].is_null() {
        out.push("customer or customerId is required for an outbound phone call".into());
    }
    out
}

/// The problems of what an end-of-call report `message` carries that callgate reads
/// (`artifact.performanceMetrics`, `costs[]`), against the SDK's `PerformanceMetrics`,
/// `TurnLatency` and `ServerMessageEndOfCallReportCostsItem_*` (empty: a shape Vapi
/// could send). The fakes check every report they send with it.
pub fn vapi_end_of_call_report(message: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let models = &schemas()["vapi"];
    let perf = &message["artifact"]["performanceMetrics"];
    if !perf.is_null() {
        check_object(models, "PerformanceMetrics", perf, "artifact.performanceMetrics", &mut out);
    }
    for (i, item) in message["costs"].as_array().into_iter().flatten().enumerate() {
        let at = format!("costs.{i}");
        let Some(kind) = item["type"].as_str() else {
            out.push(format!("{at}.type must be a string"));
            continue;
        };
        let Some(props) = models["EndOfCallReportCostsItem"][kind].as_object() else {
            out.push(format!("{at}.type `{kind}` is not a cost type of the SDK"));
            continue;
        };
        let wrapped = serde_json::json!({ "costs": { kind: props } });
        check_object(&wrapped["costs"], kind, item, &at, &mut out);
    }
    out
}

/// The problems of a `tool-calls` server `message` (what the fakes send as Vapi), against
/// the SDK's `ServerMessageToolCalls`: both `toolCallList` (each a `ToolCall` whose
/// `function.arguments` is a JSON string) and `toolWithToolCallList` (tagged by `type`)
/// are required.
pub fn vapi_tool_calls_message(message: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let models = &schemas()["vapi"];
    if message["type"] != "tool-calls" {
        out.push("type must be `tool-calls`".into());
    }
    check_object(models, "ServerMessageToolCalls", message, "", &mut out);
    for (i, item) in message["toolWithToolCallList"].as_array().into_iter().flatten().enumerate() {
        let at = format!("toolWithToolCallList.{i}");
        let Some(kind) = item["type"].as_str() else {
            out.push(format!("{at}.type must be a string"));
            continue;
        };
        let Some(props) = models["ToolWithToolCallListItem"][kind].as_object() else {
            out.push(format!("{at}.type `{kind}` is not a tool type of the SDK"));
            continue;
        };
        // The member's own properties, with the models its `toolCall` refers to.
        let member = serde_json::json!({
            kind: props,
            "ToolCall": models["ToolCall"],
            "ToolCallFunction": models["ToolCallFunction"],
        });
        check_object(&member, kind, item, &at, &mut out);
    }
    out
}

/// The problems of callgate's answer to a `tool-calls` message, against the SDK's
/// `ServerMessageResponseToolCalls` (each result needs `toolCallId` and `name`).
pub fn vapi_tool_calls_answer(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check_object(&schemas()["vapi"], "ServerMessageResponseToolCalls", answer, "", &mut out);
    out
}

/// The names of a model's properties in the fixture (e.g. `PerformanceMetrics`), or of
/// the cost types (`EndOfCallReportCostsItem`).
pub fn vapi_model_fields(model: &str) -> Vec<String> {
    schemas()["vapi"][model].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn check_object(models: &Value, model: &str, v: &Value, at: &str, out: &mut Vec<String>) {
    let Some(props) = models[model].as_object() else { return };
    let Some(obj) = v.as_object() else {
        out.push(format!("{} must be an object", name(at)));
        return;
    };
    for (k, val) in obj {
        let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        match props.get(k) {
            None => out.push(format!("property {path} should not exist")),
            Some(t) => check_value(models, t, val, &path, out),
        }
    }
    // Only the models read with their required fields (what Vapi sends, what it reads
    // back) carry `required`; the request models leave that to the dialer's own checks.
    for (k, t) in props {
        if t["required"].as_bool() == Some(true) && obj.get(k).is_none_or(Value::is_null) {
            let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            out.push(format!("{path} is required"));
        }
    }
}

fn check_value(models: &Value, t: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    let ok = match t["type"].as_str().unwrap_or("any") {
        "string" => {
            let Some(s) = v.as_str() else {
                out.push(format!("{at} must be a string"));
                return;
            };
            if let Some(max) = t["max_length"].as_u64() {
                if s.chars().count() as u64 > max {
                    out.push(format!("{at} must be shorter than or equal to {max} characters"));
                }
            }
            if let Some(values) = t["enum"].as_array() {
                if !values.iter().any(|e| e == v) {
                    out.push(format!("{at} must be one of the following values: {values:?}"));
                }
            }
            true
        }
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "map" => v.is_object(),
        "array" => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(models, &t["items"], item, &format!("{at}.{i}"), out);
                }
                true
            }
            None => false,
        },
        "object" => {
            match t["ref"].as_str() {
                Some(r) if models.get(r).is_some() => check_object(models, r, v, at, out),
                // A model the fixture does not describe (the dialer never sends one).
                _ if !v.is_object() => out.push(format!("{at} must be an object")),
                _ => {}
            }
            true
        }
        _ => true,
    };
    if !ok {
        out.push(format!("{at} must be a {}", t["type"].as_str().unwrap_or("value")));
    }
}

fn name(at: &str) -> &str {
    if at.is_empty() {
        "body"
    } else {
        at
    }
}

/// The problems of a Twilio `POST Calls.json` form (name, value pairs in order), each as
/// Twilio's (code, message) (empty: accepted).
pub fn twilio_create_call(form: &[(String, String)]) -> Vec<(u32, String)> {
    let params = &schemas()["twilio"]["Calls.create"];
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in form {
        let Some(t) = params.get(k.as_str()) else {
            out.push((20001, format!("Unknown parameter {k}")));
            continue;
        };
        if seen.contains(&k.as_str()) && t["repeated"] != true {
            out.push((20001, format!("Parameter {k} given more than once")));
        }
        seen.push(k);
        let fine = match t["type"].as_str().unwrap_or("string") {
            "integer" => v.parse::<i64>().is_ok(),
            "boolean" => v == "true" || v == "false",
            _ => true,
        };
        if !fine {
            out.push((21218, format!("Invalid {k}: {v}")));
        }
        if let Some(values) = t["enum"].as_array() {
            if !values.iter().any(|e| e.as_str() == Some(v)) {
                out.push((21218, format!("{k} must be one of {values:?}, not `{v}`")));
            }
        }
    }
    for (k, t) in params.as_object().into_iter().flatten() {
        if t["required"] == true && !seen.contains(&k.as_str()) {
            out.push((21201, format!("No '{k}' number is specified")));
        }
    }
    if !["Url", "Twiml", "ApplicationSid"].iter().any(|k| seen.contains(k)) {
        out.push((21205, "Url, Twiml or ApplicationSid is required".into()));
    }
    if seen.contains(&"AsyncAmd") && !seen.contains(&"MachineDetection") {
        out.push((21218, "AsyncAmd needs MachineDetection".into()));
    }
    out
}
