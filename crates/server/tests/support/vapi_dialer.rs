//! A fake Vapi account for outbound calls (shared/providers/vapi.md): `POST /call` places
//! a call (refused over the account's concurrency limit, as Vapi does), `GET /call/{id}`
//! and `GET /call` read calls. Each call rings briefly and ends after a scripted outcome.
//!
//! The fake counts what is live on the account, outbound and inbound (tests register
//! their simulated inbound calls), and keeps the highest counts it saw: the provider's own
//! view of concurrency. A call is counted from the moment the fake accepts it until the
//! moment it ends, before callgate hears of the end, so the fake never counts less than
//! callgate should.
//!
//! The fake is as strict as Vapi: a wrong key is a 401, a body that is not JSON a 400, and
//! every body is checked against the official SDK's `CreateCallDTO` (see [`strict`]): an
//! unknown property, a wrong type or a `customer.name` over 40 characters is Vapi's 400
//! `{"message": ["property X should not exist"], "error": "Bad Request", "statusCode": 400}`.
//! Every body it took or refused is kept (`bodies`), for a second check with the SDK itself.
//!
//! Included with `#[path]` by the server's campaign tests and by the CLI's SIGKILL test,
//! so it depends on nothing but axum, serde_json and tokio.
#![allow(dead_code)]

