//! The HTTP edge under hostile or careless clients (issue 10): bounds on every input,
//! paged reads, roles and ownership, slow and idle connections.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::{holds_within, secs, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ten slots, one flow, two classes.
const TEN: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 10

[[pools]]
name = "side"
limit = 10

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "60s", max_len = 5 }

[[flows]]
name = "dialer"
pools = ["acct"]
class = "outbound"
"#;

/// `{"a":{"a":…{}…}}`, `depth` objects deep.
fn nested(depth: usize) -> String {
    format!("{}{{}}{}", "{\"a\":".repeat(depth - 1), "}".repeat(depth - 1))
}

fn acquire_with_meta(meta: &str) -> String {
    format!("{{\"flow\":\"support\",\"meta\":{meta}}}")
}

#[tokio::test]
async fn a_meta_nested_200_deep_is_refused_before_anything_is_admitted() {
    let s = TestServer::start(TEN).await;
    // Someone watches the events: the journal's consumers are what broke on this input.
    let events = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let events_before = s.first_metric("callgate_events_total").await;

    let body = acquire_with_meta(&nested(200));
    assert!(body.len() < 1500, "a small body: {} bytes", body.len());
    let (st, v) = s.post_raw("/v1/acquire", body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "meta_too_deep");
    assert_eq!(s.used("acct").await, 0, "nothing admitted");
    assert_eq!(s.first_metric("callgate_events_total").await, events_before, "nothing journaled");

    // The server keeps serving: healthy, and the next caller is granted.
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(&nested(16))).await;
    assert_eq!(st, StatusCode::OK, "16 levels are within the default bound: {v}");
    let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(&nested(17))).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("meta_too_deep")), "{v}");
    assert_eq!(s.used("acct").await, 1);
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    drop(events);
}

/// Found by the acquire-body fuzz target: JSON text that is valid but that no JSON value
/// can hold was granted and journaled, and then turning the lease into its answer panicked.
#[tokio::test]
async fn a_meta_no_json_value_can_hold_is_refused_before_anything_is_admitted() {
    let s = TestServer::start(TEN).await;
    for meta in [r#"{"n":1e400}"#, r#"{"s":"\ud800"}"#, r#"[-1e999]"#] {
        let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(meta)).await;
        assert_eq!((st, &v["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_meta")), "{meta}: {v}");
    }
    assert_eq!(s.used("acct").await, 0, "nothing admitted");
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(r#"{"n":1e300,"s":"\ud83d\ude00"}"#)).await;
    assert_eq!(st, StatusCode::OK, "a large number and a surrogate pair are fine: {v}");
}

