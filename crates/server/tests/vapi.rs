//! The Vapi edge against a real server and journal, with a fake Vapi API for
//! reconciliation (shapes from shared/providers/vapi.md).

mod support;

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::providers::{fake_vapi, metric, Events, Fake};
use support::TestServer;

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
    assert!(s.eventually(5, || async { fake.requests() >= n + 2 }).await, "reconciliation lists the calls");
    assert_eq!(s.used("vapi-main").await, 2, "live calls keep their lines");

    // The call ends on the platform, and the `ended` webhook never arrives.
    let mut events = Events::subscribe(&s).await;
    fake.set_calls(vec![
        json!({ "id": "ghost", "status": "ended", "endedReason": "silence-timed-out" }),
        json!({ "id": "alive", "status": "in-progress" }),
    ]);
    assert!(s.eventually(5, || async { s.used("vapi-main").await == 1 }).await, "the ghost call is released");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "alive");
    let reconciled = "callgate_reconciled_total{provider=\"vapi-main\",what=\"lease\"}";
    assert!(s.eventually(5, || async { metric(&s, reconciled).await == 1.0 }).await);
    let recorded = || async {
        calls(&s).await.iter().any(|c| c["call_id"] == "ghost" && c["ended_reason"] == "callgate-reconciled")
    };
    assert!(s.eventually(5, recorded).await, "the call record says why it ended");
    let released = events.next_of("released").await;
    assert_eq!(released["lease"]["key"], "ghost");
    let reconciled = events.next_of("reconciled").await;
    assert_eq!((reconciled["provider"].as_str(), reconciled["call_id"].as_str()), (Some("vapi-main"), Some("ghost")));
    let (path, query, auth) = fake.last_request().unwrap();
    assert_eq!(path, "/call");
    assert_eq!(auth.as_deref(), Some("Bearer vapi-private-key"));
    assert!(query.contains_key("createdAtGt") && query.contains_key("limit"), "{query:?}");
    assert_eq!(metric(&s, "callgate_provider_live_calls{provider=\"vapi-main\"}").await, 1.0);

    // A platform that fails changes nothing.
    *fake.state.fail_with.lock().unwrap() = Some(500);
    fake.set_calls(vec![]);
    let n = fake.requests();
    assert!(s.eventually(5, || async { fake.requests() >= n + 2 }).await);
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
    assert!(s.eventually(5, || async { s.used("vapi-main").await == 2 }).await, "the stranger is counted");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    let adopted = leases.as_array().unwrap().iter().find(|l| l["key"] == "stranger").unwrap().clone();
    assert_eq!(adopted["meta"]["adopted"], true);
    let event = events.next_of("adopted").await;
    assert_eq!((event["call_id"].as_str(), &event["lease"]), (Some("stranger"), &adopted["id"]));
    assert!(
        s.eventually(5, || async { metric(&s, "callgate_adopted_total{provider=\"vapi-main\"}").await == 1.0 }).await
    );
    let recorded = || async { calls(&s).await.iter().any(|c| c["call_id"] == "stranger" && c["outcome"] == "adopted") };
    assert!(s.eventually(5, recorded).await);

    fake.set_calls(vec![
        json!({ "id": "known", "status": "in-progress" }),
        json!({ "id": "stranger", "status": "ended" }),
    ]);
    assert!(s.eventually(5, || async { s.used("vapi-main").await == 1 }).await, "and released when it ends");
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