// Its own copy: the CLI's tests include this file without the rest of `support`.
#[allow(clippy::duplicate_mod)]
#[path = "strict.rs"]
pub mod strict;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a call to `phone` on its `n`-th attempt goes: `None` = answered and talked for
/// the duration; `Some(reason)` = ended with that `endedReason` without talking.
pub type Script = dyn Fn(&str, u32) -> (Option<&'static str>, Duration) + Send + Sync;

/// Called with `(call id, callgate_attempt, call object)` when a call ends: a test hands
/// the outcome to callgate the way a webhook would.
pub type Hook = dyn Fn(String, Option<u64>, Value) + Send + Sync;

/// One `POST /call` the fake accepted.
#[derive(Clone, Debug)]
pub struct Placed {
    pub attempt: Option<u64>,
    pub phone: String,
    pub call_id: String,
}

#[derive(Default)]
pub struct Counts {
    pub calls: HashMap<String, Value>,
    pub order: Vec<String>,
    pub live_out: u32,
    pub live_in: u32,
    pub max_out: u32,
    pub max_total: u32,
    pub placed: Vec<Placed>,
    pub per_phone: HashMap<String, u32>,
    pub refusals: u32,
    /// Refuse this many of the next calls, whatever the count.
    pub refuse_next: u32,
    /// Refuse the newer way: `201` with `subscriptionLimits.concurrencyBlocked`.
    pub refuse_blocked_style: bool,
    /// Refuse every call (an account that is down).
    pub refuse_all: bool,
    pub next: u64,
    /// `GET /call` listings served (reconciliation's).
    pub lists: u32,
    /// While set, every `POST /call` answers this (status, body): an account error such
    /// as a revoked key (401) or no credit (402), until the test clears it.
    pub account_error: Option<(u16, Value)>,
    /// Every `POST /call` body received, in order.
    pub bodies: Vec<Value>,
    /// `POST /call` requests refused as malformed (bad JSON, unknown property, …).
    pub malformed: Vec<String>,
    /// While set, a call is taken (and counted) at once but the answer to `POST /call`
    /// comes this much later: a callgate stopped meanwhile never learns the call id.
    pub hold: Option<Duration>,
}

pub struct Account {
    pub counts: Mutex<Counts>,
    pub limit: u32,
    pub api_key: String,
    pub script: Box<Script>,
    pub hook: Mutex<Option<Arc<Hook>>>,
}

/// A running fake account.
#[derive(Clone)]
pub struct FakeVapi {
    pub url: String,
    pub account: Arc<Account>,
}

impl FakeVapi {
    /// A fake account of `limit` concurrent calls whose calls go as `script` says.
    pub async fn start(
        limit: u32,
        script: impl Fn(&str, u32) -> (Option<&'static str>, Duration) + Send + Sync + 'static,
    ) -> FakeVapi {
        let account = Arc::new(Account {
            counts: Mutex::new(Counts::default()),
            limit,
            api_key: "test-key".into(),
            script: Box::new(script),
            hook: Mutex::new(None),
        });
        let router = Router::new()
            .route("/call", post(place).get(list))
            .route("/call/{id}", get(one))
            .with_state(account.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeVapi { url: format!("http://{addr}"), account }
    }

    pub fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.account.counts.lock().unwrap()
    }

    pub fn set_hook(&self, hook: Arc<Hook>) {
        *self.account.hook.lock().unwrap() = Some(hook);
    }

    /// An inbound call starts on the account (`false`: it would exceed the limit, which
    /// callgate must have prevented).
    pub fn inbound_start(&self) -> bool {
        let mut c = self.counts();
        c.live_in += 1;
        c.max_total = c.max_total.max(c.live_in + c.live_out);
        c.live_in + c.live_out <= self.account.limit
    }

    pub fn inbound_end(&self) {
        let mut c = self.counts();
        c.live_in = c.live_in.saturating_sub(1);
    }
}

fn authorized(account: &Account, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", account.api_key))
}

fn iso(ms: u64) -> String {
    // Good enough for the fake: whole seconds and milliseconds since an arbitrary day.
    let secs = ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("2026-01-15T{h:02}:{m:02}:{s:02}.{:03}Z", ms % 1000)
}

/// Vapi's answer to a request its validation refuses.
fn bad_request(account: &Account, messages: Vec<String>) -> Response {
    account.counts.lock().unwrap().malformed.extend(messages.iter().cloned());
    (StatusCode::BAD_REQUEST, Json(json!({ "message": messages, "error": "Bad Request", "statusCode": 400 })))
        .into_response()
}

async fn place(State(account): State<Arc<Account>>, headers: HeaderMap, raw: axum::body::Bytes) -> Response {
    if !authorized(&account, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
                "error": "Unauthorized", "statusCode": 401 })),
        )
            .into_response();
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return bad_request(&account, vec!["Content-Type must be application/json".into()]);
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return bad_request(&account, vec![format!("Unexpected token in JSON: {e}")]),
    };
    account.counts.lock().unwrap().bodies.push(body.clone());
    let problems = strict::vapi_create_call(&body);
    if !problems.is_empty() {
        return bad_request(&account, problems);
    }
    if let Some((status, err)) = account.counts.lock().unwrap().account_error.clone() {
        return (StatusCode::from_u16(status).unwrap(), Json(err)).into_response();
    }
    let phone = body["customer"]["number"].as_str().unwrap_or("").to_string();
    if !phone.starts_with('+') || phone.len() < 9 || !phone[1..].bytes().all(|b| b.is_ascii_digit()) {
        return bad_request(
            &account,
            vec!["customer.number must be a valid phone number in the E.164 format. Hot tip, you may be missing the country code (Eg. US: +1).".into()],
        );
    }
    let attempt = body["assistantOverrides"]["metadata"]["callgate_attempt"].as_u64();
    let (id, reason, talk) = {
        let mut c = account.counts.lock().unwrap();
        let over = c.live_in + c.live_out >= account.limit;
        if c.refuse_all || c.refuse_next > 0 || over {
            c.refuse_next = c.refuse_next.saturating_sub(1);
            c.refusals += 1;
            if c.refuse_blocked_style {
                c.next += 1;
                let id = format!("blocked-{}", c.next);
                return (
                    StatusCode::CREATED,
                    Json(json!({ "id": id, "status": "ended",
                        "endedReason": "call.start.error-subscription-concurrency-limit-reached",
                        "subscriptionLimits": { "concurrencyBlocked": true, "concurrencyLimit": account.limit, "remainingConcurrentCalls": 0 } })),
                )
                    .into_response();
            }
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": "Over Concurrency Limit" }))).into_response();
        }
        c.next += 1;
        let id = format!("call-{}", c.next);
        c.live_out += 1;
        c.max_out = c.max_out.max(c.live_out);
        c.max_total = c.max_total.max(c.live_out + c.live_in);
        let n = {
            let n = c.per_phone.entry(phone.clone()).or_default();
            *n += 1;
            *n
        };
        let (reason, talk) = (account.script)(&phone, n);
        let now = c.next * 10;
        // The `Call` echoes the overrides (where the dialer's correlation data is).
        let call = json!({ "id": id, "status": "queued", "createdAt": iso(now), "customer": body["customer"].clone(),
            "assistantId": body["assistantId"].clone(), "phoneNumberId": body["phoneNumberId"].clone(),
            "assistantOverrides": body["assistantOverrides"].clone() });
        c.calls.insert(id.clone(), call);
        c.order.push(id.clone());
        c.placed.push(Placed { attempt, phone, call_id: id.clone() });
        (id, reason, talk)
    };
    let hold = account.counts.lock().unwrap().hold;
    let acc = account.clone();
    let call_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if reason.is_none() {
            if let Some(call) = acc.counts.lock().unwrap().calls.get_mut(&call_id) {
                call["status"] = json!("in-progress");
            }
        }
        tokio::time::sleep(talk).await;
        let ended = {
            let mut c = acc.counts.lock().unwrap();
            c.live_out = c.live_out.saturating_sub(1);
            let call = c.calls.get_mut(&call_id).unwrap();
            call["status"] = json!("ended");
            match reason {
                None => {
                    call["endedReason"] = json!("customer-ended-call");
                    call["startedAt"] = json!("2026-01-15T12:00:00.000Z");
                    let ms = talk.as_millis().max(1) as u64;
                    call["endedAt"] = json!(format!("2026-01-15T12:00:{:02}.{:03}Z", (ms / 1000) % 60, ms % 1000));
                    call["cost"] = json!(0.01);
                }
                Some(r) => call["endedReason"] = json!(r),
            }
            call.clone()
        };
        let hook = acc.hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(call_id, attempt, ended);
        }
    });
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "status": "queued", "customer": body["customer"].clone(),
            "assistantOverrides": body["assistantOverrides"].clone(),
            "subscriptionLimits": { "concurrencyBlocked": false, "concurrencyLimit": account.limit } })),
    )
        .into_response()
}