#[tokio::test]
async fn every_input_is_bounded_with_a_json_4xx_and_changes_nothing() {
    let s = TestServer::start(TEN).await;
    s.acquire(json!({ "flow": "support", "key": "first" })).await;
    // The journal's consumers count an event just after it is durable: wait for the
    // grant's to be counted before taking the baseline.
    assert!(holds_within(secs(10), || async { s.first_metric("callgate_events_total").await > 0.0 }).await);
    let before = s.pool("acct").await;
    let events_before = s.first_metric("callgate_events_total").await;
    let many_pools: Vec<Value> = (0..17).map(|i| json!({ "pool": format!("p{i}") })).collect();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "meta over 4 KiB",
            acquire_with_meta(&json!({ "x": "a".repeat(5000) }).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "meta_too_large",
        ),
        (
            "key over 256 bytes",
            json!({ "flow": "support", "key": "k".repeat(257) }).to_string(),
            StatusCode::BAD_REQUEST,
            "key_too_long",
        ),
        ("empty key", json!({ "flow": "support", "key": "" }).to_string(), StatusCode::BAD_REQUEST, "key_too_long"),
        ("flow name", json!({ "flow": "f".repeat(129) }).to_string(), StatusCode::BAD_REQUEST, "name_too_long"),
        (
            "class name",
            json!({ "pools": [{ "pool": "acct" }], "class": "c".repeat(129) }).to_string(),
            StatusCode::BAD_REQUEST,
            "name_too_long",
        ),
        (
            "pool name",
            json!({ "pools": [{ "pool": "p".repeat(129) }], "class": "inbound" }).to_string(),
            StatusCode::BAD_REQUEST,
            "name_too_long",
        ),
        (
            "17 pools",
            json!({ "pools": many_pools, "class": "inbound" }).to_string(),
            StatusCode::BAD_REQUEST,
            "too_many_pools",
        ),
    ];
    for (what, body, want, code) in cases {
        let (st, v) = s.post_raw("/v1/acquire", body).await;
        assert_eq!(st, want, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
    let long = "x".repeat(2000);
    for path in [
        format!("/v1/leases?key={long}"),
        format!("/v1/leases?pool={}", "p".repeat(129)),
        format!("/v1/callbacks?flow={}", "f".repeat(129)),
        format!("/v1/pools/{long}"),
    ] {
        let (st, v) = s.get(&path).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
    let (st, v) = s.delete(&format!("/v1/leases?key={}", "k".repeat(257))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.post("/v1/samples", json!({ "dependency": "d".repeat(129), "ok": true })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(s.pool("acct").await, before, "nothing changed");
    assert_eq!(s.first_metric("callgate_events_total").await, events_before, "no event was recorded");
}

#[tokio::test]
async fn the_bounds_are_configurable() {
    let toml = format!("[server]\nmax_meta_depth = 2\nmax_meta_bytes = 64\nmax_key_bytes = 4\n{TEN}");
    let s = TestServer::start(&toml).await;
    let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(&nested(3))).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("meta_too_deep")), "{v}");
    let (st, v) = s.post_raw("/v1/acquire", acquire_with_meta(&json!({ "x": "a".repeat(64) }).to_string())).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("meta_too_large")), "{v}");
    let (st, v) = s.acquire(json!({ "flow": "support", "key": "abcde" })).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("key_too_long")), "{v}");
    let (st, v) = s.acquire(json!({ "flow": "support", "key": "abcd", "meta": { "a": { "b": 1 } } })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn the_body_limit_holds_everywhere_and_an_upload_route_keeps_its_own() {
    // The limit is one layer around the whole router (not a layer of it): routes of the
    // API and of the merged campaign router still get it, and a route with a limit of its
    // own still wins.
    let toml = format!("[server]\nmax_body_bytes = 2048\nmax_meta_bytes = 1024\n{TEN}");
    let s = TestServer::start(&toml).await;
    let big = acquire_with_meta(&json!({ "x": "a".repeat(3000) }).to_string());
    let (st, v) = s.post_raw("/v1/acquire", big.clone()).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("body_too_large")), "{v}");
    let (st, v) = s.post_raw("/v1/campaigns", big).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("body_too_large")), "{v}");
    let (st, v) = s.get("/v1/pools/acct").await;
    assert_eq!((st, &v["used"]), (StatusCode::OK, &json!(0)), "nothing was admitted: {v}");
    // 400 numbers, about 5 KiB: above the server's limit, far below the upload route's.
    let csv: String = (0..400).map(|i| format!("+1212555{i:04}\n")).collect();
    assert!(csv.len() > 2048);
    let r = s.client.post(format!("{}/v1/dnc/internal", s.base)).header("content-type", "text/csv").body(csv);
    let r = r.send().await.unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!((st, &v["added"]), (StatusCode::OK, &json!(400)), "{v}");
}

