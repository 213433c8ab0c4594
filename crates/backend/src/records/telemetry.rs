//! A call's telemetry as stored: one compact JSON text per call (a turn is an array of
//! five latencies), read back leniently (a value of the wrong type reads as absent). Every
//! [`Records`](super::Records) store keeps this text, so a record reads the same from any.

use super::{CallTelemetry, CostItem, TurnLatency, MAX_COSTS, MAX_TURNS};
use serde_json::{json, Value};

fn turn_json(t: &TurnLatency) -> Value {
    json!([t.model_ms, t.voice_ms, t.transcriber_ms, t.endpointing_ms, t.turn_ms])
}

fn ms(v: Option<&Value>) -> Option<f64> {
    v?.as_f64().filter(|v| v.is_finite())
}

fn turn_of(v: &Value) -> TurnLatency {
    let at = |i: usize| ms(v.get(i));
    TurnLatency { model_ms: at(0), voice_ms: at(1), transcriber_ms: at(2), endpointing_ms: at(3), turn_ms: at(4) }
}

/// The stored form.
pub fn to_json(t: &CallTelemetry) -> Value {
    json!({
        "turns": t.turns.iter().take(MAX_TURNS).map(turn_json).collect::<Vec<_>>(),
        "average": turn_json(&t.average),
        "from_transport_ms": t.from_transport_ms,
        "to_transport_ms": t.to_transport_ms,
        "user_interrupted": t.user_interrupted,
        "assistant_interrupted": t.assistant_interrupted,
        "costs": t.costs.iter().take(MAX_COSTS).map(|c| json!([c.component, c.usd])).collect::<Vec<_>>(),
        "concurrency": t.concurrency,
    })
}

/// Reads the stored form back; `None` when it is not a JSON object.
pub fn from_json(text: &str) -> Option<CallTelemetry> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.as_object()?;
    let count = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let list = |k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    Some(CallTelemetry {
        turns: list("turns").iter().take(MAX_TURNS).map(turn_of).collect(),
        average: v.get("average").map(turn_of).unwrap_or_default(),
        from_transport_ms: ms(v.get("from_transport_ms")),
        to_transport_ms: ms(v.get("to_transport_ms")),
        user_interrupted: count("user_interrupted"),
        assistant_interrupted: count("assistant_interrupted"),
        costs: list("costs")
            .iter()
            .take(MAX_COSTS)
            .filter_map(|c| Some(CostItem { component: c.get(0)?.as_str()?.to_owned(), usd: ms(c.get(1))? }))
            .collect(),
        concurrency: count("concurrency"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_reads_back_as_written() {
        let t = CallTelemetry {
            turns: vec![
                TurnLatency { model_ms: Some(400.0), turn_ms: Some(900.5), ..TurnLatency::default() },
                TurnLatency::default(),
            ],
            average: TurnLatency { model_ms: Some(400.0), voice_ms: Some(120.0), ..TurnLatency::default() },
            from_transport_ms: Some(20.0),
            to_transport_ms: None,
            user_interrupted: Some(2),
            assistant_interrupted: Some(0),
            costs: vec![CostItem { component: "model".into(), usd: 0.0123 }],
            concurrency: Some(7),
        };
        assert_eq!(from_json(&to_json(&t).to_string()), Some(t));
        assert_eq!(from_json("[]"), None);
        assert_eq!(
            from_json("{\"turns\": 3, \"costs\": [[1, 2], [\"voice\", \"x\"]]}"),
            Some(CallTelemetry::default())
        );
    }
}
