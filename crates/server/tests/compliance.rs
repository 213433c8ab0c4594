//! Outbound compliance against a real server, its lead store and suppression lists, with
//! the simulated provider: a number on a list the campaign honours is reported at import
//! and never dialed, also when it is added between the pick and the dial; an opt-out
//! reaches every campaign and the callbacks booked for the number.

mod support;

use callgate_server::campaign::{BookedCallback, CallbackBook, CallbackState, PickHook};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, holds_within, secs, TestServer};

const ALL_DAY: &str = r#"window = { start = "00:00", end = "24:00" }"#;

/// Campaigns on the simulator (each a `[[campaigns]]` body), with an admin key.
fn config(campaigns: &[&str]) -> String {
    let mut out = r#"
[auth]
keys = [ { name = "ops", token = "admin-token", role = "admin" } ]

[[pools]]
name = "vapi"
limit = 10

[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"
"#
    .to_string();
    for c in campaigns {
        out.push_str(&format!("\n[[campaigns]]\n{c}\n"));
    }
    out
}

fn sim(name: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
flow = "outbound"
simulate = {{ ring_time = "2ms", talk_min = "5ms", talk_mean = "10ms", talk_max = "20ms", failure_rate = 0, seed = 3 }}
calls_per_second = 50
{ALL_DAY}
retry = {{ busy = "10ms", no_answer = "10ms", voicemail = "10ms", failed = "10ms", max_attempts = 2 }}
{extra}"#
    )
}

async fn start(campaigns: &[&str]) -> TestServer {
    TestServer::start(&config(campaigns)).await.with_token("admin-token")
}

