// Long file: one integration test binary for the operating layer (breakers, adaptive caps, alerts) sharing one fixture; each binary costs a link on 2 cores.
//! Operating under load, against a real server: samples and adaptive caps, breakers and
//! fallbacks, alerts that fire, act and undo on a manual clock, the live page and its
//! token, and the metrics that the deploy/ dashboards and rules name.

mod support;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, receiver, secs, ManualClock, TestServer};

const OPS: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 4
reserve = { inbound = 1 }
adaptive = { algorithm = "aimd", min = 2, window = { min = "1ms", max = "1ms", min_samples = 1 } }

[[breakers]]
name = "llm"
min_calls = 2
error_rate = 0.5
open_for = "30s"

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "60s", max_len = 5 }
overflow = { action = "voicemail" }
depends_on = ["llm"]
fallback = { action = "transfer", number = "+14155550123", message = "Our assistant is down." }

[[flows]]
name = "outbound"
pools = ["acct"]
class = "outbound"
overflow = { action = "busy" }
"#;

#[tokio::test]
async fn a_refusal_lowers_the_adaptive_cap_and_shows_as_a_limit_change() {
    let s = TestServer::start(OPS).await;
    let (st, v) = s.post("/v1/samples", json!({ "pool": "acct", "dropped": true })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "accepted": 1, "caps": { "acct": 3 } }), "AIMD: floor(4 × 0.9) = 3");
    let pool = s.pool("acct").await;
    assert_eq!((pool["limit"].as_u64(), pool["cap"].as_u64()), (Some(4), Some(3)));
    for i in 0..3 {
        let (st, _) = s.acquire(json!({ "flow": "support", "key": format!("c{i}") })).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, v) = s.acquire(json!({ "flow": "support", "key": "c3" })).await;
    assert_eq!(st, StatusCode::ACCEPTED, "the fourth call waits: the cap is 3 {v}");

    // Raising the limit at runtime keeps the adaptive cap where the algorithm put it.
    let (st, v) = s.put("/v1/pools/acct", json!({ "limit": 8 })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["cap"], 3);
    // Lowering it below the cap pulls the cap down with it.
    let (_, v) = s.put("/v1/pools/acct", json!({ "limit": 2 })).await;
    assert_eq!((v["limit"].as_u64(), v["cap"].as_u64()), (Some(2), Some(2)));

    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(m.contains("callgate_adaptive_cap_changes_total{pool=\"acct\",direction=\"down\"} 2"), "{m}");
    assert!(m.contains("callgate_adaptive_samples_total{pool=\"acct\",kind=\"drop\"} 1"));
}

