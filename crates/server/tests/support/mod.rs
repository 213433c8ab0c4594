//! Builders for integration tests: a real server on 127.0.0.1:0 with its own data
//! directory, and a small JSON client.
#![allow(dead_code)]

pub mod providers;
pub mod strict;

use callgate_config::Config;
use callgate_server::clock::Clock;
use callgate_server::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// A clock that moves only when told to.
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(ms)))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
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

    /// Polls `check` every 20 ms for up to `secs` seconds.
    pub async fn eventually<F, Fut>(&self, secs: u64, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..secs * 50 {
            if check().await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
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
