//! What Vapi measured during a call, from its end-of-call report:
//! `artifact.performanceMetrics` (per-turn and average latencies, interruptions) and the
//! typed `costs[]` breakdown, with the assistant that took the call and what its
//! `endedReason` says about the platform's health.
//!
//! Read leniently, like every Vapi message: a missing field, or one of the wrong type,
//! reads as absent; lists are cut to [`MAX_TURNS`] and [`MAX_COSTS`]. The field names
//! are the official SDK's (`PerformanceMetrics`, `TurnLatency`,
//! `ServerMessageEndOfCallReportCostsItem_*`), which the server's tests check against.

use callgate_backend::records::{CallTelemetry, CostItem, TurnLatency, MAX_COSTS, MAX_TURNS};
use serde_json::Value;

/// The fields of `artifact.performanceMetrics` callgate reads.
pub const PERFORMANCE_FIELDS: [&str; 10] = [
    "turnLatencies",
    "modelLatencyAverage",
    "voiceLatencyAverage",
    "transcriberLatencyAverage",
    "endpointingLatencyAverage",
    "turnLatencyAverage",
    "fromTransportLatencyAverage",
    "toTransportLatencyAverage",
    "numUserInterrupted",
    "numAssistantInterrupted",
];

/// The fields of one `turnLatencies[]` item callgate reads.
pub const TURN_FIELDS: [&str; 5] =
    ["modelLatency", "voiceLatency", "transcriberLatency", "endpointingLatency", "turnLatency"];

/// The `costs[].type` values the SDK defines; any other reads as `other`, so the
/// component label of a metric stays one of a fixed list.
pub const COST_TYPES: [&str; 8] =
    ["transport", "transcriber", "model", "voice", "vapi", "analysis", "knowledge-base", "voicemail-detection"];

/// The longest assistant id or name kept.
pub const MAX_ASSISTANT: usize = 128;

/// A latency in ms: a finite number from 0 to a day.
fn latency(v: Option<&Value>) -> Option<f64> {
    v?.as_f64().filter(|v| v.is_finite() && (0.0..=86_400_000.0).contains(v))
}

fn count(v: Option<&Value>) -> Option<u32> {
    let n = v?.as_f64().filter(|n| n.is_finite() && *n >= 0.0)?;
    Some(n.min(f64::from(u32::MAX)) as u32)
}

fn turn(v: &Value) -> TurnLatency {
    TurnLatency {
        model_ms: latency(v.get("modelLatency")),
        voice_ms: latency(v.get("voiceLatency")),
        transcriber_ms: latency(v.get("transcriberLatency")),
        endpointing_ms: latency(v.get("endpointingLatency")),
        turn_ms: latency(v.get("turnLatency")),
    }
}

fn cost(v: &Value) -> Option<CostItem> {
    let usd = v.get("cost")?.as_f64().filter(|c| c.is_finite() && *c >= 0.0)?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let component = COST_TYPES.iter().find(|t| **t == kind).copied().unwrap_or("other");
    Some(CostItem { component: component.to_owned(), usd })
}

/// The telemetry of an end-of-call report's `message`; `None` when it carries neither
/// performance metrics nor a cost breakdown.
pub fn read(m: &Value) -> Option<CallTelemetry> {
    let perf = m.get("artifact").and_then(|a| a.get("performanceMetrics")).filter(|p| p.is_object());
    let costs = m.get("costs").and_then(Value::as_array);
    if perf.is_none() && costs.is_none() {
        return None;
    }
    let mut t = CallTelemetry::default();
    if let Some(p) = perf {
        let turns = p.get("turnLatencies").and_then(Value::as_array);
        t.turns = turns.map(|l| l.iter().take(MAX_TURNS).map(turn).collect()).unwrap_or_default();
        t.average = TurnLatency {
            model_ms: latency(p.get("modelLatencyAverage")),
            voice_ms: latency(p.get("voiceLatencyAverage")),
            transcriber_ms: latency(p.get("transcriberLatencyAverage")),
            endpointing_ms: latency(p.get("endpointingLatencyAverage")),
            turn_ms: latency(p.get("turnLatencyAverage")),
        };
        t.from_transport_ms = latency(p.get("fromTransportLatencyAverage"));
        t.to_transport_ms = latency(p.get("toTransportLatencyAverage"));
        t.user_interrupted = count(p.get("numUserInterrupted"));
        t.assistant_interrupted = count(p.get("numAssistantInterrupted"));
    }
    t.costs = costs.map(|l| l.iter().filter_map(cost).take(MAX_COSTS).collect()).unwrap_or_default();
    Some(t)
}

