// Long file: one integration test binary for the Vapi edge sharing its fake; each binary costs a link on 2 cores.
//! The Vapi edge against a real server and journal, with a fake Vapi API for
//! reconciliation (shapes from shared/providers/vapi.md).

mod support;

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::providers::{fake_vapi, metric, Events, Fake};
use support::{holds_within, secs, TestServer};

const SECRET: &str = "vapi-webhook-secret";
const SUPPORT: &str = "+15550001111";
const SALES: &str = "+15550002222";

/// Ten slots, like a Vapi account. `support` books callbacks, then (Vapi cannot record)
/// transfers; `sales` transfers over SIP; every other number gets `default`.
fn config(fake: &Fake, reconcile_every: &str) -> String {
    format!(
        r#"
[[pools]]
name = "vapi-main"
limit = 10

[[providers]]
name = "vapi-main"
kind = "vapi"
base_url = "{url}"
api_key = "vapi-private-key"
webhook_secret = "{SECRET}"
pool = "vapi-main"
reconcile_every = "{reconcile_every}"

[[flows]]
name = "support"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{SUPPORT}" }}
vapi = {{ assistant_id = "asst_support" }}
queue = {{ max_wait = "90s", max_len = 20 }}
overflow = [
  {{ action = "callback", message = "All lines are busy. We will call you back shortly." }},
  {{ action = "voicemail" }},
  {{ action = "transfer", number = "+15559990000", message = "Connecting you to our team." }},
]

[[flows]]
name = "sales"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{SALES}" }}
vapi = {{ assistant_id = "asst_sales" }}
overflow = [{{ action = "ivr", menu = "x" }}, {{ action = "transfer", sip = "sip:humans@pbx.example.com" }}]

[[flows]]
name = "default"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main" }}
vapi = {{ assistant_id = "asst_default" }}
overflow = {{ action = "busy", message = "Sorry, we are busy." }}
"#,
        url = fake.url
    )
}

/// A server whose reconciliation runs rarely (an hour), for tests about webhooks only.
async fn start() -> (TestServer, Fake) {
    let fake = fake_vapi().await;
    (TestServer::start(&config(&fake, "1h")).await, fake)
}

async fn webhook(s: &TestServer, message: Value) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", s.base))
        .header("X-Vapi-Secret", SECRET)
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assistant_request(call: &str, from: Option<&str>, to: &str) -> Value {
    let mut m = json!({
        "type": "assistant-request",
        "call": { "id": call, "type": "inboundPhoneCall", "phoneNumberId": "pn-1" },
        "phoneNumber": { "id": "pn-1", "number": to },
    });
    if let Some(from) = from {
        m["customer"] = json!({ "number": from });
        m["call"]["customer"] = json!({ "number": from });
    }
    m
}

fn status_update(call: &str, status: &str) -> Value {
    json!({ "type": "status-update", "status": status, "call": { "id": call }, "endedReason": "customer-ended-call" })
}

fn report(call: &str) -> Value {
    json!({
        "type": "end-of-call-report",
        "call": { "id": call },
        "endedReason": "customer-ended-call",
        "cost": 0.42,
        "costs": [{ "type": "transport", "cost": 0.02 }, { "type": "model", "cost": 0.4 }],
        "startedAt": "2026-11-28T10:00:00.000Z",
        "endedAt": "2026-11-28T10:02:30.500Z",
        "artifact": { "transcript": "AI: Hello. User: Bye." },
    })
}

