//! `[storage]`: where the ledger's state and the durable records live.
//!
//! The default keeps everything in the embedded store under `[server] data_dir` (one node).
//! Cluster mode puts the ledger in Redis (`ledger = "redis://…"`), shared by every node of
//! one budget `domain`, and the durable records in PostgreSQL (`database = "postgres://…"`;
//! validated here, used by the PostgreSQL store). URLs may carry passwords, so each may
//! instead be named by a variable (`ledger_env`, `database_env`), read when the server
//! starts, not by `config check`.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What a node does with a pool's admissions while Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisUnavailable {
    /// Refuse (503 with Retry-After): nothing is granted that the cluster cannot count.
    #[default]
    FailClosed,
    /// Each node admits on its own, against a local cap of its share of what was free
    /// (`(limit - in use) / nodes`, `[storage] nodes`), and its leases are taken into the
    /// shared ledger when Redis returns (see the README, "Running several nodes").
    LocalFallback,
}

impl RedisUnavailable {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisUnavailable::FailClosed => "fail_closed",
            RedisUnavailable::LocalFallback => "local_fallback",
        }
    }
}

/// The `[storage]` section. Every field has a default, so the section may be left out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the ledger lives: `"embedded"` (default: in this process, journaled to SQLite
    /// under `[server] data_dir`) or a Redis URL `redis://[user:password@]host:port[/db]`
    /// (cluster mode). Left at its default when `ledger_env` gives the URL.
    pub ledger: String,
    /// The environment variable that holds the Redis URL instead of `ledger`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_env: Option<String>,
    /// The PostgreSQL URL of the durable records in cluster mode
    /// (`postgres://user@host:5432/db`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The environment variable that holds the PostgreSQL URL instead of `database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_env: Option<String>,
    /// The budget domain: the nodes that name the same domain on the same Redis share one
    /// ledger (its keys are `{cg:<domain>}:…`, one Redis Cluster slot). Letters, digits,
    /// `-`, `_`, `.` and `:`, 1 to 64 (default `"default"`).
    pub domain: String,
    /// What every pool does while Redis is unreachable (default `"fail_closed"`); a pool's
    /// own `on_redis_unavailable` overrides it.
    pub on_redis_unavailable: RedisUnavailable,
    /// How many nodes share the domain at most (`local_fallback` gives each node
    /// `1 / nodes` of what was free when Redis went away, so the nodes together never
    /// exceed a pool's limit). Required when a pool uses `local_fallback`; the same on
    /// every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    /// The longest a node admits on its own (`local_fallback`) after its last presence in
    /// Redis, then its pools fail closed until Redis answers (default "15m", from "30s" to
    /// "24h"). The shared ledger holds a silent node's declared share back for as long (and
    /// 5 s more), whatever the reason it went silent: so this is also how long a node killed
    /// without a clean stop keeps its share from the others (unless an operator forgets it,
    /// `DELETE /v1/cluster/nodes/{node}`). Each node holds back what its own setting says.
    #[serde(with = "crate::serde_duration", skip_serializing_if = "is_default_fallback_max")]
    pub fallback_max: Duration,
}

/// The default `[storage] fallback_max`.
pub(crate) const DEFAULT_FALLBACK_MAX: Duration = Duration::from_secs(15 * 60);

/// The range `[storage] fallback_max` may take: long enough to ride out a Redis failover,
/// short enough that a killed node's share comes back the same day.
pub(crate) const FALLBACK_MAX_RANGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(24 * 3600));

