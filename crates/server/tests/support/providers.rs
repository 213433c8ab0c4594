//! Fake Vapi and Twilio APIs (small axum servers on port 0, written from
//! shared/providers/*.md), a Twilio "phone" that signs its webhooks like Twilio does, and
//! a TwiML reader.

use super::strict;
use super::TestServer;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One API request a fake saw: path, query, `Authorization` header.
pub type Seen = (String, HashMap<String, String>, Option<String>);

/// What a fake platform holds and saw.
#[derive(Default)]
pub struct FakeState {
    /// Vapi: call objects returned by `GET /call`. Twilio: call resources of
    /// `Calls.json`, filtered by their `status`.
    pub calls: Mutex<Vec<Value>>,
    /// Every request: (path, query, Authorization header).
    pub requests: Mutex<Vec<Seen>>,
    /// When set, every API request fails with this status.
    pub fail_with: Mutex<Option<u16>>,
    /// Twilio: the form of every `POST Calls.json` (a call placed), in order.
    pub placed: Mutex<Vec<HashMap<String, String>>>,
    /// Twilio: the same forms as sent (repeated names kept, in order), refused ones too.
    pub forms: Mutex<Vec<Vec<(String, String)>>>,
    /// Twilio: the auth token `POST Calls.json` must be signed with (basic auth, the
    /// account SID of the path as user).
    pub auth_token: Mutex<Option<String>>,
    /// Twilio: when set, the only `From` numbers the account owns or has verified (any
    /// other is refused with 21210, as Twilio does).
    pub owned_numbers: Mutex<Option<Vec<String>>>,
    /// Twilio: while set, every `POST Calls.json` answers this (status, body).
    pub account_error: Mutex<Option<(u16, Value)>>,
}

/// A running fake.
pub struct Fake {
    pub url: String,
    pub state: Arc<FakeState>,
}

impl Fake {
    pub fn set_calls(&self, calls: Vec<Value>) {
        *self.state.calls.lock().unwrap() = calls;
    }