/// The assistant that took the call: `call.assistantId`, else a transient assistant's
/// `assistant.name` (at most [`MAX_ASSISTANT`] bytes, else left out).
pub fn assistant(m: &Value) -> Option<String> {
    let id = m.get("call").and_then(|c| c.get("assistantId")).and_then(Value::as_str);
    let name = m.get("assistant").and_then(|a| a.get("name")).and_then(Value::as_str);
    id.or(name).map(str::trim).filter(|s| !s.is_empty() && s.len() <= MAX_ASSISTANT).map(str::to_owned)
}

/// What an `endedReason` says about the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A normal end: the customer or the assistant hung up, no answer, busy, voicemail…
    Normal,
    /// A failure of Vapi, of a provider in its pipeline (model, voice, transcriber) or of
    /// the carrier: `…vapifault…`, `…providerfault…`, `pipeline-error-…`,
    /// `…-failed-to-connect-call`, a dead worker.
    Failure,
    /// Vapi refused the call for the account's concurrency limit.
    Refused,
}

impl Ending {
    /// Classifies an `endedReason`. Words that mean the customer's side (`customer-…`,
    /// `…-busy`, `…did-not-answer`, `voicemail`, `silence-timed-out`) are normal endings.
    pub fn of(reason: &str) -> Ending {
        let r = reason.to_ascii_lowercase();
        if r.contains("concurrency-limit") {
            Ending::Refused
        } else if r.starts_with("customer-") || r.contains("busy") || r.contains("did-not-answer") {
            Ending::Normal
        } else if r.contains("error") || r.contains("fault") || r.contains("failed") || r.contains("worker-") {
            Ending::Failure
        } else {
            Ending::Normal
        }
    }

    /// The name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Normal => "normal",
            Ending::Failure => "failure",
            Ending::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn performance_metrics_and_costs_are_read_and_odd_values_are_absent() {
        let m = json!({
            "call": { "id": "c", "assistantId": "asst-1" },
            "artifact": { "performanceMetrics": {
                "turnLatencies": [
                    { "modelLatency": 420.5, "voiceLatency": 180, "transcriberLatency": 90,
                      "endpointingLatency": 300, "turnLatency": 990.5 },
                    { "modelLatency": "slow", "turnLatency": -1 },
                ],
                "modelLatencyAverage": 420.5, "turnLatencyAverage": 990.5,
                "numUserInterrupted": 2, "numAssistantInterrupted": 1.0, "unknown": true,
            }},
            "costs": [
                { "type": "model", "cost": 0.02, "promptTokens": 10, "completionTokens": 5, "model": {} },
                { "type": "telepathy", "cost": 0.5 },
                { "type": "voice", "cost": "free" },
            ],
        });
        let t = read(&m).expect("telemetry");
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].turn_ms, Some(990.5));
        assert_eq!(t.turns[1], TurnLatency::default(), "a string and a negative latency read as absent");
        assert_eq!(t.average.model_ms, Some(420.5));
        assert_eq!((t.user_interrupted, t.assistant_interrupted), (Some(2), Some(1)));
        let costs: Vec<(&str, f64)> = t.costs.iter().map(|c| (c.component.as_str(), c.usd)).collect();
        assert_eq!(costs, [("model", 0.02), ("other", 0.5)]);
        assert_eq!(assistant(&m).as_deref(), Some("asst-1"));
        assert_eq!(read(&json!({ "call": { "id": "c" } })), None);
        assert_eq!(read(&json!({ "artifact": { "performanceMetrics": 3 } })), None);
    }

    #[test]
    fn a_long_list_of_turns_is_cut() {
        let turns: Vec<Value> = (0..MAX_TURNS + 10).map(|i| json!({ "turnLatency": i })).collect();
        let t = read(&json!({ "artifact": { "performanceMetrics": { "turnLatencies": turns } } })).unwrap();
        assert_eq!(t.turns.len(), MAX_TURNS);
    }

    #[test]
    fn endings_tell_platform_failures_from_customers() {
        for r in [
            "call.in-progress.error-vapifault-openai-llm-failed",
            "pipeline-error-openai-llm-failed",
            "call.in-progress.error-providerfault-openai-500-server-error",
            "twilio-failed-to-connect-call",
            "worker-shutdown",
        ] {
            assert_eq!(Ending::of(r), Ending::Failure, "{r}");
        }
        for r in [
            "customer-ended-call",
            "customer-busy",
            "customer-did-not-answer",
            "voicemail",
            "silence-timed-out",
            "assistant-ended-call",
            "exceeded-max-duration",
            "customer-did-not-give-microphone-permission",
        ] {
            assert_eq!(Ending::of(r), Ending::Normal, "{r}");
        }
        assert_eq!(Ending::of("call.start.error-subscription-concurrency-limit-reached"), Ending::Refused);
    }
}
