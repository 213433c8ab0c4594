// Long file: one test binary for every kind of reload (ledger, campaigns, providers), since each binary costs a link on 2 cores.
//! Reloading the configuration without a restart (`POST /v1/config/reload`): what a
//! reload changes, what it keeps (leases, waiting callers), what it refuses, and that it
//! gives what a restart with the new file would.

mod support;
#[path = "support/vapi_dialer.rs"]
mod vapi_dialer;

use callgate_server::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::providers::{fake_twilio, fake_vapi, Phone};
use support::{config, eventually, secs, ManualClock, TestServer};
use vapi_dialer::FakeVapi;

const BASE: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 3
reserve = { inbound = 1 }

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
overflow = { action = "voicemail", message = "Please leave a message." }
depends_on = ["llm"]

[[flows]]
name = "campaign"
pools = ["acct"]
class = "outbound"
overflow = { action = "busy" }
"#;

/// A server started from a file in its data directory, on a manual clock.
async fn serve_file(toml: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, toml).unwrap();
    let clock = ManualClock::at(1_700_000_000_000);
    let opts = ServeOptions {
        config: config(toml),
        config_path: Some(path),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let server = Server::start_with_clock(opts, clock.clone()).await.expect("server starts");
    TestServer {
        base: format!("http://{}", server.addr),
        server: Some(server),
        dir,
        toml: toml.to_string(),
        client: reqwest::Client::new(),
        token: None,
        clock: Some(clock),
    }
}

/// Writes `toml` over the server's configuration file and reloads it.
async fn reload(s: &TestServer, toml: &str) -> (StatusCode, Value) {
    std::fs::write(s.dir.path().join("callgate.toml"), toml).unwrap();
    s.post("/v1/config/reload", json!({})).await
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "the base config has `{from}`");
    BASE.replacen(from, to, 1)
}

async fn metric(s: &TestServer, line: &str) -> Option<String> {
    let (_, m) = s.get("/metrics").await;
    m.as_str().unwrap().lines().find(|l| l.starts_with(line)).map(str::to_owned)
}

#[tokio::test]
async fn a_raised_limit_grants_the_waiting_caller() {
    let s = serve_file(BASE).await;
    for i in 0..3 {
        let (st, v) = s.acquire(json!({ "flow": "support", "key": format!("in-{i}") })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, q) = s.acquire(json!({ "flow": "support", "key": "in-3" })).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{q}");
    let ticket = q["ticket"]["id"].as_str().unwrap().to_string();

    let (st, v) = reload(&s, &edit("limit = 3", "limit = 4")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "reloaded": true, "changes": ["pool acct: limit 3 -> 4"] }));
    let (_, t) = s.get(&format!("/v1/tickets/{ticket}")).await;
    assert_eq!(t["state"], "granted", "the raised limit is a limit change for the dispatch: {t}");
    let p = s.pool("acct").await;
    assert_eq!((p["limit"].as_u64(), p["used"].as_u64(), p["waiting"].as_u64()), (Some(4), Some(4), Some(0)));
    assert_eq!(
        metric(&s, "callgate_config_reloads_total{result=\"ok\"}").await.as_deref(),
        Some("callgate_config_reloads_total{result=\"ok\"} 1")
    );
    let stamp = metric(&s, "callgate_config_last_reload_success_timestamp_seconds ").await.unwrap();
    assert_eq!(stamp, "callgate_config_last_reload_success_timestamp_seconds 1700000000");
}

