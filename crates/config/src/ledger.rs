//! From a config to the ledger's spec: names resolved to ids, durations to milliseconds.

use crate::Config;
use callgate_core::{ClassId, ClassSpec, FlowSpec, LedgerSpec, PoolId, PoolSpec, PoolUnits, QueueSpec};
use std::collections::HashMap;
use std::time::Duration;

impl Config {
    /// The ledger spec of this config: classes, pools and flows in file order (so
    /// `ClassId(i)` is `classes[i]`, `PoolId(i)` is `pools[i]`, `FlowId(i)` is
    /// `flows[i]`), reserves in class order, durations in milliseconds. The ledger's own
    /// settings keep their defaults.
    ///
    /// Meant for a validated config. On one that is not, a name that resolves to nothing
    /// becomes an id past the end of its table, which [`LedgerSpec::validate`] refuses;
    /// nothing panics.
    pub fn ledger_spec(&self) -> LedgerSpec {
        let classes: HashMap<&str, ClassId> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), ClassId(u16::try_from(i).unwrap_or(u16::MAX))))
            .collect();
        let pools: HashMap<&str, PoolId> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), PoolId(u32::try_from(i).unwrap_or(u32::MAX))))
            .collect();
        let class_id = |name: &str| classes.get(name).copied().unwrap_or(ClassId(u16::MAX));
        let pool_id = |name: &str| pools.get(name).copied().unwrap_or(PoolId(u32::MAX));
        LedgerSpec {
            classes: self.classes.iter().map(|c| ClassSpec { name: c.name.clone(), priority: c.priority }).collect(),
            pools: self
                .pools
                .iter()
                .map(|p| {
                    let mut reserve: Vec<(ClassId, u32)> = p.reserve.iter().map(|(c, &u)| (class_id(c), u)).collect();
                    reserve.sort_by_key(|&(c, _)| c);
                    PoolSpec { name: p.name.clone(), limit: p.limit, reserve }
                })
                .collect(),
            flows: self
                .flows
                .iter()
                .map(|f| FlowSpec {
                    name: f.name.clone(),
                    pools: f.pools.iter().map(|fp| PoolUnits { pool: pool_id(&fp.pool), units: fp.units }).collect(),
                    class: class_id(&f.class),
                    lease_ttl_ms: millis(f.lease_ttl),
                    queue: f.queue.map(|q| QueueSpec { max_wait_ms: millis(q.max_wait), max_len: q.max_len }),
                })
                .collect(),
            pools_max_len: Some(self.server.pools_max_len),
            ..LedgerSpec::default()
        }
    }
}

/// Whole milliseconds, saturating (parsed durations stay far below `u64::MAX` ms).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