async fn campaign(cg: &TestServer, name: &str) -> Value {
    let (s, v) = cg.get(&format!("/v1/campaigns/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn finished(cg: &TestServer, name: &str) -> Value {
    let done = || async { campaign(cg, name).await["finished"] == true };
    assert!(holds_within(Duration::from_secs(60), done).await, "{}", campaign(cg, name).await);
    campaign(cg, name).await
}

fn leads(phones: &[&str]) -> Value {
    json!({ "leads": phones.iter().map(|p| json!({ "phone": p })).collect::<Vec<_>>() })
}

/// The numbers the campaign's attempts placed a call to (not those stopped by a list).
fn dialed(cg: &TestServer, campaign: &str, ids: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let store = cg.server().campaigns.store().clone();
    let mut out = Vec::new();
    for id in ids {
        let Some(lead) = store.lead(id).unwrap() else { continue };
        if lead.campaign != campaign {
            continue;
        }
        if store.attempts_of(id).unwrap().iter().any(|a| a.outcome.as_deref() != Some("suppressed")) {
            out.push(lead.phone);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_api_validates_keeps_the_source_and_survives_a_restart() {
    let cg = start(&[&sim("c", "")]).await;
    let (s, v) = cg.post("/v1/dnc/internal/+12125550123", json!(null)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!((v["listed"].clone(), v["source"].clone()), (json!(true), json!("api")));
    let (s, v) = cg.post("/v1/dnc/internal/+12125550123", json!(null)).await;
    assert_eq!((s, v["changed"].clone()), (StatusCode::OK, json!(false)), "added once");
    let (s, v) = cg.post("/v1/dnc/internal/12345", json!(null)).await;
    assert_eq!((s, v["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_number")), "{v}");
    let (s, _) = cg.post("/v1/dnc/bad%20name/+12125550123", json!(null)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = cg.get("/v1/dnc/internal?number=%2B1%20212%20555%200123").await;
    assert_eq!((s, v["listed"].clone()), (StatusCode::OK, json!(true)), "{v}");
    let (s, _) = cg.get("/v1/dnc/internal?number=1&colour=red").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let cg = cg.restart().await.with_token("admin-token");
    let (_, v) = cg.get("/v1/dnc/internal?number=%2B12125550123").await;
    assert_eq!((v["listed"].clone(), v["source"].clone()), (json!(true), json!("api")), "kept durably: {v}");
    let (s, v) = cg.delete("/v1/dnc/internal/+12125550123").await;
    assert_eq!((s, v["changed"].clone(), v["listed"].clone()), (StatusCode::OK, json!(true), json!(false)));
    let (_, v) = cg.get("/v1/dnc").await;
    assert_eq!(v[0]["numbers"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_number_is_reported_at_import_and_never_dialed() {
    let cg = start(&[&sim("c", "start = true")]).await;
    cg.post("/v1/dnc/national/+13125550101", json!(null)).await;
    let (s, report) = cg.post("/v1/campaigns/c/leads", leads(&["+13125550100", "+13125550101", "+13125550102"])).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!((report["added"].clone(), report["suppressed"].clone()), (json!(2), json!(1)), "{report}");
    assert_eq!(report["suppressed_rows"][0]["row"], 2);
    // Imported anyway when asked: it ends `suppressed` at its turn, uncalled.
    let (_, report) = cg.post("/v1/campaigns/c/leads?suppressed=include", leads(&["+13125550101"])).await;
    assert_eq!(report["added"], 1, "{report}");
    let v = finished(&cg, "c").await;
    assert_eq!(v["leads"]["suppressed"], 1, "{v}");
    let mut called = dialed(&cg, "c", 1..=3);
    called.sort();
    assert_eq!(called, ["+13125550100", "+13125550102"]);
    let metrics = cg.metrics().await;
    assert!(metrics.contains(r#"callgate_campaign_attempts_total{campaign="c",outcome="suppressed"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_added_between_the_pick_and_the_dial_is_never_dialed() {
    let cg = start(&[&sim("c", "")]).await;
    let phones: Vec<String> = (0..20).map(|i| format!("+1312555{:04}", 200 + i)).collect();
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    cg.post("/v1/campaigns/c/leads", leads(&refs)).await;
    // Every odd number is put on the list just after the dialer picked it (and found it on
    // no list), before its lease, its attempt record and the call.
    let campaigns = cg.server().campaigns.clone();
    let lists = campaigns.suppressions().clone();
    let hook: PickHook = Arc::new(move |phone: String| {
        let lists = lists.clone();
        Box::pin(async move {
            let n: u64 = phone[1..].parse().unwrap();
            if n % 2 == 1 {
                lists.add("internal", vec![n], "test").await.unwrap();
            }
        })
    });
    campaigns.set_pick_hook(hook);
    cg.post("/v1/campaigns/c/start", json!(null)).await;
    let v = finished(&cg, "c").await;
    assert_eq!(v["leads"]["suppressed"], 10, "{v}");
    let called = dialed(&cg, "c", 1..=20);
    assert_eq!(called.len(), 10);
    assert!(called.iter().all(|p| p[1..].parse::<u64>().unwrap() % 2 == 0), "{called:?}");
    // No lease is left behind.
    assert_eq!(cg.used("vapi").await, 0);
}

/// Callbacks booked by inbound overflow, as a test hands them over; marks are kept.
struct Book {
    booked: Mutex<Vec<BookedCallback>>,
    marks: Mutex<Vec<(u64, String)>>,
}

impl CallbackBook for Book {
    fn booked(&self) -> Vec<BookedCallback> {
        let marked: Vec<u64> = self.marks.lock().unwrap().iter().map(|m| m.0).collect();
        self.booked.lock().unwrap().iter().filter(|c| !marked.contains(&c.id)).cloned().collect()
    }

    fn mark(&self, id: u64, state: CallbackState, outcome: Option<String>) -> callgate_dialer::dial::Fut<'_, ()> {
        if state == CallbackState::Done {
            self.marks.lock().unwrap().push((id, outcome.unwrap_or_default()));
        }
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_reaches_every_campaign_and_cancels_the_callbacks_for_the_number() {
    let cg = start(&[&sim("a", "start = true"), &sim("b", "callbacks = true\nmax_concurrency = 1")]).await;
    let number = "+13125550177";
    cg.post("/v1/campaigns/b/leads", leads(&[number, "+13125550178"])).await;
    let far = cg.now_ms() + 3_600_000;
    let book = Arc::new(Book {
        booked: Mutex::new(vec![BookedCallback {
            id: 7,
            provider: "simulated".into(),
            number: number.into(),
            booked_at: 0,
            due_at: far,
        }]),
        marks: Mutex::new(Vec::new()),
    });
    // The opt-out arrives (from a call of campaign `a`, say) before `b` dials: the callback
    // not yet taken is settled `suppressed`, and `b` never calls the number.
    let (s, v) = cg.post(&format!("/v1/dnc/internal/{number}"), json!(null)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    cg.server().campaigns.set_callback_book(book.clone());
    cg.server().campaigns.opt_out("internal", 13_125_550_177, "call:test").await.unwrap();
    assert_eq!(*book.marks.lock().unwrap(), vec![(7, "suppressed".to_string())]);
    cg.post("/v1/campaigns/b/start", json!(null)).await;
    let v = finished(&cg, "b").await;
    assert_eq!(v["leads"]["suppressed"], 1, "{v}");
    assert_eq!(dialed(&cg, "b", 1..=2), ["+13125550178"]);
    eventually("the callback is never taken", secs(3), || async { campaign(&cg, "b").await["leads"]["total"] == 2 })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_florida_number_is_not_called_at_half_past_eight_while_a_new_york_number_is() {
    // 20:30 in New York and in Miami (EST), a Thursday.
    let now = callgate_config::parse_datetime("2026-01-16T01:30:00Z", chrono_tz::UTC).unwrap();
    let clock = support::ManualClock::at(now);
    let campaign = sim("c", "window = { start = \"08:00\", end = \"21:00\" }\nstart = true").replace(ALL_DAY, "");
    let toml = format!("{}\n[compliance]\ndefault_calling_rules = true\n", config(&[&campaign]));
    let cg = TestServer::start_with_clock(&toml, clock.clone()).await.with_token("admin-token");
    let (_, report) = cg.post("/v1/campaigns/c/leads", leads(&["+13055550123", "+12125550123"])).await;
    assert_eq!(report["added"], 2, "{report}");
    let store = cg.server().campaigns.store().clone();
    eventually("the New York number is called", secs(10), || async { !dialed(&cg, "c", 1..=2).is_empty() }).await;
    tokio::time::timeout(secs(30), cg.server().campaigns.settle()).await.unwrap();
    assert_eq!(dialed(&cg, "c", 1..=2), ["+12125550123"], "Florida's rule ends calls at 20:00");
    let fl = store.lead(1).unwrap().unwrap();
    assert_eq!(fl.state, "pending");
    let morning = callgate_config::parse_datetime("2026-01-16T13:00:00Z", chrono_tz::UTC).unwrap();
    assert_eq!(fl.next_at, morning, "due at 08:00 the next morning, Miami time");
    // At 08:00 in Miami it is called.
    clock.set(morning);
    eventually("the Florida number is called in the morning", secs(10), || async {
        dialed(&cg, "c", 1..=2).len() == 2
    })
    .await;
    // The audit trail shows why each call was placed, or not, and when at the callee.
    let resp =
        cg.client.get(format!("{}/v1/campaigns/c/audit", cg.base)).bearer_auth("admin-token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    let find = |number: &str, decision: &str| {
        rows.iter().find(|r| &r[3] == number && r[9].starts_with(decision)).unwrap_or_else(|| panic!("{text}")).clone()
    };
    let ny = find("+12125550123", "dialed");
    assert_eq!((&ny[4], &ny[6]), ("US-NY", "2026-01-15 20:30:00 EST"));
    assert!(ny[7].contains("US 08:00-21:00") && !ny[7].contains("US-FL"), "{text}");
    assert!(ny[8].contains("internal@") || ny[8].is_empty(), "{text}");
    let fl = find("+13055550123", "rescheduled");
    assert!(fl[7].contains("US-FL 08:00-20:00 max 3/24h"), "{text}");
    let fl = find("+13055550123", "dialed");
    assert_eq!(&fl[6], "2026-01-16 08:00:00 EST");
    let (s, _) = cg.get("/v1/campaigns/nope/audit").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = cg.get("/v1/campaigns/c/audit?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

const VAPI_SECRET: &str = "vapi-webhook-secret";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const PUBLIC: &str = "https://callgate.example.com";

/// The providers whose calls opt out: Vapi (tool `opt_out`) and Twilio (key 9, with a
/// flow that offers a callback on key 1), on fakes that are never called.
async fn providers_config(campaigns: &[&str]) -> (String, support::providers::Fake, support::providers::Fake) {
    let (vapi, twilio) = (support::providers::fake_vapi().await, support::providers::fake_twilio().await);
    let toml = format!(
        r#"{base}
[[pools]]
name = "agents"
limit = 10

[[providers]]
name = "vapi-main"
kind = "vapi"
base_url = "{vapi_url}"
api_key = "vapi-private-key"
webhook_secret = "{VAPI_SECRET}"
pool = "vapi"
reconcile_every = "1h"

[[providers]]
name = "tw"
kind = "twilio"
base_url = "{twilio_url}"
account_sid = "ACtest"
auth_token = "{TWILIO_TOKEN}"
public_url = "{PUBLIC}/"
pool = "agents"
reconcile_every = "1h"

[[flows]]
name = "support"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw" }}
twilio = {{ connect = {{ sip = "sip:support@example.sip.vapi.ai" }} }}
overflow = {{ action = "callback", key = "1", message = "Press 1 to be called back, 9 never to be called." }}

[compliance]
vapi_tool = "opt_out"
twilio_opt_out_key = "9"
"#,
        base = config(campaigns),
        vapi_url = vapi.url,
        twilio_url = twilio.url,
    );
    (toml, vapi, twilio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_during_a_vapi_call_suppresses_the_number_in_another_running_campaign_and_its_callbacks() {
    let number = "+13125550177";
    let clock =
        support::ManualClock::at(callgate_config::parse_datetime("2026-01-15T15:00:00Z", chrono_tz::UTC).unwrap());
    // `b` runs, one call per 100 s: it dials its first lead, and the number waits its turn.
    let b = sim("b", "start = true\ncallbacks = true").replace("calls_per_second = 50", "calls_per_second = 0.01");
    let (toml, _vapi, _twilio) = providers_config(&[&b]).await;
    let cg = TestServer::start_with_clock(&toml, clock.clone()).await.with_token("admin-token");
    let body = json!({ "leads": [ { "phone": "+13125550178", "score": 10 }, { "phone": number, "score": 0 } ] });
    let (_, report) = cg.post("/v1/campaigns/b/leads", body).await;
    assert_eq!(report["added"], 2, "{report}");
    eventually("b dials its first lead", secs(10), || async { dialed(&cg, "b", 1..=2) == ["+13125550178"] }).await;
    let book = Arc::new(Book {
        booked: Mutex::new(vec![BookedCallback {
            id: 7,
            provider: "simulated".into(),
            number: number.into(),
            booked_at: 0,
            due_at: clock.now_ms() + 3_600_000,
        }]),
        marks: Mutex::new(Vec::new()),
    });
    cg.server().campaigns.set_callback_book(book.clone());
    // In a call of another campaign (a Vapi call), the assistant calls the opt-out tool.
    let tool_call = json!({ "id": "tc-1", "type": "function", "function": { "name": "opt_out", "arguments": "{}" } });
    let message = json!({
        "type": "tool-calls",
        "call": { "id": "call-vapi-1", "customer": { "number": number } },
        "customer": { "number": number },
        "toolCallList": [tool_call],
        "toolWithToolCallList": [{ "type": "function", "function": { "name": "opt_out" }, "toolCall": tool_call }],
    });
    assert_eq!(support::strict::vapi_tool_calls_message(&message), Vec::<String>::new(), "as Vapi sends it");
    let message = json!({ "message": message });
    let resp = cg
        .client
        .post(format!("{}/webhooks/vapi/vapi-main", cg.base))
        .header("X-Vapi-Secret", VAPI_SECRET)
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(support::strict::vapi_tool_calls_answer(&answer), Vec::<String>::new(), "as Vapi reads it");
    assert_eq!(
        (&answer["results"][0]["toolCallId"], &answer["results"][0]["name"]),
        (&json!("tc-1"), &json!("opt_out"))
    );
    assert!(answer["results"][0]["result"].is_string(), "{answer}");
    let (_, entry) = cg.get(&format!("/v1/dnc/internal?number=%2B{}", &number[1..])).await;
    assert_eq!((entry["listed"].clone(), entry["source"].clone()), (json!(true), json!("call:call-vapi-1")));
    assert_eq!(*book.marks.lock().unwrap(), vec![(7, "suppressed".to_string())], "the callback is cancelled");
    // Its turn comes (a token every 100 s, the first lead's retry first): the number is
    // not called.
    use callgate_core::clock::Clock as _;
    eventually("b is through its leads", secs(30), || async {
        clock.advance(100_000);
        cg.server().campaigns.settle().await;
        campaign(&cg, "b").await["finished"] == true
    })
    .await;
    let v = campaign(&cg, "b").await;
    assert_eq!(v["leads"]["suppressed"], 1, "{v}");
    assert_eq!(dialed(&cg, "b", 1..=2), ["+13125550178"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_out_key_in_a_twilio_menu_lists_the_caller() {
    let (toml, _vapi, _twilio) = providers_config(&[]).await;
    let cg = TestServer::start(&toml).await.with_token("admin-token");
    let phone = support::providers::Phone { server: &cg, public_url: PUBLIC, token: TWILIO_TOKEN };
    let params = [("CallSid", "CA-9"), ("From", "+13125550199"), ("To", "+15550001111"), ("Digits", "9")];
    let t = phone.post("/webhooks/twilio/tw/gather?flow=support&step=0", &params).await.twiml();
    assert!(t.spoken().contains("not be called again"), "{}", t.spoken());
    assert!(t.verbs().contains(&"Hangup"), "{:?}", t.verbs());
    let (_, entry) = cg.get("/v1/dnc/internal?number=%2B13125550199").await;
    assert_eq!((entry["listed"].clone(), entry["source"].clone()), (json!(true), json!("call:CA-9")), "{entry}");
    // An unsigned request changes nothing.
    let unsigned =
        phone.post_signed(&format!("{PUBLIC}/webhooks/twilio/tw/gather?flow=support&step=0"), &params, None).await;
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
}
