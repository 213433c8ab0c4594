//! What Vapi measured, as the API shows it: a call's telemetry in `GET /v1/calls`, and
//! `GET /v1/calls/summary`, per assistant over the most recent call records (calls,
//! p50/p95 turn latency, interruptions, cost per minute, error endings).
//!
//! The summary is computed from the stored records when asked (at most
//! [`MAX_SUMMARY_CALLS`] of them, and at most [`MAX_GROUPS`] assistants, the busiest
//! first), so it survives a restart and needs no state of its own.

use super::body::QueryMap;
use super::{App, Caller};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use axum::extract::State;
use axum::Json;
use callgate_backend::records::{quantile, CallTelemetry, Component, TurnLatency};
use callgate_providers::vapi::telemetry::Ending;
use callgate_store::CallRecord;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Calls the summary covers unless `limit` says otherwise.
pub(crate) const DEFAULT_SUMMARY_CALLS: usize = 1000;
/// The most calls one summary reads.
pub(crate) const MAX_SUMMARY_CALLS: usize = 10_000;
/// The most assistants one summary lists (the ones with the most calls).
pub(crate) const MAX_GROUPS: usize = 200;
/// The most concurrency levels one summary lists.
pub(crate) const MAX_LOADS: usize = 1000;

/// One turn's latencies (ms).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TurnView {
    model_ms: Option<f64>,
    voice_ms: Option<f64>,
    transcriber_ms: Option<f64>,
    endpointing_ms: Option<f64>,
    turn_ms: Option<f64>,
}

impl From<&TurnLatency> for TurnView {
    fn from(t: &TurnLatency) -> Self {
        TurnView {
            model_ms: t.model_ms,
            voice_ms: t.voice_ms,
            transcriber_ms: t.transcriber_ms,
            endpointing_ms: t.endpointing_ms,
            turn_ms: t.turn_ms,
        }
    }
}

/// One line of a call's cost.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CostView {
    /// `transport`, `transcriber`, `model`, `voice`, `vapi`, `analysis`,
    /// `knowledge-base`, `voicemail-detection` or `other`.
    component: String,
    /// USD.
    usd: f64,
}

/// What the platform measured during a call (Vapi's `artifact.performanceMetrics` and
/// `costs[]`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TelemetryView {
    /// Per turn, in order (at most 500).
    turns: Vec<TurnView>,
    /// The platform's averages over every turn.
    average: TurnView,
    /// Median turn latency (ms) over `turns`.
    turn_p50_ms: Option<f64>,
    /// 95th percentile turn latency (ms) over `turns`.
    turn_p95_ms: Option<f64>,
    /// Average latency from the transport (ms).
    from_transport_ms: Option<f64>,
    /// Average latency to the transport (ms).
    to_transport_ms: Option<f64>,
    /// Times the caller interrupted the assistant.
    user_interrupted: Option<u32>,
    /// Times the assistant interrupted the caller.
    assistant_interrupted: Option<u32>,
    /// Cost by component.
    costs: Vec<CostView>,
    /// The units in use in the flow's first pool when the call ended, itself included.
    concurrency: Option<u32>,
}

impl From<CallTelemetry> for TelemetryView {
    fn from(t: CallTelemetry) -> Self {
        TelemetryView {
            turn_p50_ms: t.quantile(Component::Turn, 0.5),
            turn_p95_ms: t.quantile(Component::Turn, 0.95),
            turns: t.turns.iter().map(TurnView::from).collect(),
            average: TurnView::from(&t.average),
            from_transport_ms: t.from_transport_ms,
            to_transport_ms: t.to_transport_ms,
            user_interrupted: t.user_interrupted,
            assistant_interrupted: t.assistant_interrupted,
            costs: t.costs.into_iter().map(|c| CostView { component: c.component, usd: c.usd }).collect(),
            concurrency: t.concurrency,
        }
    }
}

/// One assistant's calls in the summary.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct AssistantSummary {
    /// The provider.
    provider: String,
    /// The assistant id (`null`: calls whose report named none).
    assistant: Option<String>,
    /// The flows its calls came through.
    flows: Vec<String>,
    /// Ended calls with a report.
    calls: u64,
    /// Of which carried latencies.
    measured: u64,
    /// Median turn latency over every turn of these calls (ms).
    turn_p50_ms: Option<f64>,
    /// 95th percentile turn latency over every turn of these calls (ms).
    turn_p95_ms: Option<f64>,
    /// 95th percentile model latency (ms).
    model_p95_ms: Option<f64>,
    /// Times callers interrupted the assistant.
    user_interrupted: u64,
    /// Times the assistant interrupted callers.
    assistant_interrupted: u64,
    /// Talk time of the calls with a start and an end (minutes).
    minutes: f64,
    /// Their cost (USD).
    cost_usd: f64,
    /// `cost_usd / minutes`, when there were minutes.
    cost_per_minute_usd: Option<f64>,
    /// Calls the platform failed (`…vapifault…`, pipeline and provider errors).
    error_endings: u64,
    /// Calls refused for the account's concurrency limit.
    refused: u64,
}

