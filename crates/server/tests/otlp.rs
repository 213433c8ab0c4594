//! Traces over OTLP/HTTP JSON: a decision and a webhook become spans at a fake collector.
//! (Its own test binary: it installs the process-wide subscriber.)

mod support;

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::{TestServer, THREE_SLOTS};
use tracing_subscriber::prelude::*;

/// A collector on 127.0.0.1:0 that keeps every span posted to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let spans = spans.clone();
            move |axum::Json(body): axum::Json<Value>| {
                let spans = spans.clone();
                async move {
                    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                        assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "callgate-test");
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            spans.lock().unwrap().extend(ss["spans"].as_array().cloned().unwrap_or_default());
                        }
                    }
                    axum::Json(json!({}))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_webhooks_are_exported_as_spans() {
    let (url, spans) = collector().await;
    let (layer, guard) = callgate_server::telemetry::otlp(&url, "callgate-test").unwrap();
    let filter = callgate_server::telemetry::span_targets();
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();

    let s = TestServer::start(THREE_SLOTS).await;
    let (_, granted) = s.acquire(json!({ "flow": "support", "key": "traced-1" })).await;
    assert_eq!(granted["decision"], "granted");
    let (_, rejected) = s.acquire(json!({ "flow": "nope" })).await;
    assert_eq!(rejected["error"]["code"], "unknown_flow");
    s.post("/webhooks/vapi/nobody", json!({ "message": { "type": "status-update" } })).await;
    // What Vapi measured in a call, as a span of its own.
    let vapi = TestServer::start(VAPI).await;
    let report = json!({ "message": {
        "type": "end-of-call-report", "call": { "id": "v1", "assistantId": "asst_1" },
        "endedReason": "customer-ended-call", "cost": 0.2,
        "artifact": { "performanceMetrics": { "turnLatencies": [{ "turnLatency": 700 }, { "turnLatency": 900 }],
                                              "numUserInterrupted": 1 } },
    }});
    let resp = vapi
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", vapi.base))
        .header("X-Vapi-Secret", "vapi-webhook-secret")
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(guard); // flushes and stops the exporter

    let spans = spans.lock().unwrap().clone();
    let decision = spans
        .iter()
        .find(|s| s["name"] == "decision" && attr(s, "key") == Some(&json!({ "stringValue": "traced-1" })))
        .unwrap_or_else(|| panic!("a decision span: {spans:#?}"));
    assert_eq!(attr(decision, "outcome"), Some(&json!({ "stringValue": "granted" })));
    assert_eq!(attr(decision, "flow"), Some(&json!({ "stringValue": "support" })));
    assert_eq!(decision["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(decision["spanId"].as_str().unwrap().len(), 16);
    let start: u64 = decision["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = decision["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000);

    let failed = spans
        .iter()
        .find(|s| s["name"] == "decision" && attr(s, "outcome") == Some(&json!({ "stringValue": "error" })));
    assert_eq!(failed.expect("the failed decision")["status"]["code"], 2, "an error span has status ERROR");

    let webhook = spans.iter().find(|s| s["name"] == "webhook").expect("a webhook span");
    assert_eq!(webhook["kind"], 2, "SERVER");
    assert_eq!(attr(webhook, "provider"), Some(&json!({ "stringValue": "nobody" })));
    assert_eq!(attr(webhook, "status"), Some(&json!({ "intValue": "404" })));

    let call =
        spans.iter().find(|s| s["name"] == "vapi_call").unwrap_or_else(|| panic!("a vapi_call span: {spans:#?}"));
    assert_eq!(attr(call, "assistant"), Some(&json!({ "stringValue": "asst_1" })));
    assert_eq!(attr(call, "ending"), Some(&json!({ "stringValue": "normal" })));
    assert_eq!(attr(call, "turn_p95_ms"), Some(&json!({ "doubleValue": 900.0 })));
    assert_eq!(attr(call, "user_interrupted"), Some(&json!({ "intValue": "1" })));
}

const VAPI: &str = r#"
[[pools]]
name = "acct"
limit = 3

[[providers]]
name = "vapi-main"
kind = "vapi"
webhook_secret = "vapi-webhook-secret"
pool = "acct"
"#;