fn is_default_fallback_max(d: &Duration) -> bool {
    *d == DEFAULT_FALLBACK_MAX
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry passwords: show only their scheme.
        let scheme = |u: &str| u.split_once("://").map_or_else(|| u.to_owned(), |(s, _)| format!("{s}://…"));
        f.debug_struct("StorageConfig")
            .field("ledger", &scheme(&self.ledger))
            .field("ledger_env", &self.ledger_env)
            .field("database", &self.database.as_deref().map(scheme))
            .field("database_env", &self.database_env)
            .field("domain", &self.domain)
            .field("on_redis_unavailable", &self.on_redis_unavailable)
            .field("nodes", &self.nodes)
            .field("fallback_max", &self.fallback_max)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            ledger: EMBEDDED.to_owned(),
            ledger_env: None,
            database: None,
            database_env: None,
            domain: "default".to_owned(),
            on_redis_unavailable: RedisUnavailable::FailClosed,
            nodes: None,
            fallback_max: DEFAULT_FALLBACK_MAX,
        }
    }
}

/// The `ledger` value of the embedded store.
const EMBEDDED: &str = "embedded";

/// Where the ledger lives, resolved (see [`StorageConfig::ledger_store`]).
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerStore {
    /// In this process, journaled to SQLite.
    Embedded,
    /// In Redis at this URL.
    Redis(String),
}

impl fmt::Debug for LedgerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerStore::Embedded => f.write_str("Embedded"),
            LedgerStore::Redis(_) => f.write_str("Redis(<url>)"),
        }
    }
}

impl StorageConfig {
    /// Whether the ledger is in Redis (set in the file or by `ledger_env`).
    pub fn clustered(&self) -> bool {
        self.ledger_env.is_some() || self.ledger != EMBEDDED
    }

    /// Where the ledger lives, reading `ledger_env` from `env` when it is set (not set or
    /// empty, or not a Redis URL: an error naming the variable).
    pub fn ledger_store(&self, env: &dyn crate::Env) -> Result<LedgerStore, String> {
        let url = match &self.ledger_env {
            Some(var) => env.var(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("[storage]: the environment variable `{var}` (its ledger_env) is not set or empty")
            })?,
            None if self.ledger == EMBEDDED => return Ok(LedgerStore::Embedded),
            None => self.ledger.clone(),
        };
        redis_url_problem(&url).map_or(Ok(LedgerStore::Redis(url)), |why| {
            Err(format!("[storage]: the Redis URL in `{}` {why}", self.ledger_env.as_deref().unwrap_or("ledger")))
        })
    }

    /// The PostgreSQL URL, if one is configured, reading `database_env` from `env` (not
    /// set or empty, or not a PostgreSQL URL: an error naming the variable).
    pub fn database_url(&self, env: &dyn crate::Env) -> Result<Option<String>, String> {
        let url = match (&self.database, &self.database_env) {
            (_, Some(var)) => env.var(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("[storage]: the environment variable `{var}` (its database_env) is not set or empty")
            })?,
            (Some(url), None) => url.clone(),
            (None, None) => return Ok(None),
        };
        match postgres_url_problem(&url) {
            None => Ok(Some(url)),
            Some(why) => Err(format!(
                "[storage]: the PostgreSQL URL in `{}` {why}",
                self.database_env.as_deref().unwrap_or("database")
            )),
        }
    }
}

/// Why `url` is not a Redis URL this build can use, if it is not.
fn redis_url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not a URL (write e.g. \"redis://127.0.0.1:6379\")".into());
    };
    match scheme {
        "redis" => {}
        // The Redis client is built without TLS (a lean dependency set): say so rather
        // than fail at the first connection.
        "rediss" => return Some("asks for TLS (rediss://), which this build does not speak; use redis://".into()),
        _ => return Some(format!("has the scheme `{scheme}`; write redis://host:port")),
    }
    host_problem(rest)
}

/// Why `url` is not a PostgreSQL URL, if it is not.
fn postgres_url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not a URL (write e.g. \"postgres://callgate@127.0.0.1:5432/callgate\")".into());
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        return Some(format!("has the scheme `{scheme}`; write postgres://user@host:port/db"));
    }
    host_problem(rest)
}

fn host_problem(rest: &str) -> Option<String> {
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Some("names no host".into());
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains spaces or control characters".into());
    }
    None
}

