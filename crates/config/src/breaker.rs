//! `[[breakers]]`: circuit breakers per dependency (a model endpoint, a provider account,
//! a transcription or voice service), and the flows' `depends_on` and `fallback`.

use crate::adaptive::backticked;
use crate::campaign::Real;
use crate::flow::validate_overflow;
use crate::problem::{list, Field, Problems};
use crate::Config;
use callgate_core::breaker::BreakerSpec;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One `[[breakers]]` table. Outcomes reach it as samples (`POST /v1/samples` with
/// `"dependency"`, or a lease release that names it); while it is open, the flows that
/// depend on it answer with their `fallback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Unique name of the dependency (letters, digits, `-`, `_`, `.`), e.g. `llm`.
    pub name: String,
    /// Open when at least this share of the window's calls failed, in (0, 1]
    /// (default 0.5).
    #[serde(default = "half")]
    pub error_rate: Real,
    /// A call slower than this many milliseconds is slow (default: none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_ms: Option<u64>,
    /// Open when at least this share of the window's calls were slow, in (0, 1]
    /// (default 0.5; needs `slow_call_ms`).
    #[serde(default = "half")]
    pub slow_rate: Real,
    /// The sliding window the rates are taken over (default "30s").
    #[serde(default = "thirty_seconds", with = "crate::serde_duration")]
    pub window: Duration,
    /// The window's granularity (default "1s").
    #[serde(default = "one_second", with = "crate::serde_duration")]
    pub bucket: Duration,
    /// Fewer calls than this in the window never open the breaker (default 20).
    #[serde(default = "twenty")]
    pub min_calls: u32,
    /// How long it stays open before letting probes through (default "30s").
    #[serde(default = "thirty_seconds", with = "crate::serde_duration")]
    pub open_for: Duration,
    /// Probe calls let through when half-open; all must succeed to close it (default 5).
    #[serde(default = "five")]
    pub half_open_probes: u32,
}

fn half() -> Real {
    Real(0.5)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn twenty() -> u32 {
    20
}

fn five() -> u32 {
    5
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl BreakerConfig {
    /// A breaker named `name` with every default.
    pub fn new(name: &str) -> Self {
        BreakerConfig {
            name: name.to_owned(),
            error_rate: half(),
            slow_call_ms: None,
            slow_rate: half(),
            window: thirty_seconds(),
            bucket: one_second(),
            min_calls: twenty(),
            open_for: thirty_seconds(),
            half_open_probes: five(),
        }
    }

    /// The core spec.
    pub fn spec(&self) -> BreakerSpec {
        BreakerSpec {
            error_rate: self.error_rate.0,
            slow_call_ms: self.slow_call_ms,
            slow_rate: self.slow_rate.0,
            window_ms: millis(self.window),
            bucket_ms: millis(self.bucket),
            min_calls: self.min_calls,
            open_for_ms: millis(self.open_for),
            half_open_probes: self.half_open_probes,
        }
    }
}

/// The keys of a breaker table that the core's messages name.
const KEYS: &[&str] =
    &["error_rate", "slow_call_ms", "slow_rate", "window", "bucket", "min_calls", "open_for", "half_open_probes"];

/// A name that can stand in a metric label and a URL without escaping.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `[[breakers]]` and the flows' `depends_on` and `fallback`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let breakers = Field::top("breakers");
    out.names("breaker", config.breakers.iter().map(|b| b.name.as_str()), |i| breakers.index(i).key("name"));
    for (i, b) in config.breakers.iter().enumerate() {
        let field = breakers.index(i);
        if !b.name.trim().is_empty() && !is_plain_name(&b.name) {
            out.push(
                field.key("name"),
                format!("breaker name `{}` may hold only letters, digits, `-`, `_` and `.` (64 at most)", b.name),
            );
        }
        if b.slow_call_ms.is_none() && b.slow_rate != half() {
            out.push(field.key("slow_rate"), "slow_rate needs slow_call_ms (what counts as slow)");
        }
        if let Err(e) = b.spec().validate() {
            let at = match backticked(&e.0).filter(|k| KEYS.contains(k)) {
                Some(k) => field.key(k),
                None => field.clone(),
            };
            out.push(at, e.0);
        }
    }
    for (i, flow) in config.flows.iter().enumerate() {
        let field = Field::top("flows").index(i);
        for (j, dep) in flow.depends_on.iter().enumerate() {
            if !config.breakers.iter().any(|b| &b.name == dep) {
                out.push(
                    field.key("depends_on").index(j),
                    format!(
                        "flow `{}` depends on unknown breaker `{dep}` (breakers: {})",
                        flow.name,
                        list(config.breakers.iter().map(|b| b.name.as_str()))
                    ),
                );
            } else if flow.depends_on[..j].contains(dep) {
                out.push(field.key("depends_on").index(j), format!("breaker `{dep}` is listed twice"));
            }
        }
        if !flow.fallback.is_empty() && flow.depends_on.is_empty() {
            out.push(
                field.key("fallback"),
                format!(
                    "flow `{}` has a fallback but no depends_on: the fallback applies only while a dependency's \
                     breaker is open",
                    flow.name
                ),
            );
        }
        for (k, step) in flow.fallback.iter().enumerate() {
            validate_overflow(step, &field.key("fallback").index(k), out);
        }
    }
}