    pub fn requests(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> Option<Seen> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// Twilio: the calls placed so far (their `POST Calls.json` forms).
    pub fn placed(&self) -> Vec<HashMap<String, String>> {
        self.state.placed.lock().unwrap().clone()
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn note(state: &FakeState, path: String, q: HashMap<String, String>, headers: &HeaderMap) -> Option<StatusCode> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    state.requests.lock().unwrap().push((path, q, auth));
    state.fail_with.lock().unwrap().map(|c| StatusCode::from_u16(c).unwrap())
}

/// Vapi: `GET /call` (bearer auth) returns every call object it holds.
pub async fn fake_vapi() -> Fake {
    let state = Arc::new(FakeState::default());
    let router = Router::new()
        .route(
            "/call",
            get(|State(s): State<Arc<FakeState>>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap| async move {
                if let Some(code) = note(&s, "/call".into(), q, &headers) {
                    return (code, Json(json!({ "error": "fake failure" }))).into_response();
                }
                Json(Value::Array(s.calls.lock().unwrap().clone())).into_response()
            }),
        )
        .with_state(state.clone());
    Fake { url: serve(router).await, state }
}

/// Twilio: `GET /2010-04-01/Accounts/{sid}/Calls.json?Status=…` (basic auth) returns the
/// calls with that status, one page; `POST` there places an outbound call (`CA-OUT-n`,
/// `queued`, kept among the calls with its form in `placed`); `GET …/Calls/{sid}.json`
/// reads one call.
///
/// `POST Calls.json` is as strict as Twilio's: basic auth with the token
/// `twilio-auth-token` (401, code 20003), a form body, only the parameters and values of
/// the official SDK's `CallList.create` (see [`strict`]), a `To` in E.164 (21211) and,
/// when `owned_numbers` is set, a `From` the account owns (21210).
pub async fn fake_twilio() -> Fake {
    let state = Arc::new(FakeState::default());
    *state.auth_token.lock().unwrap() = Some("twilio-auth-token".into());
    let router = Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Calls.json",
            get(
                |State(s): State<Arc<FakeState>>,
                 Path(sid): Path<String>,
                 Query(q): Query<HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    let status = q.get("Status").cloned();
                    if let Some(code) = note(&s, format!("/2010-04-01/Accounts/{sid}/Calls.json"), q, &headers) {
                        return (code, Json(json!({ "message": "fake failure" }))).into_response();
                    }
                    let calls: Vec<Value> = s
                        .calls
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|c| status.is_none() || c["status"].as_str() == status.as_deref())
                        .cloned()
                        .collect();
                    Json(json!({ "calls": calls, "next_page_uri": null, "page": 0 })).into_response()
                },
            )
            .post(|State(s): State<Arc<FakeState>>, Path(sid): Path<String>, headers: HeaderMap, body: String| async move {
                if let Some(code) = note(&s, format!("/2010-04-01/Accounts/{sid}/Calls.json"), HashMap::new(), &headers) {
                    return (code, Json(json!({ "message": "fake failure" }))).into_response();
                }
                let twilio_error = |status: u16, code: u32, message: String| {
                    let body = json!({ "code": code, "message": message, "status": status,
                        "more_info": format!("https://www.twilio.com/docs/errors/{code}") });
                    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
                };
                let token = s.auth_token.lock().unwrap().clone();
                if let Some(token) = token {
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
                    );
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                        return twilio_error(401, 20003, "Authenticate".into());
                    }
                }
                let form_type = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| {
                    t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
                });
                if !form_type {
                    return twilio_error(400, 20001, "Content-Type must be application/x-www-form-urlencoded".into());
                }
                let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                s.forms.lock().unwrap().push(pairs.clone());
                if let Some((code, message)) = strict::twilio_create_call(&pairs).into_iter().next() {
                    return twilio_error(400, code, message);
                }
                let error = s.account_error.lock().unwrap().clone();
                if let Some((status, body)) = error {
                    return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
                }
                let form: HashMap<String, String> = pairs.into_iter().collect();
                let owned = s.owned_numbers.lock().unwrap().clone();
                if owned.is_some_and(|o| !o.iter().any(|n| Some(n) == form.get("From"))) {
                    return twilio_error(
                        400,
                        21210,
                        format!("The source phone number provided, {}, is not yet verified for your account.", form["From"]),
                    );
                }
                let to = form.get("To").cloned().unwrap_or_default();
                if !to.starts_with('+') || to.len() < 9 || !to[1..].bytes().all(|b| b.is_ascii_digit()) {
                    return twilio_error(400, 21211, format!("Invalid 'To' Phone Number: {to}"));
                }
                // The sid is taken and the call recorded under one lock: two calls placed at
                // once get two sids, as Twilio's do (read and pushed apart, both were once
                // CA-OUT-1, and a status callback ended the wrong attempt).
                let mut placed = s.placed.lock().unwrap();
                let call_sid = format!("CA-OUT-{}", placed.len() + 1);
                let call = json!({ "sid": call_sid, "status": "queued", "direction": "outbound-api",
                    "to": form.get("To"), "from": form.get("From"), "parent_call_sid": null });
                s.calls.lock().unwrap().push(call.clone());
                placed.push(form);
                drop(placed);
                (StatusCode::CREATED, Json(call)).into_response()
            }),
        )
        .route(
            "/2010-04-01/Accounts/{sid}/Calls/{file}",
            get(|State(s): State<Arc<FakeState>>, Path((_, file)): Path<(String, String)>| async move {
                let sid = file.trim_end_matches(".json");
                match s.calls.lock().unwrap().iter().find(|c| c["sid"] == sid) {
                    Some(c) => Json(c.clone()).into_response(),
                    None => (StatusCode::NOT_FOUND, Json(json!({ "message": "not found" }))).into_response(),
                }
            }),
        )
        .with_state(state.clone());
    Fake { url: serve(router).await, state }
}

/// base64(HMAC-SHA1(token, url + sorted params, each distinct pair once)), computed here
/// independently of the server's code.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One TwiML element, read with a real XML parser.
#[derive(Clone, Debug)]
pub struct El {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub text: String,
    pub children: Vec<El>,
}