/// Whether `domain` is a valid budget domain name.
pub fn valid_domain(domain: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    !domain.is_empty() && domain.len() <= 64 && domain.chars().all(ok)
}

/// Checks `[storage]` and every pool's `on_redis_unavailable`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let s = &config.storage;
    let field = Field::top("storage");
    let env_var = |out: &mut Problems, key: &str, var: &Option<String>| {
        if var.as_deref().is_some_and(|v| v.trim().is_empty()) {
            out.push(field.key(key), format!("`{key}` must name an environment variable"));
        }
    };
    env_var(out, "ledger_env", &s.ledger_env);
    env_var(out, "database_env", &s.database_env);
    if s.ledger_env.is_some() && s.ledger != EMBEDDED {
        out.push(
            field.key("ledger"),
            "give either `ledger` or `ledger_env` (a variable holding the Redis URL), not both",
        );
    } else if s.ledger != EMBEDDED {
        if let Some(why) = redis_url_problem(&s.ledger) {
            out.push(
                field.key("ledger"),
                format!("ledger must be \"embedded\" or a Redis URL: `{}` {why}", redact(&s.ledger)),
            );
        }
    }
    match (&s.database, &s.database_env) {
        (Some(_), Some(_)) => out.push(
            field.key("database"),
            "give either `database` or `database_env` (a variable holding the PostgreSQL URL), not both",
        ),
        (Some(url), None) => {
            if let Some(why) = postgres_url_problem(url) {
                out.push(field.key("database"), format!("database must be a PostgreSQL URL: `{}` {why}", redact(url)));
            }
        }
        _ => {}
    }
    let has_database = s.database.is_some() || s.database_env.is_some();
    if has_database && !s.clustered() {
        out.push(
            field.key(if s.database.is_some() { "database" } else { "database_env" }),
            "a PostgreSQL database is used in cluster mode only: set `ledger` to a Redis URL too (the embedded \
             store keeps everything under [server] data_dir)",
        );
    }
    if !valid_domain(&s.domain) {
        out.push(
            field.key("domain"),
            format!("domain `{}` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`", s.domain),
        );
    }
    if s.nodes.is_some_and(|n| !(1..=MAX_NODES).contains(&n)) {
        out.push(field.key("nodes"), format!("nodes must be between 1 and {MAX_NODES}"));
    }
    let (lo, hi) = FALLBACK_MAX_RANGE;
    if !(lo..=hi).contains(&s.fallback_max) {
        out.push(field.key("fallback_max"), "fallback_max must be between 10s and 24h");
    }
    // `local_fallback` divides what was free among the nodes: it needs to know how many.
    let fallback = |out: &mut Problems, at: Field| {
        if s.nodes.is_none() {
            out.push(
                at,
                "`local_fallback` needs `[storage] nodes` (how many nodes share the domain at most: each admits \
                 its share while Redis is unreachable)",
            );
        }
    };
    let pools = Field::top("pools");
    if s.on_redis_unavailable == RedisUnavailable::LocalFallback {
        fallback(out, field.key("on_redis_unavailable"));
    } else {
        for (i, p) in config.pools.iter().enumerate() {
            if p.on_redis_unavailable == Some(RedisUnavailable::LocalFallback) {
                fallback(out, pools.index(i).key("on_redis_unavailable"));
                break;
            }
        }
    }
}

/// The most nodes `[storage] nodes` may name.
pub(crate) const MAX_NODES: u32 = 1000;

impl Config {
    /// What each pool (by index) does while Redis is unreachable: its own
    /// `on_redis_unavailable`, else `[storage]`'s.
    pub fn redis_unavailable(&self) -> Vec<RedisUnavailable> {
        self.pools.iter().map(|p| p.on_redis_unavailable.unwrap_or(self.storage.on_redis_unavailable)).collect()
    }
}

/// `url` with its password (if any) hidden, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:…@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
