//! What a ledger is built from: classes, pools with reserves, and flows.
//!
//! The configuration crate turns a TOML file into a [`LedgerSpec`]; the simulator builds
//! one from a scenario. [`LedgerSpec::validate`] repeats the checks that matter for the
//! ledger's own invariants, so a ledger can never be built from a spec that breaks them.

use crate::ids::{ClassId, PoolUnits};
use std::fmt;

/// A traffic class. Higher `priority` is served first; equal priorities share one tier,
/// first come first served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSpec {
    /// Unique name (e.g. `inbound`).
    pub name: String,
    /// Higher is served first.
    pub priority: i32,
}

/// A pool: a named budget of units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Unique name (e.g. `vapi-main`).
    pub name: String,
    /// Configured limit in units.
    pub limit: u32,
    /// Units held back for a class and every class above it: `(class, units)`.
    pub reserve: Vec<(ClassId, u32)>,
}

/// A flow's waiting room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// How long a ticket may wait, in milliseconds, unless the request says less or more.
    pub max_wait_ms: u64,
    /// At most this many of the flow's tickets wait at once (`None`: unbounded).
    pub max_len: Option<u32>,
}

/// An entry point: the pools a call needs, its class, and its waiting room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    /// Unique name (e.g. `support`).
    pub name: String,
    /// Pools and units per pool; every pool at most once.
    pub pools: Vec<PoolUnits>,
    /// The class its requests run in.
    pub class: ClassId,
    /// Lease time to live in milliseconds when the request does not say.
    pub lease_ttl_ms: u64,
    /// The waiting room; `None` means a request that does not fit is rejected at once.
    pub queue: Option<QueueSpec>,
}

/// Everything a ledger is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerSpec {
    /// Traffic classes.
    pub classes: Vec<ClassSpec>,
    /// Pools.
    pub pools: Vec<PoolSpec>,
    /// Flows.
    pub flows: Vec<FlowSpec>,
    /// Lease time to live for requests that name pools directly and no TTL (ms).
    pub default_lease_ttl_ms: u64,
    /// How long an ended ticket's outcome stays readable (ms).
    pub ticket_retention_ms: u64,
    /// The hold time assumed before any lease has ended, for wait estimates (ms).
    pub default_hold_ms: u64,
    /// At most this many tickets of requests that name pools directly (no flow, so no
    /// flow's `max_len`) wait at once (`None`: unbounded).
    pub pools_max_len: Option<u32>,
}

impl Default for LedgerSpec {
    fn default() -> Self {
        LedgerSpec {
            classes: Vec::new(),
            pools: Vec::new(),
            flows: Vec::new(),
            // Two hours: longer than nearly every voice call, short enough that a lost
            // release does not hold a slot for a whole day.
            default_lease_ttl_ms: 2 * 3600 * 1000,
            // Long enough for a client that polls a ticket every few seconds to see how
            // it ended; short enough that a flood of tickets does not pile up.
            ticket_retention_ms: 10 * 60 * 1000,
            // Three minutes, a typical AI voice call, until real hold times are observed.
            default_hold_ms: 180 * 1000,
            pools_max_len: None,
        }
    }
}

/// Why a spec cannot build a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl LedgerSpec {
    /// Checks names, references and reserves.
    pub fn validate(&self) -> Result<(), SpecError> {
        fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), SpecError> {
            let mut seen = std::collections::HashSet::new();
            for n in names {
                if n.is_empty() {
                    return Err(SpecError(format!("a {what} has an empty name")));
                }
                if !seen.insert(n) {
                    return Err(SpecError(format!("{what} `{n}` is defined twice")));
                }
            }
            Ok(())
        }
        if self.classes.is_empty() {
            return Err(SpecError("at least one class is needed".into()));
        }
        if self.classes.len() > u16::MAX as usize {
            return Err(SpecError("too many classes".into()));
        }
        unique("class", self.classes.iter().map(|c| c.name.as_str()))?;
        unique("pool", self.pools.iter().map(|p| p.name.as_str()))?;
        unique("flow", self.flows.iter().map(|f| f.name.as_str()))?;
        for p in &self.pools {
            let mut total: u64 = 0;
            for &(c, units) in &p.reserve {
                if c.index() >= self.classes.len() {
                    return Err(SpecError(format!("pool `{}` reserves for an unknown class", p.name)));
                }
                total += u64::from(units);
            }
            if total > u64::from(p.limit) {
                return Err(SpecError(format!(
                    "pool `{}` reserves {total} units but its limit is {}",
                    p.name, p.limit
                )));
            }
        }
        for f in &self.flows {
            if f.class.index() >= self.classes.len() {
                return Err(SpecError(format!("flow `{}` names an unknown class", f.name)));
            }
            check_pools(&f.pools, self.pools.len()).map_err(|e| SpecError(format!("flow `{}`: {e}", f.name)))?;
        }
        Ok(())
    }
}

/// Checks a request's pool list: not empty, known pools, each at most once, units >= 1.
pub(crate) fn check_pools(pools: &[PoolUnits], known: usize) -> Result<(), String> {
    if pools.is_empty() {
        return Err("no pools".into());
    }
    for (i, pu) in pools.iter().enumerate() {
        if pu.pool.index() >= known {
            return Err("an unknown pool".into());
        }
        if pu.units == 0 {
            return Err("units must be at least 1".into());
        }
        if pools[..i].iter().any(|o| o.pool == pu.pool) {
            return Err("a pool is named twice".into());
        }
    }
    Ok(())
}
