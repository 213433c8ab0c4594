//! Vapi's own telemetry drives callgate, against a real server and journal on a manual
//! clock: end-of-call reports (their `artifact.performanceMetrics` and `costs[]`, in the
//! official SDK's shapes) are kept with the call record, summed per assistant, exported
//! as metrics, move an adaptive cap with `source = "vapi"` down and back up, and open a
//! breaker when the platform fails calls.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::VecDeque;
use support::strict::{vapi_end_of_call_report, vapi_model_fields};
use support::{ManualClock, TestServer};

const SECRET: &str = "vapi-webhook-secret";
const SUPPORT: &str = "+15550001111";
const SALES: &str = "+15550002222";

/// `support` on an adaptive pool that learns from Vapi's turn latency (one sample per
/// window of a second); `sales` on a fixed pool, behind the `llm` breaker.
const CONFIG: &str = r#"
[[pools]]
name = "agents"
limit = 10
adaptive = { algorithm = "gradient2", source = "vapi", metric = "turn_p95", min = 2, smoothing = 1.0, queue_size = 1, window = { min = "1s", max = "1s", min_samples = 1 } }

[[pools]]
name = "sales-lines"
limit = 10

[[providers]]
name = "vapi-main"
kind = "vapi"
webhook_secret = "vapi-webhook-secret"
pool = "agents"

[[breakers]]
name = "llm"
min_calls = 3
error_rate = 0.5
open_for = "30s"

[[flows]]
name = "support"
pools = ["agents"]
class = "inbound"
match = { provider = "vapi-main", number = "+15550001111" }
vapi = { assistant_id = "asst_support" }
overflow = { action = "busy", message = "Sorry, we are busy." }

[[flows]]
name = "sales"
pools = ["sales-lines"]
class = "inbound"
match = { provider = "vapi-main", number = "+15550002222" }
vapi = { assistant_id = "asst_sales" }
overflow = { action = "busy" }
depends_on = ["llm"]
fallback = { action = "transfer", number = "+14155550123", message = "Our assistant is down." }
"#;

async fn webhook(s: &TestServer, message: Value) -> (StatusCode, Value) {
    support::providers::vapi_webhook(s, "vapi-main", SECRET, message).await
}

