//! `[[flows]]`: entry points, the pools their calls hold, their waiting room and their
//! overflow chain.

use crate::overflow::{deserialize_chain, Overflow, OverflowAction};
use crate::problem::{list, Field, Problems};
use crate::Config;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::time::Duration;

/// One `[[flows]]` table: an entry point (a phone number, an assistant, a campaign).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Unique, non-empty name (e.g. `support`), passed as `"flow"` by clients.
    pub name: String,
    /// The pools a call of this flow holds, each at most once. In the file, an entry is
    /// a pool name (`"vapi-main"`, 1 unit) or a table (`{ pool = "vapi-main", units = 2 }`).
    pub pools: Vec<FlowPool>,
    /// The class the flow's requests run in.
    pub class: String,
    /// How long a lease lives unless renewed or released (default 2 hours: longer than
    /// nearly every voice call, short enough that a lost release frees its slot the same
    /// day). Written as a duration string, e.g. `"2h"`.
    #[serde(default = "default_lease_ttl", with = "crate::serde_duration")]
    pub lease_ttl: Duration,
    /// The waiting room; `None` (left out) rejects at once a call that does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueConfig>,
    /// What to do with a rejected call: a chain tried in order, the first step first
    /// (default: none, the call is simply refused). In the file, one table or an array.
    #[serde(default, deserialize_with = "deserialize_chain")]
    pub overflow: Vec<Overflow>,
}

/// The default lease TTL, 2 hours.
pub(crate) fn default_lease_ttl() -> Duration {
    Duration::from_secs(2 * 3600)
}

/// A pool a flow needs, and how many of its units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowPool {
    /// The pool's name.
    pub pool: String,
    /// Units of that pool per call (at least 1; default 1).
    pub units: u32,
}

impl FlowPool {
    /// One unit of `pool`.
    pub fn one(pool: &str) -> Self {
        FlowPool {
            pool: pool.to_owned(),
            units: 1,
        }
    }
}

/// The table form of a flow's pool entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowPoolTable {
    pool: String,
    #[serde(default = "one_unit")]
    units: u32,
}

fn one_unit() -> u32 {
    1
}

impl<'de> Deserialize<'de> for FlowPool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = FlowPool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pool name or a table such as { pool = \"vapi-main\", units = 1 }")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FlowPool, E> {
                Ok(FlowPool::one(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FlowPool, A::Error> {
                let t = FlowPoolTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(FlowPool {
                    pool: t.pool,
                    units: t.units,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

/// A flow's waiting room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// How long a caller may wait for a line before the overflow applies (at least 1 ms;
    /// a request may ask for less). Written as a duration string, e.g. `"60s"`.
    #[serde(with = "crate::serde_duration")]
    pub max_wait: Duration,
    /// At most this many of the flow's callers wait at once (at least 1; left out:
    /// no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u32>,
}

/// Checks `[[flows]]`: names, known class and pools, units, the waiting room and the
/// overflow chain.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let flows = Field::top("flows");
    out.names("flow", config.flows.iter().map(|f| f.name.as_str()), |i| {
        flows.index(i).key("name")
    });
    for (i, flow) in config.flows.iter().enumerate() {
        let field = flows.index(i);
        if config.class(&flow.class).is_none() {
            out.push(
                field.key("class"),
                format!(
                    "flow `{}` names unknown class `{}` (classes: {})",
                    flow.name,
                    flow.class,
                    list(config.classes.iter().map(|c| c.name.as_str()))
                ),
            );
        }
        validate_pools(config, flow, &field, out);
        if flow.lease_ttl.as_millis() == 0 {
            out.push(field.key("lease_ttl"), "lease_ttl must be at least 1ms");
        }
        if let Some(queue) = &flow.queue {
            let q = field.key("queue");
            if queue.max_wait.as_millis() == 0 {
                out.push(
                    q.key("max_wait"),
                    "max_wait must be at least 1ms (leave out `queue` for no waiting room)",
                );
            }
            if queue.max_len == Some(0) {
                out.push(
                    q.key("max_len"),
                    "max_len must be at least 1 (leave out `queue` for no waiting room, or \
                     `max_len` for no bound)",
                );
            }
        }
        for (k, step) in flow.overflow.iter().enumerate() {
            validate_overflow(step, &field.key("overflow").index(k), out);
        }
    }
}

fn validate_pools(config: &Config, flow: &FlowConfig, field: &Field, out: &mut Problems) {
    let pools = field.key("pools");
    if flow.pools.is_empty() {
        out.push(
            pools.clone(),
            format!("flow `{}` needs at least one pool", flow.name),
        );
    }
    for (j, entry) in flow.pools.iter().enumerate() {
        if config.pool(&entry.pool).is_none() {
            out.push(
                pools.index(j),
                format!(
                    "flow `{}` names unknown pool `{}` (pools: {})",
                    flow.name,
                    entry.pool,
                    list(config.pools.iter().map(|p| p.name.as_str()))
                ),
            );
        } else if flow.pools[..j].iter().any(|o| o.pool == entry.pool) {
            out.push(
                pools.index(j),
                format!(
                    "pool `{}` is listed twice in flow `{}`; list it once with the total units",
                    entry.pool, flow.name
                ),
            );
        }
        if entry.units == 0 {
            out.push(pools.index(j).key("units"), "units must be at least 1");
        }
    }
}

fn validate_overflow(step: &Overflow, field: &Field, out: &mut Problems) {
    let action = step.action;
    match action {
        OverflowAction::Transfer => match (&step.number, &step.sip) {
            (None, None) => out.push(
                field.clone(),
                "a transfer needs a `number` (E.164, e.g. \"+14155550123\") or a `sip` URI",
            ),
            (Some(_), Some(_)) => out.push(
                field.clone(),
                "a transfer takes either `number` or `sip`, not both",
            ),
            _ => {}
        },
        OverflowAction::Ivr if !matches!(step.menu.as_deref(), Some(m) if !m.trim().is_empty()) => {
            out.push(field.clone(), "an ivr overflow needs a `menu`")
        }
        _ => {}
    }
    if let Some(number) = &step.number {
        if action != OverflowAction::Transfer {
            out.push(
                field.key("number"),
                format!("`number` applies only to action = \"transfer\", not \"{action}\""),
            );
        } else if !is_e164(number) {
            out.push(
                field.key("number"),
                format!("`{number}` is not an E.164 number (write e.g. \"+14155550123\")"),
            );
        }
    }
    if let Some(sip) = &step.sip {
        if action != OverflowAction::Transfer {
            out.push(
                field.key("sip"),
                format!("`sip` applies only to action = \"transfer\", not \"{action}\""),
            );
        } else if !(sip.starts_with("sip:") || sip.starts_with("sips:")) || sip.len() < 5 {
            out.push(
                field.key("sip"),
                format!("`{sip}` is not a SIP URI (write e.g. \"sip:desk@pbx.example.com\")"),
            );
        }
    }
    if step.menu.is_some() && action != OverflowAction::Ivr {
        out.push(
            field.key("menu"),
            format!("`menu` applies only to action = \"ivr\", not \"{action}\""),
        );
    }
}

/// `+`, then 2 to 15 digits, the first not 0 (ITU-T E.164).
fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}
