//! `[server]`: where the HTTP API listens and where the embedded journal lives.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

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
    /// Events kept in memory for `/v1/events` clients that reconnect with `Last-Event-ID`
    /// (default 4096: a few minutes of a busy account's decisions, about 1 MiB). 0 keeps
    /// none; a client that reconnects is then told it missed events.
    pub events_backlog: usize,
}

impl ServerConfig {
    /// The default listen address, `127.0.0.1:7700`.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7700);
    /// The default request body limit in bytes (64 KiB).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
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
            events_backlog: Self::DEFAULT_EVENTS_BACKLOG,
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
    if server.events_backlog > ServerConfig::MAX_EVENTS_BACKLOG {
        out.push(
            field.key("events_backlog"),
            format!("events_backlog must be at most {} (the default is 4096)", ServerConfig::MAX_EVENTS_BACKLOG),
        );
    }
}