/// Turn latency at one concurrency: the measured trade-off `callgate plan latency` reads.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct ConcurrencyLatency {
    /// Units in use in the call's pool when it ended, the call included.
    concurrency: u32,
    /// Measured calls that ended at this concurrency.
    calls: u64,
    /// Median turn latency over their turns (ms).
    turn_p50_ms: Option<f64>,
    /// 95th percentile turn latency over their turns (ms).
    turn_p95_ms: Option<f64>,
}

/// `GET /v1/calls/summary`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CallsSummary {
    /// Call records read (the most recently updated first).
    calls_read: usize,
    /// One row per provider and assistant, the most calls first (at most 200).
    assistants: Vec<AssistantSummary>,
    /// Turn latency by the concurrency the calls ended at, lowest first (at most 1000
    /// rows): how latency grows with load.
    latency_by_concurrency: Vec<ConcurrencyLatency>,
}

#[derive(Default)]
struct Group {
    flows: BTreeSet<String>,
    calls: u64,
    measured: u64,
    turns: Vec<f64>,
    model: Vec<f64>,
    user_interrupted: u64,
    assistant_interrupted: u64,
    ms: u64,
    cost: f64,
    errors: u64,
    refused: u64,
}

/// Groups the ended calls among `records` by provider and assistant. Calls that are
/// not over, or that no report measured nor named an assistant for, are left out.
pub(crate) fn summarize(records: Vec<CallRecord>) -> CallsSummary {
    let calls_read = records.len();
    let mut groups: BTreeMap<(String, Option<String>), Group> = BTreeMap::new();
    let mut by_load: BTreeMap<u32, (u64, Vec<f64>)> = BTreeMap::new();
    for r in records {
        if r.ended_at.is_none() || (r.assistant.is_none() && r.telemetry.is_none()) {
            continue;
        }
        if let Some((c, turns)) =
            r.telemetry.as_ref().and_then(|t| Some((t.concurrency?, t.latencies(Component::Turn))))
        {
            if !turns.is_empty() && (by_load.len() < MAX_LOADS || by_load.contains_key(&c)) {
                let row = by_load.entry(c).or_default();
                row.0 += 1;
                row.1.extend(turns);
            }
        }
        let g = groups.entry((r.provider.clone(), r.assistant.clone())).or_default();
        g.calls += 1;
        if let Some(f) = r.flow.filter(|_| g.flows.len() < 32) {
            g.flows.insert(f);
        }
        if let Some(t) = &r.telemetry {
            let turns = t.latencies(Component::Turn);
            g.measured += u64::from(!turns.is_empty());
            g.turns.extend(turns);
            g.model.extend(t.latencies(Component::Model));
            g.user_interrupted += u64::from(t.user_interrupted.unwrap_or(0));
            g.assistant_interrupted += u64::from(t.assistant_interrupted.unwrap_or(0));
        }
        if let Some(d) = r.duration_ms {
            g.ms = g.ms.saturating_add(d);
        }
        if let Some(c) = r.cost.or_else(|| r.telemetry.as_ref().and_then(|t| t.cost())) {
            g.cost += c;
        }
        match Ending::of(r.ended_reason.as_deref().unwrap_or("")) {
            Ending::Failure => g.errors += 1,
            Ending::Refused => g.refused += 1,
            Ending::Normal => {}
        }
    }
    let mut assistants: Vec<AssistantSummary> = groups
        .into_iter()
        .map(|((provider, assistant), mut g)| {
            let minutes = g.ms as f64 / 60_000.0;
            AssistantSummary {
                provider,
                assistant,
                flows: g.flows.into_iter().collect(),
                calls: g.calls,
                measured: g.measured,
                turn_p50_ms: quantile(&mut g.turns, 0.5),
                turn_p95_ms: quantile(&mut g.turns, 0.95),
                model_p95_ms: quantile(&mut g.model, 0.95),
                user_interrupted: g.user_interrupted,
                assistant_interrupted: g.assistant_interrupted,
                minutes,
                cost_usd: g.cost,
                cost_per_minute_usd: (minutes > 0.0).then(|| g.cost / minutes),
                error_endings: g.errors,
                refused: g.refused,
            }
        })
        .collect();
    assistants.sort_by_key(|a| std::cmp::Reverse(a.calls));
    assistants.truncate(MAX_GROUPS);
    let latency_by_concurrency = by_load
        .into_iter()
        .map(|(concurrency, (calls, mut turns))| ConcurrencyLatency {
            concurrency,
            calls,
            turn_p50_ms: quantile(&mut turns, 0.5),
            turn_p95_ms: quantile(&mut turns, 0.95),
        })
        .collect();
    CallsSummary { calls_read, assistants, latency_by_concurrency }
}