async fn one(State(account): State<Arc<Account>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&account, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match account.counts.lock().unwrap().calls.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "message": "Not Found" }))).into_response(),
    }
}

async fn list(State(account): State<Arc<Account>>, headers: HeaderMap) -> Response {
    if !authorized(&account, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // The live calls and the 100 most recent others: a long test places thousands of
    // calls, and listing them all on every poll would make the fake the bottleneck.
    let mut c = account.counts.lock().unwrap();
    c.lists += 1;
    let mut ended = 0;
    let calls: Vec<Value> = c
        .order
        .iter()
        .rev()
        .filter_map(|id| c.calls.get(id))
        .filter(|call| {
            if call["status"] != "ended" {
                return true;
            }
            ended += 1;
            ended <= 100
        })
        .cloned()
        .collect();
    Json(Value::Array(calls)).into_response()
}

/// Configuration for an account on the fake at `url`: the pool `vapi` of 10 lines with 3
/// held back for inbound, and the provider `vapi-main` (key `test-key`, webhook secret
/// `test-secret`) listing its calls every `reconcile_every`. Flows and campaigns follow.
pub fn vapi_account(url: &str, reconcile_every: &str) -> String {
    format!(
        r#"
[[pools]]
name = "vapi"
limit = 10
reserve = {{ inbound = 3 }}

[[providers]]
name = "vapi-main"
kind = "vapi"
base_url = "{url}"
api_key = "test-key"
webhook_secret = "test-secret"
pool = "vapi"
reconcile_every = "{reconcile_every}"
"#
    )
}