/// An inbound call to `to`; true when callgate handed it to the assistant.
async fn arrive(s: &TestServer, call: &str, to: &str) -> bool {
    let (st, v) = webhook(
        s,
        json!({
            "type": "assistant-request",
            "call": { "id": call, "type": "inboundPhoneCall", "phoneNumberId": "pn-1" },
            "phoneNumber": { "id": "pn-1", "number": to },
            "customer": { "number": "+15551230000" },
        }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.get("assistantId").is_some()
}

/// An end-of-call report as Vapi sends it, with `turns` turn latencies (ms; the model
/// takes 60% of each) and a cost breakdown. Checked against the SDK's types first.
fn report(call: &str, to: &str, assistant: &str, reason: &str, turns: &[f64]) -> Value {
    let turn_latencies: Vec<Value> = turns
        .iter()
        .map(|t| {
            json!({ "modelLatency": t * 0.6, "voiceLatency": t * 0.2, "transcriberLatency": t * 0.1,
                    "endpointingLatency": t * 0.1, "turnLatency": t })
        })
        .collect();
    let avg = if turns.is_empty() { 0.0 } else { turns.iter().sum::<f64>() / turns.len() as f64 };
    let m = json!({
        "type": "end-of-call-report",
        "call": { "id": call, "assistantId": assistant },
        "phoneNumber": { "id": "pn-1", "number": to },
        "endedReason": reason,
        "cost": 0.3,
        "costs": [
            { "type": "transport", "provider": "twilio", "minutes": 2.0, "cost": 0.02 },
            { "type": "model", "model": { "provider": "openai", "model": "gpt-4o" },
              "promptTokens": 1200, "completionTokens": 300, "cost": 0.18 },
            { "type": "vapi", "subType": "normal", "minutes": 2.0, "cost": 0.1 },
        ],
        "startedAt": "2026-11-28T10:00:00.000Z",
        "endedAt": "2026-11-28T10:02:00.000Z",
        "artifact": {
            "transcript": "AI: Hello.",
            "performanceMetrics": {
                "turnLatencies": turn_latencies,
                "modelLatencyAverage": avg * 0.6,
                "voiceLatencyAverage": avg * 0.2,
                "transcriberLatencyAverage": avg * 0.1,
                "endpointingLatencyAverage": avg * 0.1,
                "turnLatencyAverage": avg,
                "fromTransportLatencyAverage": 20,
                "toTransportLatencyAverage": 25,
                "numUserInterrupted": 1,
                "numAssistantInterrupted": 0,
            },
        },
    });
    let problems = vapi_end_of_call_report(&m);
    assert!(problems.is_empty(), "the fake would send what Vapi cannot: {problems:?}");
    m
}

async fn end(s: &TestServer, message: Value) {
    let (st, v) = webhook(s, message).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn cap(s: &TestServer) -> u64 {
    s.pool("agents").await["cap"].as_u64().unwrap()
}

#[test]
fn the_parser_reads_only_what_the_sdk_defines() {
    use callgate_providers::vapi::telemetry::{COST_TYPES, PERFORMANCE_FIELDS, TURN_FIELDS};
    let perf = vapi_model_fields("PerformanceMetrics");
    assert!(PERFORMANCE_FIELDS.iter().all(|f| perf.iter().any(|p| p == f)), "{perf:?}");
    let turn = vapi_model_fields("TurnLatency");
    assert!(TURN_FIELDS.iter().all(|f| turn.iter().any(|p| p == f)), "{turn:?}");
    let mut costs = vapi_model_fields("EndOfCallReportCostsItem");
    let mut ours: Vec<String> = COST_TYPES.iter().map(|s| s.to_string()).collect();
    costs.sort();
    ours.sort();
    assert_eq!(ours, costs, "every cost type of the SDK has a label of its own");
    // The strict check itself refuses what the SDK does not define.
    let bad = json!({ "costs": [{ "type": "model", "cost": 1 }, { "type": "x" }],
                      "artifact": { "performanceMetrics": { "turnLatencies": [{ "latency": 1 }] } } });
    let problems = vapi_end_of_call_report(&bad);
    assert_eq!(problems.len(), 5, "{problems:?}");
}

/// The done-means scenario: a simulated assistant whose model slows down above six
/// concurrent calls. Every two seconds the oldest call ends with a report of the
/// latency it saw, and callers arrive: five at a time at first (the model is fast, the
/// long-term latency learns it), then as many as the cap lets in. The cap falls towards
/// where the model keeps up; once the model recovers (its other load went away), the
/// cap climbs back to the limit.
#[tokio::test]
async fn vapi_latency_moves_the_adaptive_cap_down_and_back_up() {
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(CONFIG, clock.clone()).await;
    assert_eq!(cap(&s).await, 10);
    let mut live: VecDeque<String> = VecDeque::new();
    let mut next = 0;
    let mut caps = Vec::new();
    for step in 0..80 {
        // Callers keep coming: up to a refusal, or the demand.
        let demand = if step < 15 { 5 } else { 12 };
        while live.len() < demand {
            let id = format!("call-{next}");
            next += 1;
            if !arrive(&s, &id, SUPPORT).await {
                break;
            }
            live.push_back(id);
        }
        let recovered = step >= 40;
        let turn = if recovered || live.len() <= 6 { 800.0 } else { 2_400.0 };
        clock.advance(2_000);
        let call = live.pop_front().expect("a live call");
        end(&s, report(&call, SUPPORT, "asst_support", "customer-ended-call", &[turn * 0.9, turn, turn * 0.95])).await;
        caps.push(cap(&s).await);
    }
    assert!(caps[..15].iter().all(|c| *c == 10), "light load, fast turns: the cap stays {caps:?}");
    let lowest = *caps[15..40].iter().min().unwrap();
    assert!(lowest <= 7, "slow turns under load lower the cap: {caps:?}");
    assert_eq!(*caps.last().unwrap(), 10, "fast turns raise it back to the limit: {caps:?}");
    let m = s.metrics().await;
    assert!(m.contains("callgate_adaptive_cap_changes_total{pool=\"agents\",direction=\"down\"}"), "{m}");
    assert!(!m.contains("callgate_adaptive_cap_changes_total{pool=\"agents\",direction=\"up\"} 0"), "{m}");

    // The trade-off, as measured: fast at six calls or fewer, slow above (before the
    // model recovered), for `callgate plan latency`.
    let (_, summary) = s.get("/v1/calls/summary?limit=10000").await;
    let levels = summary["latency_by_concurrency"].as_array().unwrap();
    let p95 = |c: u64| levels.iter().find(|l| l["concurrency"] == c).and_then(|l| l["turn_p95_ms"].as_f64());
    assert_eq!(p95(5), Some(800.0), "{summary}");
    assert_eq!(p95(7), Some(2400.0), "{summary}");
    // A customer's sample does not move a cap that listens to Vapi.
    let (st, v) = s.post("/v1/samples", json!({ "pool": "agents", "latency_ms": 90_000 })).await;
    assert_eq!((st, &v["caps"]), (StatusCode::OK, &json!({})), "{v}");
}

#[tokio::test]
async fn error_endings_open_the_flows_breaker() {
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(CONFIG, clock.clone()).await;
    for i in 0..6 {
        assert!(arrive(&s, &format!("s{i}"), SALES).await);
    }
    // Customers hanging up, not answering or being busy are not failures.
    for (i, reason) in ["customer-ended-call", "customer-busy", "customer-did-not-answer"].iter().enumerate() {
        end(&s, report(&format!("s{}", i + 3), SALES, "asst_sales", reason, &[900.0])).await;
    }
    let (_, breakers) = s.get("/v1/breakers").await;
    assert_eq!(breakers[0]["state"], "closed", "{breakers}");
    clock.advance(31_000);
    let reasons = [
        "call.in-progress.error-vapifault-openai-llm-failed",
        "customer-ended-call",
        "pipeline-error-openai-503-server-overloaded-error",
    ];
    for (i, reason) in reasons.iter().enumerate() {
        end(&s, report(&format!("s{i}"), SALES, "asst_sales", reason, &[900.0])).await;
    }
    let (_, breakers) = s.get("/v1/breakers").await;
    let llm = &breakers.as_array().unwrap()[0];
    assert_eq!(llm["state"], "open", "2 of 3 calls failed on Vapi's side: {breakers}");
    // The next caller hears the fallback, without a line of customer code.
    let (_, v) =
        webhook(&s, json!({ "type": "assistant-request", "call": { "id": "s9" }, "phoneNumber": { "number": SALES } }))
            .await;
    assert_eq!(v["destination"]["number"], "+14155550123", "{v}");
    let m = s.metrics().await;
    assert!(m.contains("callgate_vapi_calls_total{provider=\"vapi-main\",flow=\"sales\",assistant=\"asst_sales\",ending=\"failure\"} 2"), "{m}");
}

#[tokio::test]
async fn reports_are_kept_with_the_call_summed_per_assistant_and_exported() {
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(CONFIG, clock.clone()).await;
    for (i, turns) in [[600.0, 700.0, 800.0], [900.0, 1_000.0, 2_000.0]].iter().enumerate() {
        let id = format!("c{i}");
        assert!(arrive(&s, &id, SUPPORT).await);
        end(&s, report(&id, SUPPORT, "asst_support", "customer-ended-call", turns)).await;
    }
    assert!(arrive(&s, "c2", SALES).await);
    end(&s, report("c2", SALES, "asst_sales", "call.in-progress.error-vapifault-openai-llm-failed", &[])).await;
    // Vapi retries a webhook that failed: a repeated report is measured once.
    end(&s, report("c0", SUPPORT, "asst_support", "customer-ended-call", &[600.0, 700.0, 800.0])).await;

    let (st, calls) = s.get("/v1/calls").await;
    assert_eq!(st, StatusCode::OK);
    let c0 = calls.as_array().unwrap().iter().find(|c| c["call_id"] == "c0").unwrap();
    assert_eq!(c0["assistant"], "asst_support");
    let t = &c0["telemetry"];
    assert_eq!(t["turns"].as_array().unwrap().len(), 3, "{c0}");
    assert_eq!(t["turns"][2]["turn_ms"], 800.0);
    assert_eq!((t["turn_p50_ms"].as_f64(), t["turn_p95_ms"].as_f64()), (Some(700.0), Some(800.0)));
    assert_eq!(t["average"]["turn_ms"], 700.0);
    assert_eq!(t["user_interrupted"], 1);
    assert_eq!(
        t["costs"],
        json!([
            { "component": "transport", "usd": 0.02 }, { "component": "model", "usd": 0.18 }, { "component": "vapi", "usd": 0.1 }
        ])
    );

    let (st, summary) = s.get("/v1/calls/summary").await;
    assert_eq!(st, StatusCode::OK, "{summary}");
    let rows = summary["assistants"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{summary}");
    let support = &rows[0];
    assert_eq!(support["assistant"], "asst_support");
    assert_eq!(support["flows"], json!(["support"]));
    assert_eq!((support["calls"].as_u64(), support["measured"].as_u64()), (Some(2), Some(2)));
    assert_eq!((support["turn_p50_ms"].as_f64(), support["turn_p95_ms"].as_f64()), (Some(800.0), Some(2000.0)));
    assert_eq!((support["user_interrupted"].as_u64(), support["error_endings"].as_u64()), (Some(2), Some(0)));
    assert_eq!(support["minutes"], 4.0);
    assert!((support["cost_per_minute_usd"].as_f64().unwrap() - 0.15).abs() < 1e-9, "{support}");
    assert_eq!(rows[1]["error_endings"], 1);
    let (st, _) = s.get("/v1/calls/summary?limit=0").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/v1/calls/summary?flow=x").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let m = s.metrics().await;
    let labels = "provider=\"vapi-main\",flow=\"support\",assistant=\"asst_support\"";
    for line in [
        format!("callgate_vapi_latency_seconds_count{{{labels},component=\"turn\"}} 6"),
        format!("callgate_vapi_latency_seconds_bucket{{{labels},component=\"turn\",le=\"1\"}} 5"),
        format!("callgate_vapi_latency_seconds_count{{{labels},component=\"model\"}} 6"),
        format!("callgate_vapi_latency_seconds_count{{{labels},component=\"endpointing\"}} 6"),
        format!("callgate_vapi_cost_usd_total{{{labels},component=\"model\"}} 0.36"),
        format!("callgate_vapi_calls_total{{{labels},ending=\"normal\"}} 2"),
        format!("callgate_vapi_interruptions_total{{{labels},who=\"user\"}} 2"),
    ] {
        assert!(m.contains(&line), "{line} not in\n{m}");
    }
    // Kept across a restart: the summary is read from the journal.
    let s = s.restart().await;
    let (_, again) = s.get("/v1/calls/summary").await;
    assert_eq!(again["assistants"], summary["assistants"]);
}
