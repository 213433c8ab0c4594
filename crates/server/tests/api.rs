//! The v1 HTTP API against a real server and a real SQLite journal.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, holds_within, secs, TestServer, THREE_SLOTS};

#[tokio::test]
async fn three_slots_with_an_inbound_reserve_admit_exactly_what_they_should() {
    let s = TestServer::start(THREE_SLOTS).await;
    for i in 0..2 {
        let (st, v) = s.acquire(json!({ "flow": "campaign", "key": format!("out-{i}") })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["decision"], "granted");
    }
    let (st, v) = s.acquire(json!({ "flow": "campaign", "key": "out-2" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the third outbound call would take the inbound reserve");
    assert_eq!(v["reason"], "capacity");
    assert_eq!(v["overflow"]["action"], "busy");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0);

    let (st, inbound) = s.acquire(json!({ "flow": "support", "key": "in-0" })).await;
    assert_eq!(st, StatusCode::OK, "inbound may use the reserved slot: {inbound}");
    let (st, q) = s.acquire(json!({ "flow": "support", "key": "in-1" })).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{q}");
    assert_eq!(q["ticket"]["position"], 1);
    let ticket = q["ticket"]["id"].as_str().unwrap().to_string();
    assert_eq!(s.pool("acct").await["waiting"], 1);

    let lease = inbound["lease"]["id"].as_str().unwrap();
    let (st, v) = s.delete(&format!("/v1/leases/{lease}")).await;
    assert_eq!((st, &v), (StatusCode::OK, &json!({ "released": true })));
    let (_, t) = s.get(&format!("/v1/tickets/{ticket}")).await;
    assert_eq!(t["state"], "granted", "the waiting caller gets the slot the moment it frees: {t}");
    assert_eq!(t["lease"]["key"], "in-1");
    assert_eq!(s.used("acct").await, 3);
}

#[tokio::test]
async fn a_repeated_key_returns_the_same_lease_or_ticket_and_counts_nothing() {
    let s = TestServer::start(THREE_SLOTS).await;
    let (_, a) = s.acquire(json!({ "flow": "support", "key": "call-1" })).await;
    let (st, b) = s.acquire(json!({ "flow": "support", "key": "call-1" })).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["lease"]["id"], b["lease"]["id"]);
    assert_eq!(s.used("acct").await, 1);

    s.acquire(json!({ "flow": "support" })).await;
    s.acquire(json!({ "flow": "support" })).await;
    let (_, t1) = s.acquire(json!({ "flow": "support", "key": "call-4" })).await;
    let (st, t2) = s.acquire(json!({ "flow": "support", "key": "call-4" })).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(t1["ticket"]["id"], t2["ticket"]["id"]);
    assert_eq!(s.pool("acct").await["waiting"], 1);
}

#[tokio::test]
async fn releasing_twice_frees_once() {
    let s = TestServer::start(THREE_SLOTS).await;
    let (_, a) = s.acquire(json!({ "flow": "support", "key": "k1" })).await;
    let (_, _b) = s.acquire(json!({ "flow": "support", "key": "k2" })).await;
    let id = a["lease"]["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/v1/leases/{id}")).await.1, json!({ "released": true }));
    assert_eq!(s.delete(&format!("/v1/leases/{id}")).await.1, json!({ "released": false }));
    assert_eq!(s.used("acct").await, 1);
    assert_eq!(s.delete("/v1/leases?key=k2").await.1, json!({ "released": true }));
    assert_eq!(s.delete("/v1/leases?key=k2").await.1, json!({ "released": false }));
    assert_eq!(s.used("acct").await, 0);
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let s = TestServer::start(THREE_SLOTS).await;
    s.acquire(json!({ "flow": "support" })).await;
    let before = s.pool("acct").await;
    let events_before = s.first_metric("callgate_events_total").await;
    let cases: Vec<(&str, String, StatusCode)> = vec![
        ("malformed JSON", "{\"flow\": ".into(), StatusCode::BAD_REQUEST),
        ("not an object", "[1,2]".into(), StatusCode::BAD_REQUEST),
        ("unknown flow", json!({ "flow": "nope" }).to_string(), StatusCode::NOT_FOUND),
        (
            "zero units",
            json!({ "pools": [{ "pool": "acct", "units": 0 }], "class": "inbound" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative units",
            json!({ "pools": [{ "pool": "acct", "units": -2 }], "class": "inbound" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        ("unknown pool", json!({ "pools": [{ "pool": "x" }], "class": "inbound" }).to_string(), StatusCode::NOT_FOUND),
        ("unknown class", json!({ "pools": [{ "pool": "acct" }], "class": "x" }).to_string(), StatusCode::NOT_FOUND),
        ("pools without class", json!({ "pools": [{ "pool": "acct" }] }).to_string(), StatusCode::BAD_REQUEST),
        (
            "flow and pools",
            json!({ "flow": "support", "pools": [{ "pool": "acct" }] }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        ("unknown field", json!({ "flow": "support", "colour": "red" }).to_string(), StatusCode::BAD_REQUEST),
        (
            "pool twice",
            json!({ "pools": [{ "pool": "acct" }, { "pool": "acct" }], "class": "inbound" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        ("meta not an object", json!({ "flow": "support", "meta": 3 }).to_string(), StatusCode::BAD_REQUEST),
        ("zero ttl", json!({ "flow": "support", "ttl_ms": 0 }).to_string(), StatusCode::BAD_REQUEST),
        ("empty body", String::new(), StatusCode::BAD_REQUEST),
        (
            "oversized body",
            format!("{{\"flow\":\"support\",\"meta\":{{\"x\":\"{}\"}}}}", "a".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, want) in cases {
        let (st, v) = s.post_raw("/v1/acquire", body).await;
        assert_eq!(st, want, "{what}: {v}");
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{what}: {v}");
    }
    let (st, v) = s.put("/v1/pools/acct", json!({ "limit": -1 })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.get("/v1/nothing-here").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
    let (st, _) = s.post("/v1/leases/L1/renew", json!({ "ttl_ms": "soon" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.get("/v1/tickets/garbage").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(s.pool("acct").await, before, "nothing changed");
    assert_eq!(s.first_metric("callgate_events_total").await, events_before, "no event was recorded");
}

#[tokio::test]
async fn keys_and_roles_guard_the_api() {
    let toml = format!(
        "{THREE_SLOTS}\n[auth]\nkeys = [{{ name = \"ops\", token = \"admin-token\", role = \"admin\" }}, {{ name = \"app\", token = \"client-token\", role = \"client\" }}]\n"
    );
    let s = TestServer::start(&toml).await;
    let (st, v) = s.acquire(json!({ "flow": "support" })).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let s = s.with_token("wrong-token!");
    assert_eq!(s.acquire(json!({ "flow": "support" })).await.0, StatusCode::UNAUTHORIZED);
    let s = s.with_token("client-token");
    assert_eq!(s.used("acct").await, 0, "refused callers change nothing");
    assert_eq!(s.acquire(json!({ "flow": "support" })).await.0, StatusCode::OK);
    let (st, v) = s.put("/v1/pools/acct", json!({ "limit": 5 })).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let s = s.with_token("admin-token");
    let (st, v) = s.put("/v1/pools/acct", json!({ "limit": 5 })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["limit"], 5);
}

#[tokio::test]
async fn a_public_address_without_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = callgate_server::ServeOptions {
        config: support::config(THREE_SLOTS),
        config_path: None,
        listen: Some("0.0.0.0:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let err = callgate_server::Server::start(opts).await.unwrap_err();
    assert!(err.to_string().contains("without auth keys"), "{err}");
}

#[tokio::test]
async fn a_long_poll_returns_the_grant_when_a_slot_frees() {
    let s = TestServer::start(THREE_SLOTS).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(s.acquire(json!({ "flow": "support" })).await.1["lease"]["id"].as_str().unwrap().to_string());
    }
    // A slot frees once the request waits in line.
    let release = async {
        eventually("the request waits in line", secs(5), || async { s.pool("acct").await["waiting"] == 1 }).await;
        s.delete(&format!("/v1/leases/{}", held[0])).await
    };
    let ((st, v), _) =
        tokio::join!(s.acquire(json!({ "flow": "support", "key": "patient", "wait_ms": 10_000 })), release);
    assert_eq!(st, StatusCode::OK, "granted while the request waited: {v}");
    assert_eq!(v["lease"]["key"], "patient");
    // A short wait that nobody ends answers `queued` with the current position.
    let (st, v) = s.acquire(json!({ "flow": "support", "wait_ms": 100 })).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["ticket"]["position"], 1);
}

#[tokio::test]
async fn leases_expire_and_tickets_time_out_without_any_request() {
    let s = TestServer::start(THREE_SLOTS).await;
    s.acquire(json!({ "flow": "support", "ttl_ms": 150 })).await;
    s.acquire(json!({ "flow": "support" })).await;
    s.acquire(json!({ "flow": "support" })).await;
    let (_, q) = s.acquire(json!({ "flow": "support", "max_wait_ms": 60_000, "ttl_ms": 100_000 })).await;
    let (_, q2) = s.acquire(json!({ "flow": "support", "max_wait_ms": 100 })).await;
    // The first lease expires; the first ticket gets its slot; the second times out.
    let t1 = q["ticket"]["id"].as_str().unwrap().to_string();
    let t2 = q2["ticket"]["id"].as_str().unwrap().to_string();
    assert!(
        holds_within(secs(5), || async { s.get(&format!("/v1/tickets/{t2}")).await.1["state"] == "timed_out" }).await,
        "the second ticket times out on its own"
    );
    let (_, v) = s.get(&format!("/v1/tickets/{t2}")).await;
    assert_eq!(v["overflow"]["action"], "voicemail", "{v}");
    assert!(
        holds_within(secs(5), || async { s.get(&format!("/v1/tickets/{t1}")).await.1["state"] == "granted" }).await
    );
    assert_eq!(s.used("acct").await, 3);
    assert_eq!(s.pool("acct").await["waiting"], 0);
}

#[tokio::test]
async fn cancel_and_renew() {
    let s = TestServer::start(THREE_SLOTS).await;
    let (_, a) = s.acquire(json!({ "flow": "support", "ttl_ms": 1000 })).await;
    for _ in 0..2 {
        s.acquire(json!({ "flow": "support" })).await;
    }
    let (_, q) = s.acquire(json!({ "flow": "support" })).await;
    let t = q["ticket"]["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/v1/tickets/{t}")).await.1, json!({ "cancelled": true }));
    assert_eq!(s.delete(&format!("/v1/tickets/{t}")).await.1, json!({ "cancelled": false }));
    assert_eq!(s.get(&format!("/v1/tickets/{t}")).await.1["state"], "cancelled");
    assert_eq!(s.pool("acct").await["waiting"], 0);

    let id = a["lease"]["id"].as_str().unwrap();
    let old = a["lease"]["expires_at_ms"].as_u64().unwrap();
    let (st, r) = s.post(&format!("/v1/leases/{id}/renew"), json!({ "ttl_ms": 3_600_000 })).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(r["lease"]["expires_at_ms"].as_u64().unwrap() > old + 3_000_000);
    let (st, _) = s.post_raw(&format!("/v1/leases/{id}/renew"), "").await;
    assert_eq!(st, StatusCode::OK, "a renewal without a body keeps the lease's TTL");
    s.delete(&format!("/v1/leases/{id}")).await;
    let (st, v) = s.post(&format!("/v1/leases/{id}/renew"), json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn a_restart_restores_leases_tickets_and_limits() {
    let s = TestServer::start(THREE_SLOTS).await;
    let mut leases = Vec::new();
    for i in 0..3 {
        let (_, v) = s.acquire(json!({ "flow": "support", "key": format!("c{i}"), "meta": { "caller": i } })).await;
        leases.push(v["lease"].clone());
    }
    let (_, q1) = s.acquire(json!({ "flow": "support", "key": "w1" })).await;
    let (_, q2) = s.acquire(json!({ "flow": "support", "key": "w2" })).await;
    let s = s.restart().await;
    let live = s.get("/v1/leases?pool=acct").await.1["leases"].clone();
    assert_eq!(live.as_array().unwrap(), &leases, "every lease back, with its expiry and metadata");
    assert_eq!(s.pool("acct").await["waiting"], 2);
    let (_, t2) = s.get(&format!("/v1/tickets/{}", q2["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!(t2["position"], 2, "the line keeps its order");
    assert_eq!(t2["deadline_ms"], q2["ticket"]["deadline_ms"]);
    // A new id never collides with an old one.
    s.delete("/v1/leases?key=c0").await;
    let (_, t1) = s.get(&format!("/v1/tickets/{}", q1["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!(t1["state"], "granted");
    let new_id = t1["lease"]["id"].as_str().unwrap();
    assert!(leases.iter().all(|l| l["id"] != new_id));

    let (st, _) = s.put("/v1/pools/acct", json!({ "limit": 1 })).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.used("acct").await, 3, "lowering the limit revokes nothing");
    let s = s.restart().await;
    assert_eq!(s.pool("acct").await["limit"], 1, "a runtime limit change survives a restart");
    let (st, _) = s.put("/v1/pools/acct", json!({ "limit": 6 })).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.pool("acct").await["waiting"], 0, "raising it grants who waits");
}

#[tokio::test]
async fn events_stream_every_decision() {
    use futures_util::StreamExt;
    let s = TestServer::start(THREE_SLOTS).await;
    let resp = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    s.acquire(json!({ "flow": "support", "key": "watched" })).await;
    s.acquire(json!({ "flow": "campaign" })).await;
    s.acquire(json!({ "flow": "campaign" })).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(seen.contains("\"granted\"") && seen.contains("\"rejected\"")) {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("events arrive").unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first: Value =
        serde_json::from_str(seen.lines().find(|l| l.starts_with("data:")).unwrap()[5..].trim()).unwrap();
    assert_eq!(first["type"], "granted");
    assert_eq!(first["lease"]["key"], "watched");
}

#[tokio::test]
async fn metrics_name_pools_decisions_and_waits() {
    let s = TestServer::start(THREE_SLOTS).await;
    s.acquire(json!({ "flow": "support" })).await;
    let (st, _) = s.get("/healthz").await;
    assert_eq!(st, StatusCode::OK);
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    for needle in [
        "callgate_pool_limit{pool=\"acct\"} 3",
        "callgate_pool_cap{pool=\"acct\"} 3",
        "callgate_pool_used{pool=\"acct\"} 1",
        "callgate_pool_waiting{pool=\"acct\"} 0",
        "callgate_decisions_total{pool=\"acct\",class=\"inbound\",outcome=\"granted\"} 1",
        "# TYPE callgate_wait_seconds histogram",
        "callgate_wait_seconds_bucket{pool=\"acct\",class=\"inbound\",le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

/// THREE_SLOTS and a conference flow that needs all three lines at once.
fn with_conference() -> String {
    format!(
        "{THREE_SLOTS}
[[flows]]
name = \"conference\"
pools = [{{ pool = \"acct\", units = 3 }}]
class = \"inbound\"
queue = {{ max_wait = \"60s\" }}
overflow = {{ action = \"voicemail\", message = \"Please leave a message.\" }}
"
    )
}

#[tokio::test]
async fn a_request_that_can_never_fit_is_refused_at_once_with_409_and_never_queued() {
    let s = TestServer::start(THREE_SLOTS).await;
    // Outbound can never have more than 2 of the 3 lines (one is held for inbound).
    let body = json!({ "pools": [{ "pool": "acct", "units": 3 }], "class": "outbound", "max_wait_ms": 60_000 });
    let resp = s.client.post(format!("{}/v1/acquire", s.base)).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(resp.headers().get("retry-after").is_none(), "retrying cannot help");
    let v: Value = resp.json().await.unwrap();
    assert_eq!((&v["decision"], &v["reason"]), (&json!("rejected"), &json!("never_fits")), "{v}");
    assert_eq!(s.pool("acct").await["waiting"], 0, "never queued");
    // So it holds up nobody: the next outbound call gets a line at once.
    let (st, v) = s.acquire(json!({ "flow": "campaign" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let name = "callgate_rejections_total{pool=\"acct\",class=\"outbound\",reason=\"never_fits\"}";
    assert!(holds_within(secs(5), || async { s.first_metric(name).await == 1.0 }).await, "counted as never_fits");
}

#[tokio::test]
async fn lowering_a_limit_ends_the_waiting_calls_that_can_no_longer_fit_and_the_line_moves_on() {
    let s = TestServer::start(&with_conference()).await;
    s.acquire(json!({ "flow": "support", "key": "talking" })).await;
    // The conference waits for all three lines; a support caller waits behind it.
    let (st, big) = s.acquire(json!({ "flow": "conference", "key": "conf" })).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{big}");
    let (_, small) = s.acquire(json!({ "flow": "support", "key": "next" })).await;
    assert_eq!(small["ticket"]["position"], 2);
    let big_id = big["ticket"]["id"].as_str().unwrap().to_string();
    // A caller long-polls on the conference's ticket (a repeated key waits on it).
    let waiter = s.acquire(json!({ "flow": "conference", "key": "conf", "wait_ms": 30_000 }));
    let lower = async {
        assert!(holds_within(secs(5), || async { s.pool("acct").await["waiting"] == 2 }).await);
        s.put("/v1/pools/acct", json!({ "limit": 2 })).await
    };
    let ((st, answer), (put_status, _)) = tokio::join!(waiter, lower);
    assert_eq!(put_status, StatusCode::OK);
    assert_eq!(st, StatusCode::CONFLICT, "the waiter learns it at once: {answer}");
    assert_eq!(answer["reason"], "never_fits");
    assert_eq!(answer["overflow"]["action"], "voicemail");
    let (_, t) = s.get(&format!("/v1/tickets/{big_id}")).await;
    assert_eq!(t["state"], "never_fits", "{t}");
    assert_eq!(t["overflow"]["action"], "voicemail");
    let (_, t) = s.get(&format!("/v1/tickets/{}", small["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!(t["state"], "granted", "the caller behind it gets the free line: {t}");
    let name = "callgate_tickets_ended_total{pool=\"acct\",class=\"inbound\",outcome=\"never_fits\"}";
    assert!(holds_within(secs(5), || async { s.first_metric(name).await == 1.0 }).await, "counted as never_fits");
    // The end is in the journal: after a restart nothing waits and the conference is
    // refused at once, as the journal's lower limit says.
    let s = s.restart().await;
    assert_eq!(s.pool("acct").await["waiting"], 0);
    let (st, v) = s.acquire(json!({ "flow": "conference", "key": "conf-2" })).await;
    assert_eq!((st, &v["reason"]), (StatusCode::CONFLICT, &json!("never_fits")), "{v}");
}

#[tokio::test]
async fn a_stored_ticket_that_no_longer_fits_the_configured_limit_ends_at_start_and_stays_ended() {
    let mut s = TestServer::start(THREE_SLOTS).await;
    s.acquire(json!({ "flow": "support", "key": "talking" })).await;
    let body = json!({ "pools": [{ "pool": "acct", "units": 3 }], "class": "inbound", "max_wait_ms": 3_600_000 });
    let (st, big) = s.acquire(body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{big}");
    let (_, next) = s.acquire(json!({ "flow": "support", "key": "next" })).await;
    assert_eq!(next["ticket"]["position"], 2);
    // The operator edits the file down to two lines while the server is down.
    s.toml = THREE_SLOTS.replace("limit = 3", "limit = 2");
    let s = s.restart().await;
    let (_, t) = s.get(&format!("/v1/tickets/{}", big["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!(t["state"], "never_fits", "{t}");
    let (_, t) = s.get(&format!("/v1/tickets/{}", next["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!(t["state"], "granted", "the caller behind it is no longer held up: {t}");
    // Its end is in the journal: it does not come back.
    let s = s.restart().await;
    assert_eq!((s.pool("acct").await["waiting"].as_u64(), s.used("acct").await), (Some(0), 2));
}

/// An in-process holder's lease (the dialer's, the demo's) is held by a guard: released,
/// it is gone when `release` returns; handed off, it stays; dropped with its task (an
/// abort, an early return), it goes back.
#[tokio::test]
async fn a_lease_guard_gives_the_lease_back_unless_it_was_handed_off() {
    use callgate_core::LeaseId;
    use callgate_server::governor::LeaseGuard;
    let s = TestServer::start(THREE_SLOTS).await;
    let governor = s.server().app.governor.clone();
    let mut ids: Vec<LeaseId> = Vec::new();
    for i in 0..3 {
        let (st, v) = s.acquire(json!({ "flow": "support", "key": format!("g-{i}") })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        ids.push(v["lease"]["id"].as_str().unwrap().parse().unwrap());
    }
    assert_eq!(s.used("acct").await, 3);

    let released = LeaseGuard::new(governor.clone(), ids[0]);
    assert!(released.release().await.unwrap());
    assert_eq!(s.used("acct").await, 2, "released before `release` returned");

    let handed = LeaseGuard::new(governor.clone(), ids[1]).disarm();
    assert_eq!(handed, ids[1]);

    let held = LeaseGuard::new(governor.clone(), ids[2]);
    let holder = tokio::spawn(async move {
        let _line = held;
        std::future::pending::<()>().await
    });
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    assert!(
        holds_within(secs(5), || async { s.used("acct").await == 1 }).await,
        "the aborted holder's lease went back"
    );
    let (_, leases) = s.get("/v1/leases").await;
    let keys: Vec<&str> = leases["leases"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["g-1"], "the handed-off lease is still held");
}
