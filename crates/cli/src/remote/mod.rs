//! Operating a running server through its HTTP API: `status`, `top`, `pools`, `leases`.
//! The server is `--server` (or `$CALLGATE_SERVER`, default `http://127.0.0.1:7700`), the
//! key `--token` (or `$CALLGATE_TOKEN`). A refusal by the server is shown as its own JSON
//! error message, with its code and status, and the command exits 1.

pub(crate) mod leases;
pub(crate) mod pools;
pub(crate) mod status;
pub(crate) mod top;

pub(crate) use leases::LeasesCommand;
pub(crate) use pools::PoolsCommand;
pub(crate) use status::StatusArgs;
pub(crate) use top::TopArgs;

use crate::out::Failure;
use clap::Args;
use serde_json::Value;
use std::time::Duration;

/// Where the server is and the key to show it.
#[derive(Args, Debug, Clone)]
pub(crate) struct Conn {
    /// The callgate server's base URL.
    #[arg(long, env = "CALLGATE_SERVER", default_value = "http://127.0.0.1:7700")]
    pub(crate) server: String,
    /// An API key (when the server has keys).
    #[arg(long, env = "CALLGATE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// A JSON client of one server.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A response larger than this is not a callgate answer (a page of leases is far below).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

impl Client {
    pub(crate) fn new(conn: &Conn) -> Result<Client, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Client {
            base: conn.server.trim_end_matches('/').to_string(),
            token: conn.token.clone().filter(|t| !t.is_empty()),
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request and reads its JSON answer; a non-2xx status is an error carrying
    /// the server's own message.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.base, root_cause(&e)))?;
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(format!("{}: the answer is larger than {MAX_ANSWER_BYTES} bytes", self.base).into());
        }
        let bytes = resp.bytes().await.map_err(|e| format!("cannot read the answer of {}: {e}", self.base))?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return value.ok_or_else(|| format!("{} did not answer with JSON", self.base).into());
        }
        let message = match value.as_ref().and_then(|v| v.get("error")) {
            Some(e) => format!(
                "{} ({}, HTTP {})",
                e["message"].as_str().unwrap_or("no message"),
                e["code"].as_str().unwrap_or("no code"),
                status.as_u16()
            ),
            None => format!("HTTP {status} from {}", self.base),
        };
        Err(Failure::Message(message))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Opens `/v1/events`, resuming after `last_event_id`.
    pub(crate) async fn events(&self, last_event_id: Option<&str>) -> Result<reqwest::Response, Failure> {
        let mut req = self.request(reqwest::Method::GET, "/v1/events");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach {}: {}", self.base, root_cause(&e)))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            // Read the error the usual way.
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            Err(Failure::Message(format!(
                "{} ({}, HTTP {})",
                v["error"]["message"].as_str().unwrap_or("cannot follow /v1/events"),
                v["error"]["code"].as_str().unwrap_or("no code"),
                status.as_u16()
            )))
        }
    }
}

/// The innermost cause of a connection error ("Connection refused"), which is what a
/// user needs to read.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A path segment or query value, percent-encoded.
pub(crate) fn encode(s: &str) -> String {
    // The unreserved characters of RFC 3986 stay; everything else is %XX.
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The live leases, whether the server answers a bare array (before paging) or pages
/// (`{ "leases": […], "next_cursor" }`), following at most `max` leases.
pub(crate) async fn all_leases(client: &Client, filters: &[(&str, &str)], max: usize) -> Result<Leases, Failure> {
    let mut list = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<String> = filters.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        if let Some(c) = &cursor {
            query.push(format!("cursor={}", encode(c)));
        }
        let path = if query.is_empty() { "/v1/leases".to_string() } else { format!("/v1/leases?{}", query.join("&")) };
        let v = client.get(&path).await?;
        let (page, next) = match v {
            Value::Array(page) => (page, None),
            Value::Object(mut m) => {
                let page = match m.remove("leases") {
                    Some(Value::Array(page)) => page,
                    _ => return Err("the server's /v1/leases answer has no `leases` list".to_string().into()),
                };
                (page, m.remove("next_cursor").and_then(|c| c.as_str().map(str::to_string)))
            }
            _ => return Err("the server's /v1/leases answer is not a list".to_string().into()),
        };
        list.extend(page);
        let more = next.is_some() && next != cursor;
        if list.len() > max || (list.len() == max && more) {
            list.truncate(max);
            return Ok(Leases { list, complete: false });
        }
        if !more {
            return Ok(Leases { list, complete: true });
        }
        cursor = next;
    }
}

/// Leases read from the server.
pub(crate) struct Leases {
    pub(crate) list: Vec<Value>,
    /// False when there were more than asked for.
    pub(crate) complete: bool,
}

/// `1m05s`-style text of a duration in milliseconds.
pub(crate) fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