async fn calls(s: &TestServer) -> Vec<Value> {
    let (st, v) = s.get("/v1/calls").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

async fn call_record(s: &TestServer, id: &str) -> Value {
    calls(s).await.into_iter().find(|c| c["call_id"] == id).unwrap_or_else(|| panic!("no record of {id}"))
}

#[tokio::test]
async fn a_vapi_call_is_admitted_kept_alive_released_and_recorded() {
    let (s, _fake) = start().await;
    let (st, v) = webhook(&s, assistant_request("call-1", Some("+15551230001"), SUPPORT)).await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({ "assistantId": "asst_support" })));
    assert_eq!(s.used("vapi-main").await, 1);
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "call-1", "the call id is the lease's key");
    assert_eq!(leases[0]["meta"]["provider"], "vapi-main");

    // Vapi repeats itself: the same call is the same lease.
    let (_, v) = webhook(&s, assistant_request("call-1", Some("+15551230001"), SUPPORT)).await;
    assert_eq!(v, json!({ "assistantId": "asst_support" }));
    assert_eq!(s.used("vapi-main").await, 1);

    let expires = leases[0]["expires_at_ms"].as_u64().unwrap();
    let (st, v) = webhook(&s, status_update("call-1", "in-progress")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert!(leases[0]["expires_at_ms"].as_u64().unwrap() >= expires, "a status update renews the lease");

    let (st, _) = webhook(&s, report("call-1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.used("vapi-main").await, 0, "the end-of-call report frees the line");

    let record = call_record(&s, "call-1").await;
    assert_eq!(record["flow"], "support");
    assert_eq!(record["outcome"], "granted");
    assert_eq!(record["from"], "+15551230001");
    assert_eq!(record["to"], SUPPORT);
    assert_eq!(record["duration_ms"], 150_500, "computed from startedAt and endedAt");
    assert_eq!(record["ended_reason"], "customer-ended-call");
    assert_eq!(record["cost_usd"], 0.42);
    assert_eq!(metric(&s, "callgate_call_cost_usd_total{provider=\"vapi-main\"}").await, 0.42);

    // Other numbers go to the default flow; other message types are acknowledged.
    let (_, v) = webhook(&s, assistant_request("call-2", None, "+15550009999")).await;
    assert_eq!(v, json!({ "assistantId": "asst_default" }));
    let (st, v) = webhook(&s, json!({ "type": "transcript", "transcript": "hi", "call": { "id": "call-2" } })).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    assert_eq!(
        metric(&s, "callgate_webhooks_total{provider=\"vapi-main\",endpoint=\"assistant-request\",outcome=\"ok\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn the_eleventh_vapi_caller_gets_the_overflow_and_a_booked_callback() {
    let (s, _fake) = start().await;
    for i in 0..10 {
        let (_, v) = webhook(&s, assistant_request(&format!("call-{i}"), Some("+15551230000"), SUPPORT)).await;
        assert_eq!(v, json!({ "assistantId": "asst_support" }), "caller {i}");
    }
    let events = metric(&s, "callgate_events_total").await;

    // The 11th: no waiting room on Vapi; the first overflow step books a callback, on
    // disk before the caller hears so.
    let (st, v) = webhook(&s, assistant_request("call-10", Some("+15551239999"), SUPPORT)).await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({ "error": "All lines are busy. We will call you back shortly." })));
    let (st, cbs) = s.get("/v1/callbacks").await;
    assert_eq!(st, StatusCode::OK);
    let cbs = cbs.as_array().unwrap();
    assert_eq!(cbs.len(), 1, "{cbs:?}");
    assert_eq!(cbs[0]["number"], "+15551239999");
    assert_eq!(cbs[0]["flow"], "support");
    assert_eq!(cbs[0]["call_id"], "call-10");
    assert_eq!(cbs[0]["provider"], "vapi-main");
    assert_eq!(cbs[0]["state"], "booked");
    assert!(cbs[0]["due_at_ms"].as_u64().unwrap() >= cbs[0]["booked_at_ms"].as_u64().unwrap());
    // Vapi repeating the request books nothing twice.
    webhook(&s, assistant_request("call-10", Some("+15551239999"), SUPPORT)).await;
    assert_eq!(s.get("/v1/callbacks?state=booked&flow=support").await.1.as_array().unwrap().len(), 1);

    // A withheld number cannot be called back; voicemail cannot be taken on Vapi: the
    // caller is transferred.
    let (_, v) = webhook(&s, assistant_request("call-11", None, SUPPORT)).await;
    assert_eq!(
        v,
        json!({ "destination": { "type": "number", "number": "+15559990000", "message": "Connecting you to our team." } })
    );
    // An IVR needs a keypad: sales transfers over SIP.
    let (_, v) = webhook(&s, assistant_request("call-12", Some("+15551230002"), SALES)).await;
    assert_eq!(v, json!({ "destination": { "type": "sip", "sipUri": "sip:humans@pbx.example.com" } }));
    let (_, v) = webhook(&s, assistant_request("call-13", Some("+15551230003"), "+15550009999")).await;
    assert_eq!(v, json!({ "error": "Sorry, we are busy." }));

    assert_eq!(s.used("vapi-main").await, 10, "the platform's 10 slots are never exceeded");
    assert!(metric(&s, "callgate_events_total").await > events, "rejections are events");
    assert_eq!(metric(&s, "callgate_overflow_total{flow=\"support\",action=\"callback\"}").await, 2.0);
    assert_eq!(metric(&s, "callgate_overflow_total{flow=\"support\",action=\"transfer\"}").await, 1.0);
    assert_eq!(
        metric(&s, "callgate_callbacks_booked_total{flow=\"support\"}").await,
        2.0,
        "the repeat counts, books once"
    );
    assert_eq!(call_record(&s, "call-11").await["outcome"], "overflow:transfer");
    assert_eq!(call_record(&s, "call-10").await["outcome"], "overflow:callback");

    // The callback survives a restart.
    let s = s.restart().await;
    assert_eq!(s.get("/v1/callbacks").await.1.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ended_and_the_report_release_once_in_either_order() {
    let (s, _fake) = start().await;
    webhook(&s, assistant_request("a", None, SUPPORT)).await;
    webhook(&s, assistant_request("b", None, SUPPORT)).await;
    assert_eq!(s.used("vapi-main").await, 2);
    webhook(&s, status_update("a", "ended")).await;
    webhook(&s, report("a")).await;
    webhook(&s, report("b")).await;
    webhook(&s, status_update("b", "ended")).await;
    webhook(&s, status_update("b", "ended")).await;
    assert_eq!(s.used("vapi-main").await, 0);
    let released = "callgate_leases_ended_total{pool=\"vapi-main\",class=\"inbound\",how=\"released\"}";
    assert_eq!(metric(&s, released).await, 2.0, "each lease is freed exactly once");
    let a = call_record(&s, "a").await;
    assert_eq!((a["duration_ms"].as_u64(), a["cost_usd"].as_f64()), (Some(150_500), Some(0.42)));
    let b = call_record(&s, "b").await;
    assert_eq!(b["duration_ms"], 150_500, "a later `ended` does not erase the report's facts");
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_before_anything_changes() {
    let (s, _fake) = start().await;
    webhook(&s, assistant_request("live", None, SUPPORT)).await;
    let pool = s.pool("vapi-main").await;
    let events = metric(&s, "callgate_events_total").await;
    let wrong = "vapi-webhook-secreT";
    let bodies = [
        json!({ "message": assistant_request("new", Some("+15551230000"), SUPPORT) }),
        json!({ "message": status_update("live", "ended") }),
        json!({ "message": report("live") }),
    ];
    for body in &bodies {
        for headers in [
            vec![],
            vec![("X-Vapi-Secret", wrong)],
            vec![("Authorization", "Bearer nope")],
            vec![("Authorization", SECRET)],
        ] {
            let mut req = s.client.post(format!("{}/webhooks/vapi/vapi-main", s.base)).json(body);
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    // Not even a body that cannot be parsed gets past the secret check.
    let resp = s.client.post(format!("{}/webhooks/vapi/vapi-main", s.base)).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.pool("vapi-main").await, pool, "nothing changed");
    assert_eq!(metric(&s, "callgate_events_total").await, events, "no event was recorded");
    assert!(s.get("/v1/callbacks").await.1.as_array().unwrap().is_empty());
    assert_eq!(
        metric(
            &s,
            "callgate_webhooks_total{provider=\"vapi-main\",endpoint=\"unauthenticated\",outcome=\"unauthorized\"}"
        )
        .await,
        13.0
    );

    // The right secret as a bearer token works too.
    let resp = s
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", s.base))
        .bearer_auth(SECRET)
        .json(&json!({ "message": status_update("live", "ended") }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(s.used("vapi-main").await, 0);
    // An unknown provider is a 404.
    let resp =
        s.client.post(format!("{}/webhooks/vapi/other", s.base)).header("X-Vapi-Secret", SECRET).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_lost_ended_webhook_is_repaired_by_reconciliation() {
    let fake = fake_vapi().await;
    // The platform lists the calls from the start, as it would.
    fake.set_calls(vec![
        json!({ "id": "ghost", "status": "in-progress", "createdAt": "2026-11-28T10:00:00.000Z" }),
        json!({ "id": "alive", "status": "in-progress", "createdAt": "2026-11-28T10:00:00.000Z" }),
    ]);
    let s = TestServer::start(&config(&fake, "100ms")).await;
    webhook(&s, assistant_request("ghost", None, SUPPORT)).await;
    webhook(&s, assistant_request("alive", None, SUPPORT)).await;
    let n = fake.requests();
    assert!(holds_within(secs(5), || async { fake.requests() >= n + 2 }).await, "reconciliation lists the calls");
    assert_eq!(s.used("vapi-main").await, 2, "live calls keep their lines");

    // The call ends on the platform, and the `ended` webhook never arrives.
    let mut events = Events::subscribe(&s).await;
    fake.set_calls(vec![
        json!({ "id": "ghost", "status": "ended", "endedReason": "silence-timed-out" }),
        json!({ "id": "alive", "status": "in-progress" }),
    ]);
    assert!(holds_within(secs(5), || async { s.used("vapi-main").await == 1 }).await, "the ghost call is released");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "alive");
    let reconciled = "callgate_reconciled_total{provider=\"vapi-main\",what=\"lease\"}";
    assert!(holds_within(secs(5), || async { metric(&s, reconciled).await == 1.0 }).await);
    let recorded = || async {
        calls(&s).await.iter().any(|c| c["call_id"] == "ghost" && c["ended_reason"] == "callgate-reconciled")
    };
    assert!(holds_within(secs(5), recorded).await, "the call record says why it ended");
    let released = events.next_of("released").await;
    assert_eq!(released["lease"]["key"], "ghost");
    let reconciled = events.next_of("reconciled").await;
    assert_eq!((reconciled["provider"].as_str(), reconciled["call_id"].as_str()), (Some("vapi-main"), Some("ghost")));
    let (path, query, auth) = fake.last_request().unwrap();
    assert_eq!(path, "/call");
    assert_eq!(auth.as_deref(), Some("Bearer vapi-private-key"));
    assert!(query.contains_key("createdAtGe") && query.contains_key("limit"), "{query:?}");
    assert_eq!(metric(&s, "callgate_provider_live_calls{provider=\"vapi-main\"}").await, 1.0);

    // A platform that fails changes nothing.
    *fake.state.fail_with.lock().unwrap() = Some(500);
    fake.set_calls(vec![]);
    let n = fake.requests();
    assert!(holds_within(secs(5), || async { fake.requests() >= n + 2 }).await);
    assert_eq!(s.used("vapi-main").await, 1);
    assert!(metric(&s, "callgate_provider_requests_total{provider=\"vapi-main\",outcome=\"error\"}").await >= 2.0);
}

#[tokio::test]
async fn live_calls_callgate_did_not_know_are_adopted_then_released() {
    let fake = fake_vapi().await;
    let s = TestServer::start(&config(&fake, "100ms")).await;
    let mut events = Events::subscribe(&s).await;
    fake.set_calls(vec![
        json!({ "id": "known", "status": "in-progress" }),
        // Started outside callgate (the dashboard, another integration).
        json!({ "id": "stranger", "status": "in-progress" }),
        json!({ "id": "later", "status": "scheduled" }),
        json!({ "id": "old", "status": "ended" }),
    ]);
    webhook(&s, assistant_request("known", None, SUPPORT)).await;
    assert!(holds_within(secs(5), || async { s.used("vapi-main").await == 2 }).await, "the stranger is counted");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    let adopted = leases.as_array().unwrap().iter().find(|l| l["key"] == "stranger").unwrap().clone();
    assert_eq!(adopted["meta"]["adopted"], true);
    let event = events.next_of("adopted").await;
    assert_eq!((event["call_id"].as_str(), &event["lease"]), (Some("stranger"), &adopted["id"]));
    assert!(
        holds_within(secs(5), || async { metric(&s, "callgate_adopted_total{provider=\"vapi-main\"}").await == 1.0 })
            .await
    );
    let recorded = || async { calls(&s).await.iter().any(|c| c["call_id"] == "stranger" && c["outcome"] == "adopted") };
    assert!(holds_within(secs(5), recorded).await);

    fake.set_calls(vec![
        json!({ "id": "known", "status": "in-progress" }),
        json!({ "id": "stranger", "status": "ended" }),
    ]);
    assert!(holds_within(secs(5), || async { s.used("vapi-main").await == 1 }).await, "and released when it ends");
    assert_eq!(metric(&s, "callgate_adopted_total{provider=\"vapi-main\"}").await, 1.0);
}

/// Garbage that is not a usable Vapi message: random bytes, and call messages whose call
/// id is missing or of the wrong type.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    let bad_call = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(json!({})),
        Just(json!({ "id": "" })),
        any::<i64>().prop_map(|n| json!({ "id": n })),
        Just(json!({ "id": ["x"] })),
        "[a-z]{257,300}".prop_map(|id| json!({ "id": id })),
    ];
    let kind = prop_oneof![Just("assistant-request"), Just("status-update"), Just("end-of-call-report")];
    let extra = proptest::collection::btree_map("[a-zA-Z]{1,10}", "\\PC{0,10}", 0..4);
    let message = (kind, bad_call, extra).prop_map(|(kind, call, extra)| {
        let mut m = json!({ "type": kind, "call": call, "status": "ended" });
        for (k, v) in extra {
            if k != "call" && k != "type" {
                m[k] = json!(v);
            }
        }
        serde_json::to_vec(&json!({ "message": m })).unwrap()
    });
    let envelope = prop_oneof![
        Just(b"{}".to_vec()),
        Just(b"[]".to_vec()),
        Just(br#"{"message": null}"#.to_vec()),
        Just(br#"{"message": {"type": 7}}"#.to_vec()),
        "\\PC{0,30}".prop_map(|t| serde_json::to_vec(&json!({ "message": t })).unwrap()),
    ];
    prop_oneof![bytes, message, envelope]
}

/// Fuzzes the webhook parser through the whole server: every garbage body is a 400 and
/// changes nothing. 600 cases.
#[test]
fn garbage_vapi_bodies_get_a_400_and_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, _fake) = rt.block_on(start());
    rt.block_on(webhook(&s, assistant_request("live", None, SUPPORT)));
    let pool = rt.block_on(s.pool("vapi-main"));
    let events = rt.block_on(metric(&s, "callgate_events_total"));
    // 600 cases; PROPTEST_CASES=N runs a longer session.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&garbage(), |body| {
            let status = rt.block_on(async {
                s.client
                    .post(format!("{}/webhooks/vapi/vapi-main", s.base))
                    .header("X-Vapi-Secret", SECRET)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
            Ok(())
        })
        .unwrap();
    assert_eq!(rt.block_on(s.pool("vapi-main")), pool);
    assert_eq!(rt.block_on(metric(&s, "callgate_events_total")), events);
}

#[tokio::test]
async fn secrets_named_by_environment_variables_are_read_at_start() {
    use callgate_server::clock::SystemClock;
    use callgate_server::{ServeOptions, Server};
    use std::collections::HashMap;
    use std::sync::Arc;
    let fake = fake_vapi().await;
    let text = config(&fake, "1h").replace(
        &format!("api_key = \"vapi-private-key\"\nwebhook_secret = \"{SECRET}\""),
        "api_key_env = \"VAPI_API_KEY\"\nwebhook_secret_env = \"VAPI_WEBHOOK_SECRET\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = || ServeOptions {
        config: support::config(&text),
        config_path: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("VAPI_API_KEY".into(), "from-env".into());
    let err = Server::start_with(opts(), Arc::new(SystemClock), &env).await.unwrap_err();
    assert!(err.to_string().contains("`VAPI_WEBHOOK_SECRET` is not set"), "{err}");

    env.insert("VAPI_WEBHOOK_SECRET".into(), "env-secret".into());
    let server = Server::start_with(opts(), Arc::new(SystemClock), &env).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/webhooks/vapi/vapi-main", server.addr);
    let body = json!({ "message": assistant_request("c", None, SUPPORT) });
    let resp = client.post(&url).header("X-Vapi-Secret", "env-secret").json(&body).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "assistantId": "asst_support" }));
    let resp = client.post(&url).header("X-Vapi-Secret", SECRET).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[path = "support/vapi_calls.rs"]
mod vapi_calls;

/// 2,500 calls created over an hour, five to a millisecond (batch creation), with a run of
/// 40 that share one `createdAt`; `live` of them in progress, created with the 40.
fn long_listing(start_ms: u64, live: &[&str]) -> Vec<(String, u64, &'static str)> {
    let mut calls: Vec<(String, u64, &'static str)> =
        (0..2_500u64).map(|i| (format!("old-{i}"), start_ms + (i / 5) * 7_001, "ended")).collect();
    let tie = start_ms + 1_234_567;
    for (i, c) in calls.iter_mut().skip(1_200).take(40).enumerate() {
        c.1 = tie;
        if let Some(id) = live.get(i) {
            c.0 = (*id).to_owned();
            c.2 = "in-progress";
        }
    }
    calls
}

const ORDERS: [vapi_calls::Order; 4] = [
    vapi_calls::Order::NewestFirst,
    vapi_calls::Order::OldestFirst,
    vapi_calls::Order::Shuffled(7),
    vapi_calls::Order::Shuffled(2026),
];

#[tokio::test]
async fn a_call_listing_is_complete_whatever_the_order_and_the_ties() {
    use callgate_providers::vapi::VapiClient;
    let list = vapi_calls::CallList::start("key").await;
    let start = 1_780_000_000_000;
    list.set(&long_listing(start, &[]));
    let client = VapiClient::new(&list.url, "key");
    for order in ORDERS {
        list.order(order);
        let before = list.requests().len();
        let listing = client.calls_since(start - 1).await.unwrap();
        let ids: std::collections::HashSet<&str> = listing.calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!((ids.len(), listing.calls.len()), (2_500, 2_500), "{order:?}: every call once");
        assert!(listing.complete, "{order:?}");
        let requests = list.requests().len() - before;
        assert!(requests <= 40, "{order:?}: {requests} requests");
    }
    // More calls in one millisecond than a page holds cannot be listed whole, and the
    // listing says so rather than pretending.
    let mut crowd = long_listing(start, &[]);
    for c in crowd.iter_mut().take(1_001) {
        c.1 = start + 5;
    }
    list.set(&crowd);
    for order in ORDERS {
        list.order(order);
        assert!(!client.calls_since(start - 1).await.unwrap().complete, "{order:?}");
    }
}

#[tokio::test]
async fn reconciliation_never_releases_live_calls_of_a_long_listing() {
    use callgate_config::ProviderKind;
    use callgate_server::reconcile::Reconciler;
    let list = vapi_calls::CallList::start("vapi-private-key").await;
    let t0: u64 = 1_780_000_000_000;
    let clock = support::ManualClock::at(t0);
    let fake = Fake { url: list.url.clone(), state: Default::default() };
    let s = TestServer::start_with_clock(&config(&fake, "1h"), clock.clone()).await;
    let live: Vec<String> = (0..8).map(|i| format!("live-{i}")).collect();
    let live_refs: Vec<&str> = live.iter().map(String::as_str).collect();
    for id in &live {
        webhook(&s, assistant_request(id, None, SUPPORT)).await;
    }
    webhook(&s, assistant_request("ghost", None, SUPPORT)).await;
    assert_eq!(s.used("vapi-main").await, 9);
    // The platform's hour: the live calls were created with 39 others in one
    // millisecond, in the middle of 2,500 calls; the ghost is not listed at all.
    list.set(&long_listing(t0 - 240_000, &live_refs));
    clock.advance(3_600_000 + 1);
    let app = s.server().app.clone();
    let provider = app.inbound.providers.current().get("vapi-main", ProviderKind::Vapi).cloned().unwrap();
    let mut reconciler = Reconciler::new(&app.reconcile_handles(), provider).unwrap();
    for (n, order) in ORDERS.into_iter().enumerate() {
        list.order(order);
        let pass = reconciler.pass().await;
        assert_eq!(pass.released, usize::from(n == 0), "{order:?}: only the ghost is released");
        assert_eq!(pass.adopted, 0, "{order:?}");
        assert_eq!(s.used("vapi-main").await, 8, "{order:?}: every live call keeps its line");
    }
    // A listing that cannot be complete releases only what it shows as ended.
    webhook(&s, assistant_request("ghost-2", None, SUPPORT)).await;
    webhook(&s, assistant_request("old-3", None, SUPPORT)).await;
    clock.advance(3_600_000 + 1);
    let mut crowd = long_listing(t0 - 240_000, &live_refs);
    for c in crowd.iter_mut().skip(10).take(1_001) {
        c.1 = t0 + 60_000;
    }
    list.set(&crowd);
    let pass = reconciler.pass().await;
    assert_eq!(pass.released, 1, "old-3 is listed as ended; ghost-2 may still be live");
    let (_, leases) = s.get("/v1/leases").await;
    let keys: std::collections::HashSet<String> =
        leases["leases"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap().to_owned()).collect();
    assert!(keys.contains("ghost-2") && !keys.contains("old-3"), "{keys:?}");
    assert_eq!(s.used("vapi-main").await, 9);
}

// ---------------------------------------------------------------------------------------
// The transparent proxy, SIP numbers, squads and workflows

/// What the customer's own server saw: path, `Authorization`, `X-Vapi-Secret`, body.
type Upstreamed = (String, Option<String>, Option<String>, String);

/// The customer's server: answers tool calls (slowly when the body says `slow`), fails
/// transfer-destination requests with a 500 in plain text, acknowledges the rest.
async fn customer_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Upstreamed>>>) {
    use axum::extract::{Path as AxPath, State as AxState};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Upstreamed>>>;
    let seen: Seen = Default::default();
    let router = axum::Router::new()
        .route(
            "/{who}",
            axum::routing::post(|AxState(seen): AxState<Seen>, AxPath(who): AxPath<String>, headers: HeaderMap, body: String| async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                seen.lock().unwrap().push((who.clone(), h("authorization"), h("x-vapi-secret"), body.clone()));
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                match v["message"]["type"].as_str() {
                    Some("tool-calls") => {
                        if body.contains("slow") {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                        let answer = format!(r#"{{"results":[{{"toolCallId":"tc-1","name":"weather","result":"sunny, says {who}"}}]}}"#);
                        ([("content-type", "application/json")], answer).into_response()
                    }
                    Some("transfer-destination-request") => {
                        (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], "upstream exploded").into_response()
                    }
                    _ => axum::Json(json!({})).into_response(),
                }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), seen)
}

const SIP_HELP: &str = "sip:help@callgate.sip.vapi.ai";
const FLOWS_LINE: &str = "+15550003333";

fn proxy_config(fake: &Fake, upstream: &str) -> String {
    format!(
        r#"
[[pools]]
name = "vapi-main"
limit = 10

[[providers]]
name = "vapi-main"
kind = "vapi"
base_url = "{url}"
webhook_secret = "{SECRET}"
pool = "vapi-main"
reconcile_every = "1h"
public_url = "https://cg.example.com/"
forward_url = "{upstream}/main"
forward_secret = "up-secret"
forward_timeout = "300ms"

[[flows]]
name = "support"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{SUPPORT}" }}
vapi = {{ assistant_id = "asst_support" }}

[[flows]]
name = "sales"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{SALES}" }}
vapi = {{ assistant_id = "asst_sales", forward_url = "{upstream}/sales", forward_header = "X-Vapi-Secret" }}

[[flows]]
name = "help"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{SIP_HELP}" }}
vapi = {{ squad_id = "squad_help" }}

[[flows]]
name = "flows"
pools = ["vapi-main"]
class = "inbound"
match = {{ provider = "vapi-main", number = "{FLOWS_LINE}" }}
vapi = {{ workflow_id = "wf_intake" }}
"#,
        url = fake.url
    )
}

/// A `tool-calls` message as the SDK's `ServerMessageToolCalls` has it: both lists, and
/// the arguments as a JSON string.
fn tool_calls(call: &str, to: &str, id: &str, args: &str) -> Value {
    let arguments = json!({ "city": args }).to_string();
    let tool_call = json!({ "id": id, "type": "function", "function": { "name": "weather", "arguments": arguments } });
    let message = json!({
        "type": "tool-calls",
        "call": { "id": call },
        "phoneNumber": { "number": to },
        "toolCallList": [tool_call],
        "toolWithToolCallList": [{ "type": "function", "function": { "name": "weather" }, "toolCall": tool_call }],
    });
    let problems = support::strict::vapi_tool_calls_message(&message);
    assert!(problems.is_empty(), "a tool-calls message Vapi would not send: {problems:?}");
    message
}

async fn raw_webhook(s: &TestServer, message: Value) -> (StatusCode, Option<String>, String, String) {
    let tool_calls = message["type"] == "tool-calls";
    let sent = json!({ "message": message }).to_string();
    let resp = s
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", s.base))
        .header("X-Vapi-Secret", SECRET)
        .header("content-type", "application/json")
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = resp.text().await.unwrap();
    if tool_calls && status == StatusCode::OK {
        // What Vapi reads back: the SDK's `ServerMessageResponseToolCalls`.
        let answer: Value = serde_json::from_str(&text).expect("a tool-calls answer is JSON");
        let problems = support::strict::vapi_tool_calls_answer(&answer);
        assert!(problems.is_empty(), "an answer Vapi would not read: {problems:?} in {answer}");
    }
    (status, ct, text, sent)
}

#[tokio::test]
async fn callgate_proxies_every_vapi_message_to_the_customers_server() {
    let fake = fake_vapi().await;
    let (upstream, seen) = customer_server().await;
    let s = TestServer::start(&proxy_config(&fake, &upstream)).await;

    // The reply points the call's server URL back at callgate, with callgate's own
    // credential, and asks for the messages callgate frees lines by.
    let (st, v) = webhook(&s, assistant_request("call-1", Some("+15551230001"), SUPPORT)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["assistantId"], "asst_support");
    let server = &v["assistantOverrides"]["server"];
    assert_eq!(server["url"], "https://cg.example.com/webhooks/vapi/vapi-main");
    assert_eq!(server["headers"], json!({ "Authorization": format!("Bearer {SECRET}") }));
    assert_eq!(server["timeoutSeconds"], 20);
    let types: Vec<&str> =
        v["assistantOverrides"]["serverMessages"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for needed in ["status-update", "end-of-call-report", "tool-calls", "transfer-destination-request"] {
        assert!(types.contains(&needed), "{types:?} lacks {needed}");
    }

    // A tool call is passed on, and the answer comes back unchanged.
    let (st, ct, body, sent) = raw_webhook(&s, tool_calls("call-1", SUPPORT, "tc-1", "Paris")).await;
    assert_eq!((st, ct.as_deref()), (StatusCode::OK, Some("application/json")));
    assert_eq!(body, r#"{"results":[{"toolCallId":"tc-1","name":"weather","result":"sunny, says main"}]}"#);
    let tool = seen.lock().unwrap().iter().find(|u| u.3.contains("tool-calls")).cloned().unwrap();
    assert_eq!(
        tool,
        ("main".into(), Some("Bearer up-secret".into()), None, sent),
        "the very bytes, with its credential"
    );

    // A flow's own server, with its own header.
    let (_, _, body, _) = raw_webhook(&s, tool_calls("call-2", SALES, "tc-2", "Oslo")).await;
    assert!(body.contains("says sales"), "{body}");
    let sales = seen.lock().unwrap().iter().find(|u| u.0 == "sales").cloned().unwrap();
    assert_eq!((sales.1, sales.2.as_deref()), (None, Some("up-secret")));

    // An upstream failure is relayed as it is: status, type and body.
    let transfer = json!({ "type": "transfer-destination-request", "call": { "id": "call-1" }, "phoneNumber": { "number": SUPPORT } });
    let (st, ct, body, _) = raw_webhook(&s, transfer).await;
    assert_eq!(
        (st, ct.as_deref(), body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("text/plain"), "upstream exploded")
    );

    // A server that does not answer in time: the tool fails with a clear error, at once.
    let (st, _, body, _) = raw_webhook(&s, tool_calls("call-1", SUPPORT, "tc-slow", "slow")).await;
    assert_eq!(st, StatusCode::OK);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["results"][0]["toolCallId"], "tc-slow");
    assert!(answer["results"][0]["error"].as_str().unwrap().contains("did not answer"), "{answer}");
    let timeout = "callgate_vapi_forwards_total{provider=\"vapi-main\",mode=\"answer\",outcome=\"timeout\"}";
    assert_eq!(metric(&s, timeout).await, 1.0);
    let ok = "callgate_vapi_forwards_total{provider=\"vapi-main\",mode=\"answer\",outcome=\"ok\"}";
    assert_eq!(metric(&s, ok).await, 2.0);

    // Messages callgate consumes are passed on too, without waiting for the upstream.
    let (st, v) = webhook(&s, status_update("call-1", "ended")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    assert_eq!(s.used("vapi-main").await, 0, "callgate still frees the line");
    let forwarded = |kind: &'static str| {
        let seen = seen.clone();
        async move { seen.lock().unwrap().iter().any(|u| u.0 == "main" && u.3.contains(kind)) }
    };
    assert!(holds_within(secs(5), || forwarded("\"status-update\"")).await);
    assert!(holds_within(secs(5), || forwarded("\"assistant-request\"")).await);
    let notified = "callgate_vapi_forwards_total{provider=\"vapi-main\",mode=\"notify\",outcome=\"ok\"}";
    assert!(holds_within(secs(5), || async { metric(&s, notified).await == 2.0 }).await);
}

#[tokio::test]
async fn without_a_forward_url_a_message_that_expects_an_answer_is_counted() {
    let (s, _fake) = start().await;
    let (st, _, body, _) = raw_webhook(&s, tool_calls("call-1", SUPPORT, "tc-1", "Paris")).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "{}"));
    let series = "callgate_vapi_unanswered_total{provider=\"vapi-main\",type=\"tool-calls\"}";
    assert_eq!(metric(&s, series).await, 1.0);
    // Without a public_url the reply overrides nothing.
    let (_, v) = webhook(&s, assistant_request("call-2", None, SUPPORT)).await;
    assert_eq!(v, json!({ "assistantId": "asst_support" }));
}

#[tokio::test]
async fn sip_numbers_squads_and_workflows_are_served() {
    let fake = fake_vapi().await;
    let (upstream, _seen) = customer_server().await;
    let s = TestServer::start(&proxy_config(&fake, &upstream)).await;
    // A Vapi SIP number has a sipUri and no number.
    let sip = json!({
        "type": "assistant-request",
        "call": { "id": "sip-1", "phoneNumber": { "id": "pn-sip", "sipUri": SIP_HELP } },
        "phoneNumber": { "id": "pn-sip", "sipUri": SIP_HELP },
        "timestamp": 1_780_000_000_123.456_f64,
    });
    let (st, v) = webhook(&s, sip).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["squadId"], "squad_help", "{v}");
    assert!(v.get("assistantId").is_none());
    assert_eq!(v["assistantOverrides"]["server"]["url"], "https://cg.example.com/webhooks/vapi/vapi-main");
    let (_, v) = webhook(&s, assistant_request("wf-1", None, FLOWS_LINE)).await;
    assert_eq!(v["workflowId"], "wf_intake", "{v}");
    assert_eq!(s.used("vapi-main").await, 2);
    assert_eq!(call_record(&s, "sip-1").await["flow"], "help");

    // A fractional timestamp is read to the millisecond.
    let ended = json!({ "type": "status-update", "status": "ended", "call": { "id": "sip-1" },
        "timestamp": 1_780_000_000_123.456_f64 });
    let (st, _) = webhook(&s, ended).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.used("vapi-main").await, 1);
    let record = call_record(&s, "sip-1").await;
    let ended_at = record.as_object().unwrap().iter().find(|(k, _)| k.starts_with("ended_at")).map(|(_, v)| v.clone());
    assert_eq!(ended_at, Some(json!(1_780_000_000_123u64)), "{record}");
}

// ---------------------------------------------------------------------------------------
// Webhook credentials: every plan Vapi offers, with signatures computed by Python

/// base64 of bytes, to hand them to Python intact.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// HMAC computed by Python's `hmac` and `hashlib`, independently of callgate's code.
fn py_hmac(algorithm: &str, key: &[u8], payload: &[u8], encoding: &str) -> String {
    let script = "import base64, hashlib, hmac, sys\n\
        k = base64.b64decode(sys.argv[2]); p = base64.b64decode(sys.argv[3])\n\
        d = hmac.new(k, p, getattr(hashlib, sys.argv[1])).digest()\n\
        print(d.hex() if sys.argv[4] == 'hex' else base64.b64encode(d).decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, algorithm, &b64(key), &b64(payload), encoding])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The test config with a credential plan (and optionally a public URL).
fn plan_config(fake: &Fake, secret: &str, plan: &str) -> String {
    config(fake, "1h")
        .replace(&format!("webhook_secret = \"{SECRET}\""), &format!("webhook_secret = \"{secret}\"\n{plan}"))
}

async fn post_with(s: &TestServer, headers: &[(&str, String)], body: &str) -> (StatusCode, Value) {
    let mut req = s
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", s.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends a new caller's assistant-request with `headers`: 200 and a line, or 401 and
/// nothing changed.
async fn admitted(s: &TestServer, headers: &[(&str, String)], call: &str) -> bool {
    let body = json!({ "message": assistant_request(call, None, SUPPORT) }).to_string();
    let before = s.used("vapi-main").await;
    let (st, v) = post_with(s, headers, &body).await;
    match st {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => {
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
            assert_eq!(s.used("vapi-main").await, before, "a refused webhook changes nothing");
            false
        }
        other => panic!("{other}: {v}"),
    }
}

#[tokio::test]
async fn bearer_and_legacy_secret_plans_are_accepted_as_vapi_sends_them() {
    let fake = fake_vapi().await;
    let tok = |v: &str| v.to_owned();
    // Bearer in a header of the customer's choosing, prefix or not, scheme in any case.
    let s = TestServer::start(&plan_config(
        &fake,
        "tok-1",
        "webhook_auth = { type = \"bearer\", header = \"X-Callgate-Token\" }",
    ))
    .await;
    assert!(admitted(&s, &[("X-Callgate-Token", tok("Bearer tok-1"))], "a1").await);
    assert!(admitted(&s, &[("X-Callgate-Token", tok("bEARER tok-1"))], "a2").await);
    assert!(admitted(&s, &[("X-Callgate-Token", tok("tok-1"))], "a3").await);
    assert!(!admitted(&s, &[("Authorization", tok("Bearer tok-1"))], "a4").await, "another header");
    assert!(!admitted(&s, &[("X-Callgate-Token", tok("Bearer tok-12"))], "a5").await);
    assert!(!admitted(&s, &[("X-Callgate-Token", tok("Bearer tok-"))], "a6").await);
    assert!(!admitted(&s, &[("X-Vapi-Secret", tok("tok-1"))], "a7").await);
    drop(s);
    // bearerPrefixEnabled = false: the bare token only.
    let s =
        TestServer::start(&plan_config(&fake, "tok-2", "webhook_auth = { type = \"bearer\", prefix = false }")).await;
    assert!(admitted(&s, &[("Authorization", tok("tok-2"))], "b1").await);
    assert!(!admitted(&s, &[("Authorization", tok("Bearer tok-2"))], "b2").await);
    drop(s);
    let s =
        TestServer::start(&plan_config(&fake, "tok-3", "webhook_auth = { type = \"bearer\", prefix = true }")).await;
    assert!(admitted(&s, &[("Authorization", tok("BEARER tok-3"))], "c1").await);
    assert!(!admitted(&s, &[("Authorization", tok("tok-3"))], "c2").await);
    drop(s);
    // The legacy header and nothing else.
    let s = TestServer::start(&plan_config(&fake, "tok-4", "webhook_auth = { type = \"secret\" }")).await;
    assert!(admitted(&s, &[("X-Vapi-Secret", tok("tok-4"))], "d1").await);
    assert!(!admitted(&s, &[("Authorization", tok("Bearer tok-4"))], "d2").await);
    // Without a plan (today's files): either header, the bearer scheme in any case.
    let (s, _f) = start().await;
    assert!(admitted(&s, &[("Authorization", format!("bearer {SECRET}"))], "e1").await);
    assert!(!admitted(&s, &[("Authorization", SECRET.to_owned())], "e2").await, "bare needs prefix = false");
    assert!(admitted(&s, &[("X-Vapi-Secret", SECRET.to_owned())], "e3").await);
}

#[tokio::test]
async fn hmac_plans_are_checked_against_pythons_hmac() {
    let fake = fake_vapi().await;
    let now_ms: u64 = 1_780_000_000_000;
    let clock = support::ManualClock::at(now_ms);
    let secs = (now_ms / 1000).to_string();
    let body = |call: &str| json!({ "message": assistant_request(call, None, SUPPORT) }).to_string();

    // sha256, hex, a prefix, Vapi's default `{timestamp}.{body}`.
    let plan = "webhook_auth = { type = \"hmac\", algorithm = \"sha256\", signature_prefix = \"sha256=\" }";
    let s = TestServer::start_with_clock(&plan_config(&fake, "hmac-key", plan), clock.clone()).await;
    let signed = |call: &str, ts: &str| {
        let b = body(call);
        let sig = py_hmac("sha256", b"hmac-key", format!("{ts}.{b}").as_bytes(), "hex");
        (b, sig)
    };
    let (b, sig) = signed("h1", &secs);
    let ok = [("x-signature", format!("sha256={sig}")), ("x-timestamp", secs.clone())];
    assert_eq!(post_with(&s, &ok, &b).await.0, StatusCode::OK);
    let (b, sig) = signed("h2", &secs);
    let upper = [("x-signature", format!("sha256={}", sig.to_uppercase())), ("x-timestamp", secs.clone())];
    assert_eq!(post_with(&s, &upper, &b).await.0, StatusCode::OK, "hex in either case");
    let used = s.used("vapi-main").await;
    // Refused: tampered body, no prefix, stale or future timestamp, no timestamp, no signature.
    let (b, sig) = signed("h3", &secs);
    let tampered = b.replace("h3", "h4");
    assert_eq!(
        post_with(&s, &[("x-signature", format!("sha256={sig}")), ("x-timestamp", secs.clone())], &tampered).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_with(&s, &[("x-signature", sig.clone()), ("x-timestamp", secs.clone())], &b).await.0,
        StatusCode::UNAUTHORIZED
    );
    for ts in [now_ms / 1000 - 301, now_ms / 1000 + 301] {
        let ts = ts.to_string();
        let (b, sig) = signed("h5", &ts);
        let stale = [("x-signature", format!("sha256={sig}")), ("x-timestamp", ts)];
        assert_eq!(post_with(&s, &stale, &b).await.0, StatusCode::UNAUTHORIZED, "a replay");
    }
    let (b, sig) = signed("h6", &secs);
    assert_eq!(post_with(&s, &[("x-signature", format!("sha256={sig}"))], &b).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post_with(&s, &[("x-timestamp", secs.clone())], &b).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.used("vapi-main").await, used, "nothing refused changed anything");
    drop(s);

    // sha512, base64, a base64 secret, a template over method, URL and a ms timestamp; the
    // reply names the Vapi credential that signs.
    let key = b"\x00\x01binary key\xff";
    let plan = String::from(
        "public_url = \"https://cg.example.com\"\nwebhook_auth = { type = \"hmac\", algorithm = \"sha512\", \
         signature_encoding = \"base64\", secret_is_base64 = true, timestamp_header = \"X-Vapi-Timestamp\", \
         signature_header = \"X-Vapi-Signature\", payload_format = \"{method}\\n{url}\\n{timestamp}\\n{body}\", \
         credential_id = \"cred_123\" }",
    );
    let s = TestServer::start_with_clock(&plan_config(&fake, &b64(key), &plan), clock.clone()).await;
    let b = body("s1");
    let ts = now_ms.to_string();
    let payload = format!("POST\nhttps://cg.example.com/webhooks/vapi/vapi-main\n{ts}\n{b}");
    let sig = py_hmac("sha512", key, payload.as_bytes(), "base64");
    let (st, v) = post_with(&s, &[("X-Vapi-Signature", sig.clone()), ("X-Vapi-Timestamp", ts.clone())], &b).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["assistantOverrides"]["server"]["credentialId"], "cred_123", "{v}");
    assert!(v["assistantOverrides"]["server"].get("headers").is_none(), "Vapi signs; no secret in the reply");
    let sha256 = py_hmac("sha256", key, payload.as_bytes(), "base64");
    let (st, _) = post_with(&s, &[("X-Vapi-Signature", sha256), ("X-Vapi-Timestamp", ts)], &body("s2")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "another algorithm");
    drop(s);

    // sha1 over the bare body, no timestamp.
    let plan = "webhook_auth = { type = \"hmac\", algorithm = \"sha1\", include_timestamp = false, signature_header = \"X-Hub-Signature\" }";
    let s = TestServer::start_with_clock(&plan_config(&fake, "sha1-key", plan), clock.clone()).await;
    let b = body("w1");
    let sig = py_hmac("sha1", b"sha1-key", b.as_bytes(), "hex");
    assert_eq!(post_with(&s, &[("X-Hub-Signature", sig)], &b).await.0, StatusCode::OK);
    assert_eq!(post_with(&s, &[("X-Hub-Signature", "0".repeat(40))], &body("w2")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.used("vapi-main").await, 1);
}

/// The dialer's `POST /call` asks Vapi for the same server URL and messages as the replies.
#[tokio::test]
async fn calls_the_dialer_places_point_their_server_url_at_callgate() {
    use callgate_config::ProviderKind;
    use callgate_dialer::dial::{Dialer, PlaceCall};
    use callgate_providers::vapi::VapiDialer;
    let fake = fake_vapi().await;
    let (upstream, _seen) = customer_server().await;
    let s = TestServer::start(&proxy_config(&fake, &upstream)).await;
    let provider = s.server().app.inbound.providers.current().get("vapi-main", ProviderKind::Vapi).cloned().unwrap();

    let bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let seen = bodies.clone();
    let router = axum::Router::new().route(
        "/call",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                (StatusCode::CREATED, axum::Json(json!({ "id": "call-out-1", "status": "queued" })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dialer = VapiDialer::new(
        "vapi-main",
        &url,
        "key".into(),
        "asst_out",
        vec!["pn-1".into()],
        std::time::Duration::from_secs(60),
    )
    .with_overrides(provider.vapi_overrides());
    let call = PlaceCall {
        attempt: 7,
        campaign: "spring".into(),
        lead_id: 1,
        phone: "+15551230000".into(),
        name: None,
        vars: Some(json!({ "first": "Ada" })),
        lease: "L1".into(),
        caller_index: 0,
    };
    assert_eq!(dialer.place(&call).await.unwrap().call_id, "call-out-1");
    let body = bodies.lock().unwrap()[0].clone();
    let overrides = &body["assistantOverrides"];
    assert_eq!(overrides["server"]["url"], "https://cg.example.com/webhooks/vapi/vapi-main", "{body}");
    assert_eq!(overrides["server"]["headers"]["Authorization"], format!("Bearer {SECRET}"));
    let types = overrides["serverMessages"].as_array().unwrap();
    assert!(types.contains(&json!("status-update")) && types.contains(&json!("end-of-call-report")));
    assert_eq!(overrides["variableValues"], json!({ "first": "Ada" }), "what the dialer set stays");
}

/// Messages callgate consumes are passed on without waiting: the customer's server here
/// holds every request until the test lets it go, and callgate has answered long before.
#[tokio::test]
async fn a_slow_customer_server_never_delays_callgates_own_answers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let arrived = std::sync::Arc::new(AtomicUsize::new(0));
    let (r, a) = (release.clone(), arrived.clone());
    let router = axum::Router::new().route(
        "/{who}",
        axum::routing::post(move || {
            let (r, a) = (r.clone(), a.clone());
            async move {
                // Registered before it counts, so a release after the count wakes it.
                let held = r.notified();
                tokio::pin!(held);
                held.as_mut().enable();
                a.fetch_add(1, Ordering::SeqCst);
                held.await;
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let fake = fake_vapi().await;
    let s = TestServer::start(
        &proxy_config(&fake, &upstream).replace("forward_timeout = \"300ms\"", "forward_timeout = \"19s\""),
    )
    .await;

    let (st, v) = webhook(&s, assistant_request("held", None, SUPPORT)).await;
    assert_eq!((st, &v["assistantId"]), (StatusCode::OK, &json!("asst_support")));
    let (st, v) = webhook(&s, status_update("held", "ended")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({})));
    assert_eq!(s.used("vapi-main").await, 0);
    // Both messages reached the customer's server, which has not answered either.
    assert!(holds_within(secs(5), || async { arrived.load(Ordering::SeqCst) == 2 }).await);
    let notified = "callgate_vapi_forwards_total{provider=\"vapi-main\",mode=\"notify\",outcome=\"ok\"}";
    assert_eq!(metric(&s, notified).await, 0.0, "still waiting upstream");
    release.notify_waiters();
    assert!(holds_within(secs(5), || async { metric(&s, notified).await == 2.0 }).await);
}

/// The checks the tool-call tests lean on can fail: what the SDK's models refuse, they refuse.
#[test]
fn the_strict_tool_call_checks_refuse_what_the_sdk_refuses() {
    use support::strict::{vapi_tool_calls_answer, vapi_tool_calls_message};
    let good = tool_calls("call-1", SUPPORT, "tc-1", "Paris");
    assert!(vapi_tool_calls_message(&good).is_empty());
    let mut object_arguments = good.clone();
    object_arguments["toolCallList"][0]["function"]["arguments"] = json!({ "city": "Paris" });
    assert_eq!(vapi_tool_calls_message(&object_arguments), ["toolCallList.0.function.arguments must be a string"]);
    let mut one_list = good.clone();
    one_list.as_object_mut().unwrap().remove("toolWithToolCallList");
    assert_eq!(vapi_tool_calls_message(&one_list), ["toolWithToolCallList is required"]);
    let mut unknown_tool = good;
    unknown_tool["toolWithToolCallList"][0]["type"] = json!("teleport");
    assert_eq!(
        vapi_tool_calls_message(&unknown_tool),
        ["toolWithToolCallList.0.type `teleport` is not a tool type of the SDK"]
    );
    let nameless = json!({ "results": [{ "toolCallId": "tc-1", "result": "done" }] });
    assert_eq!(vapi_tool_calls_answer(&nameless), ["results.0.name is required"]);
    let extra = json!({ "results": [{ "toolCallId": "tc-1", "name": "x", "status": "ok" }] });
    assert_eq!(vapi_tool_calls_answer(&extra), ["property results.0.status should not exist"]);
    assert!(vapi_tool_calls_answer(&json!({})).is_empty(), "an answer with nothing to say");
}
