//! Builders for integration tests: a real server on 127.0.0.1:0 with its own data
//! directory, a small JSON client, and [`eventually`] for what the server does in the
//! background.
//!
//! Time in these tests: the server runs on [`ManualClock`] (the one clock,
//! `callgate_core::clock`) where a test must say "30 seconds later"; then it moves the clock,
//! never sleeps. What happens in the background (a journal write, a webhook, a pacing round)
//! is awaited with [`eventually`], which waits for the condition the test asserts and never
//! for a fixed time.
#![allow(dead_code)]

pub mod providers;
pub mod strict;

use callgate_config::Config;
use callgate_server::clock::Clock;
use callgate_server::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[allow(unused_imports)] // not every test binary moves a clock
pub use callgate_core::clock::ManualClock;

pub struct TestServer {
    pub base: String,
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub toml: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
    /// The clock the server runs on, when not the system's (kept across restarts).
    pub clock: Option<Arc<dyn Clock>>,
}

/// Whether `check` holds within about `max` of waiting: polled first at once, then after
/// pauses that grow from 1 ms to 25 ms (a condition that holds soon is seen soon; one that
/// takes a while is not polled hundreds of times a second on a small machine).
///
/// The bound is a number of rounds, not an assertion on time: it only ends a test whose
/// condition never holds. Give it generous room (seconds), since a loaded machine is slow.
/// On a paused tokio clock the pauses pass at once, so there `max` counts rounds of
/// whatever the runtime had to do; code that waits on a blocking thread (the journal)
/// belongs on real time.
pub async fn holds_within<F, Fut>(max: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let (mut waited, mut pause) = (Duration::ZERO, Duration::from_millis(1));
    loop {
        if check().await {
            return true;
        }
        if waited >= max {
            return false;
        }
        tokio::time::sleep(pause).await;
        waited += pause;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Waits until `check` holds; panics with `what` if it has not within about `max` (see
/// [`holds_within`]).
pub async fn eventually<F, Fut>(what: impl std::fmt::Display, max: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if !holds_within(max, check).await {
        panic!("never happened: {what} (waited {max:?})");
    }
}

/// `n` seconds, for [`eventually`]'s bound.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn config(toml: &str) -> Config {
    Config::from_toml_str(toml, None).unwrap_or_else(|e| panic!("test config: {e}"))
}

impl TestServer {
    pub async fn start(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(toml, dir, None).await
    }

    /// A server on `clock` (e.g. a [`ManualClock`]).
    pub async fn start_with_clock(toml: &str, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(toml, dir, Some(clock)).await
    }

    async fn start_in(toml: &str, dir: tempfile::TempDir, clock: Option<Arc<dyn Clock>>) -> Self {
        let opts = ServeOptions {
            config: config(toml),
            config_path: None,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
        };
        let server = match &clock {
            Some(c) => Server::start_with_clock(opts, c.clone()).await,
            None => Server::start(opts).await,
        }
        .expect("server starts");
        TestServer {
            base: format!("http://{}", server.addr),
            server: Some(server),
            dir,
            toml: toml.to_string(),
            client: reqwest::Client::new(),
            token: None,
            clock,
        }
    }

    /// The running server, in process.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the server (flushing the journal) and starts a new one on the same data.
    pub async fn restart(mut self) -> Self {
        self.server.take().expect("running").stop().await;
        let toml = self.toml.clone();
        let clock = self.clock.take();
        Self::start_in(&toml, self.dir, clock).await
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        self.send(
            self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.put(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.delete(format!("{}{path}", self.base))).await
    }

    pub async fn acquire(&self, body: Value) -> (StatusCode, Value) {
        self.post("/v1/acquire", body).await
    }

    pub async fn pool(&self, name: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/pools/{name}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn used(&self, name: &str) -> u64 {
        self.pool(name).await["used"].as_u64().unwrap()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_str().expect("Prometheus text").to_string()
    }

    /// The value of the first metric line that starts with `prefix` (a name, or a name
    /// and its first labels); panics when there is none.
    pub async fn first_metric(&self, prefix: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {prefix}"))
    }

    /// The server's clock (the manual one a test started it on, or the system's): what
    /// the governor stamps and times by.
    pub fn now_ms(&self) -> u64 {
        self.server().app.governor.now_ms()
    }
}

/// Three slots, one held back for inbound: the scenario of the foundation issue.
pub const THREE_SLOTS: &str = r#"
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

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "60s", max_len = 5 }
overflow = { action = "voicemail", message = "Please leave a message." }

[[flows]]
name = "campaign"
pools = ["acct"]
class = "outbound"
overflow = { action = "busy" }
"#;

/// A receiver of webhooks (alert notifications, prewarm hooks) on 127.0.0.1:0: its URL
/// and the JSON bodies it received.
pub async fn receiver() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |axum::Json(v): axum::Json<Value>| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push(v);
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}