/// `GET /v1/calls/summary[?limit=N]`: per assistant, over the `N` most recently updated
/// call records (default 1000, at most 10000).
#[utoipa::path(
    get, path = "/v1/calls/summary", operation_id = "calls_summary", tag = "calls",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Call records to read (default 1000)")),
    responses(
        (status = 200, description = "Per assistant: calls, turn latency, interruptions, cost, error endings", body = CallsSummary),
        (status = 400, description = "Unknown parameter or bad limit", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    ),
)]
pub(crate) async fn summary(
    State(app): State<Arc<App>>,
    _caller: Caller,
    QueryMap(q): QueryMap,
) -> Result<Json<CallsSummary>, ApiError> {
    if let Some(other) = q.keys().find(|k| k.as_str() != "limit") {
        return Err(ApiError::bad_request(format!("unknown query parameter `{other}`")));
    }
    let limit = match q.get("limit") {
        None => DEFAULT_SUMMARY_CALLS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_SUMMARY_CALLS).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("`limit` must be between 1 and {MAX_SUMMARY_CALLS}")))?,
    };
    let rows = tokio::task::spawn_blocking(move || app.governor.calls(limit))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, "internal", e.to_string()))??;
    Ok(Json(summarize(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_backend::records::CostItem;

    fn call(id: &str, assistant: &str, turns: &[f64], reason: &str) -> CallRecord {
        CallRecord {
            provider: "vapi".into(),
            call_id: id.into(),
            flow: Some("support".into()),
            ended_at: Some(120_000),
            duration_ms: Some(120_000),
            ended_reason: Some(reason.into()),
            assistant: Some(assistant.into()),
            telemetry: Some(Box::new(CallTelemetry {
                turns: turns.iter().map(|t| TurnLatency { turn_ms: Some(*t), ..TurnLatency::default() }).collect(),
                user_interrupted: Some(1),
                costs: vec![
                    CostItem { component: "model".into(), usd: 0.1 },
                    CostItem { component: "vapi".into(), usd: 0.1 },
                ],
                concurrency: Some(turns.len() as u32),
                ..CallTelemetry::default()
            })),
            ..CallRecord::default()
        }
    }

    #[test]
    fn calls_are_summed_per_assistant() {
        let turns: Vec<f64> = (1..=20).map(|i| f64::from(i) * 100.0).collect();
        let records = vec![
            call("a", "asst-1", &turns[..10], "customer-ended-call"),
            call("b", "asst-1", &turns[10..], "call.in-progress.error-vapifault-openai-llm-failed"),
            call("c", "asst-2", &[], "call.start.error-subscription-concurrency-limit-reached"),
            CallRecord { provider: "twilio".into(), call_id: "d".into(), ended_at: Some(1), ..CallRecord::default() },
        ];
        let s = summarize(records);
        assert_eq!(s.calls_read, 4);
        assert_eq!(s.assistants.len(), 2, "a call with nothing measured and no assistant is left out");
        let a = &s.assistants[0];
        assert_eq!((a.assistant.as_deref(), a.calls, a.measured, a.error_endings), (Some("asst-1"), 2, 2, 1));
        assert_eq!((a.turn_p50_ms, a.turn_p95_ms), (Some(1000.0), Some(1900.0)));
        assert_eq!((a.minutes, a.user_interrupted), (4.0, 2));
        assert!((a.cost_per_minute_usd.unwrap() - 0.1).abs() < 1e-9, "{a:?}");
        let b = &s.assistants[1];
        assert_eq!((b.calls, b.measured, b.refused, b.turn_p95_ms), (1, 0, 1, None));
        let by_load: Vec<(u32, u64, Option<f64>)> =
            s.latency_by_concurrency.iter().map(|l| (l.concurrency, l.calls, l.turn_p95_ms)).collect();
        assert_eq!(by_load, [(10, 2, Some(1900.0))], "calls without turns are not on the curve");
    }
}
