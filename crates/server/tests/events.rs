//! `/v1/events` as a client that disconnects and comes back sees it: every event has an
//! `id:`, and `Last-Event-ID` resumes after it from the backlog, or says what was missed.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::TestServer;

/// Ten slots and a backlog of four events.
const SMALL_BACKLOG: &str = r#"
[server]
events_backlog = 4

[[pools]]
name = "acct"
limit = 10

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
"#;

/// One server-sent event: its `event:` name (none for a plain event), `id:` and data.
#[derive(Debug)]
struct Sse {
    event: Option<String>,
    id: Option<u64>,
    data: Value,
}

/// A connection to `/v1/events` and what has arrived on it that is not yet read.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(s: &TestServer, last_event_id: Option<&str>) -> Stream {
        let mut req = s.client.get(format!("{}/v1/events", s.base));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Stream { resp, buf: String::new() }
    }

    /// The next event (keep-alive comments skipped); fails after 10 s of silence.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut sse = Sse { event: None, id: None, data: Value::Null };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        sse.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        sse.id = Some(v.trim().parse().expect("a numeric id"));
                    } else if let Some(v) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(v.trim()).expect("JSON data");
                    }
                }
                if sse.id.is_some() || sse.event.is_some() {
                    return sse;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event arrives")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn take(s: &TestServer, key: &str) {
    let (st, v) = s.acquire(json!({ "flow": "support", "key": key })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_client_that_reconnects_gets_exactly_the_events_it_missed_in_order() {
    let s = TestServer::start(SMALL_BACKLOG).await;
    let mut first = Stream::open(&s, None).await;
    take(&s, "a").await;
    take(&s, "b").await;
    let a = first.next().await;
    let b = first.next().await;
    assert_eq!((a.data["lease"]["key"].as_str(), b.data["lease"]["key"].as_str()), (Some("a"), Some("b")));
    let (a_id, b_id) = (a.id.expect("an id"), b.id.expect("an id"));
    assert!(b_id > a_id, "ids grow: {a_id} then {b_id}");
    drop(first);

    // Gone for three decisions.
    for key in ["c", "d", "e"] {
        take(&s, key).await;
    }
    let mut again = Stream::open(&s, Some(&b_id.to_string())).await;
    let mut keys = Vec::new();
    let mut last = b_id;
    for _ in 0..3 {
        let e = again.next().await;
        assert_eq!(e.event, None, "{e:?}");
        let id = e.id.expect("an id");
        assert!(id > last, "in order: {id} after {last}");
        last = id;
        keys.push(e.data["lease"]["key"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(keys, ["c", "d", "e"], "exactly the missed events, in order");
    // And then the live ones, not the missed ones again.
    take(&s, "f").await;
    let f = again.next().await;
    assert_eq!(f.data["lease"]["key"], "f");
    assert_eq!(f.id, Some(last + 1));
}

#[tokio::test]
async fn a_client_further_behind_than_the_backlog_is_told_it_missed_events() {
    let s = TestServer::start(SMALL_BACKLOG).await;
    let mut first = Stream::open(&s, None).await;
    take(&s, "a").await;
    let a = first.next().await;
    drop(first);
    // Five more events: the backlog of four no longer holds the one after `a`.
    for key in ["b", "c", "d", "e", "f"] {
        take(&s, key).await;
    }
    let a_id = a.id.expect("an id");
    let mut again = Stream::open(&s, Some(&a_id.to_string())).await;
    let missed = again.next().await;
    assert_eq!(missed.event.as_deref(), Some("missed"), "{missed:?}");
    assert_eq!(missed.data["last_event_id"], a_id);
    // Its id is the newest event's, so the client's next reconnect resumes from here.
    assert_eq!(missed.id, Some(a_id + 5));
    take(&s, "g").await;
    let g = again.next().await;
    assert_eq!((g.event, g.data["lease"]["key"].as_str()), (None, Some("g")), "then live events");

    // An id from before this server started is answered the same way, never with silence.
    let mut stale = Stream::open(&s, Some("1")).await;
    assert_eq!(stale.next().await.event.as_deref(), Some("missed"));
}

#[tokio::test]
async fn ids_of_a_restarted_server_are_above_those_of_the_one_before() {
    let s = TestServer::start(SMALL_BACKLOG).await;
    let mut stream = Stream::open(&s, None).await;
    take(&s, "a").await;
    let before = stream.next().await.id.expect("an id");
    drop(stream);
    let s = s.restart().await;
    let mut stream = Stream::open(&s, Some(&before.to_string())).await;
    // The restarted server does not know that id: the client reloads, then follows.
    assert_eq!(stream.next().await.event.as_deref(), Some("missed"));
    take(&s, "b").await;
    let after = stream.next().await.id.expect("an id");
    assert!(after > before, "{after} > {before}");
}

#[tokio::test]
async fn a_last_event_id_that_is_not_ours_is_refused() {
    let s = TestServer::start(SMALL_BACKLOG).await;
    let (st, v) = s.send(s.client.get(format!("{}/v1/events", s.base)).header("Last-Event-ID", "yesterday")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Last-Event-ID"), "{v}");
}