#[tokio::test]
async fn leases_are_listed_a_page_at_a_time_with_filters() {
    let s = TestServer::start(TEN).await;
    for i in 0..7 {
        let (st, _) = s.acquire(json!({ "flow": "support", "key": format!("in-{i}") })).await;
        assert_eq!(st, StatusCode::OK);
    }
    for i in 0..2 {
        s.acquire(json!({ "flow": "dialer", "key": format!("out-{i}") })).await;
    }
    s.acquire(json!({ "pools": [{ "pool": "side" }], "class": "outbound", "key": "side-0" })).await;
    assert_eq!(s.delete("/v1/leases?key=in-3").await.1, json!({ "released": true }));

    // Page through everything, three at a time.
    let mut keys = Vec::new();
    let mut path = "/v1/leases?limit=3".to_string();
    let mut pages = 0;
    loop {
        let (st, v) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let page = v["leases"].as_array().unwrap();
        assert!(page.len() <= 3, "{v}");
        keys.extend(page.iter().map(|l| l["key"].as_str().unwrap().to_string()));
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/leases?limit=3&cursor={c}"),
            None => break,
        }
    }
    let want = ["in-0", "in-1", "in-2", "in-4", "in-5", "in-6", "out-0", "out-1", "side-0"];
    assert_eq!(keys, want, "every live lease once, in the order granted");
    assert!(pages >= 3, "{pages} pages");

    // The default page holds them all and says there is no more.
    let (_, v) = s.get("/v1/leases").await;
    assert_eq!(v["leases"].as_array().unwrap().len(), 9);
    assert!(v["next_cursor"].is_null());

    let only = |v: &Value| -> Vec<String> {
        v["leases"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(only(&s.get("/v1/leases?pool=side").await.1), ["side-0"]);
    assert_eq!(only(&s.get("/v1/leases?flow=dialer").await.1), ["out-0", "out-1"]);
    assert_eq!(only(&s.get("/v1/leases?class=outbound").await.1), ["out-0", "out-1", "side-0"]);
    assert_eq!(only(&s.get("/v1/leases?key=in-&pool=acct&limit=2").await.1), ["in-0", "in-1"]);
    assert_eq!(only(&s.get("/v1/leases?key=in-5").await.1), ["in-5"]);

    for (path, want) in [
        ("/v1/leases?limit=0", StatusCode::BAD_REQUEST),
        ("/v1/leases?limit=1001", StatusCode::BAD_REQUEST),
        ("/v1/leases?cursor=L3", StatusCode::BAD_REQUEST),
        ("/v1/leases?pool=nope", StatusCode::NOT_FOUND),
        ("/v1/leases?flow=nope", StatusCode::NOT_FOUND),
        ("/v1/leases?colour=red", StatusCode::BAD_REQUEST),
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, want, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn requests_naming_pools_directly_wait_in_a_bounded_line() {
    let toml = format!("[server]\npools_max_len = 2\n{TEN}");
    let s = TestServer::start(&toml).await;
    let ask = json!({ "pools": [{ "pool": "acct", "units": 10 }], "class": "inbound", "max_wait_ms": 60000 });
    assert_eq!(s.acquire(ask.clone()).await.0, StatusCode::OK);
    assert_eq!(s.acquire(ask.clone()).await.0, StatusCode::ACCEPTED);
    assert_eq!(s.acquire(ask.clone()).await.0, StatusCode::ACCEPTED);
    let (st, v) = s.acquire(ask).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["reason"], "queue_full");
    assert_eq!(s.pool("acct").await["waiting"], 2);
}

const KEYS: &str = r#"
[auth]
keys = [
  { name = "ops", token = "admin-token", role = "admin" },
  { name = "noc", token = "operator-token", role = "operator" },
  { name = "app", token = "client-token", role = "client" },
  { name = "other-app", token = "other-client-token", role = "client" },
  { name = "board", token = "viewer-token", role = "viewer" },
]
"#;

fn with_keys() -> String {
    format!("{TEN}\n{KEYS}")
}

#[tokio::test]
async fn a_viewer_may_read_and_only_operators_post_samples() {
    let s = TestServer::start(&with_keys()).await.with_token("client-token");
    let (_, granted) = s.acquire(json!({ "flow": "support", "key": "c1" })).await;
    let lease = granted["lease"]["id"].as_str().unwrap().to_string();

    let s = s.with_token("viewer-token");
    for path in ["/v1/pools", "/v1/leases", "/v1/stats", "/v1/tickets", "/v1/calls"] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, StatusCode::OK, "a viewer reads {path}: {v}");
    }
    let (st, v) = s.acquire(json!({ "flow": "support" })).await;
    assert_eq!((st, &v["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{v}");
    assert_eq!(s.delete(&format!("/v1/leases/{lease}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.delete("/v1/leases?key=c1").await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.post(&format!("/v1/leases/{lease}/renew"), json!({})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.used("acct").await, 1, "the viewer changed nothing");

    let sample = json!({ "pool": "acct", "latency_ms": 100, "ok": true });
    let s = s.with_token("client-token");
    let (st, v) = s.post("/v1/samples", sample.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a client may not move adaptive caps: {v}");
    let s = s.with_token("operator-token");
    let (st, v) = s.post("/v1/samples", sample).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = TestServer::start(&with_keys()).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = s
            .client
            .get(format!("{}/v1/pools", s.base))
            .header("authorization", format!("{scheme} viewer-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
    let resp = s
        .client
        .get(format!("{}/v1/pools", s.base))
        .header("authorization", "Basic viewer-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A prefix of a token, or a token with more after it, is not the token.
    for token in ["viewer-toke", "viewer-token2", ""] {
        let resp = s
            .client
            .get(format!("{}/v1/pools", s.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "`{token}`");
    }
}

// ----- slow, idle and too many connections ---------------------------------------------

/// Sends a GET on a raw connection and reads one answer: its status.
async fn raw_get(conn: &mut TcpStream, path: &str) -> u16 {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        if body.len() >= len {
            return head[9..12].parse().unwrap();
        }
    }
}

/// True when the server closes the connection (within a generous bound; no timing is
/// asserted), reading and discarding whatever it sends first.
async fn closed_by_server(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_by_the_server() {
    let toml = format!("[server]\nheader_read_timeout = \"300ms\"\n{TEN}");
    let s = TestServer::start(&toml).await;
    let addr = s.server().addr;
    // Slowloris: headers begun, never finished.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/pools HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // A kept-alive connection that never sends its next request.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(raw_get(&mut idle, "/healthz").await, 200);
    // A connection that sends nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    assert!(closed_by_server(&mut slow).await, "the slowloris connection is closed");
    assert!(closed_by_server(&mut idle).await, "the idle kept-alive connection is closed");
    assert!(closed_by_server(&mut silent).await, "the silent connection is closed");
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK, "and the server serves on");
}

fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

#[tokio::test]
async fn beyond_the_connection_cap_new_clients_are_refused_and_established_ones_served() {
    let toml = format!("[server]\nmax_connections = 2\n{TEN}");
    let s = TestServer::start(&toml).await;
    let addr = s.server().addr;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // Each is answered, so the server holds both.
    assert_eq!(raw_get(&mut a, "/healthz").await, 200);
    assert_eq!(raw_get(&mut b, "/healthz").await, 200);

    // A third client is told no at once (or, under a flood, simply closed).
    let third =
        tokio::time::timeout(Duration::from_secs(30), fresh_client().get(format!("{}/v1/pools", s.base)).send())
            .await
            .expect("refused quickly, not left hanging");
    if let Ok(resp) = third {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }

    // The established clients keep being served.
    assert_eq!(raw_get(&mut a, "/v1/pools").await, 200);
    assert_eq!(raw_get(&mut b, "/v1/pools").await, 200);

    // Once one leaves, a new client gets in.
    drop(b);
    let served = holds_within(secs(30), || async {
        let r = fresh_client().get(format!("{}/healthz", s.base)).send().await;
        r.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(served, "a freed slot serves a new client");
    assert_eq!(raw_get(&mut a, "/healthz").await, 200);
}

#[tokio::test]
async fn a_client_acts_only_on_what_it_acquired_even_after_a_restart() {
    let s = TestServer::start(&with_keys()).await.with_token("client-token");
    let fill = json!({ "pools": [{ "pool": "side", "units": 10 }], "class": "inbound", "key": "mine" });
    let (st, v) = s.acquire(fill).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let lease = v["lease"]["id"].as_str().unwrap().to_string();
    let wait = json!({ "pools": [{ "pool": "side" }], "class": "inbound", "max_wait_ms": 60000, "key": "later" });
    let (st, v) = s.acquire(wait).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let ticket = v["ticket"]["id"].as_str().unwrap().to_string();

    let mut s = s.restart().await;
    for token in ["other-client-token", "operator-token"] {
        s = s.with_token(token);
        for (what, (st, v)) in [
            ("release", s.delete(&format!("/v1/leases/{lease}")).await),
            ("release by key", s.delete("/v1/leases?key=mine").await),
            ("renew", s.post(&format!("/v1/leases/{lease}/renew"), json!({})).await),
            ("cancel", s.delete(&format!("/v1/tickets/{ticket}")).await),
        ] {
            assert_eq!(st, StatusCode::FORBIDDEN, "{token} may not {what}: {v}");
            assert_eq!(v["error"]["code"], "not_owner", "{what}: {v}");
        }
    }
    assert_eq!(s.used("side").await, 10, "nothing was released");
    assert_eq!(s.pool("side").await["waiting"], 1, "nothing was cancelled");

    let s = s.with_token("client-token");
    assert_eq!(s.post(&format!("/v1/leases/{lease}/renew"), json!({})).await.0, StatusCode::OK);
    assert_eq!(s.delete(&format!("/v1/tickets/{ticket}")).await.0, StatusCode::OK);
    let s = s.with_token("admin-token");
    assert_eq!(s.delete("/v1/leases?key=mine").await.1, json!({ "released": true }), "an admin may release any");
    assert_eq!(s.used("side").await, 0);
}
