//! A fake of Vapi's `GET /call` as strict as the documented API (shared/providers/vapi.md):
//! bearer auth; only documented query parameters (anything else is a 400, as Vapi's
//! whitelist validation answers); `limit` 1 to 1000, default 100; `createdAtGt/Ge/Lt/Le`
//! filters applied exactly; a bare JSON array in an order the test chooses, since Vapi
//! documents none.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The order the fake lists calls in.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    NewestFirst,
    OldestFirst,
    /// A fixed pseudo-random permutation per request (seeded).
    Shuffled(u64),
}

pub struct CallList {
    pub url: String,
    state: Arc<ListState>,
}

struct ListState {
    key: String,
    /// (created at, Unix ms; the call object)
    calls: Mutex<Vec<(u64, Value)>>,
    order: Mutex<Order>,
    requests: Mutex<Vec<HashMap<String, String>>>,
}

const DOCUMENTED: &[&str] = &[
    "limit",
    "createdAtGt",
    "createdAtGe",
    "createdAtLt",
    "createdAtLe",
    "updatedAtGt",
    "updatedAtGe",
    "updatedAtLt",
    "updatedAtLe",
    "id",
    "assistantId",
    "phoneNumberId",
];

fn parse_time(s: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

fn bad(message: String) -> axum::response::Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": [message], "error": "Bad Request", "statusCode": 400 })))
        .into_response()
}

/// A small deterministic generator (xorshift), so a shuffle is the same every run.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

async fn list(
    State(s): State<Arc<ListState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    s.requests.lock().unwrap().push(q.clone());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", s.key)) {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "message": "Invalid Key" }))).into_response();
    }
    if let Some(k) = q.keys().find(|k| !DOCUMENTED.contains(&k.as_str())) {
        return bad(format!("property {k} should not exist"));
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad("limit must not be greater than 1000".into()),
    };
    let mut filters: Vec<(&str, u64)> = Vec::new();
    for f in ["createdAtGt", "createdAtGe", "createdAtLt", "createdAtLe"] {
        if let Some(v) = q.get(f) {
            match parse_time(v) {
                Some(ms) => filters.push((f, ms)),
                None => return bad(format!("{f} must be a valid ISO 8601 date string")),
            }
        }
    }
    let mut calls: Vec<(u64, Value)> = s
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| {
            filters.iter().all(|(f, ms)| match *f {
                "createdAtGt" => at > ms,
                "createdAtGe" => at >= ms,
                "createdAtLt" => at < ms,
                _ => at <= ms,
            })
        })
        .cloned()
        .collect();
    match *s.order.lock().unwrap() {
        // Stable sorts: calls that share a createdAt keep whatever order they had.
        Order::NewestFirst => calls.sort_by_key(|c| std::cmp::Reverse(c.0)),
        Order::OldestFirst => calls.sort_by_key(|c| c.0),
        Order::Shuffled(seed) => shuffle(&mut calls, seed ^ (s.requests.lock().unwrap().len() as u64)),
    }
    calls.truncate(limit);
    Json(Value::Array(calls.into_iter().map(|(_, c)| c).collect())).into_response()
}

impl CallList {
    pub async fn start(key: &str) -> CallList {
        let state = Arc::new(ListState {
            key: key.to_owned(),
            calls: Mutex::new(Vec::new()),
            order: Mutex::new(Order::NewestFirst),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new().route("/call", get(list)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        CallList { url: format!("http://{addr}"), state }
    }

    /// Replaces the calls: `(id, createdAt in Unix ms, status)`.
    pub fn set(&self, calls: &[(String, u64, &str)]) {
        let objects = calls
            .iter()
            .map(|(id, at, status)| {
                let created = chrono::DateTime::from_timestamp_millis(*at as i64)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                (*at, json!({ "id": id, "status": status, "createdAt": created, "type": "inboundPhoneCall" }))
            })
            .collect();
        *self.state.calls.lock().unwrap() = objects;
    }

    pub fn order(&self, order: Order) {
        *self.state.order.lock().unwrap() = order;
    }

    /// The query of every request so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }
}