impl El {
    fn from(node: roxmltree::Node<'_, '_>) -> El {
        El {
            name: node.tag_name().name().to_owned(),
            attrs: node.attributes().map(|a| (a.name().to_owned(), a.value().to_owned())).collect(),
            text: node.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect(),
            children: node.children().filter(|c| c.is_element()).map(El::from).collect(),
        }
    }

    /// The names of the child elements (the verbs of a `<Response>`).
    pub fn verbs(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }

    /// The first element named `name`, at any depth.
    pub fn find(&self, name: &str) -> Option<&El> {
        self.children.iter().find_map(|c| if c.name == name { Some(c) } else { c.find(name) })
    }

    pub fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map(String::as_str).unwrap_or_else(|| panic!("<{}> has no `{name}`: {self:?}", self.name))
    }

    /// Every `<Say>` text, at any depth, joined.
    pub fn spoken(&self) -> String {
        let mut out = String::new();
        if self.name == "Say" {
            out.push_str(&self.text);
        }
        for c in &self.children {
            let s = c.spoken();
            if !s.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&s);
            }
        }
        out
    }
}

/// A TwiML answer: status 200, `Content-Type: text/xml`, a well-formed `<Response>`.
pub fn twiml(status: StatusCode, content_type: &str, body: &str) -> El {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(content_type.starts_with("text/xml"), "content type `{content_type}`");
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{body}"));
    let root = El::from(doc.root_element());
    assert_eq!(root.name, "Response", "{body}");
    root
}

/// Plays Twilio against a test server: signs each request over the public URL, sends it
/// to the server's real address.
pub struct Phone<'a> {
    pub server: &'a TestServer,
    pub public_url: &'a str,
    pub token: &'a str,
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn twiml(&self) -> El {
        twiml(self.status, &self.content_type, &self.body)
    }
}

impl Phone<'_> {
    /// POSTs `params` to `url` (a full public URL, or a path under it), signed.
    pub async fn post(&self, url: &str, params: &[(&str, &str)]) -> Reply {
        let url = if url.starts_with("http") { url.to_owned() } else { format!("{}{url}", self.public_url) };
        let sig = twilio_signature(self.token, &url, params);
        self.post_signed(&url, params, Some(&sig)).await
    }

    /// POSTs with the given signature header (or none).
    pub async fn post_signed(&self, url: &str, params: &[(&str, &str)], sig: Option<&str>) -> Reply {
        let path =
            url.strip_prefix(self.public_url).unwrap_or_else(|| panic!("`{url}` is not under {}", self.public_url));
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        self.raw(path, body.into_bytes(), sig).await
    }

    /// POSTs a raw body to a path.
    pub async fn raw(&self, path: &str, body: Vec<u8>, sig: Option<&str>) -> Reply {
        let mut req = self
            .server
            .client
            .post(format!("{}{path}", self.server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("X-Twilio-Signature", sig);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Reply { status, content_type, body: resp.text().await.unwrap() }
    }
}

/// The value of one metric line (exact name and labels), 0 when absent.
/// Posts Vapi's webhook `message` to provider `provider` with the `X-Vapi-Secret` `secret`;
/// the status and the answer (JSON, or null). A 200 answer must be one Vapi reads (the
/// SDK's response models: see [`strict::vapi_answer`]).
pub async fn vapi_webhook(s: &TestServer, provider: &str, secret: &str, message: Value) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(format!("{}/webhooks/vapi/{provider}", s.base))
        .header("X-Vapi-Secret", secret)
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer = resp.json().await.unwrap_or(Value::Null);
    strict::assert_vapi_reads(status.as_u16(), &message, &answer);
    (status, answer)
}

pub async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = s.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A subscription to `/v1/events`.
pub struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    seen: String,
}

impl Events {
    pub async fn subscribe(s: &TestServer) -> Events {
        let resp = s.client.get(format!("{}/v1/events", s.base)).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(resp.bytes_stream()), seen: String::new() }
    }

    /// Waits (up to 5 s) for an event of `kind` and returns it.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let found = self
                .seen
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|e| e["type"] == kind);
            if let Some(e) = found {
                return e;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no `{kind}` event in:\n{}", self.seen))
                .unwrap()
                .unwrap();
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
