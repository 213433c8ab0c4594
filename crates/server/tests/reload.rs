//! Reloading the configuration without a restart (`POST /v1/config/reload`): what a
//! reload changes, what it keeps (leases, waiting callers), what it refuses, and that it
//! gives what a restart with the new file would.

mod support;

use callgate_server::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{config, ManualClock, TestServer};

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
