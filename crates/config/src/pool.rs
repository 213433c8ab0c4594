//! `[[pools]]`: budgets of concurrent units, with reserves per class.

use crate::problem::{list, Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One `[[pools]]` table: a named budget of units (a platform account, an assistant, a
/// phone number, a campaign, a worker fleet…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Unique, non-empty name (e.g. `vapi-main`), referenced by flows.
    pub name: String,
    /// The most units held by live leases at once (e.g. the platform's concurrency
    /// limit, in calls). May be changed at runtime through the API.
    pub limit: u32,
    /// Units held back for a class and every class above it: class name → units
    /// (default: none). Kept sorted by class name, since the order carries no meaning;
    /// the ledger spec lists them in class order. The units add up to at most `limit`.
    #[serde(default)]
    pub reserve: BTreeMap<String, u32>,
    /// The cap follows measured latency and provider refusals (default: none, the cap
    /// is the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<crate::adaptive::AdaptiveConfig>,
    /// In cluster mode, what this pool's admissions do while Redis is unreachable
    /// (default: `[storage] on_redis_unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_redis_unavailable: Option<crate::storage::RedisUnavailable>,
}

impl PoolConfig {
    /// A pool named `name` with `limit` units and no reserves.
    pub fn new(name: &str, limit: u32) -> Self {
        PoolConfig {
            name: name.to_owned(),
            limit,
            reserve: BTreeMap::new(),
            adaptive: None,
            on_redis_unavailable: None,
        }
    }
}

/// Checks `[[pools]]`: names, reserves naming known classes, reserves within the limit.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let pools = Field::top("pools");
    out.names("pool", config.pools.iter().map(|p| p.name.as_str()), |i| pools.index(i).key("name"));
    for (i, pool) in config.pools.iter().enumerate() {
        let reserve = pools.index(i).key("reserve");
        for class in pool.reserve.keys() {
            if config.class(class).is_none() {
                out.push(
                    reserve.key(class),
                    format!(
                        "pool `{}` reserves units for unknown class `{class}` (classes: {})",
                        pool.name,
                        list(config.classes.iter().map(|c| c.name.as_str()))
                    ),
                );
            }
        }
        let total: u64 = pool.reserve.values().map(|&u| u64::from(u)).sum();
        if total > u64::from(pool.limit) {
            out.push(
                reserve,
                format!(
                    "a reserve larger than the limit: pool `{}` reserves {total} units but its \
                     limit is {}",
                    pool.name, pool.limit
                ),
            );
        }
    }
}
