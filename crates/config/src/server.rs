//! `[server]`: where the HTTP API listens and where the embedded journal lives.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The `[server]` section. Every field has a default, so the section may be left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the HTTP API (default `127.0.0.1:7700`). A non-loopback
    /// address is refused unless `[auth]` has at least one key.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite journal (default `callgate-data`, relative to the
    /// working directory of the server).
    pub data_dir: PathBuf,
    /// Largest request body the HTTP API accepts, in bytes (default 65 536 = 64 KiB; an
    /// acquire request with metadata is well under 4 KiB).
    pub max_body_bytes: usize,
    /// Largest `meta` object of an acquire, in bytes of JSON text (default 4096 = 4 KiB).
    /// It is stored with every lease and sent with every event about it.
    pub max_meta_bytes: usize,
    /// Deepest nesting of `meta` (default 16; the object itself is depth 1; at most 64).
    pub max_meta_depth: usize,
    /// Longest idempotency `key`, in bytes (default 256; provider call ids are under 64).
    pub max_key_bytes: usize,
    /// Longest name a client sends (flow, class, pool, dependency, query parameter
    /// values), in bytes (default 128).
    pub max_name_bytes: usize,
    /// Most pools one acquire may name (default 16).
    pub max_pools_per_request: usize,
    /// Most tickets of requests that name pools directly (no flow, so no flow's
    /// `max_len`) that wait at once, over all such requests (default 1000).
    pub pools_max_len: u32,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit between requests, before the server closes it (default "10s").
    #[serde(with = "crate::serde_duration")]
    pub header_read_timeout: Duration,
    /// How long a connection may go without a byte read or written before the server
    /// closes it (default "120s"). Above 60 s, the longest a request may block for a
    /// grant (`wait_ms`) in silence; event streams send a comment every 15 s.
    #[serde(with = "crate::serde_duration")]
    pub idle_timeout: Duration,
    /// Most open client connections (default 1024). Beyond it new connections are closed
    /// at once, while the established ones keep being served.
    pub max_connections: usize,
    /// Events kept in memory for `/v1/events` clients that reconnect with `Last-Event-ID`
    /// (default 4096: a few minutes of a busy account's decisions, about 1 MiB). 0 keeps
    /// none; a client that reconnects is then told it missed events.
    pub events_backlog: usize,
    /// Write one JSON line per decision (grant, queue, reject, release, expire, a ticket
    /// that ended) to the log under the target `callgate::decision`, once it is durable
    /// (default false; `callgate serve --decision-log` turns it on too).
    pub decision_log: bool,
    /// Record this server's calls (each flow's arrivals and their ends) into the call
    /// history forecasts learn from (`history.sqlite`). Default: on when a pool's reserve
    /// follows the forecast, off otherwise, since recording costs admission a share of its
    /// CPU under load (BENCHMARKS.md); `true` gathers history before forecasts are used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_history: Option<bool>,
}

impl ServerConfig {
    /// The default listen address, `127.0.0.1:7700`.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7700);
    /// The default request body limit in bytes (64 KiB).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
    /// The default `meta` size limit in bytes (4 KiB).
    pub const DEFAULT_MAX_META_BYTES: usize = 4 * 1024;
    /// The default `meta` nesting limit.
    pub const DEFAULT_MAX_META_DEPTH: usize = 16;
    /// The deepest `meta` the server can take: well under the nesting that JSON readers
    /// downstream (serde_json: 128) refuse.
    pub const MAX_META_DEPTH: usize = 64;
    /// The default events backlog (4096 events).
    pub const DEFAULT_EVENTS_BACKLOG: usize = 4096;
    /// The largest events backlog: each event is a few hundred bytes, so this bounds the
    /// backlog's memory to some hundred MiB.
    pub const MAX_EVENTS_BACKLOG: usize = 1_000_000;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Self::DEFAULT_LISTEN,
            data_dir: PathBuf::from("callgate-data"),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_meta_bytes: Self::DEFAULT_MAX_META_BYTES,
            max_meta_depth: Self::DEFAULT_MAX_META_DEPTH,
            max_key_bytes: 256,
            max_name_bytes: 128,
            max_pools_per_request: 16,
            pools_max_len: 1000,
            // Ten seconds: a real client sends its headers in one packet; a slow one on a
            // bad mobile link still makes it. Slowloris connections are dropped.
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            // Far above what a voice stack opens (a few per worker), far below the usual
            // fd limit, so the journal and providers' sockets always have room.
            max_connections: 1024,
            events_backlog: Self::DEFAULT_EVENTS_BACKLOG,
            decision_log: false,
            record_history: None,
        }
    }
}

/// Checks `[server]`, including the one rule that spans two sections: no open port
/// without auth keys.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let server = &config.server;
    let field = Field::top("server");
    if !server.listen.ip().is_loopback() && config.auth.keys.is_empty() {
        out.push(
            field.key("listen"),
            format!(
                "binding a non-loopback address ({}) without auth keys is refused; add [auth] \
                 keys or listen on 127.0.0.1",
                server.listen
            ),
        );
    }
    if server.data_dir.as_os_str().is_empty() {
        out.push(field.key("data_dir"), "data_dir must not be empty (the default is \"callgate-data\")");
    }
    if server.max_body_bytes == 0 {
        out.push(field.key("max_body_bytes"), "max_body_bytes must be at least 1 (the default is 65536)");
    }
    let mut between = |key: &str, value: u64, min: u64, max: u64, default: &str| {
        if !(min..=max).contains(&value) {
            out.push(
                field.key(key),
                format!("{key} must be between {min} and {max}, not {value} (the default is {default})"),
            );
        }
    };
    between(
        "max_meta_bytes",
        server.max_meta_bytes as u64,
        2,
        if server.max_body_bytes == 0 { u64::MAX } else { server.max_body_bytes as u64 },
        "4096",
    );
    between("max_meta_depth", server.max_meta_depth as u64, 1, ServerConfig::MAX_META_DEPTH as u64, "16");
    between("max_key_bytes", server.max_key_bytes as u64, 1, 4096, "256");
    between("max_name_bytes", server.max_name_bytes as u64, 1, 4096, "128");
    between("max_pools_per_request", server.max_pools_per_request as u64, 1, 1024, "16");
    between("pools_max_len", u64::from(server.pools_max_len), 1, 1_000_000, "1000");
    between("max_connections", server.max_connections as u64, 1, 1_000_000, "1024");
    let mut duration = |key: &str, d: Duration, min: Duration, max: Duration, default: &str| {
        if d < min || d > max {
            out.push(
                field.key(key),
                format!("{key} must be between {min:?} and {max:?}, not {d:?} (the default is \"{default}\")"),
            );
        }
    };
    duration(
        "header_read_timeout",
        server.header_read_timeout,
        Duration::from_millis(100),
        Duration::from_secs(600),
        "10s",
    );
    duration("idle_timeout", server.idle_timeout, Duration::from_secs(61), Duration::from_secs(3600), "120s");
    if server.events_backlog > ServerConfig::MAX_EVENTS_BACKLOG {
        out.push(
            field.key("events_backlog"),
            format!("events_backlog must be at most {} (the default is 4096)", ServerConfig::MAX_EVENTS_BACKLOG),
        );
    }
}