#[tokio::test]
async fn a_lowered_limit_keeps_every_lease_and_ends_what_can_never_fit() {
    let s = serve_file(BASE).await;
    for i in 0..3 {
        let (st, v) = s.acquire(json!({ "flow": "support", "key": format!("in-{i}") })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (_, q) = s.acquire(json!({ "flow": "support", "key": "waiting" })).await;
    let waiting = q["ticket"]["id"].as_str().unwrap().to_string();

    // A caller who asks for two units at once, in line behind the first.
    let (st, big) = s
        .acquire(json!({ "pools": [{ "pool": "acct", "units": 2 }], "class": "inbound", "key": "big", "max_wait_ms": 60000 }))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{big}");
    let big = big["ticket"]["id"].as_str().unwrap().to_string();

    // Limit 1, no reserve: nobody holding a lease loses it, nothing more is granted, the
    // two-unit ticket can never fit and ends as with `PUT /v1/pools/acct` (journaled,
    // `never_fits`), and the one-unit ticket keeps its place.
    let (st, v) = reload(&s, &edit("limit = 3", "limit = 1").replace("reserve = { inbound = 1 }", "")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let p = s.pool("acct").await;
    assert_eq!((p["limit"].as_u64(), p["used"].as_u64(), p["waiting"].as_u64()), (Some(1), Some(3), Some(1)), "{p}");
    let (_, t) = s.get(&format!("/v1/tickets/{big}")).await;
    assert_eq!(t["state"], "never_fits", "{t}");
    let (_, t) = s.get(&format!("/v1/tickets/{waiting}")).await;
    assert_eq!(t["state"], "waiting", "{t}");
    let (st, v) = s.acquire(json!({ "flow": "campaign", "key": "out" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "nothing is over-admitted: {v}");

    let s = s.restart().await;
    let (_, t) = s.get(&format!("/v1/tickets/{big}")).await;
    assert_eq!(t["state"], "never_fits", "the end was journaled: {t}");
    assert_eq!(s.used("acct").await, 3, "the three leases live on");
}

#[tokio::test]
async fn a_changed_reserve_lets_outbound_take_the_inbound_share() {
    let s = serve_file(BASE).await;
    for i in 0..2 {
        let (st, _) = s.acquire(json!({ "flow": "campaign", "key": format!("out-{i}") })).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, _) = s.acquire(json!({ "flow": "campaign", "key": "out-2" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the third unit is reserved for inbound");
    let (st, v) = reload(&s, &edit("reserve = { inbound = 1 }", "reserve = {}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["pool acct: reserve {\"inbound\": 1} -> {}"]));
    let (st, v) = s.acquire(json!({ "flow": "campaign", "key": "out-2" })).await;
    assert_eq!(st, StatusCode::OK, "no reserve any more: {v}");
}

#[tokio::test]
async fn a_new_flow_admits_and_a_removed_flow_admits_nothing_while_its_lease_lives_on() {
    let s = serve_file(BASE).await;
    let (st, lease) = s.acquire(json!({ "flow": "campaign", "key": "out-0" })).await;
    assert_eq!(st, StatusCode::OK, "{lease}");
    let (st, _) = s.acquire(json!({ "flow": "callbacks" })).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let without_campaign = BASE.split("[[flows]]\nname = \"campaign\"").next().unwrap().to_string();
    let next = format!(
        "{without_campaign}[[flows]]\nname = \"callbacks\"\npools = [\"acct\"]\nclass = \"outbound\"\noverflow = {{ action = \"busy\" }}\n"
    );
    let (st, v) = reload(&s, &next).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["flow callbacks: added", "flow campaign: removed"]));

    let (st, v) = s.acquire(json!({ "flow": "callbacks", "key": "cb-0" })).await;
    assert_eq!(st, StatusCode::OK, "the new flow admits: {v}");
    let (st, v) = s.acquire(json!({ "flow": "campaign", "key": "out-1" })).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::NOT_FOUND, &json!("unknown_flow")), "{v}");
    let (_, leases) = s.get("/v1/leases").await;
    let keys: Vec<&str> = leases["leases"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["out-0", "cb-0"], "the removed flow's lease lives on: {leases}");
    assert_eq!(s.used("acct").await, 2);
    let id = lease["lease"]["id"].as_str().unwrap();
    let (st, v) = s.delete(&format!("/v1/leases/{id}")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({ "released": true })), "and ends as any lease does");
    assert_eq!(s.used("acct").await, 1);
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_says_where() {
    let s = serve_file(BASE).await;
    let (st, v) = reload(&s, &edit("limit = 3", "limit = \"many\"")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["reloaded"], false);
    assert_eq!(v["error"]["code"], "invalid_config");
    let problem = &v["error"]["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["field"].as_str()), (Some(11), Some("pools[0].limit")), "{v}");

    let (st, v) = reload(&s, &edit("class = \"outbound\"", "class = \"nobody\"")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nobody"), "{v}");

    let (st, v) =
        reload(&s, &format!("[server]\nlisten = \"127.0.0.1:9\"\n{BASE}").replace("limit = 3", "limit = 5")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "restart_required");
    assert!(v["error"]["needs_restart"][0].as_str().unwrap().starts_with("[server]"), "{v}");

    assert_eq!(s.pool("acct").await["limit"], 3, "nothing changed");
    assert_eq!(
        metric(&s, "callgate_config_reloads_total{result=\"invalid\"}").await.as_deref(),
        Some("callgate_config_reloads_total{result=\"invalid\"} 3")
    );
    let (st, v) = reload(&s, BASE).await;
    assert_eq!((st, v), (StatusCode::OK, json!({ "reloaded": true, "changes": [] })));
}

#[tokio::test]
async fn without_a_file_a_reload_says_so() {
    let s = TestServer::start(BASE).await;
    let (st, v) = s.post("/v1/config/reload", json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "no_config_file");
}

#[tokio::test]
async fn breaker_and_alert_settings_change() {
    let s = serve_file(BASE).await;
    let (_, b) = s.get("/v1/breakers").await;
    assert!(b.to_string().contains("\"llm\""), "{b}");
    let next = edit("name = \"llm\"", "name = \"asr\"").replace("depends_on = [\"llm\"]", "depends_on = [\"asr\"]")
        + "\n[[alerts]]\nname = \"busy\"\npool = \"acct\"\nmetric = \"waiting\"\nabove = 3\n";
    let (st, v) = reload(&s, &next).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["changes"],
        json!(["flow support: changed", "breaker asr: added", "breaker llm: removed", "alert busy: added"])
    );
    let (_, b) = s.get("/v1/breakers").await;
    assert!(b.to_string().contains("\"asr\"") && !b.to_string().contains("\"llm\""), "{b}");
    let (_, a) = s.get("/v1/alerts").await;
    assert!(a.to_string().contains("\"busy\""), "{a}");
    // The flow now depends on the new breaker: a sample for it is accepted.
    let (st, v) = s.post("/v1/samples", json!({ "dependency": "asr", "ok": true })).await;
    assert!(st.is_success(), "{v}");
}

#[tokio::test]
async fn a_reload_gives_what_a_restart_with_the_new_file_gives() {
    let s = serve_file(BASE).await;
    for (flow, key) in [("campaign", "out-0"), ("support", "in-0"), ("support", "in-1")] {
        let (st, v) = s.acquire(json!({ "flow": flow, "key": key })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, _) = s.acquire(json!({ "flow": "support", "key": "in-2" })).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = s.put("/v1/pools/acct", json!({ "limit": 2 })).await;
    assert_eq!(st, StatusCode::OK);
    let next = edit("reserve = { inbound = 1 }", "reserve = { inbound = 2 }")
        .replace("priority = 10", "priority = 60")
        .replace("max_len = 5", "max_len = 2");
    let (st, v) = reload(&s, &next).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let reloaded = state(&s).await;
    let mut s = s;
    s.toml = next.clone();
    let restarted = s.restart().await;
    assert_eq!(state(&restarted).await, reloaded, "reloaded and restarted servers agree");
}

/// What a client reads of the admission state.
async fn state(s: &TestServer) -> (Value, Value, Value) {
    let (_, pools) = s.get("/v1/pools").await;
    let (_, leases) = s.get("/v1/leases").await;
    let (_, waiting) = s.get("/v1/tickets").await;
    (pools, leases, waiting)
}

#[tokio::test]
async fn api_keys_change_and_only_an_admin_may_reload() {
    let keys = |app: &str| {
        format!(
            "[auth]\nkeys = [{{ name = \"ops\", token = \"admin-token\", role = \"admin\" }}, {{ name = \"app\", token = \"{app}\", role = \"client\" }}]\n{BASE}"
        )
    };
    let s = serve_file(&keys("old-token")).await.with_token("old-token");
    let (st, v) = s.post("/v1/config/reload", json!({})).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{v}");
    let s = s.with_token("admin-token");
    let (st, v) = reload(&s, &keys("new-token")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["auth: keys ops, app -> ops, app"]));
    let s = s.with_token("old-token");
    assert_eq!(s.acquire(json!({ "flow": "support" })).await.0, StatusCode::UNAUTHORIZED, "the old token is gone");
    let s = s.with_token("new-token");
    assert_eq!(s.acquire(json!({ "flow": "support" })).await.0, StatusCode::OK, "the new one works");
}

#[tokio::test]
async fn the_reload_is_an_event() {
    let s = serve_file(BASE).await;
    // Subscribed once the answer's headers are in.
    let resp = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();
    let (st, _) = reload(&s, &edit("limit = 3", "limit = 4")).await;
    assert_eq!(st, StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    use futures_util::StreamExt;
    while !text.contains("config_reloaded") {
        let chunk = body.next().await.expect("the stream stays open").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let line = text.lines().find(|l| l.contains("config_reloaded")).unwrap();
    let event: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(event, json!({ "type": "config_reloaded", "changes": ["pool acct: limit 3 -> 4"] }));
    assert!(text.contains("limit_changed"), "the limit change itself is an event too: {text}");
}

/// `[[campaigns]]` follow the file: a new one starts, a changed one takes its settings and
/// keeps its state, a removed one stops dialing (paused, saying why); each is a line of
/// `changes`; a restart on the same file does the same.
#[tokio::test]
async fn campaigns_follow_the_file() {
    let campaign = |name: &str, priority: i32| {
        format!(
            "\n[[campaigns]]\nname = \"{name}\"\nflow = \"campaign\"\npriority = {priority}\nstart = true\nwindow = {{ start = \"00:00\", end = \"24:00\" }}\nsimulate = {{ ring_time = \"2ms\", talk_min = \"5ms\", talk_mean = \"10ms\", talk_max = \"40ms\", failure_rate = 0, seed = 3 }}\n"
        )
    };
    let s = serve_file(&format!("{BASE}{}", campaign("renewals", 5))).await;
    assert_eq!(s.get("/v1/campaigns/renewals").await.1["state"], "running");
    // Paused by hand: a change of settings keeps that.
    let (st, _) = s.post("/v1/campaigns/renewals/pause", json!({})).await;
    assert_eq!(st, StatusCode::OK);

    let (st, v) = reload(&s, &format!("{BASE}{}{}", campaign("renewals", 7), campaign("winback", 3))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let changes: Vec<&str> = v["changes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(changes.contains(&"campaign renewals: changed"), "{v}");
    assert!(changes.contains(&"campaign winback: added"), "{v}");
    let (_, renewals) = s.get("/v1/campaigns/renewals").await;
    assert_eq!((renewals["priority"].as_i64(), renewals["state"].as_str()), (Some(7), Some("paused")), "{renewals}");
    let (_, winback) = s.get("/v1/campaigns/winback").await;
    assert_eq!((winback["state"].as_str(), winback["source"].as_str()), (Some("running"), Some("config")), "{winback}");

    let (st, v) = reload(&s, &format!("{BASE}{}", campaign("renewals", 7))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["changes"].as_array().unwrap().contains(&json!("campaign winback: removed from the file, paused")),
        "{v}"
    );
    let (_, winback) = s.get("/v1/campaigns/winback").await;
    assert_eq!(winback["state"], "paused", "{winback}");
    assert_eq!(winback["paused_reason"], "removed from the configuration file", "{winback}");

    // Nothing changed: nothing to say about campaigns.
    let (st, v) = reload(&s, &format!("{BASE}{}", campaign("renewals", 7))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["changes"].to_string().contains("campaign "), "{v}");

    // A restart with that file does what the reload did: resumed by hand meanwhile, the
    // campaign the file no longer names is paused again at the start.
    let (st, _) = s.post("/v1/campaigns/winback/resume", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.get("/v1/campaigns/winback").await.1["state"], "running");
    let mut s = s;
    s.toml = format!("{BASE}{}", campaign("renewals", 7));
    let s = s.restart().await;
    let (_, winback) = s.get("/v1/campaigns/winback").await;
    assert_eq!(winback["state"], "paused", "{winback}");
    assert_eq!(winback["paused_reason"], "removed from the configuration file", "{winback}");
    let (_, renewals) = s.get("/v1/campaigns/renewals").await;
    assert_eq!((renewals["priority"].as_i64(), renewals["state"].as_str()), (Some(7), Some("paused")), "{renewals}");
}

// ---------------------------------------------------------------------------------------
// Providers

const VAPI_NUMBER: &str = "+15550001111";
const TWILIO_NUMBER: &str = "+15550002222";

/// The pools `vapi` and `phones` (two lines each), an inbound flow per provider given,
/// and the providers' own `[[providers]]` blocks.
fn with_providers(providers: &[&str]) -> String {
    let mut out = String::from(
        "\n[[pools]]\nname = \"vapi\"\nlimit = 2\n\n[[pools]]\nname = \"phones\"\nlimit = 2\n\n[[flows]]\nname = \"outbound\"\npools = [\"vapi\"]\nclass = \"outbound\"\n",
    );
    for p in providers {
        out.push_str(p);
    }
    out
}

/// A Vapi provider `name` on the API at `url` (`api_key`: reconciled every 100 ms), with
/// its flow answering `VAPI_NUMBER`-like numbers.
fn vapi_provider(name: &str, url: &str, secret: &str, api_key: Option<&str>, extra: &str) -> String {
    let key = api_key.map(|k| format!("api_key = \"{k}\"\n")).unwrap_or_default();
    format!(
        r#"
[[providers]]
name = "{name}"
kind = "vapi"
base_url = "{url}"
webhook_secret = "{secret}"
pool = "vapi"
reconcile_every = "100ms"
{key}{extra}
[[flows]]
name = "{name}-calls"
pools = ["vapi"]
class = "inbound"
match = {{ provider = "{name}" }}
vapi = {{ assistant_id = "asst-{name}" }}
"#
    )
}

/// The Twilio provider `tw` with its waiting-room flow.
fn twilio_provider(url: &str, token: &str, public_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "tw"
kind = "twilio"
base_url = "{url}"
account_sid = "ACtest"
auth_token = "{token}"
public_url = "{public_url}"
pool = "phones"
reconcile_every = "1h"

[[flows]]
name = "tw-calls"
pools = ["phones"]
class = "inbound"
match = {{ provider = "tw", number = "{TWILIO_NUMBER}" }}
twilio = {{ connect = {{ sip = "sip:support@example.sip.vapi.ai" }} }}
queue = {{ max_wait = "10m", max_len = 5 }}
"#
    )
}

async fn vapi_webhook(s: &TestServer, provider: &str, secret: &str, message: Value) -> (StatusCode, Value) {
    support::providers::vapi_webhook(s, provider, secret, message).await
}

fn assistant_request(call: &str) -> Value {
    json!({
        "type": "assistant-request",
        "call": { "id": call, "type": "inboundPhoneCall", "phoneNumberId": "pn-1" },
        "phoneNumber": { "id": "pn-1", "number": VAPI_NUMBER },
    })
}

fn end_of_call(call: &str) -> Value {
    json!({ "type": "end-of-call-report", "call": { "id": call }, "endedReason": "customer-ended-call" })
}

/// A message callgate only passes on (nothing changes): a probe of the credential.
fn speech_update() -> Value {
    json!({ "type": "speech-update", "call": { "id": "probe" }, "status": "started", "role": "user" })
}

/// The customer's own server: the path of every message it was sent.
async fn upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let router = axum::Router::new()
        .route(
            "/{who}",
            axum::routing::post(
                |axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<String>>>>,
                 axum::extract::Path(who): axum::extract::Path<String>| async move {
                    seen.lock().unwrap().push(who);
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), seen)
}

/// A Vapi webhook secret rotated by a reload: the old one is refused and the new one taken
/// from the moment the reload answers; the call admitted before it keeps its line and is
/// ended through the new secret; replies point calls back at callgate with the new
/// secret, and messages go to the new upstream.
#[tokio::test]
async fn a_vapi_webhook_secret_and_upstream_rotate_at_the_reload() {
    let api = fake_vapi().await;
    let (up, seen) = upstream().await;
    let file = |secret: &str, to: &str| {
        let extra = format!("public_url = \"https://cg.example.com\"\nforward_url = \"{up}/{to}\"\n");
        with_providers(&[&vapi_provider("vapi-main", &api.url, secret, None, &extra)])
    };
    let s = serve_file(&file("old-secret", "first")).await;
    let (st, v) = vapi_webhook(&s, "vapi-main", "old-secret", assistant_request("call-1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["assistantOverrides"]["server"]["headers"]["Authorization"], "Bearer old-secret", "{v}");
    assert_eq!(s.used("vapi").await, 1);

    let (st, v) = reload(&s, &file("new-secret", "second")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["provider vapi-main: changed"]));

    let (st, v) = vapi_webhook(&s, "vapi-main", "old-secret", speech_update()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old secret is refused at once: {v}");
    let (st, v) = vapi_webhook(&s, "vapi-main", "new-secret", assistant_request("call-2")).await;
    assert_eq!(st, StatusCode::OK, "the new one is taken: {v}");
    assert_eq!(v["assistantOverrides"]["server"]["headers"]["Authorization"], "Bearer new-secret", "{v}");
    assert_eq!(s.used("vapi").await, 2, "the call admitted before the reload keeps its line");
    let (st, _) = vapi_webhook(&s, "vapi-main", "new-secret", end_of_call("call-1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.used("vapi").await, 1, "and ends through the new secret");
    eventually("call-2's messages reach the new upstream", secs(10), || async {
        seen.lock().unwrap().iter().filter(|w| *w == "second").count() >= 2
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|w| *w == "first").count(), 1, "only call-1's request went to the old one: {seen:?}");
}

/// A Twilio auth token and public URL changed by a reload: requests signed with the old
/// token are refused, the new token is taken, and the caller who was waiting when it
/// happened is not dropped: Twilio requests the wait URL it was given (under the former
/// public URL), signed with the new token, and the caller keeps their place.
#[tokio::test]
async fn a_twilio_auth_token_rotates_and_a_waiting_caller_keeps_their_place() {
    let api = fake_twilio().await;
    const OLD_URL: &str = "https://cg.example.com";
    const NEW_URL: &str = "https://callgate.example.org";
    let s = serve_file(&with_providers(&[&twilio_provider(&api.url, "old-token", OLD_URL)])).await;
    let ring = |public_url: &'static str, token: &'static str, sid: &'static str| {
        let s = &s;
        async move {
            let params = [("AccountSid", "ACtest"), ("CallSid", sid), ("From", "+15551230000"), ("To", TWILIO_NUMBER)];
            Phone { server: s, public_url, token }.post("/webhooks/twilio/tw/voice", &params).await
        }
    };
    for sid in ["CA-1", "CA-2"] {
        assert_eq!(ring(OLD_URL, "old-token", sid).await.twiml().verbs(), ["Dial"]);
    }
    let queued = ring(OLD_URL, "old-token", "CA-3").await.twiml();
    let wait_url = queued.find("Enqueue").expect("the third caller waits").attr("waitUrl").to_owned();
    assert!(wait_url.starts_with(OLD_URL), "{wait_url}");

    let (st, v) = reload(&s, &with_providers(&[&twilio_provider(&api.url, "new-token", NEW_URL)])).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["provider tw: changed"]));

    assert_eq!(ring(NEW_URL, "old-token", "CA-4").await.status, StatusCode::FORBIDDEN, "the old token is refused");
    assert_eq!(ring(OLD_URL, "old-token", "CA-4").await.status, StatusCode::FORBIDDEN);
    let t = Phone { server: &s, public_url: OLD_URL, token: "new-token" }
        .post(&wait_url, &[("CallSid", "CA-3"), ("QueuePosition", "1")])
        .await
        .twiml();
    assert!(t.spoken().contains("You are number 1 in line"), "the waiting caller is still in line: {t:?}");
    assert_eq!(s.pool("phones").await["waiting"], 1);
    let t = ring(NEW_URL, "new-token", "CA-4").await.twiml();
    assert_eq!(t.verbs(), ["Enqueue"], "the new token is taken");
    let next_wait = t.find("Enqueue").unwrap().attr("waitUrl").to_owned();
    assert!(next_wait.starts_with(NEW_URL), "new URLs are under the new public URL: {next_wait}");
    let t = Phone { server: &s, public_url: NEW_URL, token: "new-token" }
        .post(&next_wait, &[("CallSid", "CA-4")])
        .await
        .twiml();
    assert!(t.spoken().contains("You are number 2 in line"), "{t:?}");
}

/// Providers come and go: a new one's webhooks and reconciliation start, a removed one's
/// route answers as an unknown provider's and its reconciler stops (its lease lives on),
/// a changed one's reconciler restarts with the new key.
#[tokio::test]
async fn providers_are_added_changed_and_removed_with_their_reconcilers() {
    let (a, b) = (fake_vapi().await, fake_vapi().await);
    // The platform shows the call, so reconciliation keeps it.
    a.set_calls(vec![json!({ "id": "call-a", "status": "in-progress", "createdAt": "2026-11-28T10:00:00.000Z" })]);
    let s = serve_file(&with_providers(&[&vapi_provider("vapi-a", &a.url, "secret-a", Some("key-a"), "")])).await;
    let running = || s.server().app.reconcilers.running();
    assert_eq!(running(), ["vapi-a"]);
    let (st, v) = vapi_webhook(&s, "vapi-a", "secret-a", assistant_request("call-a")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let n = a.requests();
    eventually("vapi-a is reconciled", secs(10), || async { a.requests() >= n + 2 }).await;

    let next = with_providers(&[&vapi_provider("vapi-b", &b.url, "secret-b", Some("key-b"), "")]);
    let (st, v) = reload(&s, &next).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["changes"],
        json!([
            "flow vapi-b-calls: added",
            "flow vapi-a-calls: removed",
            "provider vapi-b: added",
            "provider vapi-a: removed"
        ])
    );
    let (st, v) = vapi_webhook(&s, "vapi-a", "secret-a", speech_update()).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::NOT_FOUND, &json!("unknown_provider")), "{v}");
    let (st, v) = vapi_webhook(&s, "vapi-b", "secret-b", assistant_request("call-b")).await;
    assert_eq!((st, &v["assistantId"]), (StatusCode::OK, &json!("asst-vapi-b")), "{v}");
    eventually("only vapi-b's reconciler runs", secs(10), || async { running() == ["vapi-b"] }).await;
    let stopped_at = a.requests();
    let n = b.requests();
    eventually("vapi-b is reconciled", secs(10), || async { b.requests() >= n + 2 }).await;
    assert_eq!(a.requests(), stopped_at, "vapi-a's reconciler asks nothing any more");
    assert_eq!(b.last_request().unwrap().2.as_deref(), Some("Bearer key-b"));
    let (_, leases) = s.get("/v1/leases").await;
    let keys: Vec<&str> = leases["leases"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["call-a", "call-b"], "the removed provider's lease lives on: {leases}");

    // What cannot be put in force changes nothing: a provider on a pool that does not
    // exist, one whose secret's variable is not set, a flow left on a removed provider.
    let refused = [
        next.replace("pool = \"vapi\"\nreconcile_every", "pool = \"nowhere\"\nreconcile_every"),
        next.replace("webhook_secret = \"secret-b\"", "webhook_secret_env = \"CALLGATE_RELOAD_TEST_UNSET\""),
        next.replace("[[providers]]\nname = \"vapi-b\"", "[[providers]]\nname = \"vapi-c\""),
    ];
    for file in refused {
        let (st, v) = reload(&s, &file).await;
        assert_eq!((st, &v["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_config")), "{v}");
    }
    let (st, v) = vapi_webhook(&s, "vapi-b", "secret-b", speech_update()).await;
    assert_eq!(st, StatusCode::OK, "nothing changed: {v}");
    assert_eq!(running(), ["vapi-b"]);

    let (st, v) = reload(&s, &next.replace("key-b", "key-b2")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["provider vapi-b: changed"]));
    eventually("vapi-b's reconciler asks with the new key", secs(10), || async {
        b.last_request().unwrap().2.as_deref() == Some("Bearer key-b2")
    })
    .await;
    assert_eq!(running(), ["vapi-b"]);
    // The removed provider's lease ends as any lease does.
    let id = leases["leases"][0]["id"].as_str().unwrap();
    let (st, v) = s.delete(&format!("/v1/leases/{id}")).await;
    assert_eq!((st, v), (StatusCode::OK, json!({ "released": true })));
}

/// A campaign's dialer is rebuilt from the providers in force: after a reload that moves
/// the provider to another account and rotates its webhook secret, the call is placed on
/// the new account, with the new secret in the server URL it hands Vapi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_dials_with_the_reloaded_provider_settings() {
    let (old, new) = (
        FakeVapi::start(10, |_, _| (None, std::time::Duration::from_secs(60))).await,
        FakeVapi::start(10, |_, _| (None, std::time::Duration::from_secs(60))).await,
    );
    let file = |url: &str, secret: &str| {
        let provider =
            vapi_provider("vapi-main", url, secret, Some("test-key"), "public_url = \"https://cg.example.com\"\n");
        with_providers(&[&provider])
            + r#"
[[campaigns]]
name = "spring"
provider = "vapi-main"
flow = "outbound"
vapi = { assistant_id = "asst-1", phone_number_id = "pn-1" }
window = { start = "00:00", end = "24:00" }
start = false
"#
    };
    let s = serve_file(&file(&old.url, "old-secret")).await;
    let (st, v) = s.post("/v1/campaigns/spring/leads", json!({ "leads": [{ "phone": "+12125550100" }] })).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (st, v) = reload(&s, &file(&new.url, "new-secret")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["changes"],
        json!(["provider vapi-main: changed", "campaign spring: dialers rebuilt for the providers in force"])
    );
    let (st, _) = s.post("/v1/campaigns/spring/start", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    eventually("the call is placed", secs(20), || async { !new.counts().placed.is_empty() }).await;
    assert!(old.counts().bodies.is_empty(), "nothing goes to the old account");
    let body = new.counts().bodies[0].clone();
    assert_eq!(body["assistantOverrides"]["server"]["headers"]["Authorization"], "Bearer new-secret", "{body}");
}

/// What webhooks and reconcilers of each provider do, as a client sees it.
async fn provider_behaviour(s: &TestServer, twilio: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for (provider, secret) in [("vapi-main", "s1"), ("vapi-main", "s2"), ("vapi-new", "s3"), ("vapi-old", "s0")] {
        let (st, _) = vapi_webhook(s, provider, secret, speech_update()).await;
        out.push((format!("{provider} with {secret}"), st.as_u16()));
    }
    let status = [("AccountSid", "ACtest"), ("CallSid", "CA-probe"), ("CallStatus", "completed")];
    for token in ["t1", "t2"] {
        let reply = Phone { server: s, public_url: twilio, token }.post("/webhooks/twilio/tw/status", &status).await;
        out.push((format!("tw with {token}"), reply.status.as_u16()));
    }
    for name in s.server().app.reconcilers.running() {
        out.push((format!("reconciler {name}"), 0));
    }
    out
}

#[tokio::test]
async fn providers_after_a_reload_are_what_a_restart_with_the_new_file_gives() {
    let (api, tw) = (fake_vapi().await, fake_twilio().await);
    let before = with_providers(&[
        &vapi_provider("vapi-main", &api.url, "s1", Some("key"), ""),
        &vapi_provider("vapi-old", &api.url, "s0", None, ""),
        &twilio_provider(&tw.url, "t1", "https://cg.example.com"),
    ]);
    let after = with_providers(&[
        &vapi_provider("vapi-main", &api.url, "s2", None, ""),
        &vapi_provider("vapi-new", &api.url, "s3", Some("key"), ""),
        &twilio_provider(&tw.url, "t2", "https://cg.example.com"),
    ]);
    let s = serve_file(&before).await;
    let (st, v) = vapi_webhook(&s, "vapi-main", "s1", assistant_request("call-1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = reload(&s, &after).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // vapi-main's reconciler (it has no key now) may be finishing a pass.
    eventually("vapi-main's reconciler stops", secs(10), || async {
        s.server().app.reconcilers.running() == ["tw", "vapi-new"]
    })
    .await;
    let reloaded = (provider_behaviour(&s, "https://cg.example.com").await, state(&s).await);
    assert!(reloaded.0.contains(&("vapi-main with s2".into(), 200)), "{:?}", reloaded.0);
    assert!(reloaded.0.contains(&("vapi-old with s0".into(), 404)), "{:?}", reloaded.0);
    assert!(reloaded.0.contains(&("reconciler vapi-new".into(), 0)), "{:?}", reloaded.0);
    let mut s = s;
    s.toml = after;
    let restarted = s.restart().await;
    let again = (provider_behaviour(&restarted, "https://cg.example.com").await, state(&restarted).await);
    assert_eq!(again, reloaded, "reloaded and restarted servers agree");
}

#[tokio::test]
async fn a_reload_puts_the_new_files_active_schedule_in_force_at_once() {
    let s = serve_file(BASE).await;
    // All day, every day: active at once. Its overflow replaces the support line's.
    let scheduled = format!(
        "{BASE}\n[[schedules]]\nname = \"all-day\"\nstart = \"00:00\"\nend = \"24:00\"\n\
         pools = {{ acct = {{ reserve = {{ inbound = 2 }} }} }}\n\
         flows = {{ support = {{ overflow = {{ action = \"busy\" }} }} }}\n"
    );
    let (st, v) = reload(&s, &scheduled).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changes"], json!(["schedule all-day: added"]));
    assert_eq!(s.pool("acct").await["reserve"], json!({ "inbound": 2 }), "in force when the reload answers");
    let chain = s.server().app.governor.overflow_chain("support").unwrap();
    assert_eq!(chain[0].action.as_str(), "busy");
    assert_eq!(s.get("/v1/schedules").await.1[0]["active"], true);
    // Removed again: the file as written.
    let (st, v) = reload(&s, BASE).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.pool("acct").await["reserve"], json!({ "inbound": 1 }));
    assert_eq!(s.server().app.governor.overflow_chain("support").unwrap()[0].action.as_str(), "voicemail");
}