#[tokio::test]
async fn a_release_may_carry_its_latency_and_outcome_and_no_body_still_works() {
    let s = TestServer::start(OPS).await;
    let (_, a) = s.acquire(json!({ "flow": "support", "key": "a" })).await;
    let (_, b) = s.acquire(json!({ "flow": "support", "key": "b" })).await;
    let id = a["lease"]["id"].as_str().unwrap();
    let resp = s
        .client
        .delete(format!("{}/v1/leases/{id}", s.base))
        .json(&json!({ "latency_ms": 850, "ok": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "released": true }));
    let (st, v) = s.delete(&format!("/v1/leases/{}", b["lease"]["id"].as_str().unwrap())).await;
    assert_eq!((st, v), (StatusCode::OK, json!({ "released": true })), "no body: a plain release");

    let resp = s
        .client
        .delete(format!("{}/v1/leases?key=a", s.base))
        .json(&json!({ "latency_ms": 100 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "released": false }), "twice frees once");

    let (_, stats) = s.get("/v1/stats").await;
    let support = stats["flows"].as_array().unwrap().iter().find(|f| f["name"] == "support").unwrap();
    assert_eq!(support["p95_latency_ms"], 850.0, "{stats}");
    assert_eq!(support["error_rate"], 0.0);
    assert_eq!(stats["pools"][0]["grants_per_minute"], 2);
    let (_, m) = s.get("/metrics").await;
    assert!(m.as_str().unwrap().contains("callgate_dependency_calls_total{dependency=\"llm\",outcome=\"ok\"} 1"));

    let resp = s
        .client
        .delete(format!("{}/v1/leases/L999", s.base))
        .json(&json!({ "dependency": "tts", "ok": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "unknown_dependency");
    let (st, v) = s.post("/v1/samples", json!({ "pool": "acct" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a sample that says nothing: {v}");
    let (st, _) = s.post("/v1/samples", json!({ "pool": "acct", "latency_ms": -1 })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.post("/v1/samples", json!({ "pool": "acct", "latency": 5 })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "unknown fields are refused");
}

/// Reads `/v1/events` until `pred` matches an event, for at most 5 s.
async fn next_event(resp: reqwest::Response, pred: impl Fn(&Value) -> bool) -> Value {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("event in time").expect("stream");
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    if let Ok(v) = serde_json::from_str::<Value>(data) {
                        if pred(&v) {
                            return v;
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn an_open_breaker_answers_its_flows_with_the_fallback() {
    let s = TestServer::start(OPS).await;
    let (_, held) = s.acquire(json!({ "flow": "support", "key": "before" })).await;
    assert_eq!(held["decision"], "granted");
    let events = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();

    let (st, v) = s
        .post(
            "/v1/samples",
            json!([{ "dependency": "llm", "ok": false, "latency_ms": 3000 }, { "dependency": "llm", "ok": false }]),
        )
        .await;
    assert_eq!((st, v["accepted"].as_u64()), (StatusCode::OK, Some(2)));
    let changed = next_event(events, |e| e["type"] == "breaker_changed").await;
    assert_eq!((changed["breaker"].as_str(), changed["state"].as_str()), (Some("llm"), Some("open")), "{changed}");
    assert_eq!(changed["cause"], "error_rate 2/2");

    let (st, v) = s.acquire(json!({ "flow": "support", "key": "during" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["reason"], "dependency_down");
    assert_eq!(v["dependency"], "llm");
    assert_eq!(
        v["overflow"],
        json!({ "action": "transfer", "number": "+14155550123", "message": "Our assistant is down." })
    );
    assert!(v["retry_after_ms"].as_u64().unwrap() > 20_000, "until the breaker probes: {v}");
    let (st, v) = s.acquire(json!({ "flow": "support", "key": "before" })).await;
    assert_eq!(st, StatusCode::OK, "a call already admitted keeps its lease: {v}");
    let (st, _) = s.acquire(json!({ "flow": "outbound" })).await;
    assert_eq!(st, StatusCode::OK, "a flow without the dependency is not affected");

    let (_, breakers) = s.get("/v1/breakers").await;
    assert_eq!(breakers[0]["name"], "llm");
    assert_eq!(breakers[0]["state"], "open");
    assert_eq!(breakers[0]["flows"], json!(["support"]));
    let (_, stats) = s.get("/v1/stats").await;
    assert_eq!(stats["flows"][0]["rejections_per_minute"], 1);
    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(m.contains("callgate_breaker_state{breaker=\"llm\",state=\"open\"} 1"));
    assert!(m.contains("callgate_breaker_state{breaker=\"llm\",state=\"closed\"} 0"));
    assert!(m.contains("callgate_fallbacks_total{flow=\"support\",breaker=\"llm\"} 1"));
    assert!(m.contains("callgate_breaker_transitions_total{breaker=\"llm\",to=\"open\"} 1"));
}

#[tokio::test]
async fn the_waiting_line_lists_callers_first_in_line_first() {
    let s = TestServer::start(OPS).await;
    for i in 0..4 {
        s.acquire(json!({ "flow": "support", "key": format!("in-{i}") })).await;
    }
    let (st, _) = s.acquire(json!({ "flow": "support", "key": "w1" })).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    s.acquire(json!({ "flow": "support", "key": "w2" })).await;
    let (st, line) = s.get("/v1/tickets").await;
    assert_eq!(st, StatusCode::OK);
    let keys: Vec<&str> = line.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["w1", "w2"]);
    assert_eq!(line[1]["position"], 2);
    assert_eq!(line[0]["flow"], "support");
    assert_eq!(line[0]["pools"], json!([{ "pool": "acct", "units": 1 }]));
}

// ----- alerts on a manual clock ----------------------------------------------------------

#[tokio::test]
async fn an_alert_fires_after_for_acts_and_undoes_with_hysteresis() {
    let (hook, got) = receiver().await;
    let toml = format!(
        r#"
[[pools]]
name = "acct"
limit = 4
[[pools]]
name = "campaign"
limit = 3
[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
overflow = {{ action = "voicemail" }}
[[alerts]]
name = "saturated"
pool = "acct"
metric = "utilization"
above = 0.9
for = "2m"
resolve = {{ below = 0.6, for = "1m" }}
undo = true
actions = [
  {{ action = "notify", url = "{hook}" }},
  {{ action = "set_overflow", flow = "support", overflow = {{ action = "callback" }} }},
  {{ action = "set_limit", pool = "campaign", limit = 1 }},
  {{ action = "pause_campaigns", below_priority = 20 }},
]
"#
    );
    let clock = ManualClock::at(1_800_000_000_000);
    let mut s = TestServer::start_with_clock(&toml, clock.clone()).await;
    let governor = &s.server().app.governor;

    // A call that waits for 2 of the campaign pool's 3 units (1 is free).
    s.acquire(json!({ "pools": [{ "pool": "campaign", "units": 2 }], "class": "outbound" })).await;
    let (_, big) = s
        .acquire(
            json!({ "pools": [{ "pool": "campaign", "units": 2 }], "class": "outbound", "max_wait_ms": 3_600_000 }),
        )
        .await;
    let big = big["ticket"]["id"].as_str().unwrap().to_string();
    for i in 0..4 {
        s.acquire(json!({ "flow": "support", "key": format!("c{i}") })).await;
    }
    governor.evaluate_alerts().await;
    let (_, alerts) = s.get("/v1/alerts").await;
    assert_eq!(alerts[0]["state"], "pending", "{alerts}");
    assert_eq!(alerts[0]["value"], 1.0);
    clock.advance(119_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "pending", "119 s is shorter than `for`");
    let (_, v) = s.acquire(json!({ "flow": "support", "key": "c4" })).await;
    assert_eq!(v["overflow"]["action"], "voicemail", "nothing has fired yet");

    clock.advance(1_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "firing");
    let (_, v) = s.acquire(json!({ "flow": "support", "key": "c5" })).await;
    assert_eq!(v["overflow"], json!({ "action": "callback" }), "set_overflow switched the 429 body");
    assert_eq!(governor.overflow_chain("support").unwrap()[0].action.as_str(), "callback", "and the edges' chain");
    assert_eq!(s.pool("campaign").await["limit"], 1, "set_limit");
    let (_, t) = s.get(&format!("/v1/tickets/{big}")).await;
    assert_eq!(t["state"], "never_fits", "set_limit ended the waiting call that can no longer fit: {t}");
    assert_eq!(s.pool("campaign").await["waiting"], 0);
    eventually("notified once", secs(5), || async { got.lock().unwrap().len() == 1 }).await;
    let note = got.lock().unwrap()[0].clone();
    assert_eq!(note["state"], "firing");
    assert_eq!(note["alert"], "saturated");
    let text = note["text"].as_str().unwrap();
    assert!(
        text.contains("saturated") && text.contains("utilization of pool `acct` is 1"),
        "Slack reads `text`: {text}"
    );
    let m = s.metrics().await;
    assert!(m.contains("callgate_alert_firing{alert=\"saturated\"} 1"));
    assert!(m.contains("callgate_alert_actions_total{alert=\"saturated\",action=\"set_limit\",outcome=\"ok\"} 1"));

    // 3 of 4 (0.75) is under the threshold but not under the resolve value: still firing.
    s.delete("/v1/leases?key=c0").await;
    clock.advance(300_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "firing", "hysteresis: 0.75 is not below 0.6");
    // 2 of 4: recovered, and resolves a minute later.
    s.delete("/v1/leases?key=c1").await;
    governor.evaluate_alerts().await;
    clock.advance(59_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "firing");
    clock.advance(1_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "quiet");
    assert_eq!(s.pool("campaign").await["limit"], 3, "undo restored the limit");
    s.acquire(json!({ "flow": "support", "key": "c6" })).await;
    s.acquire(json!({ "flow": "support", "key": "c7" })).await;
    let (_, v) = s.acquire(json!({ "flow": "support", "key": "c8" })).await;
    assert_eq!(v["overflow"]["action"], "voicemail", "undo restored the overflow");
    eventually("notified of the resolution", secs(5), || async { got.lock().unwrap().len() == 2 }).await;
    assert_eq!(got.lock().unwrap()[1]["state"], "resolved");
    s.server.take().expect("running").stop().await;
}

// ----- the live page ---------------------------------------------------------------------

#[tokio::test]
async fn the_live_page_is_served_and_events_take_a_token_in_the_url() {
    let toml = format!("[auth]\nkeys = [{{ name = \"ops\", token = \"t0ken\", role = \"client\" }}]\n{OPS}");
    let s = TestServer::start(&toml).await;
    let page = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the page holds no data and needs no key");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/live.js") && html.contains("Waiting line"));
    for (path, kind) in [("/live.js", "text/javascript"), ("/live.css", "text/css")] {
        let r = s.client.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
    }

    let r = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s.client.get(format!("{}/v1/events?token=wrong", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s.client.get(format!("{}/v1/events?token=t0ken", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.client.get(format!("{}/v1/pools?token=t0ken", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "only /v1/events reads a token from the URL");
}

// ----- deploy/: every metric the dashboard and the rules name exists ---------------------

/// Metric names (`callgate_…`) in a text, without histogram suffixes.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("callgate_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            let mut name = &text[start..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                name = name.strip_suffix(suffix).unwrap_or(name);
            }
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

#[tokio::test]
async fn every_metric_the_deploy_files_name_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dashboard = std::fs::read_to_string(root.join("grafana/callgate.json")).expect("the Grafana dashboard");
    let rules = std::fs::read_to_string(root.join("prometheus/callgate-rules.yml")).expect("the alert rules");
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 8), "the dashboard has panels");
    for group in ["groups:", "alert:", "expr:"] {
        assert!(rules.contains(group), "the rules file has `{group}`");
    }

    let toml = format!(
        "{OPS}\n[[alerts]]\nname = \"busy\"\npool = \"acct\"\nmetric = \"waiting\"\nabove = 3\n\
         [[providers]]\nname = \"vapi-main\"\nkind = \"vapi\"\nwebhook_secret = \"s3cret\"\npool = \"acct\"\n"
    );
    let s = TestServer::start(&toml).await;
    let (_, m) = s.get("/metrics").await;
    let exposed: std::collections::BTreeSet<String> = m
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let named: std::collections::BTreeSet<String> =
        metric_names(&dashboard).into_iter().chain(metric_names(&rules)).collect();
    assert!(named.len() >= 15, "the files name the metrics: {named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(missing.is_empty(), "named in deploy/ but not in /metrics: {missing:?}");
}

/// `acct` adapts (AIMD, each drop × 0.9, at least 2); `fixed` does not.
const TWO_POOLS: &str = r#"
[[pools]]
name = "acct"
limit = 4
adaptive = { algorithm = "aimd", min = 2, window = { min = "1ms", max = "1ms", min_samples = 1 } }

[[pools]]
name = "fixed"
limit = 5

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
"#;

#[tokio::test]
async fn the_governor_owns_pool_caps_a_refusal_cools_a_fixed_pool_and_drops_an_adaptive_one() {
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(TWO_POOLS, clock.clone()).await;
    let governor = &s.server().app.governor;
    let s = &s;
    let cap = |pool: &'static str| async move { s.pool(pool).await["cap"].as_u64().unwrap() };

    // A fixed pool: capped at what is in use for the cooldown, then back to its limit.
    for i in 0..2 {
        let (st, _) =
            s.acquire(json!({ "pools": [{ "pool": "fixed" }], "class": "inbound", "key": format!("f{i}") })).await;
        assert_eq!(st, StatusCode::OK);
    }
    assert_eq!(governor.provider_refused("fixed", 60_000).await.unwrap(), Some(2));
    assert_eq!(cap("fixed").await, 2);
    let (st, _) = s.acquire(json!({ "pools": [{ "pool": "fixed" }], "class": "inbound" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "nothing above what was in use");
    clock.advance(59_000);
    governor.tick();
    assert_eq!(cap("fixed").await, 2, "the cooldown still runs");
    clock.advance(1_000);
    governor.tick();
    assert_eq!(cap("fixed").await, 5, "the cooldown ended");
    assert_eq!(governor.cap_sources("fixed").unwrap().cooldown, None);

    // … or earlier, when reconciliation finds the platform with room.
    governor.provider_refused("fixed", 60_000).await.unwrap();
    assert_eq!(cap("fixed").await, 2);
    assert!(!governor.platform_room("fixed", 5).await.unwrap(), "five live calls on a five-line account: no room");
    assert_eq!(cap("fixed").await, 2);
    assert!(governor.platform_room("fixed", 4).await.unwrap());
    assert_eq!(cap("fixed").await, 5);

    // An adaptive pool: a refusal is a drop for its limiter, and no cooldown ever raises
    // the cap above the limiter's.
    let (_, v) = s.post("/v1/samples", json!({ "pool": "acct", "dropped": true })).await;
    assert_eq!(v["caps"]["acct"], 3, "{v}");
    clock.advance(1_000); // the limiter's next window
    assert_eq!(governor.provider_refused("acct", 60_000).await.unwrap(), Some(2), "floor(3 × 0.9) = 2");
    let sources = governor.cap_sources("acct").unwrap();
    assert_eq!((sources.adaptive, sources.cooldown), (Some(2), None));
    clock.advance(3_600_000);
    governor.tick();
    assert!(!governor.platform_room("acct", 0).await.unwrap());
    assert_eq!(cap("acct").await, 2, "the limiter's cap stands");
    let (_, stats) = s.get("/v1/stats").await;
    assert_eq!(stats["adaptive"][0]["cap"], 2);

    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(m.contains("callgate_provider_refusals_total{pool=\"fixed\"} 2"), "{m}");
    assert!(m.contains("callgate_provider_refusals_total{pool=\"acct\"} 1"), "{m}");
    assert!(m.contains("callgate_pool_cap{pool=\"fixed\"} 5"), "{m}");
}

/// A dependency with one probe when half-open, a flow of callers and a campaign's flow
/// that both depend on it.
const GATED_CAMPAIGN: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 4

[[breakers]]
name = "llm"
min_calls = 2
error_rate = 0.5
open_for = "30s"
half_open_probes = 1

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
depends_on = ["llm"]

[[flows]]
name = "dialer"
pools = ["acct"]
class = "outbound"
depends_on = ["llm"]
"#;

/// A campaign's call as the dialer asks for it: by pools (its provider's pool may stand in
/// for the flow's), for the campaign's flow, never waiting.
fn campaign_call(flow: &str, pool: &str, key: &str) -> callgate_server::governor::AcquireRequest {
    use callgate_server::governor::{AcquireRequest, Edge, Target};
    AcquireRequest {
        target: Target::FlowPools { flow: flow.into(), pools: vec![(pool.into(), 1)], class: "outbound".into() },
        key: Some(key.into()),
        ttl_ms: None,
        max_wait_ms: Some(0),
        wait_ms: 0,
        meta: None,
        edge: Edge::Campaign,
    }
}

#[tokio::test]
async fn a_campaign_call_passes_its_flows_breaker_and_is_one_of_its_probes() {
    use callgate_server::governor::Answer;
    let clock = ManualClock::at(1_700_000_000_000);
    let s = TestServer::start_with_clock(GATED_CAMPAIGN, clock.clone()).await;
    let governor = &s.server().app.governor;
    let dial = |key: &str| campaign_call("dialer", "acct", key);
    let (st, _) = s
        .post("/v1/samples", json!([{ "dependency": "llm", "ok": false }, { "dependency": "llm", "ok": false }]))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Open: the campaign's call is not admitted, and holds no line.
    match governor.acquire(dial("dial:1")).await.unwrap() {
        Answer::Rejected { dependency, .. } => assert_eq!(dependency.as_deref(), Some("llm")),
        other => panic!("a campaign call passed an open breaker: {other:?}"),
    }
    assert_eq!(s.used("acct").await, 0);

    // Half-open with one probe: the campaign's call is that probe, so the next caller of
    // a flow behind the same breaker waits for its outcome instead of being a second one.
    clock.advance(30_000);
    assert!(matches!(governor.acquire(dial("dial:2")).await.unwrap(), Answer::Granted(_)));
    let (st, v) = s.acquire(json!({ "flow": "support" })).await;
    assert_eq!((st, &v["reason"]), (StatusCode::TOO_MANY_REQUESTS, &json!("dependency_down")), "{v}");
    assert_eq!(s.used("acct").await, 1);
}

/// A campaign whose flow is the only one behind a breaker: paused when the breaker opens,
/// resumed when it turns half-open (its calls are the probes: nothing else would ever
/// probe, and the campaign stayed paused for good), paused again if it opens again.
#[tokio::test]
async fn a_campaign_paused_by_its_breaker_resumes_to_probe_when_it_turns_half_open() {
    let toml = r#"
[[pools]]
name = "out"
limit = 2
[[breakers]]
name = "llm"
min_calls = 2
error_rate = 0.5
open_for = "30s"
half_open_probes = 1
[[flows]]
name = "dialing"
pools = ["out"]
class = "outbound"
depends_on = ["llm"]
[[campaigns]]
name = "renewals"
flow = "dialing"
start = true
window = { start = "00:00", end = "24:00" }
simulate = { ring_time = "2ms", talk_min = "5ms", talk_mean = "10ms", talk_max = "40ms", failure_rate = 0, seed = 3 }
"#;
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(toml, clock.clone()).await;
    let governor = s.server().app.governor.clone();
    async fn state(s: &TestServer) -> String {
        s.get("/v1/campaigns/renewals").await.1["state"].as_str().unwrap_or_default().to_owned()
    }
    assert_eq!(state(&s).await, "running");
    let fail = json!([{ "dependency": "llm", "ok": false }, { "dependency": "llm", "ok": false }]);
    assert_eq!(s.post("/v1/samples", fail.clone()).await.0, StatusCode::OK);
    eventually("the campaign is paused by the open breaker", secs(10), || async { state(&s).await == "paused" }).await;

    // open_for elapses: half-open, and the campaign dials again (its calls are the probes).
    clock.advance(30_000);
    governor.ops_tick();
    eventually("the campaign resumes when the breaker turns half-open", secs(10), || async {
        state(&s).await == "running"
    })
    .await;

    // A call of the campaign's flow is the probe, and it fails: open again, paused again.
    let probe = campaign_call("dialing", "out", "dial:probe");
    assert!(matches!(governor.acquire(probe).await.unwrap(), callgate_server::governor::Answer::Granted(_)));
    assert_eq!(s.post("/v1/samples", json!([{ "dependency": "llm", "ok": false }])).await.0, StatusCode::OK);
    eventually("paused again when the breaker opens again", secs(10), || async { state(&s).await == "paused" }).await;
}

/// `pause_campaigns` reaches the dialer as a command on the event bus: the firing alert
/// pauses the running campaign below the priority, durably (the campaign API shows it),
/// and its undo resumes it.
#[tokio::test]
async fn an_alert_pauses_a_running_campaign_and_its_undo_resumes_it() {
    let toml = r#"
[[pools]]
name = "acct"
limit = 2
[[pools]]
name = "out"
limit = 2
[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
[[flows]]
name = "dialing"
pools = ["out"]
class = "outbound"
[[campaigns]]
name = "renewals"
flow = "dialing"
priority = 10
start = true
window = { start = "00:00", end = "24:00" }
simulate = { ring_time = "2ms", talk_min = "5ms", talk_mean = "10ms", talk_max = "40ms", failure_rate = 0, seed = 3 }
[[alerts]]
name = "busy"
pool = "acct"
metric = "utilization"
above = 0.9
for = "1m"
resolve = { below = 0.6, for = "1m" }
undo = true
actions = [{ action = "pause_campaigns", below_priority = 20 }]
"#;
    let clock = ManualClock::at(1_800_000_000_000);
    let s = TestServer::start_with_clock(toml, clock.clone()).await;
    let governor = &s.server().app.governor;
    assert_eq!(s.get("/v1/campaigns/renewals").await.1["state"], "running");

    for i in 0..2 {
        s.acquire(json!({ "flow": "support", "key": format!("c{i}") })).await;
    }
    governor.evaluate_alerts().await;
    clock.advance(60_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "firing");
    assert_eq!(s.get("/v1/campaigns/renewals").await.1["state"], "paused", "the alert paused the campaign");

    for i in 0..2 {
        let (st, _) = s.delete(&format!("/v1/leases?key=c{i}")).await;
        assert_eq!(st, StatusCode::OK);
    }
    governor.evaluate_alerts().await;
    clock.advance(60_000);
    governor.evaluate_alerts().await;
    assert_eq!(s.get("/v1/alerts").await.1[0]["state"], "quiet");
    assert_eq!(s.get("/v1/campaigns/renewals").await.1["state"], "running", "the undo resumed it");
}

// ----- schedules -------------------------------------------------------------------------

/// Four lines, one held back for inbound; from 10:00 to 14:00 on weekdays in New York,
/// three are, and the support line's overflow is `busy` instead of voicemail.
const SCHEDULED: &str = r#"
[[pools]]
name = "vapi-main"
limit = 4
reserve = { inbound = 1 }
[[flows]]
name = "support"
pools = ["vapi-main"]
class = "inbound"
overflow = { action = "voicemail" }
[[flows]]
name = "outbound"
pools = ["vapi-main"]
class = "outbound"
[[schedules]]
name = "weekday-peak"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "10:00"
end = "14:00"
timezone = "America/New_York"
pools = { vapi-main = { reserve = { inbound = 3 } } }
flows = { support = { overflow = { action = "busy" } } }
"#;

/// Monday 2 March 2026, 09:59 in New York (14:59 UTC).
const MONDAY_0959_NY: u64 = 1_772_463_540_000;

#[tokio::test]
async fn a_schedule_changes_a_reserve_at_its_time() {
    let clock = ManualClock::at(MONDAY_0959_NY);
    let s = TestServer::start_with_clock(SCHEDULED, clock.clone()).await;
    let app = s.server().app.clone();
    let mut events = support::providers::Events::subscribe(&s).await;
    assert_eq!(s.pool("vapi-main").await["reserve"], json!({ "inbound": 1 }));
    let (_, list) = s.get("/v1/schedules").await;
    assert_eq!(list[0]["name"], "weekday-peak");
    assert_eq!(list[0]["active"], false);
    // One outbound call is placed before 10:00 (it needs 1 line + 1 reserved).
    let (status, _) = s.acquire(json!({ "flow": "outbound", "key": "o1" })).await;
    assert_eq!(status, StatusCode::OK);

    // 10:00: the schedule holds three lines back for inbound.
    clock.advance(60_000);
    assert!(app.schedules.apply(false).await.unwrap(), "the schedule starts at 10:00");
    assert_eq!(s.pool("vapi-main").await["reserve"], json!({ "inbound": 3 }));
    let e = events.next_of("schedule_changed").await;
    assert_eq!(e["active"], json!(["weekday-peak"]));
    assert_eq!(e["started"], json!(["weekday-peak"]));
    assert_eq!(s.get("/v1/schedules").await.1[0]["active"], true);
    let page = s.client.get(format!("{}/live.js", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/v1/schedules") && page.contains("schedule_changed"), "the live page shows the schedules");
    assert_eq!(support::providers::metric(&s, "callgate_schedule_active{schedule=\"weekday-peak\"}").await, 1.0);
    // A second outbound call would need 1 + 3 of the 3 free lines: refused.
    let (status, _) = s.acquire(json!({ "flow": "outbound", "key": "o2" })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Inbound takes the three lines; the next caller meets the schedule's overflow.
    for i in 0..3 {
        let (status, v) = s.acquire(json!({ "flow": "support", "key": format!("c{i}") })).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, v) = s.acquire(json!({ "flow": "support", "key": "c3" })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["overflow"]["action"], "busy", "{v}");
    assert!(!app.schedules.apply(false).await.unwrap(), "nothing changed since");

    // 14:00: the ticker puts the configuration as written back in force by itself.
    let mut events = support::providers::Events::subscribe(&s).await;
    clock.advance(4 * 3_600_000);
    let e = events.next_of("schedule_changed").await;
    assert_eq!(e["ended"], json!(["weekday-peak"]));
    assert_eq!(s.pool("vapi-main").await["reserve"], json!({ "inbound": 1 }));
    assert_eq!(support::providers::metric(&s, "callgate_schedule_active{schedule=\"weekday-peak\"}").await, 0.0);
    assert_eq!(support::providers::metric(&s, "callgate_schedule_changes_total{result=\"ok\"}").await, 2.0);
    assert_eq!(governor_overflow(&s).await, "voicemail");
}

/// The overflow a support caller meets when every line is taken.
async fn governor_overflow(s: &TestServer) -> String {
    let chain = s.server().app.governor.overflow_chain("support").unwrap();
    chain[0].action.as_str().to_owned()
}
