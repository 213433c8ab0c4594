//! What a node in fallback says of it: `/healthz`'s reason and the
//! `callgate_redis_fallback*` gauges of `/metrics`.

use super::Fallback;

/// What `/healthz` and `/metrics` say of a fallback.
#[derive(Clone, Debug, PartialEq)]
#[doc(hidden)]
pub struct Status {
    /// Why, while the node admits on its own (or rejoins).
    pub reason: Option<String>,
    /// By pool.
    pub pools: Vec<PoolStatus>,
}

/// A pool's side of [`Status`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[doc(hidden)]
pub struct PoolStatus {
    /// Whether it admits on this node's share now.
    pub local: bool,
    /// That share (0 when not).
    pub cap: u32,
    /// Units by which it was over its cap after the last adoption.
    pub over: u64,
    /// Units the shared ledger holds back for silent nodes (as Redis last said).
    pub held: u64,
}

impl Fallback {
    /// `callgate_redis_fallback{pool}` (1 while the pool admits on this node's share),
    /// `callgate_redis_fallback_cap{pool}` (that share) and `callgate_redis_fallback_over{pool}`
    /// (units over the cap after the last adoption) and `callgate_redis_held_for_silent{pool}`
    /// (units the shared ledger holds back for silent nodes).
    #[doc(hidden)]
    pub fn render_metrics(&self, out: &mut String) {
        use callgate_events::metrics::{escape_label, header};
        use std::fmt::Write;
        let status = self.status();
        let names: Vec<String> = {
            let spec = self.spec.read().unwrap_or_else(|p| p.into_inner());
            spec.pools.iter().map(|p| escape_label(&p.name)).collect()
        };
        type Gauge = fn(&PoolStatus) -> u64;
        let families: [(&str, &str, Gauge); 4] = [
            ("callgate_redis_fallback", "Whether the pool admits on this node's share while Redis is unreachable (1) or on the shared ledger (0).", |p| u64::from(p.local)),
            ("callgate_redis_fallback_cap", "This node's share of the pool while it admits on it (local_fallback).", |p| u64::from(p.cap)),
            ("callgate_redis_fallback_over", "Units by which the pool was over its cap after the last local fallback's leases were adopted.", |p| p.over),
            ("callgate_redis_held_for_silent", "Units of the pool the shared ledger holds back for nodes whose presence lapsed (they may admit on their share).", |p| p.held),
        ];
        for (name, help, value) in families {
            header(out, name, "gauge", help);
            for (pool, p) in names.iter().zip(&status.pools) {
                let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {}", value(p));
            }
        }
    }
}
